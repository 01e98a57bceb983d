//! Admission: a client connection's place under `max_connections` and
//! `max_connections_per_ip`, held as a slot for as long as the connection (or the
//! tunnel made on it) lives. Behind a trusted proxy, each forwarded request is
//! counted for the client it was forwarded for instead.

use crate::sync::lock;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::headers::{is_trusted, original_client};
use super::registry::Registry;

/// Holds a client connection's place under the connection limits.
pub struct ConnSlot {
    core: Arc<Registry>,
    /// Its place under the per-IP limit; `None` when the peer is a trusted proxy
    /// (each request it forwards is counted for its own client instead).
    _ip: Option<IpSlot>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if self.core.open_slots.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.core.slots_empty.notify_waiters();
        }
    }
}

/// One place under `max_connections_per_ip` for a client address.
pub struct IpSlot {
    core: Arc<Registry>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = lock(&self.core.per_ip);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Registry {
    /// A place for a new client connection, or `None` when a limit is reached. A
    /// trusted proxy's connection is not counted under the per-IP limit: the
    /// requests it forwards are, by their client ([`Registry::admit_forwarded`]).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let permit = match &self.conn_limit {
            Some(sem) => Some(sem.clone().try_acquire_owned().ok()?),
            None => None,
        };
        let ip_slot = if is_trusted(ip, &self.config().proxy.trusted_proxies) {
            None
        } else {
            Some(self.admit_ip(ip)?)
        };
        self.open_slots.fetch_add(1, Ordering::AcqRel);
        Some(ConnSlot {
            core: self.clone(),
            _ip: ip_slot.flatten(),
            _permit: permit,
        })
    }

    /// For a request that came through a trusted proxy: a place under the per-IP
    /// limit for the client it forwarded for, held while the request or its tunnel
    /// lives. `Ok(None)` when there is nothing to count; `Err` when that client is
    /// at its limit.
    pub fn admit_forwarded(
        self: &Arc<Self>,
        peer: IpAddr,
        headers: &http::HeaderMap,
    ) -> Result<Option<IpSlot>, IpAddr> {
        let config = self.config();
        let trusted = &config.proxy.trusted_proxies;
        if config.limits.max_connections_per_ip == 0 || !is_trusted(peer, trusted) {
            return Ok(None);
        }
        let client = original_client(peer, headers, trusted);
        self.admit_ip(client).ok_or(client)
    }

    /// `None` when `ip` is at its limit; `Some(None)` when there is no limit.
    fn admit_ip(self: &Arc<Self>, ip: IpAddr) -> Option<Option<IpSlot>> {
        let per_ip = self.config().limits.max_connections_per_ip;
        if per_ip == 0 {
            return Some(None);
        }
        let mut map = lock(&self.per_ip);
        let n = map.entry(ip).or_insert(0);
        if *n >= per_ip {
            return None;
        }
        *n += 1;
        Some(Some(IpSlot {
            core: self.clone(),
            ip,
        }))
    }
}
