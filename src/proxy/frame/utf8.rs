//! UTF-8 checking of uncompressed text messages as their bytes go by, carrying an
//! incomplete sequence across frames and chunks in three bytes of state.

use super::Scanner;
use crate::ws::unmask_into;

/// Streaming UTF-8 validation: the bytes of a sequence cut off at the end of the
/// last chunk, waiting for the rest.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Utf8Tail {
    pub(super) bytes: [u8; 3],
    pub(super) len: u8,
}

impl Utf8Tail {
    /// Takes the next bytes of the text. False if the text so far cannot be UTF-8.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> bool {
        if self.len > 0 {
            // Finish the cut-off sequence first; its lead byte says how long it is.
            let have = self.len as usize;
            let need = match self.bytes[0] {
                0xF0.. => 4,
                0xE0.. => 3,
                _ => 2,
            };
            let take = (need - have).min(bytes.len());
            let mut seq = [0u8; 4];
            seq[..have].copy_from_slice(&self.bytes[..have]);
            seq[have..have + take].copy_from_slice(&bytes[..take]);
            match std::str::from_utf8(&seq[..have + take]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_some() => return false,
                Err(_) => {
                    // Still incomplete, and `bytes` is used up.
                    self.bytes[..have + take].copy_from_slice(&seq[..have + take]);
                    self.len = (have + take) as u8;
                    return true;
                }
            }
            bytes = &bytes[take..];
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) if e.error_len().is_some() => false,
            Err(e) => {
                // A valid prefix of a sequence (at most three bytes) ends the chunk.
                let rest = &bytes[e.valid_up_to()..];
                self.bytes[..rest.len()].copy_from_slice(rest);
                self.len = rest.len() as u8;
                true
            }
        }
    }
}

impl Scanner {
    /// Checks the next payload bytes of a text message (masked as on the wire,
    /// starting at offset `pos` of the current frame). False once they cannot be
    /// UTF-8.
    pub(super) fn utf8_ok(&mut self, chunk: &[u8]) -> bool {
        if self.mask == [0; 4] {
            return self.utf8.feed(chunk);
        }
        // Unmasked a piece at a time into a stack buffer: nothing is kept.
        let mut scratch = [0u8; 1024];
        let mut pos = self.pos;
        for piece in chunk.chunks(scratch.len()) {
            let buf = &mut scratch[..piece.len()];
            unmask_into(buf, piece, self.mask, pos);
            if !self.utf8.feed(buf) {
                return false;
            }
            pos += piece.len() as u64;
        }
        true
    }
}
