//! An operator talking into a tunnel: messages injected toward one side, and holds
//! that stop relaying what one side sends.
//!
//! Injections queue on [`TunnelShared`] and the relay task places each one whole at
//! a frame boundary between the peer's messages (between frames for a Ping), masked
//! toward the backend, uncompressed (RSV1 clear is valid under permessage-deflate),
//! and notes it in that direction's tail and capture marked as injected.
//!
//! A hold makes the direction stop reading its side (the relay checks one atomic per
//! read), so what that side sends waits in the kernel's buffers and TCP pushes back:
//! the proxy holds no more memory for it. While held, the relay looks at what waits
//! (a peek, no read) a few times a second and publishes it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;

use super::ping::can_inject;
use super::relay::{Chunk, Ctx, Relay};
use super::TunnelShared;
use crate::control::InjectKind;
use crate::event::{Dir, Event, HoldState, Side};
use crate::proxy::stream::Stream;
use crate::sync::lock;
use crate::ws;

/// Injections that may wait for a boundary at once, per tunnel.
const MAX_PENDING: usize = 16;
/// How soon placing an injection is tried again when the stream is mid-message.
pub(super) const RETRY: Duration = Duration::from_millis(20);
/// How often a held direction's waiting bytes are looked at.
pub(super) const LOOK: Duration = Duration::from_millis(250);
/// How far ahead a look sees.
const LOOK_BYTES: usize = 64 * 1024;

/// A message waiting to be placed.
pub(super) struct Outgoing {
    to: Side,
    kind: InjectKind,
    payload: Vec<u8>,
}

/// The operator's side of a tunnel: injections waiting and holds.
#[derive(Default)]
pub(super) struct Controls {
    /// Boxed while any wait: an empty queue would be 32 bytes in every tunnel, and
    /// this pointer keeps the shared state inside the allocator's 512-byte class.
    #[allow(clippy::box_collection)]
    pending: Mutex<Option<Box<VecDeque<Outgoing>>>>,
    /// By [`super::ping::dir_index`].
    held: [AtomicBool; 2],
    /// What observers see of each hold (boxed: held in every tunnel, used by few).
    holds: Mutex<Option<Box<Holds>>>,
}

impl Controls {
    /// Whether an injection waits or a direction is held.
    pub(super) fn waiting(&self) -> bool {
        self.held.iter().any(|h| h.load(Ordering::Relaxed))
            || lock(&self.pending).as_ref().is_some_and(|p| !p.is_empty())
    }
}

/// Each direction's hold, by [`super::ping::dir_index`].
pub(super) type Holds = [Option<HoldState>; 2];

impl TunnelShared {
    /// Queues a message toward `to`; the relay sends it at the next boundary.
    pub fn inject(&self, to: Side, kind: InjectKind, payload: Vec<u8>) -> Result<(), String> {
        kind.check(to, &payload)?;
        if self.is_closing() {
            return Err("the tunnel is closing".into());
        }
        let mut guard = lock(&self.controls.pending);
        let pending = guard.get_or_insert_with(Default::default);
        if pending.len() >= MAX_PENDING {
            return Err(format!(
                "{MAX_PENDING} injected messages already wait for a frame boundary"
            ));
        }
        pending.push_back(Outgoing { to, kind, payload });
        drop(guard);
        self.notify();
        Ok(())
    }

    /// Holds (`on`) or releases what `from` sends.
    pub fn hold(&self, from: Side, on: bool) -> Result<(), String> {
        let dir = match from {
            Side::Client => Dir::ClientToBackend,
            Side::Backend => Dir::BackendToClient,
            Side::Proxy => return Err("hold the client's side or the backend's".into()),
        };
        let i = super::ping::dir_index(dir);
        self.controls.held[i].store(on, Ordering::Relaxed);
        let mut guard = lock(&self.controls.holds);
        let holds = guard.get_or_insert_with(Default::default);
        holds[i] = match (on, holds[i].take()) {
            (true, Some(kept)) => Some(kept),
            (true, None) => Some(HoldState {
                dir,
                since: SystemTime::now(),
                waiting_bytes: Some(0),
                waiting_frames: Some(0),
                at_least: false,
                encrypted: false,
            }),
            (false, _) => None,
        };
        drop(guard);
        self.notify();
        Ok(())
    }

    /// Whether what flows in `dir` is held now.
    pub fn held(&self, dir: Dir) -> bool {
        self.controls.held[super::ping::dir_index(dir)].load(Ordering::Relaxed)
    }

    /// The holds in place.
    pub fn holds(&self) -> Vec<HoldState> {
        lock(&self.controls.holds)
            .iter()
            .flat_map(|h| h.iter().flatten().cloned())
            .collect()
    }
}

/// Places as many waiting injections as fit now, in order per direction (one
/// toward the client does not wait behind one toward the backend); returns when to
/// try again, if any are left. Those that can never go (the way toward their side
/// is closing or shut) are dropped, and the log says so.
pub(super) fn place(relay: &mut Relay, ctx: &mut Ctx<'_>) -> Option<Instant> {
    let mut guard = lock(&ctx.shared.controls.pending);
    let pending = guard.as_mut()?;
    // Per side written to: something earlier toward it waits (or was just placed).
    let mut busy = [false; 2];
    let mut i = 0;
    while i < pending.len() {
        let to = pending[i].to;
        let k = usize::from(to == Side::Backend);
        let writer = match to {
            Side::Client => &mut relay.down,
            _ => &mut relay.up,
        };
        if writer.shut
            || writer.stopped
            || writer.withheld.is_some()
            || ctx.first_close.is_some()
            || ctx.policy.is_some()
        {
            let dropped = pending.remove(i).expect("looked at it");
            tracing::warn!(
                tunnel = ctx.shared.id,
                to = %dropped.to,
                "an injected {} was not sent: the tunnel is closing",
                dropped.kind.name()
            );
            continue;
        }
        let data = pending[i].kind != InjectKind::Ping;
        if busy[k] || !can_inject(writer, ctx, data) {
            busy[k] = true;
            i += 1;
            continue;
        }
        let out = pending.remove(i).expect("looked at it");
        busy[k] = true;
        let masked = out.to == Side::Backend;
        let frame = ws::frame(out.kind.opcode(), &out.payload, masked.then(ws::mask_key));
        writer.pos = 0;
        writer.end = frame.len();
        writer.chunk = Some(Chunk::Pre(Bytes::from(frame)));
        let (at, wall) = ctx.anchor;
        let now = wall + Instant::now().saturating_duration_since(at);
        lock(ctx.shared.scanner(writer.dir)).made().note_injected(
            now,
            out.kind.opcode(),
            &out.payload,
            masked,
        );
    }
    if pending.is_empty() {
        *guard = None;
        return None;
    }
    Some(Instant::now() + RETRY)
}

/// Looks at what waits behind each hold and publishes what changed (a hold begun,
/// released, or more waiting). Returns whether any direction is still held.
pub(super) fn look(relay: &Relay, ctx: &Ctx<'_>, known: &mut Holds) -> bool {
    let shared = ctx.shared;
    let mut any = false;
    for (i, dir) in [Dir::ClientToBackend, Dir::BackendToClient]
        .into_iter()
        .enumerate()
    {
        let mut state = lock(&shared.controls.holds)
            .as_ref()
            .and_then(|h| h[i].clone());
        if let Some(s) = &mut state {
            any = true;
            let reader = match dir {
                Dir::ClientToBackend => &relay.client,
                Dir::BackendToClient => &relay.backend,
            };
            waiting(reader, lock(shared.scanner(dir)).made(), s);
            if let Some(kept) = lock(&shared.controls.holds)
                .as_mut()
                .and_then(|h| h[i].as_mut())
            {
                *kept = s.clone();
            }
        }
        if state != known[i] {
            known[i] = state.clone();
            let _ = ctx.bus.send(Event::Hold {
                id: shared.id,
                dir,
                state,
            });
        }
    }
    any
}

/// Fills in what waits unread on `reader` (a peek: nothing is taken off it).
fn waiting(reader: &Stream, scanner: &crate::proxy::frame::Scanner, s: &mut HoldState) {
    let (tcp, encrypted) = match reader {
        Stream::Plain(t) => (t, false),
        Stream::ServerTls(t) => (t.tcp(), true),
        Stream::ClientTls(t) => (t.tcp(), true),
        Stream::H2(_) => {
            s.waiting_bytes = None;
            s.waiting_frames = None;
            return;
        }
    };
    let mut buf = vec![0u8; LOOK_BYTES];
    let n = match tcp.peek(&mut buf).now_or_never() {
        Some(Ok(n)) => n,
        _ => 0,
    };
    s.waiting_bytes = Some(n as u64);
    s.at_least = n == LOOK_BYTES;
    s.encrypted = encrypted;
    s.waiting_frames = (!encrypted).then(|| whole_frames(scanner, &buf[..n]));
}

/// Whole frames in `data`, which continues the stream `scanner` has seen.
fn whole_frames(scanner: &crate::proxy::frame::Scanner, data: &[u8]) -> u64 {
    let Some(mut p) = scanner.frame_rest(data) else {
        return 0;
    };
    let mut frames = 0;
    while p < data.len() {
        let rest = &data[p..];
        if rest.len() < 2 || rest.len() < ws::header_len(rest[1]) {
            break;
        }
        let hl = ws::header_len(rest[1]);
        let Some(end) = usize::try_from(ws::payload_len(&rest[..hl]))
            .ok()
            .and_then(|len| (p + hl).checked_add(len))
            .filter(|end| *end <= data.len())
        else {
            break;
        };
        frames += 1;
        p = end;
    }
    frames
}
