//! The registry of everything live in a running proxy, shared by every connection
//! task: the config, routes and pools, the live tunnels (by id) and connections
//! (by their slots, see `admission`), the exact counters, the event bus, and the
//! shutdown signal. Read-mostly; the few mutable parts are atomics or std mutexes
//! held for a few instructions, never across an await. Admin state changes only in
//! the command loop (`commands`).

use crate::sync::lock;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch, Notify, Semaphore};

use super::dns::Dns;
use super::listeners::Listeners;
use super::pool::Pools;
use super::route::Routes;
use super::tunnel::TunnelShared;
use super::upstream::UpstreamTls;
use crate::config::Config;
use crate::control::CLOSE_GOING_AWAY;
use crate::event::{Counters, Dir, Event, Flow, Limit, Snapshot, TunnelId};

/// Everything connection tasks share. Read-mostly; the few mutable parts are
/// atomics or std mutexes held for a few instructions, never across an await.
pub struct Registry {
    /// The running config, routes and backend TLS: each one snapshot a reload swaps
    /// whole (a request or connection reads them once, so it sees one config).
    pub(super) config: ArcSwap<Config>,
    pub(super) routes: ArcSwap<Routes>,
    pub(super) upstream_tls: ArcSwap<HashMap<String, UpstreamTls>>,
    pub pools: Pools,
    /// Backend names and what they resolve to.
    pub(super) dns: Dns,
    pub bus: broadcast::Sender<Event>,
    /// Someone follows the events (the dashboard, an API stream): tunnels capture
    /// whole messages under `capture = "watched"`.
    pub(super) watched: Arc<std::sync::atomic::AtomicBool>,
    /// Bytes of whole messages kept by every tunnel (`inspect.memory`).
    pub(super) capture_budget: Arc<super::frame::capture::Budget>,
    /// Writes recordings (`[inspect] record`), when configured.
    pub(super) recorder: Option<super::recorder::Recorder>,
    /// The listeners accepting now (a reload adds and removes them).
    pub(super) listeners: Listeners,
    pub started: SystemTime,
    pub(super) tunnels: Mutex<HashMap<TunnelId, Arc<TunnelShared>>>,
    pub(super) tunnels_empty: Notify,
    pub(super) next_id: AtomicU64,
    pub(super) total_tunnels: AtomicU64,
    pub(super) shutdown: watch::Sender<bool>,
    /// When shutdown's closes must be over (set once shutdown begins).
    pub(super) closes_by: std::sync::OnceLock<std::time::Instant>,
    pub(super) conn_limit: Option<Arc<Semaphore>>,
    pub(super) per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Client connections open (a tunnel keeps its connection's slot), and a
    /// notice when the last one ends: shutdown waits for requests in flight too.
    pub(super) open_slots: AtomicUsize,
    pub(super) slots_empty: Notify,
    /// Frames, messages and bytes of closed tunnels, per direction: added when a
    /// tunnel leaves the registry, under its lock, so live plus closed is exact.
    pub(super) closed: [[AtomicU64; 3]; 2],
    /// Handshakes and tunnels stopped by a WebSocket limit, by [`Limit`].
    pub(super) limit_hits: [AtomicU64; 3],
}

impl Registry {
    pub fn new(
        config: Arc<Config>,
        bus: broadcast::Sender<Event>,
        upstream_tls: HashMap<String, UpstreamTls>,
        dns: Dns,
    ) -> Registry {
        let max = config.limits.max_connections;
        let capture_budget = Arc::new(super::frame::capture::Budget::new(config.inspect.memory));
        let routes = Routes::new(&config);
        Registry {
            routes: ArcSwap::from_pointee(routes),
            pools: Pools::new(&dns.expand(&config.pools), bus.clone()),
            dns,
            config: ArcSwap::new(config),
            bus,
            watched: Default::default(),
            capture_budget,
            recorder: None,
            upstream_tls: ArcSwap::from_pointee(upstream_tls),
            listeners: Listeners::default(),
            started: SystemTime::now(),
            tunnels: Mutex::new(HashMap::new()),
            tunnels_empty: Notify::new(),
            next_id: AtomicU64::new(1),
            total_tunnels: AtomicU64::new(0),
            shutdown: watch::channel(false).0,
            closes_by: std::sync::OnceLock::new(),
            conn_limit: (max > 0).then(|| Arc::new(Semaphore::new(max))),
            per_ip: Mutex::new(HashMap::new()),
            open_slots: AtomicUsize::new(0),
            slots_empty: Notify::new(),
            closed: Default::default(),
            limit_hits: Default::default(),
        }
    }

    /// The running config (a reload swaps it; hold the result for one consistent view).
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The running routes.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.load_full()
    }

    /// The TLS settings of a pool's backends, if it uses TLS.
    pub fn upstream_tls(&self, pool: &str) -> Option<UpstreamTls> {
        self.upstream_tls.load().get(pool).cloned()
    }

    /// Publishes an event; having no subscriber is normal.
    pub fn publish(&self, event: Event) {
        let _ = self.bus.send(event);
    }

    /// Whether anyone listens. Per-tunnel events are built only if so: headless
    /// without the admin API, nobody would ever see them.
    pub fn observed(&self) -> bool {
        self.bus.receiver_count() > 0
    }

    /// Counts a handshake or tunnel stopped by a WebSocket limit.
    pub fn limit_hit(&self, limit: Limit) {
        self.limit_hits[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn next_id(&self) -> TunnelId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register(&self, tunnel: Arc<TunnelShared>) {
        self.total_tunnels.fetch_add(1, Ordering::Relaxed);
        lock(&self.tunnels).insert(tunnel.id, tunnel.clone());
        if self.is_shutting_down() {
            tunnel.request_close_by(
                CLOSE_GOING_AWAY,
                "going away",
                self.closes_by.get().copied(),
            );
        } else if let Some((code, reason)) =
            self.pools.backend(&tunnel.backend).and_then(|b| b.killed())
        {
            // Picked before a kill, upgraded after it: it must not outlive the kill.
            tunnel.request_close(code, &reason);
        }
    }

    pub fn unregister(&self, id: TunnelId) {
        let mut map = lock(&self.tunnels);
        if let Some(t) = map.remove(&id) {
            for (i, dir) in [Dir::ClientToBackend, Dir::BackendToClient]
                .into_iter()
                .enumerate()
            {
                let f = t.flow(dir);
                for (slot, n) in self.closed[i].iter().zip([f.frames, f.messages, f.bytes]) {
                    slot.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        if map.is_empty() {
            self.tunnels_empty.notify_waiters();
        }
    }

    pub(super) fn tunnels(&self) -> Vec<Arc<TunnelShared>> {
        lock(&self.tunnels).values().cloned().collect()
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Exact counters, without copying any tunnel's samples. Live tunnels are summed
    /// and closed ones read under the registry lock, so no tunnel is counted twice
    /// or missed while it leaves.
    pub fn counters(&self) -> Counters {
        let mut flows = [Flow::default(); 2];
        let mut parked = 0;
        let active = {
            let map = lock(&self.tunnels);
            for t in map.values() {
                parked += u64::from(t.parked.is_parked());
                for (i, dir) in [Dir::ClientToBackend, Dir::BackendToClient]
                    .into_iter()
                    .enumerate()
                {
                    let f = t.flow(dir);
                    flows[i].frames += f.frames;
                    flows[i].messages += f.messages;
                    flows[i].bytes += f.bytes;
                }
            }
            for (flow, closed) in flows.iter_mut().zip(&self.closed) {
                flow.frames += closed[0].load(Ordering::Relaxed);
                flow.messages += closed[1].load(Ordering::Relaxed);
                flow.bytes += closed[2].load(Ordering::Relaxed);
            }
            map.len() as u64
        };
        Counters {
            started: Some(self.started),
            backends: self.pools.infos(),
            tunnels_active: active,
            tunnels_parked: parked,
            tunnels_total: self.total_tunnels.load(Ordering::Relaxed),
            client_to_backend: flows[0],
            backend_to_client: flows[1],
            limit_hits: Limit::ALL.map(|l| self.limit_hits[l as usize].load(Ordering::Relaxed)),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut tunnels: Vec<_> = self.tunnels().iter().map(|t| t.info()).collect();
        tunnels.sort_by_key(|t| t.id);
        Snapshot {
            listeners: self.listeners.infos(),
            backends: self.pools.infos(),
            tunnels,
            total_tunnels: self.total_tunnels.load(Ordering::Relaxed),
            started: Some(self.started),
            resolutions: self.dns.resolutions(),
            fleet: None,
        }
    }

    /// Stops accepting and asks every tunnel to close with 1001, within the
    /// shutdown grace.
    pub fn begin_shutdown(&self) {
        let grace = self.config().timeouts.shutdown_grace;
        // The closes end a little before the grace does, so each tunnel is closed
        // and logged by the proxy rather than dropped with its event loop.
        let margin = (grace / 10).min(std::time::Duration::from_millis(250));
        let by = *self
            .closes_by
            .get_or_init(|| std::time::Instant::now() + grace - margin);
        if self.shutdown.send_replace(true) {
            return;
        }
        // Close the listening sockets now (the copies kept for an upgrade too), so
        // new clients are refused rather than left in the backlog.
        self.listeners.remove_all();
        let tunnels = self.tunnels();
        tracing::info!(tunnels = tunnels.len(), "shutting down");
        // Paced per pool at its close_rate, so clients reconnect elsewhere as a
        // trickle, but faster if that is what it takes to fit half the grace.
        let mut by_pool: HashMap<Arc<str>, Vec<Arc<TunnelShared>>> = HashMap::new();
        for t in tunnels {
            by_pool.entry(t.backend.pool.clone()).or_default().push(t);
        }
        let now = std::time::Instant::now();
        for (pool, mut tunnels) in by_pool {
            tunnels.sort_by_key(|t| t.id);
            let rate = self
                .pools
                .get(&pool)
                .map_or(crate::config::DEFAULT_CLOSE_RATE, |p| {
                    p.config.close_rate.max(1)
                });
            let gap = (std::time::Duration::from_secs(1) / rate)
                .min((grace / 2) / tunnels.len().max(1) as u32);
            for (k, t) in tunnels.iter().enumerate() {
                let at = now + gap * k as u32;
                t.request_close_at(CLOSE_GOING_AWAY, "going away", Some(at), Some(by));
            }
        }
    }

    /// Waits until no client connection is left: no request in flight, no tunnel.
    pub async fn connections_gone(&self) {
        loop {
            let notified = self.slots_empty.notified();
            if self.open_slots.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Waits until no tunnel is left.
    pub async fn tunnels_gone(&self) {
        loop {
            let notified = self.tunnels_empty.notified();
            if lock(&self.tunnels).is_empty() {
                return;
            }
            notified.await;
        }
    }
}

impl Registry {
    /// Calls `round` every `period` until shutdown begins; rounds missed while the
    /// process was busy are not made up.
    pub(super) async fn every(&self, period: std::time::Duration, mut round: impl FnMut()) {
        let mut shutdown = self.shutdown_signal();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => round(),
                _ = shutdown_begun(&mut shutdown) => return,
            }
        }
    }
}

/// The address a client connection came from, as the access log shows it.
pub fn peer_ip(addr: &SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

/// Resolves once shutdown has begun (without holding the watch guard across awaits).
pub async fn shutdown_begun(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
