//! What an observer of several proxies (`tunnelscope top`) adds to the contract:
//! each instance's state, each backend's share per instance, and what a command sent
//! to all of them did on each.

use std::sync::Arc;
use std::time::SystemTime;

use super::{AdminState, BackendId};

/// The instances an observer follows, as it sees them now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fleet {
    pub instances: Vec<Instance>,
    /// Per backend (merged by pool and address), each instance's part.
    pub shares: Vec<(BackendId, Vec<Share>)>,
    /// Grows when what the observer knows was replaced rather than advanced (an
    /// instance reconnected with a fresh snapshot, or went away): a dashboard
    /// rebuilds from a snapshot then.
    pub generation: u64,
}

impl Fleet {
    /// The parts of one backend, if several instances know it.
    pub fn shares(&self, id: &BackendId) -> Option<&[Share]> {
        self.shares
            .iter()
            .find(|(b, _)| b == id)
            .map(|(_, s)| s.as_slice())
    }
}

/// One followed instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Its short name (`--connect name=URL`, or its `[admin] name`, or the address).
    pub name: Arc<str>,
    /// Where its admin API is.
    pub url: String,
    pub link: Link,
    /// Live tunnels it reported last.
    pub tunnels: u64,
}

/// How an observer's connection to an instance stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Connecting,
    Up,
    /// Lost or refused: why, and when the next attempt is due.
    Down {
        why: String,
        retry_at: SystemTime,
    },
}

/// One instance's part of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub instance: Arc<str>,
    pub active_tunnels: u64,
    pub admin: AdminState,
}

/// What one command did on each instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetOutcome {
    /// The command, as an operator would say it (`drain app/10.0.0.1:80`).
    pub command: String,
    /// Per instance: what it answered, or why it could not be asked.
    pub results: Vec<(Arc<str>, Result<String, String>)>,
}
