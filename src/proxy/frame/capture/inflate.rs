//! Inflating what a direction's permessage-deflate messages carry, beside the relay
//! (whose bytes are never touched), and what the handshake negotiated.

use super::record::Meta;
use super::TRUNCATED;

/// What RFC 7692 §7.2.2 has the sender strip from each message's end.
pub(super) const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Inflating one direction's compressed messages as their bytes pass (all of them,
/// kept or not, so the compression context stays in step).
pub(super) struct Inflate {
    pub(super) z: flate2::Decompress,
    /// No context takeover: each message starts afresh.
    pub(super) reset: bool,
    /// Why inflated text cannot be trusted from now on.
    pub(super) broken: Option<String>,
    /// The unmasked bytes of the chunk being inflated.
    pub(super) scratch: Vec<u8>,
    /// Where inflating writes before the kept part is copied (allocated once).
    pub(super) out: Vec<u8>,
}

impl std::fmt::Debug for Inflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflate")
            .field("reset", &self.reset)
            .field("broken", &self.broken)
            .finish()
    }
}

impl Inflate {
    /// Inflates `input` (unmasked compressed bytes of the message `meta` describes),
    /// keeping in `inflated` what fits under `cap` and counting the rest; `last`:
    /// the message's end (its stripped tail), which flushes.
    pub(super) fn feed(
        &mut self,
        input: &[u8],
        inflated: &mut Vec<u8>,
        meta: &mut Option<Meta>,
        cap: usize,
        last: bool,
    ) {
        if self.broken.is_some() {
            return;
        }
        let flush = if last {
            flate2::FlushDecompress::Sync
        } else {
            flate2::FlushDecompress::None
        };
        // Sized once, never cleared: inflating overwrites what it reports.
        self.out.resize(8192, 0);
        let before = inflated.len();
        let (made, error) = inflate_chunk(&mut self.z, input, flush, &mut self.out, inflated, cap);
        if let Some(m) = meta {
            m.inflated_len += made;
            if ((inflated.len() - before) as u64) < made {
                m.flags |= TRUNCATED;
            }
        }
        if error.is_some() {
            self.broken = error;
        }
    }
}

/// Inflates `input` with `z` through `buf`, appending what it makes to `kept` up to
/// `cap` bytes in all: how many bytes it made, and why it stopped early if it did.
pub(super) fn inflate_chunk(
    z: &mut flate2::Decompress,
    input: &[u8],
    flush: flate2::FlushDecompress,
    buf: &mut [u8],
    kept: &mut Vec<u8>,
    cap: usize,
) -> (u64, Option<String>) {
    let mut rest = input;
    let mut total = 0u64;
    loop {
        let (in0, out0) = (z.total_in(), z.total_out());
        if let Err(e) = z.decompress(rest, buf, flush) {
            return (total, Some(format!("not valid deflate data: {e}")));
        }
        let used = (z.total_in() - in0) as usize;
        let made = (z.total_out() - out0) as usize;
        rest = &rest[used..];
        total += made as u64;
        let room = cap.saturating_sub(kept.len()).min(made);
        kept.extend_from_slice(&buf[..room]);
        // Done once all input is in and the output buffer was not filled.
        if (rest.is_empty() && made < buf.len()) || (used == 0 && made == 0) {
            return (total, None);
        }
    }
}

/// Whether each side's messages start a fresh compression context, from the
/// negotiated `Sec-WebSocket-Extensions` (RFC 7692 §7.1.1): `(client→backend,
/// backend→client)`, or None when permessage-deflate was not negotiated.
pub fn deflate_resets(extensions: &str) -> Option<(bool, bool)> {
    let offer = extensions.split(',').find(|e| {
        e.split(';')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("permessage-deflate"))
    })?;
    let has = |name: &str| {
        offer.split(';').skip(1).any(|p| {
            p.split('=')
                .next()
                .is_some_and(|k| k.trim().eq_ignore_ascii_case(name))
        })
    };
    Some((
        has("client_no_context_takeover"),
        has("server_no_context_takeover"),
    ))
}
