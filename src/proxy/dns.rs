//! Backend names: a server `addr = "name:port"` is resolved at start and again every
//! pool `resolve_interval` (sooner when the records' TTL ends first), and each
//! address it has is a backend of its own (a Kubernetes headless Service, a Consul
//! name). Addresses that appear join the pool; addresses that vanish leave it and
//! drain, their tunnels running on. A failed lookup keeps the last good set and is
//! reported. The pools are rebuilt from the running config with the resolved names
//! expanded, the way a reload rebuilds them, so the two never disagree.

use crate::sync::lock;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use super::registry::Registry;
use crate::config::{self, Config};
use crate::event::{Event, Resolution};

/// How often due lookups are looked for.
const ROUND: Duration = Duration::from_millis(200);
/// Retry a failed lookup this soon, if the interval is longer.
const RETRY: Duration = Duration::from_secs(5);
/// A TTL shorter than this counts as this long (the interval may be shorter).
const MIN_TTL: Duration = Duration::from_secs(1);

/// A name of one pool.
type Key = (String, String);

/// What is known of one name.
#[derive(Debug, Clone, Default)]
struct Entry {
    /// The last good set of addresses (with the port of the name), sorted.
    addrs: Vec<SocketAddr>,
    /// When to look up again; None: now.
    next: Option<Instant>,
    running: bool,
    error: Option<String>,
    at: Option<SystemTime>,
}

/// The names and what they resolved to.
#[derive(Default)]
pub(super) struct Dns {
    table: Mutex<BTreeMap<Key, Entry>>,
    /// Held while the pools are rebuilt (by a reload or a changed name), so two
    /// rebuilds never interleave.
    pub(super) rebuild: Mutex<()>,
    resolver: Mutex<Option<(Option<SocketAddr>, TokioResolver)>>,
}

impl Dns {
    /// The pools of `pools` with each name replaced by one server per address it
    /// resolved to (none yet: no server). An address two names share is listed once.
    pub fn expand(&self, pools: &BTreeMap<String, config::Pool>) -> BTreeMap<String, config::Pool> {
        let table = lock(&self.table);
        pools
            .iter()
            .map(|(name, pool)| {
                let mut pool = pool.clone();
                let mut servers: Vec<config::Server> = Vec::with_capacity(pool.servers.len());
                for s in &pool.servers {
                    if !s.is_name() {
                        servers.push(s.clone());
                        continue;
                    }
                    let key = (name.clone(), s.addr.clone());
                    for addr in table.get(&key).map_or(&[][..], |e| &e.addrs) {
                        let addr = addr.to_string();
                        if servers.iter().all(|o| o.addr != addr) {
                            servers.push(config::Server {
                                addr,
                                weight: s.weight,
                                backup: s.backup,
                                via: Some(s.addr.clone()),
                            });
                        }
                    }
                }
                pool.servers = servers;
                (name.clone(), pool)
            })
            .collect()
    }

    /// Every name of the config and what it resolved to, for snapshots.
    pub fn resolutions(&self) -> Vec<Resolution> {
        lock(&self.table)
            .iter()
            .filter_map(|((pool, name), e)| {
                Some(Resolution {
                    pool: pool.clone(),
                    name: name.clone(),
                    addrs: e.addrs.clone(),
                    error: e.error.clone(),
                    at: e.at?,
                })
            })
            .collect()
    }

    /// Resolves every name of `config` now (at start, before serving), each within
    /// `timeout`.
    pub async fn resolve_all(&self, config: &Config, timeout: Duration) {
        // All at once, so start takes one lookup's time however many names there are.
        let lookups = names(config).into_iter().map(|(key, interval)| async move {
            let result = self.lookup(config, &key.1, timeout).await;
            (key, result, interval)
        });
        for (key, result, interval) in futures_util::future::join_all(lookups).await {
            self.record(key, result, interval);
        }
    }

    /// The resolver `config` asks for, built once and again when that changes.
    fn resolver(&self, config: &Config) -> Result<TokioResolver, String> {
        let mut slot = lock(&self.resolver);
        let want = config.proxy.resolver;
        if let Some((server, r)) = slot.as_ref() {
            if *server == want {
                return Ok(r.clone());
            }
        }
        let mut builder = match want {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), vec![server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's DNS settings: {e}"))?,
        };
        let opts = builder.options_mut();
        // Each lookup asks the server: re-resolution is the point.
        opts.cache_size = 0;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let r = builder.build().map_err(|e| e.to_string())?;
        *slot = Some((want, r.clone()));
        Ok(r)
    }

    /// Looks `name` (`host:port`) up: its addresses with the port, sorted, and
    /// how long the answer is good for.
    async fn lookup(
        &self,
        config: &Config,
        name: &str,
        timeout: Duration,
    ) -> Result<(Vec<SocketAddr>, Duration), String> {
        let (host, port) = name.rsplit_once(':').ok_or("no port")?;
        let port: u16 = port.parse().map_err(|_| "bad port".to_string())?;
        let resolver = self.resolver(config)?;
        let answer = tokio::time::timeout(timeout, resolver.lookup_ip(host))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        let mut addrs: Vec<SocketAddr> =
            answer.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err("no addresses".into());
        }
        let ttl = answer
            .valid_until()
            .saturating_duration_since(Instant::now());
        Ok((addrs, ttl))
    }

    /// Records a lookup's result; returns whether the set of addresses changed.
    fn record(
        &self,
        key: Key,
        result: Result<(Vec<SocketAddr>, Duration), String>,
        interval: Duration,
    ) -> (bool, Resolution) {
        let now = Instant::now();
        let mut table = lock(&self.table);
        let e = table.entry(key.clone()).or_default();
        e.running = false;
        e.at = Some(SystemTime::now());
        let changed = match result {
            Ok((addrs, ttl)) => {
                e.next = Some(now + interval.min(ttl.max(MIN_TTL)));
                e.error = None;
                let changed = e.addrs != addrs;
                e.addrs = addrs;
                changed
            }
            Err(why) => {
                e.next = Some(now + interval.min(RETRY));
                e.error = Some(why);
                false
            }
        };
        let resolution = Resolution {
            pool: key.0,
            name: key.1,
            addrs: e.addrs.clone(),
            error: e.error.clone(),
            at: e.at.unwrap_or_else(SystemTime::now),
        };
        (changed, resolution)
    }

    /// The names due for a lookup now, marked as running; names no longer in the
    /// config are forgotten.
    fn due(&self, config: &Config, now: Instant) -> Vec<(Key, Duration)> {
        let names = names(config);
        let mut table = lock(&self.table);
        table.retain(|k, _| names.iter().any(|(n, _)| n == k));
        let mut due = Vec::new();
        for (key, interval) in names {
            let e = table.entry(key.clone()).or_default();
            if !e.running && e.next.is_none_or(|t| now >= t) {
                e.running = true;
                due.push((key, interval));
            }
        }
        due
    }
}

/// Every name of the config's pools, with its pool's interval.
fn names(config: &Config) -> Vec<(Key, Duration)> {
    config
        .pools
        .iter()
        .flat_map(|(pool, p)| {
            p.servers
                .iter()
                .filter(|s| s.is_name())
                .map(move |s| ((pool.clone(), s.addr.clone()), p.resolve_interval))
        })
        .collect()
}

/// Looks names up as they come due, until shutdown begins.
pub(super) async fn run(core: Arc<Registry>) {
    core.every(ROUND, || {
        let config = core.config();
        for (key, interval) in core.dns.due(&config, Instant::now()) {
            let (core, config) = (core.clone(), config.clone());
            tokio::spawn(async move {
                let timeout = config.timeouts.connect;
                let result = core.dns.lookup(&config, &key.1, timeout).await;
                let failed = result.as_ref().err().cloned();
                let (changed, resolution) = core.dns.record(key, result, interval);
                if changed {
                    tracing::info!(pool = %resolution.pool, name = %resolution.name, addrs = ?resolution.addrs, "backend name resolved to a new set");
                    core.rebuild_pools();
                }
                if let Some(why) = &failed {
                    tracing::warn!(pool = %resolution.pool, name = %resolution.name, error = %why, kept = resolution.addrs.len(), "backend name lookup failed; keeping the last addresses");
                }
                if changed || failed.is_some() {
                    core.publish(Event::Resolved(resolution));
                }
            });
        }
    })
    .await;
}

impl Registry {
    /// Rebuilds the pools from the running config and what its names resolve to now.
    pub(super) fn rebuild_pools(&self) {
        let _one_at_a_time = lock(&self.dns.rebuild);
        let expanded = self.dns.expand(&self.config().pools);
        let changes = self.pools.replace(&expanded, self.bus.clone());
        if !changes.added.is_empty() || !changes.removed.is_empty() {
            tracing::info!(added = ?changes.added, removed = ?changes.removed, "backends resolved");
        }
    }
}
