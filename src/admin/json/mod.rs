//! The JSON shapes of the admin API, borrowed from the event types so nothing is
//! copied twice. They live here rather than as serde derives on `event.rs`, which
//! stays a leaf that knows no wire format.
//!
//! Times are RFC 3339 in UTC with milliseconds; durations are seconds as numbers;
//! directions are `client_to_backend` and `backend_to_client`.

pub mod message;
mod operations;

pub use self::message::Message;
pub use self::operations::{Check, Closing, Resolved};

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;

use crate::event::{
    BackendId, BackendInfo, CloseInfo, Dir, DirStats, FrameSample, Handshake as HandshakeInfo,
    Health, ListenerInfo, OpKind, Snapshot, TunnelInfo, TunnelStats,
};

pub use super::totals::{Diff, Totals};

pub use crate::inspect::rfc3339;

/// Seconds since the proxy started (0 when unknown).
pub fn uptime_seconds(s: &Snapshot, now: SystemTime) -> f64 {
    s.started
        .and_then(|t| now.duration_since(t).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn dir_name(dir: Dir) -> &'static str {
    match dir {
        Dir::ClientToBackend => "client_to_backend",
        Dir::BackendToClient => "backend_to_client",
    }
}

/// The version of the `/api/events` contract (and of `/api/state`).
pub const EVENTS_VERSION: u32 = 1;

/// `GET /api/state`, and the first message of `/api/events`.
#[derive(Serialize)]
pub struct State<'a> {
    /// The event stream's contract version: within it, fields and message types
    /// are only ever added (see assets/events.schema.json).
    pub version: u32,
    /// This instance's `[admin] name`, if it has one.
    pub instance: Option<&'a str>,
    pub started: Option<String>,
    pub uptime_seconds: f64,
    pub listeners: Vec<Listener<'a>>,
    pub backends: Vec<Backend<'a>>,
    pub tunnels: Vec<Tunnel<'a>>,
    pub totals: Totals,
    /// Backend names (`name:port` servers) and what they resolved to.
    pub dns: Vec<Resolved<'a>>,
}

impl<'a> State<'a> {
    pub fn new(
        s: &'a Snapshot,
        totals: Totals,
        now: SystemTime,
        instance: Option<&'a str>,
    ) -> State<'a> {
        State {
            version: EVENTS_VERSION,
            instance,
            started: s.started.map(rfc3339),
            uptime_seconds: uptime_seconds(s, now),
            listeners: s.listeners.iter().map(Listener::new).collect(),
            backends: s.backends.iter().map(Backend::new).collect(),
            tunnels: s.tunnels.iter().map(Tunnel::new).collect(),
            totals,
            dns: s.resolutions.iter().map(Resolved::new).collect(),
        }
    }
}

#[derive(Serialize)]
pub struct Listener<'a> {
    pub name: &'a str,
    pub addr: SocketAddr,
    pub tls: bool,
}

impl<'a> Listener<'a> {
    pub fn new(l: &'a ListenerInfo) -> Listener<'a> {
        Listener {
            name: &l.name,
            addr: l.addr,
            tls: l.tls,
        }
    }
}

/// A backend; `id` is `pool/addr`, and `pool` and `addr` are what the control
/// endpoints `/api/backends/{pool}/{addr}/...` take.
#[derive(Serialize)]
pub struct Backend<'a> {
    pub id: String,
    pub pool: &'a str,
    pub addr: &'a str,
    pub weight: u32,
    pub backup: bool,
    /// `active`, `draining`, `drained` or `disabled`.
    pub admin: String,
    /// `up` or `down`.
    pub health: &'static str,
    pub active: u64,
    pub total: u64,
    pub failures: u64,
    pub last_error: Option<&'a str>,
    /// The `name:port` its address was resolved from (backends found by DNS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'a str>,
    /// The latest active health check; absent when the pool has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Check<'a>>,
    /// A paced close of the backend's tunnels, waiting or running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closing: Option<Closing>,
    /// Grows with every state event of this backend; events may arrive out of
    /// order, so a client keeps only the highest version it has seen.
    pub version: u64,
}

impl<'a> Backend<'a> {
    pub fn new(b: &'a BackendInfo) -> Backend<'a> {
        Backend {
            id: b.id.to_string(),
            pool: &b.id.pool,
            addr: &b.id.addr,
            weight: b.weight,
            backup: b.backup,
            admin: b.admin.to_string(),
            health: health_name(b.health),
            active: b.active_tunnels,
            total: b.total_tunnels,
            failures: b.failures,
            last_error: b.last_error.as_deref(),
            via: b.via.as_deref(),
            check: b.check.as_ref().map(|c| Check {
                at: rfc3339(c.at),
                latency_ms: c.latency.as_secs_f64() * 1e3,
                ok: c.error.is_none(),
                error: c.error.as_deref(),
            }),
            closing: b.closing.as_ref().map(|p| Closing {
                cause: p.cause.name(),
                starts: rfc3339(p.starts),
                rate: p.rate,
                closed: p.closed,
                left: p.left,
            }),
            version: b.version,
        }
    }
}

pub fn health_name(h: Health) -> &'static str {
    match h {
        Health::Up => "up",
        Health::Down => "down",
    }
}

/// A live tunnel, as listed.
#[derive(Serialize)]
pub struct Tunnel<'a> {
    pub id: u64,
    pub client: SocketAddr,
    pub listener: &'a str,
    pub route: &'a str,
    pub path: &'a str,
    /// `pool/addr`, or null before a backend is chosen.
    pub backend: Option<String>,
    pub opened: String,
    pub subprotocol: Option<&'a str>,
    pub extensions: Option<&'a str>,
    /// `h1` or `h2` (how the client spoke), null before the handshake completes.
    pub http: Option<&'static str>,
    pub client_to_backend: Direction<'a>,
    pub backend_to_client: Direction<'a>,
    /// Seconds of silence after which the proxy closes the tunnel; null when never.
    pub idle_timeout_s: Option<f64>,
    /// The directions an operator holds.
    pub held: Vec<message::Hold>,
    /// Silent long enough that its relay gave up its task (`[timeouts]
    /// park_after`); any byte, timer or command takes it up again.
    pub parked: bool,
}

impl<'a> Tunnel<'a> {
    pub fn new(t: &'a TunnelInfo) -> Tunnel<'a> {
        let hs = t.handshake.as_ref();
        Tunnel {
            id: t.id,
            client: t.client,
            listener: &t.listener,
            route: &t.route,
            path: &t.path,
            backend: t.backend.as_ref().map(BackendId::to_string),
            opened: rfc3339(t.opened),
            subprotocol: hs.and_then(|h| h.subprotocol.as_deref()),
            extensions: hs.and_then(|h| h.extensions.as_deref()),
            http: hs.map(|h| if h.h2 { "h2" } else { "h1" }),
            client_to_backend: Direction::new(&t.stats.client_to_backend, false),
            backend_to_client: Direction::new(&t.stats.backend_to_client, false),
            idle_timeout_s: t.idle_timeout.map(|d| d.as_secs_f64()),
            held: t.held.iter().map(message::Hold::new).collect(),
            parked: t.parked,
        }
    }
}

/// `GET /api/tunnels/{id}`: the listing plus handshake headers, counts by opcode and
/// the recent frames.
#[derive(Serialize)]
pub struct TunnelDetail<'a> {
    #[serde(flatten)]
    pub tunnel: Tunnel<'a>,
    pub handshake: Option<Handshake<'a>>,
    pub samples: Vec<Sample>,
}

impl<'a> TunnelDetail<'a> {
    pub fn new(t: &'a TunnelInfo, redact: &Redact) -> TunnelDetail<'a> {
        let mut tunnel = Tunnel::new(t);
        tunnel.client_to_backend = Direction::new(&t.stats.client_to_backend, true);
        tunnel.backend_to_client = Direction::new(&t.stats.backend_to_client, true);
        TunnelDetail {
            tunnel,
            handshake: t.handshake.as_ref().map(|h| Handshake::new(h, redact)),
            samples: t.samples.iter().map(Sample::new).collect(),
        }
    }
}

pub use crate::inspect::redact::Redact;

/// Header lists are `[name, value]` pairs in the order they were seen.
#[derive(Serialize)]
pub struct Handshake<'a> {
    pub request_in: Vec<(&'a str, Cow<'a, str>)>,
    pub request_out: Vec<(&'a str, Cow<'a, str>)>,
    pub response: Vec<(&'a str, Cow<'a, str>)>,
    pub subprotocol: Option<&'a str>,
    pub extensions: Option<&'a str>,
    /// `h1` (an HTTP/1.1 Upgrade) or `h2` (an HTTP/2 extended CONNECT).
    pub http: &'static str,
}

impl<'a> Handshake<'a> {
    pub fn new(h: &'a HandshakeInfo, redact: &Redact) -> Handshake<'a> {
        Handshake {
            request_in: redact.pairs(&h.request_in),
            request_out: redact.pairs(&h.request_out),
            response: redact.pairs(&h.response),
            subprotocol: h.subprotocol.as_deref(),
            extensions: h.extensions.as_deref(),
            http: if h.h2 { "h2" } else { "h1" },
        }
    }
}

/// Counters of one direction of one tunnel.
#[derive(Serialize)]
pub struct Direction<'a> {
    pub frames: u64,
    pub messages: u64,
    pub bytes: u64,
    pub last_frame: Option<String>,
    /// The first Close frame seen this way.
    pub close: Option<Close<'a>>,
    pub violations: u64,
    /// Per opcode (`text`, `binary`, `close`, ...); only in a tunnel's detail and in
    /// `frame_stats` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_opcode: Option<BTreeMap<&'static str, OpCounts>>,
}

impl<'a> Direction<'a> {
    pub fn new(d: &'a DirStats, by_opcode: bool) -> Direction<'a> {
        Direction {
            frames: d.frames(),
            messages: d.messages,
            bytes: d.bytes,
            last_frame: d.last_frame.map(rfc3339),
            close: d.close.as_ref().map(Close::new),
            violations: d.violations,
            by_opcode: by_opcode.then(|| {
                OpKind::ALL
                    .iter()
                    .map(|&k| {
                        let c = d.op(k);
                        let counts = OpCounts {
                            frames: c.frames,
                            payload_bytes: c.payload_bytes,
                            wire_bytes: c.wire_bytes,
                        };
                        (k.name(), counts)
                    })
                    .collect()
            }),
        }
    }

    pub fn both(s: &'a TunnelStats, by_opcode: bool) -> [Direction<'a>; 2] {
        [
            Direction::new(&s.client_to_backend, by_opcode),
            Direction::new(&s.backend_to_client, by_opcode),
        ]
    }
}

#[derive(Serialize)]
pub struct OpCounts {
    pub frames: u64,
    pub payload_bytes: u64,
    pub wire_bytes: u64,
}

#[derive(Serialize)]
pub struct Close<'a> {
    /// Null for a Close frame without a status code.
    pub code: Option<u16>,
    pub reason: &'a str,
}

impl<'a> Close<'a> {
    pub fn new(c: &'a CloseInfo) -> Close<'a> {
        Close {
            code: c.code,
            reason: &c.reason,
        }
    }
}

/// One frame summary.
#[derive(Serialize)]
pub struct Sample {
    pub seq: u64,
    pub at: String,
    pub dir: &'static str,
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (4 = RSV1, permessage-deflate).
    pub rsv: u8,
    pub opcode: u8,
    /// `text`, `binary`, `close`, `ping`, `pong`, `cont` or `reserved`.
    pub kind: &'static str,
    pub masked: bool,
    /// Payload length announced by the header.
    pub len: u64,
    pub preview: Preview,
    /// Sent by the proxy on an operator's request, not by the peer.
    pub injected: bool,
}

impl Sample {
    pub fn new(s: &FrameSample) -> Sample {
        Sample {
            seq: s.seq,
            at: rfc3339(s.at),
            dir: dir_name(s.dir),
            fin: s.fin,
            rsv: s.rsv,
            opcode: s.opcode,
            kind: OpKind::from_opcode(s.opcode).name(),
            masked: s.masked,
            len: s.len,
            preview: Preview::new(&s.preview, s.len),
            injected: s.injected,
        }
    }
}

/// The first payload bytes (unmasked): as text when they are UTF-8, else as hex.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// `text` or `hex`.
    pub encoding: &'static str,
    pub data: String,
    /// The payload is longer than the preview.
    pub truncated: bool,
}

impl Preview {
    pub fn new(bytes: &[u8], len: u64) -> Preview {
        let truncated = (bytes.len() as u64) < len;
        let text = match std::str::from_utf8(bytes) {
            Ok(s) => Some(s),
            // A cut through the last character of a longer payload is still text.
            Err(e) if truncated && e.error_len().is_none() && e.valid_up_to() > 0 => {
                std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        };
        match text {
            Some(s)
                if !s
                    .chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
            {
                Preview {
                    encoding: "text",
                    data: s.to_string(),
                    truncated,
                }
            }
            _ => Preview {
                encoding: "hex",
                data: bytes.iter().map(|b| format!("{b:02x}")).collect(),
                truncated,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn previews_are_text_when_they_can_be() {
        assert_eq!(Preview::new(b"hello", 5).data, "hello");
        assert_eq!(Preview::new(b"hello", 5).encoding, "text");
        assert!(Preview::new(b"hel", 5).truncated);
        // "é" is 0xC3 0xA9: a preview cut between them stays text.
        let cut = Preview::new(b"caf\xc3", 5);
        assert_eq!((cut.encoding, cut.data.as_str()), ("text", "caf"));
        // Not UTF-8, or control bytes (a Close code): hex.
        let close = Preview::new(&[0x03, 0xe8, b'b', b'y', b'e'], 5);
        assert_eq!((close.encoding, close.data.as_str()), ("hex", "03e8627965"));
        assert_eq!(Preview::new(&[0xff, 0x00], 2).data, "ff00");
        let empty = Preview::new(b"", 0);
        assert_eq!((empty.encoding, empty.data.as_str()), ("text", ""));
    }
}
