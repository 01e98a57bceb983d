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
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::sync::lock;
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
    /// Backends a reload removed or replaced while they still had tunnels: listed
    /// (draining) until their last tunnel ends.
    retired: Mutex<Vec<Arc<Backend>>>,
}

/// The backends a [`Pools::replace`] added, removed, or replaced with new settings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PoolChanges {
    pub added: Vec<BackendId>,
    pub removed: Vec<BackendId>,
    pub changed: Vec<BackendId>,
}

impl Pools {
    /// Builds every pool of `config`; state changes are published on `events`.
    pub fn new(config: &BTreeMap<String, config::Pool>, events: broadcast::Sender<Event>) -> Self {
        Self {
            current: ArcSwap::from_pointee(build(config, &events)),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// Replaces the whole set with the pools of `config`, as a reload does. A backend
    /// whose pool, address and settings are unchanged is kept as it is (state,
    /// counters, tunnels). One that is gone or changed leaves the set; if it still
    /// has tunnels it drains: they run on, it is listed as draining until the last
    /// one ends, and it takes no new ones.
    pub fn replace(
        &self,
        config: &BTreeMap<String, config::Pool>,
        events: broadcast::Sender<Event>,
    ) -> PoolChanges {
        let old = self.current.load_full();
        let changes = changes_between(&old, config);
        let set: PoolSet = config
            .iter()
            .map(|(name, cfg)| {
                let backends = cfg
                    .servers
                    .iter()
                    .map(|server| match reusable(&old, name, server, cfg) {
                        Some(b) => Arc::clone(b),
                        None => Arc::new(Backend::new(name, server, cfg, events.clone())),
                    })
                    .collect();
                let pool = Pool::with_backends(name, cfg.clone(), backends);
                (name.clone(), Arc::new(pool))
            })
            .collect();
        let mut retired = lock(&self.retired);
        let left =
            |b: &&Arc<Backend>| changes.removed.contains(&b.id) || changes.changed.contains(&b.id);
        for b in old.values().flat_map(|p| p.backends.iter()).filter(left) {
            if b.active() > 0 {
                b.drain();
                retired.push(Arc::clone(b));
            }
        }
        self.current.store(Arc::new(set));
        changes
    }

    /// What [`Pools::replace`] with `config` would change, changing nothing.
    pub fn plan(&self, config: &BTreeMap<String, config::Pool>) -> PoolChanges {
        changes_between(&self.current.load(), config)
    }

    /// Every pool of the current set, in name order.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.current.load().values().cloned().collect()
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

    /// The state of every backend, in the order of [`Pools::backends`], then the
    /// ones a reload retired that still have tunnels.
    pub fn infos(&self) -> Vec<BackendInfo> {
        let set = self.current.load();
        let mut out: Vec<BackendInfo> = set
            .values()
            .flat_map(|p| p.backends.iter().map(|b| b.info()))
            .collect();
        let mut retired = lock(&self.retired);
        retired.retain(|b| b.active() > 0);
        out.extend(retired.iter().map(|b| b.info()));
        out
    }
}

/// The backend of `old` that a new config's `server` of pool `name` keeps: same
/// pool, same address, same settings.
fn reusable<'a>(
    old: &'a PoolSet,
    name: &str,
    server: &config::Server,
    cfg: &config::Pool,
) -> Option<&'a Arc<Backend>> {
    old.get(name)?
        .backends
        .iter()
        .find(|b| b.built_from(server, cfg))
}

/// The backends a new config adds, removes, or keeps at its address with other
/// settings (replaced), against the set `old`.
fn changes_between(old: &PoolSet, config: &BTreeMap<String, config::Pool>) -> PoolChanges {
    let mut changes = PoolChanges::default();
    let mut kept = Vec::new();
    for (name, cfg) in config {
        for server in &cfg.servers {
            let id = BackendId::new(name, &server.addr);
            if reusable(old, name, server, cfg).is_some() {
                kept.push(id);
            } else if old
                .get(name)
                .is_some_and(|p| p.backends.iter().any(|b| b.id == id))
            {
                changes.changed.push(id);
            } else {
                changes.added.push(id);
            }
        }
    }
    for b in old.values().flat_map(|p| p.backends.iter()) {
        if !kept.contains(&b.id) && !changes.changed.contains(&b.id) {
            changes.removed.push(b.id.clone());
        }
    }
    changes
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
        Self::with_backends(name, config, backends)
    }

    /// The pool `name` with these backends (in server order).
    fn with_backends(name: &str, config: config::Pool, backends: Vec<Arc<Backend>>) -> Self {
        let select = select::for_balance(config.balance, backends.len());
        Self {
            name: name.to_string(),
            config,
            backends,
            select,
        }
    }

    /// The pool's backends in configuration order.
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
