//! Whole messages, as the inspector shows them: a [`Capture`] follows one direction
//! beside the scanner, reassembles fragmented data messages (control frames may come
//! between their fragments and are kept as messages of their own), unmasks their
//! payload up to a cap per message (longer ones are kept truncated and say so), and
//! keeps the latest in a ring within a byte budget, evicting the oldest first.
//!
//! Nothing is allocated until a frame is captured, and a message's buffer grows only
//! as its bytes arrive, so a silent tunnel holds nothing. The bytes are kept as they
//! travelled (compressed ones too, marked): inflating is for whoever reads them.

mod store;

use std::time::SystemTime;

pub use self::store::Budget;
use self::store::{Kept, Meta, Store, COMPRESSED, INFLATED, INJECTED, LAZY, TRUNCATED};
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
    /// A compressed message with a context of its own, kept whole: inflated when
    /// read, not as it passes.
    lazy: bool,
}

/// Buffer capacity a [`Building`] keeps between messages; a larger one is freed.
const RETAIN: usize = 1024;

impl Building {
    fn start(&mut self, frame: &CapturedFrame, kind: OpKind) {
        self.meta = Some(Meta::new(frame, kind));
        self.data.clear();
        self.inflated.clear();
        self.lazy = false;
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
#[derive(Debug)]
pub struct Capture {
    dir: Dir,
    /// Payload bytes kept per message at most.
    cap: usize,
    store: Store,
    /// A data message spanning fragments.
    data: Building,
    /// A control frame (never fragmented; may sit between data fragments).
    control: Building,
    /// Which of the two the frame flowing now belongs to.
    in_control: bool,
    next_seq: u64,
    /// permessage-deflate: the messages are inflated as they pass.
    inflate: Option<Inflate>,
}

/// Inflating one direction's compressed messages as their bytes pass (all of them,
/// kept or not, so the compression context stays in step).
struct Inflate {
    z: flate2::Decompress,
    /// No context takeover: each message starts afresh.
    reset: bool,
    /// Why inflated text cannot be trusted from now on.
    broken: Option<String>,
    /// The unmasked bytes of the chunk being inflated.
    scratch: Vec<u8>,
    /// Where inflating writes before the kept part is copied (allocated once).
    out: Vec<u8>,
}

impl std::fmt::Debug for Inflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflate")
            .field("reset", &self.reset)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Inflate {
    /// Inflates `input` (unmasked compressed bytes of `b`'s message), keeping what
    /// fits under `cap` and counting the rest; `last`: the message's end (its
    /// stripped tail), which flushes.
    fn feed(&mut self, input: &[u8], b: &mut Building, cap: usize, last: bool) {
        if self.broken.is_some() {
            return;
        }
        let flush = if last {
            flate2::FlushDecompress::Sync
        } else {
            flate2::FlushDecompress::None
        };
        // Sized once, never cleared: inflating overwrites what it reports.
        self.out.resize(8192, 0);
        let before = b.inflated.len();
        let (made, error) = inflate_chunk(
            &mut self.z,
            input,
            flush,
            &mut self.out,
            &mut b.inflated,
            cap,
        );
        if let Some(m) = &mut b.meta {
            m.inflated_len += made;
            if ((b.inflated.len() - before) as u64) < made {
                m.flags |= TRUNCATED;
            }
        }
        if error.is_some() {
            self.broken = error;
        }
    }
}

/// Inflates `input` with `z` through `buf`, appending what it makes to `kept` up to
/// `cap` bytes in all: how many bytes it made, and why it stopped early if it did.
pub(super) fn inflate_chunk(
    z: &mut flate2::Decompress,
    input: &[u8],
    flush: flate2::FlushDecompress,
    buf: &mut [u8],
    kept: &mut Vec<u8>,
    cap: usize,
) -> (u64, Option<String>) {
    let mut rest = input;
    let mut total = 0u64;
    loop {
        let (in0, out0) = (z.total_in(), z.total_out());
        if let Err(e) = z.decompress(rest, buf, flush) {
            return (total, Some(format!("not valid deflate data: {e}")));
        }
        let used = (z.total_in() - in0) as usize;
        let made = (z.total_out() - out0) as usize;
        rest = &rest[used..];
        total += made as u64;
        let room = cap.saturating_sub(kept.len()).min(made);
        kept.extend_from_slice(&buf[..room]);
        // Done once all input is in and the output buffer was not filled.
        if (rest.is_empty() && made < buf.len()) || (used == 0 && made == 0) {
            return (total, None);
        }
    }
}

/// Whether each side's messages start a fresh compression context, from the
/// negotiated `Sec-WebSocket-Extensions` (RFC 7692 §7.1.1): `(client→backend,
/// backend→client)`, or None when permessage-deflate was not negotiated.
pub fn deflate_resets(extensions: &str) -> Option<(bool, bool)> {
    let offer = extensions.split(',').find(|e| {
        e.split(';')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("permessage-deflate"))
    })?;
    let has = |name: &str| {
        offer.split(';').skip(1).any(|p| {
            p.split('=')
                .next()
                .is_some_and(|k| k.trim().eq_ignore_ascii_case(name))
        })
    };
    Some((
        has("client_no_context_takeover"),
        has("server_no_context_takeover"),
    ))
}

/// Payload bytes reserved when a frame's header is read, at most.
const RESERVE_MAX: usize = 4096;

/// What RFC 7692 §7.2.2 has the sender strip from each message's end.
pub(super) const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

impl Capture {
    /// `inflate`: the messages are compressed with permessage-deflate; `Some(reset)`
    /// where `reset` says the context starts afresh with each message. `fresh`: no
    /// message has passed in this direction yet (else, with context takeover, the
    /// earlier context is missing and nothing can be inflated).
    pub fn new(dir: Dir, cap: usize, budget: usize, inflate: Option<bool>, fresh: bool) -> Self {
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
            store: Store::new(budget, cap),
            data: Building::default(),
            control: Building::default(),
            in_control: false,
            next_seq: 0,
        }
    }

    /// A frame begins (its header has been read).
    pub fn begin(&mut self, frame: CapturedFrame, mask: [u8; 4]) {
        let kind = OpKind::from_opcode(frame.opcode);
        self.in_control = matches!(kind, OpKind::Close | OpKind::Ping | OpKind::Pong);
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
            // Without context takeover a whole message kept untruncated can be
            // inflated later, by whoever reads it: most never are.
            b.lazy = m.has(COMPRESSED)
                && frame.fin
                && frame.len <= self.cap as u64
                && self
                    .inflate
                    .as_ref()
                    .is_some_and(|i| i.reset && i.broken.is_none());
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
    }

    /// Payload bytes of the frame flowing (as on the wire, masked or not).
    pub fn payload(&mut self, chunk: &[u8]) {
        let cap = self.cap;
        let b = if self.in_control {
            &mut self.control
        } else {
            &mut self.data
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
        let compressed = m.has(COMPRESSED) && !b.lazy;
        if let (true, false, Some(inf)) = (compressed, self.in_control, &mut self.inflate) {
            inf.scratch.resize(chunk.len(), 0);
            unmask_into(&mut inf.scratch, chunk, b.mask, b.pos);
            let input = std::mem::take(&mut inf.scratch);
            inf.feed(&input, b, cap, false);
            inf.scratch = input;
        }
        b.pos += chunk.len() as u64;
    }

    /// The frame flowing has ended; `fin` says whether it was the message's last.
    pub fn end(&mut self, fin: bool) {
        let b = if self.in_control {
            &mut self.control
        } else if fin {
            &mut self.data
        } else {
            return;
        };
        self.in_control = false;
        let compressed = match &mut b.meta {
            Some(m) if b.lazy => {
                m.flags |= LAZY;
                false
            }
            Some(m) => m.has(COMPRESSED),
            None => return,
        };
        if let (true, Some(inf)) = (compressed, &mut self.inflate) {
            inf.feed(&DEFLATE_TAIL, b, self.cap, true);
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
