//! The HTTP admin API, for running headless: JSON state, Prometheus metrics, a live
//! event stream, and the dashboard's controls over HTTP.
//!
//! Like the dashboard, it sees the proxy only through a snapshot function, a counters
//! function, the event bus and the control handle (all in [`Api`]); it never touches proxy internals, and
//! control flows one way: a POST becomes a [`Command`](crate::control::Command) and its
//! [`Outcome`](crate::control::Outcome) becomes the answer.
//!
//! - `routes`: method and path → endpoint (pure, unit-tested).
//! - `guard`: refuses requests from web pages (foreign `Origin`, rebound `Host`).
//! - `handlers`: the bearer token check and each endpoint's handler.
//! - `json`: the JSON shapes of backends, tunnels and the whole state; `totals`:
//!   those of the totals and of a reload's changes.
//! - `events`: the JSON shape of each bus event on `/api/events`.
//! - `stream`: the `/api/events` WebSocket.
//! - `metrics`: the Prometheus exposition.
//! - `reply`: JSON and error responses.
//!
//! [`serve`] takes an already-bound listener and a shutdown future, so tests bind
//! `127.0.0.1:0`; [`spawn`] runs it in a task that can be stopped.

mod events;
mod guard;
mod handlers;
mod health;
mod inject;
mod json;
mod metrics;
mod reply;
mod routes;
mod stream;
mod totals;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, warn, Instrument};

use crate::control::{ControlHandle, CLOSE_SERVICE_RESTART};
use crate::event::{CapturedMessage, Counters, Event, Snapshot, TunnelId};

/// Admin connections open at once (event streams included); more are refused.
pub const MAX_CONNECTIONS: usize = 64;
/// Time for a client to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper refuses read buffers under 8 KiB; admin requests are small.
const MAX_BUF: usize = 16 * 1024;
/// Request headers an admin client may send.
const MAX_HEADERS: usize = 64;
/// On shutdown, how long open requests and event streams get to finish.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A `'static` snapshot source (see `ProxyHandle::snapshot_source`).
pub type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;
/// A `'static` source of the proxy's counters (see `ProxyHandle::counters_source`).
pub type CountersFn = Arc<dyn Fn() -> Counters + Send + Sync>;
/// A `'static` event bus subscription (see `ProxyHandle::subscribe_source`).
pub type SubscribeFn = Arc<dyn Fn() -> broadcast::Receiver<Event> + Send + Sync>;

/// Everything the admin API knows of the proxy.
#[derive(Clone)]
pub struct Api {
    pub(crate) snapshot: SnapshotFn,
    pub(crate) counters: CountersFn,
    pub(crate) subscribe: SubscribeFn,
    pub(crate) control: ControlHandle,
    /// Close code and reason a kill sends when the request names none.
    pub(crate) kill_close: (u16, String),
    /// When set, every request needs `Authorization: Bearer TOKEN`.
    pub(crate) token: Option<String>,
    /// Host names accepted besides IP literals and `localhost` (see `guard`).
    pub(crate) hosts: Arc<[String]>,
    /// Which header values are served redacted.
    pub(crate) redact: Arc<json::Redact>,
    /// Where `POST /api/upgrade` asks for a binary upgrade; None where the process
    /// cannot do one (the dashboard runs in its terminal, or the proxy is embedded).
    pub(crate) upgrade: Option<mpsc::Sender<UpgradeRequest>>,
    /// A live tunnel's captured messages (`GET /api/tunnels/{id}/messages`).
    pub(crate) messages: MessagesFn,
    /// A search of every live tunnel's captured messages (`GET /api/search`).
    pub(crate) search: SearchFn,
    /// What `GET /readyz` judges by.
    pub(crate) readiness: ReadinessFn,
    /// `[admin] name`: how `tunnelscope top` labels this instance.
    pub(crate) name: Option<String>,
    /// `[admin] tls`: serve over TLS with this config.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A `'static` source of what readiness depends on (see
/// `ProxyHandle::readiness_source`).
pub type ReadinessFn = Arc<dyn Fn() -> crate::event::Readiness + Send + Sync>;

/// A `'static` search of captured messages (see `ProxyHandle::search_source`).
pub type SearchFn = Arc<dyn Fn(&str) -> Vec<crate::event::SearchHit> + Send + Sync>;

/// A `'static` source of a tunnel's captured messages (see
/// `ProxyHandle::messages_source`); None when the tunnel is not live.
pub type MessagesFn = Arc<dyn Fn(TunnelId) -> Option<Vec<CapturedMessage>> + Send + Sync>;

/// A request for a binary upgrade, answered with the new process's PID or why it
/// failed (the old process then serves on).
pub type UpgradeRequest = tokio::sync::oneshot::Sender<Result<u32, String>>;

impl Api {
    /// An API without a token whose kills send 1012 "service restart".
    pub fn new(
        snapshot: impl Fn() -> Snapshot + Send + Sync + 'static,
        counters: impl Fn() -> Counters + Send + Sync + 'static,
        subscribe: impl Fn() -> broadcast::Receiver<Event> + Send + Sync + 'static,
        control: ControlHandle,
    ) -> Api {
        let snapshot: SnapshotFn = Arc::new(snapshot);
        let backends = snapshot.clone();
        Api {
            // Without a proxy to ask whether it is shutting down: the backends only.
            readiness: Arc::new(move || crate::event::Readiness {
                shutting_down: false,
                backends: backends().backends,
            }),
            snapshot,
            name: None,
            tls: None,
            counters: Arc::new(counters),
            subscribe: Arc::new(subscribe),
            control,
            kill_close: (CLOSE_SERVICE_RESTART, "service restart".into()),
            token: None,
            hosts: Arc::from(Vec::new()),
            redact: Arc::new(json::Redact::default()),
            upgrade: None,
            messages: Arc::new(|_| None),
            search: Arc::new(|_| Vec::new()),
        }
    }

    /// Serves over TLS (`[admin] tls`). HTTP/1.1 only: the event stream is an
    /// HTTP/1.1 upgrade.
    pub fn with_tls(mut self, config: Option<Arc<rustls::ServerConfig>>) -> Api {
        self.tls = config.map(|c| {
            let mut c = (*c).clone();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(c))
        });
        self
    }

    /// This instance's name, in the state and the event stream's snapshot.
    pub fn with_name(mut self, name: Option<String>) -> Api {
        self.name = name;
        self
    }

    /// `GET /readyz` judges by this (shutting down, the backends).
    pub fn with_readiness(
        mut self,
        readiness: impl Fn() -> crate::event::Readiness + Send + Sync + 'static,
    ) -> Api {
        self.readiness = Arc::new(readiness);
        self
    }

    /// `GET /api/tunnels/{id}/messages` reads captured messages from here.
    pub fn with_messages(
        mut self,
        messages: impl Fn(TunnelId) -> Option<Vec<CapturedMessage>> + Send + Sync + 'static,
    ) -> Api {
        self.messages = Arc::new(messages);
        self
    }

    /// `GET /api/search` searches with this.
    pub fn with_search(
        mut self,
        search: impl Fn(&str) -> Vec<crate::event::SearchHit> + Send + Sync + 'static,
    ) -> Api {
        self.search = Arc::new(search);
        self
    }

    /// `POST /api/upgrade` sends its requests here.
    pub fn with_upgrade(mut self, upgrade: mpsc::Sender<UpgradeRequest>) -> Api {
        self.upgrade = Some(upgrade);
        self
    }

    /// Host names (with or without a port) accepted in `Host` besides IP literals and
    /// `localhost` (`[admin] hosts`).
    pub fn with_hosts(mut self, hosts: &[String]) -> Api {
        self.hosts = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }

    /// Serves these headers' values (besides `Authorization`, `Proxy-Authorization`,
    /// `Cookie` and `Set-Cookie`) as `«redacted, N bytes»`; `reveal` serves every
    /// value as it is (`[inspect] redact` and `reveal_secrets`).
    pub fn with_redaction(mut self, extra: &[String], reveal: bool) -> Api {
        self.redact = Arc::new(json::Redact::new(extra, reveal));
        self
    }

    /// The Close a kill sends by default (the proxy's `kill_close_code/_reason`).
    pub fn with_kill_close(mut self, code: u16, reason: impl Into<String>) -> Api {
        self.kill_close = (code, reason.into());
        self
    }

    /// Requires `Authorization: Bearer TOKEN` on every request when `Some`.
    pub fn with_token(mut self, token: Option<String>) -> Api {
        self.token = token;
        self
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub api: Api,
    /// Events `/api/events` streams missed by falling behind, all streams together.
    pub lagged: std::sync::atomic::AtomicU64,
    /// Refused requests (web pages) are logged at most once a second.
    pub refusal_log: std::sync::Mutex<crate::throttle::Throttle>,
    /// Flips to true once the server stops; event streams watch it.
    pub stop: watch::Sender<bool>,
}

impl Shared {
    /// Tunnel and traffic totals now, from the proxy's exact counters.
    pub fn totals(&self) -> json::Totals {
        let lagged = self.lagged.load(std::sync::atomic::Ordering::Relaxed);
        json::Totals::new(&(self.api.counters)(), lagged)
    }
}

/// One connection's context. An upgraded event stream keeps it too, so it keeps the
/// connection's place under [`MAX_CONNECTIONS`] and holds the server's shutdown open.
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    pub peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
    /// Dropped when the connection and its stream end; the server waits for all.
    _done: mpsc::Sender<()>,
}

/// Serves the admin API on `listener` until `shutdown` resolves, then lets open
/// requests and event streams finish (event streams get Close 1001) for a moment.
pub async fn serve(listener: TcpListener, api: Api, shutdown: impl Future<Output = ()>) {
    let shared = Arc::new(Shared {
        api,
        lagged: Default::default(),
        refusal_log: std::sync::Mutex::new(crate::throttle::Throttle::new(Duration::from_secs(1))),
        stop: watch::channel(false).0,
    });
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    let mut accept_errors = crate::throttle::Throttle::new(Duration::from_secs(1));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            res = listener.accept() => match res {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    if let Some(suppressed) = accept_errors.allow(std::time::Instant::now()) {
                        warn!(error = %e, suppressed, "admin API accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            debug!(%peer, "admin API connection limit reached; closing");
            continue;
        };
        let ctx = Arc::new(Ctx {
            shared: shared.clone(),
            peer,
            _permit: permit,
            _done: done_tx.clone(),
        });
        let span = tracing::debug_span!("admin", %peer);
        match shared.api.tls.clone() {
            None => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve_conn(tcp, ctx).instrument(span))
            }
            Some(tls) => tokio::spawn(
                async move {
                    let _ = tcp.set_nodelay(true);
                    match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_conn(stream, ctx).await,
                        Ok(Err(e)) => debug!(error = %e, "admin API TLS handshake failed"),
                        Err(_) => debug!("admin API TLS handshake timed out"),
                    }
                }
                .instrument(span),
            ),
        };
    }
    shared.stop.send_replace(true);
    drop(done_tx);
    // recv() returns None once every connection and stream has dropped its sender.
    if tokio::time::timeout(STOP_GRACE, done_rx.recv())
        .await
        .is_err()
    {
        debug!("admin API connections still open after the grace; leaving them");
    }
}

async fn serve_conn<S>(tcp: S, ctx: Arc<Ctx>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut stop = ctx.shared.stop.subscribe();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BUF)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let service = {
        let ctx = ctx.clone();
        service_fn(move |req| handlers::handle(req, ctx.clone()))
    };
    let conn = builder
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(conn);
    let res = tokio::select! {
        res = conn.as_mut() => res,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        debug!(error = %e, "admin connection ended with an error");
    }
}

/// Resolves once the server stops (without holding the watch guard across awaits).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The admin API running in its own task. Dropping it stops the server too, without
/// waiting for it.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Runs [`serve`] in a task until [`Running::stop`].
pub fn spawn(listener: TcpListener, api: Api) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, api, async {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    /// Stops accepting, lets open requests finish, and waits for the task.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
