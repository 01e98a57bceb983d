//! The tunnel: after the 101, two byte pumps relay everything unchanged between the
//! client and the backend. Each pump hands what it forwards to a frame [`Scanner`](super::frame::Scanner)
//! (counting only; frames are never decoded or re-encoded). Buffers are borrowed from
//! [`bufpool`] only while bytes are in flight, so an idle tunnel holds none.
//!
//! Closing on purpose (kill, close command, idle timeout, shutdown) stops each
//! direction exactly at a frame boundary, sends the client an unmasked Close frame
//! and the backend a masked one, gives both a short grace to answer, then tears down.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::broadcast;

use super::bufpool;
pub use super::shared::TunnelShared;
use super::stream::Stream;
use crate::event::{Dir, Event, Limit, Side, TunnelId};
use crate::sync::lock;

/// Settings the relay needs.
#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    /// Silence in both directions before the tunnel is closed; zero means never.
    pub idle: Duration,
    pub close_grace: Duration,
    pub strict: bool,
    /// Give the client a Close 1011 when its backend vanishes without one.
    pub close_on_backend_loss: bool,
}

/// How a tunnel ended.
#[derive(Debug, Clone)]
pub struct Ending {
    pub side: Side,
    pub code: Option<u16>,
    pub reason: String,
    /// An I/O error that ended it, if any.
    pub error: Option<String>,
    /// The limit that ended it, if one did.
    pub limit: Option<Limit>,
}

/// Bytes in flight in one direction.
enum Chunk {
    Pooled(Box<[u8]>),
    /// Bytes hyper had already read past the HTTP head.
    Pre(Bytes),
}

impl Chunk {
    fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Pooled(b) => b,
            Chunk::Pre(b) => b,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward everything.
    Relay,
    /// Forward up to the end of the current frame, then stop.
    ToBoundary,
    /// Read and count, forward nothing (after the proxy sent its Close).
    Discard,
}

/// One direction: read from one stream, scan, write to the other.
struct Half {
    dir: Dir,
    chunk: Option<Chunk>,
    pos: usize,
    end: usize,
    eof: bool,
    shut: bool,
    stopped: bool,
    needs_flush: bool,
    /// The scanner has seen bytes the peer never received (strict mode withheld a
    /// violating frame, or a close on purpose stopped forwarding mid-chunk), so its
    /// state no longer says what the peer holds. `Some(false)`: the peer holds whole
    /// frames and no Close, so it can be sent one; `Some(true)`: it must not be (a
    /// Close was forwarded already, or it holds part of a frame).
    withheld: Option<bool>,
}

/// What stopped a direction.
enum Stop {
    /// The reader ended and the writer was shut down.
    Eof,
    /// At a frame boundary in [`Mode::ToBoundary`].
    Boundary,
    /// A protocol violation strict mode acts on, or a limit gone over (in
    /// [`Ctx::policy`]).
    Policy,
    /// The backend's connection ended (EOF or an error) at a frame boundary without a
    /// Close frame: the backend process went away. The client is owed a Close.
    BackendGone,
}

/// Why the proxy stops a tunnel on its own accord, from what one side sent.
#[derive(Debug, Clone, Copy)]
struct Policy {
    /// The direction the offending frame went.
    dir: Dir,
    /// The Close code that calls for (the sender's, for a limit).
    code: u16,
    limit: Option<Limit>,
}

impl Policy {
    /// The Close frames (code, reason) for the client and for the backend: for a
    /// violation the same for both; for a limit, the sender gets the limit's code
    /// and the other side 1001.
    fn closes(&self) -> ((u16, &'static str), (u16, &'static str)) {
        match self.limit {
            None => {
                let reason = match self.code {
                    1007 => "invalid payload data",
                    _ => "protocol error",
                };
                ((self.code, reason), (self.code, reason))
            }
            Some(limit) => {
                let sender = (limit.close_code(), limit.reason());
                let other = (1001, limit.reason());
                match self.dir {
                    Dir::ClientToBackend => (sender, other),
                    Dir::BackendToClient => (other, sender),
                }
            }
        }
    }
}

/// The Close the client gets when its backend vanished without one: 1011 ("the
/// server encountered an unexpected condition"), so it can reconnect elsewhere.
pub const BACKEND_GONE: (u16, &str) = (1011, "backend went away");

struct Ctx<'a> {
    shared: &'a TunnelShared,
    bus: &'a broadcast::Sender<Event>,
    strict: bool,
    last_active: Instant,
    /// The wall clock at one monotonic instant: frames are stamped from the one clock
    /// read each chunk costs (`last_active`), not from a second one. (A step of the
    /// wall clock during the tunnel's life is not followed.)
    anchor: (Instant, SystemTime),
    first_close: Option<Side>,
    /// The error the backend's connection ended with, when it vanished.
    backend_error: Option<io::Error>,
    /// The first violation strict mode acts on, or limit gone over.
    policy: Option<Policy>,
    close_on_backend_loss: bool,
}

impl Half {
    fn new(dir: Dir, pre: Bytes) -> Self {
        let end = pre.len();
        Self {
            dir,
            chunk: (!pre.is_empty()).then_some(Chunk::Pre(pre)),
            pos: 0,
            end,
            eof: false,
            shut: false,
            stopped: false,
            needs_flush: false,
            withheld: None,
        }
    }

    fn side(&self) -> Side {
        match self.dir {
            Dir::ClientToBackend => Side::Client,
            Dir::BackendToClient => Side::Backend,
        }
    }

    /// A write failed: the side this direction writes to vanished.
    fn writer_failed(&self, e: io::Error, ctx: &mut Ctx<'_>) -> io::Error {
        ctx.first_close.get_or_insert(match self.dir {
            Dir::ClientToBackend => Side::Backend,
            Dir::BackendToClient => Side::Client,
        });
        e
    }

    /// Whether this is the backend-to-client direction, its reader (the backend) has
    /// gone without a Close while the client had not begun to close (no Close frame,
    /// no EOF from it), and the client can still be given one: at a frame boundary,
    /// nothing left to write, the client's side not shut.
    fn backend_gone(&self, mode: Mode, ctx: &Ctx<'_>) -> bool {
        if !ctx.close_on_backend_loss
            || self.dir != Dir::BackendToClient
            || mode == Mode::Discard
            || self.shut
            || ctx.first_close != Some(Side::Backend)
        {
            return false;
        }
        let s = lock(ctx.shared.scanner(self.dir));
        self.pos >= self.end && s.at_boundary() && s.stats().close.is_none()
    }

    fn release(&mut self) {
        if let Some(Chunk::Pooled(b)) = self.chunk.take() {
            bufpool::give(b);
        }
        self.pos = 0;
        self.end = 0;
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut Stream,
        writer: &mut Stream,
        mode: Mode,
        ctx: &mut Ctx<'_>,
    ) -> Poll<io::Result<Stop>> {
        loop {
            if self.shut {
                return Poll::Ready(Ok(Stop::Eof));
            }
            if self.pos < self.end {
                let chunk = self.chunk.as_ref().expect("bytes pending without a chunk");
                let n =
                    ready!(Pin::new(&mut *writer)
                        .poll_write(cx, &chunk.as_slice()[self.pos..self.end]))
                    .map_err(|e| self.writer_failed(e, ctx))?;
                if n == 0 {
                    let e = io::ErrorKind::WriteZero.into();
                    return Poll::Ready(Err(self.writer_failed(e, ctx)));
                }
                self.pos += n;
                self.needs_flush = true;
                continue;
            }
            self.release();
            if self.needs_flush {
                ready!(Pin::new(&mut *writer).poll_flush(cx))
                    .map_err(|e| self.writer_failed(e, ctx))?;
                self.needs_flush = false;
            }
            if self.eof && self.backend_gone(mode, ctx) {
                // Don't pass the EOF on: the client gets a Close first.
                self.stopped = true;
                return Poll::Ready(Ok(match mode {
                    Mode::Relay => Stop::BackendGone,
                    _ => Stop::Boundary,
                }));
            }
            if self.eof {
                // Once Close frames went both ways the tunnel ends now, and closing a
                // plain socket sends the FIN: a shutdown first would only cost a
                // syscall per tunnel. TLS still gets its close_notify.
                let ending =
                    mode == Mode::Relay && !writer.is_tls() && closed_both_ways(ctx.shared);
                if mode != Mode::Discard && !ending {
                    ready!(Pin::new(&mut *writer).poll_shutdown(cx))
                        .map_err(|e| self.writer_failed(e, ctx))?;
                }
                self.shut = true;
                return Poll::Ready(Ok(Stop::Eof));
            }
            // Only once everything up to the boundary has been written.
            if self.stopped && mode != Mode::Discard {
                return Poll::Ready(Ok(match ctx.policy {
                    Some(_) if mode == Mode::Relay => Stop::Policy,
                    _ => Stop::Boundary,
                }));
            }
            if mode == Mode::Discard && self.peer_closed(ctx) {
                self.eof = true;
                continue;
            }
            if mode == Mode::ToBoundary && lock(ctx.shared.scanner(self.dir)).at_boundary() {
                self.stopped = true;
                return Poll::Ready(Ok(Stop::Boundary));
            }
            // Borrow a buffer only for this poll: if nothing is ready it goes back.
            let mut buf = bufpool::take();
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut *reader).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    bufpool::give(buf);
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    bufpool::give(buf);
                    // The side this direction reads from vanished (reset and the like).
                    ctx.first_close.get_or_insert(self.side());
                    if self.backend_gone(mode, ctx) {
                        self.eof = true;
                        ctx.backend_error = Some(e);
                        continue;
                    }
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) => {}
            }
            let n = rb.filled().len();
            if n == 0 {
                bufpool::give(buf);
                self.eof = true;
                ctx.first_close.get_or_insert(self.side());
                continue;
            }
            ctx.last_active = Instant::now();
            let stopped = self.scan(&buf[..n], mode, ctx);
            self.chunk = Some(Chunk::Pooled(buf));
            if let Some(policy) = stopped {
                // The offending frame is not forwarded, and nothing more from this
                // side is. What came before it is written first.
                self.stopped = true;
                ctx.policy.get_or_insert(policy);
            }
        }
    }

    /// Feeds what was read to the scanner and decides how much of it to forward.
    /// Returns why the tunnel must stop, when a limit or (in strict mode) a
    /// violation says so.
    fn scan(&mut self, data: &[u8], mode: Mode, ctx: &mut Ctx<'_>) -> Option<Policy> {
        let (at, wall) = ctx.anchor;
        let now = wall + ctx.last_active.saturating_duration_since(at);
        let (id, dir, bus) = (ctx.shared.id, self.dir, ctx.bus);
        let mut report = |violation: crate::event::Violation| {
            let _ = bus.send(Event::Violation { id, dir, violation });
        };
        let mut scanner = lock(ctx.shared.scanner(self.dir));
        let had_close = scanner.stats().close.is_some();
        let mut violated = None;
        let forward = match mode {
            Mode::Relay if ctx.strict || scanner.has_limits() => {
                match scanner.feed_checked(data, now, ctx.strict, &mut report) {
                    None => data.len(),
                    Some(stop) => {
                        // The whole frames before the offending one still go; the
                        // peer then holds only whole frames and can be sent a Close.
                        // If that frame began in an earlier chunk, the peer holds
                        // part of it and must not be sent a Close now.
                        violated = Some(Policy {
                            dir: self.dir,
                            code: stop.code,
                            limit: stop.limit,
                        });
                        self.withheld = Some(stop.frame_start.is_none_or(|(_, close)| close));
                        // Kept in step as far as the framing allows, to recognise
                        // the Close the peer answers with.
                        scanner.feed(&data[stop.scanned..], now, &mut report);
                        stop.frame_start.map_or(0, |(n, _)| n)
                    }
                }
            }
            Mode::Relay => {
                scanner.feed(data, now, &mut report);
                data.len()
            }
            Mode::ToBoundary => {
                let n = scanner.feed_to_boundary(data, now, &mut report);
                if scanner.at_boundary() {
                    self.stopped = true;
                    if n < data.len() {
                        // The rest is never forwarded, but the scanner must see it
                        // to stay in step, and to notice a Close the peer sent.
                        self.withheld = Some(scanner.stats().close.is_some());
                        scanner.feed(&data[n..], now, &mut report);
                    }
                }
                n
            }
            Mode::Discard => {
                scanner.feed(data, now, &mut report);
                0
            }
        };
        if !had_close && scanner.stats().close.is_some() {
            ctx.first_close.get_or_insert(self.side());
        }
        drop(scanner);
        self.pos = 0;
        self.end = forward;
        violated
    }

    /// After the proxy's Close, a peer that has sent its own Close (answering ours,
    /// or before it) has nothing more to say.
    fn peer_closed(&self, ctx: &Ctx<'_>) -> bool {
        lock(ctx.shared.scanner(self.dir)).stats().close.is_some()
    }
}

/// Both directions and their streams.
struct Relay {
    client: Stream,
    backend: Stream,
    up: Half,
    down: Half,
}

impl Relay {
    /// Polls both directions until both stop (or one fails).
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mode: Mode,
        ctx: &mut Ctx<'_>,
    ) -> Poll<io::Result<Stop>> {
        let up = self
            .up
            .poll(cx, &mut self.client, &mut self.backend, mode, ctx)?;
        let down = self
            .down
            .poll(cx, &mut self.backend, &mut self.client, mode, ctx)?;
        match (up, down) {
            (Poll::Ready(Stop::Policy), _) | (_, Poll::Ready(Stop::Policy)) => {
                Poll::Ready(Ok(Stop::Policy))
            }
            (_, Poll::Ready(Stop::BackendGone)) => Poll::Ready(Ok(Stop::BackendGone)),
            (Poll::Ready(a), Poll::Ready(b)) => Poll::Ready(Ok(match (a, b) {
                (Stop::Eof, Stop::Eof) => Stop::Eof,
                _ => Stop::Boundary,
            })),
            // Once Close frames went both ways the WebSocket is over: when one peer
            // hangs up, the other has nothing left to say, so don't wait for it.
            (Poll::Ready(Stop::Eof), _) | (_, Poll::Ready(Stop::Eof))
                if mode == Mode::Relay && closed_both_ways(ctx.shared) =>
            {
                Poll::Ready(Ok(Stop::Eof))
            }
            _ => Poll::Pending,
        }
    }

    async fn run(&mut self, mode: Mode, ctx: &mut Ctx<'_>) -> io::Result<Stop> {
        poll_fn(|cx| self.poll(cx, mode, ctx)).await
    }
}

/// Relays until the tunnel ends; returns how it ended.
pub async fn run(
    shared: &TunnelShared,
    client: Stream,
    client_pre: Bytes,
    backend: Stream,
    backend_pre: Bytes,
    settings: RelaySettings,
    bus: &broadcast::Sender<Event>,
) -> Ending {
    let mut relay = Relay {
        client,
        backend,
        up: Half::new(Dir::ClientToBackend, client_pre),
        down: Half::new(Dir::BackendToClient, backend_pre),
    };
    let started = Instant::now();
    let mut ctx = Ctx {
        shared,
        bus,
        strict: settings.strict,
        last_active: started,
        anchor: (started, SystemTime::now()),
        first_close: None,
        backend_error: None,
        policy: None,
        close_on_backend_loss: settings.close_on_backend_loss,
    };
    let idle = settings.idle;
    let mut idle_deadline = tokio::time::Instant::now() + idle;
    let mut gone = false;
    let (code, reason, by) = loop {
        tokio::select! {
            res = relay.run(Mode::Relay, &mut ctx) => match res {
                Ok(Stop::Policy) => {
                    let policy = ctx.policy.expect("a policy stop records why");
                    let (to_client, to_backend) = policy.closes();
                    let deadline = tokio::time::Instant::now() + settings.close_grace;
                    close_on_purpose(&mut relay, &mut ctx, deadline, to_client, to_backend).await;
                    let (code, reason) = match policy.dir {
                        Dir::ClientToBackend => to_client,
                        Dir::BackendToClient => to_backend,
                    };
                    return Ending {
                        side: Side::Proxy,
                        code: Some(code),
                        reason: reason.to_string(),
                        error: None,
                        limit: policy.limit,
                    };
                }
                Err(e) if ctx.first_close == Some(Side::Backend)
                    && relay.down.backend_gone(Mode::Relay, &ctx) =>
                {
                    // Writing to the backend failed first: it is gone all the same.
                    ctx.backend_error = Some(e);
                    relay.down.eof = true;
                    relay.down.stopped = true;
                    gone = true;
                    break (BACKEND_GONE.0, BACKEND_GONE.1.to_string(), None);
                }
                Ok(Stop::BackendGone) => {
                    gone = true;
                    break (BACKEND_GONE.0, BACKEND_GONE.1.to_string(), None);
                }
                Ok(_) => return natural_ending(shared, &ctx, None),
                Err(e) => return natural_ending(shared, &ctx, Some(e)),
            },
            _ = shared.wake.notified() => {
                if let Some(req) = lock(&shared.close).take() {
                    break (req.code, req.reason, req.by);
                }
            }
            _ = tokio::time::sleep_until(idle_deadline), if !idle.is_zero() => {
                let quiet = ctx.last_active.elapsed();
                if quiet >= idle {
                    break (1001, "idle timeout".to_string(), None);
                }
                idle_deadline = tokio::time::Instant::now() + (idle - quiet);
            }
        }
    };
    let mut deadline = tokio::time::Instant::now() + settings.close_grace;
    if let Some(by) = by {
        deadline = deadline.min(by.into());
    }
    let close = (code, reason.as_str());
    close_on_purpose(&mut relay, &mut ctx, deadline, close, close).await;
    Ending {
        // A vanished backend ended it; the code is the Close the client was given.
        side: if gone { Side::Backend } else { Side::Proxy },
        code: Some(code),
        reason,
        error: ctx.backend_error.map(|e| e.to_string()),
        limit: None,
    }
}

fn closed_both_ways(shared: &TunnelShared) -> bool {
    lock(&shared.c2b).stats().close.is_some() && lock(&shared.b2c).stats().close.is_some()
}

fn natural_ending(shared: &TunnelShared, ctx: &Ctx<'_>, error: Option<io::Error>) -> Ending {
    let side = ctx.first_close.unwrap_or(Side::Client);
    let dir = match side {
        Side::Backend => Dir::BackendToClient,
        _ => Dir::ClientToBackend,
    };
    let close = lock(shared.scanner(dir)).stats().close.clone();
    Ending {
        side,
        code: close.as_ref().and_then(|c| c.code),
        reason: close.map(|c| c.reason).unwrap_or_default(),
        error: error.map(|e| e.to_string()),
        limit: None,
    }
}

/// Stops both directions at a frame boundary, sends Close frames, waits for the
/// peers to answer, then shuts both down; all of it over by `deadline` (the close
/// grace, or less when shutdown's own deadline comes first).
async fn close_on_purpose(
    relay: &mut Relay,
    ctx: &mut Ctx<'_>,
    deadline: tokio::time::Instant,
    close_client: (u16, &str),
    close_backend: (u16, &str),
) {
    let shared = ctx.shared;
    // A shutdown that begins while this close runs may bring its deadline closer.
    let by = || match lock(&shared.close).as_ref().and_then(|r| r.by) {
        Some(b) => deadline.min(b.into()),
        None => deadline,
    };
    let _ = tokio::time::timeout_at(by(), relay.run(Mode::ToBoundary, ctx)).await;
    // A peer only gets our Close if its incoming direction is at a frame boundary,
    // is still open, and has not carried a Close already.
    let fits = |half: &Half| {
        let s = lock(shared.scanner(half.dir));
        !half.shut
            && half.pos >= half.end
            && match half.withheld {
                Some(close_forwarded) => !close_forwarded,
                None => s.at_boundary() && s.stats().close.is_none(),
            }
    };
    let to_client = fits(&relay.down);
    let to_backend = fits(&relay.up);
    let send = async {
        if to_client {
            relay
                .client
                .write_all(&close_frame(close_client.0, close_client.1, None))
                .await?;
            relay.client.flush().await?;
        }
        if to_backend {
            let mask = mask_key(shared.id);
            relay
                .backend
                .write_all(&close_frame(close_backend.0, close_backend.1, Some(mask)))
                .await?;
            relay.backend.flush().await?;
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout_at(by(), send).await;
    // Whatever was cut off mid-frame is dropped: after our Close nothing else may go.
    relay.up.release();
    relay.down.release();
    let _ = tokio::time::timeout_at(by(), relay.run(Mode::Discard, ctx)).await;
    let _ = tokio::time::timeout_at(by(), async {
        let _ = relay.client.shutdown().await;
        let _ = relay.backend.shutdown().await;
    })
    .await;
}

/// A Close frame: code, then the reason cut to fit a control frame (125 bytes) on a
/// character boundary; masked when sent to a server.
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    let mut frame = Vec::with_capacity(6 + payload.len());
    frame.push(0x88);
    match mask {
        None => {
            frame.push(payload.len() as u8);
            frame.extend_from_slice(&payload);
        }
        Some(key) => {
            frame.push(0x80 | payload.len() as u8);
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
    }
    frame
}

/// A masking key nobody can predict: RandomState is seeded from the OS per process
/// and mixed with the tunnel id and the time.
fn mask_key(id: TunnelId) -> [u8; 4] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(id);
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() as u32).to_be_bytes()
}

#[cfg(test)]
#[path = "tunnel_tests.rs"]
mod relay_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frame_to_client_is_unmasked_with_code_and_reason() {
        assert_eq!(
            close_frame(1012, "bye", None),
            [0x88, 5, 0x03, 0xF4, b'b', b'y', b'e']
        );
    }

    #[test]
    fn close_frame_to_backend_is_masked() {
        let f = close_frame(1001, "", Some([1, 2, 3, 4]));
        assert_eq!(f[..6], [0x88, 0x82, 1, 2, 3, 4]);
        assert_eq!([f[6] ^ 1, f[7] ^ 2], 1001u16.to_be_bytes());
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary_to_fit_a_control_frame() {
        let reason = "é".repeat(100);
        let f = close_frame(1000, &reason, None);
        assert!(f[1] as usize <= 125);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }
}
