//! Reload in place: the config file is re-read and what can change under live
//! traffic is swapped in whole: routes, pools (backends added join; removed or
//! changed ones drain, their tunnels running on), listeners' certificates (the
//! next handshake gets a renewed one), backend TLS, limits and timeouts for new
//! connections. A file that does not load is refused and the running config
//! stays. No tunnel is dropped. Listeners, `[admin]` and the few settings fixed at
//! start are reported as not applied until a restart.

use std::collections::HashMap;
use std::sync::Arc;

use super::certs::{ListenerCerts, Renewed};
use super::registry::Registry;
use super::route::Routes;
use super::upstream::UpstreamTls;
use crate::config::Config;
use crate::event::ConfigDiff;

impl Registry {
    /// Re-reads the file the running config came from and applies it; returns what
    /// changed, or why nothing did.
    pub(super) fn reload(&self) -> Result<ConfigDiff, String> {
        let plan = self.plan()?;
        let mut diff = plan.diff;
        let changes = self.pools.replace(&plan.config.pools, self.bus.clone());
        diff.backends_added = changes.added;
        diff.backends_removed = changes.removed;
        diff.backends_changed = changes.changed;
        for (certs, fresh, name) in plan.renewed {
            certs.swap(fresh);
            diff.certificates_reloaded.push(name);
        }
        self.upstream_tls.store(Arc::new(plan.upstream));
        self.routes.store(Arc::new(Routes::new(&plan.config)));
        self.config.store(Arc::new(plan.config));
        Ok(diff)
    }

    /// What a reload would change now, or why it would be refused; changes nothing.
    pub(super) fn preview_reload(&self) -> Result<ConfigDiff, String> {
        let plan = self.plan()?;
        let mut diff = plan.diff;
        let changes = self.pools.plan(&plan.config.pools);
        diff.backends_added = changes.added;
        diff.backends_removed = changes.removed;
        diff.backends_changed = changes.changed;
        diff.certificates_reloaded = plan.renewed.into_iter().map(|(_, _, n)| n).collect();
        Ok(diff)
    }

    /// Loads the file and everything read from disk with it (backend TLS, listener
    /// certificates), so that a reload that gets this far cannot fail half-way.
    fn plan(&self) -> Result<Plan<'_>, String> {
        let current = self.config();
        let Some(path) = current.source.clone() else {
            return Err(
                "this proxy was not started from a config file: there is nothing to re-read".into(),
            );
        };
        let config = Config::load(&path).map_err(|e| e.to_string())?;
        let upstream = super::upstream_tls(&config).map_err(|e| e.to_string())?;
        let mut renewed = Vec::new();
        if same_binds(&current, &config) {
            for ((l, certs), name) in config
                .listeners
                .iter()
                .zip(&self.listener_certs)
                .zip(self.listeners.iter().map(|i| &i.name))
            {
                if let (Some(tls), Some(certs)) = (&l.tls, certs) {
                    let fresh =
                        ListenerCerts::prepare(tls).map_err(|e| format!("listener {name}: {e}"))?;
                    renewed.push((certs.as_ref(), fresh, name.to_string()));
                }
            }
        }
        let diff = ConfigDiff {
            routes_changed: differ(&current.routes, &config.routes)
                || current.default_pool() != config.default_pool(),
            settings_changed: differ(
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
            ),
            not_applied: not_applied(&current, &config),
            ..ConfigDiff::default()
        };
        Ok(Plan {
            config,
            upstream,
            renewed,
            diff,
        })
    }
}

/// A reload read from disk and ready to apply.
struct Plan<'a> {
    config: Config,
    upstream: HashMap<String, UpstreamTls>,
    /// Each TLS listener's certificates, its files read again, and its name.
    renewed: Vec<(&'a ListenerCerts, Renewed, String)>,
    /// All but the backends, which the pools work out.
    diff: ConfigDiff,
}

/// The config types have no `PartialEq` (durations, networks, paths all compare by
/// value in their `Debug` form, which is what a change is).
fn differ<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

/// Whether the listeners bind the same addresses, with TLS on the same ones (their
/// certificate files may differ: those are re-read).
fn same_binds(old: &Config, new: &Config) -> bool {
    old.listeners.len() == new.listeners.len()
        && old
            .listeners
            .iter()
            .zip(&new.listeners)
            .all(|(a, b)| a.bind == b.bind && a.tls.is_some() == b.tls.is_some())
}

/// What changed in the file that only a restart applies.
fn not_applied(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |changed: bool, what: &str| {
        if changed {
            out.push(what.to_string());
        }
    };
    check(
        !same_binds(old, new)
            || old
                .listeners
                .iter()
                .zip(&new.listeners)
                .any(|(a, b)| a.name != b.name),
        "[[listener]] (addresses, names, TLS on or off)",
    );
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
    out
}
