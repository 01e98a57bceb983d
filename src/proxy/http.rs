//! One client HTTP request: route it, pick a backend, and either forward a WebSocket
//! upgrade (and start the tunnel on 101) or proxy a plain request with streaming
//! bodies. Errors become short plain-text answers: 502 (no backend reachable), 503
//! (none eligible), 504 (backend too slow), each with a log line saying why.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::{info, warn, Span};

use super::core::{peer_ip, ConnSlot, Core, IpSlot};
use super::fault::{Blame, ClientBody, ClientFault, Waited};
use super::headers::{self, ForwardContext};
use super::headtimer::{FramingConflict, HeadTimer, InFlight, InFlightGuard};
use super::pool::{Lease, Pool};
use super::stream::Stream;
use super::tunnel::{self, RelaySettings, TunnelShared};
use super::upstream;
use crate::config::{Balance, WsLimits};
use crate::event::{Event, Handshake, Limit, Refusal};

/// Response bodies: the backend's streamed body or our own short text.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// What a connection task knows about its client.
pub struct ConnInfo {
    pub core: Arc<Core>,
    pub listener: Arc<str>,
    pub client: SocketAddr,
    pub is_tls: bool,
    /// Requests on this connection whose response is not finished.
    pub in_flight: InFlight,
    /// Set when the request head had both Content-Length and Transfer-Encoding.
    pub framing: FramingConflict,
    /// This connection's place under the connection limits; a tunnel made on it
    /// holds it until the tunnel ends.
    pub slot: Arc<ConnSlot>,
}

/// A short plain-text answer.
pub fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(format!("{msg}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The hyper service function.
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
) -> Result<Response<Body>, Infallible> {
    // The request counts as in flight until hyper drops its response body.
    let guard = conn.in_flight.start();
    // Through a trusted proxy, the per-IP limit applies to the client it forwarded
    // for, per request; a tunnel takes the place along, a plain response holds it.
    let mut ip_slot = match conn
        .core
        .admit_forwarded(peer_ip(&conn.client), req.headers())
    {
        Ok(slot) => slot,
        Err(client) => {
            info!(%client, proxy = %conn.client, "request refused: per-IP connection limit");
            return Ok(text(
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from this client",
            )
            .map(|b| {
                Tracked {
                    inner: b,
                    _guard: guard,
                    _ip: None,
                }
                .boxed()
            }));
        }
    };
    let resp = route_request(req, &conn, &mut ip_slot).await;
    let (parts, inner) = resp.into_parts();
    let body = Tracked {
        inner,
        _guard: guard,
        _ip: ip_slot,
    };
    Ok(Response::from_parts(parts, body.boxed()))
}

/// A response body that holds its request's in-flight mark until hyper drops it.
/// (Written out rather than `map_frame` so the size hint, and with it
/// Content-Length, survives.)
struct Tracked {
    inner: Body,
    _guard: InFlightGuard,
    _ip: Option<IpSlot>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

async fn route_request(
    req: Request<Incoming>,
    conn: &Arc<ConnInfo>,
    ip_slot: &mut Option<IpSlot>,
) -> Response<Body> {
    // hyper keeps Transfer-Encoding and drops Content-Length; the head check saw both.
    if req.headers().contains_key(header::TRANSFER_ENCODING) && conn.framing.take() {
        info!(client = %conn.client, "request refused: both Content-Length and Transfer-Encoding");
        let mut resp = text(
            StatusCode::BAD_REQUEST,
            "request has both Content-Length and Transfer-Encoding",
        );
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .map(str::to_owned);
    let path = req.uri().path().to_owned();
    let Some((route, pool_name, limits)) = conn.core.route(host.as_deref(), &path) else {
        info!(%path, host = host.as_deref().unwrap_or(""), "no route");
        return text(StatusCode::NOT_FOUND, "no route for this host and path");
    };
    let Some(pool) = conn.core.pools.get(pool_name).cloned() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "route names no pool");
    };
    if headers::names_websocket(req.headers()) {
        upgrade(req, conn, route, limits, &pool, ip_slot).await
    } else {
        plain(req, conn, &pool).await
    }
}

/// Picks and connects a backend, retrying others on connect failure. On failure
/// returns the answer for the client and why.
async fn connect_backend(
    core: &Core,
    pool: &Pool,
    key: Option<&str>,
) -> Result<(Stream, Lease), (StatusCode, String)> {
    let mut tried = Vec::new();
    let mut last: Option<upstream::ConnectError> = None;
    let tls = core.upstream_tls.get(&pool.name);
    for _ in 0..pool.config.tries.max(1) {
        let Some(backend) = pool.pick(key, &tried) else {
            break;
        };
        let lease = backend.lease();
        match upstream::connect(&backend.addr, tls, core.config.timeouts.connect).await {
            Ok(stream) => {
                backend.record_success();
                return Ok((stream, lease));
            }
            Err(e) => {
                warn!(backend = %backend.id, error = %e, "backend connect failed");
                backend.record_failure(&e.to_string(), Instant::now());
                tried.push(backend.id.clone());
                last = Some(e);
            }
        }
    }
    Err(match last {
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no backend of pool {} is available", pool.name),
        ),
        Some(e) if e.is_timeout() => (StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        Some(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    })
}

fn hash_key(pool: &Pool, req: &Request<Incoming>, conn: &ConnInfo) -> Option<String> {
    match pool.config.balance {
        // Behind a trusted proxy, the client it forwarded for, not the proxy.
        Balance::IpHash => Some(
            headers::original_client(
                peer_ip(&conn.client),
                req.headers(),
                &conn.core.config.proxy.trusted_proxies,
            )
            .to_string(),
        ),
        Balance::Hash => pool
            .config
            .hash_key
            .as_ref()
            .and_then(|k| headers::hash_key_value(k, req.headers(), req.uri()))
            .map(|v| v.into_owned()),
        _ => None,
    }
}

fn forward_context<'a>(conn: &ConnInfo, backend_addr: &'a str) -> ForwardContext<'a> {
    let ip = peer_ip(&conn.client);
    ForwardContext {
        client_ip: ip,
        trusted: headers::is_trusted(ip, &conn.core.config.proxy.trusted_proxies),
        tls: conn.is_tls,
        backend_authority: backend_addr,
    }
}

fn path_and_query(req: &Request<Incoming>) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string())
}

async fn upgrade(
    mut req: Request<Incoming>,
    conn: &ConnInfo,
    route: Arc<str>,
    limits: &WsLimits,
    pool: &Pool,
    ip_slot: &mut Option<IpSlot>,
) -> Response<Body> {
    let core = &conn.core;
    if let Err(rejection) =
        headers::check_websocket_request(req.method(), req.version(), req.headers())
    {
        info!(client = %conn.client, reason = rejection.reason, "bad upgrade request");
        let mut resp = text(rejection.status, rejection.reason);
        if rejection.status == StatusCode::UPGRADE_REQUIRED {
            resp.headers_mut()
                .insert("sec-websocket-version", HeaderValue::from_static("13"));
        }
        return resp;
    }
    let id = core.next_id();
    let path = path_and_query(&req);
    if core.observed() {
        core.publish(Event::TunnelOpened {
            id,
            at: SystemTime::now(),
            client: conn.client,
            listener: conn.listener.clone(),
            route: route.clone(),
            path: path.clone(),
        });
    }
    let refuse = |status: StatusCode, reason: String| {
        warn!(tunnel = id, client = %conn.client, %path, status = status.as_u16(), %reason, "upgrade refused");
        core.publish(Event::Refused {
            id,
            refusal: Refusal {
                status: status.as_u16(),
                reason: reason.clone(),
            },
        });
        text(status, &reason)
    };
    let origin = req.headers().get(header::ORIGIN);
    if !limits.origin_allowed(origin.map(|o| o.to_str().unwrap_or("\u{fffd}"))) {
        // Cross-site WebSocket hijacking: refused before any backend is contacted.
        core.limit_hit(Limit::Origin);
        return refuse(StatusCode::FORBIDDEN, Limit::Origin.reason().to_string());
    }
    let key = hash_key(pool, &req, conn);
    let (stream, lease) = match connect_backend(core, pool, key.as_deref()).await {
        Ok(ok) => ok,
        Err((status, reason)) => return refuse(status, reason),
    };
    let backend = lease.backend().clone();
    if core.observed() {
        core.publish(Event::BackendChosen {
            id,
            backend: backend.id.clone(),
        });
    }
    let out_headers = headers::backend_request_headers(
        req.headers(),
        &forward_context(conn, &backend.addr),
        &pool.config.host_header,
        true,
    );
    let mut out = Request::new(Empty::<Bytes>::new());
    *out.method_mut() = Method::GET;
    *out.version_mut() = Version::HTTP_11;
    *out.uri_mut() = path
        .parse()
        .unwrap_or_else(|_| "/".parse().expect("valid uri"));
    *out.headers_mut() = out_headers;
    let request_out = headers::to_headers(out.headers());

    let (mut sender, http_conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    format!("backend {}: {e}", backend.id),
                )
            }
        };
    tokio::spawn(http_conn.with_upgrades());
    let timeout = core.config.timeouts.backend_response;
    let mut resp = match tokio::time::timeout(timeout, sender.send_request(out)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            let reason = format!("backend {} failed the handshake: {e}", backend.id);
            backend.record_failure(&reason, Instant::now());
            return refuse(StatusCode::BAD_GATEWAY, reason);
        }
        Err(_) => {
            let reason = format!("backend {} did not answer within {timeout:?}", backend.id);
            backend.record_failure(&reason, Instant::now());
            return refuse(StatusCode::GATEWAY_TIMEOUT, reason);
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        info!(tunnel = id, backend = %backend.id, status = status.as_u16(), "backend declined the upgrade");
        core.publish(Event::Refused {
            id,
            refusal: Refusal {
                status: status.as_u16(),
                reason: format!("backend answered {status}"),
            },
        });
        return relay_response(resp);
    }
    let client_key = req.headers().get("sec-websocket-key").cloned();
    let accept_ok = client_key
        .as_ref()
        .is_some_and(|k| headers::accept_matches(k, resp.headers().get("sec-websocket-accept")));
    if !accept_ok {
        let reason = format!("backend {} sent a wrong Sec-WebSocket-Accept", backend.id);
        backend.record_failure(&reason, Instant::now());
        return refuse(StatusCode::BAD_GATEWAY, reason);
    }
    let (subprotocol, extensions, deflate) = headers::negotiated(resp.headers());
    let handshake = Handshake {
        request_in: headers::to_headers(req.headers()),
        request_out,
        response: headers::to_headers(resp.headers()),
        subprotocol,
        extensions,
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let mut answer = Response::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *answer.headers_mut() = headers::client_response_headers(resp.status(), resp.headers());

    let shared = Arc::new(TunnelShared::new(
        id,
        SystemTime::now(),
        conn.client,
        conn.listener.clone(),
        route,
        path,
        backend.id.clone(),
        handshake,
        core.config.inspect.ring,
        core.config.inspect.preview_bytes,
        if deflate { 0b100 } else { 0 },
    ));
    // Listed (and reachable by kill, close and shutdown) before the client has its
    // 101, and before the handshake event: whoever sees the handshake complete, or
    // resyncs from a snapshot just after it, finds the tunnel listed.
    shared.set_message_limits(limits.max_message_bytes, limits.max_message_rate);
    core.register(shared.clone());
    if core.observed() {
        core.publish(Event::Handshake {
            id,
            handshake: shared.handshake.clone(),
        });
    }
    // The span is entered only where the tunnel logs, not around every poll of its
    // relay: entering and leaving a span on each wake-up was 1% of the relay's CPU.
    let span = tracing::info_span!("tunnel", id, client = %conn.client);
    tokio::spawn(run_tunnel(
        core.clone(),
        shared,
        lease,
        (conn.slot.clone(), ip_slot.take()),
        client_upgrade,
        backend_upgrade,
        span,
    ));
    answer
}

/// Waits for both upgrades, relays until the end, reports the ending.
async fn run_tunnel(
    core: Arc<Core>,
    shared: Arc<TunnelShared>,
    lease: Lease,
    slots: (Arc<ConnSlot>, Option<IpSlot>),
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    span: Span,
) {
    // Both hand-overs are due at once (the 101 is written, the backend's is in
    // hand); a client that never lets hyper finish writing the 101 is not waited
    // for past the backend-response time.
    let wait = core.config.timeouts.backend_response;
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
    let id = shared.id;
    lease.established();
    let settings = RelaySettings {
        idle: core.config.timeouts.idle,
        close_grace: core.config.timeouts.close_grace,
        strict: core.config.proxy.strict,
        close_on_backend_loss: core.config.proxy.close_on_backend_loss,
    };
    let ending = tunnel::run(
        &shared,
        client,
        client_pre,
        backend,
        backend_pre,
        settings,
        &core.bus,
    )
    .await;
    core.unregister(id);
    if let Some(limit) = ending.limit {
        core.limit_hit(limit);
    }
    // Its places under the connection limits are free before its end is published.
    drop(slots);
    let stats = shared.stats();
    let duration = shared.opened.elapsed().unwrap_or_default();
    let (up, down) = (&stats.client_to_backend, &stats.backend_to_client);
    let _entered = span.enter();
    info!(
        target: "tunnelscope::access",
        client = %shared.client,
        listener = %shared.listener,
        route = %shared.route,
        backend = %shared.backend,
        path = %shared.path,
        subprotocol = shared.handshake.subprotocol.as_deref().unwrap_or("-"),
        duration_ms = duration.as_millis() as u64,
        frames_in = up.frames(),
        bytes_in = up.bytes,
        frames_out = down.frames(),
        bytes_out = down.bytes,
        close_code = ending.code.map_or_else(|| "-".to_string(), |c| c.to_string()),
        closed_by = %ending.side,
        error = ending.error.as_deref().unwrap_or("-"),
        "tunnel closed"
    );
    if core.observed() {
        core.publish(Event::TunnelClosed {
            id,
            code: ending.code,
            reason: ending.reason,
            side: ending.side,
            duration,
            stats,
        });
    }
    drop(lease);
}

/// The raw stream and any bytes hyper read past the HTTP head.
fn unwrap_client(up: hyper::upgrade::Upgraded) -> Option<(Stream, Bytes)> {
    let parts = up.downcast::<TokioIo<HeadTimer<Stream>>>().ok()?;
    Some((parts.io.into_inner().into_inner(), parts.read_buf))
}

/// The raw stream and any bytes hyper read past the HTTP head.
fn unwrap_upgraded(up: hyper::upgrade::Upgraded) -> Option<(Stream, Bytes)> {
    let parts = up.downcast::<TokioIo<Stream>>().ok()?;
    Some((parts.io.into_inner(), parts.read_buf))
}

/// A backend response passed back unchanged but for hop-by-hop headers.
fn relay_response(resp: Response<Incoming>) -> Response<Body> {
    let status = resp.status();
    let (mut parts, body) = resp.into_parts();
    parts.headers = headers::client_response_headers(status, &parts.headers);
    Response::from_parts(parts, body.boxed())
}

async fn plain(req: Request<Incoming>, conn: &ConnInfo, pool: &Pool) -> Response<Body> {
    let core = &conn.core;
    let started = Instant::now();
    let method = req.method().to_string();
    let path = path_and_query(&req);
    let limit = core.config.limits.max_body_bytes;
    if limit > 0 && hyper::body::Body::size_hint(req.body()).lower() > limit {
        let fault = ClientFault::BodyTooLarge;
        info!(client = %conn.client, %path, "request refused: {fault}");
        publish_request(core, conn, &method, &path, fault.status(), None, started);
        return text(fault.status(), fault.reason());
    }
    let key = hash_key(pool, &req, conn);
    let (stream, lease) = match connect_backend(core, pool, key.as_deref()).await {
        Ok(ok) => ok,
        Err((status, reason)) => {
            warn!(client = %conn.client, %path, status = status.as_u16(), %reason, "request refused");
            publish_request(core, conn, &method, &path, status, None, started);
            return text(status, &reason);
        }
    };
    // Plain requests are short; they count for balancing only while connecting.
    let backend = lease.backend().clone();
    drop(lease);
    let (mut parts, body) = req.into_parts();
    let mut headers = headers::backend_request_headers_from_parts(
        &parts,
        &forward_context(conn, &backend.addr),
        &pool.config.host_header,
        false,
    );
    // One backend connection per request: say so, so the backend closes it.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    parts.headers = headers;
    parts.version = Version::HTTP_11;
    parts.uri = path
        .parse()
        .unwrap_or_else(|_| "/".parse().expect("valid uri"));
    let (body, watch) = ClientBody::new(body, core.config.timeouts.request_body, limit);
    let out = Request::from_parts(parts, body);
    let (mut sender, http_conn) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => {
                let reason = format!("backend {}: {e}", backend.id);
                backend.record_failure(&reason, Instant::now());
                return text(StatusCode::BAD_GATEWAY, &reason);
            }
        };
    tokio::spawn(http_conn);
    let timeout = core.config.timeouts.backend_response;
    let resp = match watch.response(sender.send_request(out), timeout).await {
        Ok(resp) => relay_response(resp),
        Err(Waited::Failed(Blame::Client(fault))) => {
            info!(client = %conn.client, %path, backend = %backend.id, "request abandoned: {fault}");
            let mut resp = text(fault.status(), fault.reason());
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
        Err(Waited::Failed(Blame::Backend(e))) => {
            let reason = format!("backend {} failed the request: {e}", backend.id);
            warn!(client = %conn.client, %path, %reason);
            backend.record_failure(&reason, Instant::now());
            text(StatusCode::BAD_GATEWAY, &reason)
        }
        Err(Waited::TimedOut) => {
            let reason = format!("backend {} did not answer within {timeout:?}", backend.id);
            warn!(client = %conn.client, %path, %reason);
            backend.record_failure(&reason, Instant::now());
            text(StatusCode::GATEWAY_TIMEOUT, &reason)
        }
    };
    publish_request(
        core,
        conn,
        &method,
        &path,
        resp.status(),
        Some(backend.id.clone()),
        started,
    );
    resp
}

fn publish_request(
    core: &Core,
    conn: &ConnInfo,
    method: &str,
    path: &str,
    status: StatusCode,
    backend: Option<crate::event::BackendId>,
    started: Instant,
) {
    if core.observed() {
        core.publish(Event::HttpRequest {
            client: conn.client,
            method: method.to_string(),
            path: path.to_string(),
            status: status.as_u16(),
            backend,
            duration: started.elapsed(),
        });
    }
}
