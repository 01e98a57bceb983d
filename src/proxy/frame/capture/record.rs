//! One captured message as a direction keeps it: a fixed-size header (what the
//! message says about itself) followed by its payload and inflated payload, written
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

/// A record's header: at, len, inflated_len, frame_seq (u64 each), data and
/// inflated bytes kept, frames (u32 each), kind, rsv, opcode, flags.
pub(super) const HEADER: usize = 48;

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

/// A record header's fields, and the one place their bytes are laid out ([`Meta::read`]
/// reads them back).
struct Header {
    at: u64,
    len: u64,
    inflated_len: u64,
    frame_seq: u64,
    data: usize,
    inflated: usize,
    frames: u32,
    kind: OpKind,
    rsv: u8,
    opcode: u8,
    flags: u8,
}

impl Header {
    fn bytes(&self) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[0..8].copy_from_slice(&self.at.to_le_bytes());
        h[8..16].copy_from_slice(&self.len.to_le_bytes());
        h[16..24].copy_from_slice(&self.inflated_len.to_le_bytes());
        h[24..32].copy_from_slice(&self.frame_seq.to_le_bytes());
        h[32..36].copy_from_slice(&(self.data as u32).to_le_bytes());
        h[36..40].copy_from_slice(&(self.inflated as u32).to_le_bytes());
        h[40..44].copy_from_slice(&self.frames.to_le_bytes());
        h[44..48].copy_from_slice(&[self.kind as u8, self.rsv, self.opcode, self.flags]);
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
) -> [u8; HEADER] {
    Header {
        at,
        len: frame.len,
        inflated_len: 0,
        frame_seq: frame.seq,
        data: frame.len as usize,
        inflated: 0,
        frames: 1,
        kind,
        rsv: frame.rsv,
        opcode: frame.opcode,
        flags: flags_of(frame) | if lazy { LAZY } else { 0 },
    }
    .bytes()
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

    pub(super) fn header(&self, data: usize, inflated: usize) -> [u8; HEADER] {
        Header {
            at: nanos(self.at),
            len: self.len,
            inflated_len: self.inflated_len,
            frame_seq: self.frame_seq,
            data,
            inflated,
            frames: self.frames,
            kind: self.kind,
            rsv: self.rsv,
            opcode: self.opcode,
            flags: self.flags | if self.extra.is_some() { EXTRA } else { 0 },
        }
        .bytes()
    }

    /// The header at the start of `r`, and the lengths of the payload and inflated
    /// payload after it.
    pub(super) fn read(r: &[u8]) -> (Meta, usize, usize) {
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
