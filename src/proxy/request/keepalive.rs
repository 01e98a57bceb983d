//! Keep-alive connections to backends for plain HTTP requests: once a response has
//! been read whole, its connection waits in an idle list (per event loop and
//! backend, at most the pool's `keepalive`, each for at most `keepalive_timeout`)
//! for the next request to that backend, as nginx's `keepalive` does. Each event
//! loop keeps its own list: its connections live on its reactor, and no lock is
//! shared between loops.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use crate::sync::lock;

use super::fault::ClientBody;
use crate::event::BackendId;

type Sender = SendRequest<ClientBody>;

thread_local! {
    /// Idle connections by backend, oldest first, with when they went idle.
    static IDLE: RefCell<HashMap<BackendId, Vec<(Sender, Instant)>>> = RefCell::new(HashMap::new());
}

/// The newest idle connection to `backend` not older than `timeout` and not seen
/// closed (the least likely to have been closed by the backend meanwhile). It may
/// still be finishing the response it carried: await its `ready()` before use.
pub(super) fn take(backend: &BackendId, timeout: Duration) -> Option<Sender> {
    IDLE.with_borrow_mut(|idle| {
        let list = idle.get_mut(backend)?;
        let now = Instant::now();
        while let Some((sender, since)) = list.pop() {
            if now.duration_since(since) < timeout && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    })
}

/// Keeps `sender` for the next request to `backend` if there is room: called as the
/// response it carried ends (the next request then finds it, however soon).
fn give_back(backend: BackendId, sender: Sender, max: usize, timeout: Duration) {
    IDLE.with_borrow_mut(|idle| {
        let now = Instant::now();
        // Drop what has expired or closed everywhere, so a backend no request goes
        // to any more (a reload removed it) does not keep sockets open.
        idle.retain(|_, list| {
            list.retain(|(s, since)| now.duration_since(*since) < timeout && !s.is_closed());
            !list.is_empty()
        });
        let list = idle.entry(backend).or_default();
        if list.len() < max {
            list.push((sender, now));
        }
    });
}

/// A backend's response body that hands its connection back for keep-alive once it
/// has been read whole (dropped early, the connection closes with it).
pub(super) struct Returning {
    inner: Incoming,
    back: Mutex<Option<(BackendId, Sender, usize, Duration)>>,
}

impl Returning {
    pub(super) fn new(
        inner: Incoming,
        backend: BackendId,
        sender: Sender,
        max: usize,
        timeout: Duration,
    ) -> Self {
        let body = Self {
            inner,
            back: Mutex::new(Some((backend, sender, max, timeout))),
        };
        // hyper never polls a body that is already over (HEAD, 204, 304, an empty
        // one): its connection goes back now.
        if body.inner.is_end_stream() {
            body.ended();
        }
        body
    }

    fn ended(&self) {
        if let Some((backend, sender, max, timeout)) = lock(&self.back).take() {
            give_back(backend, sender, max, timeout);
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            None => this.ended(),
            Some(Ok(_)) if this.inner.is_end_stream() => this.ended(),
            Some(Err(_)) => drop(lock(&this.back).take()),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
