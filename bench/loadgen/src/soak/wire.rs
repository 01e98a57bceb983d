//! The soak's message format: encoding, decoding and checking sequence-numbered,
//! checksummed messages, and the pseudo-random payload pattern both ends derive.

use super::*;

pub(super) const KIND_CLIENT_DATA: u8 = 1;

pub(super) const KIND_BACKEND_DATA: u8 = 2;

pub(super) const KIND_CLIENT_END: u8 = 3;

pub(super) const KIND_BACKEND_END: u8 = 4;

pub(super) const HEADER: usize = 1 + 4 + 8 + 4;

pub(super) const SUM: usize = 8;

/// FNV-1a, 64 bits.
pub(super) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// splitmix64: one well-mixed 64-bit value from another.
pub(super) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A small PRNG for jitter.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }
    pub(super) fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The payload pattern every message is a slice of.
pub(super) struct Pattern {
    pub(super) bytes: Vec<u8>,
    pub(super) max: usize,
}

impl Pattern {
    pub(super) fn new(max: usize) -> Pattern {
        let mut r = Rng(0x5eed);
        let bytes = (0..max + 65536).map(|_| r.next() as u8).collect();
        Pattern { bytes, max }
    }

    /// The payload of data message `seq` of `kind` in `tunnel`.
    pub(super) fn payload(&self, kind: u8, tunnel: u32, seq: u64) -> &[u8] {
        let h = mix((u64::from(kind) << 56) ^ (u64::from(tunnel) << 32) ^ mix(seq));
        let band = h % 100;
        let r = (h >> 8) as usize;
        let len = match band {
            0..=59 => r % 128,
            60..=89 => 128 + r % 1920,
            90..=98 => 2048 + r % 14336,
            _ => 16384 + r % (self.max.saturating_sub(16384) + 1),
        }
        .min(self.max);
        let off = (h >> 40) as usize % (self.bytes.len() - len + 1);
        &self.bytes[off..off + len]
    }

    /// Data message `seq`: every 8th goes as text (hex), the others binary.
    pub(super) fn data(&self, kind: u8, tunnel: u32, seq: u64) -> Message {
        encode(
            kind,
            tunnel,
            seq,
            self.payload(kind, tunnel, seq),
            seq % 8 == 7,
        )
    }
}

pub(super) fn encode(kind: u8, tunnel: u32, seq: u64, payload: &[u8], text: bool) -> Message {
    let mut b = Vec::with_capacity(HEADER + payload.len() + SUM);
    b.push(kind);
    b.extend_from_slice(&tunnel.to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    let sum = fnv1a(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    if text {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(b.len() * 2);
        for x in b {
            s.push(HEX[usize::from(x >> 4)] as char);
            s.push(HEX[usize::from(x & 15)] as char);
        }
        Message::Text(s.into())
    } else {
        Message::Binary(Bytes::from(b))
    }
}

pub(super) fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// One message as received, checked for framing and checksum.
pub(super) struct Decoded {
    pub(super) kind: u8,
    pub(super) tunnel: u32,
    pub(super) seq: u64,
    pub(super) text: bool,
    /// Offset and length of the payload in `raw`.
    pub(super) payload: (usize, usize),
    pub(super) raw: Vec<u8>,
}

impl Decoded {
    pub(super) fn payload(&self) -> &[u8] {
        &self.raw[self.payload.0..self.payload.0 + self.payload.1]
    }
}

pub(super) fn decode(m: &Message) -> Result<Decoded, String> {
    let (raw, text) = match m {
        Message::Binary(b) => (b.to_vec(), false),
        Message::Text(t) => (
            unhex(t.as_bytes()).ok_or("a text message that is not hex")?,
            true,
        ),
        _ => return Err("not a data message".into()),
    };
    if raw.len() < HEADER + SUM {
        return Err(format!("{} bytes: shorter than a header", raw.len()));
    }
    let len = u32::from_le_bytes(raw[13..17].try_into().expect("4 bytes")) as usize;
    if raw.len() != HEADER + len + SUM {
        return Err(format!(
            "{} bytes, but the header says {len} of payload",
            raw.len()
        ));
    }
    let body = raw.len() - SUM;
    let sum = u64::from_le_bytes(raw[body..].try_into().expect("8 bytes"));
    if fnv1a(&raw[..body]) != sum {
        return Err("checksum mismatch".into());
    }
    Ok(Decoded {
        kind: raw[0],
        tunnel: u32::from_le_bytes(raw[1..5].try_into().expect("4 bytes")),
        seq: u64::from_le_bytes(raw[5..13].try_into().expect("8 bytes")),
        text,
        payload: (HEADER, len),
        raw,
    })
}

// --- sequence checking ------------------------------------------------------------

/// What one receiver has seen of one stream.
#[derive(Default)]
pub(super) struct SeqCheck {
    pub(super) next: u64,
    /// Sequence numbers skipped over (bounded), so a late arrival counts as reordered
    /// rather than duplicated.
    pub(super) missing: BTreeSet<u64>,
    pub(super) received: u64,
}

pub(super) const MISSING_CAP: usize = 4096;

pub(super) enum Seen {
    InOrder,
    OutOfOrder,
    Duplicate,
}

impl SeqCheck {
    pub(super) fn accept(&mut self, s: u64) -> Seen {
        if s == self.next {
            self.next += 1;
            self.received += 1;
            Seen::InOrder
        } else if s > self.next {
            let mut k = self.next;
            while k < s && self.missing.len() < MISSING_CAP {
                self.missing.insert(k);
                k += 1;
            }
            self.next = s + 1;
            self.received += 1;
            Seen::OutOfOrder
        } else if self.missing.remove(&s) {
            self.received += 1;
            Seen::OutOfOrder
        } else {
            Seen::Duplicate
        }
    }
}

// --- shared counters --------------------------------------------------------------

#[derive(Default)]
pub(super) struct Stream {
    pub(super) sent: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) duplicated: AtomicU64,
    pub(super) reordered: AtomicU64,
    pub(super) corrupt: AtomicU64,
}

impl Stream {
    pub(super) fn seen(&self, s: Seen) {
        match s {
            Seen::InOrder => &self.received,
            Seen::OutOfOrder => {
                self.received.fetch_add(1, Ordering::Relaxed);
                &self.reordered
            }
            Seen::Duplicate => &self.duplicated,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    pub(super) fn bad(&self) -> u64 {
        Self::get(&self.lost)
            + Self::get(&self.duplicated)
            + Self::get(&self.reordered)
            + Self::get(&self.corrupt)
    }
}
