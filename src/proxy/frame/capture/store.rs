//! Where one direction's captured messages are kept: one after another, each a
//! 48-byte record header followed by its payload and inflated payload, in a few
//! blocks (growing from 1 KiB to 64 KiB). Keeping a message appends to the newest
//! block; making room lets the oldest block go whole (its messages with it) and
//! reuses it. Nothing is allocated per message, and nothing old is read to evict:
//! under a flood of captured tunnels the memory touched per message is the record
//! written, in order.
//!
//! What is held (the blocks as allocated) counts against the direction's budget and
//! the proxy-wide one, which is claimed a block at a time rather than per message.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::event::{CapturedFrame, CapturedMessage, Dir, OpKind};

/// The proxy-wide budget of captured bytes (`inspect.memory`).
#[derive(Debug, Default)]
pub struct Budget {
    used: AtomicUsize,
    pub limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            used: Default::default(),
            limit,
        }
    }

    /// Bytes held now by every capture.
    pub fn used(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Takes `n` bytes if they fit under the limit.
    fn claim(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Relaxed);
        if before + n <= self.limit {
            return true;
        }
        self.used.fetch_sub(n, Relaxed);
        false
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Relaxed);
    }
}

/// Flags of a [`Meta`].
pub const COMPRESSED: u8 = 1;
pub const TRUNCATED: u8 = 2;
pub const INJECTED: u8 = 4;
/// The first frame's FIN and mask bits.
pub const FIN: u8 = 8;
pub const MASKED: u8 = 16;
/// An inflated payload was kept (after the payload).
pub const INFLATED: u8 = 32;
/// It has an [`Extra`].
const EXTRA: u8 = 64;
/// Compressed with a context of its own and kept whole: inflated when read.
pub const LAZY: u8 = 128;

/// What a message says about itself beyond its bytes.
#[derive(Debug)]
pub struct Meta {
    pub at: SystemTime,
    /// Payload bytes on the wire, whole message.
    pub len: u64,
    /// Inflated length (all of it, kept or not).
    pub inflated_len: u64,
    /// The first frame's number in its direction.
    pub frame_seq: u64,
    pub frames: u32,
    pub kind: OpKind,
    pub rsv: u8,
    pub opcode: u8,
    pub flags: u8,
    /// What few messages need (kept beside the records).
    pub extra: Option<Box<Extra>>,
}

#[derive(Debug, Default)]
pub struct Extra {
    /// The first frame's payload length (a fragmented message).
    pub first_len: u64,
    pub more: Vec<CapturedFrame>,
    pub inflate_error: Option<String>,
}

impl Extra {
    fn cost(&self) -> usize {
        std::mem::size_of::<(u64, Box<Extra>)>()
            + std::mem::size_of::<Extra>()
            + self.more.capacity() * std::mem::size_of::<CapturedFrame>()
            + self.inflate_error.as_ref().map_or(0, String::capacity)
    }
}

/// A record's header: at, len, inflated_len, frame_seq (u64 each), data and
/// inflated bytes kept, frames (u32 each), kind, rsv, opcode, flags.
const HEADER: usize = 48;

impl Meta {
    pub fn new(frame: &CapturedFrame, kind: OpKind) -> Self {
        let mut flags = 0;
        if frame.fin {
            flags |= FIN;
        }
        if frame.masked {
            flags |= MASKED;
        }
        if frame.rsv & 0b100 != 0 {
            flags |= COMPRESSED;
        }
        Meta {
            at: frame.at,
            len: 0,
            inflated_len: 0,
            frame_seq: frame.seq,
            frames: 0,
            kind,
            rsv: frame.rsv,
            opcode: frame.opcode,
            flags,
            extra: None,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    fn header(&self, data: usize, inflated: usize) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        let at = self.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let at = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
        h[0..8].copy_from_slice(&at.to_le_bytes());
        h[8..16].copy_from_slice(&self.len.to_le_bytes());
        h[16..24].copy_from_slice(&self.inflated_len.to_le_bytes());
        h[24..32].copy_from_slice(&self.frame_seq.to_le_bytes());
        h[32..36].copy_from_slice(&(data as u32).to_le_bytes());
        h[36..40].copy_from_slice(&(inflated as u32).to_le_bytes());
        h[40..44].copy_from_slice(&self.frames.to_le_bytes());
        let flags = self.flags | if self.extra.is_some() { EXTRA } else { 0 };
        h[44..48].copy_from_slice(&[self.kind as u8, self.rsv, self.opcode, flags]);
        h
    }

    /// The header at the start of `r`, and the lengths of the payload and inflated
    /// payload after it.
    fn read(r: &[u8]) -> (Meta, usize, usize) {
        let u64_at = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(r[i..i + 4].try_into().expect("4 bytes"));
        let meta = Meta {
            at: UNIX_EPOCH + Duration::from_nanos(u64_at(0)),
            len: u64_at(8),
            inflated_len: u64_at(16),
            frame_seq: u64_at(24),
            frames: u32_at(40),
            kind: OpKind::ALL[usize::from(r[44]).min(OpKind::ALL.len() - 1)],
            rsv: r[45],
            opcode: r[46],
            flags: r[47],
            extra: None,
        };
        (meta, u32_at(32) as usize, u32_at(36) as usize)
    }
}

/// A kept message, read in place.
pub struct Kept<'a> {
    /// Payload bytes kept per message (what a late inflation keeps).
    pub cap: usize,
    pub seq: u64,
    pub dir: Dir,
    pub meta: Meta,
    pub extra: Option<&'a Extra>,
    pub data: &'a [u8],
    pub inflated: &'a [u8],
}

impl Kept<'_> {
    /// What the application sent: inflated when it could be, else as it travelled.
    pub fn payload(&self) -> std::borrow::Cow<'_, [u8]> {
        use std::borrow::Cow;
        if self.meta.has(INFLATED) {
            Cow::Borrowed(self.inflated)
        } else if self.meta.has(LAZY) {
            match inflate(self.data, self.cap) {
                Ok((bytes, _)) => Cow::Owned(bytes),
                Err(_) => Cow::Borrowed(self.data),
            }
        } else {
            Cow::Borrowed(self.data)
        }
    }

    /// A copy, as the inspector's consumers take it.
    pub fn message(&self) -> CapturedMessage {
        let m = &self.meta;
        let (mut inflated_len, mut truncated) = (m.inflated_len, m.has(TRUNCATED));
        let inflated = if m.has(INFLATED) {
            Some(Ok(self.inflated.to_vec()))
        } else if m.has(LAZY) {
            Some(inflate(self.data, self.cap).map(|(bytes, total)| {
                inflated_len = total;
                truncated |= total > bytes.len() as u64;
                bytes
            }))
        } else {
            self.extra
                .and_then(|e| e.inflate_error.clone())
                .map(Err::<Vec<u8>, _>)
        };
        CapturedMessage {
            seq: self.seq,
            at: m.at,
            dir: self.dir,
            kind: m.kind,
            compressed: m.has(COMPRESSED),
            len: m.len,
            frames: m.frames,
            data: self.data.to_vec(),
            truncated,
            inflated,
            inflated_len,
            injected: m.has(INJECTED),
            first: CapturedFrame {
                seq: m.frame_seq,
                at: m.at,
                len: self.extra.map_or(m.len, |e| e.first_len),
                fin: m.has(FIN),
                rsv: m.rsv,
                opcode: m.opcode,
                masked: m.has(MASKED),
            },
            more: self.extra.map_or_else(Vec::new, |e| e.more.clone()),
        }
    }
}

/// Inflates a whole compressed message (its own context, tail stripped as sent):
/// the first `cap` bytes and the whole length.
fn inflate(data: &[u8], cap: usize) -> Result<(Vec<u8>, u64), String> {
    let mut z = flate2::Decompress::new(false);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut total = 0u64;
    for (input, flush) in [
        (data, flate2::FlushDecompress::None),
        (&super::DEFLATE_TAIL[..], flate2::FlushDecompress::Sync),
    ] {
        let (made, error) = super::inflate_chunk(&mut z, input, flush, &mut buf, &mut out, cap);
        total += made;
        if let Some(why) = error {
            return Err(why);
        }
    }
    Ok((out, total))
}

/// The smallest and largest block allocated (a larger message gets a block of its
/// own size).
const MIN_BLOCK: usize = 1024;
const MAX_BLOCK: usize = 64 * 1024;

/// Records one after another, and which messages they are.
#[derive(Debug)]
struct Block {
    buf: Vec<u8>,
    first_seq: u64,
    count: u32,
}

/// The kept messages of one direction.
#[derive(Debug)]
pub struct Store {
    blocks: VecDeque<Block>,
    /// A block let go, kept to be reused.
    spare: Option<Vec<u8>>,
    /// The extras of kept messages, by message number.
    extras: VecDeque<(u64, Box<Extra>)>,
    /// Bytes allocated: blocks, spare, extras.
    held: usize,
    budget: usize,
    global: Option<Arc<Budget>>,
    /// Payload bytes kept per message.
    cap: usize,
}

impl Store {
    pub fn new(budget: usize, cap: usize) -> Self {
        Store {
            cap,
            blocks: VecDeque::new(),
            spare: None,
            extras: VecDeque::new(),
            held: 0,
            budget,
            global: None,
        }
    }

    pub fn set_global(&mut self, global: Arc<Budget>) {
        self.global = Some(global);
    }

    /// Bytes allocated for what is kept.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held
    }

    /// Takes `n` more bytes if this direction's budget and the proxy's allow.
    fn claim(&mut self, n: usize) -> bool {
        if self.held + n > self.budget || self.global.as_ref().is_some_and(|g| !g.claim(n)) {
            return false;
        }
        self.held += n;
        true
    }

    fn release(&mut self, n: usize) {
        self.held -= n;
        if let Some(g) = &self.global {
            g.release(n);
        }
    }

    /// Keeps message number `seq` (one more than the last kept, if any) with its
    /// payload and inflated payload (and takes its extra), letting the oldest go as the budgets require;
    /// false when it cannot be kept at all.
    pub fn push(&mut self, seq: u64, meta: &mut Meta, data: &[u8], inflated: &[u8]) -> bool {
        let n = HEADER + data.len() + inflated.len();
        if !self.room(n) {
            return false;
        }
        let header = meta.header(data.len(), inflated.len());
        let b = self.blocks.back_mut().expect("room made");
        if b.count == 0 {
            b.first_seq = seq;
        }
        b.count += 1;
        b.buf.extend_from_slice(&header);
        b.buf.extend_from_slice(data);
        b.buf.extend_from_slice(inflated);
        if let Some(extra) = meta.extra.take() {
            // Rare (fragmented, or not inflatable): counted, not claimed first.
            let cost = extra.cost();
            self.held += cost;
            if let Some(g) = &self.global {
                g.used.fetch_add(cost, std::sync::atomic::Ordering::Relaxed);
            }
            self.extras.push_back((seq, extra));
            while self.held > self.budget && self.blocks.len() > 1 {
                self.let_go();
            }
        }
        true
    }

    /// Makes room for `n` bytes at the end of the newest block: a new (or the
    /// spare) block, letting the oldest go until one can be had.
    fn room(&mut self, n: usize) -> bool {
        loop {
            if let Some(b) = self.blocks.back() {
                if b.buf.capacity() - b.buf.len() >= n {
                    return true;
                }
            }
            if self.new_block(n) {
                return true;
            }
            if !self.let_go() {
                return false;
            }
        }
    }

    fn new_block(&mut self, n: usize) -> bool {
        let buf = match self.spare.take() {
            Some(s) if s.capacity() >= n => s,
            spare => {
                if let Some(s) = spare {
                    self.release(s.capacity());
                }
                let size = self
                    .blocks
                    .back()
                    .map_or(MIN_BLOCK, |b| b.buf.capacity() * 2)
                    .clamp(MIN_BLOCK, MAX_BLOCK)
                    .max(n);
                let room = self.budget.saturating_sub(self.held);
                let size = if room >= n { size.min(room) } else { size };
                let size = if self.claim(size) {
                    size
                } else if size > n && self.claim(n) {
                    n
                } else {
                    return false;
                };
                Vec::with_capacity(size)
            }
        };
        self.blocks.push_back(Block {
            buf,
            first_seq: 0,
            count: 0,
        });
        true
    }

    /// Lets the oldest block go with its messages, keeping it to be reused; false
    /// when nothing is kept.
    fn let_go(&mut self) -> bool {
        let Some(mut old) = self.blocks.pop_front() else {
            return false;
        };
        let gone = old.first_seq + u64::from(old.count);
        while self.extras.front().is_some_and(|(seq, _)| *seq < gone) {
            if let Some((_, e)) = self.extras.pop_front() {
                self.release(e.cost());
            }
        }
        old.buf.clear();
        match &self.spare {
            Some(s) if s.capacity() >= old.buf.capacity() => self.release(old.buf.capacity()),
            _ => {
                if let Some(s) = self.spare.replace(old.buf) {
                    self.release(s.capacity());
                }
            }
        }
        true
    }

    /// The kept messages, oldest first, read in place; those numbered `from` on.
    pub fn iter(&self, dir: Dir, from: u64) -> impl Iterator<Item = Kept<'_>> {
        self.blocks
            .iter()
            .filter(move |b| b.first_seq + u64::from(b.count) > from)
            .flat_map(move |b| {
                let mut at = 0;
                (0..u64::from(b.count)).map(move |i| {
                    let r = &b.buf[at..];
                    let (meta, d, f) = Meta::read(r);
                    at += HEADER + d + f;
                    let seq = b.first_seq + i;
                    let extra = if meta.has(EXTRA) {
                        self.extra(seq)
                    } else {
                        None
                    };
                    Kept {
                        cap: self.cap,
                        seq,
                        dir,
                        meta,
                        extra,
                        data: &r[HEADER..HEADER + d],
                        inflated: &r[HEADER + d..HEADER + d + f],
                    }
                })
            })
            .filter(move |k| k.seq >= from)
    }

    fn extra(&self, seq: u64) -> Option<&Extra> {
        let i = self.extras.partition_point(|(s, _)| *s < seq);
        self.extras
            .get(i)
            .filter(|(s, _)| *s == seq)
            .map(|(_, e)| &**e)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(g) = &self.global {
            g.release(self.held);
        }
    }
}
