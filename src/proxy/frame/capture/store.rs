//! Where one direction's captured messages are kept: one after another, each a
//! record header (24 bytes, 48 for the few that need more) followed by its
//! payload and inflated payload, in a few
//! blocks (growing from 1 KiB to 64 KiB). Keeping a message appends to the newest
//! block (a single-frame message is written there as its bytes pass, unmasked on
//! the way); making room lets the oldest block go whole (its messages with it) and
//! reuses it. Nothing is allocated per message, and nothing old is read to evict:
//! under a flood of captured tunnels the memory touched per message is the record
//! written, in order.
//!
//! What is held (the blocks as allocated) counts against the direction's budget and
//! the proxy-wide one, which is claimed a block at a time rather than per message.

use super::record::{Extra, Kept, Meta, EXTRA, SHORT};
use crate::event::Dir;
use crate::ws::unmask_into;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

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

/// The smallest and largest block allocated (a larger message gets a block of its
/// own size).
const MIN_BLOCK: usize = 1024;
const MAX_BLOCK: usize = 64 * 1024;

/// [`Store::open_at`] when no message is being written in place.
const NOT_OPEN: u32 = u32::MAX;

/// Records one after another, and which messages they are.
#[derive(Debug)]
struct Block {
    buf: Vec<u8>,
    first_seq: u64,
    count: u32,
}

/// The kept messages of one direction. `repr(C)`: what keeping a message touches
/// comes first (see [`super::Capture`]).
#[derive(Debug)]
#[repr(C)]
pub struct Store {
    /// The block written now (no capacity before the first message), its fields
    /// inline so that keeping a message reads nothing else: its bytes, its count
    /// (and, read only when a block begins, its first message's number).
    head: Vec<u8>,
    head_count: u32,
    /// Where the message being written in place began in `head` ([`Store::open`]),
    /// or [`NOT_OPEN`].
    open_at: u32,
    head_first_seq: u64,
    /// The blocks before it, oldest first.
    older: VecDeque<Block>,
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
    /// Where the fields keeping a message touches end (the head block and the open
    /// record's start come first).
    #[cfg(test)]
    pub const HOT_END: usize = std::mem::offset_of!(Store, open_at) + 4;

    pub fn new(budget: usize, cap: usize) -> Self {
        Store {
            cap,
            head: Vec::new(),
            head_first_seq: 0,
            head_count: 0,
            open_at: NOT_OPEN,
            older: VecDeque::new(),
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
    /// payload and inflated payload (and takes its extra), letting the oldest go as
    /// the budgets require; false when it cannot be kept at all.
    pub fn push(&mut self, seq: u64, meta: &mut Meta, data: &[u8], inflated: &[u8]) -> bool {
        let (header, hlen) = meta.header(data.len(), inflated.len());
        let n = hlen + data.len() + inflated.len();
        if !self.make_room(seq, n) {
            return false;
        }
        self.head_count += 1;
        let b = &mut self.head;
        b.extend_from_slice(&header[..hlen]);
        b.extend_from_slice(data);
        b.extend_from_slice(inflated);
        prefetch_for_write(b.spare_capacity_mut(), n);
        if let Some(extra) = meta.extra.take() {
            // Rare (fragmented, or not inflatable): counted, not claimed first.
            let cost = extra.cost();
            self.held += cost;
            if let Some(g) = &self.global {
                g.used.fetch_add(cost, Relaxed);
            }
            self.extras.push_back((seq, extra));
            while self.held > self.budget && !self.older.is_empty() {
                self.let_go();
            }
        }
        true
    }

    /// Begins keeping message number `seq`, one frame of `len` payload bytes that
    /// [`Store::write`] puts in place as they pass (no copy between) and
    /// [`Store::commit`] counts. `header` says all but the payload: no extra,
    /// nothing inflated, nothing cut. A message no budget has room for is not
    /// opened: writing and committing it then do nothing.
    #[inline]
    pub fn open(&mut self, seq: u64, header: &[u8; SHORT], len: usize) {
        if !self.make_room(seq, SHORT + len) {
            return;
        }
        let Ok(at) = u32::try_from(self.head.len()) else {
            return;
        };
        self.open_at = at;
        self.head.extend_from_slice(header);
    }

    /// Readies the head block for message number `seq`, `n` bytes, dropping a
    /// message left open: false when no budget has room.
    #[inline]
    fn make_room(&mut self, seq: u64, n: usize) -> bool {
        self.abandon();
        let b = &self.head;
        if b.capacity() - b.len() < n && !self.room(n) {
            return false;
        }
        if self.head_count == 0 {
            self.head_first_seq = seq;
        }
        true
    }

    /// A read of `wire` bytes is about to be scanned: asks for the lines of the head
    /// block its records will likely take, up to 16 (a guess: a record is a header
    /// of 24 bytes against a frame's 2 to 14, so a third more than the read from
    /// 64-byte payloads up; a wrong guess only costs a hint). Without it, only the first
    /// record of a read finds its lines waiting (prefetched after the previous
    /// read's last record); the others, written right after, each wait on memory.
    #[inline]
    pub fn expect(&mut self, wire: usize) {
        let bytes = (wire + wire / 3 + SHORT).min(16 * 64);
        prefetch_for_write(self.head.spare_capacity_mut(), bytes);
    }

    /// Payload bytes of the message opened, as on the wire: unmasked with `mask`
    /// from payload offset `pos`.
    pub fn write(&mut self, chunk: &[u8], mask: [u8; 4], pos: u64) {
        if self.open_at == NOT_OPEN {
            return;
        }
        let buf = &mut self.head;
        let have = buf.len();
        // Never past what `open` made room for (the scanner hands over no more than
        // the frame's length).
        let room = buf.capacity() - have;
        let chunk = &chunk[..chunk.len().min(room)];
        buf.resize(have + chunk.len(), 0);
        unmask_into(&mut buf[have..], chunk, mask, pos);
    }

    /// The message opened is whole: it is kept from now on.
    pub fn commit(&mut self) {
        let at = std::mem::replace(&mut self.open_at, NOT_OPEN);
        if at != NOT_OPEN {
            self.head_count += 1;
            let n = self.head.len() - at as usize;
            prefetch_for_write(self.head.spare_capacity_mut(), n);
        }
    }

    /// Drops a message opened and never committed (its stream ended mid-frame).
    fn abandon(&mut self) {
        let at = std::mem::replace(&mut self.open_at, NOT_OPEN);
        if at != NOT_OPEN {
            self.head.truncate(at as usize);
        }
    }

    /// Makes room for `n` bytes at the end of the head block when it has too little:
    /// a new (or the spare) block, letting the oldest go until one can be had.
    #[inline(never)]
    fn room(&mut self, n: usize) -> bool {
        loop {
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
                let size = (self.head.capacity() * 2)
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
        let old = self.take_head();
        self.head = buf;
        if old.buf.capacity() > 0 {
            self.older.push_back(old);
        }
        true
    }

    /// The head block, taken whole (an empty one stays).
    fn take_head(&mut self) -> Block {
        Block {
            buf: std::mem::take(&mut self.head),
            first_seq: std::mem::take(&mut self.head_first_seq),
            count: std::mem::take(&mut self.head_count),
        }
    }

    /// Lets the oldest block go with its messages (the head block when it is the
    /// only one), keeping it to be reused; false when nothing is kept.
    fn let_go(&mut self) -> bool {
        let mut old = match self.older.pop_front() {
            Some(old) => old,
            None if self.head.capacity() > 0 => self.take_head(),
            None => return false,
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
        let head = (&self.head[..], self.head_first_seq, self.head_count);
        self.older
            .iter()
            .map(|b| (&b.buf[..], b.first_seq, b.count))
            .chain(std::iter::once(head))
            .filter(move |&(_, first, count)| first + u64::from(count) > from)
            .flat_map(move |(buf, first_seq, count)| {
                let mut at = 0;
                (0..u64::from(count)).map(move |i| {
                    let r = &buf[at..];
                    let (meta, d, f, h) = Meta::read(r);
                    at += h + d + f;
                    let seq = first_seq + i;
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
                        data: &r[h..h + d],
                        inflated: &r[h + d..h + d + f],
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

/// Asks the CPU to bring the lines of `next` that a record of `bytes` would cover
/// (the one just written: a direction's messages tend to look alike) into cache
/// now, so that writing the next record does not wait on memory: with many tunnels
/// captured, each direction's ring is cold by the time its next message comes, and
/// the stores to it stall the relay. At most 16 lines.
fn prefetch_for_write(next: &mut [std::mem::MaybeUninit<u8>], bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        let want = bytes.min(next.len()).min(16 * 64);
        let skew = next.as_ptr() as usize & 63;
        // The first line (maybe partly written already), then each line after it.
        let mut at = 0;
        while at < want {
            // SAFETY: a prefetch is only a hint: it reads nothing into the program
            // and never faults; the address is inside a live allocation anyway.
            unsafe { _mm_prefetch::<_MM_HINT_ET0>(next[at].as_ptr().cast()) };
            at = if at == 0 { 64 - skew } else { at + 64 };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (next, bytes);
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(g) = &self.global {
            g.release(self.held);
        }
    }
}
