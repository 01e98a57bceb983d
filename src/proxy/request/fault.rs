//! Whose fault is it? The one place in the request path that decides whether a
//! failed exchange with a backend was caused by the client or by the backend.
//!
//! Only a backend's fault may count toward its `max_fails`, set its "last error", or
//! trigger a retry. A client that sends a malformed or truncated body, stalls its
//! upload, or goes away costs the backend nothing: it gets a 4xx (or a silent close)
//! and a log line naming it.
//!
//! The client's request body reaches hyper's client through [`ClientBody`], which
//! notes every client-side failure in a [`BodyWatch`] before hyper sees it. hyper then
//! reports that failure as a send error; [`Blame::of`] reads the watch first, so the
//! error is never mistaken for the backend's. The watch also says when the body has
//! been sent whole: the backend's response timer starts then, not while a slow
//! client is still uploading.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::Notify;
use tokio::time::Sleep;

/// Something the client did wrong while its request was on its way to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The body broke its own framing (a bad chunk size, say) or ended early.
    BadBody,
    /// No body bytes arrived for `timeouts.request_body`.
    BodyTimeout,
    /// The body passed `limits.max_body_bytes`.
    BodyTooLarge,
}

impl ClientFault {
    /// The answer the client gets (if it is still there to read it).
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadBody => StatusCode::BAD_REQUEST,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// Why, for the client and the log.
    pub fn reason(self) -> &'static str {
        match self {
            Self::BadBody => "request body is malformed or incomplete",
            Self::BodyTimeout => "request body too slow",
            Self::BodyTooLarge => "request body too large",
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::BadBody => 2,
            Self::BodyTimeout => 3,
            Self::BodyTooLarge => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            2 => Some(Self::BadBody),
            3 => Some(Self::BodyTimeout),
            4 => Some(Self::BodyTooLarge),
            _ => None,
        }
    }
}

impl fmt::Display for ClientFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ClientFault {}

/// The outcome of an exchange that failed, with the side that caused it.
#[derive(Debug)]
pub enum Blame {
    /// The client's doing: answer it, leave the backend alone.
    Client(ClientFault),
    /// The backend's doing: count it against the backend.
    Backend(String),
    /// The backend's connection closed before an answer began: on a reused idle
    /// connection that is no one's fault (the backend let it go), and an idempotent
    /// request may be sent again on a fresh one.
    Stale(String),
}

impl Blame {
    /// Decides who caused a failed `send_request` to a backend: the client if its
    /// body failed (whatever hyper says), else the backend.
    pub fn of(error: &hyper::Error, watch: &BodyWatch) -> Blame {
        match watch.fault() {
            Some(fault) => Blame::Client(fault),
            None if error.is_incomplete_message() || error.is_canceled() || error.is_closed() => {
                Blame::Stale(error.to_string())
            }
            None => Blame::Backend(error.to_string()),
        }
    }
}

const SENDING: u8 = 0;
const SENT: u8 = 1;

/// What became of a client's request body on its way to a backend; shared between
/// [`ClientBody`] (inside hyper's client) and the request task.
#[derive(Clone)]
pub struct BodyWatch(Arc<WatchInner>);

struct WatchInner {
    /// SENDING, SENT, or a [`ClientFault`] code.
    state: AtomicU8,
    settled: Notify,
}

impl BodyWatch {
    fn new() -> Self {
        Self(Arc::new(WatchInner {
            state: AtomicU8::new(SENDING),
            settled: Notify::new(),
        }))
    }

    /// The client's fault, if its body failed.
    pub fn fault(&self) -> Option<ClientFault> {
        ClientFault::from_code(self.0.state.load(Ordering::Acquire))
    }

    fn settle(&self, code: u8) {
        // The first outcome sticks.
        if self
            .0
            .state
            .compare_exchange(SENDING, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.0.settled.notify_waiters();
        }
    }

    /// Resolves once the body has been handed over whole, or has failed.
    pub async fn settled(&self) {
        loop {
            let notified = self.0.settled.notified();
            if self.0.state.load(Ordering::Acquire) != SENDING {
                return;
            }
            notified.await;
        }
    }

    /// Awaits a backend's response to a request carrying this body. The backend gets
    /// `timeout` from the moment the body has been sent (an early answer is taken
    /// whenever it comes); a client fault ends the wait at once.
    pub async fn response<T, F>(&self, send: F, timeout: Duration) -> Result<T, Waited>
    where
        F: Future<Output = hyper::Result<T>>,
    {
        tokio::pin!(send);
        let early = tokio::select! {
            biased;
            res = &mut send => Some(res),
            () = self.settled() => None,
        };
        let res = match early {
            Some(res) => res,
            None => {
                if let Some(fault) = self.fault() {
                    return Err(Waited::Failed(Blame::Client(fault)));
                }
                match tokio::time::timeout(timeout, send).await {
                    Ok(res) => res,
                    Err(_) => return Err(Waited::TimedOut),
                }
            }
        };
        res.map_err(|e| Waited::Failed(Blame::of(&e, self)))
    }
}

/// Why [`BodyWatch::response`] gave no response.
#[derive(Debug)]
pub enum Waited {
    /// The exchange failed; here is whose fault it was.
    Failed(Blame),
    /// The backend did not answer within its time after the body was sent.
    TimedOut,
}

/// A client's request body on its way to a backend: passes frames through, and notes
/// in its [`BodyWatch`] when it has been read whole or how the client failed.
pub struct ClientBody {
    /// None: an empty body (a request sent again).
    inner: Option<Incoming>,
    watch: BodyWatch,
    /// Longest wait for the next body bytes.
    timeout: Duration,
    stall: Option<Pin<Box<Sleep>>>,
    /// Bytes still allowed (None: no limit).
    allowance: Option<u64>,
}

impl ClientBody {
    /// Wraps a request body. `max_bytes` 0 means no limit.
    pub fn new(inner: Incoming, timeout: Duration, max_bytes: u64) -> (Self, BodyWatch) {
        let watch = BodyWatch::new();
        if inner.is_end_stream() {
            watch.settle(SENT);
        }
        let body = Self {
            inner: Some(inner),
            watch: watch.clone(),
            timeout,
            stall: None,
            allowance: (max_bytes > 0).then_some(max_bytes),
        };
        (body, watch)
    }

    /// An empty body, already sent whole (a bodyless request sent again).
    pub fn empty() -> (Self, BodyWatch) {
        let watch = BodyWatch::new();
        watch.settle(SENT);
        let body = Self {
            inner: None,
            watch: watch.clone(),
            timeout: Duration::ZERO,
            stall: None,
            allowance: None,
        };
        (body, watch)
    }

    fn fail(&mut self, fault: ClientFault) -> Poll<Option<Result<Frame<Bytes>, ClientFault>>> {
        self.watch.settle(fault.code());
        Poll::Ready(Some(Err(fault)))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientFault;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientFault>>> {
        let this = self.get_mut();
        if let Some(fault) = this.watch.fault() {
            return Poll::Ready(Some(Err(fault)));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.stall = None;
                if let (Some(left), Some(data)) = (this.allowance.as_mut(), frame.data_ref()) {
                    match left.checked_sub(data.len() as u64) {
                        Some(rest) => *left = rest,
                        None => return this.fail(ClientFault::BodyTooLarge),
                    }
                }
                if this.inner.as_ref().is_none_or(Body::is_end_stream) {
                    this.watch.settle(SENT);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "client request body failed");
                this.fail(ClientFault::BadBody)
            }
            Poll::Ready(None) => {
                this.watch.settle(SENT);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let stall = this
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => this.fail(ClientFault::BodyTimeout),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
