//! The events the proxy core publishes: the contract between the core and every
//! observer (dashboard, admin API, tests).
//!
//! Events travel on a bounded `tokio::sync::broadcast` channel. They are cheap to
//! clone (large parts sit behind `Arc`), are batched (frame statistics at most ~4 Hz
//! per tunnel, never one event per frame), and a subscriber that lags simply misses
//! some and resynchronises from a [`Snapshot`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

mod captured;
mod counters;
mod fleet;
mod headers;
mod mirror;
mod operations;

pub use self::captured::{CapturedFrame, CapturedMessage, HoldState, SearchHit, MAX_FRAMES_KEPT};
pub use self::operations::{CheckResult, PaceCause, PacedClose, Resolution};

pub use counters::{ConfigDiff, Counters, Flow, Limit};
pub use fleet::{Fleet, FleetOutcome, Instance, Link, Share};
pub use headers::Headers;

/// Identifies a tunnel (or a handshake attempt) for the lifetime of the process.
pub type TunnelId = u64;

/// A backend, named by its pool and its configured address (`"chat/10.0.0.1:8010"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId {
    pub pool: Arc<str>,
    pub addr: Arc<str>,
}

impl BackendId {
    pub fn new(pool: &str, addr: &str) -> Self {
        Self {
            pool: pool.into(),
            addr: addr.into(),
        }
    }
}

impl std::fmt::Display for BackendId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pool, self.addr)
    }
}

/// Which way bytes flow through a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the client to the backend (frames must be masked).
    ClientToBackend,
    /// From the backend to the client (frames must not be masked).
    BackendToClient,
}

impl Dir {
    pub fn arrow(self) -> &'static str {
        match self {
            Dir::ClientToBackend => "→",
            Dir::BackendToClient => "←",
        }
    }
}

/// Which side ended a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
    /// The proxy itself (kill, close command, idle timeout, shutdown).
    Proxy,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Backend => "backend",
            Side::Proxy => "proxy",
        })
    }
}

/// Index into [`DirStats::by_opcode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Continuation = 0,
    Text = 1,
    Binary = 2,
    Close = 3,
    Ping = 4,
    Pong = 5,
    /// Reserved opcodes 0x3-0x7 and 0xB-0xF (a protocol violation).
    Reserved = 6,
}

impl OpKind {
    pub const ALL: [OpKind; 7] = [
        OpKind::Continuation,
        OpKind::Text,
        OpKind::Binary,
        OpKind::Close,
        OpKind::Ping,
        OpKind::Pong,
        OpKind::Reserved,
    ];

    pub fn from_opcode(op: u8) -> OpKind {
        match op {
            0x0 => OpKind::Continuation,
            0x1 => OpKind::Text,
            0x2 => OpKind::Binary,
            0x8 => OpKind::Close,
            0x9 => OpKind::Ping,
            0xA => OpKind::Pong,
            _ => OpKind::Reserved,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Continuation => "cont",
            OpKind::Text => "text",
            OpKind::Binary => "binary",
            OpKind::Close => "close",
            OpKind::Ping => "ping",
            OpKind::Pong => "pong",
            OpKind::Reserved => "reserved",
        }
    }
}

/// Counters for one opcode in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCount {
    pub frames: u64,
    /// Payload bytes (after the header).
    pub payload_bytes: u64,
    /// Header plus payload bytes as seen on the wire.
    pub wire_bytes: u64,
}

/// A close frame as seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// `None` for an empty close payload (no status code).
    pub code: Option<u16>,
    pub reason: String,
}

/// Everything counted for one direction of one tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirStats {
    pub by_opcode: [OpCount; 7],
    /// Complete data messages (a message ends with a FIN text/binary/continuation frame).
    pub messages: u64,
    /// All bytes relayed in this direction, frames or not.
    pub bytes: u64,
    pub last_frame: Option<SystemTime>,
    /// The first close frame seen in this direction.
    pub close: Option<CloseInfo>,
    pub violations: u64,
}

impl DirStats {
    pub fn op(&self, kind: OpKind) -> &OpCount {
        &self.by_opcode[kind as usize]
    }

    pub fn frames(&self) -> u64 {
        self.by_opcode.iter().map(|c| c.frames).sum()
    }
}

/// Both directions of a tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelStats {
    pub client_to_backend: DirStats,
    pub backend_to_client: DirStats,
}

impl TunnelStats {
    pub fn dir(&self, dir: Dir) -> &DirStats {
        match dir {
            Dir::ClientToBackend => &self.client_to_backend,
            Dir::BackendToClient => &self.backend_to_client,
        }
    }
}

/// A summary of one frame, with a short unmasked payload preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSample {
    /// Per tunnel and direction, increasing from 0; gaps mean samples were not kept.
    pub seq: u64,
    pub at: SystemTime,
    pub dir: Dir,
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (RSV1 = 0b100: permessage-deflate).
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    /// Payload length announced by the header.
    pub len: u64,
    /// The first bytes of the payload, unmasked.
    pub preview: Vec<u8>,
    /// Sent by the proxy on an operator's request (inject), not by the peer.
    pub injected: bool,
}

/// A breach of RFC 6455 seen in the relayed stream. The tunnel goes on unless the
/// proxy runs in strict mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    ReservedOpcode(u8),
    /// A client frame without a mask.
    UnmaskedClientFrame,
    /// A server frame with a mask.
    MaskedServerFrame,
    /// A control frame with a payload over 125 bytes.
    OversizeControlFrame(u64),
    /// A control frame without FIN.
    FragmentedControlFrame,
    /// A 64-bit length with the most significant bit set.
    LengthTopBitSet,
    /// A continuation frame with no message in progress, or a new data frame inside one.
    BadContinuation,
    /// A close payload of one byte, or with a code that may not be sent.
    BadClosePayload,
    /// RSV bits set that no negotiated extension explains.
    ReservedBits(u8),
    /// A text message (not compressed) whose payload is not valid UTF-8, including
    /// one that ends inside a multi-byte sequence.
    InvalidUtf8,
}

impl Violation {
    /// The Close status a strict proxy sends for it: 1007 (invalid frame payload
    /// data) for bad UTF-8, 1002 (protocol error) for everything else.
    pub fn close_code(&self) -> u16 {
        match self {
            Violation::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            Violation::UnmaskedClientFrame => f.write_str("unmasked client frame"),
            Violation::MaskedServerFrame => f.write_str("masked server frame"),
            Violation::OversizeControlFrame(n) => write!(f, "control frame of {n} bytes"),
            Violation::FragmentedControlFrame => f.write_str("fragmented control frame"),
            Violation::LengthTopBitSet => f.write_str("64-bit length with top bit set"),
            Violation::BadContinuation => f.write_str("unexpected continuation"),
            Violation::BadClosePayload => f.write_str("malformed close payload"),
            Violation::ReservedBits(b) => write!(f, "reserved bits {b:#05b}"),
            Violation::InvalidUtf8 => f.write_str("invalid UTF-8 in a text message"),
        }
    }
}

/// Admin state of a backend: what operators chose (not health).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    Active,
    /// No new tunnels; existing ones run on.
    Draining,
    /// Was draining and its last tunnel has ended.
    Drained,
    /// Takes no tunnels until enabled (after a kill, or disabled by hand).
    Disabled,
}

impl std::fmt::Display for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AdminState::Active => "active",
            AdminState::Draining => "draining",
            AdminState::Drained => "drained",
            AdminState::Disabled => "disabled",
        })
    }
}

/// Health as judged by passive checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Failed `max_fails` times within `fail_timeout`; retried after it.
    Down,
}

/// A backend as the snapshot and state events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    pub id: BackendId,
    pub weight: u32,
    pub backup: bool,
    /// The `name:port` its address was resolved from, for a backend found by DNS.
    pub via: Option<String>,
    pub admin: AdminState,
    pub health: Health,
    pub active_tunnels: u64,
    pub total_tunnels: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// The latest active health check, when the pool has them.
    pub check: Option<CheckResult>,
    /// A paced close of this backend's tunnels, waiting for its start or running.
    pub closing: Option<PacedClose>,
    /// Grows with every state event of this backend. Events from different event
    /// loops can arrive out of order: apply one only if its version is newer than
    /// the one held (a snapshot's is that of the last event before it).
    pub version: u64,
}

/// A live tunnel as the snapshot describes it.
#[derive(Debug, Clone)]
pub struct TunnelInfo {
    pub id: TunnelId,
    pub opened: SystemTime,
    pub client: SocketAddr,
    pub listener: Arc<str>,
    pub route: Arc<str>,
    pub path: String,
    pub backend: Option<BackendId>,
    pub handshake: Option<Handshake>,
    pub stats: TunnelStats,
    pub samples: Vec<FrameSample>,
    /// Silence after which the tunnel will be closed; None when never.
    pub idle_timeout: Option<Duration>,
    /// The directions an operator holds.
    pub held: Vec<HoldState>,
    /// Silent long enough that its relay gave up its task: it waits as a small
    /// entry in its event loop's own poll set until a byte, a timer or a command.
    pub parked: bool,
    /// The proxy it runs on, when an observer follows several (`top`).
    pub instance: Option<Arc<str>>,
}

/// The upgrade handshake as it crossed the proxy.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The request as the client sent it.
    pub request_in: Headers,
    /// The request as the backend received it.
    pub request_out: Headers,
    /// The backend's 101 response headers.
    pub response: Headers,
    pub subprotocol: Option<String>,
    pub extensions: Option<String>,
    /// The client came over HTTP/2 (an extended CONNECT, RFC 8441), not HTTP/1.1.
    pub h2: bool,
}

/// State of the whole proxy, for late or lagging subscribers.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub listeners: Vec<ListenerInfo>,
    pub backends: Vec<BackendInfo>,
    pub tunnels: Vec<TunnelInfo>,
    pub total_tunnels: u64,
    pub started: Option<SystemTime>,
    /// Backend names and what they resolved to.
    pub resolutions: Vec<Resolution>,
    /// The instances followed, for an observer of several (`top`).
    pub fleet: Option<Fleet>,
}

/// What decides whether the proxy should be sent clients (`GET /readyz`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    pub shutting_down: bool,
    pub backends: Vec<BackendInfo>,
}

/// A bound listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub tls: bool,
}

/// Why a handshake did not become a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status sent to the client (502, 503, 504, or the backend's own).
    pub status: u16,
    pub reason: String,
}

/// Everything the core tells its observers.
#[derive(Debug, Clone)]
pub enum Event {
    /// A client asked for an upgrade.
    TunnelOpened {
        id: TunnelId,
        at: SystemTime,
        client: SocketAddr,
        listener: Arc<str>,
        route: Arc<str>,
        path: String,
        /// Silence after which the tunnel will be closed; None when never.
        idle_timeout: Option<Duration>,
        /// The proxy it runs on, when an observer follows several (`top`).
        instance: Option<Arc<str>>,
    },
    BackendChosen {
        id: TunnelId,
        backend: BackendId,
    },
    /// A direction of a tunnel was held or released by an operator, or what waits
    /// behind a hold changed (`state` None: released).
    Hold {
        id: TunnelId,
        dir: Dir,
        state: Option<HoldState>,
    },
    /// A silent tunnel's relay gave up its task (`parked`), or took it up again
    /// (a byte, a timer or a command came).
    Parked {
        id: TunnelId,
        parked: bool,
    },
    /// The backend answered 101 and the tunnel is relaying.
    Handshake {
        id: TunnelId,
        handshake: Handshake,
    },
    /// The handshake failed; no tunnel was made.
    Refused {
        id: TunnelId,
        refusal: Refusal,
    },
    /// Counters of a tunnel, at most ~4 per second while traffic flows.
    FrameStats {
        id: TunnelId,
        stats: TunnelStats,
    },
    /// Frames seen since the last batch (not necessarily all of them).
    FrameSamples {
        id: TunnelId,
        samples: Vec<FrameSample>,
    },
    Violation {
        id: TunnelId,
        dir: Dir,
        violation: Violation,
    },
    TunnelClosed {
        id: TunnelId,
        /// Close code of the first close frame, if any.
        code: Option<u16>,
        reason: String,
        side: Side,
        duration: Duration,
        stats: TunnelStats,
        /// The I/O error it ended on (a reset, a TLS failure), if any.
        error: Option<String>,
    },
    BackendState(BackendInfo),
    /// A backend name resolved to another set of addresses (backends joined or
    /// left its pool), or its lookup failed (the last good set is kept).
    Resolved(Resolution),
    /// The config file was re-read and applied.
    ConfigReloaded(ConfigDiff),
    /// What a reload would change now, or why it would be refused (asked for with
    /// `PreviewReload`).
    ReloadPreview(Result<ConfigDiff, String>),
    /// A plain (non-upgrade) HTTP request was proxied.
    HttpRequest {
        client: SocketAddr,
        method: String,
        path: String,
        status: u16,
        backend: Option<BackendId>,
        duration: Duration,
    },
    /// The instances an observer follows changed (`top`; never from a proxy).
    Fleet(Fleet),
    /// What a command sent to every followed instance did on each (`top`).
    FleetOutcome(FleetOutcome),
}
