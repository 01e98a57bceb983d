//! Sans-IO RFC 6455 §5.2 frame-header scanner for one direction of a tunnel.
//!
//! The relay forwards WebSocket bytes unchanged and shows every chunk it forwards to
//! a [`Scanner`]. The scanner owns everything that is learnt by walking frame
//! boundaries in that byte stream: the per-opcode counters and message count
//! ([`DirStats`]), the first close code and reason, the protocol checks that can be
//! made from headers and close payloads ([`Violation`]), and a ring of recent
//! [`FrameSample`](crate::event::FrameSample)s with short unmasked payload previews.
//!
//! It never buffers or re-encodes a payload: apart from the preview and close-payload
//! bytes it copies, it only counts, and checks that uncompressed text messages are
//! UTF-8 as their bytes go by (a sequence split across frames or chunks is carried
//! in three bytes of state). It does no I/O and knows nothing of
//! tokio, so it can be fed byte by byte in tests and fuzzed. Chunks may be split
//! anywhere, including inside a header; the header is collected in a fixed 14-byte
//! buffer, so scanning allocates nothing per frame (the ring and one buffer for all
//! its previews grow together over the first frames, up to the ring's size, and are
//! then reused: a tunnel's memory stops growing once it has seen that many frames).
//!
//! - `limits`: message size and rate limits, and checked feeding (limits, strict).
//! - `samples`: the ring of recent frame summaries.
//! - `utf8`: UTF-8 checking of text messages across frames and chunks.

pub mod capture;
mod inspect;
mod lazy;
mod limits;
mod samples;
mod utf8;

use std::time::SystemTime;

use self::capture::Capture;
pub use self::inspect::CaptureSpec;
pub use self::lazy::LazyScanner;
use self::limits::MessageLimits;
pub use self::limits::StrictStop;
use self::samples::SampleHead;
use self::utf8::Utf8Tail;
use crate::event::{CloseInfo, Dir, DirStats, OpKind, Violation};
use crate::ws::{self, header_len, unmask_into, unmasked, MAX_CONTROL_PAYLOAD};

/// Longest frame header: 2 fixed bytes, a 64-bit length and a 4-byte masking key.
const MAX_HEADER: usize = 14;

/// Follows the frames of one direction of a relayed WebSocket byte stream.
///
/// Feed it every byte that is forwarded, in order, with [`Scanner::feed`] (or
/// [`Scanner::feed_to_boundary`] when the relay must stop at a frame boundary).
/// It lives in every tunnel, so its fields are kept compact; it holds no heap memory
/// until the first sample is kept or the first close frame is seen.
#[derive(Debug)]
pub struct Scanner {
    stats: DirStats,
    /// Kept samples; slot `ring_next` is the oldest once the ring is full.
    ring: Vec<SampleHead>,
    /// Slot `i`'s preview is `previews[i * preview_bytes..][..ring[i].preview_len]`.
    previews: Box<[u8]>,
    /// Reason bytes of the first close frame, collected while its payload arrives
    /// (they may be split anywhere, even inside a UTF-8 sequence). Moved into
    /// `stats.close` when that frame ends.
    close_reason: Vec<u8>,
    /// Sequence number of the next frame.
    seq: u64,
    /// Payload bytes of the current frame still to come. Zero while reading a header
    /// (or at a boundary): a frame whose payload is complete is finished at once.
    remaining: u64,
    /// Payload bytes of the current frame seen so far; picks the masking key byte and
    /// says how much of the preview and close payload is already captured.
    pos: u64,
    /// Number of samples to keep (`ring` given to [`Scanner::new`]).
    ring_cap: u16,
    /// Where the next sample goes in `ring`.
    ring_next: u16,
    /// Where the newest sample went.
    last_slot: u16,
    /// Payload bytes to copy into each sample.
    preview_bytes: u16,
    /// Masking key of the current frame; all zeroes for an unmasked frame, which
    /// makes "unmasking" it a no-op and spares a flag.
    mask: [u8; 4],
    /// Header bytes collected so far (the header may arrive split across feeds).
    hdr: [u8; MAX_HEADER],
    hdr_len: u8,
    /// The opcode of the frame whose payload is flowing, decoded once at its header.
    kind: OpKind,
    /// Whether that frame is the last of its message (FIN).
    fin: bool,
    /// The first two payload bytes of the current close frame (its status code).
    close_code: [u8; 2],
    /// RSV bits a negotiated extension allows (low three bits, RSV1 = 0b100).
    allowed_rsv: u8,
    dir: Dir,
    /// A fragmented data message has begun and its FIN frame has not been seen.
    in_message: bool,
    /// Whether the current data message's payload is being checked as UTF-8.
    text: TextCheck,
    /// The incomplete UTF-8 sequence at the end of the text payload seen so far.
    utf8: Utf8Tail,
    /// Message size and rate limits, when the route sets any (boxed: most tunnels
    /// have none, and this lives in every tunnel).
    limits: Option<Box<MessageLimits>>,
    /// Whole messages, while someone inspects (boxed: off in most tunnels).
    capture: Option<Box<Capture>>,
}

/// UTF-8 checking of the data message in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextCheck {
    /// Binary, compressed (RSV1: the payload is deflated) or no message.
    Off,
    /// An uncompressed text message, valid so far.
    Checking,
    /// Found invalid (reported once per message).
    Failed,
}

impl Scanner {
    /// A scanner for the direction `dir` that keeps the last `ring` frame summaries,
    /// each with up to `preview_bytes` payload bytes (unmasked). Allocates nothing
    /// here: the `ring` slots and `ring * preview_bytes` preview bytes are allocated
    /// when the first frame is seen, so both should be bounded by configuration (each
    /// is capped at 65535).
    pub fn new(dir: Dir, ring: usize, preview_bytes: usize) -> Self {
        Self {
            stats: DirStats::default(),
            ring: Vec::new(),
            previews: Box::default(),
            close_reason: Vec::new(),
            seq: 0,
            remaining: 0,
            pos: 0,
            ring_cap: u16::try_from(ring).unwrap_or(u16::MAX),
            ring_next: 0,
            last_slot: 0,
            preview_bytes: u16::try_from(preview_bytes).unwrap_or(u16::MAX),
            mask: [0; 4],
            hdr: [0; MAX_HEADER],
            hdr_len: 0,
            kind: OpKind::Continuation,
            fin: false,
            close_code: [0; 2],
            allowed_rsv: 0,
            dir,
            in_message: false,
            text: TextCheck::Off,
            utf8: Utf8Tail::default(),
            limits: None,
            capture: None,
        }
    }

    /// Sets the RSV bits (low three bits, RSV1 = 0b100) that a negotiated extension
    /// allows, e.g. `0b100` for permessage-deflate. Other RSV bits are reported as
    /// [`Violation::ReservedBits`]. Defaults to none.
    pub fn set_allowed_rsv(&mut self, rsv: u8) {
        self.allowed_rsv = rsv & 0b111;
    }

    /// The direction this scanner follows.
    pub fn dir(&self) -> Dir {
        self.dir
    }

    /// Scans the next chunk of the stream. Chunks may be of any size and split
    /// anywhere. `now` stamps frames whose header completes in this chunk;
    /// `on_violation` is called once for each violation found (each one is also
    /// counted in [`DirStats::violations`]).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        now: SystemTime,
        on_violation: &mut dyn FnMut(Violation),
    ) {
        self.stats.bytes += data.len() as u64;
        if let Some(c) = self.capture.as_deref_mut() {
            c.expect(data.len(), now);
        }
        while !data.is_empty() {
            let (used, _) = self.step(data, now, on_violation);
            data = &data[used..];
        }
    }

    /// True when no frame is partially seen: neither part of a header nor part of a
    /// payload is outstanding.
    pub fn at_boundary(&self) -> bool {
        self.hdr_len == 0 && self.remaining == 0
    }

    /// True at a frame boundary outside any fragmented message: where a data frame
    /// of the proxy's own may go.
    pub fn between_messages(&self) -> bool {
        self.at_boundary() && !self.in_message
    }

    /// Everything counted so far.
    pub fn stats(&self) -> &DirStats {
        &self.stats
    }

    /// The `seq` the next frame will get, which is also the number of frames seen.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Consumes the start of `data` (which is not empty): header bytes or payload
    /// bytes of the current frame, never beyond its end. Returns the bytes used
    /// (at least one) and whether a frame ended with the last of them.
    fn step(
        &mut self,
        data: &[u8],
        now: SystemTime,
        on_violation: &mut dyn FnMut(Violation),
    ) -> (usize, bool) {
        if self.remaining > 0 {
            return self.payload(data, on_violation);
        }
        // The usual case: a whole header at the start of the chunk, taken in one copy.
        if self.hdr_len == 0 && data.len() >= 2 {
            let need = header_len(data[1]);
            if data.len() >= need {
                self.hdr[..need].copy_from_slice(&data[..need]);
                self.hdr_len = need as u8;
                let ended = self.begin_frame(now, on_violation);
                return (need, ended);
            }
        }
        let mut used = 0;
        loop {
            let have = self.hdr_len as usize;
            // The first two bytes say how long the rest of the header is.
            let need = if have < 2 { 2 } else { header_len(self.hdr[1]) };
            if have == need {
                break;
            }
            let take = (need - have).min(data.len() - used);
            if take == 0 {
                return (used, false);
            }
            self.hdr[have..have + take].copy_from_slice(&data[used..used + take]);
            self.hdr_len += take as u8;
            used += take;
        }
        let ended = self.begin_frame(now, on_violation);
        (used, ended)
    }

    /// A header is complete in `hdr`: counts the frame, checks it, keeps its sample
    /// and prepares for its payload. Returns true if the frame has no payload (and so
    /// has already ended).
    fn begin_frame(&mut self, now: SystemTime, on_violation: &mut dyn FnMut(Violation)) -> bool {
        let header_bytes = self.hdr_len;
        self.hdr_len = 0;
        let [b0, b1] = [self.hdr[0], self.hdr[1]];
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0b111;
        let opcode = b0 & 0x0F;
        let masked = b1 & 0x80 != 0;
        let (len, key_at) = match b1 & 0x7F {
            126 => (u64::from(u16::from_be_bytes([self.hdr[2], self.hdr[3]])), 4),
            127 => {
                let mut be = [0; 8];
                be.copy_from_slice(&self.hdr[2..10]);
                (u64::from_be_bytes(be), 10)
            }
            n => (u64::from(n), 2),
        };
        self.mask = [0; 4];
        if masked {
            self.mask.copy_from_slice(&self.hdr[key_at..key_at + 4]);
        }
        let kind = OpKind::from_opcode(opcode);

        let mut violation = |v: Violation| {
            self.stats.violations += 1;
            on_violation(v);
        };
        if kind == OpKind::Reserved {
            violation(Violation::ReservedOpcode(opcode));
        }
        let bad_rsv = rsv & !self.allowed_rsv;
        if bad_rsv != 0 {
            violation(Violation::ReservedBits(bad_rsv));
        }
        match (self.dir, masked) {
            (Dir::ClientToBackend, false) => violation(Violation::UnmaskedClientFrame),
            (Dir::BackendToClient, true) => violation(Violation::MaskedServerFrame),
            _ => {}
        }
        if len >> 63 != 0 {
            // Scanning goes on with the length as declared: the relay forwards the
            // stream regardless, and counting is done as payload bytes arrive.
            violation(Violation::LengthTopBitSet);
        }
        match kind {
            OpKind::Close | OpKind::Ping | OpKind::Pong => {
                if len > MAX_CONTROL_PAYLOAD {
                    violation(Violation::OversizeControlFrame(len));
                }
                if !fin {
                    violation(Violation::FragmentedControlFrame);
                }
            }
            OpKind::Continuation => {
                if !self.in_message {
                    violation(Violation::BadContinuation);
                }
                // A stray continuation is taken as a message whose start was missed,
                // so one fault is reported once, not again for each later fragment.
                if !self.in_message {
                    self.text = TextCheck::Off;
                }
                self.in_message = !fin;
            }
            OpKind::Text | OpKind::Binary => {
                if self.in_message {
                    violation(Violation::BadContinuation);
                }
                self.in_message = !fin;
                // RSV1 on a first frame means permessage-deflate compressed it.
                self.text = if kind == OpKind::Text && rsv & 0b100 == 0 {
                    TextCheck::Checking
                } else {
                    TextCheck::Off
                };
                self.utf8 = Utf8Tail::default();
            }
            OpKind::Reserved => {}
        }
        if let Some(l) = self.limits.as_deref_mut() {
            if let Some(hit) = l.check(kind, len, now) {
                l.hit.get_or_insert(hit);
            }
        }

        let count = &mut self.stats.by_opcode[kind as usize];
        count.frames += 1;
        count.wire_bytes += u64::from(header_bytes);
        self.stats.last_frame = Some(now);
        self.keep_sample(now, fin, rsv, opcode, masked, len);
        self.seq += 1;
        if let Some(c) = self.capture.as_deref_mut() {
            let frame = crate::event::CapturedFrame {
                seq: self.seq - 1,
                at: now,
                len,
                fin,
                rsv,
                opcode,
                masked,
            };
            c.begin(frame, self.mask);
        }

        self.kind = kind;
        self.fin = fin;
        self.pos = 0;
        self.remaining = len;
        self.close_code = [0; 2];
        if kind == OpKind::Close && self.stats.close.is_none() {
            self.close_reason.clear();
            let reason_len = len.min(MAX_CONTROL_PAYLOAD).saturating_sub(2);
            self.close_reason.reserve_exact(reason_len as usize);
        }
        if len == 0 {
            self.end_frame(on_violation);
            return true;
        }
        false
    }

    /// Consumes payload bytes of the current frame (at most up to its end).
    fn payload(&mut self, data: &[u8], on_violation: &mut dyn FnMut(Violation)) -> (usize, bool) {
        // `remaining` may exceed usize on 32-bit targets; `data.len()` bounds it.
        let n = self.remaining.min(data.len() as u64) as usize;
        let chunk = &data[..n];
        let kind = self.kind;

        // Only the first few payload bytes are ever copied; the rest is just counted.
        if self.ring_cap > 0 && self.pos < u64::from(self.preview_bytes) {
            let want = (u64::from(self.preview_bytes) - self.pos).min(n as u64) as usize;
            let (mask, pos) = (self.mask, self.pos);
            let newest = match self.ring_next {
                0 => self.ring_cap as usize - 1,
                next => next as usize - 1,
            };
            let head = &mut self.ring[newest];
            let start = newest * self.preview_bytes as usize + head.preview_len as usize;
            unmask_into(
                &mut self.previews[start..start + want],
                &chunk[..want],
                mask,
                pos,
            );
            head.preview_len += want as u16;
        }
        if kind == OpKind::Close && self.pos < MAX_CONTROL_PAYLOAD {
            let want = (MAX_CONTROL_PAYLOAD - self.pos).min(n as u64) as usize;
            let capture_reason = self.stats.close.is_none();
            for (i, b) in unmasked(self.mask, self.pos, &chunk[..want]).enumerate() {
                match self.pos + i as u64 {
                    at @ 0..=1 => self.close_code[at as usize] = b,
                    _ if capture_reason => self.close_reason.push(b),
                    _ => break,
                }
            }
        }

        if self.text == TextCheck::Checking
            && matches!(kind, OpKind::Text | OpKind::Continuation)
            && !self.utf8_ok(chunk)
        {
            self.text = TextCheck::Failed;
            self.stats.violations += 1;
            on_violation(Violation::InvalidUtf8);
        }

        if let Some(c) = self.capture.as_deref_mut() {
            c.payload(chunk);
        }
        self.pos += n as u64;
        self.remaining -= n as u64;
        let count = &mut self.stats.by_opcode[kind as usize];
        count.payload_bytes += n as u64;
        count.wire_bytes += n as u64;
        if self.remaining == 0 {
            self.end_frame(on_violation);
            return (n, true);
        }
        (n, false)
    }

    /// The current frame's last byte has been seen (`pos` is its payload length).
    fn end_frame(&mut self, on_violation: &mut dyn FnMut(Violation)) {
        let fin = self.fin;
        if let Some(c) = self.capture.as_deref_mut() {
            c.end(fin);
        }
        match self.kind {
            // Counted when the final fragment has fully arrived, not when it begins.
            // A FIN continuation with no message open (already reported as
            // BadContinuation) still counts: it ends a message whose start was missed.
            OpKind::Text | OpKind::Binary | OpKind::Continuation if fin => {
                self.stats.messages += 1;
                if self.text == TextCheck::Checking && self.utf8.len > 0 {
                    // The message ended inside a multi-byte sequence.
                    self.stats.violations += 1;
                    on_violation(Violation::InvalidUtf8);
                }
                self.text = TextCheck::Off;
            }
            OpKind::Close => {
                let code = (self.pos >= 2).then(|| u16::from_be_bytes(self.close_code));
                if self.pos == 1 || code.is_some_and(|c| !ws::close_code_may_be_sent(c)) {
                    self.stats.violations += 1;
                    on_violation(Violation::BadClosePayload);
                }
                if self.stats.close.is_none() {
                    let raw = std::mem::take(&mut self.close_reason);
                    // Reuses the buffer when the reason is valid UTF-8 (the usual case).
                    let reason = String::from_utf8(raw)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                    self.stats.close = Some(CloseInfo { code, reason });
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
