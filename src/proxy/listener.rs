//! Accept loops. Each accepted client gets its own task at once: limits are checked,
//! the TLS handshake (with its timeout) and the HTTP connection all run inside that
//! task, so a client that stalls or sends garbage affects no one else.

use std::sync::Arc;
use std::time::Duration;

use super::tlsio::Acceptor as TlsAcceptor;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::SockRef;
use tokio::net::TcpListener;
use tracing::{debug, warn, Instrument};

use super::admission::ConnSlot;
use super::headtimer::{FramingConflict, HeadTimer, InFlight};
use super::registry::Registry;
use super::request::{handle, ConnInfo};
use super::stream::{tune_socket, Stream, Tuning};

/// hyper refuses read buffers under 8 KiB.
const HYPER_MIN_BUF: usize = 8192;

/// A bound listener ready to serve.
pub struct Bound {
    pub name: Arc<str>,
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// Becomes true when a reload removes the listener.
    pub stopped: tokio::sync::watch::Receiver<bool>,
}

/// Accepts until shutdown, or until a reload removes the listener; the
/// connections accepted run on either way.
pub async fn serve(core: Arc<Registry>, mut bound: Bound) {
    let mut shutdown = core.shutdown_signal();
    let mut accept_errors = crate::throttle::Throttle::new(Duration::from_secs(1));
    let mut tuning = AcceptTuning::default();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = super::registry::shutdown_begun(&mut shutdown) => break,
            _ = removed(&mut bound.stopped) => break,
            res = bound.listener.accept() => match res {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning,
                    // and log once a second with a count, not hundreds of lines.
                    if let Some(suppressed) = accept_errors.allow(std::time::Instant::now()) {
                        warn!(listener = %bound.name, error = %e, suppressed, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = core.admit(super::registry::peer_ip(&peer)) else {
            debug!(%peer, "connection limit reached; closing");
            drop(tcp);
            continue;
        };
        // One config for the whole connection set-up (a reload swaps it meanwhile).
        let config = core.config();
        tuning.accepted(&bound, &tcp, peer, &config.timeouts);
        let span = conn_span(peer, &bound.name);
        let core = core.clone();
        let name = bound.name.clone();
        let tls = bound.tls.clone();
        tokio::spawn(
            // The slot moves into the connection: a tunnel made on it keeps it.
            serve_conn(core, config, name, tls, tcp, peer, Arc::new(slot)).instrument(span),
        );
    }
}

/// Who sets a new connection's socket options: the listening socket, which Linux
/// copies to every socket it accepts, once it has what the configuration asks; the
/// connection itself until then, and when the listener refuses.
#[derive(Default)]
struct AcceptTuning {
    /// What the listening socket passes on (`None`: not tuned yet, or it refuses).
    passed_on: Option<Tuning>,
    listener_refuses: bool,
    /// Accepts still to tune on their own after the listener was (re)tuned: those
    /// already waiting in its queue then were made with its earlier options, and
    /// Linux queues at most a backlog plus one.
    queued_before: usize,
}

impl AcceptTuning {
    /// `tcp` was just accepted from `bound`. The first connection, and the first
    /// after a reload that changed the keepalive settings, came with the listener's
    /// old options, as may those queued behind it: they are tuned on their own, and
    /// the listener is tuned for those that follow.
    fn accepted(
        &mut self,
        bound: &Bound,
        tcp: &tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        timeouts: &crate::config::Timeouts,
    ) {
        let wanted = Tuning::of(timeouts);
        if self.passed_on != Some(wanted) && !self.listener_refuses {
            match tune_socket(SockRef::from(&bound.listener), timeouts) {
                Ok(()) => {
                    self.passed_on = Some(wanted);
                    // This connection, and each that may wait behind it.
                    self.queued_before = 1 + super::shard::BACKLOG as usize + 1;
                }
                Err(e) => {
                    debug!(listener = %bound.name, error = %e, "cannot tune the listening socket; tuning each connection");
                    self.listener_refuses = true;
                }
            }
        }
        if self.passed_on != Some(wanted) || self.queued_before > 0 {
            self.queued_before = self.queued_before.saturating_sub(1);
            if let Err(e) = tune_socket(SockRef::from(tcp), timeouts) {
                debug!(%peer, error = %e, "cannot tune the connection's socket");
            }
        }
    }
}

/// Resolves once the listener is removed (or its reload side is gone).
async fn removed(stopped: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn serve_conn(
    core: Arc<Registry>,
    config: Arc<crate::config::Config>,
    listener: Arc<str>,
    tls: Option<TlsAcceptor>,
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    slot: Arc<ConnSlot>,
) {
    let timeouts = &config.timeouts;
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(acceptor) => {
            match tokio::time::timeout(timeouts.tls_handshake, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => Stream::ServerTls(Box::new(s)),
                Ok(Err(e)) => {
                    debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!("TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let h2 = matches!(&stream, Stream::ServerTls(s) if s.alpn_protocol() == Some(b"h2"));
    let in_flight = InFlight::default();
    let framing = FramingConflict::default();
    let info = Arc::new(ConnInfo {
        framing: framing.clone(),
        is_tls: stream.is_tls(),
        core: core.clone(),
        listener,
        client: peer,
        in_flight: in_flight.clone(),
        slot,
    });
    let limits = &config.limits;
    if h2 {
        return serve_h2(core, info, stream, limits, timeouts).await;
    }
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The head deadline is HeadTimer's (it answers 408); hyper's would only hang up.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(HYPER_MIN_BUF))
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let service = service_fn(move |req| handle(req, info.clone()));
    let conn = builder
        .serve_connection(
            TokioIo::new(HeadTimer::new(
                stream,
                in_flight,
                timeouts.request_head,
                limits.max_header_bytes.max(HYPER_MIN_BUF),
                framing,
            )),
            service,
        )
        .with_upgrades();
    tokio::pin!(conn);
    let mut shutdown = core.shutdown_signal();
    let res = tokio::select! {
        res = conn.as_mut() => res,
        _ = super::registry::shutdown_begun(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = res {
        debug!(error = %e, "client connection ended with an error");
    }
}

/// Serves an HTTP/2 connection (a TLS client that chose `h2`): plain requests, and
/// WebSocket handshakes as extended CONNECT (RFC 8441), which the server allows by
/// advertising SETTINGS_ENABLE_CONNECT_PROTOCOL. Each stream is one request.
async fn serve_h2(
    core: Arc<Registry>,
    info: Arc<super::request::ConnInfo>,
    stream: Stream,
    limits: &crate::config::Limits,
    timeouts: &crate::config::Timeouts,
) {
    let mut builder =
        hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        // A peer that stops answering PINGs is gone.
        .keep_alive_interval(Some(H2_PING_EVERY))
        .keep_alive_timeout(timeouts.request_head)
        .enable_connect_protocol()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_H2_STREAMS);
    let in_flight = info.in_flight.clone();
    let service = service_fn(move |req| handle(req, info.clone()));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut shutdown = core.shutdown_signal();
    // As an HTTP/1.1 connection gets `request_head` for each request, an HTTP/2 one
    // with nothing in flight (no request, no tunnel) for that long is closed, so an
    // idle client does not hold its place under the connection limits.
    let idle_limit = timeouts.request_head;
    let (mut seen, mut since) = (usize::MAX, tokio::time::Instant::now());
    let res = loop {
        tokio::select! {
            res = conn.as_mut() => break res,
            _ = super::registry::shutdown_begun(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            _ = tokio::time::sleep(idle_limit / 4) => {
                let now = tokio::time::Instant::now();
                if in_flight.started() != seen || !in_flight.idle() {
                    (seen, since) = (in_flight.started(), now);
                } else if now - since >= idle_limit {
                    debug!("HTTP/2 connection idle for {idle_limit:?}: closing");
                    conn.as_mut().graceful_shutdown();
                    break conn.await;
                }
            }
        }
    };
    if let Err(e) = res {
        debug!(error = %e, "HTTP/2 client connection ended with an error");
    }
}

/// How often an HTTP/2 client is PINGed to see it is still there.
const H2_PING_EVERY: Duration = Duration::from_secs(20);

/// Streams (requests and WebSocket tunnels) one HTTP/2 connection may carry at once.
const MAX_H2_STREAMS: u32 = 256;

/// The span a client connection's log lines are in.
pub(crate) fn conn_span(peer: std::net::SocketAddr, listener: &str) -> tracing::Span {
    tracing::info_span!("conn", %peer, listener = %listener)
}
