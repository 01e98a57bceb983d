//! The proxy core: everything between accepting a client and relaying its tunnel.
//!
//! [`start`] binds the configured listeners and returns a [`ProxyHandle`]: the
//! control channel, the event bus, snapshots, and graceful shutdown. The proxy never
//! waits for an observer: events go on a bounded broadcast channel, and a slow
//! subscriber lags and resyncs from [`ProxyHandle::snapshot`].

mod admission;
mod bufpool;
mod certs;
mod commands;
mod dns;
// The sans-IO parts the fuzz targets, benchmarks and a few tests drive directly:
// public for them only, hidden from the docs, not part of the API.
#[doc(hidden)]
pub mod frame;
#[doc(hidden)]
pub mod headers;
mod headtimer;
mod health;
mod listener;
mod listeners;
mod pacing;
mod park;
mod pool;
mod recorder;
mod registry;
mod reload;
mod request;
mod route;
mod shard;
mod stream;
#[doc(hidden)]
pub mod tls;
mod tlsio;
mod tunnel;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::control::{Command, ControlHandle};
use crate::event::{CapturedMessage, Counters, Event, Snapshot, TunnelId};
use crate::sync::lock;

use self::registry::Registry;
use self::upstream::UpstreamTls;

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("listen address {addr} could not be bound: {source} (is another process using it?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A certificate, key or CA file could not be used.
    #[error("listener {listener}: {source}")]
    ListenerTls {
        listener: String,
        source: tls::TlsError,
    },
    /// A pool's backend TLS settings could not be used.
    #[error("pool {pool}: {source}")]
    UpstreamTls { pool: String, source: tls::TlsError },
    /// An event loop thread could not be started.
    #[error("cannot start the event loop threads: {0}")]
    Threads(std::io::Error),
    /// The recordings directory cannot be written (`[inspect] record`).
    #[error("cannot record into {}: {source}", dir.display())]
    Record {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A running proxy.
pub struct ProxyHandle {
    core: Arc<Registry>,
    control: ControlHandle,
    addrs: Vec<SocketAddr>,
    task: JoinHandle<()>,
}

impl ProxyHandle {
    /// Sends commands to the core (drain, kill, close tunnel, shutdown).
    pub fn control(&self) -> ControlHandle {
        self.control.clone()
    }

    /// Events from now on. Call [`snapshot`](Self::snapshot) after subscribing to
    /// know what was there before.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        let rx = self.core.bus.subscribe();
        self.core
            .watched
            .store(true, std::sync::atomic::Ordering::Relaxed);
        rx
    }

    /// The whole state now: listeners, backends, live tunnels.
    pub fn snapshot(&self) -> Snapshot {
        self.core.snapshot()
    }

    /// The whole messages captured on a live tunnel (`[inspect] capture`), as a
    /// `'static` function like [`snapshot_source`](Self::snapshot_source); None for
    /// a tunnel that is not live.
    pub fn messages_source(
        &self,
    ) -> impl Fn(TunnelId) -> Option<Vec<CapturedMessage>> + Send + Sync + 'static {
        let core = Arc::downgrade(&self.core);
        move |id| {
            let core = core.upgrade()?;
            let tunnel = lock(&core.tunnels).get(&id).cloned()?;
            Some(tunnel.messages())
        }
    }

    /// A search of every live tunnel's captured messages for a string (ASCII case
    /// ignored), newest first, at most [`crate::inspect::search::MAX_HITS`]; as a
    /// `'static` function for observers, like [`messages_source`](Self::messages_source).
    pub fn search_source(
        &self,
    ) -> impl Fn(&str) -> Vec<crate::event::SearchHit> + Send + Sync + 'static {
        let core = Arc::downgrade(&self.core);
        move |query| {
            let needle = query.trim().to_ascii_lowercase();
            let Some(core) = core.upgrade() else {
                return Vec::new();
            };
            if needle.is_empty() {
                return Vec::new();
            }
            let tunnels: Vec<_> = lock(&core.tunnels).values().cloned().collect();
            let mut hits = Vec::new();
            for t in tunnels {
                t.search(needle.as_bytes(), &mut hits);
            }
            hits.sort_by_key(|h| std::cmp::Reverse(h.at));
            hits.truncate(crate::inspect::search::MAX_HITS);
            hits
        }
    }

    /// [`snapshot`](Self::snapshot) as a `'static` function, for observers that run
    /// in tasks of their own (the admin API). It does not keep the proxy alive: once the
    /// proxy is gone it returns an empty snapshot.
    pub fn snapshot_source(&self) -> impl Fn() -> Snapshot + Send + Sync + 'static {
        let core = Arc::downgrade(&self.core);
        move || core.upgrade().map(|c| c.snapshot()).unwrap_or_default()
    }

    /// What readiness depends on (shutting down, the backends), as a `'static`
    /// function like [`snapshot_source`](Self::snapshot_source); no tunnel copied.
    pub fn readiness_source(&self) -> impl Fn() -> crate::event::Readiness + Send + Sync + 'static {
        let core = Arc::downgrade(&self.core);
        move || match core.upgrade() {
            Some(c) => crate::event::Readiness {
                shutting_down: c.is_shutting_down(),
                backends: c.pools.infos(),
            },
            None => crate::event::Readiness {
                shutting_down: true,
                backends: Vec::new(),
            },
        }
    }

    /// The proxy's exact counters (metrics), as a `'static` function like
    /// [`snapshot_source`](Self::snapshot_source); cheap: no frame samples copied.
    pub fn counters_source(&self) -> impl Fn() -> Counters + Send + Sync + 'static {
        let core = Arc::downgrade(&self.core);
        move || core.upgrade().map(|c| c.counters()).unwrap_or_default()
    }

    /// [`subscribe`](Self::subscribe) as a `'static` function. It holds no sender, so
    /// the bus still closes when the proxy is gone (later receivers are closed at once).
    pub fn subscribe_source(
        &self,
    ) -> impl Fn() -> broadcast::Receiver<Event> + Send + Sync + 'static {
        let core = Arc::downgrade(&self.core);
        move || match core.upgrade() {
            Some(c) => {
                let rx = c.bus.subscribe();
                c.watched.store(true, std::sync::atomic::Ordering::Relaxed);
                rx
            }
            None => broadcast::channel(1).1,
        }
    }

    /// Resolves once a graceful shutdown has begun, whoever asked for it (a signal,
    /// the dashboard, a `Shutdown` command from the admin API).
    pub async fn stopping(&self) {
        let mut rx = self.core.shutdown_signal();
        registry::shutdown_begun(&mut rx).await;
    }

    /// The addresses bound at start, in listener order (useful with port 0); after a
    /// reload, [`snapshot`](Self::snapshot)'s `listeners` has the current set.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Copies of every listener's sockets, by configured address, to hand to the
    /// process that replaces this one (it accepts on the same sockets).
    pub fn handover(&self) -> Vec<(SocketAddr, Vec<std::net::TcpListener>)> {
        self.core.listeners.handover()
    }

    /// Stops accepting on every listener, leaving tunnels and requests running (the
    /// process that took the sockets over accepts from now on).
    pub fn stop_accepting(&self) {
        self.core.listeners.remove_all();
    }

    /// Resolves once no tunnel is left.
    pub async fn tunnels_gone(&self) {
        self.core.tunnels_gone().await;
    }

    /// Starts a graceful shutdown: stop accepting, close tunnels with 1001.
    pub fn shutdown(&self) {
        self.core.begin_shutdown();
    }

    /// Resolves once shutdown is complete (all tunnels closed or the grace over).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds every listener, loads TLS material, and starts serving: `[proxy] threads`
/// event loops (see [`shard`]), each accepting on every listener.
pub async fn start(config: Config) -> Result<ProxyHandle, StartError> {
    start_with(config, Inherited::default()).await
}

/// Listening sockets handed over by the process this one replaces (a binary
/// upgrade), by the listener address they were configured with.
#[derive(Debug, Default)]
pub struct Inherited(pub HashMap<SocketAddr, Vec<std::net::TcpListener>>);

/// [`start`], taking over the listening sockets in `inherited` for the listeners
/// configured with those addresses instead of binding them (the others are bound;
/// inherited sockets no listener wants are closed).
pub async fn start_with(
    config: Config,
    mut inherited: Inherited,
) -> Result<ProxyHandle, StartError> {
    let config = Arc::new(config);
    let threads = shard::count(config.proxy.threads);
    let prepared = config
        .listeners
        .iter()
        .map(|l| listeners::prepare(l, threads, inherited.0.remove(&l.bind)))
        .collect::<Result<Vec<_>, _>>()?;
    for bind in inherited.0.keys() {
        tracing::warn!(%bind, "a socket handed over for a listener the config no longer has: closed");
    }
    let upstream_tls = upstream_tls(&config)?;
    let (bus, _) = broadcast::channel(config.inspect.event_capacity);
    let addrs = prepared.iter().map(|p| p.info().addr).collect();
    let dns = dns::Dns::default();
    dns.resolve_all(&config, config.timeouts.connect).await;
    let mut registry = Registry::new(config.clone(), bus, upstream_tls, dns);
    if let Some(dir) = &config.inspect.record {
        let settings = recorder::Settings {
            dir: dir.clone(),
            matching: config.inspect.record_match.clone(),
            file_bytes: config.inspect.record_file_bytes,
            total_bytes: config.inspect.record_total_bytes,
            redact: crate::inspect::redact::Redact::new(
                &config.inspect.redact,
                config.inspect.reveal_secrets,
            ),
        };
        let rec = recorder::Recorder::start(settings).map_err(|source| StartError::Record {
            dir: dir.clone(),
            source,
        })?;
        registry.recorder = Some(rec);
    }
    let core = Arc::new(registry);
    let (shards, loops) = shard::Shards::start(threads).map_err(StartError::Threads)?;
    core.listeners.set_loops(loops);
    for p in prepared {
        core.listeners.serve(&core, p);
    }
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(health::run(core.clone()));
    tokio::spawn(dns::run(core.clone()));
    let task = tokio::spawn({
        let core = core.clone();
        async move {
            commands::run(core.clone(), rx).await;
            shards.stop().await;
            // The tunnels have ended: the recorder writes what is left and stops.
            if core.recorder.is_some() {
                let core = core.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(r) = &core.recorder {
                        r.stop();
                    }
                })
                .await;
            }
        }
    });
    Ok(ProxyHandle {
        core,
        control: ControlHandle::new(tx),
        addrs,
        task,
    })
}

impl ProxyHandle {
    /// Convenience for `control().send(Command::Shutdown)` without waiting.
    pub fn request_shutdown(&self) {
        let _ = self.control.try_send(Command::Shutdown);
    }
}

/// The TLS client settings of every pool with `tls = true`.
fn upstream_tls(config: &Config) -> Result<HashMap<String, UpstreamTls>, StartError> {
    let mut out = HashMap::new();
    for (name, pool) in config.pools.iter().filter(|(_, p)| p.tls) {
        let cfg =
            tls::client_config(pool.ca.as_deref()).map_err(|source| StartError::UpstreamTls {
                pool: name.clone(),
                source,
            })?;
        out.insert(
            name.clone(),
            UpstreamTls {
                config: cfg,
                server_name: pool.server_name.clone(),
            },
        );
    }
    Ok(out)
}
