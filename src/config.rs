//! The TOML configuration: schema, defaults, validation and errors that name the file,
//! line, column and key. Pure: `from_str` + `validate`, no I/O but [`Config::load`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

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
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Listener>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    #[serde(default, rename = "pool")]
    pub pools: BTreeMap<String, Pool>,
}

/// `[proxy]`: process-wide behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// Peers whose X-Forwarded-* / X-Real-IP headers are believed and extended.
    pub trusted_proxies: Vec<IpNet>,
    /// Close code sent to clients when their backend is killed.
    pub kill_close_code: u16,
    pub kill_close_reason: String,
    /// Refuse (close with 1002) tunnels that break RFC 6455 instead of only reporting.
    pub strict: bool,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            kill_close_code: crate::control::CLOSE_SERVICE_RESTART,
            kill_close_reason: "service restart".into(),
            strict: false,
        }
    }
}

/// `[limits]`: every peer-controlled size.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open client connections in total (0 = unlimited).
    pub max_connections: usize,
    /// Open client connections per client IP (0 = unlimited).
    pub max_connections_per_ip: usize,
    /// Bytes of request head (request line and headers); 431 beyond.
    pub max_header_bytes: usize,
    /// Number of request headers; 431 beyond.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// `[timeouts]`: all explicit, no hidden idle cut.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// TLS handshake with a client.
    #[serde(with = "duration")]
    pub tls_handshake: Duration,
    /// Time for a client to send a complete request head (408 beyond).
    #[serde(with = "duration")]
    pub request_head: Duration,
    /// TCP (and TLS) connect to a backend.
    #[serde(with = "duration")]
    pub connect: Duration,
    /// Time for a backend to answer a request or upgrade (504 beyond).
    #[serde(with = "duration")]
    pub backend_response: Duration,
    /// Silence in both directions after which a tunnel is closed (0 = never).
    #[serde(with = "duration")]
    pub idle: Duration,
    /// After a Close frame sent by the proxy, how long peers get to answer.
    #[serde(with = "duration")]
    pub close_grace: Duration,
    /// On SIGINT/SIGTERM, how long tunnels get to close before the process exits.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tls_handshake: Duration::from_secs(10),
            request_head: Duration::from_secs(10),
            connect: Duration::from_secs(5),
            backend_response: Duration::from_secs(30),
            idle: Duration::from_secs(3600),
            close_grace: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// `[inspect]`: what the frame observer keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Inspect {
    /// Frame summaries kept per tunnel and direction.
    pub ring: usize,
    /// Payload bytes copied (unmasked) into each summary.
    pub preview_bytes: usize,
    /// Capacity of the event bus; slower subscribers lag and resync.
    pub event_capacity: usize,
    /// How often frame statistics are published per tunnel.
    #[serde(with = "duration")]
    pub stats_interval: Duration,
}

impl Default for Inspect {
    fn default() -> Self {
        Self {
            ring: 16,
            preview_bytes: 64,
            event_capacity: 4096,
            stats_interval: Duration::from_millis(250),
        }
    }
}

/// `[[listener]]`: one bound address, plain or TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Shown in the dashboard and the access log; defaults to the bind address.
    #[serde(default)]
    pub name: Option<String>,
    pub bind: SocketAddr,
    #[serde(default)]
    pub tls: Option<ListenerTls>,
}

impl Listener {
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.bind.to_string())
    }
}

/// `[listener.tls]`: certificate chain and key in PEM, plus optional SNI certificates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub sni: Vec<SniCert>,
}

/// `[[listener.tls.sni]]`: a certificate served for the given server names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[[route]]`: requests matching host and path prefix go to a pool. The first match
/// wins, in file order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Exact host (port ignored) or `*.suffix`; absent matches every host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix; `/` by default.
    #[serde(default = "default_path")]
    pub path: String,
    pub pool: String,
}

fn default_path() -> String {
    "/".into()
}

/// Balancing algorithm of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Fewest active tunnels relative to weight (tunnels are long-lived).
    #[default]
    LeastConn,
    /// Smooth weighted round robin.
    RoundRobin,
    /// Consistent hash of the client IP.
    IpHash,
    /// Consistent hash of a header, cookie or query parameter (`hash_key`).
    Hash,
}

/// Where the `hash` balancer finds its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(String),
    Cookie(String),
    Query(String),
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            serde::de::Error::custom(format!(
                "hash_key `{s}` must be `header:NAME`, `cookie:NAME` or `query:NAME`"
            ))
        })?;
        let name = name.trim();
        if name.is_empty() {
            return Err(serde::de::Error::custom(
                "hash_key needs a name after the colon",
            ));
        }
        match kind.trim() {
            "header" => Ok(HashKey::Header(name.to_ascii_lowercase())),
            "cookie" => Ok(HashKey::Cookie(name.to_string())),
            "query" => Ok(HashKey::Query(name.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "hash_key kind `{other}` is not one of header, cookie, query"
            ))),
        }
    }
}

/// What the backend sees as `Host`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostHeader {
    /// The client's Host, unchanged (nginx `proxy_set_header Host $host`).
    #[default]
    Keep,
    /// The backend's address (nginx's default `$proxy_host`).
    Backend,
    /// A fixed value.
    Set(String),
}

impl<'de> Deserialize<'de> for HostHeader {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "keep" => HostHeader::Keep,
            "backend" => HostHeader::Backend,
            _ => HostHeader::Set(s),
        })
    }
}

/// `[pool.NAME]`: backends and how to spread tunnels over them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub hash_key: Option<HashKey>,
    /// Failed connects within `fail_timeout` that mark a backend down (0 = never).
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    #[serde(default = "default_fail_timeout", with = "duration")]
    pub fail_timeout: Duration,
    /// Backends tried for one request before the client gets an error.
    #[serde(default = "default_tries")]
    pub tries: u32,
    #[serde(default)]
    pub host_header: HostHeader,
    /// Connect to backends over TLS.
    #[serde(default)]
    pub tls: bool,
    /// PEM CA bundle for backend TLS; system roots when absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Server name for backend TLS; the backend's host when absent.
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(rename = "server")]
    pub servers: Vec<Server>,
}

fn default_max_fails() -> u32 {
    1
}
fn default_fail_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_tries() -> u32 {
    3
}

/// `[[pool.NAME.server]]`: one backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// `host:port`; resolved when connecting.
    pub addr: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Used only when no primary server is eligible.
    #[serde(default)]
    pub backup: bool,
}

fn default_weight() -> u32 {
    1
}

/// A configuration that could not be used.
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
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_str(&text, &path.display().to_string())
    }

    /// Parses and validates text; `origin` names it in errors (usually the path).
    pub fn from_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let location = match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    format!("{origin}:{line}:{col}")
                }
                None => origin.to_string(),
            };
            ConfigError::Parse {
                location,
                message: e.message().to_string(),
            }
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks what the schema alone cannot.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            location: format!("{origin}: key `{key}`"),
            message,
        };
        if self.listeners.is_empty() {
            return Err(invalid(
                "listener",
                "at least one [[listener]] is needed".into(),
            ));
        }
        for (i, route) in self.routes.iter().enumerate() {
            if !self.pools.contains_key(&route.pool) {
                return Err(invalid(
                    &format!("route[{i}].pool"),
                    format!("no [pool.{}] is defined", route.pool),
                ));
            }
            if !route.path.starts_with('/') {
                return Err(invalid(
                    &format!("route[{i}].path"),
                    format!("`{}` must start with /", route.path),
                ));
            }
        }
        if self.routes.is_empty() && self.pools.len() != 1 {
            return Err(invalid(
                "route",
                "with no [[route]], exactly one [pool.NAME] must be defined".into(),
            ));
        }
        for (name, pool) in &self.pools {
            if pool.servers.is_empty() {
                return Err(invalid(
                    &format!("pool.{name}.server"),
                    "a pool needs at least one server".into(),
                ));
            }
            if pool.balance == Balance::Hash && pool.hash_key.is_none() {
                return Err(invalid(
                    &format!("pool.{name}.hash_key"),
                    "balance = \"hash\" needs hash_key = \"header:NAME\" (or cookie:, query:)"
                        .into(),
                ));
            }
            for (i, s) in pool.servers.iter().enumerate() {
                if s.addr
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_none()
                {
                    return Err(invalid(
                        &format!("pool.{name}.server[{i}].addr"),
                        format!("`{}` must be host:port", s.addr),
                    ));
                }
                if s.weight == 0 {
                    return Err(invalid(
                        &format!("pool.{name}.server[{i}].weight"),
                        "weight must be at least 1".into(),
                    ));
                }
            }
        }
        if self.inspect.event_capacity == 0 {
            return Err(invalid(
                "inspect.event_capacity",
                "must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The pool a request goes to when no route is configured.
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
                servers,
            },
        );
        Config {
            proxy: ProxySettings::default(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            inspect: Inspect::default(),
            listeners: vec![Listener {
                name: None,
                bind: listen,
                tls: None,
            }],
            routes: Vec::new(),
            pools,
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Durations as `"250ms"`, `"10s"`, `"5m"`, `"1h"`, `"2d"`, or a plain number of seconds.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        }
    }

    /// Parses `"250ms"`, `"10s"`, `"1h"`, `"0"`.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a duration like \"250ms\", \"10s\", \"1h\""))?;
        let ms = match unit.trim() {
            "ms" => 1,
            "" | "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}` (use ms, s, m, h or d)"
                ))
            }
        };
        Ok(Duration::from_millis(n.saturating_mul(ms)))
    }
}

impl Config {
    /// A short summary for `tunnelscope check`.
    pub fn check_report(&self) -> String {
        format!(
            "{} listener(s), {} route(s), {} pool(s)\n",
            self.listeners.len(),
            self.routes.len(),
            self.pools.len()
        )
    }
}
