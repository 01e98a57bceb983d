//! One client HTTP request, top to bottom: `mod` admits it (per-IP limit behind a
//! trusted proxy), refuses framing conflicts and finds its route (`proxy::route`);
//! `connect` picks a backend and connects, retrying others; then either `upgrade`
//! forwards the WebSocket handshake and hands the two connections to the tunnel on
//! 101, or `plain` proxies the request with streaming bodies. `fault` is the one place that
//! decides whether a failure is the client's or the backend's. Errors become short
//! plain-text answers: 502 (no backend reachable), 503 (none eligible), 504 (backend
//! too slow), each with a log line saying why.

mod connect;
pub mod fault;
mod h2;
mod keepalive;
mod plain;
mod tunnel_task;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use tracing::info;

use self::plain::plain;
use self::upgrade::upgrade;
use super::admission::{ConnSlot, IpSlot};
use super::headers;
use super::headtimer::{FramingConflict, InFlight, InFlightGuard};
use super::registry::{peer_ip, Registry};
use super::route::Matched;

/// Response bodies: the backend's streamed body or our own short text.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// What a connection task knows about its client.
pub struct ConnInfo {
    pub core: Arc<Registry>,
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
    mut req: Request<Incoming>,
    conn: &Arc<ConnInfo>,
    ip_slot: &mut Option<IpSlot>,
) -> Response<Body> {
    if req.version() == http::Version::HTTP_2 {
        // HTTP/2 may split cookies over several fields; an HTTP/1.1 backend wants
        // them in one (RFC 9113 §8.2.3).
        let cookies: Vec<&[u8]> = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        if cookies.len() > 1 {
            if let Ok(joined) = HeaderValue::from_bytes(&cookies.join(&b"; "[..])) {
                req.headers_mut().insert(header::COOKIE, joined);
            }
        }
        // A CONNECT that is not a WebSocket (a tunnel to anywhere) is not proxied.
        if req.method() == http::Method::CONNECT && !h2::is_websocket_connect(&req) {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT is only for WebSockets (RFC 8441)",
            );
        }
    }
    // HTTP/2 names the host in `:authority`; the backend, spoken to in HTTP/1.1,
    // needs it as `Host`.
    if !req.headers().contains_key(header::HOST) {
        if let Some(host) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(header::HOST, host);
        }
    }
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
    let routes = conn.core.routes();
    let Some(Matched {
        name: route,
        pool: pool_name,
        limits,
    }) = routes.find(host.as_deref(), &path)
    else {
        info!(%path, host = host.as_deref().unwrap_or(""), "no route");
        return text(StatusCode::NOT_FOUND, "no route for this host and path");
    };
    let (route, limits, pool) = match conn.core.pools.get(pool_name) {
        Some(pool) => (route, std::borrow::Cow::Borrowed(limits), pool),
        None => match during_reload(conn, host.as_deref(), &path).await {
            Ok(found) => found,
            Err(answer) => return answer,
        },
    };
    let limits = &*limits;
    if headers::names_websocket(req.headers()) || h2::is_websocket_connect(&req) {
        upgrade(req, conn, route, limits, &pool, ip_slot).await
    } else {
        plain(req, conn, &pool).await
    }
}

/// The route and pool of a request read while a reload swapped the routes and the
/// pools one after the other (its route's pool was not there, yet or any more):
/// both read again once the reload is through.
async fn during_reload(
    conn: &ConnInfo,
    host: Option<&str>,
    path: &str,
) -> Result<
    (
        Arc<str>,
        std::borrow::Cow<'static, crate::config::WsLimits>,
        Arc<super::pool::Pool>,
    ),
    Response<Body>,
> {
    for _ in 0..3 {
        tokio::task::yield_now().await;
        let routes = conn.core.routes();
        let Some(m) = routes.find(host, path) else {
            return Err(text(
                StatusCode::NOT_FOUND,
                "no route for this host and path",
            ));
        };
        if let Some(pool) = conn.core.pools.get(m.pool) {
            return Ok((m.name, std::borrow::Cow::Owned(m.limits.clone()), pool));
        }
    }
    Err(text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the configuration is being reloaded; try again",
    ))
}

pub(super) fn path_and_query(req: &Request<Incoming>) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string())
}
