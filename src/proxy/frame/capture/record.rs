//! One captured message as a direction keeps it: a header of 24 or 48 bytes (what
//! the message says about itself) followed by its payload and inflated payload, written
//! into the store's blocks and read back in place.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::event::{CapturedFrame, CapturedMessage, Dir, OpKind};

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
pub(super) const EXTRA: u8 = 64;
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
    pub(super) fn cost(&self) -> usize {
        std::mem::size_of::<(u64, Box<Extra>)>()
            + std::mem::size_of::<Extra>()
            + self.more.capacity() * std::mem::size_of::<CapturedFrame>()
            + self.inflate_error.as_ref().map_or(0, String::capacity)
    }
}

/// A record's header. Every record starts with the short form: at, frame_seq (u64
/// each), data bytes kept (u32), kind (its top bit set when the long form follows),
/// rsv, opcode, flags. A message in one frame, kept whole and not inflated as it
/// passed (most of them) needs no more. The long form adds len, inflated_len (u64
/// each), inflated bytes kept and frames (u32 each).
pub(super) const SHORT: usize = 24;
pub(super) const HEADER: usize = 48;

/// Set in a record's kind byte when its header is the long form.
const LONG: u8 = 0x80;

/// The flags a message's first frame gives it.
fn flags_of(frame: &CapturedFrame) -> u8 {
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
    flags
}

/// Nanoseconds since the Unix epoch, as a record keeps a time.
pub(super) fn nanos(at: SystemTime) -> u64 {
    let at = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

/// Where each field of a record header lies: the short form, then the long form's.
mod at {
    pub const TIME: usize = 0;
    pub const FRAME_SEQ: usize = 8;
    pub const DATA: usize = 16;
    /// Kind (with [`super::LONG`]), rsv, opcode, flags: a byte each.
    pub const KIND: usize = 20;
    pub const LEN: usize = 24;
    pub const INFLATED_LEN: usize = 32;
    pub const INFLATED: usize = 40;
    pub const FRAMES: usize = 44;
}

/// The short form's fields (see [`SHORT`]).
struct Short {
    at: u64,
    frame_seq: u64,
    data: usize,
    kind: OpKind,
    rsv: u8,
    opcode: u8,
    flags: u8,
}

impl Short {
    /// Its bytes; `long`: the long form follows.
    fn bytes(&self, long: bool) -> [u8; SHORT] {
        let mut h = [0u8; SHORT];
        h[at::TIME..at::TIME + 8].copy_from_slice(&self.at.to_le_bytes());
        h[at::FRAME_SEQ..at::FRAME_SEQ + 8].copy_from_slice(&self.frame_seq.to_le_bytes());
        h[at::DATA..at::DATA + 4].copy_from_slice(&(self.data as u32).to_le_bytes());
        let kind = self.kind as u8 | if long { LONG } else { 0 };
        h[at::KIND..at::KIND + 4].copy_from_slice(&[kind, self.rsv, self.opcode, self.flags]);
        h
    }
}

/// The header of a message that is `frame` alone, kept whole (`at`: its time as
/// [`nanos`] gives it; `lazy`: compressed, to be inflated when read): what
/// [`Meta::header`] writes for it, without assembling a [`Meta`] first.
pub(super) fn single_frame_header(
    frame: &CapturedFrame,
    kind: OpKind,
    at: u64,
    lazy: bool,
) -> [u8; SHORT] {
    Short {
        at,
        frame_seq: frame.seq,
        data: frame.len as usize,
        kind,
        rsv: frame.rsv,
        opcode: frame.opcode,
        flags: flags_of(frame) | if lazy { LAZY } else { 0 },
    }
    .bytes(false)
}

impl Meta {
    pub fn new(frame: &CapturedFrame, kind: OpKind) -> Self {
        Meta {
            at: frame.at,
            len: 0,
            inflated_len: 0,
            frame_seq: frame.seq,
            frames: 0,
            kind,
            rsv: frame.rsv,
            opcode: frame.opcode,
            flags: flags_of(frame),
            extra: None,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub fn extra(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// The record header for this message with `data` and `inflated` bytes kept,
    /// and how many of its bytes are used (the short form when it says all).
    pub(super) fn header(&self, data: usize, inflated: usize) -> ([u8; HEADER], usize) {
        let flags = self.flags | if self.extra.is_some() { EXTRA } else { 0 };
        let long =
            self.frames != 1 || self.len != data as u64 || inflated > 0 || self.inflated_len > 0;
        let mut h = [0u8; HEADER];
        let short = Short {
            at: nanos(self.at),
            frame_seq: self.frame_seq,
            data,
            kind: self.kind,
            rsv: self.rsv,
            opcode: self.opcode,
            flags,
        };
        h[..SHORT].copy_from_slice(&short.bytes(long));
        if !long {
            return (h, SHORT);
        }
        h[at::LEN..at::LEN + 8].copy_from_slice(&self.len.to_le_bytes());
        h[at::INFLATED_LEN..at::INFLATED_LEN + 8].copy_from_slice(&self.inflated_len.to_le_bytes());
        h[at::INFLATED..at::INFLATED + 4].copy_from_slice(&(inflated as u32).to_le_bytes());
        h[at::FRAMES..at::FRAMES + 4].copy_from_slice(&self.frames.to_le_bytes());
        (h, HEADER)
    }

    /// The header at the start of `r`: the message, the lengths of the payload and
    /// inflated payload after it, and the header's own.
    pub(super) fn read(r: &[u8]) -> (Meta, usize, usize, usize) {
        let u64_at = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(r[i..i + 4].try_into().expect("4 bytes"));
        let data = u32_at(at::DATA) as usize;
        let [kind, rsv, opcode, flags] = [0, 1, 2, 3].map(|i| r[at::KIND + i]);
        let long = kind & LONG != 0;
        let kind = usize::from(kind & !LONG).min(OpKind::ALL.len() - 1);
        let mut meta = Meta {
            at: UNIX_EPOCH + Duration::from_nanos(u64_at(at::TIME)),
            len: data as u64,
            inflated_len: 0,
            frame_seq: u64_at(at::FRAME_SEQ),
            frames: 1,
            kind: OpKind::ALL[kind],
            rsv,
            opcode,
            flags,
            extra: None,
        };
        if !long {
            return (meta, data, 0, SHORT);
        }
        meta.len = u64_at(at::LEN);
        meta.inflated_len = u64_at(at::INFLATED_LEN);
        meta.frames = u32_at(at::FRAMES);
        (meta, data, u32_at(at::INFLATED) as usize, HEADER)
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
                // An extra without fragments (an inflate error) says nothing of it.
                len: self
                    .extra
                    .filter(|e| !e.more.is_empty())
                    .map_or(m.len, |e| e.first_len),
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
        (
            &super::inflate::DEFLATE_TAIL[..],
            flate2::FlushDecompress::Sync,
        ),
    ] {
        let (made, error) =
            super::inflate::inflate_chunk(&mut z, input, flush, &mut buf, &mut out, cap);
        total += made;
        if let Some(why) = error {
            return Err(why);
        }
    }
    Ok((out, total))
}
