//! The shared state of a running proxy: pools, the tunnel registry, the event bus,
//! routes, limits, and the one task that applies control commands and publishes
//! batched frame statistics. Only this task changes admin state.

use crate::sync::lock;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::{broadcast, mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};

use super::pool::Pools;
use super::request::route::Routes;
use super::tunnel::TunnelShared;
use super::upstream::UpstreamTls;
use crate::config::Config;
use crate::control::{Command, Outcome, Request, CLOSE_GOING_AWAY};
use crate::event::{Counters, Dir, Event, Flow, Limit, ListenerInfo, Snapshot, TunnelId};

/// Everything connection tasks share. Read-mostly; the few mutable parts are
/// atomics or std mutexes held for a few instructions, never across an await.
pub struct Core {
    pub config: Arc<Config>,
    pub routes: Routes,
    pub pools: Pools,
    pub bus: broadcast::Sender<Event>,
    pub upstream_tls: HashMap<String, UpstreamTls>,
    pub listeners: Vec<ListenerInfo>,
    pub started: SystemTime,
    tunnels: Mutex<HashMap<TunnelId, Arc<TunnelShared>>>,
    tunnels_empty: Notify,
    next_id: AtomicU64,
    total_tunnels: AtomicU64,
    shutdown: watch::Sender<bool>,
    /// When shutdown's closes must be over (set once shutdown begins).
    closes_by: std::sync::OnceLock<std::time::Instant>,
    conn_limit: Option<Arc<Semaphore>>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Client connections open (a tunnel keeps its connection's slot), and a
    /// notice when the last one ends: shutdown waits for requests in flight too.
    open_slots: AtomicUsize,
    slots_empty: Notify,
    /// Frames, messages and bytes of closed tunnels, per direction: added when a
    /// tunnel leaves the registry, under its lock, so live plus closed is exact.
    closed: [[AtomicU64; 3]; 2],
    /// Handshakes and tunnels stopped by a WebSocket limit, by [`Limit`].
    limit_hits: [AtomicU64; 3],
}

/// Holds a client connection's place under the connection limits.
pub struct ConnSlot {
    core: Arc<Core>,
    /// Its place under the per-IP limit; `None` when the peer is a trusted proxy
    /// (each request it forwards is counted for its own client instead).
    _ip: Option<IpSlot>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if self.core.open_slots.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.core.slots_empty.notify_waiters();
        }
    }
}

/// One place under `max_connections_per_ip` for a client address.
pub struct IpSlot {
    core: Arc<Core>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = lock(&self.core.per_ip);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Core {
    pub fn new(
        config: Arc<Config>,
        bus: broadcast::Sender<Event>,
        upstream_tls: HashMap<String, UpstreamTls>,
        listeners: Vec<ListenerInfo>,
    ) -> Core {
        let max = config.limits.max_connections;
        let routes = Routes::new(&config);
        Core {
            routes,
            pools: Pools::new(&config.pools, bus.clone()),
            config,
            bus,
            upstream_tls,
            listeners,
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

    /// A place for a new client connection, or `None` when a limit is reached. A
    /// trusted proxy's connection is not counted under the per-IP limit: the
    /// requests it forwards are, by their client ([`Core::admit_forwarded`]).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let permit = match &self.conn_limit {
            Some(sem) => Some(sem.clone().try_acquire_owned().ok()?),
            None => None,
        };
        let ip_slot = if self.is_trusted(ip) {
            None
        } else {
            Some(self.admit_ip(ip)?)
        };
        self.open_slots.fetch_add(1, Ordering::AcqRel);
        Some(ConnSlot {
            core: self.clone(),
            _ip: ip_slot.flatten(),
            _permit: permit,
        })
    }

    /// For a request that came through a trusted proxy: a place under the per-IP
    /// limit for the client it forwarded for, held while the request or its tunnel
    /// lives. `Ok(None)` when there is nothing to count; `Err` when that client is
    /// at its limit.
    pub fn admit_forwarded(
        self: &Arc<Self>,
        peer: IpAddr,
        headers: &http::HeaderMap,
    ) -> Result<Option<IpSlot>, IpAddr> {
        if self.config.limits.max_connections_per_ip == 0 || !self.is_trusted(peer) {
            return Ok(None);
        }
        let client =
            super::headers::original_client(peer, headers, &self.config.proxy.trusted_proxies);
        self.admit_ip(client).ok_or(client)
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.config
            .proxy
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&ip))
    }

    /// `None` when `ip` is at its limit; `Some(None)` when there is no limit.
    fn admit_ip(self: &Arc<Self>, ip: IpAddr) -> Option<Option<IpSlot>> {
        let per_ip = self.config.limits.max_connections_per_ip;
        if per_ip == 0 {
            return Some(None);
        }
        let mut map = lock(&self.per_ip);
        let n = map.entry(ip).or_insert(0);
        if *n >= per_ip {
            return None;
        }
        *n += 1;
        Some(Some(IpSlot {
            core: self.clone(),
            ip,
        }))
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

    fn tunnels(&self) -> Vec<Arc<TunnelShared>> {
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
        let active = {
            let map = lock(&self.tunnels);
            for t in map.values() {
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
            listeners: self.listeners.clone(),
            backends: self.pools.infos(),
            tunnels,
            total_tunnels: self.total_tunnels.load(Ordering::Relaxed),
            started: Some(self.started),
        }
    }

    fn apply(&self, command: Command) -> Outcome {
        let backend = |id| {
            self.pools
                .backend(id)
                .ok_or_else(|| Outcome::UnknownBackend(id.clone()))
        };
        let res = match &command {
            Command::Drain(id) => backend(id).map(|b| b.drain()),
            Command::Undrain(id) => backend(id).map(|b| b.undrain()),
            Command::Enable(id) => backend(id).map(|b| b.enable()),
            Command::Disable(id) => backend(id).map(|b| b.disable()),
            Command::Kill {
                backend: id,
                code,
                reason,
            } => {
                return match backend(id) {
                    Ok(b) => {
                        b.kill(*code, reason);
                        let mut n = 0;
                        for t in self.tunnels().iter().filter(|t| &t.backend == id) {
                            t.request_close(*code, reason);
                            n += 1;
                        }
                        tracing::info!(backend = %id, tunnels = n, code, "backend killed");
                        Outcome::Closing(n)
                    }
                    Err(o) => o,
                }
            }
            Command::CloseTunnel { id, code, reason } => {
                return match lock(&self.tunnels).get(id) {
                    Some(t) => {
                        t.request_close(*code, reason);
                        Outcome::Closing(1)
                    }
                    None => Outcome::UnknownTunnel(*id),
                }
            }
            Command::Shutdown => {
                self.begin_shutdown();
                Ok(())
            }
        };
        match res {
            Ok(()) => {
                tracing::info!(?command, "control command applied");
                Outcome::Done
            }
            Err(o) => o,
        }
    }

    /// Stops accepting and asks every tunnel to close with 1001, within the
    /// shutdown grace.
    pub fn begin_shutdown(&self) {
        let grace = self.config.timeouts.shutdown_grace;
        // The closes end a little before the grace does, so each tunnel is closed
        // and logged by the proxy rather than dropped with its event loop.
        let margin = (grace / 10).min(std::time::Duration::from_millis(250));
        let by = *self
            .closes_by
            .get_or_init(|| std::time::Instant::now() + grace - margin);
        if self.shutdown.send_replace(true) {
            return;
        }
        let tunnels = self.tunnels();
        tracing::info!(tunnels = tunnels.len(), "shutting down");
        for t in tunnels {
            t.request_close_by(CLOSE_GOING_AWAY, "going away", Some(by));
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

/// The core task: applies commands and publishes batched frame statistics, until
/// shutdown is complete.
pub async fn run(core: Arc<Core>, mut commands: mpsc::Receiver<Request>) {
    let mut tick = tokio::time::interval(core.config.inspect.stats_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published: HashMap<TunnelId, (u64, u64, u64)> = HashMap::new();
    let mut shutdown = core.shutdown_signal();
    loop {
        tokio::select! {
            req = commands.recv() => match req {
                Some(req) => {
                    let outcome = core.apply(req.command);
                    if let Some(reply) = req.reply {
                        let _ = reply.send(outcome);
                    }
                }
                None => core.begin_shutdown(),
            },
            _ = tick.tick() => publish_stats(&core, &mut published),
            _ = shutdown_begun(&mut shutdown) => break,
        }
    }
    let grace = core.config.timeouts.shutdown_grace;
    let drain = async {
        loop {
            tokio::select! {
                _ = async { core.tunnels_gone().await; core.connections_gone().await } => break,
                _ = tick.tick() => publish_stats(&core, &mut published),
                req = commands.recv() => if let Some(Request { reply: Some(r), .. }) = req {
                    let _ = r.send(Outcome::Done);
                },
            }
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!("shutdown grace of {grace:?} over; dropping remaining tunnels and requests");
    }
}

/// One FrameStats and one FrameSamples event per tunnel that moved since last time.
fn publish_stats(core: &Core, published: &mut HashMap<TunnelId, (u64, u64, u64)>) {
    // Nobody listening (headless): don't copy counters and samples for nothing. A
    // subscriber that arrives later starts from a snapshot anyway.
    if core.bus.receiver_count() == 0 {
        published.clear();
        return;
    }
    let tunnels = core.tunnels();
    let mut seen = HashMap::with_capacity(tunnels.len());
    for t in tunnels {
        let now = t.progress();
        let last = published.get(&t.id).copied().unwrap_or((0, 0, 0));
        seen.insert(t.id, now);
        if now == last {
            continue;
        }
        core.publish(Event::FrameStats {
            id: t.id,
            stats: t.stats(),
        });
        let mut samples = Vec::new();
        t.samples_since(Dir::ClientToBackend, last.1, &mut samples);
        t.samples_since(Dir::BackendToClient, last.2, &mut samples);
        if !samples.is_empty() {
            samples.sort_by_key(|s| s.at);
            core.publish(Event::FrameSamples { id: t.id, samples });
        }
    }
    // Closed tunnels drop out here.
    *published = seen;
}

/// The address a client connection came from, as the access log shows it.
pub fn peer_ip(addr: &SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

/// Resolves once shutdown has begun (without holding the watch guard across awaits).
pub async fn shutdown_begun(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
