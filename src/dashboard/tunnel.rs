//! One tunnel (or a handshake still in progress) as the dashboard keeps it: its
//! identity and handshake, counters, recent frames and message rate.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::rates::MsgRate;
use super::state::TAIL_CAP;
use crate::event::{
    BackendId, Dir, FrameSample, Handshake, TunnelId, TunnelInfo, TunnelStats, Violation,
};

/// A tunnel (or a handshake still in progress) as the dashboard shows it.
#[derive(Debug, Clone)]
pub struct Tunnel {
    pub id: TunnelId,
    pub opened: SystemTime,
    pub client: SocketAddr,
    pub listener: Arc<str>,
    pub route: Arc<str>,
    pub path: String,
    pub backend: Option<BackendId>,
    /// `None` while the handshake is in progress.
    pub handshake: Option<Handshake>,
    pub stats: TunnelStats,
    /// The most recent frame samples, oldest first.
    pub tail: VecDeque<FrameSample>,
    /// Samples ever received, kept or not.
    pub samples_seen: u64,
    pub violations: VecDeque<(Dir, Violation)>,
    pub violation_count: u64,
    pub(super) rate: MsgRate,
    /// Highest sample `seq` kept per direction (client→backend, backend→client).
    pub(super) last_seq: [Option<u64>; 2],
    /// Silence after which the proxy closes the tunnel; None when never.
    pub idle_timeout: Option<std::time::Duration>,
    /// The directions an operator holds.
    pub held: Vec<crate::event::HoldState>,
    /// Silent, its relay task given up until a byte, a timer or a command.
    pub parked: bool,
    /// The proxy it runs on (`tunnelscope top` following several).
    pub instance: Option<std::sync::Arc<str>>,
}

impl Tunnel {
    pub(super) fn opened(id: TunnelId, at: SystemTime, client: SocketAddr) -> Self {
        Self {
            id,
            opened: at,
            client,
            listener: "".into(),
            route: "".into(),
            path: String::new(),
            backend: None,
            handshake: None,
            stats: TunnelStats::default(),
            tail: VecDeque::new(),
            samples_seen: 0,
            violations: VecDeque::new(),
            violation_count: 0,
            rate: MsgRate::starting(at, 0),
            last_seq: [None, None],
            idle_timeout: None,
            held: Vec::new(),
            parked: false,
            instance: None,
        }
    }

    /// The tunnel as the proxy describes it, for exports.
    pub fn info(&self) -> TunnelInfo {
        TunnelInfo {
            id: self.id,
            opened: self.opened,
            client: self.client,
            listener: self.listener.clone(),
            route: self.route.clone(),
            path: self.path.clone(),
            backend: self.backend.clone(),
            handshake: self.handshake.clone(),
            stats: self.stats.clone(),
            samples: self.tail.iter().cloned().collect(),
            idle_timeout: self.idle_timeout,
            held: self.held.clone(),
            parked: self.parked,
            instance: self.instance.clone(),
        }
    }

    pub(super) fn from_info(info: &TunnelInfo, now: SystemTime) -> Self {
        let mut t = Self::opened(info.id, info.opened, info.client);
        t.listener = info.listener.clone();
        t.route = info.route.clone();
        t.path = info.path.clone();
        t.backend = info.backend.clone();
        t.handshake = info.handshake.clone();
        t.idle_timeout = info.idle_timeout;
        t.parked = info.parked;
        t.held = info.held.clone();
        t.instance = info.instance.clone();
        t.rate = MsgRate::starting(now, messages(&info.stats));
        t.stats = info.stats.clone();
        t.push_samples(&info.samples);
        t
    }

    /// Messages per second in both directions, as of `now`.
    pub fn msgs_per_sec(&self, now: SystemTime) -> f64 {
        self.rate.per_sec(now)
    }

    /// When the last frame crossed, either way.
    pub fn last_frame(&self) -> Option<SystemTime> {
        let a = self.stats.client_to_backend.last_frame;
        let b = self.stats.backend_to_client.last_frame;
        a.max(b)
    }

    /// How long the tunnel has been silent and how long until the idle timeout
    /// cuts it, once it is up and when a timeout applies. Silence is counted from
    /// the last frame either way (or from the opening, before any).
    pub fn idle_cut(&self, now: SystemTime) -> Option<(std::time::Duration, std::time::Duration)> {
        let timeout = self.idle_timeout?;
        self.handshake.as_ref()?;
        let since = self.last_frame().unwrap_or(self.opened);
        let idle = now.duration_since(since).unwrap_or_default();
        Some((idle, timeout.saturating_sub(idle)))
    }

    pub fn subprotocol(&self) -> Option<&str> {
        self.handshake.as_ref()?.subprotocol.as_deref()
    }

    pub fn extensions(&self) -> Option<&str> {
        self.handshake.as_ref()?.extensions.as_deref()
    }

    pub(super) fn push_samples(&mut self, samples: &[FrameSample]) {
        for s in samples {
            // A snapshot and the events around it can carry the same sample twice;
            // `seq` only grows per direction, so anything not newer is a repeat.
            let last = &mut self.last_seq[s.dir as usize];
            if last.is_some_and(|l| s.seq <= l) {
                continue;
            }
            *last = Some(s.seq);
            if self.tail.len() == TAIL_CAP {
                self.tail.pop_front();
            }
            self.tail.push_back(s.clone());
            self.samples_seen += 1;
        }
    }
}

pub(super) fn messages(stats: &TunnelStats) -> u64 {
    stats.client_to_backend.messages + stats.backend_to_client.messages
}
