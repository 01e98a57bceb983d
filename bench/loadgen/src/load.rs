//! The workloads. Each opens its connections, runs a warm-up, samples the CPU of
//! the proxy, the backends and itself, measures for a fixed time, samples again,
//! and stops: every loop is bounded in count and in time.
//!
//! - [`stream`]: N tunnels, each keeping K binary messages in flight (echo: 64 bytes
//!   with a send timestamp for the round trip; large: 1 MiB).
//! - [`handshakes`]: W workers each connecting, upgrading and closing in a loop.
//! - [`idle`]: opens thousands of tunnels, reads the proxy's memory, checks a sample
//!   still echoes.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::net::{self, Endpoint, Ws};
use crate::procfs::{Meter, Window};

/// Longest wait for one echo before a tunnel counts as broken.
const ECHO_WAIT: Duration = Duration::from_secs(10);

const WARM: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// Where the workers are: warming up, measuring, or winding down.
struct Phase(AtomicU8);

impl Phase {
    fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
    fn set(&self, p: u8) {
        self.0.store(p, Ordering::Relaxed)
    }
}

/// Warm up, then measure: the window's CPU figures come from the samples taken at
/// the two phase changes.
async fn timed(phase: &Phase, meter: &Meter, warm: Duration, measure: Duration) -> Window {
    tokio::time::sleep(warm).await;
    phase.set(MEASURE);
    let a = meter.sample();
    tokio::time::sleep(measure).await;
    let b = meter.sample();
    phase.set(STOP);
    Window::between(a, b)
}

/// Opens `n` clients with at most `conc` handshakes at a time (spread over the
/// runtime's threads). Returns the clients and how many failed.
pub async fn open(ep: &Endpoint, n: usize, conc: usize, read_buf: usize) -> (Vec<Ws>, usize) {
    let sem = Arc::new(Semaphore::new(conc.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        let ep = ep.clone();
        tasks.push(tokio::spawn(async move {
            let r = net::connect(&ep, i, net::ws_config(read_buf)).await;
            drop(permit);
            r
        }));
    }
    let mut out = Vec::with_capacity(n);
    let mut failed = 0;
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(ws)) => out.push(ws),
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(_) => failed += 1,
        }
    }
    if let Some(e) = first_error {
        eprintln!("    {failed} of {n} connections failed; first: {e}");
    }
    (out, failed)
}

/// Closes clients politely, at most `conc` at a time, each bounded.
async fn close_all(clients: Vec<Ws>) {
    let mut set = tokio::task::JoinSet::new();
    for mut ws in clients {
        set.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let _ = ws.close(None).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        });
    }
    while set.join_next().await.is_some() {}
}

/// What a streaming run measured.
#[derive(Debug, Clone)]
pub struct StreamRun {
    /// Messages echoed back during the measurement window.
    pub messages: u64,
    /// Round trips in microseconds (echo only), sorted.
    pub rtt_us: Vec<u32>,
    pub window: Window,
    /// Tunnels that broke (error or timeout) before the end.
    pub broken: usize,
}

impl StreamRun {
    pub fn per_sec(&self) -> f64 {
        self.messages as f64 / self.window.secs
    }

    pub fn rtt_quantile_ms(&self, q: f64) -> f64 {
        if self.rtt_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.rtt_us.len() as f64 - 1.0) * q).round() as usize;
        self.rtt_us[i] as f64 / 1000.0
    }
}

/// Shape of a streaming run.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    pub tunnels: usize,
    pub in_flight: usize,
    pub size: usize,
    pub warm: Duration,
    pub measure: Duration,
}

/// N tunnels each keeping K messages in flight: every echo that comes back is
/// answered by a new message, writes batched until nothing more is ready to read.
pub async fn stream(ep: &Endpoint, spec: StreamSpec, meter: &Meter) -> Result<StreamRun> {
    let (clients, failed) = open(ep, spec.tunnels, 32, 128 * 1024).await;
    if clients.is_empty() {
        bail!("no tunnel could be opened through {}", ep.describe());
    }
    let phase = Arc::new(Phase(AtomicU8::new(WARM)));
    let base = Instant::now();
    let big = Bytes::from(vec![0xA5u8; spec.size]);
    let mut set = tokio::task::JoinSet::new();
    for ws in clients {
        let (phase, big) = (phase.clone(), big.clone());
        set.spawn(pump(ws, spec, phase, base, big));
    }
    let window = timed(&phase, meter, spec.warm, spec.measure).await;
    let mut run = StreamRun {
        messages: 0,
        rtt_us: Vec::new(),
        window,
        broken: failed,
    };
    let deadline = Instant::now() + ECHO_WAIT + Duration::from_secs(5);
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline.into(), set.join_next()).await {
        match r {
            Ok(Ok((n, mut rtt))) => {
                run.messages += n;
                run.rtt_us.append(&mut rtt);
            }
            Ok(Err((n, mut rtt, e))) => {
                eprintln!("    tunnel broke: {e}");
                run.messages += n;
                run.rtt_us.append(&mut rtt);
                run.broken += 1;
            }
            Err(_) => run.broken += 1,
        }
    }
    run.broken += set.len();
    set.abort_all();
    run.rtt_us.sort_unstable();
    Ok(run)
}

type PumpOut = std::result::Result<(u64, Vec<u32>), (u64, Vec<u32>, anyhow::Error)>;

/// One tunnel of a streaming run. Echo-sized messages carry their send time (µs
/// since `base`) in their first 8 bytes; large ones are one shared buffer.
async fn pump(
    mut ws: Ws,
    spec: StreamSpec,
    phase: Arc<Phase>,
    base: Instant,
    big: Bytes,
) -> PumpOut {
    let stamped = spec.size < 4096;
    let mut count = 0u64;
    let mut rtt = Vec::new();
    let make = || {
        if stamped {
            let mut v = vec![0xA5u8; spec.size];
            let t = base.elapsed().as_micros() as u64;
            v[..8].copy_from_slice(&t.to_le_bytes());
            Message::Binary(v.into())
        } else {
            Message::Binary(big.clone())
        }
    };
    let r: Result<()> = async {
        let mut outstanding = 0usize;
        for _ in 0..spec.in_flight {
            ws.feed(make()).await?;
            outstanding += 1;
        }
        ws.flush().await?;
        while outstanding > 0 {
            let first = tokio::time::timeout(ECHO_WAIT, ws.next())
                .await
                .map_err(|_| anyhow!("no echo within {ECHO_WAIT:?}"))?
                .ok_or_else(|| anyhow!("closed by the peer"))??;
            let mut next = Some(first);
            while let Some(m) = next.take() {
                if let Message::Binary(b) = m {
                    outstanding -= 1;
                    if phase.get() == MEASURE {
                        count += 1;
                        if stamped && b.len() >= 8 {
                            let sent = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
                            let now = base.elapsed().as_micros() as u64;
                            rtt.push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
                        }
                    }
                    if phase.get() != STOP {
                        ws.feed(make()).await?;
                        outstanding += 1;
                    }
                }
                if outstanding > 0 {
                    if let Some(m) = ws.next().now_or_never() {
                        next = Some(m.ok_or_else(|| anyhow!("closed by the peer"))??);
                    }
                }
            }
            ws.flush().await?;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            ws.close(None).await?;
            while let Some(m) = ws.next().await {
                m?;
            }
            anyhow::Ok(())
        })
        .await;
        Ok(())
    }
    .await;
    match r {
        Ok(()) => Ok((count, rtt)),
        Err(e) => Err((count, rtt, e)),
    }
}

/// What a handshake run measured.
#[derive(Debug, Clone)]
pub struct HandshakeRun {
    pub done: u64,
    pub failed: u64,
    pub window: Window,
}

/// `workers` loops of connect (TLS) + upgrade + close handshake; counts those that
/// complete inside the measurement window.
pub async fn handshakes(
    ep: &Endpoint,
    workers: usize,
    warm: Duration,
    measure: Duration,
    meter: &Meter,
) -> Result<HandshakeRun> {
    let phase = Arc::new(Phase(AtomicU8::new(WARM)));
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (phase, ep) = (phase.clone(), ep.clone());
        set.spawn(async move {
            let (mut done, mut failed, mut i) = (0u64, 0u64, w);
            let mut first_error = None;
            while phase.get() != STOP {
                let r = one_handshake(&ep, i).await;
                i += workers;
                let counted = phase.get() == MEASURE;
                match r {
                    Ok(()) if counted => done += 1,
                    Ok(()) => {}
                    Err(e) => {
                        if counted {
                            failed += 1;
                        }
                        first_error.get_or_insert(e.to_string());
                        // A failing target must not turn this into a busy loop.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (done, failed, first_error)
        });
    }
    let window = timed(&phase, meter, warm, measure).await;
    let mut run = HandshakeRun {
        done: 0,
        failed: 0,
        window,
    };
    let deadline = Instant::now() + net::CONNECT_WAIT + Duration::from_secs(5);
    while let Ok(Some(r)) = tokio::time::timeout_at(deadline.into(), set.join_next()).await {
        if let Ok((d, f, e)) = r {
            run.done += d;
            run.failed += f;
            if let Some(e) = e {
                eprintln!("    handshake failed: {e}");
            }
        }
    }
    set.abort_all();
    Ok(run)
}

async fn one_handshake(ep: &Endpoint, i: usize) -> Result<()> {
    let mut ws = net::connect(ep, i, net::ws_config(4096)).await?;
    tokio::time::timeout(Duration::from_secs(5), async {
        ws.close(None).await?;
        // Until the peer's Close arrives and the connection ends.
        while let Some(m) = ws.next().await {
            m?;
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow!("close handshake not finished within 5s"))?
}

/// What an idle run measured.
#[derive(Debug, Clone)]
pub struct IdleRun {
    pub wanted: usize,
    pub opened: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub sampled: usize,
    pub echoed: usize,
    pub open_secs: f64,
}

impl IdleRun {
    /// Growth of the proxy's resident memory per open tunnel, in KiB.
    pub fn kib_per_tunnel(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.opened.max(1) as f64
    }
}

/// Opens `n` tunnels and leaves them idle; reads the proxy's RSS before and after
/// (after `settle`), then sends one message on every `n / sample`-th tunnel.
pub async fn idle(
    ep: &Endpoint,
    n: usize,
    sample: usize,
    settle: Duration,
    meter: &Meter,
) -> Result<IdleRun> {
    let rss_before_kib = meter.proxy_rss_kib();
    let t = Instant::now();
    let (mut clients, _failed) = open(ep, n, 64, 4096).await;
    let open_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_after_kib = meter.proxy_rss_kib();
    let step = (clients.len() / sample.max(1)).max(1);
    let (mut sampled, mut echoed) = (0, 0);
    for ws in clients.iter_mut().step_by(step) {
        sampled += 1;
        let ok = tokio::time::timeout(Duration::from_secs(5), async {
            ws.send(Message::Binary(Bytes::from_static(b"still there?")))
                .await?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => return anyhow::Ok(&b[..] == b"still there?"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(false),
                }
            }
        })
        .await;
        if matches!(ok, Ok(Ok(true))) {
            echoed += 1;
        }
    }
    let run = IdleRun {
        wanted: n,
        opened: clients.len(),
        rss_before_kib,
        rss_after_kib,
        sampled,
        echoed,
        open_secs,
    };
    close_all(clients).await;
    Ok(run)
}
