//! Which route a request belongs to, and so its pool and WebSocket limits: the
//! first `[[route]]` whose host and path prefix match, in file order. A config
//! without routes sends everything to its only pool.

use std::sync::Arc;

use crate::config::{Config, Route, WsLimits};

/// The routes of a config, with each one's name and limits worked out once.
pub struct Routes {
    entries: Vec<Entry>,
    /// With no `[[route]]`: the only pool and the `[limits]` defaults.
    only: Option<(String, WsLimits)>,
}

struct Entry {
    /// Exact host or `*.suffix`, lowercase; `None` matches every host.
    host: Option<String>,
    path: String,
    pool: String,
    /// `host` + `path`, as events and logs name the route.
    name: Arc<str>,
    limits: WsLimits,
}

/// A matched route.
pub struct Matched<'a> {
    pub name: Arc<str>,
    pub pool: &'a str,
    pub limits: &'a WsLimits,
}

impl Routes {
    pub fn new(config: &Config) -> Routes {
        Routes {
            entries: config
                .routes
                .iter()
                .map(|r| Entry {
                    host: r.host.clone(),
                    path: r.path.clone(),
                    pool: r.pool.clone(),
                    name: route_name(r).into(),
                    limits: config.ws_limits(Some(r)),
                })
                .collect(),
            only: config
                .default_pool()
                .map(|p| (p.to_string(), config.ws_limits(None))),
        }
    }

    /// The route for a request to `host` (its `Host` header, port and all) and
    /// `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<Matched<'_>> {
        if let Some((pool, limits)) = &self.only {
            return Some(Matched {
                name: Arc::from("/"),
                pool,
                limits,
            });
        }
        let host = host.map(strip_port);
        self.entries
            .iter()
            .find(|e| host_matches(e.host.as_deref(), host) && path.starts_with(e.path.as_str()))
            .map(|e| Matched {
                name: e.name.clone(),
                pool: &e.pool,
                limits: &e.limits,
            })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn host_matches(pattern: Option<&str>, host: Option<&str>) -> bool {
    match (pattern, host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(pattern), Some(host)) => match pattern.strip_prefix("*.") {
            Some(suffix) => {
                let cut = host.len().wrapping_sub(suffix.len());
                host.len() > suffix.len() + 1
                    && host.is_char_boundary(cut)
                    && host[cut..].eq_ignore_ascii_case(suffix)
                    && host.as_bytes()[cut - 1] == b'.'
            }
            None => pattern.eq_ignore_ascii_case(host),
        },
    }
}

fn route_name(route: &Route) -> String {
    match &route.host {
        Some(h) => format!("{h}{}", route.path),
        None => route.path.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_exactly_or_by_suffix_and_ports_are_ignored() {
        assert!(host_matches(None, None));
        assert!(!host_matches(Some("a.example"), None));
        assert!(host_matches(Some("a.example"), Some("A.Example")));
        assert!(host_matches(Some("*.example"), Some("x.y.example")));
        assert!(!host_matches(Some("*.example"), Some("example")));
        assert!(!host_matches(Some("*.example"), Some("xexample")));
        assert!(!host_matches(Some("*.xample"), Some("éxample")));
        assert_eq!(strip_port("a.example:8080"), "a.example");
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("a.example"), "a.example");
    }
}
