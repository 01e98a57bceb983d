//! A plain HTTP request (no upgrade): forwarded to a backend with streaming bodies
//! both ways, the client's body watched so its faults are blamed on it.

use std::time::Instant;

use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::{debug, info, warn};

use super::connect::{connect_backend_with, forward_context, hash_key, Upstream};
use super::fault::{Blame, ClientBody, ClientFault, Waited};
use super::keepalive::{self, Returning};
use super::{path_and_query, text, Body, ConnInfo};
use crate::event::Event;
use crate::proxy::headers;
use crate::proxy::pool::{Backend, Pool};
use crate::proxy::registry::Registry;
use crate::proxy::upstream;

/// A backend response passed back unchanged but for hop-by-hop headers.
pub(super) fn relay_response(resp: Response<Incoming>) -> Response<Body> {
    let status = resp.status();
    let (mut parts, body) = resp.into_parts();
    parts.headers = headers::client_response_headers(status, &parts.headers);
    Response::from_parts(parts, body.boxed())
}

pub(super) async fn plain(req: Request<Incoming>, conn: &ConnInfo, pool: &Pool) -> Response<Body> {
    let core = &conn.core;
    let started = Instant::now();
    let method = req.method().to_string();
    let path = path_and_query(&req);
    let config = core.config();
    let limit = config.limits.max_body_bytes;
    if limit > 0 && hyper::body::Body::size_hint(req.body()).lower() > limit {
        let fault = ClientFault::BodyTooLarge;
        info!(client = %conn.client, %path, "request refused: {fault}");
        publish_request(core, conn, &method, &path, fault.status(), None, started);
        return text(fault.status(), fault.reason());
    }
    let key = hash_key(pool, &req, conn);
    let (keep, idle_for) = (pool.config.keepalive, pool.config.keepalive_timeout);
    let reuse = |b: &Backend| {
        (keep > 0)
            .then(|| keepalive::take(&b.id, idle_for))
            .flatten()
    };
    let (upstream, lease) = match connect_backend_with(core, pool, key.as_deref(), reuse).await {
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
        &forward_context(conn, backend.authority()),
        &pool.config.host_header,
        false,
    );
    if keep == 0 {
        // One backend connection per request: say so, so the backend closes it.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    parts.headers = headers;
    parts.version = Version::HTTP_11;
    parts.uri = path
        .parse()
        .unwrap_or_else(|_| "/".parse().expect("valid uri"));
    // A bodyless idempotent request can be sent again if the connection it went out
    // on turns out to have been closed by the backend while it was idle.
    let replay =
        (is_idempotent(&parts.method) && hyper::body::Body::is_end_stream(&body)).then(|| {
            (
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            )
        });
    let (body, watch) = ClientBody::new(body, config.timeouts.request_body, limit);
    let out = Request::from_parts(parts, body);
    let mut reused = matches!(upstream, Upstream::Reused(_));
    let idle = match upstream {
        // Usually ready at once; a moment more if it is finishing the response it
        // carried. One the backend closed meanwhile gives way to a new connection.
        Upstream::Reused(mut sender) => {
            let ready = tokio::time::timeout(READY_WITHIN, sender.ready()).await;
            matches!(ready, Ok(Ok(()))).then_some(sender)
        }
        Upstream::Fresh(stream) => match open(stream, &backend).await {
            Ok(sender) => Some(sender),
            Err(resp) => return resp,
        },
    };
    let mut sender = match idle {
        Some(sender) => sender,
        None => {
            reused = false;
            let tls = core.upstream_tls(&pool.name);
            match connect_again(&backend, tls.as_ref(), &config.timeouts).await {
                Ok(sender) => sender,
                Err(resp) => return resp,
            }
        }
    };
    let timeout = config.timeouts.backend_response;
    let mut result = watch.response(sender.send_request(out), timeout).await;
    if let (true, Some((method, uri, headers)), Err(Waited::Failed(Blame::Stale(e)))) =
        (reused, replay, &result)
    {
        debug!(backend = %backend.id, error = %e, "idle backend connection was closed; sending again on a new one");
        let tls = core.upstream_tls(&pool.name);
        sender = match connect_again(&backend, tls.as_ref(), &config.timeouts).await {
            Ok(sender) => sender,
            Err(resp) => return resp,
        };
        reused = false;
        let (body, watch) = ClientBody::empty();
        let mut again = Request::new(body);
        *again.method_mut() = method;
        *again.uri_mut() = uri;
        *again.headers_mut() = headers;
        result = watch.response(sender.send_request(again), timeout).await;
    }
    let backend_failed = |e: &str, blamed: bool| {
        let reason = format!("backend {} failed the request: {e}", backend.id);
        warn!(client = %conn.client, %path, %reason);
        if blamed {
            backend.record_failure(&reason, Instant::now());
        }
        text(StatusCode::BAD_GATEWAY, &reason)
    };
    let resp = match result {
        Ok(resp) if keep > 0 => {
            let status = resp.status();
            let (mut parts, body) = resp.into_parts();
            parts.headers = headers::client_response_headers(status, &parts.headers);
            let body = Returning::new(body, backend.id.clone(), sender, keep, idle_for);
            Response::from_parts(parts, body.boxed())
        }
        Ok(resp) => relay_response(resp),
        Err(Waited::Failed(Blame::Client(fault))) => {
            info!(client = %conn.client, %path, backend = %backend.id, "request abandoned: {fault}");
            let mut resp = text(fault.status(), fault.reason());
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
        Err(Waited::Failed(Blame::Backend(e))) => backend_failed(&e, true),
        // An idle connection the backend let go is not held against it.
        Err(Waited::Failed(Blame::Stale(e))) => backend_failed(&e, !reused),
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

/// How long a reused connection may take to finish the response it carried.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_millis(100);

/// A new connection to the backend already picked.
async fn connect_again(
    backend: &Backend,
    tls: Option<&upstream::UpstreamTls>,
    timeouts: &crate::config::Timeouts,
) -> Result<hyper::client::conn::http1::SendRequest<ClientBody>, Response<Body>> {
    match upstream::connect(&backend.addr, backend.authority(), tls, timeouts).await {
        Ok(stream) => open(stream, backend).await,
        Err(e) => {
            backend.record_failure(&e.to_string(), Instant::now());
            Err(text(
                StatusCode::BAD_GATEWAY,
                &format!("backend {}: {e}", backend.id),
            ))
        }
    }
}

/// An HTTP/1.1 client connection over `stream`, its driver running on this loop.
async fn open(
    stream: crate::proxy::stream::Stream,
    backend: &Backend,
) -> Result<hyper::client::conn::http1::SendRequest<ClientBody>, Response<Body>> {
    match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok((sender, http_conn)) => {
            tokio::spawn(http_conn);
            Ok(sender)
        }
        Err(e) => {
            let reason = format!("backend {}: {e}", backend.id);
            backend.record_failure(&reason, Instant::now());
            Err(text(StatusCode::BAD_GATEWAY, &reason))
        }
    }
}

/// Methods that may be sent twice (RFC 9110 9.2.2).
fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

fn publish_request(
    core: &Registry,
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
