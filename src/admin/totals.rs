//! The JSON shapes of totals (`/api/state`, the event stream's snapshot) and of
//! what a reload changed (`/api/reload`, `config_reloaded`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::event::BackendId;

/// Frames, messages and bytes in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flow {
    pub frames: u64,
    pub messages: u64,
    pub bytes: u64,
}

impl From<crate::event::Flow> for Flow {
    fn from(f: crate::event::Flow) -> Flow {
        Flow {
            frames: f.frames,
            messages: f.messages,
            bytes: f.bytes,
        }
    }
}

/// Totals as `/api/state` shows them and `/metrics` exports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub tunnels_active: u64,
    /// Of those, waiting parked (silent for `park_after`).
    pub tunnels_parked: u64,
    pub tunnels_total: u64,
    /// Relayed by live and closed tunnels since the proxy started.
    pub client_to_backend: Flow,
    pub backend_to_client: Flow,
    /// Events that `/api/events` streams missed by falling behind.
    pub events_lagged: u64,
    /// Handshakes and tunnels stopped by each WebSocket limit.
    pub limit_hits: BTreeMap<&'static str, u64>,
}

impl Totals {
    pub fn new(c: &crate::event::Counters, events_lagged: u64) -> Totals {
        Totals {
            tunnels_active: c.tunnels_active,
            tunnels_parked: c.tunnels_parked,
            tunnels_total: c.tunnels_total,
            client_to_backend: c.client_to_backend.into(),
            backend_to_client: c.backend_to_client.into(),
            events_lagged,
            limit_hits: crate::event::Limit::ALL
                .iter()
                .map(|l| (l.name(), c.limit_hits[*l as usize]))
                .collect(),
        }
    }
}

/// What a reload changed: `/api/reload`'s answer and the `config_reloaded` event.
#[derive(Serialize)]
pub struct Diff {
    /// `{"name", "addr", "tls"}` of each listener started (with the address it got)
    /// or stopped.
    pub listeners_added: Vec<Listener>,
    pub listeners_removed: Vec<Listener>,
    pub backends_added: Vec<String>,
    pub backends_removed: Vec<String>,
    pub backends_changed: Vec<String>,
    pub routes_changed: bool,
    pub settings_changed: bool,
    pub certificates_reloaded: Vec<String>,
    pub not_applied: Vec<String>,
    pub summary: String,
}

impl Diff {
    pub fn new(d: &crate::event::ConfigDiff) -> Diff {
        let ids = |v: &[BackendId]| v.iter().map(|b| b.to_string()).collect();
        let listeners = |v: &[crate::event::ListenerInfo]| {
            v.iter()
                .map(|l| Listener {
                    name: l.name.to_string(),
                    addr: l.addr,
                    tls: l.tls,
                })
                .collect()
        };
        Diff {
            listeners_added: listeners(&d.listeners_added),
            listeners_removed: listeners(&d.listeners_removed),
            backends_added: ids(&d.backends_added),
            backends_removed: ids(&d.backends_removed),
            backends_changed: ids(&d.backends_changed),
            routes_changed: d.routes_changed,
            settings_changed: d.settings_changed,
            certificates_reloaded: d.certificates_reloaded.clone(),
            not_applied: d.not_applied.clone(),
            summary: d.summary(),
        }
    }
}

/// A listener a reload started or stopped.
#[derive(Debug, Serialize)]
pub struct Listener {
    pub name: String,
    pub addr: std::net::SocketAddr,
    pub tls: bool,
}
