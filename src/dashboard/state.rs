//! What the dashboard knows about the proxy: a pure model built from a [`Snapshot`]
//! and advanced by applying [`Event`]s. No terminal, no channels, no clock of its own
//! (every call is given `now`), so it is tested by feeding event sequences.
//!
//! Everything here is bounded: a frame tail per tunnel, a minute of rates, closed
//! tunnels for a minute (at most [`CLOSED_MAX`]) and a fixed number of log lines, so a
//! busy proxy cannot grow the dashboard's memory.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use crate::event::{
    BackendId, BackendInfo, ConfigDiff, Event, ListenerInfo, Refusal, Side, Snapshot, TunnelId,
    TunnelStats,
};
use tracing::Level;

use super::tunnel::messages;
pub use super::tunnel::Tunnel;

use super::rates::{Flow, MsgRate, Rates};

/// Frame samples kept per live tunnel.
pub const TAIL_CAP: usize = 500;
/// Frame samples kept per closed tunnel (history is for a glance, not for scrolling).
pub const CLOSED_TAIL_CAP: usize = 50;
/// How long a closed tunnel stays listed.
pub const CLOSED_KEEP: Duration = Duration::from_secs(60);
/// At most this many closed tunnels are listed, newest kept.
pub const CLOSED_MAX: usize = 200;
/// Log lines kept for the log pane.
pub const LOG_CAP: usize = 1000;
/// Violations remembered per tunnel (the count goes on).
const VIOLATIONS_KEPT: usize = 16;
/// A handshake that has not finished after this long lost its ending while we lagged.
const PENDING_MAX: Duration = Duration::from_secs(60);

/// Traffic between two readings of a tunnel's counters, per direction.
fn delta(old: &TunnelStats, new: &TunnelStats) -> (Flow, Flow) {
    let d = |o: &crate::event::DirStats, n: &crate::event::DirStats| Flow {
        msgs: n.messages.saturating_sub(o.messages),
        bytes: n.bytes.saturating_sub(o.bytes),
    };
    (
        d(&old.client_to_backend, &new.client_to_backend),
        d(&old.backend_to_client, &new.backend_to_client),
    )
}

/// How a listed tunnel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Closed {
        code: Option<u16>,
        reason: String,
        side: Side,
        duration: Duration,
        /// The I/O error it ended on, if any.
        error: Option<String>,
    },
    /// The handshake failed; there never was a tunnel.
    Refused(Refusal),
    /// It ended while the dashboard lagged behind the event bus.
    Lost,
}

/// A tunnel that has ended, kept as history for [`CLOSED_KEEP`].
#[derive(Debug, Clone)]
pub struct ClosedTunnel {
    pub tunnel: Tunnel,
    pub ending: Ending,
    pub at: SystemTime,
}

/// A line for the log pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: SystemTime,
    pub level: Level,
    pub text: String,
}

/// Proxy-wide counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Tunnels established since start (as the core counts them).
    pub tunnels: u64,
    pub refused: u64,
    pub http_requests: u64,
}

/// The dashboard's model of the proxy.
#[derive(Debug, Clone)]
pub struct State {
    /// The clock as of the last `apply`/`tick`; rendering measures ages against it.
    pub now: SystemTime,
    pub started: Option<SystemTime>,
    pub listeners: Vec<ListenerInfo>,
    /// In the order the core listed them (configuration order), new ones appended.
    pub backends: Vec<BackendInfo>,
    /// Live tunnels and handshakes in progress.
    pub tunnels: BTreeMap<TunnelId, Tunnel>,
    /// Ended tunnels, oldest first.
    pub closed: VecDeque<ClosedTunnel>,
    pub totals: Totals,
    pub rates: Rates,
    pub logs: VecDeque<LogLine>,
    /// Log lines the tracing layer had to drop because the dashboard fell behind.
    pub logs_dropped: u64,
    /// A line shown under the header, e.g. the demo's URL.
    pub banner: Option<String>,
    /// Times the dashboard fell behind the bus and resynchronised.
    pub resyncs: u64,
    lagged: bool,
    /// A reload changed the backends: the next resync takes the new set.
    reload_pending: bool,
    /// What a reload would change (asked for with `R`), until the UI takes it.
    pub reload_preview: Option<Result<ConfigDiff, String>>,
    /// The whole messages captured on the tunnel whose detail is open, as of this
    /// tick (the run loop fetches them while a detail is open).
    pub messages: Option<(TunnelId, Vec<crate::event::CapturedMessage>)>,
    /// The instances followed (`tunnelscope top`); None for one local proxy.
    pub fleet: Option<crate::event::Fleet>,
    /// The last command sent to every instance, and what it did on each.
    pub outcome: Option<(SystemTime, crate::event::FleetOutcome)>,
}

impl State {
    /// The model of a proxy as `snapshot` describes it.
    pub fn from_snapshot(snapshot: Snapshot, now: SystemTime) -> Self {
        let mut s = Self {
            now,
            started: None,
            listeners: Vec::new(),
            backends: Vec::new(),
            tunnels: BTreeMap::new(),
            closed: VecDeque::new(),
            totals: Totals::default(),
            rates: Rates::default(),
            logs: VecDeque::new(),
            logs_dropped: 0,
            banner: None,
            resyncs: 0,
            lagged: false,
            reload_pending: false,
            reload_preview: None,
            messages: None,
            fleet: None,
            outcome: None,
        };
        s.rates.roll(now);
        s.load(snapshot, now, false);
        s
    }

    /// Advances the model by one event observed at `now`.
    pub fn apply(&mut self, ev: &Event, now: SystemTime) {
        self.now = now;
        self.rates.roll(now);
        match ev {
            Event::TunnelOpened {
                id,
                at,
                client,
                listener,
                route,
                path,
                idle_timeout,
                instance,
            } => {
                // Already known when the snapshot was taken after this event was sent.
                self.tunnels.entry(*id).or_insert_with(|| {
                    let mut t = Tunnel::opened(*id, *at, *client);
                    t.instance = instance.clone();
                    t.listener = listener.clone();
                    t.route = route.clone();
                    t.path = path.clone();
                    t.idle_timeout = *idle_timeout;
                    t
                });
            }
            Event::Hold { id, dir, state } => {
                if let Some(t) = self.tunnels.get_mut(id) {
                    t.held.retain(|h| h.dir != *dir);
                    t.held.extend(state.clone());
                }
            }
            Event::BackendChosen { id, backend } => {
                if let Some(t) = self.tunnels.get_mut(id) {
                    t.backend = Some(backend.clone());
                }
            }
            Event::Parked { id, parked } => {
                if let Some(t) = self.tunnels.get_mut(id) {
                    t.parked = *parked;
                }
            }
            Event::Handshake { id, handshake } => {
                if let Some(t) = self.tunnels.get_mut(id) {
                    if t.handshake.is_none() {
                        self.totals.tunnels += 1;
                    }
                    t.handshake = Some(handshake.clone());
                }
            }
            Event::Refused { id, refusal } => {
                self.totals.refused += 1;
                if let Some(t) = self.tunnels.remove(id) {
                    self.retire(t, Ending::Refused(refusal.clone()), now);
                }
            }
            Event::FrameStats { id, stats } => {
                if let Some(t) = self.tunnels.get_mut(id) {
                    let (c2b, b2c) = delta(&t.stats, stats);
                    self.rates.add(now, c2b, b2c);
                    t.stats = stats.clone();
                    t.rate.record(now, messages(stats));
                }
            }
            Event::FrameSamples { id, samples } => {
                if let Some(t) = self.tunnels.get_mut(id) {
                    t.push_samples(samples);
                }
            }
            Event::Violation { id, dir, violation } => {
                if let Some(t) = self.tunnels.get_mut(id) {
                    if t.violations.len() == VIOLATIONS_KEPT {
                        t.violations.pop_front();
                    }
                    t.violations.push_back((*dir, *violation));
                    t.violation_count += 1;
                }
            }
            Event::TunnelClosed {
                id,
                code,
                reason,
                side,
                duration,
                stats,
                error,
            } => {
                if let Some(mut t) = self.tunnels.remove(id) {
                    let (c2b, b2c) = delta(&t.stats, stats);
                    self.rates.add(now, c2b, b2c);
                    t.stats = stats.clone();
                    let ending = Ending::Closed {
                        code: *code,
                        reason: reason.clone(),
                        side: *side,
                        duration: *duration,
                        error: error.clone(),
                    };
                    self.retire(t, ending, now);
                }
            }
            Event::BackendState(info) => self.upsert_backend(info.clone()),
            Event::HttpRequest { .. } => self.totals.http_requests += 1,
            Event::Fleet(f) => {
                let held = self.fleet.as_ref().map(|old| old.generation);
                // One overtaken by a newer (links publish independently) is ignored.
                if held.is_none_or(|g| f.generation >= g) {
                    if held != Some(f.generation) {
                        // An instance came back or went away: rebuild from a snapshot.
                        self.reload_pending = true;
                    }
                    self.fleet = Some(f.clone());
                }
            }
            Event::FleetOutcome(o) => {
                let failed = o.results.iter().any(|(_, r)| r.is_err());
                let level = if failed { Level::WARN } else { Level::INFO };
                self.push_log(level, crate::dashboard::fmt::fleet_outcome(o));
                self.outcome = Some((now, o.clone()));
            }
            Event::ReloadPreview(preview) => self.reload_preview = Some(preview.clone()),
            Event::Resolved(r) => {
                if r.error.is_some() {
                    self.push_log(Level::WARN, r.summary());
                } else {
                    self.push_log(Level::INFO, r.summary());
                    // Backends joined or left: take the new set from a snapshot.
                    self.reload_pending = true;
                }
            }
            Event::ConfigReloaded(diff) => {
                self.push_log(Level::INFO, format!("config reloaded: {}", diff.summary()));
                // Backends came and went: take the new set from a snapshot.
                self.reload_pending = true;
            }
        }
    }

    /// Moves time forward without an event: rolls rate buckets, expires history.
    pub fn tick(&mut self, now: SystemTime) {
        self.now = now;
        self.rates.roll(now);
        while let Some(c) = self.closed.front() {
            if since(now, c.at) > CLOSED_KEEP || self.closed.len() > CLOSED_MAX {
                self.closed.pop_front();
            } else {
                break;
            }
        }
        let stale: Vec<TunnelId> = self
            .tunnels
            .values()
            .filter(|t| t.handshake.is_none() && since(now, t.opened) > PENDING_MAX)
            .map(|t| t.id)
            .collect();
        for id in stale {
            if let Some(t) = self.tunnels.remove(&id) {
                self.retire(t, Ending::Lost, now);
            }
        }
    }

    /// The bus dropped events for us: the next resync must rebuild from a snapshot.
    pub fn on_lagged(&mut self) {
        self.lagged = true;
    }

    /// Whether events were missed since the last resync.
    pub fn needs_resync(&self) -> bool {
        self.lagged || self.reload_pending
    }

    /// Rebuilds live tunnels and backends from `snapshot` after a lag. Closed history,
    /// rates, logs and frame tails survive; tunnels that vanished meanwhile move to the
    /// history as [`Ending::Lost`].
    pub fn resync(&mut self, snapshot: Snapshot, now: SystemTime) {
        self.now = now;
        self.rates.roll(now);
        self.load(snapshot, now, true);
        if self.lagged {
            self.resyncs += 1;
        }
        self.lagged = false;
        self.reload_pending = false;
    }

    /// Adds a line to the log pane (fed by the tracing layer in [`super::logs`]).
    pub fn push_log(&mut self, level: Level, line: impl Into<String>) {
        if self.logs.len() == LOG_CAP {
            self.logs.pop_front();
        }
        self.logs.push_back(LogLine {
            at: self.now,
            level,
            text: line.into(),
        });
    }

    /// A live or recently closed tunnel by id.
    pub fn find(&self, id: TunnelId) -> Option<(&Tunnel, Option<&ClosedTunnel>)> {
        if let Some(t) = self.tunnels.get(&id) {
            return Some((t, None));
        }
        self.closed
            .iter()
            .rev()
            .find(|c| c.tunnel.id == id)
            .map(|c| (&c.tunnel, Some(c)))
    }

    pub fn backend(&self, id: &BackendId) -> Option<&BackendInfo> {
        self.backends.iter().find(|b| &b.id == id)
    }

    /// Established tunnels (handshakes in progress not counted).
    pub fn live_count(&self) -> usize {
        self.tunnels
            .values()
            .filter(|t| t.handshake.is_some())
            .count()
    }

    /// How long the proxy has been running.
    pub fn uptime(&self) -> Option<Duration> {
        self.started.map(|s| since(self.now, s))
    }

    /// Each backend's part of the live tunnels, 0.0..=1.0, in `backends` order.
    pub fn shares(&self) -> Vec<f64> {
        let total: u64 = self.backends.iter().map(|b| b.active_tunnels).sum();
        self.backends
            .iter()
            .map(|b| {
                if total == 0 {
                    0.0
                } else {
                    b.active_tunnels as f64 / total as f64
                }
            })
            .collect()
    }

    fn upsert_backend(&mut self, info: BackendInfo) {
        match self.backends.iter_mut().find(|b| b.id == info.id) {
            // Events from two event loops can arrive out of order: keep the newest.
            Some(b) if info.version > b.version => *b = info,
            Some(_) => {}
            None => self.backends.push(info),
        }
    }

    fn retire(&mut self, mut tunnel: Tunnel, ending: Ending, now: SystemTime) {
        while tunnel.tail.len() > CLOSED_TAIL_CAP {
            tunnel.tail.pop_front();
        }
        tunnel.rate = MsgRate::default();
        if self.closed.len() == CLOSED_MAX {
            self.closed.pop_front();
        }
        self.closed.push_back(ClosedTunnel {
            tunnel,
            ending,
            at: now,
        });
    }

    fn load(&mut self, snapshot: Snapshot, now: SystemTime, merge: bool) {
        self.listeners = snapshot.listeners;
        if snapshot.started.is_some() {
            self.started = snapshot.started;
        }
        self.totals.tunnels = snapshot.total_tunnels;
        if snapshot.fleet.is_some() {
            self.fleet = snapshot.fleet;
        }
        for b in snapshot.backends {
            self.upsert_backend(b);
        }
        let mut fresh: BTreeMap<TunnelId, Tunnel> = BTreeMap::new();
        for info in &snapshot.tunnels {
            let t = match self.tunnels.remove(&info.id) {
                Some(mut known) if merge => {
                    // Traffic we missed while lagging is real traffic: count it.
                    let (c2b, b2c) = delta(&known.stats, &info.stats);
                    self.rates.add(now, c2b, b2c);
                    known.stats = info.stats.clone();
                    known.backend = info.backend.clone().or(known.backend);
                    if info.handshake.is_some() {
                        known.handshake = info.handshake.clone();
                    }
                    known.rate.record(now, messages(&info.stats));
                    known.push_samples(&info.samples);
                    known
                }
                _ => Tunnel::from_info(info, now),
            };
            fresh.insert(info.id, t);
        }
        // The snapshot lists established tunnels only: handshakes in progress stay,
        // established ones it no longer lists have closed while we were not looking.
        for (id, t) in std::mem::take(&mut self.tunnels) {
            if t.handshake.is_none() {
                fresh.insert(id, t);
            } else {
                self.retire(t, Ending::Lost, now);
            }
        }
        self.tunnels = fresh;
    }
}

fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}
