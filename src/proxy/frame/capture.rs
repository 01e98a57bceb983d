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

use crate::event::{CapturedMessage as Message, Dir, OpKind};
use crate::ws::unmask_into;

/// The message being assembled.
#[derive(Debug)]
struct Building {
    message: Message,
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
    ring: VecDeque<Message>,
    /// A data message spanning fragments.
    data: Option<Building>,
    /// A control frame (never fragmented; may sit between data fragments).
    control: Option<Building>,
    /// Which of the two the frame flowing now belongs to.
    in_control: bool,
    next_seq: u64,
}

impl Capture {
    pub fn new(dir: Dir, cap: usize, budget: usize) -> Self {
        Self {
            dir,
            cap,
            budget,
            used: 0,
            ring: VecDeque::new(),
            data: None,
            control: None,
            in_control: false,
            next_seq: 0,
        }
    }

    /// A frame begins (its header has been read).
    pub fn begin(&mut self, at: SystemTime, kind: OpKind, rsv: u8, len: u64, mask: [u8; 4]) {
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
            },
            mask,
            pos: 0,
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
        if let Some(b) = done {
            self.keep(b.message);
        }
    }

    fn keep(&mut self, mut message: Message) {
        message.seq = self.next_seq;
        self.next_seq += 1;
        message.data.shrink_to_fit();
        self.used += message.data.len();
        self.ring.push_back(message);
        while self.used > self.budget {
            let Some(old) = self.ring.pop_front() else {
                break;
            };
            self.used -= old.data.len();
        }
    }

    /// The kept messages, oldest first.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
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
mod tests {
    use super::*;

    fn t() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    fn frame(c: &mut Capture, kind: OpKind, fin: bool, payload: &[u8], mask: [u8; 4]) {
        let masked: Vec<u8> = payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        c.begin(t(), kind, 0, payload.len() as u64, mask);
        // Split anywhere: the key offset must carry on.
        let (a, b) = masked.split_at(masked.len() / 2);
        c.payload(a);
        c.payload(b);
        c.end(fin);
    }

    #[test]
    fn fragments_are_reassembled_and_a_ping_between_them_kept_apart() {
        let mut c = Capture::new(Dir::ClientToBackend, 1024, 1 << 20);
        frame(&mut c, OpKind::Text, false, b"hello, ", [1, 2, 3, 4]);
        frame(&mut c, OpKind::Ping, true, b"are you there", [5, 6, 7, 8]);
        frame(&mut c, OpKind::Continuation, false, b"whole ", [9, 9, 9, 9]);
        frame(&mut c, OpKind::Continuation, true, b"world", [0, 0, 0, 0]);
        let got: Vec<_> = c.messages().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].kind, &got[0].data[..]),
            (OpKind::Ping, &b"are you there"[..])
        );
        assert_eq!(got[1].kind, OpKind::Text);
        assert_eq!(got[1].data, b"hello, whole world");
        assert_eq!(
            (got[1].frames, got[1].len, got[1].truncated),
            (3, 18, false)
        );
        assert_eq!((got[0].seq, got[1].seq), (0, 1));
    }

    #[test]
    fn a_long_message_is_kept_truncated_at_the_cap_and_marked() {
        let mut c = Capture::new(Dir::BackendToClient, 8, 1 << 20);
        frame(&mut c, OpKind::Binary, true, &[7u8; 100], [0; 4]);
        let m = c.messages().next().unwrap();
        assert_eq!((m.data.len(), m.len, m.truncated), (8, 100, true));
    }

    #[test]
    fn the_budget_evicts_the_oldest_messages_first() {
        let mut c = Capture::new(Dir::BackendToClient, 100, 250);
        for i in 0..5u8 {
            frame(&mut c, OpKind::Binary, true, &[i; 100], [0; 4]);
        }
        let kept: Vec<u64> = c.messages().map(|m| m.seq).collect();
        assert_eq!(kept, [3, 4], "within 250 bytes, newest kept");
        assert_eq!(c.bytes_held(), 200);
    }

    #[test]
    fn a_continuation_without_its_start_is_kept_as_such() {
        let mut c = Capture::new(Dir::ClientToBackend, 64, 1024);
        frame(&mut c, OpKind::Continuation, true, b"tail", [3, 1, 4, 1]);
        let m = c.messages().next().unwrap();
        assert_eq!((m.kind, &m.data[..]), (OpKind::Continuation, &b"tail"[..]));
    }

    #[test]
    fn nothing_is_held_before_a_frame_is_captured() {
        let c = Capture::new(Dir::ClientToBackend, 65536, 1 << 20);
        assert_eq!(c.bytes_held(), 0);
        assert_eq!(c.messages().count(), 0);
    }
}
