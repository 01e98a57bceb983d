//! A whole message as the inspector keeps it.

use std::time::SystemTime;

use super::{Dir, OpKind};

/// A whole message as the inspector captured it (`[inspect] capture`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedMessage {
    /// Numbered per direction from 0, in the order messages ended.
    pub seq: u64,
    /// When its first frame began.
    pub at: SystemTime,
    pub dir: Dir,
    /// Text, Binary, Close, Ping or Pong; Continuation for a message whose first
    /// frame was not seen (capture began mid-message).
    pub kind: OpKind,
    /// RSV1 on its first frame: compressed with permessage-deflate.
    pub compressed: bool,
    /// Payload bytes on the wire, whole message.
    pub len: u64,
    /// Frames it came in.
    pub frames: u32,
    /// The (unmasked) payload, at most the cap.
    pub data: Vec<u8>,
    /// `data` holds only the first bytes of it.
    pub truncated: bool,
    /// For a compressed message: its inflated payload (at most the cap; `truncated`
    /// applies to it too), or why it could not be inflated.
    pub inflated: Option<Result<Vec<u8>, String>>,
    /// Inflated length of a compressed message (all of it, kept or not).
    pub inflated_len: u64,
    /// Sent by the proxy on an operator's request (inject), not by the peer.
    pub injected: bool,
    /// Its first frame as it went, and the frames after it (at most
    /// [`MAX_FRAMES_KEPT`] in all; `frames` counts them all): each frame's payload
    /// is the next `len` bytes of `data`. Most messages are one frame, kept without
    /// an allocation of its own.
    pub first: CapturedFrame,
    pub more: Vec<CapturedFrame>,
}

impl CapturedMessage {
    /// What the application sent: the inflated payload of a compressed message
    /// (when it could be inflated), else the bytes as they travelled.
    pub fn payload(&self) -> &[u8] {
        match &self.inflated {
            Some(Ok(inflated)) => inflated,
            _ => &self.data,
        }
    }

    /// Its frames as they went, in order.
    pub fn frame_list(&self) -> impl Iterator<Item = &CapturedFrame> {
        std::iter::once(&self.first).chain(&self.more)
    }
}

/// A captured message that contains what a search looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    pub tunnel: super::TunnelId,
    pub dir: Dir,
    /// The message's `seq` in its direction.
    pub seq: u64,
    pub at: SystemTime,
    pub kind: OpKind,
    /// The match with some context around it.
    pub snippet: String,
}

/// Frames kept per captured message; a message in more frames keeps the first.
pub const MAX_FRAMES_KEPT: usize = 256;

/// One frame of a captured message, as it went on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapturedFrame {
    /// The frame's number in its direction (as in [`super::FrameSample`]).
    pub seq: u64,
    pub at: SystemTime,
    /// Payload bytes.
    pub len: u64,
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits.
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
}

/// One direction of a tunnel an operator holds: the proxy has stopped reading what
/// that side sends, which waits in the socket buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldState {
    /// The held direction (what its sender sends is held).
    pub dir: Dir,
    pub since: SystemTime,
    /// Bytes waiting in the kernel's receive buffer, as far as the proxy can look
    /// (`None`: it cannot, for a stream inside an HTTP/2 connection).
    pub waiting_bytes: Option<u64>,
    /// Whole frames among them (plain connections only; TLS bytes are encrypted).
    pub waiting_frames: Option<u64>,
    /// The look ahead was cut at its buffer's size: at least this much waits.
    pub at_least: bool,
    /// The waiting bytes are TLS records (counted, not readable).
    pub encrypted: bool,
}

impl Default for CapturedFrame {
    fn default() -> Self {
        CapturedFrame {
            seq: 0,
            at: std::time::UNIX_EPOCH,
            len: 0,
            fin: true,
            rsv: 0,
            opcode: 0,
            masked: false,
        }
    }
}
