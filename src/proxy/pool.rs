//! Backend pools: admin state, passive health, tunnel counters and the balancing
//! algorithms.
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

use crate::sync::lock;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::config::{self, Balance};
use crate::event::{AdminState, BackendId, BackendInfo, Event, Health};

/// All named pools of the configuration.
#[derive(Debug)]
pub struct Pools {
    pools: BTreeMap<String, Arc<Pool>>,
}

impl Pools {
    /// Builds every pool of `config`; state changes are published on `events`.
    pub fn new(config: &BTreeMap<String, config::Pool>, events: broadcast::Sender<Event>) -> Self {
        let pools = config
            .iter()
            .map(|(name, cfg)| {
                let pool = Pool::new(name, cfg.clone(), events.clone());
                (name.clone(), Arc::new(pool))
            })
            .collect();
        Self { pools }
    }

    /// The pool called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.get(name)
    }

    /// All pools, in name order.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.values()
    }

    /// The backend named by `id` (its pool, then its address).
    pub fn backend(&self, id: &BackendId) -> Option<&Arc<Backend>> {
        let pool = self.pools.get(&*id.pool)?;
        pool.backends.iter().find(|b| b.id == *id)
    }

    /// Every backend, in pool name order and then in server order.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<Backend>> {
        self.pools.values().flat_map(|p| p.backends.iter())
    }

    /// The state of every backend, in the order of [`Pools::backends`].
    pub fn infos(&self) -> Vec<BackendInfo> {
        self.backends().map(|b| b.info()).collect()
    }
}

/// One pool: its servers and the algorithm that spreads tunnels over them.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    /// The pool's configuration as loaded (tls, ca, server_name, host_header, tries...).
    pub config: config::Pool,
    backends: Vec<Arc<Backend>>,
    balancer: Balancer,
}

impl Pool {
    /// Builds the pool `name` from its configuration.
    pub fn new(name: &str, config: config::Pool, events: broadcast::Sender<Event>) -> Self {
        let backends: Vec<Arc<Backend>> = config
            .servers
            .iter()
            .map(|server| Arc::new(Backend::new(name, server, &config, events.clone())))
            .collect();
        let balancer = Balancer::new(config.balance, backends.len());
        Self {
            name: name.to_string(),
            config,
            backends,
            balancer,
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
                let Some(chosen) = self.balancer.choose(&candidates, key) else {
                    continue;
                };
                let chosen = &candidates[chosen];
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

/// A backend eligible for the pick at hand, with its position in the pool (which
/// keys the round-robin state).
struct Candidate<'a> {
    index: usize,
    backend: &'a Arc<Backend>,
}

/// A selection algorithm with its state. `choose` only ever sees eligible candidates
/// of one tier (primaries or backups), so each algorithm is plain arithmetic.
#[derive(Debug)]
enum Balancer {
    /// Rotating counter that breaks ties between equally loaded backends.
    LeastConn { turn: AtomicUsize },
    /// Current weights of smooth weighted round robin, by backend index.
    RoundRobin { current: Mutex<Vec<i64>> },
    /// Rendezvous hashing (ip_hash and hash); round robin state for keyless picks.
    Hash { fallback: Mutex<Vec<i64>> },
}

impl Balancer {
    fn new(balance: Balance, backends: usize) -> Self {
        match balance {
            Balance::LeastConn => Balancer::LeastConn {
                turn: AtomicUsize::new(0),
            },
            Balance::RoundRobin => Balancer::RoundRobin {
                current: Mutex::new(vec![0; backends]),
            },
            Balance::IpHash | Balance::Hash => Balancer::Hash {
                fallback: Mutex::new(vec![0; backends]),
            },
        }
    }

    /// The position in `candidates` of the chosen one; None when there is none.
    fn choose(&self, candidates: &[Candidate<'_>], key: Option<&str>) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        Some(match (self, key) {
            (Balancer::LeastConn { turn }, _) => {
                least_conn(candidates, turn.fetch_add(1, Ordering::Relaxed))
            }
            (Balancer::RoundRobin { current }, _)
            | (Balancer::Hash { fallback: current }, None) => {
                smooth_wrr(&mut lock(current), candidates)
            }
            (Balancer::Hash { .. }, Some(key)) => rendezvous(key, candidates),
        })
    }
}

/// Fewest active tunnels per unit of weight; ties go round robin by `turn` so equal
/// backends share evenly even when tunnels are short.
fn least_conn(candidates: &[Candidate<'_>], turn: usize) -> usize {
    // Read each counter once: they move under our feet.
    let loads: Vec<(u64, u32)> = candidates
        .iter()
        .map(|c| (c.backend.active(), c.backend.weight))
        .collect();
    // active_a / weight_a < active_b / weight_b, cross-multiplied to stay in integers
    // (u128 cannot overflow: u64 * u32).
    let cmp = |(aa, wa): (u64, u32), (ab, wb): (u64, u32)| {
        (u128::from(aa) * u128::from(wb)).cmp(&(u128::from(ab) * u128::from(wa)))
    };
    let mut best: Vec<usize> = vec![0];
    for (i, &load) in loads.iter().enumerate().skip(1) {
        match cmp(load, loads[best[0]]) {
            CmpOrdering::Less => {
                best.clear();
                best.push(i);
            }
            CmpOrdering::Equal => best.push(i),
            CmpOrdering::Greater => {}
        }
    }
    best[turn % best.len()]
}

/// nginx's smooth weighted round robin: every candidate's current weight grows by its
/// weight, the largest wins (the first on ties) and pays back the total. Over a cycle
/// each backend gets exactly its share, interleaved rather than in bursts.
fn smooth_wrr(current: &mut [i64], candidates: &[Candidate<'_>]) -> usize {
    let mut total = 0i64;
    let mut best = 0;
    for (i, c) in candidates.iter().enumerate() {
        let weight = i64::from(c.backend.weight);
        current[c.index] += weight;
        total += weight;
        if current[c.index] > current[candidates[best].index] {
            best = i;
        }
    }
    current[candidates[best].index] -= total;
    best
}

/// Weighted rendezvous (highest random weight) hashing: each candidate scores the key
/// independently, so removing one only moves the keys it held.
fn rendezvous(key: &str, candidates: &[Candidate<'_>]) -> usize {
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for (i, c) in candidates.iter().enumerate() {
        let score = rendezvous_score(key, &c.backend.addr, c.backend.weight);
        if score > best_score {
            best = i;
            best_score = score;
        }
    }
    best
}

/// `weight / -ln(u)` with `u` uniform in (0, 1) from a stable hash of key and address:
/// the maximum over backends lands on each with probability proportional to its
/// weight (the logarithmic method of weighted rendezvous hashing).
fn rendezvous_score(key: &str, addr: &str, weight: u32) -> f64 {
    // 0xff never occurs in UTF-8, so ("ab", "c") and ("a", "bc") hash differently.
    let h = fmix64(fnv1a64(&[key.as_bytes(), &[0xff], addr.as_bytes()]));
    // The top 52 bits, centred: exactly representable and never 0 or 1.
    let u = ((h >> 12) as f64 + 0.5) / (1u64 << 52) as f64;
    f64::from(weight) / -u.ln()
}

/// FNV-1a, 64 bits, over the concatenation of `parts`. Chosen over std's hasher
/// because keys must map to the same backend across process restarts.
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's finaliser: FNV's high bits barely change between similar keys
/// ("10.0.0.1" vs "10.0.0.2"); this spreads every input bit over the whole word.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// One backend server of a pool.
#[derive(Debug)]
pub struct Backend {
    pub id: BackendId,
    /// `host:port` as configured; resolved by the caller when connecting.
    pub addr: String,
    /// At least 1 (a configured 0 is raised to 1 so the arithmetic stays sound).
    pub weight: u32,
    /// Used only when no primary of the pool is eligible.
    pub backup: bool,
    max_fails: u32,
    fail_timeout: Duration,
    /// Read lock-free by least_conn; written under `state` so that admin transitions
    /// that depend on it (draining -> drained) are exact.
    active: AtomicU64,
    total: AtomicU64,
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
}

/// What changes rarely and must change together.
#[derive(Debug)]
struct State {
    admin: AdminState,
    /// Some while Down: when it went down, or when its latest trial was given. The
    /// next trial comes `fail_timeout` after this.
    down_since: Option<Instant>,
    /// Start of the current failure window and the failures counted in it.
    window_start: Option<Instant>,
    window_fails: u32,
    /// Failures since start (what observers see).
    failures: u64,
    last_error: Option<String>,
    /// Close code and reason of the kill that disabled it, until re-enabled: a
    /// tunnel whose handshake was in flight during the kill is closed with it.
    killed: Option<(u16, String)>,
    /// Bumped for every state event, under this lock: events sent from two event
    /// loops may arrive out of order, and observers keep only the newest.
    version: u64,
}

impl State {
    fn eligible(&self, now: Instant, fail_timeout: Duration) -> bool {
        self.admin == AdminState::Active
            && match self.down_since {
                None => true,
                Some(since) => now.saturating_duration_since(since) >= fail_timeout,
            }
    }
}

impl Backend {
    fn new(
        pool: &str,
        server: &config::Server,
        config: &config::Pool,
        events: broadcast::Sender<Event>,
    ) -> Self {
        Self {
            id: BackendId::new(pool, &server.addr),
            addr: server.addr.clone(),
            weight: server.weight.max(1),
            backup: server.backup,
            max_fails: config.max_fails,
            fail_timeout: config.fail_timeout,
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            state: Mutex::new(State {
                admin: AdminState::Active,
                down_since: None,
                window_start: None,
                window_fails: 0,
                failures: 0,
                last_error: None,
                killed: None,
                version: 0,
            }),
            events,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Eligible for a NEW tunnel: admin Active and health Up (or Down but
    /// fail_timeout elapsed — then it gets a trial, as nginx does).
    pub fn eligible(&self, now: Instant) -> bool {
        self.state().eligible(now, self.fail_timeout)
    }

    /// Takes the backend for a pick if it is still eligible. A Down backend gives one
    /// trial per fail_timeout, as nginx does, rather than taking every new tunnel
    /// while its first trial is still connecting.
    fn claim(&self, now: Instant) -> bool {
        let mut state = self.state();
        if !state.eligible(now, self.fail_timeout) {
            return false;
        }
        if state.down_since.is_some() {
            state.down_since = Some(now);
        }
        true
    }

    /// Counts a connection attempt or tunnel for the backend until the Lease is
    /// dropped (active += 1), so balancing sees connects in flight. The tunnel
    /// counts towards `total` once [`Lease::established`] says it upgraded.
    /// Publishes the new counts.
    pub fn lease(self: &Arc<Self>) -> Lease {
        let info = {
            let mut state = self.state();
            self.active.fetch_add(1, Ordering::Relaxed);
            // A pick made just before a drain found no tunnel: "drained" would now be
            // false, so it is draining again until this tunnel ends.
            if state.admin == AdminState::Drained {
                state.admin = AdminState::Draining;
            }
            self.observed().then(|| self.next_info(&mut state))
        };
        if let Some(info) = info {
            self.publish(info);
        }
        Lease {
            backend: Arc::clone(self),
        }
    }

    /// Tunnels currently leased.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Tunnels established since start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// A failed connect / handshake: failures += 1, last_error set; after `max_fails`
    /// failures within `fail_timeout` (counted from the first of them) the backend is
    /// Down until fail_timeout passes (max_fails = 0 disables). A failed trial keeps it
    /// Down for another fail_timeout. Publishes the new state (the failure count
    /// changes every time).
    pub fn record_failure(&self, error: &str, now: Instant) {
        let info = {
            let mut state = self.state();
            state.failures += 1;
            state.last_error = Some(error.to_string());
            let in_window = state
                .window_start
                .is_some_and(|start| now.saturating_duration_since(start) < self.fail_timeout);
            if in_window {
                state.window_fails = state.window_fails.saturating_add(1);
            } else {
                state.window_start = Some(now);
                state.window_fails = 1;
            }
            let tripped = self.max_fails > 0 && state.window_fails >= self.max_fails;
            if state.down_since.is_some() || tripped {
                state.down_since = Some(now);
            }
            self.next_info(&mut state)
        };
        self.publish(info);
    }

    /// A successful connect: resets the failure window; Down -> Up (publishes only
    /// that change, successes being the common case).
    pub fn record_success(&self) {
        let info = {
            let mut state = self.state();
            state.window_start = None;
            state.window_fails = 0;
            if state.down_since.take().is_none() {
                return;
            }
            self.next_info(&mut state)
        };
        self.publish(info);
    }

    /// Active -> Draining, or straight to Drained when no tunnel is active. Other
    /// states are left alone (a disabled backend stays disabled).
    pub fn drain(&self) {
        self.transition(|admin, active| {
            (admin == AdminState::Active).then_some(if active == 0 {
                AdminState::Drained
            } else {
                AdminState::Draining
            })
        });
    }

    /// Draining/Drained/Disabled -> Active.
    pub fn undrain(&self) {
        self.state().killed = None;
        self.transition(|admin, _| (admin != AdminState::Active).then_some(AdminState::Active));
    }

    /// Disabled, remembering the Close to send to tunnels of this backend that
    /// register after the kill (their handshake was in flight).
    pub fn kill(&self, code: u16, reason: &str) {
        self.state().killed = Some((code, reason.to_string()));
        self.disable();
    }

    /// The kill's Close code and reason while the backend stays killed.
    pub fn killed(&self) -> Option<(u16, String)> {
        self.state().killed.clone()
    }

    /// Any state -> Disabled: no new tunnels until enabled; existing ones are left to
    /// the caller (a kill closes them).
    pub fn disable(&self) {
        self.transition(|_, _| Some(AdminState::Disabled));
    }

    /// Disabled -> Active.
    pub fn enable(&self) {
        self.state().killed = None;
        self.transition(|admin, _| (admin == AdminState::Disabled).then_some(AdminState::Active));
    }

    /// Applies an admin transition computed from (current state, active tunnels) and
    /// publishes it if the state changed.
    fn transition(&self, next: impl FnOnce(AdminState, u64) -> Option<AdminState>) {
        let info = {
            let mut state = self.state();
            match next(state.admin, self.active()) {
                Some(admin) if admin != state.admin => state.admin = admin,
                _ => return,
            }
            self.next_info(&mut state)
        };
        self.publish(info);
    }

    /// What operators chose.
    pub fn admin(&self) -> AdminState {
        self.state().admin
    }

    /// What passive checks found. Down stays Down until a connect succeeds, even once
    /// a trial is allowed: only the trial's outcome tells. `now` is not needed by that
    /// rule; it keeps the signature in step with [`Backend::eligible`].
    pub fn health(&self, _now: Instant) -> Health {
        health_of(&self.state())
    }

    /// The backend as snapshots and events describe it.
    pub fn info(&self) -> BackendInfo {
        self.info_locked(&self.state())
    }

    /// The state for a new event: a version newer than any sent before.
    fn next_info(&self, state: &mut State) -> BackendInfo {
        state.version += 1;
        self.info_locked(state)
    }

    fn info_locked(&self, state: &State) -> BackendInfo {
        BackendInfo {
            id: self.id.clone(),
            weight: self.weight,
            backup: self.backup,
            admin: state.admin,
            health: health_of(state),
            active_tunnels: self.active(),
            total_tunnels: self.total(),
            failures: state.failures,
            last_error: state.last_error.clone(),
            version: state.version,
        }
    }

    /// Sent outside the lock; no subscriber is fine.
    fn publish(&self, info: BackendInfo) {
        let _ = self.events.send(Event::BackendState(info));
    }

    /// Whether anyone listens: per-tunnel state events are only built if so.
    fn observed(&self) -> bool {
        self.events.receiver_count() > 0
    }
}

fn health_of(state: &State) -> Health {
    if state.down_since.is_some() {
        Health::Down
    } else {
        Health::Up
    }
}

/// One tunnel counted on a backend; dropping it ends the count (and completes a drain
/// when it was the last one).
#[derive(Debug)]
#[must_use = "a tunnel is counted only while its Lease lives"]
pub struct Lease {
    backend: Arc<Backend>,
}

impl Lease {
    /// The backend this tunnel runs on.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// The tunnel is up: count it as served (failed connects and plain HTTP
    /// requests, which also hold a lease while connecting, do not count).
    pub fn established(&self) {
        self.backend.total.fetch_add(1, Ordering::Relaxed);
        if self.backend.observed() {
            let info = self.backend.next_info(&mut self.backend.state());
            self.backend.publish(info);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let backend = &self.backend;
        let info = {
            let mut state = backend.state();
            let before = backend.active.fetch_sub(1, Ordering::Relaxed);
            if before == 1 && state.admin == AdminState::Draining {
                state.admin = AdminState::Drained;
            }
            // A drain that completes is always published; counts only if watched.
            let drained = before == 1 && state.admin == AdminState::Drained;
            (drained || backend.observed()).then(|| backend.next_info(&mut state))
        };
        if let Some(info) = info {
            backend.publish(info);
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
