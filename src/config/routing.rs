//! Where traffic goes: `[[listener]]` (with TLS and SNI certificates),
//! `[[route]]`, and `[pool.NAME]` with its `[[pool.NAME.server]]`s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::de::{lowercase_host, lowercase_names, socket_addr, some_lowercase_names};
use super::duration;

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
    /// Offer HTTP/2 (ALPN `h2`): WebSocket over HTTP/2 (RFC 8441) and plain
    /// requests; `false` keeps the listener HTTP/1.1 only.
    #[serde(default = "yes")]
    pub h2: bool,
}

fn yes() -> bool {
    true
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
    /// How long a drained backend's tunnels run on before they are closed with 1012
    /// (0 = until they end by themselves).
    #[serde(default, with = "duration")]
    pub drain_deadline: Duration,
    /// Tunnels closed per second once a drain's deadline has passed, so clients
    /// reconnect elsewhere as a trickle, not a storm (at least 1).
    #[serde(default = "default_close_rate")]
    pub close_rate: u32,
    /// Idle keep-alive connections kept per backend (and event loop) for plain HTTP
    /// requests (0 = a new connection per request).
    #[serde(default = "default_keepalive")]
    pub keepalive: usize,
    /// How long an idle keep-alive connection is kept.
    #[serde(default = "default_keepalive_timeout", with = "duration")]
    pub keepalive_timeout: Duration,
    /// How often backend names (`addr = "name:port"`) are resolved again; sooner when
    /// the records' TTL ends first (never sooner than 1 s).
    #[serde(default = "default_resolve_interval", with = "duration")]
    pub resolve_interval: Duration,
    /// Active health checks (`[pool.NAME.health]`); none when absent.
    #[serde(default)]
    pub health: Option<HealthCheck>,
    #[serde(rename = "server")]
    pub servers: Vec<Server>,
}

/// `[pool.NAME.health]`: each backend is probed every `interval`; `fall` failures
/// in a row take it out of service (no new tunnels; open ones run on), `rise`
/// successes bring it back.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub check: CheckKind,
    /// Request path of http and ws checks.
    #[serde(default = "default_path")]
    pub path: String,
    /// `Host` of http and ws checks; the backend's address when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// The status that means healthy: 200 for http, 101 for ws by default.
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default = "default_check_interval", with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_check_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_rise")]
    pub rise: u32,
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// Close the tunnels of a backend that goes down (1012 to the client, paced at
    /// the pool's `close_rate`); by default they run on.
    #[serde(default)]
    pub close_on_down: bool,
}

impl HealthCheck {
    pub fn kind(&self) -> CheckKind {
        self.check
    }
}

/// What a health check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A TCP connect.
    Tcp,
    /// `GET path`, expecting `status`.
    Http,
    /// A real WebSocket handshake (expecting 101 with the right accept), then a Close.
    Ws,
}

fn default_check_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_rise() -> u32 {
    2
}

fn default_fall() -> u32 {
    3
}

/// `close_rate` when the file sets none (also used for a pool a reload removed).
pub const DEFAULT_CLOSE_RATE: u32 = 50;

pub(super) fn default_close_rate() -> u32 {
    DEFAULT_CLOSE_RATE
}

pub(super) fn default_max_fails() -> u32 {
    1
}
pub(super) fn default_fail_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_tries() -> u32 {
    3
}

/// `[[pool.NAME.server]]`: one backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// `ip:port`, or `name:port`: a name is resolved at start and every
    /// `resolve_interval`, and each address it has is a backend of its own.
    pub addr: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Used only when no primary server is eligible.
    #[serde(default)]
    pub backup: bool,
    /// For a backend found by resolving a name: that `name:port` (not in the file).
    #[serde(skip)]
    pub via: Option<String>,
}

impl Server {
    /// Whether `addr` names a host to resolve rather than an IP address.
    pub fn is_name(&self) -> bool {
        self.via.is_none() && host_of(&self.addr).parse::<std::net::IpAddr>().is_err()
    }
}

/// The host of `host:port` (brackets of an IPv6 literal removed).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn default_keepalive() -> usize {
    32
}

fn default_keepalive_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_resolve_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_weight() -> u32 {
    1
}
