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
use std::process::{Child, Command};
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
    /// Worker threads of this load generator (clients and backend together).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
}

// --- the message format -----------------------------------------------------------

const KIND_CLIENT_DATA: u8 = 1;
const KIND_BACKEND_DATA: u8 = 2;
const KIND_CLIENT_END: u8 = 3;
const KIND_BACKEND_END: u8 = 4;
const HEADER: usize = 1 + 4 + 8 + 4;
const SUM: usize = 8;

/// FNV-1a, 64 bits.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// splitmix64: one well-mixed 64-bit value from another.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A small PRNG for jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The payload pattern every message is a slice of.
struct Pattern {
    bytes: Vec<u8>,
    max: usize,
}

impl Pattern {
    fn new(max: usize) -> Pattern {
        let mut r = Rng(0x5eed);
        let bytes = (0..max + 65536).map(|_| r.next() as u8).collect();
        Pattern { bytes, max }
    }

    /// The payload of data message `seq` of `kind` in `tunnel`.
    fn payload(&self, kind: u8, tunnel: u32, seq: u64) -> &[u8] {
        let h = mix((u64::from(kind) << 56) ^ (u64::from(tunnel) << 32) ^ mix(seq));
        let band = h % 100;
        let r = (h >> 8) as usize;
        let len = match band {
            0..=59 => r % 128,
            60..=89 => 128 + r % 1920,
            90..=98 => 2048 + r % 14336,
            _ => 16384 + r % (self.max.saturating_sub(16384) + 1),
        }
        .min(self.max);
        let off = (h >> 40) as usize % (self.bytes.len() - len + 1);
        &self.bytes[off..off + len]
    }

    /// Data message `seq`: every 8th goes as text (hex), the others binary.
    fn data(&self, kind: u8, tunnel: u32, seq: u64) -> Message {
        encode(
            kind,
            tunnel,
            seq,
            self.payload(kind, tunnel, seq),
            seq % 8 == 7,
        )
    }
}

fn encode(kind: u8, tunnel: u32, seq: u64, payload: &[u8], text: bool) -> Message {
    let mut b = Vec::with_capacity(HEADER + payload.len() + SUM);
    b.push(kind);
    b.extend_from_slice(&tunnel.to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    let sum = fnv1a(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    if text {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(b.len() * 2);
        for x in b {
            s.push(HEX[usize::from(x >> 4)] as char);
            s.push(HEX[usize::from(x & 15)] as char);
        }
        Message::Text(s.into())
    } else {
        Message::Binary(Bytes::from(b))
    }
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// One message as received, checked for framing and checksum.
struct Decoded {
    kind: u8,
    tunnel: u32,
    seq: u64,
    text: bool,
    /// Offset and length of the payload in `raw`.
    payload: (usize, usize),
    raw: Vec<u8>,
}

impl Decoded {
    fn payload(&self) -> &[u8] {
        &self.raw[self.payload.0..self.payload.0 + self.payload.1]
    }
}

fn decode(m: &Message) -> Result<Decoded, String> {
    let (raw, text) = match m {
        Message::Binary(b) => (b.to_vec(), false),
        Message::Text(t) => (
            unhex(t.as_bytes()).ok_or("a text message that is not hex")?,
            true,
        ),
        _ => return Err("not a data message".into()),
    };
    if raw.len() < HEADER + SUM {
        return Err(format!("{} bytes: shorter than a header", raw.len()));
    }
    let len = u32::from_le_bytes(raw[13..17].try_into().expect("4 bytes")) as usize;
    if raw.len() != HEADER + len + SUM {
        return Err(format!(
            "{} bytes, but the header says {len} of payload",
            raw.len()
        ));
    }
    let body = raw.len() - SUM;
    let sum = u64::from_le_bytes(raw[body..].try_into().expect("8 bytes"));
    if fnv1a(&raw[..body]) != sum {
        return Err("checksum mismatch".into());
    }
    Ok(Decoded {
        kind: raw[0],
        tunnel: u32::from_le_bytes(raw[1..5].try_into().expect("4 bytes")),
        seq: u64::from_le_bytes(raw[5..13].try_into().expect("8 bytes")),
        text,
        payload: (HEADER, len),
        raw,
    })
}

// --- sequence checking ------------------------------------------------------------

/// What one receiver has seen of one stream.
#[derive(Default)]
struct SeqCheck {
    next: u64,
    /// Sequence numbers skipped over (bounded), so a late arrival counts as reordered
    /// rather than duplicated.
    missing: BTreeSet<u64>,
    received: u64,
}

const MISSING_CAP: usize = 4096;

enum Seen {
    InOrder,
    OutOfOrder,
    Duplicate,
}

impl SeqCheck {
    fn accept(&mut self, s: u64) -> Seen {
        if s == self.next {
            self.next += 1;
            self.received += 1;
            Seen::InOrder
        } else if s > self.next {
            let mut k = self.next;
            while k < s && self.missing.len() < MISSING_CAP {
                self.missing.insert(k);
                k += 1;
            }
            self.next = s + 1;
            self.received += 1;
            Seen::OutOfOrder
        } else if self.missing.remove(&s) {
            self.received += 1;
            Seen::OutOfOrder
        } else {
            Seen::Duplicate
        }
    }
}

// --- shared counters --------------------------------------------------------------

#[derive(Default)]
struct Stream {
    sent: AtomicU64,
    received: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    corrupt: AtomicU64,
}

impl Stream {
    fn seen(&self, s: Seen) {
        match s {
            Seen::InOrder => &self.received,
            Seen::OutOfOrder => {
                self.received.fetch_add(1, Ordering::Relaxed);
                &self.reordered
            }
            Seen::Duplicate => &self.duplicated,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    fn bad(&self) -> u64 {
        Self::get(&self.lost)
            + Self::get(&self.duplicated)
            + Self::get(&self.reordered)
            + Self::get(&self.corrupt)
    }
}

struct Ctx {
    proxy: SocketAddr,
    pattern: Pattern,
    interval: (u64, u64),
    /// The tunnels a backend connection has claimed, so a second one for the same
    /// tunnel (crossed wires) is caught.
    claimed: Vec<AtomicBool>,
    opened: AtomicU64,
    open_failed: AtomicU64,
    live: AtomicU64,
    /// Tunnels that ended cleanly: both ENDs and the Close handshake.
    finished: AtomicU64,
    /// Tunnels that broke before the end (error, early close, silence).
    died: AtomicU64,
    /// Tunnels whose Close 1000 did not come back as such.
    bad_close: AtomicU64,
    c2b: Stream,
    b2c: Stream,
    echo: Stream,
    backend_live: AtomicU64,
    backend_total: AtomicU64,
    /// Backend connections with no or a wrong tunnel id, or one already claimed.
    backend_bad: AtomicU64,
    /// Backend connections that ended before the client's END.
    backend_died: AtomicU64,
    errors: Mutex<Vec<String>>,
    error_count: AtomicU64,
}

impl Ctx {
    fn note(&self, e: String) {
        self.error_count.fetch_add(1, Ordering::Relaxed);
        let mut v = self.errors.lock().expect("not poisoned");
        if v.len() < 20 {
            v.push(e);
        }
    }

    fn interval(&self, rng: &mut Rng) -> Duration {
        Duration::from_millis(rng.between(self.interval.0, self.interval.1))
    }
}

/// No message at all in a stream for this long means the tunnel is stuck.
const STALL: Duration = Duration::from_secs(30);
/// Bound on the closing handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

// --- the backend ------------------------------------------------------------------

async fn backend_accept(listener: TcpListener, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.backend_total.fetch_add(1, Ordering::Relaxed);
            ctx.backend_live.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = backend_conn(tcp, &ctx).await {
                ctx.note(format!("backend: {e:#}"));
            }
            ctx.backend_live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

enum Out {
    Echo(Message),
    End,
}

async fn backend_conn(tcp: TcpStream, ctx: &Ctx) -> Result<()> {
    let path = OnceLock::new();
    // The error type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let cb = |req: &Request, resp: Response| {
        let _ = path.set(req.uri().path().to_string());
        Ok::<_, ErrorResponse>(resp)
    };
    let ws = timeout(
        net::CONNECT_WAIT,
        tokio_tungstenite::accept_hdr_async_with_config(tcp, cb, Some(net::ws_config(4096))),
    )
    .await
    .map_err(|_| anyhow!("no handshake within {:?}", net::CONNECT_WAIT))??;
    let id = path
        .get()
        .and_then(|p| p.strip_prefix("/soak/"))
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|&i| (i as usize) < ctx.claimed.len());
    let Some(id) = id else {
        ctx.backend_bad.fetch_add(1, Ordering::Relaxed);
        bail!("unexpected path {:?}", path.get());
    };
    if ctx.claimed[id as usize].swap(true, Ordering::Relaxed) {
        ctx.backend_bad.fetch_add(1, Ordering::Relaxed);
        bail!("tunnel {id}: a second backend connection");
    }
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(256);

    // Echoes in the order received, the backend's own stream in between, END last.
    let writer = async {
        let mut rng = Rng(mix(u64::from(id) ^ 0xbac0_bac0));
        let mut seq = 0u64;
        let mut next = Instant::now() + ctx.interval(&mut rng);
        loop {
            tokio::select! {
                o = out_rx.recv() => match o {
                    Some(Out::Echo(m)) => tx.send(m).await?,
                    Some(Out::End) => {
                        tx.send(encode(KIND_BACKEND_END, id, seq, &[], false)).await?;
                        return anyhow::Ok(());
                    }
                    None => return Ok(()),
                },
                _ = sleep_until(next) => {
                    tx.send(ctx.pattern.data(KIND_BACKEND_DATA, id, seq)).await?;
                    ctx.b2c.sent.fetch_add(1, Ordering::Relaxed);
                    seq += 1;
                    next = Instant::now() + ctx.interval(&mut rng);
                }
            }
        }
    };

    let reader = async move {
        let r = async {
            let mut check = SeqCheck::default();
            let mut ended = false;
            loop {
                let m = match timeout(2 * STALL, rx.next()).await {
                    Err(_) => bail!("tunnel {id}: nothing from the client for {:?}", 2 * STALL),
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        if ended {
                            break;
                        }
                        bail!("tunnel {id}: {e}")
                    }
                    Ok(Some(Ok(m))) => m,
                };
                if !matches!(m, Message::Binary(_) | Message::Text(_)) {
                    continue;
                }
                let d = match decode(&m) {
                    Ok(d) if d.tunnel == id => d,
                    Ok(d) => {
                        ctx.c2b.corrupt.fetch_add(1, Ordering::Relaxed);
                        ctx.note(format!(
                            "tunnel {id}: backend got a message of tunnel {}",
                            d.tunnel
                        ));
                        continue;
                    }
                    Err(e) => {
                        ctx.c2b.corrupt.fetch_add(1, Ordering::Relaxed);
                        ctx.note(format!("tunnel {id}: backend got a bad message: {e}"));
                        continue;
                    }
                };
                match d.kind {
                    KIND_CLIENT_DATA if !ended => {
                        if d.payload() != ctx.pattern.payload(d.kind, id, d.seq)
                            || d.text != (d.seq % 8 == 7)
                        {
                            ctx.c2b.corrupt.fetch_add(1, Ordering::Relaxed);
                            ctx.note(format!(
                                "tunnel {id}: client message {} has the wrong content",
                                d.seq
                            ));
                            continue;
                        }
                        ctx.c2b.seen(check.accept(d.seq));
                        if out_tx.send(Out::Echo(m)).await.is_err() {
                            bail!("tunnel {id}: the writer stopped");
                        }
                    }
                    KIND_CLIENT_END if !ended => {
                        ended = true;
                        let lost = d.seq.saturating_sub(check.received);
                        ctx.c2b.lost.fetch_add(lost, Ordering::Relaxed);
                        if check.received > d.seq {
                            ctx.c2b
                                .corrupt
                                .fetch_add(check.received - d.seq, Ordering::Relaxed);
                        }
                        let _ = out_tx.send(Out::End).await;
                    }
                    k => {
                        ctx.c2b.corrupt.fetch_add(1, Ordering::Relaxed);
                        ctx.note(format!(
                            "tunnel {id}: backend got kind {k} (ended: {ended})"
                        ));
                    }
                }
            }
            if !ended {
                ctx.backend_died.fetch_add(1, Ordering::Relaxed);
                bail!("tunnel {id}: the client went away before its END");
            }
            Ok(())
        }
        .await;
        // The reader ends first on a clean close; dropping its sender lets the writer end.
        drop(out_tx);
        r
    };
    let (w, r) = tokio::join!(writer, reader);
    r?;
    w.with_context(|| format!("tunnel {id}: backend send"))?;
    Ok(())
}

// --- the clients ------------------------------------------------------------------

type ClientWs = WebSocketStream<TcpStream>;

async fn client_tunnel(id: u32, start: Instant, ctx: Arc<Ctx>, stop: watch::Receiver<bool>) {
    sleep_until(start).await;
    let ws = match connect(&ctx, id).await {
        Ok(ws) => ws,
        Err(e) => {
            ctx.open_failed.fetch_add(1, Ordering::Relaxed);
            ctx.note(format!("tunnel {id}: open: {e:#}"));
            return;
        }
    };
    ctx.opened.fetch_add(1, Ordering::Relaxed);
    ctx.live.fetch_add(1, Ordering::Relaxed);
    match client_run(id, ws, &ctx, stop).await {
        Ok(()) => ctx.finished.fetch_add(1, Ordering::Relaxed),
        Err(e) => {
            ctx.note(format!("tunnel {id}: {e:#}"));
            ctx.died.fetch_add(1, Ordering::Relaxed)
        }
    };
    ctx.live.fetch_sub(1, Ordering::Relaxed);
}

async fn connect(ctx: &Ctx, id: u32) -> Result<ClientWs> {
    timeout(net::CONNECT_WAIT, async {
        let tcp = TcpStream::connect(ctx.proxy).await?;
        tcp.set_nodelay(true)?;
        let url = format!("ws://localhost:{}/soak/{id}", ctx.proxy.port());
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(url, tcp, Some(net::ws_config(4096)))
                .await?;
        anyhow::Ok(ws)
    })
    .await
    .map_err(|_| anyhow!("no upgrade within {:?}", net::CONNECT_WAIT))?
}

async fn client_run(
    id: u32,
    ws: ClientWs,
    ctx: &Ctx,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let (mut tx, mut rx) = ws.split();
    let writer = async {
        let mut rng = Rng(mix(u64::from(id)));
        let mut seq = 0u64;
        // The first message at a random point of the first interval spreads the load.
        let mut next = Instant::now() + Duration::from_millis(rng.between(0, ctx.interval.1));
        loop {
            tokio::select! {
                _ = sleep_until(next) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            tx.send(ctx.pattern.data(KIND_CLIENT_DATA, id, seq))
                .await
                .context("send")?;
            ctx.c2b.sent.fetch_add(1, Ordering::Relaxed);
            seq += 1;
            next = Instant::now() + ctx.interval(&mut rng);
        }
        tx.send(encode(KIND_CLIENT_END, id, seq, &[], false))
            .await
            .context("send END")?;
        anyhow::Ok(seq)
    };
    let reader = async {
        let (mut own, mut echo) = (SeqCheck::default(), SeqCheck::default());
        loop {
            let m = match timeout(STALL, rx.next()).await {
                Err(_) => bail!("nothing from the backend for {STALL:?}"),
                Ok(None) => bail!("the connection ended before the backend's END"),
                Ok(Some(Err(e))) => bail!("receive: {e}"),
                Ok(Some(Ok(Message::Close(f)))) => {
                    bail!("closed before the backend's END: {f:?}")
                }
                Ok(Some(Ok(m @ (Message::Binary(_) | Message::Text(_))))) => m,
                Ok(Some(Ok(_))) => continue,
            };
            let d = match decode(&m) {
                Ok(d) if d.tunnel == id => d,
                Ok(d) => {
                    ctx.b2c.corrupt.fetch_add(1, Ordering::Relaxed);
                    ctx.note(format!(
                        "tunnel {id}: client got a message of tunnel {}",
                        d.tunnel
                    ));
                    continue;
                }
                Err(e) => {
                    ctx.b2c.corrupt.fetch_add(1, Ordering::Relaxed);
                    ctx.note(format!("tunnel {id}: client got a bad message: {e}"));
                    continue;
                }
            };
            let (check, stream) = match d.kind {
                KIND_BACKEND_DATA => (&mut own, &ctx.b2c),
                KIND_CLIENT_DATA => (&mut echo, &ctx.echo),
                KIND_BACKEND_END => return anyhow::Ok((own, echo, d.seq)),
                k => {
                    ctx.b2c.corrupt.fetch_add(1, Ordering::Relaxed);
                    ctx.note(format!("tunnel {id}: client got kind {k}"));
                    continue;
                }
            };
            if d.payload() != ctx.pattern.payload(d.kind, id, d.seq) || d.text != (d.seq % 8 == 7) {
                stream.corrupt.fetch_add(1, Ordering::Relaxed);
                ctx.note(format!(
                    "tunnel {id}: kind {} message {} has the wrong content",
                    d.kind, d.seq
                ));
                continue;
            }
            stream.seen(check.accept(d.seq));
        }
    };
    let (sent, (own, echo, backend_sent)) = tokio::try_join!(writer, reader)?;
    let lost = |s: &Stream, total: u64, c: &SeqCheck| {
        s.lost
            .fetch_add(total.saturating_sub(c.received), Ordering::Relaxed);
        if c.received > total {
            s.corrupt.fetch_add(c.received - total, Ordering::Relaxed);
        }
    };
    lost(&ctx.b2c, backend_sent, &own);
    lost(&ctx.echo, sent, &echo);

    // Close 1000 and expect it back, then the end of the stream.
    let mut ws = rx.reunite(tx).map_err(|_| anyhow!("reunite"))?;
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "soak done".into(),
    };
    let answer = timeout(CLOSE_WAIT, async {
        ws.close(Some(frame)).await?;
        let mut answer = None;
        while let Some(m) = ws.next().await {
            match m? {
                Message::Close(f) => answer = Some(f.map(|f| u16::from(f.code))),
                Message::Binary(_) | Message::Text(_) => bail!("data after the backend's END"),
                _ => {}
            }
        }
        anyhow::Ok(answer)
    })
    .await;
    match answer {
        Ok(Ok(Some(Some(1000)))) => Ok(()),
        Ok(Ok(other)) => {
            ctx.bad_close.fetch_add(1, Ordering::Relaxed);
            bail!("closing: expected Close 1000 back, got {other:?}")
        }
        Ok(Err(e)) => {
            ctx.bad_close.fetch_add(1, Ordering::Relaxed);
            bail!("closing: {e:#}")
        }
        Err(_) => {
            ctx.bad_close.fetch_add(1, Ordering::Relaxed);
            bail!("closing: not done within {CLOSE_WAIT:?}")
        }
    }
}

// --- the proxy --------------------------------------------------------------------

fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

fn proxy_conf(listen: SocketAddr, backends: &[SocketAddr], tunnels: u32) -> String {
    let servers: String = backends
        .iter()
        .map(|b| format!("[[pool.soak.server]]\naddr = \"{b}\"\n"))
        .collect();
    format!(
        r#"# Written by `loadgen soak`.
[limits]
max_connections = {max}

[timeouts]
idle = 0

[[listener]]
bind = "{listen}"

[pool.soak]
balance = "least_conn"
max_fails = 0
{servers}"#,
        max = (u64::from(tunnels) + 1000).max(10000),
    )
}

/// The proxy this run started.
struct Started {
    child: Child,
    dir: PathBuf,
}

fn start_proxy(args: &Args, dir: &Path, backends: &[SocketAddr]) -> Result<(SocketAddr, Started)> {
    let bin = std::fs::canonicalize(&args.tunnelscope).with_context(|| {
        format!(
            "{}: no such binary (cargo build --release?)",
            args.tunnelscope.display()
        )
    })?;
    let listen = targets::free_port()?;
    let conf = dir.join("tunnelscope-soak.toml");
    std::fs::write(&conf, proxy_conf(listen, backends, args.tunnels))?;
    let child = targets::spawn(
        dir,
        "tunnelscope-soak.log",
        Command::new(bin)
            .arg("--config")
            .arg(&conf)
            .arg("--headless")
            .arg("--log")
            .arg("warn"),
    )?;
    let started = Started {
        child,
        dir: dir.to_path_buf(),
    };
    if let Err(e) =
        targets::wait_listening(&[listen], "tunnelscope", &dir.join("tunnelscope-soak.log"))
    {
        started.stop();
        return Err(e);
    }
    Ok((listen, started))
}

impl Started {
    /// SIGTERM, SIGKILL after 15 s; the exit status.
    fn stop(mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id();
        targets::terminate(
            &self.dir,
            pid,
            Some(&mut self.child),
            Duration::from_secs(15),
        );
        self.child.try_wait().ok().flatten()
    }
}

// --- the run ----------------------------------------------------------------------

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

    let r = rt.block_on(drive(&args, &ctx, pid, stop_tx, stop_rx));
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
    fd_back_secs: Option<f64>,
    cpu: Option<(f64, f64)>,
    soak_secs: f64,
}

async fn drive(
    args: &Args,
    ctx: &Arc<Ctx>,
    pid: Option<u32>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
) -> Result<Outcome> {
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
    Ok(Outcome {
        baseline,
        samples,
        ramp_secs,
        ramp_complete,
        unfinished,
        backend_left,
        after_close,
        fd_back_secs,
        cpu,
        soak_secs,
    })
}

/// CPU seconds of this process.
fn own_cpu() -> f64 {
    procfs::cpu_seconds(std::process::id())
}

/// Prints the report; whether every check passed.
fn report(args: &Args, ctx: &Ctx, o: &Outcome, exit: Option<std::process::ExitStatus>) -> bool {
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut fails: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            fails.push(what);
        }
    };
    println!("\n== soak report");
    println!(
        "tunnels: wanted {}, opened {}, failed to open {}, ended cleanly {}, died {}, bad close {}, unfinished {}; ramp {:.1} s, soak window {:.1} s",
        args.tunnels,
        g(&ctx.opened),
        g(&ctx.open_failed),
        g(&ctx.finished),
        g(&ctx.died),
        g(&ctx.bad_close),
        o.unfinished,
        o.ramp_secs,
        o.soak_secs
    );
    check(o.ramp_complete, "the ramp did not complete".into());
    check(
        g(&ctx.opened) == u64::from(args.tunnels),
        format!("{} tunnels failed to open", g(&ctx.open_failed)),
    );
    check(
        g(&ctx.finished) == u64::from(args.tunnels),
        format!(
            "{} tunnels did not end cleanly",
            u64::from(args.tunnels) - g(&ctx.finished).min(u64::from(args.tunnels))
        ),
    );
    println!(
        "backend: {} connections, {} with a bad or repeated tunnel id, {} ended before the client's END, {} still open after 15 s",
        g(&ctx.backend_total),
        g(&ctx.backend_bad),
        g(&ctx.backend_died),
        o.backend_left
    );
    check(
        g(&ctx.backend_total) == g(&ctx.opened) && g(&ctx.backend_bad) == 0,
        "backend connections do not match the tunnels one to one".into(),
    );
    check(
        g(&ctx.backend_died) == 0,
        "backend connections ended early".into(),
    );
    check(o.backend_left == 0, "backend connections left open".into());
    println!("messages      sent     received  lost  duplicated  out-of-order  corrupt");
    for (name, s) in [
        ("client→backend", &ctx.c2b),
        ("backend→client", &ctx.b2c),
        ("echo (c→b→c)  ", &ctx.echo),
    ] {
        let sent = if std::ptr::eq(s, &ctx.echo) {
            g(&ctx.c2b.received)
        } else {
            g(&s.sent)
        };
        println!(
            "{name} {sent:>9} {:>9} {:>5} {:>11} {:>13} {:>8}",
            g(&s.received),
            g(&s.lost),
            g(&s.duplicated),
            g(&s.reordered),
            g(&s.corrupt)
        );
        check(
            s.bad() == 0,
            format!("{} stream: {} bad messages", name.trim(), s.bad()),
        );
        check(
            g(&s.received) == sent,
            format!(
                "{} stream: sent {sent}, received {}",
                name.trim(),
                g(&s.received)
            ),
        );
    }
    if let Some((p, l)) = o.cpu {
        println!("cpu during the soak window (share of one core): proxy {p:.0}%, loadgen {l:.0}% (clients and backend)");
    }

    // Memory.
    match o.baseline {
        None => println!("proxy memory and descriptors: not measured (no --pid)"),
        Some(base) => {
            let soak: Vec<&Sample> = o.samples.iter().filter(|s| s.t >= 0.0).collect();
            let at_open = soak.first().map(|s| s.rss_kib);
            let flat: Vec<&Sample> = soak
                .iter()
                .copied()
                .filter(|s| s.t >= args.flat_after)
                .collect();
            match (flat.first(), flat.last()) {
                (Some(first), Some(last)) => {
                    let max = flat
                        .iter()
                        .map(|s| s.rss_kib)
                        .max()
                        .unwrap_or(first.rss_kib);
                    let min = flat
                        .iter()
                        .map(|s| s.rss_kib)
                        .min()
                        .unwrap_or(first.rss_kib);
                    let grow_end = last.rss_kib as i64 - first.rss_kib as i64;
                    let grow_max = max as i64 - first.rss_kib as i64;
                    let pct = 100.0 * grow_max as f64 / first.rss_kib.max(1) as f64;
                    println!(
                        "proxy rss: baseline {} KiB; all tunnels open {} KiB ({:.1} KiB/tunnel); at {:.0} s {} KiB; end ({:.0} s) {} KiB; after {:.0} s min {} max {} KiB; growth after {:.0} s: end {:+} KiB ({:+.2}%), max {:+} KiB ({:+.2}%); {} samples",
                        base.rss_kib,
                        at_open.unwrap_or(0),
                        (at_open.unwrap_or(0) as f64 - base.rss_kib as f64) / g(&ctx.opened).max(1) as f64,
                        first.t,
                        first.rss_kib,
                        last.t,
                        last.rss_kib,
                        args.flat_after,
                        min,
                        max,
                        args.flat_after,
                        grow_end,
                        100.0 * grow_end as f64 / first.rss_kib.max(1) as f64,
                        grow_max,
                        pct,
                        flat.len()
                    );
                    // The inspector's per-tunnel frame rings fill during the first
                    // 16 frames of each direction (about 25 s at the default
                    // rate): the second half shows the steady state on its own.
                    let half: Vec<u64> = flat
                        .iter()
                        .filter(|s| s.t >= args.secs / 2.0)
                        .map(|s| s.rss_kib)
                        .collect();
                    if let (Some(&h0), Some(&hmax)) = (half.first(), half.iter().max()) {
                        println!(
                            "proxy rss over the second half ({:.0}-{:.0} s): {} -> max {} KiB ({:+} KiB)",
                            args.secs / 2.0,
                            args.secs,
                            h0,
                            hmax,
                            hmax as i64 - h0 as i64
                        );
                    }
                    check(
                        pct <= args.rss_growth_pct,
                        format!(
                            "proxy rss grew {pct:.1}% after {} s (limit {}%)",
                            args.flat_after, args.rss_growth_pct
                        ),
                    );
                }
                _ => check(false, "no memory samples after --flat-after".into()),
            }
            let peak = o.samples.iter().map(|s| s.fds).max().unwrap_or(0);
            let after = o.after_close.map(|s| s.fds);
            println!(
                "proxy descriptors: baseline {}, peak {} (baseline + {}), after close {} ({}); rss after close {} KiB",
                base.fds,
                peak,
                peak.saturating_sub(base.fds),
                after.map_or("-".into(), |a| a.to_string()),
                match o.fd_back_secs {
                    Some(s) => format!("back to baseline {s:.1} s after the last tunnel ended"),
                    None => format!("NOT back to baseline within {} s", args.fd_wait),
                },
                o.after_close.map_or("-".into(), |s| s.rss_kib.to_string()),
            );
            check(
                o.fd_back_secs.is_some(),
                "the proxy's descriptors did not return to the baseline".into(),
            );
        }
    }
    if let Some(st) = exit {
        println!("proxy exit after SIGTERM: {st}");
        check(st.success(), format!("the proxy exited with {st}"));
    }
    let errors = ctx.errors.lock().expect("not poisoned");
    if !errors.is_empty() {
        println!(
            "errors ({} in all, the first {}):",
            g(&ctx.error_count),
            errors.len()
        );
        for e in errors.iter() {
            println!("  {e}");
        }
    }
    if fails.is_empty() {
        println!("checks: all passed");
        true
    } else {
        println!("checks FAILED:");
        for f in &fails {
            println!("  - {f}");
        }
        false
    }
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
