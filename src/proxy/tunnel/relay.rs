//! One tunnel's two directions: each reads from one stream, shows what it read to
//! that direction's frame scanner, and writes what may be forwarded to the other
//! stream. Buffers are borrowed from [`bufpool`] only while bytes are in flight.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::broadcast;

pub(super) use super::close::Policy;
use super::closed_both_ways;
use super::ping::{self, find_pong, PingPayload};
use super::TunnelShared;
use crate::event::{Dir, Event, Side};
use crate::proxy::bufpool;
use crate::proxy::stream::Stream;
use crate::sync::lock;

/// Bytes in flight in one direction.
pub(super) enum Chunk {
    Pooled(Box<[u8]>),
    /// Bytes hyper had already read past the HTTP head.
    Pre(Bytes),
}

impl Chunk {
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Pooled(b) => b,
            Chunk::Pre(b) => b,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Forward everything.
    Relay,
    /// Forward up to the end of the current frame, then stop.
    ToBoundary,
    /// Read and count, forward nothing (after the proxy sent its Close).
    Discard,
}

/// One direction: read from one stream, scan, write to the other.
pub(super) struct Half {
    pub(super) dir: Dir,
    pub(super) chunk: Option<Chunk>,
    pub(super) pos: usize,
    pub(super) end: usize,
    pub(super) eof: bool,
    pub(super) shut: bool,
    pub(super) stopped: bool,
    pub(super) needs_flush: bool,
    /// The scanner has seen bytes the peer never received (strict mode withheld a
    /// violating frame, or a close on purpose stopped forwarding mid-chunk), so its
    /// state no longer says what the peer holds. `Some(false)`: the peer holds whole
    /// frames and no Close, so it can be sent one; `Some(true)`: it must not be (a
    /// Close was forwarded already, or it holds part of a frame).
    pub(super) withheld: Option<bool>,
    /// Bytes of the chunk not to forward (a swallowed Pong): writing jumps from the
    /// first offset to the second.
    pub(super) skip: Option<(usize, usize)>,
    /// When bytes last came from the side this direction reads (pings ask after it).
    pub(super) last_read: Instant,
}

/// What stopped a direction.
pub(super) enum Stop {
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

pub(super) struct Ctx<'a> {
    pub(super) shared: &'a TunnelShared,
    pub(super) bus: &'a broadcast::Sender<Event>,
    pub(super) strict: bool,
    pub(super) last_active: Instant,
    /// The wall clock at one monotonic instant: frames are stamped from the one clock
    /// read each chunk costs (`last_active`), not from a second one. (A step of the
    /// wall clock during the tunnel's life is not followed.)
    pub(super) anchor: (Instant, SystemTime),
    pub(super) first_close: Option<Side>,
    /// The error the backend's connection ended with, when it vanished.
    pub(super) backend_error: Option<io::Error>,
    /// The first violation strict mode acts on, or limit gone over.
    pub(super) policy: Option<Policy>,
    pub(super) close_on_backend_loss: bool,
    /// The proxy's Ping each direction's reader still owes a Pong for (by
    /// [`ping::dir_index`] of the reading direction).
    pub(super) pong: [Option<PingPayload>; 2],
    pub(super) capture: super::CaptureSettings,
}

impl Half {
    pub(super) fn new(dir: Dir, pre: Bytes) -> Self {
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
            skip: None,
            last_read: Instant::now(),
        }
    }

    pub(super) fn side(&self) -> Side {
        match self.dir {
            Dir::ClientToBackend => Side::Client,
            Dir::BackendToClient => Side::Backend,
        }
    }

    /// A write failed: the side this direction writes to vanished.
    pub(super) fn writer_failed(&self, e: io::Error, ctx: &mut Ctx<'_>) -> io::Error {
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
    pub(super) fn backend_gone(&self, mode: Mode, ctx: &Ctx<'_>) -> bool {
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

    pub(super) fn release(&mut self) {
        if let Some(Chunk::Pooled(b)) = self.chunk.take() {
            bufpool::give(b);
        }
        self.pos = 0;
        self.end = 0;
        self.skip = None;
    }

    pub(super) fn poll(
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
                let upto = match self.skip {
                    Some((from, to)) if from == self.pos => {
                        self.pos = to;
                        self.skip = None;
                        continue;
                    }
                    Some((from, _)) => from,
                    None => self.end,
                };
                let chunk = self.chunk.as_ref().expect("bytes pending without a chunk");
                let n = ready!(
                    Pin::new(&mut *writer).poll_write(cx, &chunk.as_slice()[self.pos..upto])
                )
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
            // An operator holds this direction: leave what the side sends in its
            // socket (the hold's release wakes the relay). A hold takes effect between
            // the side's messages (so the other way can still be spoken into), and is
            // let go once the tunnel is closing, so it never keeps a tunnel alive.
            if mode == Mode::Relay
                && ctx.first_close.is_none()
                && ctx.shared.held(self.dir)
                && lock(ctx.shared.scanner(self.dir)).between_messages()
            {
                return Poll::Pending;
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
            let (active_before, now) = (ctx.last_active, Instant::now());
            ctx.last_active = now;
            self.last_read = now;
            let stopped = self.scan(&buf[..n], mode, ctx);
            if self.skip == Some((0, n)) {
                // Only our Pong came: it proves the peer alive but is not activity
                // an idle timeout should see.
                ctx.last_active = active_before;
            }
            self.chunk = Some(Chunk::Pooled(buf));
            if let Some(policy) = stopped {
                // The offending frame is not forwarded, and nothing more from this
                // side is. What came before it is written first.
                self.stopped = true;
                ctx.policy.get_or_insert(policy);
            }
        }
    }

    /// Feeds what was read to the scanner and decides how much of it to forward
    /// (all but a Pong answering the proxy's Ping, which is swallowed). Returns why
    /// the tunnel must stop, when a limit or (in strict mode) a violation says so.
    pub(super) fn scan(&mut self, data: &[u8], mode: Mode, ctx: &mut Ctx<'_>) -> Option<Policy> {
        self.pos = 0;
        self.skip = None;
        let rd = ping::dir_index(self.dir);
        let pong = match (mode, ctx.pong[rd]) {
            (Mode::Relay, Some(want)) => {
                find_pong(lock(ctx.shared.scanner(self.dir)).made(), data, &want)
            }
            _ => None,
        };
        let Some((from, to)) = pong else {
            let (forward, policy) = self.scan_part(data, mode, ctx);
            self.end = forward;
            return policy;
        };
        let (forward, policy) = self.scan_part(&data[..from], mode, ctx);
        if policy.is_some() || forward < from {
            self.end = forward;
            return policy;
        }
        ctx.pong[rd] = None;
        let (after, policy) = self.scan_part(&data[to..], mode, ctx);
        self.skip = Some((from, to));
        self.end = to + after;
        policy
    }

    /// [`Half::scan`] for one stretch of the chunk: returns how much of it to
    /// forward and why the tunnel must stop, if it must.
    fn scan_part(&mut self, data: &[u8], mode: Mode, ctx: &mut Ctx<'_>) -> (usize, Option<Policy>) {
        let (at, wall) = ctx.anchor;
        let now = wall + ctx.last_active.saturating_duration_since(at);
        let (id, dir, bus) = (ctx.shared.id, self.dir, ctx.bus);
        let mut report = |violation: crate::event::Violation| {
            let _ = bus.send(Event::Violation { id, dir, violation });
        };
        let mut made = lock(ctx.shared.scanner(self.dir));
        let scanner = made.made();
        // Whole messages are kept while someone inspects (or always, or never); the
        // check is one atomic read per chunk.
        let c = &ctx.capture;
        let want = match c.mode {
            crate::config::CaptureMode::All => true,
            crate::config::CaptureMode::Watched => {
                c.watched.load(std::sync::atomic::Ordering::Relaxed)
            }
            crate::config::CaptureMode::Off => false,
        };
        if want != scanner.capturing() {
            let inflate = c.deflate.map(|(up, down)| match self.dir {
                Dir::ClientToBackend => up,
                Dir::BackendToClient => down,
            });
            scanner.set_capture(want.then(|| crate::proxy::frame::CaptureSpec {
                cap: c.message_bytes,
                budget: c.budget,
                inflate,
                global: c.global.clone(),
            }));
        }
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
        drop(made);
        (forward, violated)
    }

    /// After the proxy's Close, a peer that has sent its own Close (answering ours,
    /// or before it) has nothing more to say.
    pub(super) fn peer_closed(&self, ctx: &Ctx<'_>) -> bool {
        lock(ctx.shared.scanner(self.dir)).stats().close.is_some()
    }
}

/// Both directions and their streams.
pub(super) struct Relay {
    pub(super) client: Stream,
    pub(super) backend: Stream,
    pub(super) up: Half,
    pub(super) down: Half,
}

impl Relay {
    /// Polls both directions until both stop (or one fails).
    pub(super) fn poll(
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

    pub(super) async fn run(&mut self, mode: Mode, ctx: &mut Ctx<'_>) -> io::Result<Stop> {
        poll_fn(|cx| self.poll(cx, mode, ctx)).await
    }
}
