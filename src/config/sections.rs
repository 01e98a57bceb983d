//! The settings tables: `[proxy]`, `[limits]` (with the WebSocket limits a route
//! may override), `[timeouts]`, `[inspect]` and `[admin]`, with their defaults.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::de::{lowercase_names, nets, opt_socket_addr};
use super::duration;

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
    /// The DNS server backend names are resolved with (`ip` or `ip:port`); the
    /// system's (`/etc/resolv.conf`, then `/etc/hosts`) when absent.
    #[serde(deserialize_with = "resolver_addr")]
    pub resolver: Option<std::net::SocketAddr>,
}

/// `"10.0.0.2"` (port 53) or `"10.0.0.2:5353"`.
fn resolver_addr<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::net::SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(Some(std::net::SocketAddr::new(ip, 53)));
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IP address or ip:port of a DNS server"
        ))
    })
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
            resolver: None,
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
    /// Silence in both directions after which a plain tunnel gives up its relay
    /// task and waits, as a small entry, for the next byte, deadline or command
    /// (0 = never). Nothing about the tunnel changes for its peers.
    #[serde(with = "duration")]
    pub park_after: Duration,
    /// After a Close frame sent by the proxy, how long peers get to answer.
    #[serde(with = "duration")]
    pub close_grace: Duration,
    /// On SIGINT/SIGTERM, how long tunnels get to close before the process exits
    /// (0 = exit at once).
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// After a binary upgrade handed the listeners to the new process, how long the
    /// old one keeps its tunnels before closing the rest (paced, within
    /// `shutdown_grace`) and exiting; it exits as soon as they have all ended.
    #[serde(with = "duration")]
    pub upgrade_deadline: Duration,
    /// TCP keepalive on both sides of every connection: silence before the kernel
    /// starts probing (0 = no keepalive), the time between probes, and how many
    /// unanswered probes end the connection. A peer that vanished without a word
    /// (power loss, a dropped NAT mapping) is then found out by the kernel.
    #[serde(with = "duration")]
    pub keepalive_idle: Duration,
    #[serde(with = "duration")]
    pub keepalive_interval: Duration,
    pub keepalive_count: u32,
    /// Proxy-originated WebSocket pings: a peer silent this long is sent a Ping (0 =
    /// never); one that sends nothing back within `ping_timeout` is taken for dead
    /// and the tunnel is closed. The Pong is swallowed: the other side never sees it.
    #[serde(with = "duration")]
    pub ping_interval: Duration,
    #[serde(with = "duration")]
    pub ping_timeout: Duration,
    /// Which peers get those pings.
    pub ping: PingSides,
}

/// The peers of a tunnel that `[timeouts] ping_interval` pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PingSides {
    #[default]
    Both,
    Client,
    Backend,
}

impl PingSides {
    pub fn client(self) -> bool {
        self != PingSides::Backend
    }

    pub fn backend(self) -> bool {
        self != PingSides::Client
    }
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
            park_after: Duration::from_secs(1),
            close_grace: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(10),
            upgrade_deadline: Duration::from_secs(3600),
            keepalive_idle: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(10),
            keepalive_count: 6,
            ping_interval: Duration::ZERO,
            ping_timeout: Duration::from_secs(10),
            ping: PingSides::Both,
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
    /// When whole messages are kept for the inspector: `watched` (while the
    /// dashboard runs or an admin API client follows the events), `all`, or `off`.
    pub capture: CaptureMode,
    /// Payload bytes kept per message (longer ones are kept truncated, marked).
    pub message_bytes: usize,
    /// Payload bytes of whole messages kept per tunnel (half per direction); the
    /// oldest go first.
    pub tunnel_memory: usize,
    /// Payload bytes of whole messages kept by all tunnels together; a tunnel that
    /// would go over gives up its own oldest first.
    pub memory: usize,
    /// A directory to write a JSON Lines recording of each tunnel into, as it
    /// happens (`--record DIR`); none by default.
    pub record: Option<std::path::PathBuf>,
    /// Record only the tunnels whose path or route contains this.
    pub record_match: Option<String>,
    /// Bytes per recording file; a longer recording continues in a new file.
    pub record_file_bytes: u64,
    /// Bytes of recordings kept in the directory; the oldest files are deleted.
    pub record_total_bytes: u64,
}

/// `[inspect] capture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    #[default]
    Watched,
    All,
    Off,
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
            capture: CaptureMode::Watched,
            message_bytes: 64 * 1024,
            tunnel_memory: 1024 * 1024,
            memory: 64 * 1024 * 1024,
            record: None,
            record_match: None,
            record_file_bytes: 16 * 1024 * 1024,
            record_total_bytes: 1024 * 1024 * 1024,
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
    /// A short name for this instance, in the API's state and event stream, by
    /// which `tunnelscope top` labels it (default: the address `top` connects to).
    #[serde(default)]
    pub name: Option<String>,
    /// Serve the API over TLS (`https://`, `wss://` for the event stream) with this
    /// certificate and key (`cert`, `key`, as `[listener.tls]`; HTTP/1.1 only).
    #[serde(default)]
    pub tls: Option<super::routing::ListenerTls>,
}
