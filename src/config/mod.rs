//! The TOML configuration: schema, defaults, validation and errors that name the file,
//! line, column and key. Pure: `from_str` + `validate`, no I/O but [`Config::load`].
//!
//! Every problem comes out as one line a person can act on:
//!
//! ```text
//! tunnelscope.toml:12:1: key pool.chat.server[0].wieght: unknown field, expected one of addr, weight, backup (did you mean weight?)
//! tunnelscope.toml:3:8: key timeouts.idle: unknown unit "x" in "10x" (use ms, s, m, h or d)
//! tunnelscope.toml:20:1: key route[1].pool: no [pool.caht] is defined (pools: api, chat)
//! ```
//!
//! Layout: this file holds the whole file's schema and loading; `sections` the
//! `[proxy]`, `[limits]`, `[timeouts]`, `[inspect]` and `[admin]` tables;
//! `routing` listeners, routes and pools; `de` the value parsers they share;
//! `validate` the checks the schema cannot express; `locate` turns byte spans into
//! lines and key paths; `report` the summary of `tunnelscope check`; [`duration`]
//! the duration syntax.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod de;
pub mod duration;
mod locate;
mod report;
mod routing;
mod sections;
mod validate;

pub use self::routing::{
    host_of, Balance, CheckKind, HashKey, HealthCheck, HostHeader, Listener, ListenerTls, Pool,
    Route, Server, SniCert, DEFAULT_CLOSE_RATE,
};
pub use self::sections::{
    Admin, CaptureMode, Inspect, Limits, PingSides, ProxySettings, Timeouts, WsLimits,
};

use locate::{line_col, tidy_message, KeyPath, Node};
use routing::{default_close_rate, default_fail_timeout, default_max_fails, default_tries};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub proxy: ProxySettings,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub inspect: Inspect,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Listener>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default, rename = "pool")]
    pub pools: BTreeMap<String, Pool>,
    /// The file it was loaded from, which a reload re-reads (`None`: not from a file).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// A configuration that could not be used. Parse and Invalid errors print as one line:
/// `FILE:LINE:COL: key KEY.PATH: what is wrong` (line and column when the key is in
/// the file).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema.
    #[error("{location}: {message}")]
    Parse { location: String, message: String },
    /// The values are inconsistent (an unknown pool, no listener, ...).
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
}

impl Config {
    /// Reads, parses and validates a file, then resolves relative paths (TLS
    /// certificates and keys, CA bundles) against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::from_str(&text, &path.display().to_string())?;
        config.resolve_paths(path.parent().unwrap_or(Path::new("")));
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates text; `origin` names it in errors (usually the path).
    /// Relative paths are left as written.
    pub fn from_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (position, path) = match e.span() {
                Some(span) => (
                    Some(line_col(text, span.start)),
                    Node::parse(text).and_then(|tree| tree.path_at(&span)),
                ),
                None => (None, None),
            };
            ConfigError::Parse {
                location: location(origin, position, path.as_ref()),
                message: tidy_message(e.message()),
            }
        })?;
        let mut problems = validate::problems(&config);
        if problems.is_empty() {
            return Ok(config);
        }
        // Report the problem that comes first in the file, as a compiler would.
        let tree = Node::parse(text);
        let span_of = |p: &validate::Problem| tree.as_ref().and_then(|t| t.span_of(&p.path));
        problems.sort_by_key(|p| span_of(p).map_or(usize::MAX, |s| s.start));
        let first = problems.swap_remove(0);
        let position = span_of(&first).map(|s| line_col(text, s.start));
        Err(ConfigError::Invalid {
            location: location(origin, position, Some(&first.path)),
            message: first.message,
        })
    }

    /// Checks what the schema alone cannot. Without the text there is no line and
    /// column: the error names `origin` and the key.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        match validate::problems(self).into_iter().next() {
            None => Ok(()),
            Some(p) => Err(ConfigError::Invalid {
                location: location(origin, None, Some(&p.path)),
                message: p.message,
            }),
        }
    }

    /// Makes relative file paths (listener and SNI certificates and keys, pool CA
    /// bundles) relative to `base`, the directory of the config file.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        };
        for tls in self.listeners.iter_mut().filter_map(|l| l.tls.as_mut()) {
            fix(&mut tls.cert);
            fix(&mut tls.key);
            for sni in &mut tls.sni {
                fix(&mut sni.cert);
                fix(&mut sni.key);
            }
        }
        for ca in self.pools.values_mut().filter_map(|p| p.ca.as_mut()) {
            fix(ca);
        }
    }

    /// The pool a request goes to when no route is configured.
    /// The WebSocket limits of a route (`None`: the implicit route of a config
    /// without routes): `[limits]`, overridden by the route's own keys.
    pub fn ws_limits(&self, route: Option<&Route>) -> WsLimits {
        let l = &self.limits;
        WsLimits {
            allowed_origins: route
                .and_then(|r| r.allowed_origins.clone())
                .unwrap_or_else(|| l.allowed_origins.clone()),
            max_message_bytes: route
                .and_then(|r| r.max_message_bytes)
                .unwrap_or(l.max_message_bytes),
            max_message_rate: route
                .and_then(|r| r.max_message_rate)
                .unwrap_or(l.max_message_rate),
        }
    }

    pub fn default_pool(&self) -> Option<&str> {
        if self.routes.is_empty() {
            self.pools.keys().next().map(String::as_str)
        } else {
            None
        }
    }

    /// The configuration of `--listen ADDR --upstream ADDR...` without a file.
    pub fn quick(listen: SocketAddr, upstreams: &[String]) -> Config {
        let servers = upstreams
            .iter()
            .map(|addr| Server {
                addr: addr.clone(),
                weight: 1,
                backup: false,
                via: None,
            })
            .collect();
        let mut pools = BTreeMap::new();
        pools.insert(
            "default".to_string(),
            Pool {
                balance: Balance::LeastConn,
                hash_key: None,
                max_fails: default_max_fails(),
                fail_timeout: default_fail_timeout(),
                tries: default_tries(),
                host_header: HostHeader::Keep,
                tls: false,
                ca: None,
                server_name: None,
                drain_deadline: Duration::ZERO,
                close_rate: default_close_rate(),
                resolve_interval: Duration::from_secs(30),
                keepalive: 32,
                keepalive_timeout: Duration::from_secs(60),
                health: None,
                servers,
            },
        );
        Config {
            proxy: ProxySettings::default(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            inspect: Inspect::default(),
            admin: Admin::default(),
            listeners: vec![Listener {
                name: None,
                bind: listen,
                tls: None,
            }],
            routes: Vec::new(),
            pools,
            source: None,
        }
    }
}

/// `FILE:LINE:COL: key PATH`, leaving out what is not known.
fn location(origin: &str, position: Option<(usize, usize)>, path: Option<&KeyPath>) -> String {
    let mut out = origin.to_string();
    if let Some((line, col)) = position {
        out.push_str(&format!(":{line}:{col}"));
    }
    if let Some(path) = path.filter(|p| !p.0.is_empty()) {
        out.push_str(&format!(": key {path}"));
    }
    out
}
