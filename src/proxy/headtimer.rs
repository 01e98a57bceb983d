//! The request-head deadline. hyper's own `header_read_timeout` drops the connection
//! without a word; a client that is too slow to send its request head should get
//! `408 Request Timeout`. This wrapper sits between hyper and the client stream and
//! watches reads while no request is in flight (the connection is waiting for a
//! head); when the deadline passes it writes the 408 itself and reports EOF, so
//! hyper closes the connection.
//!
//! While it waits for a head it also reads that head (with httparse, as hyper does)
//! for one thing hyper hides: a request carrying both `Content-Length` and
//! `Transfer-Encoding`. hyper follows RFC 9112 and drops the `Content-Length`, so the
//! service cannot see it; such a request is a smuggling attempt or a broken client,
//! and is refused with 400 before any backend is contacted (as nginx does). The
//! finding is passed on through [`FramingConflict`]. Heads read while an earlier
//! request is still in flight (pipelining) are not checked; hyper's own handling
//! (chunked wins, `Content-Length` dropped, connection closed after) covers them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n\r\nrequest head too slow\n";

/// Requests whose response is not finished yet; shared with the service.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Counts>);

#[derive(Default)]
struct Counts {
    /// Requests whose response is not finished.
    open: AtomicUsize,
    /// Requests ever started on this connection.
    started: AtomicUsize,
}

/// Counts one request until dropped (moved into its response body).
pub struct InFlightGuard(Arc<Counts>);

impl InFlight {
    pub fn start(&self) -> InFlightGuard {
        self.0.started.fetch_add(1, Ordering::AcqRel);
        self.0.open.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    pub(super) fn idle(&self) -> bool {
        self.0.open.load(Ordering::Acquire) == 0
    }

    pub(super) fn started(&self) -> usize {
        self.0.started.load(Ordering::Acquire)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Set when the last request head read had both `Content-Length` and
/// `Transfer-Encoding`; shared with the service, which takes it.
#[derive(Clone, Default)]
pub struct FramingConflict(Arc<AtomicBool>);

impl FramingConflict {
    /// Was a conflict seen since the last call? Clears it.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

/// Reads one request head as it arrives, copying only when it spans reads.
struct HeadCheck {
    /// The head so far, when it did not arrive in one read.
    buf: Vec<u8>,
    /// This head has been judged (or given up on); wait for the next one.
    done: bool,
    /// Requests started on the connection when this head began.
    judged_at: usize,
    /// Beyond this many buffered bytes hyper answers 431; stop looking.
    max_bytes: usize,
    found: FramingConflict,
}

/// Headers parsed on the stack; a head with more is parsed again on the heap.
const STACK_HEADERS: usize = 64;

impl HeadCheck {
    fn reset(&mut self, started: usize) {
        self.done = false;
        self.buf = Vec::new();
        self.judged_at = started;
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.done || bytes.is_empty() {
            return;
        }
        let spanned = !self.buf.is_empty();
        if spanned {
            self.buf.extend_from_slice(bytes);
        }
        let data = if spanned { &self.buf[..] } else { bytes };
        match judge(data) {
            Some(conflict) => {
                if conflict {
                    self.found.0.store(true, Ordering::Release);
                }
                self.done = true;
                self.buf = Vec::new();
            }
            None if data.len() > self.max_bytes => {
                self.done = true;
                self.buf = Vec::new();
            }
            None => {
                if !spanned {
                    self.buf.extend_from_slice(bytes);
                }
            }
        }
    }
}

/// `Some(true)`: a complete head with both `Content-Length` and
/// `Transfer-Encoding`; `Some(false)`: a complete head without, or one hyper will
/// refuse anyway; `None`: not complete yet.
fn judge(data: &[u8]) -> Option<bool> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut req = httparse::Request::new(&mut stack);
    match req.parse(data) {
        Ok(httparse::Status::Complete(_)) => Some(conflicting(req.headers)),
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => {
            let mut heap = vec![httparse::EMPTY_HEADER; 1024];
            let mut req = httparse::Request::new(&mut heap);
            match req.parse(data) {
                Ok(httparse::Status::Complete(_)) => Some(conflicting(req.headers)),
                Ok(httparse::Status::Partial) => None,
                Err(_) => Some(false),
            }
        }
        Err(_) => Some(false),
    }
}

fn conflicting(headers: &[httparse::Header<'_>]) -> bool {
    let has = |name: &str| headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    has("content-length") && has("transfer-encoding")
}

/// A client stream with a deadline on request heads.
pub struct HeadTimer<S> {
    inner: S,
    in_flight: InFlight,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    /// No request was ever served on this connection.
    first: bool,
    /// Bytes arrived since the connection last became idle.
    partial: bool,
    timed_out: bool,
    check: HeadCheck,
}

impl<S> HeadTimer<S> {
    /// `max_head_bytes`: the head size limit (hyper answers 431 beyond it);
    /// `framing`: where a head with both `Content-Length` and `Transfer-Encoding`
    /// is reported.
    pub fn new(
        inner: S,
        in_flight: InFlight,
        timeout: Duration,
        max_head_bytes: usize,
        framing: FramingConflict,
    ) -> Self {
        Self {
            inner,
            in_flight,
            timeout,
            deadline: None,
            first: true,
            partial: false,
            timed_out: false,
            check: HeadCheck {
                buf: Vec::new(),
                done: false,
                judged_at: 0,
                max_bytes: max_head_bytes,
                found: framing,
            },
        }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadTimer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Ok(()));
        }
        if !this.in_flight.idle() {
            this.deadline = None;
            this.first = false;
            this.partial = false;
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // A request was served since the head last judged: this is a new head.
        let started = this.in_flight.started();
        if this.check.judged_at != started {
            this.check.reset(started);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.partial = true;
                    this.check.feed(&buf.filled()[before..]);
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.timed_out = true;
        // An idle keep-alive connection is closed quietly; a client that started a
        // request, or never sent one, is told why.
        if this.first || this.partial {
            let _ = Pin::new(&mut this.inner).poll_write(cx, TIMEOUT_RESPONSE);
            let _ = Pin::new(&mut this.inner).poll_flush(cx);
        }
        tracing::debug!("request head timed out");
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadTimer<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
