//! Proxy-originated pings: a peer that has sent nothing for `interval` gets a Ping
//! (at a frame boundary of the stream toward it, masked toward the backend); if it
//! sends nothing at all within `timeout`, it is taken for dead. Its Pong is
//! swallowed, so the other side never sees it; the pings the endpoints send each
//! other pass untouched (ours carry a payload only we use).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::relay::{Chunk, Ctx, Half, Relay};
use crate::event::{Dir, Side};
use crate::proxy::frame::Scanner;
use crate::sync::lock;
use crate::ws::{self, opcode};

/// Payload of the proxy's pings: `tunnelscope ` and eight hex digits.
pub(super) const PING_LEN: usize = 20;
pub(super) type PingPayload = [u8; PING_LEN];

/// How often an injection is retried while the stream toward the peer is mid-frame.
const RETRY: Duration = Duration::from_millis(50);

/// Who gets pings, how often, and how long they have to answer.
#[derive(Debug, Clone, Copy)]
pub struct PingSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub client: bool,
    pub backend: bool,
}

/// The pings of one tunnel.
pub(super) struct Pinger {
    settings: PingSettings,
    /// When the ping now awaiting an answer was queued, per side (client, backend).
    sent: [Option<Instant>; 2],
    seq: u32,
}

impl Pinger {
    /// `seq`: the last ping's number (0 for a new tunnel; a resumed one goes on).
    pub(super) fn new(settings: PingSettings, seq: u32) -> Self {
        Self {
            settings,
            sent: [None, None],
            seq,
        }
    }

    /// The last ping's number.
    pub(super) fn seq(&self) -> u32 {
        self.seq
    }

    /// When the first check is due.
    pub(super) fn first_due(&self, started: Instant) -> Instant {
        later(started, self.settings.interval)
    }

    /// Sends the pings that are due, and retires those answered. Returns when to
    /// look again, or the side that missed its ping.
    pub(super) fn tick(
        &mut self,
        relay: &mut Relay,
        ctx: &mut Ctx<'_>,
        now: Instant,
    ) -> Result<Instant, Side> {
        let mut next = later(now, self.settings.interval);
        // A tunnel that is closing pings no one.
        if ctx.first_close.is_some() || ctx.policy.is_some() {
            return Ok(later(now, Duration::from_secs(86_400)));
        }
        for side in [Side::Client, Side::Backend] {
            let (on, i) = match side {
                Side::Client => (self.settings.client, 0),
                _ => (self.settings.backend, 1),
            };
            if !on {
                continue;
            }
            // The half reading from this peer, and the one writing to it.
            let (reader, writer) = match side {
                Side::Client => (&relay.up, &mut relay.down),
                _ => (&relay.down, &mut relay.up),
            };
            let rd = dir_index(reader.dir);
            // Not reading from this peer now (what it sent waits for the other side
            // to take it, or an operator holds it): its answer could not be seen, so
            // it is not asked; a stuck reader on the other side is not this peer's
            // fault.
            if reader.pos < reader.end || ctx.shared.held(reader.dir) {
                self.sent[i] = None;
                next = next.min(now + RETRY);
                continue;
            }
            if let Some(sent) = self.sent[i] {
                // Answered by the Pong, or by anything it sent since.
                if ctx.pong[rd].is_none() || reader.last_read >= sent {
                    self.sent[i] = None;
                } else if now >= later(sent, self.settings.timeout) {
                    return Err(side);
                } else {
                    next = next.min(later(sent, self.settings.timeout));
                    continue;
                }
            }
            let due = later(reader.last_read, self.settings.interval);
            if now < due {
                next = next.min(due);
                continue;
            }
            if !can_inject(writer, ctx, false) {
                next = next.min(now + RETRY);
                continue;
            }
            self.seq = self.seq.wrapping_add(1);
            let payload = payload(self.seq);
            let mask = (side == Side::Backend).then(ws::mask_key);
            let frame = ws::control_frame(opcode::PING, &payload, mask);
            writer.end = frame.len();
            writer.pos = 0;
            writer.chunk = Some(Chunk::Pre(Bytes::from(frame)));
            ctx.pong[rd] = Some(payload);
            self.sent[i] = Some(now);
            next = next.min(later(now, self.settings.timeout));
        }
        Ok(next)
    }
}

/// `at + d`, or far ahead when that would not fit (a huge configured interval).
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(86_400 * 365))
}

fn payload(seq: u32) -> PingPayload {
    let mut p = [0u8; PING_LEN];
    p[..12].copy_from_slice(b"tunnelscope ");
    p[12..].copy_from_slice(format!("{seq:08x}").as_bytes());
    p
}

pub(super) fn dir_index(dir: Dir) -> usize {
    match dir {
        Dir::ClientToBackend => 0,
        Dir::BackendToClient => 1,
    }
}

/// Whether a frame of the proxy's own fits into the stream `writer` writes now:
/// nothing of the peer's is pending there, it is between frames (between messages
/// for a `data` frame), and no Close has gone that way (nor is the tunnel closing).
pub(super) fn can_inject(writer: &Half, ctx: &Ctx<'_>, data: bool) -> bool {
    if writer.chunk.is_some() || writer.pos < writer.end || writer.shut || writer.stopped {
        return false;
    }
    if writer.withheld.is_some() || ctx.first_close.is_some() || ctx.policy.is_some() {
        return false;
    }
    let s = lock(ctx.shared.scanner(writer.dir));
    let boundary = if data {
        s.between_messages()
    } else {
        s.at_boundary()
    };
    boundary && s.stats().close.is_none()
}

/// Where the Pong answering `want` lies in `data`, if it lies wholly within it: a
/// frame that begins in `data` (the scanner says where the frame in progress ends)
/// with FIN, opcode Pong and exactly our payload. A Pong split across two reads is
/// not found and passes on, as an unsolicited Pong the other side ignores.
pub(super) fn find_pong(
    scanner: &Scanner,
    data: &[u8],
    want: &PingPayload,
) -> Option<(usize, usize)> {
    let mut p = scanner.frame_rest(data)?;
    loop {
        let rest = &data[p..];
        if rest.len() < 2 {
            return None;
        }
        let hl = ws::header_len(rest[1]);
        if rest.len() < hl {
            return None;
        }
        let len = usize::try_from(ws::payload_len(&rest[..hl])).ok()?;
        let end = p.checked_add(hl)?.checked_add(len)?;
        if end > data.len() {
            return None;
        }
        if rest[0] == 0x80 | opcode::PONG && len == PING_LEN {
            let mask = if rest[1] & 0x80 != 0 {
                rest[hl - 4..hl].try_into().expect("a 4-byte key")
            } else {
                [0; 4]
            };
            if ws::unmasked(mask, 0, &rest[hl..hl + len]).eq(want.iter().copied()) {
                return Some((p, end));
            }
        }
        p = end;
    }
}
