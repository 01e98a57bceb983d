//! What the rest of the proxy can see of a running tunnel: identity, handshake,
//! the two frame scanners (counters, samples) and the close-request mailbox. The
//! relay task ([`super::run`]) owns the sockets; everything else reads this.

use crate::sync::lock;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use tokio::sync::Notify;

use crate::event::{
    BackendId, Dir, Flow, FrameSample, Handshake, TunnelId, TunnelInfo, TunnelStats,
};
use crate::proxy::frame::LazyScanner;

/// What [`TunnelShared::messages_since`] gives: the messages, how many were let go
/// per direction, and where to continue.
pub type Since = (Vec<crate::event::CapturedMessage>, [u64; 2], [u64; 2]);

/// A request to close a tunnel on purpose.
#[derive(Debug, Clone)]
pub struct CloseRequest {
    pub code: u16,
    pub reason: String,
    /// The close must be over by then, even if that leaves less than `close_grace`
    /// (shutdown's closes fit inside `shutdown_grace`).
    pub by: Option<Instant>,
    /// The close begins no earlier than this (shutdown paces its closes).
    pub not_before: Option<Instant>,
}

/// What the rest of the proxy can see of a running tunnel. The relay task owns the
/// sockets; this holds the counters (behind short std mutexes, locked once per read,
/// never across an await) and the close request mailbox.
pub struct TunnelShared {
    pub id: TunnelId,
    pub opened: SystemTime,
    pub client: std::net::SocketAddr,
    pub listener: std::sync::Arc<str>,
    pub route: std::sync::Arc<str>,
    pub path: String,
    pub backend: BackendId,
    pub handshake: Handshake,
    /// Made at each direction's first byte (see [`LazyScanner`]).
    pub(super) c2b: Mutex<LazyScanner>,
    pub(super) b2c: Mutex<LazyScanner>,
    /// Boxed: every tunnel holds the slot, few ever fill it.
    pub(super) close: Mutex<Option<Box<CloseRequest>>>,
    /// Set by the first close request (the mailbox empties once the relay takes it).
    closing: std::sync::atomic::AtomicBool,
    pub(super) wake: Notify,
    /// The idle timeout this tunnel runs with, in milliseconds (0 = none), for
    /// observers.
    idle_ms: std::sync::atomic::AtomicU64,
    /// Injections waiting and holds.
    pub(super) controls: super::inject::Controls,
    /// How it ended, once it has.
    ending: std::sync::OnceLock<Box<super::Ending>>,
    /// Where wakes go while the tunnel waits in its event loop's lot.
    pub parked: crate::proxy::park::WakeSlot,
}

impl TunnelShared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: TunnelId,
        opened: SystemTime,
        client: std::net::SocketAddr,
        listener: std::sync::Arc<str>,
        route: std::sync::Arc<str>,
        path: String,
        backend: BackendId,
        handshake: Handshake,
        ring: usize,
        preview: usize,
        allowed_rsv: u8,
    ) -> Self {
        let c2b = LazyScanner::new(Dir::ClientToBackend, ring, preview, allowed_rsv);
        let b2c = LazyScanner::new(Dir::BackendToClient, ring, preview, allowed_rsv);
        Self {
            id,
            opened,
            client,
            listener,
            route,
            path,
            backend,
            handshake,
            c2b: Mutex::new(c2b),
            b2c: Mutex::new(b2c),
            close: Mutex::new(None),
            closing: std::sync::atomic::AtomicBool::new(false),
            wake: Notify::new(),
            idle_ms: std::sync::atomic::AtomicU64::new(0),
            controls: Default::default(),
            ending: std::sync::OnceLock::new(),
            parked: Default::default(),
        }
    }

    /// Limits what each side may send (see `Scanner::set_limits`); before the
    /// relay starts.
    pub fn set_message_limits(&self, max_bytes: u64, rate: u32) {
        lock(&self.c2b).set_limits(max_bytes, rate);
        lock(&self.b2c).set_limits(max_bytes, rate);
    }

    pub(super) fn scanner(&self, dir: Dir) -> &Mutex<LazyScanner> {
        match dir {
            Dir::ClientToBackend => &self.c2b,
            Dir::BackendToClient => &self.b2c,
        }
    }

    /// Asks the relay to close at the next frame boundary with this Close code.
    /// The first request wins.
    pub fn request_close(&self, code: u16, reason: &str) {
        self.request_close_by(code, reason, None);
    }

    /// As [`request_close`](Self::request_close), with the close over by `by`.
    /// The first request wins, but a later deadline never extends an earlier one.
    pub fn request_close_by(&self, code: u16, reason: &str, by: Option<Instant>) {
        self.request_close_at(code, reason, None, by);
    }

    /// As [`request_close_by`](Self::request_close_by), beginning no earlier than
    /// `not_before`.
    pub fn request_close_at(
        &self,
        code: u16,
        reason: &str,
        not_before: Option<Instant>,
        by: Option<Instant>,
    ) {
        self.closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut slot = lock(&self.close);
        match slot.as_mut() {
            None => {
                *slot = Some(Box::new(CloseRequest {
                    code,
                    reason: reason.to_string(),
                    by,
                    not_before,
                }))
            }
            Some(req) => {
                req.by = match (req.by, by) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
        drop(slot);
        self.notify();
    }

    /// Tells the relay something waits for it (after recording what): its task if
    /// it runs, its lot if it is parked.
    pub(super) fn notify(&self) {
        self.wake.notify_one();
        self.parked.wake();
    }

    /// Whether something waits for the relay: a close request, an injection, a
    /// hold.
    pub fn needs_relay(&self) -> bool {
        self.is_closing() || self.controls.waiting()
    }

    /// Whether the tunnel has been asked to close.
    pub fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn stats(&self) -> TunnelStats {
        TunnelStats {
            client_to_backend: lock(&self.c2b).stats().clone(),
            backend_to_client: lock(&self.b2c).stats().clone(),
        }
    }

    /// Frames, messages and bytes of one direction, read in place.
    pub fn flow(&self, dir: Dir) -> Flow {
        let mut f = Flow::default();
        f.add(lock(self.scanner(dir)).stats());
        f
    }

    /// Bytes seen so far in both directions and the next sample sequence numbers:
    /// cheap change detection for the stats publisher.
    pub fn progress(&self) -> (u64, u64, u64) {
        let c = lock(&self.c2b);
        let b = lock(&self.b2c);
        (
            c.stats().bytes + b.stats().bytes,
            c.next_seq(),
            b.next_seq(),
        )
    }

    /// Kept frame samples of one direction with `seq >= from`.
    pub fn samples_since(&self, dir: Dir, from: u64, out: &mut Vec<FrameSample>) {
        let s = lock(self.scanner(dir));
        out.extend(s.samples_since(from));
    }

    /// The whole messages captured, both directions, in the order they began.
    pub fn messages(&self) -> Vec<crate::event::CapturedMessage> {
        let mut out = Vec::new();
        lock(&self.c2b).captured(&mut out);
        lock(&self.b2c).captured(&mut out);
        out.sort_by_key(|m| m.at);
        out
    }

    /// Records how the tunnel ended (once).
    pub fn set_ended(&self, ending: &super::Ending) {
        let _ = self.ending.set(Box::new(ending.clone()));
    }

    /// How it ended, once it has.
    pub fn ended(&self) -> Option<super::Ending> {
        self.ending.get().map(|e| (**e).clone())
    }

    /// The captured messages numbered at or after `next` (client→backend,
    /// backend→client), per direction how many numbered since then capture has let
    /// go, and the numbers to ask from next time.
    pub fn messages_since(&self, next: [u64; 2]) -> Since {
        let mut out = Vec::new();
        let mut gaps = [0, 0];
        let mut after = next;
        for (i, scanner) in [&self.c2b, &self.b2c].into_iter().enumerate() {
            let mut these = Vec::new();
            let s = lock(scanner);
            s.captured_since(next[i], &mut these);
            // Numbered since `next` but no longer kept: evicted before written.
            let numbered = s.captured_next().saturating_sub(next[i]);
            after[i] = s.captured_next().max(next[i]);
            drop(s);
            gaps[i] = numbered.saturating_sub(these.len() as u64);
            out.extend(these);
        }
        (out, gaps, after)
    }

    /// The captured messages containing `needle` (ASCII-lowercased), both ways.
    pub fn search(&self, needle: &[u8], out: &mut Vec<crate::event::SearchHit>) {
        lock(&self.c2b).search(self.id, needle, out);
        lock(&self.b2c).search(self.id, needle, out);
    }

    pub fn info(&self) -> TunnelInfo {
        let mut samples = Vec::new();
        self.samples_since(Dir::ClientToBackend, 0, &mut samples);
        self.samples_since(Dir::BackendToClient, 0, &mut samples);
        samples.sort_by_key(|s| s.at);
        TunnelInfo {
            id: self.id,
            opened: self.opened,
            client: self.client,
            listener: self.listener.clone(),
            route: self.route.clone(),
            path: self.path.clone(),
            backend: Some(self.backend.clone()),
            handshake: Some(self.handshake.clone()),
            stats: self.stats(),
            samples,
            idle_timeout: self.idle_timeout(),
            held: self.holds(),
            parked: self.parked.is_parked(),
            instance: None,
        }
    }

    /// Records the idle timeout the relay applies, for observers.
    pub fn set_idle_timeout(&self, idle: Option<std::time::Duration>) {
        let ms = idle.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.idle_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn idle_timeout(&self) -> Option<std::time::Duration> {
        match self.idle_ms.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }
}
