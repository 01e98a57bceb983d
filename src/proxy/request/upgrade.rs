//! A WebSocket upgrade: check the request, apply the route's Origin allow-list,
//! connect a backend, forward the handshake with rewritten headers, check its 101,
//! register the tunnel, and once both sides have handed over their connections,
//! relay until the end and write the access log line.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::{info, warn, Span};

use super::connect::{connect_backend, forward_context, hash_key};
use super::h2;
use super::plain::relay_response;
use super::tunnel_task::TunnelTask;
use super::{path_and_query, text, Body, ConnInfo};
use crate::config::WsLimits;
use crate::event::{Event, Handshake, Limit, Refusal};
use crate::proxy::admission::{ConnSlot, IpSlot};
use crate::proxy::headers;
use crate::proxy::headtimer::HeadTimer;
use crate::proxy::pool::{Backend, Lease, Pool};
use crate::proxy::registry::Registry;
use crate::proxy::stream::Stream;
use crate::proxy::tunnel::{self, RelaySettings, TunnelShared};

/// A WebSocket upgrade request, from its checks to the 101 (or the refusal).
pub(super) async fn upgrade(
    mut req: Request<Incoming>,
    conn: &ConnInfo,
    route: Arc<str>,
    limits: &WsLimits,
    pool: &Pool,
    ip_slot: &mut Option<IpSlot>,
) -> Response<Body> {
    // Over HTTP/2 the handshake is an extended CONNECT (RFC 8441): checked as such,
    // then given the HTTP/1.1 Upgrade headers the backend gets.
    let h2 = h2::is_websocket_connect(&req);
    let request_in = headers::to_headers(req.headers());
    if h2 {
        if let Some(answer) = h2::malformed(&req) {
            return answer;
        }
        h2::as_upgrade(&mut req);
    } else if let Some(answer) = malformed(&req, conn) {
        return answer;
    }
    let attempt = Attempt::begin(conn, route, path_and_query(&req), h2);
    let origin = req.headers().get(header::ORIGIN);
    if !limits.origin_allowed(origin.map(|o| o.to_str().unwrap_or("\u{fffd}"))) {
        // Cross-site WebSocket hijacking: refused before any backend is contacted.
        conn.core.limit_hit(Limit::Origin);
        return attempt.refuse(StatusCode::FORBIDDEN, Limit::Origin.reason().to_string());
    }
    let key = hash_key(pool, &req, conn);
    let (stream, lease) = match connect_backend(&conn.core, pool, key.as_deref()).await {
        Ok(ok) => ok,
        Err((status, reason)) => return attempt.refuse(status, reason),
    };
    attempt.chosen(lease.backend());
    let (mut resp, request_out) = match forward(&attempt, &req, pool, stream, &lease).await {
        Ok(answered) => answered,
        Err(answer) => return answer,
    };
    let (subprotocol, extensions, deflate) = headers::negotiated(resp.headers());
    let handshake = Handshake {
        request_in,
        request_out,
        response: headers::to_headers(resp.headers()),
        subprotocol,
        extensions,
        h2,
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let mut answer = Response::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    if h2 {
        *answer.headers_mut() = h2::answer_headers(resp.headers());
    } else {
        *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *answer.headers_mut() = headers::client_response_headers(resp.status(), resp.headers());
    }

    // Over HTTP/2 many tunnels share one connection: each takes a place of its own
    // under the connection limits, and counts as a stream in flight (the connection
    // is not idle while it runs).
    let slots = if h2 {
        match conn
            .core
            .admit(crate::proxy::registry::peer_ip(&conn.client))
        {
            Some(slot) => (Arc::new(slot), ip_slot.take(), Some(conn.in_flight.start())),
            None => {
                return attempt.refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "connection limit reached".to_string(),
                )
            }
        }
    } else {
        (conn.slot.clone(), ip_slot.take(), None)
    };
    let shared = attempt.into_tunnel(lease.backend(), handshake, deflate, limits);
    // The span is entered only where the tunnel logs, not around every poll of its
    // relay: entering and leaving a span on each wake-up was 1% of the relay's CPU.
    let span = tunnel_span(shared.id, conn.client);
    tokio::spawn(run_tunnel(
        conn.core.clone(),
        shared,
        lease,
        slots,
        client_upgrade,
        backend_upgrade,
        span,
    ));
    answer
}

/// The proxy's own answer (400/426) to an upgrade request that is not a valid one.
fn malformed(req: &Request<Incoming>, conn: &ConnInfo) -> Option<Response<Body>> {
    let rejection =
        headers::check_websocket_request(req.method(), req.version(), req.headers()).err()?;
    info!(client = %conn.client, reason = rejection.reason, "bad upgrade request");
    let mut resp = text(rejection.status, rejection.reason);
    if rejection.status == StatusCode::UPGRADE_REQUIRED {
        resp.headers_mut()
            .insert("sec-websocket-version", HeaderValue::from_static("13"));
    }
    Some(resp)
}

/// A handshake under way: its tunnel id, published as opened, and the way it is
/// refused (logged, published, answered) until it becomes a tunnel.
struct Attempt<'a> {
    conn: &'a ConnInfo,
    id: u64,
    /// The client came over HTTP/2 (an extended CONNECT).
    h2: bool,
    route: Arc<str>,
    path: String,
}

impl<'a> Attempt<'a> {
    fn begin(conn: &'a ConnInfo, route: Arc<str>, path: String, h2: bool) -> Attempt<'a> {
        let core = &conn.core;
        let id = core.next_id();
        if core.observed() {
            core.publish(Event::TunnelOpened {
                id,
                at: SystemTime::now(),
                client: conn.client,
                listener: conn.listener.clone(),
                route: route.clone(),
                path: path.clone(),
                idle_timeout: idle_of(&core.config()),
                instance: None,
            });
        }
        Attempt {
            conn,
            id,
            h2,
            route,
            path,
        }
    }

    fn refuse(&self, status: StatusCode, reason: String) -> Response<Body> {
        let (id, path) = (self.id, &self.path);
        warn!(tunnel = id, client = %self.conn.client, %path, status = status.as_u16(), %reason, "upgrade refused");
        self.conn.core.publish(Event::Refused {
            id,
            refusal: Refusal {
                status: status.as_u16(),
                reason: reason.clone(),
            },
        });
        text(status, &reason)
    }

    fn chosen(&self, backend: &Backend) {
        let core = &self.conn.core;
        if core.observed() {
            core.publish(Event::BackendChosen {
                id: self.id,
                backend: backend.id.clone(),
            });
        }
    }

    /// The handshake succeeded: the tunnel, registered (listed, and reachable by
    /// kill, close and shutdown) before the client has its 101 and before the
    /// handshake event, so whoever sees the handshake, or resyncs from a snapshot
    /// just after it, finds the tunnel listed.
    fn into_tunnel(
        self,
        backend: &Backend,
        handshake: Handshake,
        deflate: bool,
        limits: &WsLimits,
    ) -> Arc<TunnelShared> {
        let core = &self.conn.core;
        let inspect = &core.config().inspect;
        let shared = Arc::new(TunnelShared::new(
            self.id,
            SystemTime::now(),
            self.conn.client,
            self.conn.listener.clone(),
            self.route,
            self.path,
            backend.id.clone(),
            handshake,
            inspect.ring,
            inspect.preview_bytes,
            if deflate { 0b100 } else { 0 },
        ));
        shared.set_message_limits(limits.max_message_bytes, limits.max_message_rate);
        shared.set_idle_timeout(idle_of(&core.config()));
        core.register(shared.clone());
        if core.observed() {
            core.publish(Event::Handshake {
                id: shared.id,
                handshake: shared.handshake.clone(),
            });
        }
        shared
    }
}

/// Sends the handshake to the backend with the headers it is owed, and checks its
/// answer: a 101 with the right `Sec-WebSocket-Accept` (and the headers sent), or
/// the answer for the client. A backend that fails the handshake or takes too long
/// is blamed; one that declines (any other status) has its answer relayed.
async fn forward(
    attempt: &Attempt<'_>,
    req: &Request<Incoming>,
    pool: &Pool,
    stream: Stream,
    lease: &Lease,
) -> Result<(Response<Incoming>, crate::event::Headers), Response<Body>> {
    let backend = lease.backend();
    let out_headers = headers::backend_request_headers(
        req.headers(),
        &forward_context(attempt.conn, backend.authority()),
        &pool.config.host_header,
        true,
    );
    let mut out = Request::new(Empty::<Bytes>::new());
    *out.method_mut() = Method::GET;
    *out.version_mut() = Version::HTTP_11;
    *out.uri_mut() = attempt
        .path
        .parse()
        .unwrap_or_else(|_| "/".parse().expect("valid uri"));
    *out.headers_mut() = out_headers;
    let request_out = headers::to_headers(out.headers());

    let (mut sender, http_conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => {
                let reason = format!("backend {}: {e}", backend.id);
                return Err(attempt.refuse(StatusCode::BAD_GATEWAY, reason));
            }
        };
    tokio::spawn(http_conn.with_upgrades());
    let timeout = attempt.conn.core.config().timeouts.backend_response;
    let blame = |status, reason: String| {
        backend.record_failure(&reason, Instant::now());
        attempt.refuse(status, reason)
    };
    let resp = match tokio::time::timeout(timeout, sender.send_request(out)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            let reason = format!("backend {} failed the handshake: {e}", backend.id);
            return Err(blame(StatusCode::BAD_GATEWAY, reason));
        }
        Err(_) => {
            let reason = format!("backend {} did not answer within {timeout:?}", backend.id);
            return Err(blame(StatusCode::GATEWAY_TIMEOUT, reason));
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        // Over HTTP/2 any 2xx would tell the client its WebSocket is open.
        if attempt.h2 && status.is_success() {
            let reason = format!("backend {} answered {status} instead of 101", backend.id);
            return Err(blame(StatusCode::BAD_GATEWAY, reason));
        }
        info!(tunnel = attempt.id, backend = %backend.id, status = status.as_u16(), "backend declined the upgrade");
        attempt.conn.core.publish(Event::Refused {
            id: attempt.id,
            refusal: Refusal {
                status: status.as_u16(),
                reason: format!("backend answered {status}"),
            },
        });
        return Err(relay_response(resp));
    }
    let accept_ok = req
        .headers()
        .get("sec-websocket-key")
        .is_some_and(|k| headers::accept_matches(k, resp.headers().get("sec-websocket-accept")));
    if !accept_ok {
        let reason = format!("backend {} sent a wrong Sec-WebSocket-Accept", backend.id);
        return Err(blame(StatusCode::BAD_GATEWAY, reason));
    }
    Ok((resp, request_out))
}

/// Waits for both upgrades, relays until the end, reports the ending.
async fn run_tunnel(
    core: Arc<Registry>,
    shared: Arc<TunnelShared>,
    lease: Lease,
    slots: (
        Arc<ConnSlot>,
        Option<IpSlot>,
        Option<crate::proxy::headtimer::InFlightGuard>,
    ),
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    span: Span,
) {
    // Both hand-overs are due at once (the 101 is written, the backend's is in
    // hand); a client that never lets hyper finish writing the 101 is not waited
    // for past the backend-response time.
    // One config for the tunnel's settings (a reload swaps it meanwhile).
    let config = core.config();
    let wait = config.timeouts.backend_response;
    let Ok(joined) = tokio::time::timeout(wait, async { tokio::join!(client, backend) }).await
    else {
        span.in_scope(|| warn!(timeout = ?wait, "upgrade did not complete in time"));
        core.unregister(shared.id);
        return;
    };
    let (client, backend) = match joined {
        (Ok(c), Ok(b)) => (c, b),
        (c, b) => {
            let err = c
                .err()
                .or(b.err())
                .map(|e| e.to_string())
                .unwrap_or_default();
            span.in_scope(|| warn!(error = %err, "upgrade did not complete"));
            core.unregister(shared.id);
            return;
        }
    };
    let (Some((client, client_pre)), Some((backend, backend_pre))) =
        (unwrap_client(client), unwrap_upgraded(backend))
    else {
        span.in_scope(|| warn!("upgraded connection of an unexpected type"));
        core.unregister(shared.id);
        return;
    };
    lease.established();
    // A recorded tunnel captures everything from its start.
    let recorded = match &core.recorder {
        Some(r) if r.settings.wants(&shared.path, &shared.route) => {
            r.inbox.add(shared.clone());
            true
        }
        _ => false,
    };
    let settings = RelaySettings {
        idle: config.timeouts.idle,
        close_grace: config.timeouts.close_grace,
        strict: config.proxy.strict,
        close_on_backend_loss: config.proxy.close_on_backend_loss,
        capture: tunnel::CaptureSettings {
            mode: if recorded {
                crate::config::CaptureMode::All
            } else {
                config.inspect.capture
            },
            message_bytes: config.inspect.message_bytes,
            budget: config.inspect.tunnel_memory / 2,
            watched: core.watched.clone(),
            global: core.capture_budget.clone(),
            deflate: shared
                .handshake
                .extensions
                .as_deref()
                .and_then(crate::proxy::frame::capture::deflate_resets),
        },
        park_after: Some(config.timeouts.park_after).filter(|d| !d.is_zero()),
        ping: (!config.timeouts.ping_interval.is_zero()).then(|| tunnel::PingSettings {
            interval: config.timeouts.ping_interval,
            timeout: config.timeouts.ping_timeout,
            client: config.timeouts.ping.client(),
            backend: config.timeouts.ping.backend(),
        }),
    };
    // Not held for the tunnel's life: a long tunnel would keep every configuration
    // it outlived, and the task room for it.
    drop(config);
    let task = Box::new(TunnelTask {
        core,
        shared,
        _lease: lease,
        slots: Some(slots),
        settings,
    });
    let start = tunnel::Start::Fresh {
        client,
        client_pre,
        backend,
        backend_pre,
    };
    super::tunnel_task::relay(task, start).await;
}

/// The raw stream and any bytes hyper read past the HTTP head.
/// An HTTP/2 stream cannot be taken out of hyper: it is relayed through it.
fn unwrap_client(up: hyper::upgrade::Upgraded) -> Option<(Stream, Bytes)> {
    match up.downcast::<TokioIo<HeadTimer<Stream>>>() {
        Ok(parts) => Some((parts.io.into_inner().into_inner(), parts.read_buf)),
        Err(h2) => Some((Stream::H2(Box::new(TokioIo::new(h2))), Bytes::new())),
    }
}

/// The raw stream and any bytes hyper read past the HTTP head.
fn unwrap_upgraded(up: hyper::upgrade::Upgraded) -> Option<(Stream, Bytes)> {
    let parts = up.downcast::<TokioIo<Stream>>().ok()?;
    Some((parts.io.into_inner(), parts.read_buf))
}

/// The idle timeout a new tunnel gets, as observers are told it.
fn idle_of(config: &crate::config::Config) -> Option<std::time::Duration> {
    Some(config.timeouts.idle).filter(|d| !d.is_zero())
}

/// The span a tunnel's log lines are in.
pub(super) fn tunnel_span(id: crate::event::TunnelId, client: std::net::SocketAddr) -> Span {
    tracing::info_span!("tunnel", id, client = %client)
}
