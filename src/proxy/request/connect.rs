//! Picking and connecting a backend: the pool's balancing (with its hash key),
//! then connect with retries over the others; and what the backend is told about
//! the client (`X-Forwarded-*`).

use std::time::Instant;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use tracing::warn;

use super::ConnInfo;
use crate::config::Balance;
use crate::proxy::headers::{self, ForwardContext};
use crate::proxy::pool::{Backend, Lease, Pool};
use crate::proxy::registry::{peer_ip, Registry};
use crate::proxy::stream::Stream;
use crate::proxy::upstream;

/// A connection to the backend picked: an idle one taken up again, or a new one.
pub(super) enum Upstream<R> {
    Reused(R),
    Fresh(Stream),
}

/// Picks and connects a backend, retrying others on connect failure. On failure
/// returns the answer for the client and why.
pub(super) async fn connect_backend(
    core: &Registry,
    pool: &Pool,
    key: Option<&str>,
) -> Result<(Stream, Lease), (StatusCode, String)> {
    match connect_backend_with(core, pool, key, |_| None::<()>).await? {
        (Upstream::Fresh(stream), lease) => Ok((stream, lease)),
        (Upstream::Reused(()), _) => unreachable!("nothing is reused"),
    }
}

/// [`connect_backend`], first asking `reuse` for an idle connection to each backend
/// picked (a plain request's keep-alive connection).
pub(super) async fn connect_backend_with<R>(
    core: &Registry,
    pool: &Pool,
    key: Option<&str>,
    mut reuse: impl FnMut(&Backend) -> Option<R>,
) -> Result<(Upstream<R>, Lease), (StatusCode, String)> {
    let mut tried = Vec::new();
    let mut last: Option<upstream::ConnectError> = None;
    let tls = core.upstream_tls(&pool.name);
    for _ in 0..pool.config.tries.max(1) {
        let Some(backend) = pool.pick(key, &tried) else {
            break;
        };
        let lease = backend.lease();
        if let Some(idle) = reuse(&backend) {
            return Ok((Upstream::Reused(idle), lease));
        }
        match upstream::connect(
            &backend.addr,
            backend.authority(),
            tls.as_ref(),
            &core.config().timeouts,
        )
        .await
        {
            Ok(stream) => {
                backend.record_success();
                return Ok((Upstream::Fresh(stream), lease));
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

pub(super) fn hash_key(pool: &Pool, req: &Request<Incoming>, conn: &ConnInfo) -> Option<String> {
    match pool.config.balance {
        // Behind a trusted proxy, the client it forwarded for, not the proxy.
        Balance::IpHash => Some(
            headers::original_client(
                peer_ip(&conn.client),
                req.headers(),
                &conn.core.config().proxy.trusted_proxies,
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

pub(super) fn forward_context<'a>(conn: &ConnInfo, backend_addr: &'a str) -> ForwardContext<'a> {
    let ip = peer_ip(&conn.client);
    ForwardContext {
        client_ip: ip,
        trusted: headers::is_trusted(ip, &conn.core.config().proxy.trusted_proxies),
        tls: conn.is_tls,
        backend_authority: backend_addr,
    }
}
