//! `loadgen soak`: thousands of tunnels through tunnelscope for a minute, every
//! message sequence-numbered and checksummed in both directions.
//!
//! In this one process: a WebSocket backend (on 127.0.0.1, one or more ports) that
//! checks what each client sends, echoes it, and sends a stream of its own; the
//! clients, opened at a bounded rate, each sending its own stream and checking both
//! the echoes and the backend's stream; and a sampler reading the proxy's resident
//! memory and open descriptors once a second. tunnelscope itself is started here
//! (release binary, headless, a generated config) unless `--proxy-addr` names one
//! already running.
//!
//! A message (binary, or as lowercase hex in a text message for every 8th one):
//!
//! ```text
//! kind u8 | tunnel u32 LE | seq u64 LE | len u32 LE | payload [len] | FNV-1a 64 LE of all before
//! ```
//!
//! The payload is a slice of a pseudo-random pattern chosen by (direction, tunnel,
//! seq), so the receiver knows exactly what it must be. Each stream ends with an END
//! message carrying the number of data messages sent: client END first, then the
//! backend (having echoed everything before it) answers with its own END, then the
//! client sends Close 1000 and expects it back.
//!
//! Checks (any failure exits non-zero): every tunnel opened and ended cleanly; in all
//! three streams (client→backend, backend→client, echoes) nothing lost, duplicated,
//! out of order or corrupt; the proxy's RSS after `--flat-after` seconds never above
//! the RSS at that moment by more than `--rss-growth-pct`; its descriptor count back
//! to the baseline within `--fd-wait` seconds of the last close. Every loop is
//! bounded in count and time.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::{net, procfs, targets};

mod peers;
mod proxy;
mod reload;
mod report;
mod wire;

use self::peers::*;
use self::proxy::*;
use self::reload::*;
use self::report::*;
use self::wire::*;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tunnels to open and hold.
    #[arg(long, default_value_t = 8000)]
    pub tunnels: u32,
    /// Seconds of traffic once every tunnel is open.
    #[arg(long, default_value_t = 60.0)]
    pub secs: f64,
    /// Tunnels opened per second at most.
    #[arg(long, default_value_t = 1000.0)]
    pub ramp_rate: f64,
    /// Shortest pause between two messages of one stream, in ms.
    #[arg(long, default_value_t = 1000)]
    pub interval_min_ms: u64,
    /// Longest pause between two messages of one stream, in ms (uniform in between).
    #[arg(long, default_value_t = 2000)]
    pub interval_max_ms: u64,
    /// Largest payload in bytes (most are far smaller: 60% under 128 bytes, 1% over 16 KiB).
    #[arg(long, default_value_t = 65536)]
    pub max_payload: usize,
    /// Memory must be flat from this many seconds after the last tunnel opened.
    #[arg(long, default_value_t = 10.0)]
    pub flat_after: f64,
    /// Largest allowed RSS growth after --flat-after, in percent.
    #[arg(long, default_value_t = 10.0)]
    pub rss_growth_pct: f64,
    /// Seconds to wait after the last close for the proxy's descriptors to return to the baseline.
    #[arg(long, default_value_t = 15.0)]
    pub fd_wait: f64,
    /// Seconds after the last tunnel ended to read the proxy's memory again: what
    /// the allocator gives back once the burst is over (0: don't wait).
    #[arg(long, default_value_t = 15.0)]
    pub settle: f64,
    /// The tunnelscope binary to start.
    #[arg(long, default_value = "target/release/tunnelscope")]
    pub tunnelscope: PathBuf,
    /// Directory for the config, the proxy's log and the PID list (default: a new one in /tmp).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Use a proxy already running at this address instead of starting one; it must
    /// forward to the --backend addresses.
    #[arg(long, requires = "backend")]
    pub proxy_addr: Option<SocketAddr>,
    /// The already running proxy's PID, for its memory and descriptors (with --proxy-addr).
    #[arg(long, requires = "proxy_addr")]
    pub pid: Option<u32>,
    /// Addresses for the in-process backend (repeat for several). Default: two free ports.
    #[arg(long)]
    pub backend: Vec<SocketAddr>,
    /// Reloads during the soak window (each drops or re-adds the second backend,
    /// through `POST /api/reload`), evenly spaced; timed, with the proxy's memory
    /// before and after. Only with a proxy this run starts.
    #[arg(long, default_value_t = 5)]
    pub reloads: u32,
    /// Write the reload figures into this report (BENCHMARKS.md) when the soak passes.
    #[arg(long)]
    pub benchmarks: Option<PathBuf>,
    /// Worker threads of this load generator (clients and backend together).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

// --- the message format -----------------------------------------------------------

/// One sample of the proxy, `t` seconds after the last tunnel opened (negative while
/// the tunnels are still opening).
#[derive(Clone, Copy)]
struct Sample {
    t: f64,
    rss_kib: u64,
    fds: u64,
}

pub fn main(args: Args) -> Result<()> {
    if args.interval_min_ms == 0 || args.interval_max_ms < args.interval_min_ms {
        bail!("need 0 < --interval-min-ms <= --interval-max-ms");
    }
    if args.tunnels == 0 || args.ramp_rate <= 0.0 || args.secs <= args.flat_after {
        bail!("need --tunnels > 0, --ramp-rate > 0 and --secs > --flat-after");
    }
    crate::run::raise_nofile();
    let dir = match &args.workdir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("tunnelscope-soak.{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = watch::channel(false);

    // The backend listeners first: the proxy's config names them.
    let want: Vec<SocketAddr> = if args.backend.is_empty() {
        vec!["127.0.0.1:0".parse()?; 2]
    } else {
        args.backend.clone()
    };
    let listeners = rt.block_on(async {
        let mut v = Vec::new();
        for a in &want {
            v.push(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding {a}"))?,
            );
        }
        anyhow::Ok(v)
    })?;
    let backends: Vec<SocketAddr> = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<_, _>>()?;

    let (proxy, started, pid) = match args.proxy_addr {
        Some(a) => (a, None, args.pid),
        None => {
            let (a, s) = start_proxy(&args, &dir, &backends)?;
            let pid = s.child.id();
            (a, Some(s), Some(pid))
        }
    };
    let ctx = Arc::new(Ctx {
        proxy,
        pattern: Pattern::new(args.max_payload),
        interval: (args.interval_min_ms, args.interval_max_ms),
        claimed: (0..args.tunnels).map(|_| AtomicBool::new(false)).collect(),
        opened: AtomicU64::new(0),
        open_failed: AtomicU64::new(0),
        live: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        died: AtomicU64::new(0),
        bad_close: AtomicU64::new(0),
        c2b: Stream::default(),
        b2c: Stream::default(),
        echo: Stream::default(),
        backend_live: AtomicU64::new(0),
        backend_total: AtomicU64::new(0),
        backend_bad: AtomicU64::new(0),
        backend_died: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
        error_count: AtomicU64::new(0),
    });
    for l in listeners {
        rt.spawn(backend_accept(l, ctx.clone(), stop_rx.clone()));
    }
    println!(
        "soak: {} tunnels through ws://{proxy}/ (proxy pid {}), {} s after the ramp ({}/s), \
         a message every {}-{} ms each way per tunnel plus echoes, payloads up to {} bytes; \
         backends {}; work directory {}",
        args.tunnels,
        pid.map_or("unknown".into(), |p| p.to_string()),
        args.secs,
        args.ramp_rate,
        args.interval_min_ms,
        args.interval_max_ms,
        args.max_payload,
        backends
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        dir.display()
    );

    let reloader = started.as_ref().map(|s| &s.reloader);
    let r = rt.block_on(drive(&args, &ctx, pid, reloader, stop_tx, stop_rx));
    rt.shutdown_timeout(Duration::from_secs(2));
    let exit = started.and_then(Started::stop);
    let outcome = r?;
    let ok = report(&args, &ctx, &outcome, exit);
    if !ok {
        let tail = std::fs::read_to_string(dir.join("tunnelscope-soak.log")).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(20).collect();
        if !tail.is_empty() {
            println!("\nlast lines of the proxy's log:");
            for l in tail.iter().rev() {
                println!("  {l}");
            }
        }
        println!("\nSOAK FAILED");
        std::process::exit(1);
    }
    println!("\nSOAK PASSED");
    if let Some(path) = &args.benchmarks {
        let text = soak_section(&args, &ctx, &outcome);
        crate::report::replace_section(path, crate::report::SOAK_HEADING, &text)?;
        println!("wrote the reload figures to {}", path.display());
    }
    Ok(())
}

struct Outcome {
    baseline: Option<Sample>,
    samples: Vec<Sample>,
    ramp_secs: f64,
    ramp_complete: bool,
    unfinished: u64,
    backend_left: u64,
    after_close: Option<Sample>,
    /// `--settle` seconds after the last tunnel ended.
    settled: Option<Sample>,
    fd_back_secs: Option<f64>,
    cpu: Option<(f64, f64)>,
    soak_secs: f64,
    reloads: Vec<ReloadFig>,
}

async fn drive(
    args: &Args,
    ctx: &Arc<Ctx>,
    pid: Option<u32>,
    reloader: Option<&Reloader>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
) -> Result<Outcome> {
    let mut reloads = Vec::new();
    let sample = |t: f64| -> Option<Sample> {
        let p = pid?;
        Some(Sample {
            t,
            rss_kib: procfs::rss_kib(p),
            fds: fd_count(p)?,
        })
    };
    let alive = || pid.is_none_or(procfs::alive);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = sample(f64::NAN);
    if let Some(b) = baseline {
        println!(
            "baseline: proxy rss {} KiB, {} descriptors",
            b.rss_kib, b.fds
        );
    }

    let begin = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.tunnels {
        let at = begin + Duration::from_secs_f64(f64::from(i) / args.ramp_rate);
        tasks.spawn(client_tunnel(i, at, ctx.clone(), stop_rx.clone()));
    }

    // Ramp, then the soak window, sampling once a second.
    let ramp_limit = Duration::from_secs_f64(f64::from(args.tunnels) / args.ramp_rate + 60.0);
    let mut samples = Vec::new();
    let mut t0: Option<Instant> = None;
    let mut ramp_complete = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    let mut cpu_start = None;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    loop {
        tick.tick().await;
        n += 1;
        if t0.is_none() {
            let done = load(&ctx.opened) + load(&ctx.open_failed);
            if done >= u64::from(args.tunnels) || begin.elapsed() > ramp_limit {
                ramp_complete = done >= u64::from(args.tunnels);
                t0 = Some(Instant::now());
                cpu_start = pid.map(|p| (procfs::cpu_seconds(p), own_cpu()));
                println!(
                    "ramp done in {:.1} s: {} open, {} failed",
                    begin.elapsed().as_secs_f64(),
                    load(&ctx.opened),
                    load(&ctx.open_failed)
                );
            }
        }
        let t = t0.map_or(-(begin.elapsed().as_secs_f64()), |t0| {
            t0.elapsed().as_secs_f64()
        });
        if let Some(s) = sample(t) {
            samples.push(s);
        }
        if n.is_multiple_of(5) {
            let last = samples.last();
            println!(
                "t={t:+5.0}s live {} died {} | sent c→b {} b→c {} | received c→b {} b→c {} echo {} | bad {} | proxy rss {} KiB fds {}",
                load(&ctx.live),
                load(&ctx.died),
                load(&ctx.c2b.sent),
                load(&ctx.b2c.sent),
                load(&ctx.c2b.received),
                load(&ctx.b2c.received),
                load(&ctx.echo.received),
                ctx.c2b.bad() + ctx.b2c.bad() + ctx.echo.bad(),
                last.map_or("-".into(), |s| s.rss_kib.to_string()),
                last.map_or("-".into(), |s| s.fds.to_string()),
            );
        }
        if !alive() {
            println!("the proxy is gone");
            break;
        }
        if t0.is_some_and(|t0| t0.elapsed().as_secs_f64() >= args.secs) {
            break;
        }
        // The next reload is due at secs * (k / (reloads + 1)) into the window.
        let k = reloads.len() as u32 + 1;
        if let (Some(r), true) = (reloader, k <= args.reloads && t >= 0.0) {
            let due = args.secs * f64::from(k) / f64::from(args.reloads + 1);
            if t >= due {
                let fig = r.reload(k, pid, load(&ctx.live)).await?;
                println!(
                    "reload {k}: {} in {:.1} ms with {} tunnels live",
                    fig.status, fig.ms, fig.live
                );
                reloads.push(fig);
            }
        }
    }
    let soak_secs = t0.map_or(0.0, |t0| t0.elapsed().as_secs_f64());
    let cpu = match (pid, cpu_start) {
        (Some(p), Some((p0, l0))) => Some((
            100.0 * (procfs::cpu_seconds(p) - p0) / soak_secs.max(1e-9),
            100.0 * (own_cpu() - l0) / soak_secs.max(1e-9),
        )),
        _ => None,
    };
    let ramp_secs = match t0 {
        Some(t0) => (t0 - begin).as_secs_f64(),
        None => begin.elapsed().as_secs_f64(),
    };

    // Stop: every client sends END, waits for the backend's, closes.
    println!("stopping: END and Close on every tunnel");
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + STALL + CLOSE_WAIT + Duration::from_secs(10);
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let unfinished = tasks.len() as u64;
    tasks.abort_all();
    let closed_at = Instant::now();
    // The backend's side of each tunnel ends when the proxy closes it.
    let backend_deadline = closed_at + Duration::from_secs(15);
    while load(&ctx.backend_live) > 0 && Instant::now() < backend_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let backend_left = load(&ctx.backend_live);

    // Descriptors back to the baseline?
    let mut after_close = None;
    let mut fd_back_secs = None;
    if let Some(base) = baseline {
        let fd_deadline = closed_at + Duration::from_secs_f64(args.fd_wait);
        loop {
            let s = sample(f64::NAN);
            after_close = s;
            if s.is_some_and(|s| s.fds <= base.fds) {
                fd_back_secs = Some(closed_at.elapsed().as_secs_f64());
                break;
            }
            if Instant::now() >= fd_deadline || s.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut settled = None;
    if baseline.is_some() && args.settle > 0.0 {
        let at = closed_at + Duration::from_secs_f64(args.settle);
        tokio::time::sleep_until(at).await;
        settled = sample(f64::NAN);
    }
    Ok(Outcome {
        baseline,
        samples,
        ramp_secs,
        ramp_complete,
        unfinished,
        backend_left,
        after_close,
        settled,
        fd_back_secs,
        cpu,
        soak_secs,
        reloads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let p = Pattern::new(70000);
        for seq in 0..200 {
            let m = p.data(KIND_CLIENT_DATA, 42, seq);
            assert_eq!(matches!(m, Message::Text(_)), seq % 8 == 7);
            let d = decode(&m).expect("decodes");
            assert_eq!((d.kind, d.tunnel, d.seq), (KIND_CLIENT_DATA, 42, seq));
            assert_eq!(d.payload(), p.payload(KIND_CLIENT_DATA, 42, seq));
            assert!(d.payload().len() <= 70000);
        }
    }

    #[test]
    fn corruption_is_caught() {
        let p = Pattern::new(1024);
        let Message::Binary(b) = p.data(KIND_BACKEND_DATA, 1, 0) else {
            panic!("binary")
        };
        let mut v = b.to_vec();
        let last = v.len() - 9;
        v[last] ^= 1;
        assert!(decode(&Message::Binary(v.into())).is_err());
    }

    #[test]
    fn sequence_checks() {
        let mut c = SeqCheck::default();
        assert!(matches!(c.accept(0), Seen::InOrder));
        assert!(matches!(c.accept(2), Seen::OutOfOrder));
        assert!(matches!(c.accept(1), Seen::OutOfOrder));
        assert!(matches!(c.accept(1), Seen::Duplicate));
        assert!(matches!(c.accept(3), Seen::InOrder));
        assert_eq!(c.received, 4);
    }
}
