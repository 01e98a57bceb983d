//! What operations report about backends: a paced close under way, the latest
//! active health check, and what a backend name resolved to.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// Tunnels of one backend being closed a few a second (1012, at a frame boundary),
/// so their clients reconnect elsewhere as a trickle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacedClose {
    pub cause: PaceCause,
    /// When closing begins (a drain's deadline); closes run from then on.
    pub starts: SystemTime,
    /// Tunnels closed per second.
    pub rate: u32,
    pub closed: u64,
    /// Tunnels it still means to close.
    pub left: u64,
}

/// Why a backend's tunnels are closed at a paced rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaceCause {
    /// The backend was drained and its drain deadline passed.
    Drain,
    /// Active health checks found it down and the pool has `close_on_down`.
    Down,
    /// It holds more than its share of the pool's tunnels.
    Rebalance,
}

impl PaceCause {
    pub fn name(self) -> &'static str {
        match self {
            PaceCause::Drain => "drain",
            PaceCause::Down => "down",
            PaceCause::Rebalance => "rebalance",
        }
    }

    /// The Close reason clients get.
    pub fn reason(self) -> &'static str {
        match self {
            PaceCause::Drain => "backend drained",
            PaceCause::Down => "backend down",
            PaceCause::Rebalance => "rebalancing",
        }
    }
}

/// The outcome of one active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub at: SystemTime,
    /// From connect to verdict.
    pub latency: Duration,
    /// Why it failed; None when it passed.
    pub error: Option<String>,
}

/// What a backend name (`name:port` in a pool) resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub pool: String,
    pub name: String,
    /// The last good set of addresses (kept when a lookup fails).
    pub addrs: Vec<SocketAddr>,
    /// Why the latest lookup failed; None when it succeeded.
    pub error: Option<String>,
    /// When the latest lookup ended.
    pub at: SystemTime,
}

impl Resolution {
    /// One line for logs and the dashboard (`top` shows an instance's the same way).
    pub fn summary(&self) -> String {
        let (name, pool) = (&self.name, &self.pool);
        match &self.error {
            Some(why) => format!(
                "dns {name} ({pool}): {why}; keeping {} addresses",
                self.addrs.len()
            ),
            None => {
                let addrs: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
                format!("dns {name} ({pool}): {}", addrs.join(", "))
            }
        }
    }
}
