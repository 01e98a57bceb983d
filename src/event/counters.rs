//! The proxy's exact counters (what metrics are made of), the WebSocket limits they
//! count, and what a reload changed.

use std::time::SystemTime;

use super::{BackendId, BackendInfo, DirStats};

/// Traffic in one direction: frames, complete data messages, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    pub frames: u64,
    pub messages: u64,
    pub bytes: u64,
}

impl Flow {
    pub fn add(&mut self, d: &DirStats) {
        self.frames += d.frames();
        self.messages += d.messages;
        self.bytes += d.bytes;
    }
}

/// The proxy's counters, exact under any load and cheap to read (no tunnel's frame
/// samples are copied): what metrics are made of.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub started: Option<SystemTime>,
    pub backends: Vec<BackendInfo>,
    pub tunnels_active: u64,
    /// Of those, how many wait parked (silent for `park_after`).
    pub tunnels_parked: u64,
    pub tunnels_total: u64,
    /// Relayed by live and closed tunnels since the proxy started; never decrease.
    pub client_to_backend: Flow,
    pub backend_to_client: Flow,
    /// Handshakes and tunnels stopped by each WebSocket limit, in [`Limit::ALL`]
    /// order.
    pub limit_hits: [u64; 3],
}

/// What a reload changed. Backends are named by pool and address; a backend whose
/// settings changed is replaced (its tunnels stay on the old one, which drains).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Listeners started (with the address they got) and stopped.
    pub listeners_added: Vec<super::ListenerInfo>,
    pub listeners_removed: Vec<super::ListenerInfo>,
    pub backends_added: Vec<BackendId>,
    pub backends_removed: Vec<BackendId>,
    pub backends_changed: Vec<BackendId>,
    /// Routes were added, removed or changed (order, host, path, pool, limits).
    pub routes_changed: bool,
    /// Other settings that apply to new connections changed (limits, timeouts,
    /// inspect, proxy).
    pub settings_changed: bool,
    /// TLS listeners whose certificate files were read again (names).
    pub certificates_reloaded: Vec<String>,
    /// What the file changes but a reload does not apply yet (a restart does).
    pub not_applied: Vec<String>,
}

impl ConfigDiff {
    /// One line for logs and the dashboard.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let list = |v: &[BackendId]| {
            v.iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let listeners = |v: &[super::ListenerInfo]| {
            v.iter()
                .map(|l| format!("listener {} ({})", l.name, l.addr))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.listeners_added.is_empty() {
            parts.push(format!("started {}", listeners(&self.listeners_added)));
        }
        if !self.listeners_removed.is_empty() {
            parts.push(format!("stopped {}", listeners(&self.listeners_removed)));
        }
        if !self.backends_added.is_empty() {
            parts.push(format!("added {}", list(&self.backends_added)));
        }
        if !self.backends_removed.is_empty() {
            parts.push(format!("removed {}", list(&self.backends_removed)));
        }
        if !self.backends_changed.is_empty() {
            parts.push(format!("changed {}", list(&self.backends_changed)));
        }
        if self.routes_changed {
            parts.push("routes changed".into());
        }
        if self.settings_changed {
            parts.push("settings changed".into());
        }
        if !self.certificates_reloaded.is_empty() {
            parts.push(format!(
                "certificates re-read ({})",
                self.certificates_reloaded.join(", ")
            ));
        }
        if parts.is_empty() {
            parts.push("nothing changed".into());
        }
        for n in &self.not_applied {
            parts.push(format!("not applied until restart: {n}"));
        }
        parts.join("; ")
    }
}

/// A WebSocket limit of a route (`[limits]` or `[[route]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The handshake's `Origin` is not in `allowed_origins` (403).
    Origin = 0,
    /// A message longer than `max_message_bytes` (Close 1009 to its sender).
    MessageSize = 1,
    /// More messages per second than `max_message_rate` (Close 1008 to the sender).
    MessageRate = 2,
}

impl Limit {
    pub const ALL: [Limit; 3] = [Limit::Origin, Limit::MessageSize, Limit::MessageRate];

    /// The label metrics use.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Origin => "origin",
            Limit::MessageSize => "message_size",
            Limit::MessageRate => "message_rate",
        }
    }

    /// What the client is told, as a Close reason or a refusal.
    pub fn reason(self) -> &'static str {
        match self {
            Limit::Origin => "origin not allowed",
            Limit::MessageSize => "message too big",
            Limit::MessageRate => "message rate exceeded",
        }
    }

    /// The Close code the sender of the offending message gets (the other side of
    /// the tunnel gets 1001).
    pub fn close_code(self) -> u16 {
        match self {
            Limit::Origin | Limit::MessageRate => 1008,
            Limit::MessageSize => 1009,
        }
    }
}
