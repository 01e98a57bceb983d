//! Reload in place: the config file is re-read and what can change under live
//! traffic is swapped in whole: routes, pools (backends added join; removed or
//! changed ones drain, their tunnels running on), listeners' certificates (the
//! next handshake gets a renewed one), backend TLS, limits and timeouts for new
//! connections, listeners added (bound before anything changes, so a busy address
//! refuses the reload) and removed (they stop accepting; their connections run on).
//! A file that does not load is refused and the running config stays. No tunnel is
//! dropped. `[admin]`, a listener's name or TLS switched on or off, and the few
//! settings fixed at start are reported as not applied until a restart.

use crate::sync::lock;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::certs::{ListenerCerts, Renewed};
use super::listeners::{self, Prepared};
use super::registry::Registry;
use super::route::Routes;
use super::upstream::UpstreamTls;
use crate::config::Config;
use crate::event::{ConfigDiff, ListenerInfo};

impl Registry {
    /// Re-reads the file the running config came from and applies it; returns what
    /// changed, or why nothing did.
    pub(super) fn reload(self: &Arc<Self>) -> Result<ConfigDiff, String> {
        let plan = self.plan(true)?;
        let mut diff = plan.diff;
        // Held until the new config is in place: a name resolving meanwhile then
        // rebuilds from it.
        let _one_at_a_time = lock(&self.dns.rebuild);
        let expanded = self.dns.expand(&plan.config.pools);
        let changes = self.pools.replace(&expanded, self.bus.clone());
        diff.backends_added = changes.added;
        diff.backends_removed = changes.removed;
        diff.backends_changed = changes.changed;
        for (certs, fresh, name) in plan.renewed {
            certs.swap(fresh);
            diff.certificates_reloaded.push(name);
        }
        for bind in plan.removed {
            self.listeners.remove(bind);
        }
        for p in plan.added {
            self.listeners.serve(self, p);
        }
        self.upstream_tls.store(Arc::new(plan.upstream));
        self.routes.store(Arc::new(Routes::new(&plan.config)));
        self.config.store(Arc::new(plan.config));
        Ok(diff)
    }

    /// What a reload would change now, or why it would be refused; changes nothing
    /// (new listeners are not bound, so their addresses show as configured).
    pub(super) fn preview_reload(&self) -> Result<ConfigDiff, String> {
        let plan = self.plan(false)?;
        let mut diff = plan.diff;
        let changes = self.pools.plan(&self.dns.expand(&plan.config.pools));
        diff.backends_added = changes.added;
        diff.backends_removed = changes.removed;
        diff.backends_changed = changes.changed;
        diff.certificates_reloaded = plan.renewed.into_iter().map(|(_, _, n)| n).collect();
        Ok(diff)
    }

    /// Loads the file and everything read from disk with it (backend TLS, listener
    /// certificates) and, when `bind`, binds the listeners it adds: a reload that
    /// gets this far cannot fail half-way.
    fn plan(&self, bind: bool) -> Result<Plan, String> {
        let current = self.config();
        let Some(path) = current.source.clone() else {
            return Err(
                "this proxy was not started from a config file: there is nothing to re-read".into(),
            );
        };
        let config = Config::load(&path).map_err(|e| e.to_string())?;
        let upstream = super::upstream_tls(&config).map_err(|e| e.to_string())?;
        let live = self.listeners.live();
        let mut diff = ConfigDiff::default();
        let (mut renewed, mut added, mut kept_apart) = (Vec::new(), Vec::new(), Vec::new());
        for l in &config.listeners {
            let name = l.display_name();
            let Some(old) = live.iter().find(|x| x.bind == l.bind) else {
                if bind {
                    let p = listeners::prepare(l, self.listeners.loop_count(), None)
                        .map_err(|e| e.to_string())?;
                    diff.listeners_added.push(p.info().clone());
                    added.push(p);
                } else {
                    diff.listeners_added.push(ListenerInfo {
                        name: name.as_str().into(),
                        addr: l.bind,
                        tls: l.tls.is_some(),
                    });
                }
                continue;
            };
            if old.certs.is_some() != l.tls.is_some() {
                kept_apart.push(format!("listener {name}: TLS turned on or off"));
            } else if *old.info.name != *name {
                kept_apart.push(format!("listener {}: renamed to {name}", old.info.name));
            }
            if let (Some(tls), Some(certs)) = (&l.tls, &old.certs) {
                let fresh =
                    ListenerCerts::prepare(tls).map_err(|e| format!("listener {name}: {e}"))?;
                renewed.push((certs.clone(), fresh, old.info.name.to_string()));
            }
        }
        let removed: Vec<SocketAddr> = live
            .iter()
            .filter(|x| !config.listeners.iter().any(|l| l.bind == x.bind))
            .map(|x| {
                diff.listeners_removed.push(x.info.clone());
                x.bind
            })
            .collect();
        diff.routes_changed = differ(&current.routes, &config.routes)
            || current.default_pool() != config.default_pool();
        diff.settings_changed = differ(
            &(
                &current.proxy,
                &current.limits,
                &current.timeouts,
                &current.inspect,
            ),
            &(
                &config.proxy,
                &config.limits,
                &config.timeouts,
                &config.inspect,
            ),
        );
        diff.not_applied = kept_apart;
        diff.not_applied.extend(not_applied(&current, &config));
        Ok(Plan {
            config,
            upstream,
            renewed,
            added,
            removed,
            diff,
        })
    }
}

/// A reload read from disk and ready to apply.
struct Plan {
    config: Config,
    upstream: HashMap<String, UpstreamTls>,
    /// Each kept TLS listener's certificates, its files read again, and its name.
    renewed: Vec<(Arc<ListenerCerts>, Renewed, String)>,
    /// Listeners to start (bound already).
    added: Vec<Prepared>,
    /// Listeners to stop, by configured address.
    removed: Vec<SocketAddr>,
    /// All but the backends, which the pools work out.
    diff: ConfigDiff,
}

/// The config types have no `PartialEq` (durations, networks, paths all compare by
/// value in their `Debug` form, which is what a change is).
fn differ<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

/// What changed in the file that only a restart applies.
fn not_applied(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |changed: bool, what: &str| {
        if changed {
            out.push(what.to_string());
        }
    };
    check(differ(&old.admin, &new.admin), "[admin]");
    check(old.proxy.threads != new.proxy.threads, "proxy.threads");
    check(
        old.limits.max_connections != new.limits.max_connections,
        "limits.max_connections",
    );
    check(
        old.inspect.event_capacity != new.inspect.event_capacity,
        "inspect.event_capacity",
    );
    check(old.inspect.memory != new.inspect.memory, "inspect.memory");
    check(
        old.inspect.record != new.inspect.record
            || old.inspect.record_match != new.inspect.record_match
            || old.inspect.record_file_bytes != new.inspect.record_file_bytes
            || old.inspect.record_total_bytes != new.inspect.record_total_bytes,
        "inspect.record",
    );
    out
}
