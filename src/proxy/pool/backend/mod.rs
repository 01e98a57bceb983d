//! One backend: what operators chose (admin state), what passive checks found
//! (health; kept apart, so a backend coming back up does not undo a drain), its
//! tunnel counters, and the lease a tunnel holds on it. Every change is published
//! as a versioned `BackendState` event.

use crate::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::config;
use crate::event::{AdminState, BackendId, BackendInfo, CheckResult, Event, Health, PacedClose};

mod pace;

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
    /// The `name:port` this backend's address was resolved from, if any.
    pub via: Option<String>,
    max_fails: u32,
    fail_timeout: Duration,
    /// Read lock-free by least_conn; written under `state` so that admin transitions
    /// that depend on it (draining -> drained) are exact.
    active: AtomicU64,
    total: AtomicU64,
    state: Mutex<State>,
    clock: Mutex<CheckClock>,
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
    /// Active health checks found it down (kept apart from passive `down_since`).
    check_down: bool,
    /// Consecutive check results the other way than `check_down` says (toward
    /// `rise` or `fall`).
    check_streak: u32,
    /// The latest active check.
    check: Option<CheckResult>,
    /// The paced close under way, with the token of the task running it.
    pace: Option<(u64, PacedClose)>,
}

/// When the next active check of a backend is due, and whether one is running.
#[derive(Debug, Default)]
struct CheckClock {
    next: Option<Instant>,
    running: bool,
}

impl State {
    fn eligible(&self, now: Instant, fail_timeout: Duration) -> bool {
        self.admin == AdminState::Active
            && !self.check_down
            && match self.down_since {
                None => true,
                Some(since) => now.saturating_duration_since(since) >= fail_timeout,
            }
    }
}

impl Backend {
    /// Whether this backend was built from these settings (a reload keeps it, with
    /// its state, counters and tunnels, if so).
    pub(super) fn built_from(&self, server: &config::Server, config: &config::Pool) -> bool {
        self.addr == server.addr
            && self.via == server.via
            && self.weight == server.weight.max(1)
            && self.backup == server.backup
            && self.max_fails == config.max_fails
            && self.fail_timeout == config.fail_timeout
    }

    pub(super) fn new(
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
            via: server.via.clone(),
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
                check_down: false,
                check_streak: 0,
                check: None,
                pace: None,
            }),
            clock: Mutex::new(CheckClock::default()),
            events,
        }
    }

    /// `host:port` as requests and TLS should name the backend: the name it was
    /// resolved from, or its address.
    pub fn authority(&self) -> &str {
        self.via.as_deref().unwrap_or(&self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Whether an active check is due now; if so it counts as started (the next one
    /// is due about `interval` later, and none starts while this one runs). Checks
    /// are spread with jitter, so a pool's backends (and several proxies checking
    /// one backend) are not probed in lockstep: the first comes at a random point
    /// of the first interval, each next one 90-110% of an interval later.
    pub fn check_due(&self, now: Instant, interval: Duration) -> bool {
        let mut clock = lock(&self.clock);
        let Some(next) = clock.next else {
            clock.next = Some(now + interval.mul_f64(fastrand::f64()));
            return false;
        };
        if clock.running || now < next {
            return false;
        }
        clock.running = true;
        clock.next = Some(now + interval.mul_f64(0.9 + 0.2 * fastrand::f64()));
        true
    }

    /// The result of an active check: `fall` failures in a row take the backend out
    /// of service (no new tunnels; open ones run on), `rise` successes bring it back.
    /// A flip is always published, any other result only if someone watches. Returns
    /// true when this result took the backend down.
    pub fn record_check(&self, result: CheckResult, rise: u32, fall: u32) -> bool {
        lock(&self.clock).running = false;
        let (info, went_down) = {
            let mut state = self.state();
            let passed = result.error.is_none();
            let against = passed == state.check_down;
            state.check_streak = if against { state.check_streak + 1 } else { 0 };
            if let Some(e) = &result.error {
                state.last_error = Some(format!("health check: {e}"));
            }
            state.check = Some(result);
            let flip = if state.check_down { rise } else { fall };
            if !against || state.check_streak < flip {
                let info = self.observed().then(|| self.next_info(&mut state));
                (info, false)
            } else {
                state.check_down = !state.check_down;
                state.check_streak = 0;
                tracing::info!(
                    backend = %self.id,
                    health = if state.check_down { "down" } else { "up" },
                    "active health check"
                );
                (Some(self.next_info(&mut state)), state.check_down)
            }
        };
        if let Some(info) = info {
            self.publish(info);
        }
        went_down
    }

    /// Eligible for a NEW tunnel: admin Active and health Up (or Down but
    /// fail_timeout elapsed — then it gets a trial, as nginx does).
    pub fn eligible(&self, now: Instant) -> bool {
        self.state().eligible(now, self.fail_timeout)
    }

    /// Takes the backend for a pick if it is still eligible. A Down backend gives one
    /// trial per fail_timeout, as nginx does, rather than taking every new tunnel
    /// while its first trial is still connecting.
    pub(super) fn claim(&self, now: Instant) -> bool {
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
            // Back in service: a drain's paced close is called off (a close for a
            // backend checks found down goes on).
            if state.admin == AdminState::Active
                && matches!(&state.pace, Some((_, p)) if p.cause == crate::event::PaceCause::Drain)
            {
                state.pace = None;
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
    #[cfg(test)]
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
            via: self.via.clone(),
            admin: state.admin,
            health: health_of(state),
            active_tunnels: self.active(),
            total_tunnels: self.total(),
            failures: state.failures,
            last_error: state.last_error.clone(),
            check: state.check.clone(),
            closing: state.pace.as_ref().map(|(_, p)| p.clone()),
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
    if state.down_since.is_some() || state.check_down {
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
