//! Whole messages, as the inspector shows them: a [`Capture`] follows one direction
//! beside the scanner, reassembles fragmented data messages (control frames may come
//! between their fragments and are kept as messages of their own), unmasks their
//! payload up to a cap per message (longer ones are kept truncated and say so), and
//! keeps the latest in a ring within a byte budget, evicting the oldest first.
//!
//! Nothing is allocated until a frame is captured, and a message's buffer grows only
//! as its bytes arrive, so a silent tunnel holds nothing. A message in one frame, the
//! usual kind, goes straight into the store as its bytes pass; only fragmented
//! messages, longer ones than the cap and those inflated as they pass are assembled
//! beside it first. The bytes are kept as they travelled (compressed ones too,
//! marked): inflating is for whoever reads them.

mod inflate;
mod record;
mod store;

use std::time::SystemTime;

pub use self::inflate::deflate_resets;
use self::inflate::{Inflate, DEFLATE_TAIL};
use self::record::{Kept, Meta, COMPRESSED, INFLATED, INJECTED, TRUNCATED};
pub use self::store::Budget;
use self::store::Store;
use crate::event::{CapturedFrame, Dir, OpKind, MAX_FRAMES_KEPT};
use crate::ws::unmask_into;

/// The message being assembled; its buffers are reused for the next one.
#[derive(Debug, Default)]
struct Building {
    /// None between messages.
    meta: Option<Meta>,
    /// Its payload so far (unmasked), at most the cap.
    data: Vec<u8>,
    /// Its inflated payload so far (compressed messages), at most the cap.
    inflated: Vec<u8>,
    /// Masking key and payload offset of the frame flowing now (keys change per
    /// frame, offsets restart).
    mask: [u8; 4],
    pos: u64,
}

/// Buffer capacity a [`Building`] keeps between messages; a larger one is freed.
const RETAIN: usize = 1024;

impl Building {
    fn start(&mut self, frame: &CapturedFrame, kind: OpKind) {
        self.meta = Some(Meta::new(frame, kind));
        self.data.clear();
        self.inflated.clear();
    }

    /// Empties the buffers for the next message, freeing large ones.
    fn reset(&mut self) {
        for b in [&mut self.data, &mut self.inflated] {
            b.clear();
            if b.capacity() > RETAIN {
                *b = Vec::new();
            }
        }
    }
}

/// The captured messages of one direction.
///
/// Laid out for the relay's sake: what every message touches comes first, in the
/// first cache line (the store's own hot fields start at byte 32), so that a
/// captured message costs the relay one line of state besides the record written.
/// With many tunnels captured this state is out of cache by the time the
/// direction's next message comes, and each line more costs a wait on memory.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Capture {
    /// Where the payload of the frame flowing now goes.
    flow: Flow,
    /// A data message spanning fragments is being assembled in `data` (said here,
    /// in the first line, so a whole message in one frame need not look there).
    assembling: bool,
    /// A frame written in place ([`Flow::Direct`]): its masking key and payload
    /// offset.
    direct_mask: [u8; 4],
    direct_pos: u32,
    /// `cap`, where it fits in 32 bits: frames longer go the long way.
    direct_cap: u32,
    next_seq: u64,
    /// The time of the read being scanned, as a record keeps it (its frames share
    /// it: converted once per read, by [`Capture::expect`]).
    now_nanos: u64,
    store: Store,
    /// Payload bytes kept per message at most.
    cap: usize,
    dir: Dir,
    /// A data message spanning fragments.
    data: Building,
    /// A control frame (never fragmented; may sit between data fragments).
    control: Building,
    /// permessage-deflate: the messages are inflated as they pass.
    inflate: Option<Inflate>,
}

/// Which message the frame flowing now belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The data message assembled in [`Capture::data`].
    Data,
    /// The control frame assembled in [`Capture::control`].
    Control,
    /// A whole message in this one frame, written straight into the store (or, when
    /// it had no room, not kept).
    Direct,
}

/// Payload bytes reserved when a frame's header is read, at most.
const RESERVE_MAX: usize = 4096;

impl Capture {
    /// `inflate`: the messages are compressed with permessage-deflate; `Some(reset)`
    /// where `reset` says the context starts afresh with each message. `fresh`: no
    /// message has passed in this direction yet (else, with context takeover, the
    /// earlier context is missing and nothing can be inflated).
    pub fn new(dir: Dir, cap: usize, budget: usize, inflate: Option<bool>, fresh: bool) -> Self {
        // A record says how much it kept in 32 bits.
        let cap = cap.min(u32::MAX as usize);
        let inflate = inflate.map(|reset| Inflate {
            z: flate2::Decompress::new(false),
            reset,
            broken: (!fresh && !reset).then(|| {
                "capture began mid-tunnel: the earlier compression context is missing".to_string()
            }),
            scratch: Vec::new(),
            out: Vec::new(),
        });
        Self {
            inflate,
            dir,
            cap,
            direct_cap: u32::try_from(cap).unwrap_or(u32::MAX),
            store: Store::new(budget, cap),
            data: Building::default(),
            control: Building::default(),
            flow: Flow::Data,
            assembling: false,
            direct_mask: [0; 4],
            direct_pos: 0,
            next_seq: 0,
            now_nanos: 0,
        }
    }

    /// A frame begins (its header has been read), in a read announced with
    /// [`Capture::expect`] at the frame's time.
    pub fn begin(&mut self, frame: CapturedFrame, mask: [u8; 4]) {
        let kind = OpKind::from_opcode(frame.opcode);
        if self.begin_direct(&frame, kind, mask) {
            return;
        }
        let control = matches!(kind, OpKind::Close | OpKind::Ping | OpKind::Pong);
        self.flow = if control { Flow::Control } else { Flow::Data };
        let b = match kind {
            OpKind::Close | OpKind::Ping | OpKind::Pong => {
                self.control.start(&frame, kind);
                &mut self.control
            }
            OpKind::Text | OpKind::Binary => {
                self.data.start(&frame, kind);
                &mut self.data
            }
            // A continuation with no message open: its start came before capture.
            OpKind::Continuation | OpKind::Reserved => {
                if self.data.meta.is_none() {
                    self.data.start(&frame, OpKind::Continuation);
                }
                &mut self.data
            }
        };
        b.mask = mask;
        b.pos = 0;
        let Some(m) = &mut b.meta else {
            return;
        };
        if m.frames == 0 {
            // A small single-frame message's payload in one go; a large one grows
            // as its bytes arrive (a header alone reserves little).
            if frame.fin {
                let keep = usize::try_from(frame.len)
                    .unwrap_or(usize::MAX)
                    .min(self.cap);
                b.data.reserve(keep.min(RESERVE_MAX));
            }
        } else {
            let first = m.len;
            let e = m.extra();
            if e.more.is_empty() {
                e.first_len = first;
            }
            if e.more.len() + 1 < MAX_FRAMES_KEPT {
                e.more.push(frame);
            }
        }
        m.frames += 1;
        m.len += frame.len;
        self.assembling = self.data.meta.is_some();
    }

    /// A whole message in one frame, kept whole, and not inflated as it passes:
    /// opened in the store to be written there as its bytes pass. False when the
    /// frame is not one. One the store refuses (no room in any budget) is counted
    /// and not kept, as any refused message.
    fn begin_direct(&mut self, frame: &CapturedFrame, kind: OpKind, mask: [u8; 4]) -> bool {
        if !frame.fin || frame.len > u64::from(self.direct_cap) {
            return false;
        }
        let compressed = frame.rsv & 0b100 != 0;
        let lazy = match kind {
            OpKind::Text | OpKind::Binary if !compressed => false,
            // Without context takeover a whole message kept untruncated can be
            // inflated later, by whoever reads it: most never are.
            OpKind::Text | OpKind::Binary
                if self
                    .inflate
                    .as_ref()
                    .is_some_and(|i| i.reset && i.broken.is_none()) =>
            {
                true
            }
            OpKind::Close | OpKind::Ping | OpKind::Pong if !compressed => false,
            _ => return false,
        };
        if self.assembling && matches!(kind, OpKind::Text | OpKind::Binary) {
            // A new message: one left unfinished is dropped, as the long way does.
            self.data.meta = None;
            self.data.reset();
            self.assembling = false;
        }
        debug_assert_eq!(
            self.now_nanos,
            record::nanos(frame.at),
            "the read was announced (expect) with its time"
        );
        let header = record::single_frame_header(frame, kind, self.now_nanos, lazy);
        self.store.open(self.next_seq, &header, frame.len as usize);
        self.flow = Flow::Direct;
        self.direct_mask = mask;
        self.direct_pos = 0;
        true
    }

    /// A read of `wire` bytes, made at `now`, is about to be scanned: its frames'
    /// time is converted once, and the lines their records will take are asked for
    /// (see [`Store::expect`]).
    #[inline]
    pub fn expect(&mut self, wire: usize, now: SystemTime) {
        self.now_nanos = record::nanos(now);
        self.store.expect(wire);
    }

    /// Payload bytes of the frame flowing (as on the wire, masked or not).
    pub fn payload(&mut self, chunk: &[u8]) {
        let cap = self.cap;
        let b = match self.flow {
            Flow::Direct => {
                let pos = u64::from(self.direct_pos);
                self.store.write(chunk, self.direct_mask, pos);
                // At most the frame's length, which fits (see `direct_cap`).
                self.direct_pos = (pos + chunk.len() as u64) as u32;
                return;
            }
            Flow::Control => &mut self.control,
            Flow::Data => &mut self.data,
        };
        let Some(m) = &mut b.meta else {
            return;
        };
        let have = b.data.len();
        let take = cap.saturating_sub(have).min(chunk.len());
        if take < chunk.len() {
            m.flags |= TRUNCATED;
        }
        if take > 0 {
            b.data.resize(have + take, 0);
            unmask_into(&mut b.data[have..], &chunk[..take], b.mask, b.pos);
        }
        let compressed = m.has(COMPRESSED);
        let in_control = self.flow == Flow::Control;
        if let (true, false, Some(inf)) = (compressed, in_control, &mut self.inflate) {
            if take == chunk.len() {
                // All of it was kept, unmasked: inflated from there.
                let kept = &b.data[have..];
                inf.feed(kept, &mut b.inflated, &mut b.meta, cap, false);
            } else {
                inf.scratch.resize(chunk.len(), 0);
                unmask_into(&mut inf.scratch, chunk, b.mask, b.pos);
                let input = std::mem::take(&mut inf.scratch);
                inf.feed(&input, &mut b.inflated, &mut b.meta, cap, false);
                inf.scratch = input;
            }
        }
        b.pos += chunk.len() as u64;
    }

    /// The frame flowing has ended; `fin` says whether it was the message's last.
    pub fn end(&mut self, fin: bool) {
        let flow = std::mem::replace(&mut self.flow, Flow::Data);
        let b = match flow {
            Flow::Direct => {
                self.store.commit();
                self.next_seq += 1;
                return;
            }
            Flow::Control => &mut self.control,
            Flow::Data if fin => &mut self.data,
            Flow::Data => return,
        };
        let compressed = match &b.meta {
            Some(m) => m.has(COMPRESSED),
            None => return,
        };
        if let (true, Some(inf)) = (compressed, &mut self.inflate) {
            inf.feed(&DEFLATE_TAIL, &mut b.inflated, &mut b.meta, self.cap, true);
            if let Some(m) = &mut b.meta {
                match &inf.broken {
                    Some(why) => m.extra().inflate_error = Some(why.clone()),
                    None => m.flags |= INFLATED,
                }
            }
            if inf.reset {
                inf.z.reset(false);
                inf.broken = None;
            }
        }
        // Read in place: moving the record out costs more than writing it.
        if let Some(m) = &mut b.meta {
            let inflated = if m.has(INFLATED) {
                &b.inflated[..]
            } else {
                &[]
            };
            self.store.push(self.next_seq, m, &b.data, inflated);
            self.next_seq += 1;
        }
        b.meta = None;
        b.reset();
        self.assembling = self.data.meta.is_some();
    }

    /// A whole message the proxy itself sent this way (an operator's injection),
    /// uncompressed and in one frame.
    pub fn injected(&mut self, seq: u64, at: SystemTime, opcode: u8, payload: &[u8]) {
        let frame = CapturedFrame {
            seq,
            at,
            len: payload.len() as u64,
            fin: true,
            rsv: 0,
            opcode,
            masked: self.dir == Dir::ClientToBackend,
        };
        let mut meta = Meta::new(&frame, OpKind::from_opcode(opcode));
        let keep = payload.len().min(self.cap);
        meta.len = frame.len;
        meta.frames = 1;
        meta.flags |= INJECTED;
        if keep < payload.len() {
            meta.flags |= TRUNCATED;
        }
        self.store
            .push(self.next_seq, &mut meta, &payload[..keep], &[]);
        self.next_seq += 1;
    }

    /// Counts what this capture keeps against a proxy-wide budget too.
    pub fn with_global(mut self, global: std::sync::Arc<Budget>) -> Self {
        self.store.set_global(global);
        self
    }

    /// The number the next message kept will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The kept messages, oldest first, read in place.
    pub fn messages(&self) -> impl Iterator<Item = Kept<'_>> {
        self.store.iter(self.dir, 0)
    }

    /// The kept messages numbered `from` on, oldest first.
    pub fn messages_from(&self, from: u64) -> impl Iterator<Item = Kept<'_>> {
        self.store.iter(self.dir, from)
    }

    /// The kept messages, copied.
    #[cfg(test)]
    pub fn owned(&self) -> Vec<crate::event::CapturedMessage> {
        self.messages().map(|k| k.message()).collect()
    }

    /// Bytes held: what is kept and the messages being assembled.
    #[cfg(test)]
    pub fn bytes_held(&self) -> usize {
        self.store.held() + self.data.data.len() + self.control.data.len()
    }
}

#[cfg(test)]
mod tests;
