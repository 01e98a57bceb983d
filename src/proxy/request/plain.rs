//! A plain HTTP request (no upgrade): forwarded to a backend with streaming bodies
//! both ways, the client's body watched so its faults are blamed on it.

use std::time::Instant;

use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::{info, warn};

use super::connect::{connect_backend, forward_context, hash_key};
use super::fault::{Blame, ClientBody, ClientFault, Waited};
use super::{path_and_query, text, Body, ConnInfo};
use crate::event::Event;
use crate::proxy::headers;
use crate::proxy::pool::Pool;
use crate::proxy::registry::Registry;

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
        &forward_context(conn, backend.authority()),
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
    let (body, watch) = ClientBody::new(body, config.timeouts.request_body, limit);
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
    let timeout = config.timeouts.backend_response;
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
