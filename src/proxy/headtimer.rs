//! The request-head deadline. hyper's own `header_read_timeout` drops the connection
//! without a word; a client that is too slow to send its request head should get
//! `408 Request Timeout`. This wrapper sits between hyper and the client stream and
//! watches reads while no request is in flight (the connection is waiting for a
//! head); when the deadline passes it writes the 408 itself and reports EOF, so
//! hyper closes the connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n\r\nrequest head too slow\n";

/// Requests whose response is not finished yet; shared with the service.
#[derive(Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

/// Counts one request until dropped (moved into its response body).
pub struct InFlightGuard(Arc<AtomicUsize>);

impl InFlight {
    pub fn start(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    fn idle(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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
}

impl<S> HeadTimer<S> {
    pub fn new(inner: S, in_flight: InFlight, timeout: Duration) -> Self {
        Self {
            inner,
            in_flight,
            timeout,
            deadline: None,
            first: true,
            partial: false,
            timed_out: false,
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
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.partial = true;
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
