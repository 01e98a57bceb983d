//! Backend pools: the set of pools as one snapshot that a reload can swap while
//! requests read it without locks; each pool's backends and how a new tunnel picks
//! one of them.
//!
//! - `backend`: one backend's admin state, health, counters and leases.
//! - `select`: the balancing algorithms behind one trait.
//!
//! No I/O happens here: the caller picks a backend, connects to it itself, and
//! reports back with [`Backend::record_success`] or [`Backend::record_failure`]. The
//! module is synchronous and read-mostly: per-backend counters are atomics and the rest
//! of a backend's state sits behind a short std `Mutex` that is never held across an
//! `.await` (nothing here awaits).
//!
//! Two separate notions decide whether a backend takes new tunnels:
//!
//! - its *admin state* ([`AdminState`]), which only operators change (drain, disable),
//! - its *health* ([`Health`]), which only passive checks change (failed connects),
//!
//! so that, for instance, a backend coming back up does not undo an operator's drain.
//! Every change of a backend's state or counters is published as
//! [`Event::BackendState`] so observers stay exact without polling.

mod backend;
mod select;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::broadcast;

pub use self::backend::{Backend, Lease};
use self::select::{Candidate, Select};
use crate::config;
use crate::event::{BackendId, BackendInfo, Event};

/// The pools by name.
type PoolSet = BTreeMap<String, Arc<Pool>>;

/// All named pools, as one read-mostly snapshot behind an atomically swapped
/// pointer: a request loads it without a lock, and [`Pools::replace`] swaps in a new
/// set. Whatever holds a pool or a backend of the old set (a tunnel's [`Lease`])
/// keeps it alive until it is done.
#[derive(Debug)]
pub struct Pools {
    current: ArcSwap<PoolSet>,
}

impl Pools {
    /// Builds every pool of `config`; state changes are published on `events`.
    pub fn new(config: &BTreeMap<String, config::Pool>, events: broadcast::Sender<Event>) -> Self {
        Self {
            current: ArcSwap::from_pointee(build(config, &events)),
        }
    }

    /// Replaces the whole set with the pools of `config`.
    // Reload (the operations issue) is its caller; until then only tests are.
    #[allow(dead_code)]
    pub fn replace(
        &self,
        config: &BTreeMap<String, config::Pool>,
        events: broadcast::Sender<Event>,
    ) {
        self.current.store(Arc::new(build(config, &events)));
    }

    /// The pool called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Pool>> {
        self.current.load().get(name).cloned()
    }

    /// The backend named by `id` (its pool, then its address).
    pub fn backend(&self, id: &BackendId) -> Option<Arc<Backend>> {
        let set = self.current.load();
        let pool = set.get(&*id.pool)?;
        pool.backends.iter().find(|b| b.id == *id).cloned()
    }

    /// Every backend, in pool name order and then in server order.
    #[cfg(test)]
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        let set = self.current.load();
        set.values()
            .flat_map(|p| p.backends.iter().cloned())
            .collect()
    }

    /// The state of every backend, in the order of [`Pools::backends`].
    pub fn infos(&self) -> Vec<BackendInfo> {
        let set = self.current.load();
        set.values()
            .flat_map(|p| p.backends.iter().map(|b| b.info()))
            .collect()
    }
}

fn build(config: &BTreeMap<String, config::Pool>, events: &broadcast::Sender<Event>) -> PoolSet {
    config
        .iter()
        .map(|(name, cfg)| {
            let pool = Pool::new(name, cfg.clone(), events.clone());
            (name.clone(), Arc::new(pool))
        })
        .collect()
}

/// One pool: its servers and the algorithm that spreads tunnels over them.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    /// The pool's configuration as loaded (tls, ca, server_name, host_header, tries...).
    pub config: config::Pool,
    backends: Vec<Arc<Backend>>,
    select: Box<dyn Select>,
}

impl Pool {
    /// Builds the pool `name` from its configuration.
    pub fn new(name: &str, config: config::Pool, events: broadcast::Sender<Event>) -> Self {
        let backends: Vec<Arc<Backend>> = config
            .servers
            .iter()
            .map(|server| Arc::new(Backend::new(name, server, &config, events.clone())))
            .collect();
        let select = select::for_balance(config.balance, backends.len());
        Self {
            name: name.to_string(),
            config,
            backends,
            select,
        }
    }

    /// The pool's backends in configuration order.
    #[cfg(test)]
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// Picks an eligible backend, skipping `exclude` (those already tried for this
    /// request). Primaries first; `backup` servers only when no primary is eligible.
    /// `key` is the hash input for ip_hash (client IP as text) and hash (the
    /// header/cookie/query value); when balance is hash/ip_hash and key is None, falls
    /// back to round robin.
    pub fn pick(&self, key: Option<&str>, exclude: &[BackendId]) -> Option<Arc<Backend>> {
        self.pick_at(key, exclude, Instant::now())
    }

    /// [`Pool::pick`] at a given instant (tests inject time instead of sleeping).
    pub fn pick_at(
        &self,
        key: Option<&str>,
        exclude: &[BackendId],
        now: Instant,
    ) -> Option<Arc<Backend>> {
        // Down backends whose trial a concurrent pick took between our eligibility
        // check and our claim; they are skipped on the retry.
        let mut lost = Vec::new();
        'retry: loop {
            for backup in [false, true] {
                let candidates: Vec<Candidate<'_>> = self
                    .backends
                    .iter()
                    .enumerate()
                    .filter(|(i, b)| {
                        b.backup == backup
                            && !lost.contains(i)
                            && !exclude.contains(&b.id)
                            && b.eligible(now)
                    })
                    .map(|(index, backend)| Candidate { index, backend })
                    .collect();
                if candidates.is_empty() {
                    continue;
                }
                let chosen = &candidates[self.select.choose(&candidates, key)];
                if chosen.backend.claim(now) {
                    return Some(Arc::clone(chosen.backend));
                }
                lost.push(chosen.index);
                continue 'retry;
            }
            return None;
        }
    }
}

#[cfg(test)]
mod tests;
