//! The frame scanner both engines run on every byte they relay, so the two are
//! compared doing the same work: skip each direction's HTTP head, then follow the
//! WebSocket framing across chunks and count frames and payload bytes.

#[derive(Default)]
pub struct Scanner {
    head_done: bool,
    /// The last bytes of the head seen so far, to find "\r\n\r\n" across chunks.
    tail: u32,
    hdr: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    left: u64,
    pub frames: u64,
    pub payload: u64,
}

impl Scanner {
    /// Payload bytes of the current frame still to come (0 while in the HTTP head
    /// or a frame header).
    pub fn left(&self) -> u64 {
        if self.head_done {
            self.left
        } else {
            0
        }
    }

    /// `n` payload bytes went by without being shown (spliced).
    pub fn skip(&mut self, n: u64) {
        self.left -= n;
        self.payload += n;
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        if !self.head_done {
            let mut i = 0;
            while i < data.len() {
                self.tail = (self.tail << 8) | data[i] as u32;
                i += 1;
                if self.tail == 0x0d0a_0d0a {
                    self.head_done = true;
                    break;
                }
            }
            data = &data[i..];
        }
        if !self.head_done {
            return;
        }
        while !data.is_empty() {
            if self.left > 0 {
                let n = (self.left.min(data.len() as u64)) as usize;
                self.left -= n as u64;
                self.payload += n as u64;
                data = &data[n..];
                continue;
            }
            // Gather a header: 2 bytes, then what they say follows.
            let need = |h: &[u8; 14], have: usize| -> usize {
                if have < 2 {
                    return 2;
                }
                let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
                2 + mask
                    + match h[1] & 0x7f {
                        126 => 2,
                        127 => 8,
                        _ => 0,
                    }
            };
            while self.have < need(&self.hdr, self.have) && !data.is_empty() {
                self.hdr[self.have] = data[0];
                self.have += 1;
                data = &data[1..];
            }
            if self.have < need(&self.hdr, self.have) {
                return;
            }
            let h = &self.hdr;
            self.left = match h[1] & 0x7f {
                126 => u16::from_be_bytes([h[2], h[3]]) as u64,
                127 => u64::from_be_bytes(h[2..10].try_into().unwrap()),
                n => n as u64,
            };
            self.frames += 1;
            self.have = 0;
        }
    }
}
