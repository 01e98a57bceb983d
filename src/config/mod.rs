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
//! Layout: this file holds the schema and loading; `validate` the checks the schema
//! cannot express; `locate` turns byte spans into lines and key paths; `report` the
//! summary of `tunnelscope check`; [`duration`] the duration syntax.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

pub mod duration;
mod locate;
mod report;
mod validate;

use locate::{line_col, tidy_message, KeyPath, Node};

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
}

/// `[proxy]`: process-wide behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// Peers whose X-Forwarded-* / X-Real-IP headers are believed and extended.
    /// Written as CIDR (`"10.0.0.0/8"`) or a single address (`"10.0.0.1"`).
    #[serde(deserialize_with = "nets")]
    pub trusted_proxies: Vec<IpNet>,
    /// Close code sent to clients when their backend is killed.
    pub kill_close_code: u16,
    /// Close reason sent with it (at most 123 bytes).
    pub kill_close_reason: String,
    /// Refuse (close with 1002) tunnels that break RFC 6455 instead of only reporting.
    pub strict: bool,
    /// When a backend's connection drops without a Close frame, send its client a
    /// Close 1011 "backend went away" (at a frame boundary). `false` passes the bare
    /// TCP close on, byte for byte.
    pub close_on_backend_loss: bool,
    /// Event loops relaying traffic, each on a thread of its own with its own share
    /// of the listening sockets (SO_REUSEPORT). 0: one per CPU.
    pub threads: usize,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            kill_close_code: crate::control::CLOSE_SERVICE_RESTART,
            kill_close_reason: "service restart".into(),
            strict: false,
            close_on_backend_loss: true,
            threads: 0,
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
    /// Bytes of request head (request line and headers); 431 beyond. At least 1024.
    /// Enforced exactly (hyper's `max_header_size`); the read buffer itself never
    /// goes below hyper's floor of 8192 bytes.
    pub max_header_bytes: usize,
    /// Number of request headers; 431 beyond. 1 to 1000.
    pub max_headers: usize,
    /// Bytes of a plain HTTP request body; 413 beyond (0 = unlimited).
    pub max_body_bytes: u64,
    /// WebSocket handshakes whose `Origin` is not listed get 403 (empty = any). A
    /// `[[route]]` may set its own list.
    #[serde(deserialize_with = "lowercase_names")]
    pub allowed_origins: Vec<String>,
    /// Bytes of one WebSocket message as it crosses the wire; the sender gets Close
    /// 1009, the other side 1001 (0 = unlimited). Per route too.
    pub max_message_bytes: u64,
    /// Data messages per second each side of a tunnel may send (with a burst of as
    /// many); over it, the sender gets Close 1008, the other side 1001 (0 =
    /// unlimited). Per route too.
    pub max_message_rate: u32,
}

/// The WebSocket limits that apply to one route: `[limits]`, overridden by the
/// route's own keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WsLimits {
    pub allowed_origins: Vec<String>,
    pub max_message_bytes: u64,
    pub max_message_rate: u32,
}

impl WsLimits {
    /// Whether a handshake with this `Origin` header (absent: not from a browser)
    /// may go through. Entries are exact origins (`https://app.example.com`, with a
    /// port if not the default), `scheme://*.suffix` for any subdomain, or `null`.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        self.allowed_origins.is_empty()
            || self
                .allowed_origins
                .iter()
                .any(|pattern| origin_matches(pattern, origin))
    }
}

fn origin_matches(pattern: &str, origin: &str) -> bool {
    let origin = origin.trim();
    match pattern.split_once("://*.") {
        Some((scheme, suffix)) => origin.split_once("://").is_some_and(|(s, host)| {
            s.eq_ignore_ascii_case(scheme)
                && host.len() > suffix.len() + 1
                && host.is_char_boundary(host.len() - suffix.len())
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }),
        None => pattern.eq_ignore_ascii_case(origin),
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 0,
            allowed_origins: Vec::new(),
            max_message_bytes: 0,
            max_message_rate: 0,
        }
    }
}

/// `[timeouts]`: all explicit, no hidden idle cut. All but `idle` and
/// `shutdown_grace` must be more than 0.
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
    /// Longest wait for the next bytes of a request body while it is forwarded
    /// (408 beyond). The client's fault, never the backend's.
    #[serde(with = "duration")]
    pub request_body: Duration,
    /// Time for a backend to answer a request or upgrade once the request (and its
    /// body) has been sent (504 beyond).
    #[serde(with = "duration")]
    pub backend_response: Duration,
    /// Silence in both directions after which a tunnel is closed (0 = never).
    #[serde(with = "duration")]
    pub idle: Duration,
    /// After a Close frame sent by the proxy, how long peers get to answer.
    #[serde(with = "duration")]
    pub close_grace: Duration,
    /// On SIGINT/SIGTERM, how long tunnels get to close before the process exits
    /// (0 = exit at once).
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tls_handshake: Duration::from_secs(10),
            request_head: Duration::from_secs(10),
            connect: Duration::from_secs(5),
            request_body: Duration::from_secs(60),
            backend_response: Duration::from_secs(30),
            idle: Duration::from_secs(3600),
            close_grace: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// `[inspect]`: what the frame observer keeps. Bounded so memory stays bounded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Inspect {
    /// Frame summaries kept per tunnel and direction (0 to 1024).
    pub ring: usize,
    /// Payload bytes copied (unmasked) into each summary (0 to 4096).
    pub preview_bytes: usize,
    /// Capacity of the event bus; slower subscribers lag and resync (1 to 1048576).
    pub event_capacity: usize,
    /// How often frame statistics are published per tunnel (at least 10ms).
    #[serde(with = "duration")]
    pub stats_interval: Duration,
    /// Headers whose values the admin API serves as `«redacted, N bytes»`, besides
    /// `Authorization`, `Proxy-Authorization`, `Cookie` and `Set-Cookie`.
    pub redact: Vec<String>,
    /// Serve every header value as it is, credentials included.
    pub reveal_secrets: bool,
}

impl Default for Inspect {
    fn default() -> Self {
        Self {
            ring: 16,
            preview_bytes: 64,
            event_capacity: 4096,
            stats_interval: Duration::from_millis(250),
            redact: Vec::new(),
            reveal_secrets: false,
        }
    }
}

/// `[admin]`: the HTTP admin API. Off unless `bind` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Where the admin API listens; `None` means no admin API.
    #[serde(default, deserialize_with = "opt_socket_addr")]
    pub bind: Option<SocketAddr>,
    /// When set, every request needs `Authorization: Bearer TOKEN`. Required for an
    /// address other than loopback.
    #[serde(default)]
    pub token: Option<String>,
    /// Host names (with or without a port) the API answers to besides IP literals
    /// and `localhost`; any other `Host` is refused (DNS rebinding).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `[[listener]]`: one bound address, plain or TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Shown in the dashboard and the access log; defaults to the bind address.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(deserialize_with = "socket_addr")]
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
/// Relative paths are resolved against the config file's directory by
/// [`Config::load`]; the files are read when TLS is set up, not here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub sni: Vec<SniCert>,
}

/// `[[listener.tls.sni]]`: a certificate served for the given server names (exact or
/// `*.suffix`, stored lowercase).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    #[serde(deserialize_with = "lowercase_names")]
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[[route]]`: requests matching host and path prefix go to a pool. The first match
/// wins, in file order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Exact host (port ignored) or `*.suffix`; absent matches every host. Stored
    /// lowercase.
    #[serde(default, deserialize_with = "lowercase_host")]
    pub host: Option<String>,
    /// Path prefix; `/` by default.
    #[serde(default = "default_path")]
    pub path: String,
    pub pool: String,
    /// Overrides `[limits] allowed_origins` for this route.
    #[serde(default, deserialize_with = "some_lowercase_names")]
    pub allowed_origins: Option<Vec<String>>,
    /// Overrides `[limits] max_message_bytes` for this route.
    #[serde(default)]
    pub max_message_bytes: Option<u64>,
    /// Overrides `[limits] max_message_rate` for this route.
    #[serde(default)]
    pub max_message_rate: Option<u32>,
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

impl Balance {
    /// The name used in the file: `least_conn`, `round_robin`, `ip_hash`, `hash`.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::LeastConn => "least_conn",
            Balance::RoundRobin => "round_robin",
            Balance::IpHash => "ip_hash",
            Balance::Hash => "hash",
        }
    }
}

/// Where the `hash` balancer finds its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header; the name is stored lowercase.
    Header(String),
    Cookie(String),
    Query(String),
}

impl std::fmt::Display for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashKey::Header(n) => write!(f, "header:{n}"),
            HashKey::Cookie(n) => write!(f, "cookie:{n}"),
            HashKey::Query(n) => write!(f, "query:{n}"),
        }
    }
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = |why: &str| {
            serde::de::Error::custom(format!(
                r#"{s:?} {why}; write "header:NAME", "cookie:NAME" or "query:NAME""#
            ))
        };
        let (kind, name) = s.split_once(':').ok_or_else(|| bad("has no kind"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad("needs a name after the colon"));
        }
        match kind.trim() {
            "header" => Ok(HashKey::Header(name.to_ascii_lowercase())),
            "cookie" => Ok(HashKey::Cookie(name.to_string())),
            "query" => Ok(HashKey::Query(name.to_string())),
            _ => Err(bad("has an unknown kind")),
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
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
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
    /// Only with `balance = "hash"`.
    #[serde(default)]
    pub hash_key: Option<HashKey>,
    /// Failed connects within `fail_timeout` that mark a backend down (0 = never).
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    /// The window for `max_fails`, and how long a backend then stays down.
    #[serde(default = "default_fail_timeout", with = "duration")]
    pub fail_timeout: Duration,
    /// Backends tried for one request before the client gets an error (at least 1).
    #[serde(default = "default_tries")]
    pub tries: u32,
    #[serde(default)]
    pub host_header: HostHeader,
    /// Connect to backends over TLS.
    #[serde(default)]
    pub tls: bool,
    /// PEM CA bundle for backend TLS; system roots when absent. Only with `tls`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Server name for backend TLS; the backend's host when absent. Only with `tls`.
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

/// A listener address, with a message that says what is expected.
fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            r#"{s:?} is not IP:port; a listener binds an IP address, e.g. "127.0.0.1:8080", "0.0.0.0:443" or "[::]:443""#
        ))
    })
}

/// The admin API's address, with a message that says what is expected.
fn opt_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            r#"{s:?} is not IP:port; the admin API binds an IP address, e.g. "127.0.0.1:9090""#
        ))
    })
}

/// CIDR blocks, with bare addresses taken as single hosts.
fn nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        r#"{s:?} is not an IP address or CIDR block such as "10.0.0.0/8""#
                    ))
                })
        })
        .collect()
}

fn lowercase_host<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|h| h.to_ascii_lowercase()))
}

fn lowercase_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    Ok(names.into_iter().map(|n| n.to_ascii_lowercase()).collect())
}

fn some_lowercase_names<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    lowercase_names(d).map(Some)
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
            admin: Admin::default(),
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
