//! What operations report about a backend, as the API shows it: its latest
//! health check, a paced close under way, and what a backend name resolved to
//! (`/api/state`'s `dns`, the `resolved` event).

use std::net::SocketAddr;

use serde::Serialize;

use super::rfc3339;

/// A backend name: `pool`, `name`, `addrs` (the last good set), `error` (why the
/// latest lookup failed, or null), `at` (when it ended).
#[derive(Serialize)]
pub struct Resolved<'a> {
    pub pool: &'a str,
    pub name: &'a str,
    pub addrs: &'a [SocketAddr],
    pub error: Option<&'a str>,
    pub at: String,
}

impl<'a> Resolved<'a> {
    pub fn new(r: &'a crate::event::Resolution) -> Resolved<'a> {
        Resolved {
            pool: &r.pool,
            name: &r.name,
            addrs: &r.addrs,
            error: r.error.as_deref(),
            at: rfc3339(r.at),
        }
    }
}

/// One active health check.
#[derive(Serialize)]
pub struct Check<'a> {
    pub at: String,
    pub latency_ms: f64,
    pub ok: bool,
    pub error: Option<&'a str>,
}

/// A paced close: `cause` is `drain`, `down` or `rebalance`; closes run from
/// `starts` at `rate` a second.
#[derive(Serialize)]
pub struct Closing {
    pub cause: &'static str,
    pub starts: String,
    pub rate: u32,
    pub closed: u64,
    pub left: u64,
}
