//! Whole messages, as the inspector shows them: a [`Capture`] follows one direction
//! beside the scanner, reassembles fragmented data messages (control frames may come
//! between their fragments and are kept as messages of their own), unmasks their
//! payload up to a cap per message (longer ones are kept truncated and say so), and
//! keeps the latest in a ring within a byte budget, evicting the oldest first.
//!
//! Nothing is allocated until a frame is captured, and a message's buffer grows only
//! as its bytes arrive, so a silent tunnel holds nothing. The bytes are kept as they
//! travelled (compressed ones too, marked): inflating is for whoever reads them.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::event::{CapturedFrame, CapturedMessage as Message, Dir, OpKind, MAX_FRAMES_KEPT};
use crate::ws::unmask_into;

/// The message being assembled.
#[derive(Debug)]
struct Building {
    message: Message,
    /// Its inflated payload so far (compressed messages), at most the cap.
    inflated: Vec<u8>,
    /// Masking key and payload offset of the frame flowing now (keys change per
    /// frame, offsets restart).
    mask: [u8; 4],
    pos: u64,
}

/// The captured messages of one direction.
#[derive(Debug)]
pub struct Capture {
    dir: Dir,
    /// Payload bytes kept per message at most.
    cap: usize,
    /// Payload bytes kept in the ring at most.
    budget: usize,
    used: usize,
    /// Bytes kept by every capture of the proxy, and their limit (`inspect.memory`).
    global: Option<std::sync::Arc<Budget>>,
    ring: VecDeque<Message>,
    /// A data message spanning fragments.
    data: Option<Building>,
    /// A control frame (never fragmented; may sit between data fragments).
    control: Option<Building>,
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
        let mut out = std::mem::take(&mut self.out);
        out.resize(8192, 0);
        self.inflate_into(input, b, cap, flush, &mut out);
        self.out = out;
    }

    fn inflate_into(
        &mut self,
        input: &[u8],
        b: &mut Building,
        cap: usize,
        flush: flate2::FlushDecompress,
        out: &mut [u8],
    ) {
        let mut rest = input;
        loop {
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            if let Err(e) = self.z.decompress(rest, out, flush) {
                self.broken = Some(format!("not valid deflate data: {e}"));
                return;
            }
            let used = (self.z.total_in() - in0) as usize;
            let made = (self.z.total_out() - out0) as usize;
            rest = &rest[used..];
            b.message.inflated_len += made as u64;
            let room = cap.saturating_sub(b.inflated.len()).min(made);
            b.inflated.extend_from_slice(&out[..room]);
            if room < made {
                b.message.truncated = true;
            }
            // Done once all input is in and the output buffer was not filled.
            if (rest.is_empty() && made < out.len()) || (used == 0 && made == 0) {
                return;
            }
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

/// Bytes a kept message holds: its payload and its inflated payload.
fn cost(m: &Message) -> usize {
    m.data.len()
        + m.more.len() * std::mem::size_of::<CapturedFrame>()
        + m.inflated
            .as_ref()
            .map_or(0, |r| r.as_ref().map_or(0, Vec::len))
}

/// The proxy-wide budget of captured bytes (`inspect.memory`).
#[derive(Debug, Default)]
pub struct Budget {
    used: std::sync::atomic::AtomicUsize,
    pub limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            used: Default::default(),
            limit,
        }
    }

    /// Bytes kept now by every capture.
    pub fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.used() > self.limit
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(g) = &self.global {
            g.used
                .fetch_sub(self.used, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Payload bytes reserved when a frame's header is read, at most.
const RESERVE_MAX: usize = 4096;

/// What RFC 7692 §7.2.2 has the sender strip from each message's end.
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

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
            budget,
            used: 0,
            global: None,
            ring: VecDeque::new(),
            data: None,
            control: None,
            in_control: false,
            next_seq: 0,
        }
    }

    /// A frame begins (its header has been read).
    pub fn begin(&mut self, frame: CapturedFrame, mask: [u8; 4]) {
        let (at, rsv, len) = (frame.at, frame.rsv, frame.len);
        let kind = OpKind::from_opcode(frame.opcode);
        let fresh = |kind| Building {
            message: Message {
                seq: 0,
                at,
                dir: self.dir,
                kind,
                compressed: rsv & 0b100 != 0,
                len: 0,
                frames: 0,
                data: Vec::new(),
                truncated: false,
                inflated: None,
                inflated_len: 0,
                injected: false,
                first: frame,
                more: Vec::new(),
            },
            mask,
            pos: 0,
            inflated: Vec::new(),
        };
        self.in_control = matches!(kind, OpKind::Close | OpKind::Ping | OpKind::Pong);
        let b = match kind {
            OpKind::Close | OpKind::Ping | OpKind::Pong => self.control.insert(fresh(kind)),
            OpKind::Text | OpKind::Binary => self.data.insert(fresh(kind)),
            // A continuation with no message open: its start came before capture.
            OpKind::Continuation | OpKind::Reserved => match &mut self.data {
                Some(b) => b,
                None => self.data.insert(fresh(OpKind::Continuation)),
            },
        };
        b.mask = mask;
        b.pos = 0;
        if b.message.frames == 0 {
            // One allocation for a small single-frame message's payload; a large
            // one grows as its bytes arrive (a header alone reserves little).
            if frame.fin {
                let keep = usize::try_from(len).unwrap_or(usize::MAX).min(self.cap);
                b.message.data.reserve_exact(keep.min(RESERVE_MAX));
            }
        } else if b.message.more.len() + 1 < MAX_FRAMES_KEPT {
            b.message.more.push(frame);
        }
        b.message.frames += 1;
        b.message.len += len;
    }

    /// Payload bytes of the frame flowing (as on the wire, masked or not).
    pub fn payload(&mut self, chunk: &[u8]) {
        let cap = self.cap;
        let b = if self.in_control {
            &mut self.control
        } else {
            &mut self.data
        };
        let Some(b) = b else {
            return;
        };
        let have = b.message.data.len();
        let take = cap.saturating_sub(have).min(chunk.len());
        if take < chunk.len() {
            b.message.truncated = true;
        }
        if take > 0 {
            b.message.data.resize(have + take, 0);
            unmask_into(&mut b.message.data[have..], &chunk[..take], b.mask, b.pos);
        }
        if let (true, false, Some(inf)) = (b.message.compressed, self.in_control, &mut self.inflate)
        {
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
        let done = if self.in_control {
            self.control.take()
        } else if fin {
            self.data.take()
        } else {
            None
        };
        self.in_control = false;
        if let Some(mut b) = done {
            if let (true, Some(inf)) = (b.message.compressed, &mut self.inflate) {
                inf.feed(&DEFLATE_TAIL, &mut b, self.cap, true);
                let inflated = std::mem::take(&mut b.inflated);
                b.message.inflated = Some(match &inf.broken {
                    Some(why) => Err(why.clone()),
                    None => Ok(inflated),
                });
                if inf.reset {
                    inf.z.reset(false);
                    inf.broken = None;
                }
            }
            self.keep(b.message);
        }
    }

    /// A whole message the proxy itself sent this way (an operator's injection),
    /// uncompressed and in one frame.
    pub fn injected(&mut self, seq: u64, at: SystemTime, opcode: u8, payload: &[u8]) {
        let kind = OpKind::from_opcode(opcode);
        let keep = payload.len().min(self.cap);
        self.keep(Message {
            seq: 0,
            at,
            dir: self.dir,
            kind,
            compressed: false,
            len: payload.len() as u64,
            frames: 1,
            data: payload[..keep].to_vec(),
            truncated: keep < payload.len(),
            inflated: None,
            inflated_len: 0,
            injected: true,
            first: CapturedFrame {
                seq,
                at,
                len: payload.len() as u64,
                fin: true,
                rsv: 0,
                opcode,
                masked: self.dir == Dir::ClientToBackend,
            },
            more: Vec::new(),
        });
    }

    /// Counts what this capture keeps against a proxy-wide budget too.
    pub fn with_global(mut self, global: std::sync::Arc<Budget>) -> Self {
        self.global = Some(global);
        self
    }

    fn keep(&mut self, mut message: Message) {
        message.seq = self.next_seq;
        self.next_seq += 1;
        if message.data.capacity() > message.data.len() {
            message.data.shrink_to_fit();
        }
        let size = cost(&message);
        self.used += size;
        if let Some(g) = &self.global {
            g.used.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        }
        self.ring.push_back(message);
        // Over this tunnel's budget, or the proxy's: this tunnel's oldest go first.
        while self.used > self.budget || self.global.as_ref().is_some_and(|g| g.over()) {
            let Some(old) = self.ring.pop_front() else {
                break;
            };
            let size = cost(&old);
            self.used -= size;
            if let Some(g) = &self.global {
                g.used.fetch_sub(size, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// The number the next message kept will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The kept messages, oldest first.
    pub fn messages(&self) -> impl DoubleEndedIterator<Item = &Message> {
        self.ring.iter()
    }

    /// Payload bytes held (kept messages and the ones being assembled).
    #[cfg(test)]
    pub fn bytes_held(&self) -> usize {
        self.used
            + self.data.as_ref().map_or(0, |b| b.message.data.len())
            + self.control.as_ref().map_or(0, |b| b.message.data.len())
    }
}

#[cfg(test)]
mod tests;
