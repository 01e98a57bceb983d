//! The ring of recent frame summaries a scanner keeps, each with a short unmasked
//! payload preview; allocated at the first frame, then reused.

use std::time::SystemTime;

use super::Scanner;
use crate::event::FrameSample;

/// A kept frame summary, as [`FrameSample`] but with its preview in the scanner's
/// shared preview buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct SampleHead {
    pub(super) seq: u64,
    pub(super) at: SystemTime,
    pub(super) len: u64,
    pub(super) preview_len: u16,
    pub(super) fin: bool,
    pub(super) rsv: u8,
    pub(super) opcode: u8,
    pub(super) masked: bool,
    pub(super) injected: bool,
}

impl Scanner {
    /// The kept frame summaries, oldest first. The newest one may belong to a frame
    /// whose payload is still arriving (its preview is filled in as it does).
    pub fn samples(&self) -> impl Iterator<Item = FrameSample> + '_ {
        self.samples_since(0)
    }

    /// The kept frame summaries with `seq >= from`, oldest first (only those are
    /// copied out).
    pub fn samples_since(&self, from: u64) -> impl Iterator<Item = FrameSample> + '_ {
        // Until the ring is full `ring_next == ring.len()`, so the first part is empty.
        let next = self.ring_next as usize;
        let slots = (next..self.ring.len()).chain(0..next);
        slots
            .filter(move |&i| self.ring[i].seq >= from)
            .map(move |i| {
                let h = &self.ring[i];
                let at = i * self.preview_bytes as usize;
                FrameSample {
                    seq: h.seq,
                    at: h.at,
                    dir: self.dir,
                    fin: h.fin,
                    rsv: h.rsv,
                    opcode: h.opcode,
                    masked: h.masked,
                    len: h.len,
                    preview: self.previews[at..at + h.preview_len as usize].to_vec(),
                    injected: h.injected,
                }
            })
    }

    /// Writes the summary of the frame whose header just completed into the ring.
    pub(super) fn keep_sample(
        &mut self,
        at: SystemTime,
        fin: bool,
        rsv: u8,
        opcode: u8,
        masked: bool,
        len: u64,
    ) {
        if self.ring_cap == 0 {
            return;
        }
        let slot = self.ring_next as usize;
        let head = SampleHead {
            seq: self.seq,
            at,
            len,
            preview_len: 0,
            fin,
            rsv,
            opcode,
            masked,
            injected: false,
        };
        if slot == self.ring.len() {
            // Still filling the ring, which grows with the frames seen (4, 8, 16...
            // slots, up to `ring`), its previews in step: a tunnel that has carried
            // a frame or two holds room for a few, not for the whole tail. These are
            // the only allocations; once full, slots are reused.
            if slot == self.ring.capacity() {
                let grown = (slot * 2).max(4).min(self.ring_cap as usize);
                self.ring.reserve_exact(grown - slot);
                let mut previews = std::mem::take(&mut self.previews).into_vec();
                previews.resize(grown * self.preview_bytes as usize, 0);
                self.previews = previews.into_boxed_slice();
            }
            self.ring.push(head);
        } else {
            // Reuse the oldest slot, and its part of the preview buffer.
            self.ring[slot] = head;
        }
        // No division on the hot path: the ring wraps by comparison.
        self.last_slot = slot as u16;
        self.ring_next = if slot + 1 == self.ring_cap as usize {
            0
        } else {
            slot as u16 + 1
        };
    }

    /// Records a whole frame the proxy itself sent into this direction's stream (an
    /// operator's injection): a sample marked injected, and a captured message while
    /// capture is on. The peer's frames are not disturbed: injections only happen
    /// between messages (between frames for control frames).
    pub fn note_injected(&mut self, at: SystemTime, opcode: u8, payload: &[u8], masked: bool) {
        let len = payload.len() as u64;
        if self.ring_cap > 0 {
            self.keep_sample(at, true, 0, opcode, masked, len);
            let slot = self.last_slot as usize;
            let n = payload.len().min(self.preview_bytes as usize);
            let start = slot * self.preview_bytes as usize;
            self.previews[start..start + n].copy_from_slice(&payload[..n]);
            self.ring[slot].preview_len = n as u16;
            self.ring[slot].injected = true;
        }
        self.seq += 1;
        if let Some(c) = &mut self.capture {
            c.injected(self.seq - 1, at, opcode, payload);
        }
    }
}
