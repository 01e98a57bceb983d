//! The WebSocket vocabulary (RFC 6455) the proxy, the admin API and the config all
//! speak: opcodes, close codes and which of them may be sent, Close-frame encoding,
//! and masking. A leaf: it imports nothing from the rest of the crate.

/// Frame opcodes (§5.2).
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Close codes the proxy sends itself (§7.4.1 and the IANA registry).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const SERVICE_RESTART: u16 = 1012;
}

/// Control frames (and so close payloads) carry at most this many bytes.
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A close reason fits in a control frame after its two-byte code.
pub const MAX_CLOSE_REASON: usize = 123;

/// Whether a close code may appear on the wire: RFC 6455 §7.4 plus the IANA registry
/// (1012-1014 were registered later). 1004 is reserved, 1005, 1006 and 1015 are for
/// reporting only, and other codes below 3000 are unassigned.
pub fn close_code_may_be_sent(code: u16) -> bool {
    check_close_code(code).is_ok()
}

/// Why a close code may not be sent, as a message for the person who chose it.
pub fn check_close_code(code: u16) -> Result<(), String> {
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => Ok(()),
        1005 | 1006 | 1015 => Err(format!(
            "{code} is reserved for reporting and must never be sent; use 1012 (service restart) or 1001 (going away)"
        )),
        1004 | 1016..=2999 => Err(format!(
            "{code} is reserved by RFC 6455; use 1012 (service restart), 1001 (going away) or 4000-4999"
        )),
        _ => Err(format!("{code} is not a close code (1000 to 4999)")),
    }
}

/// A Close frame: the code, then the reason cut to fit a control frame on a
/// character boundary; masked with `mask` when sent to a server.
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    control_frame(opcode::CLOSE, &payload, mask)
}

/// A control frame (FIN set) with `payload` (at most 125 bytes), masked with `mask`
/// when sent to a server.
pub fn control_frame(op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    debug_assert!(payload.len() as u64 <= MAX_CONTROL_PAYLOAD);
    frame(op, payload, mask)
}

/// A whole, unfragmented frame (FIN set, RSV clear) of any length, masked with
/// `mask` when sent to a server.
pub fn frame(op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.push(0x80 | op);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        None => frame.extend_from_slice(payload),
        Some(key) => {
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
    }
    frame
}

/// Payload length a complete frame header (`header_len` bytes) announces.
pub fn payload_len(hdr: &[u8]) -> u64 {
    match hdr[1] & 0x7F {
        126 => u64::from(u16::from_be_bytes([hdr[2], hdr[3]])),
        127 => u64::from_be_bytes(hdr[2..10].try_into().expect("an 8-byte length")),
        n => u64::from(n),
    }
}

/// A masking key nobody can predict (§5.3), from the operating system's generator.
pub fn mask_key() -> [u8; 4] {
    let mut key = [0; 4];
    if getrandom::fill(&mut key).is_err() {
        // No OS generator (not seen on Linux): fastrand, seeded from the OS at
        // start, is still unpredictable enough to the peer for masking.
        key = fastrand::u32(..).to_ne_bytes();
    }
    key
}

/// Length of a frame header whose second byte is `b1`: 2 fixed bytes, 0, 2 or 8
/// bytes of extended length, and a 4-byte key if masked.
pub fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let key = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + ext + key
}

/// Writes `src` (payload from offset `pos` on; the key index carries on across
/// chunks) into `dst` with the masking key removed, eight bytes at a time in one
/// pass: previews are copied for every frame, so this is on the relay's hot path.
/// `dst` and `src` have the same length.
pub fn unmask_into(dst: &mut [u8], src: &[u8], mask: [u8; 4], pos: u64) {
    debug_assert_eq!(dst.len(), src.len());
    if mask == [0; 4] {
        dst.copy_from_slice(src);
        return;
    }
    let s = (pos & 3) as usize;
    let key = [
        mask[s],
        mask[(s + 1) & 3],
        mask[(s + 2) & 3],
        mask[(s + 3) & 3],
    ];
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let (dst_words, dst_rest) = dst.as_chunks_mut::<8>();
    let (src_words, src_rest) = src.as_chunks::<8>();
    for (d, s) in dst_words.iter_mut().zip(src_words) {
        *d = (u64::from_ne_bytes(*s) ^ word).to_ne_bytes();
    }
    // The remainder starts at a multiple of 8, so the key lines up again.
    for (i, (d, b)) in dst_rest.iter_mut().zip(src_rest).enumerate() {
        *d = b ^ key[i & 3];
    }
}

/// `bytes`, which start at payload offset `pos`, with the masking key removed, a
/// byte at a time (for the few close-payload bytes).
pub fn unmasked(mask: [u8; 4], pos: u64, bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let start = (pos & 3) as usize;
    bytes
        .iter()
        .zip(mask.into_iter().cycle().skip(start))
        .map(|(b, k)| b ^ k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frame_to_client_is_unmasked_with_code_and_reason() {
        assert_eq!(
            close_frame(1012, "bye", None),
            [0x88, 5, 0x03, 0xF4, b'b', b'y', b'e']
        );
    }

    #[test]
    fn frames_use_the_shortest_length_form_and_mask_toward_servers() {
        for (n, header) in [(125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let payload = vec![b'x'; n];
            let f = frame(opcode::TEXT, &payload, None);
            assert_eq!(f.len(), header + n, "{n}");
            assert_eq!(header_len(f[1]), header);
            assert_eq!(payload_len(&f[..header]), n as u64);
            assert_eq!(f[0], 0x81, "FIN, RSV clear");
            let m = frame(opcode::BINARY, &payload, Some([9, 8, 7, 6]));
            assert_eq!(header_len(m[1]), header + 4);
            assert_eq!(payload_len(&m[..header + 4]), n as u64);
            assert!(unmasked([9, 8, 7, 6], 0, &m[header + 4..]).eq(payload.iter().copied()));
        }
    }

    #[test]
    fn close_frame_to_backend_is_masked() {
        let f = close_frame(1001, "", Some([1, 2, 3, 4]));
        assert_eq!(f[..6], [0x88, 0x82, 1, 2, 3, 4]);
        assert_eq!([f[6] ^ 1, f[7] ^ 2], 1001u16.to_be_bytes());
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary_to_fit_a_control_frame() {
        let reason = "é".repeat(100);
        let f = close_frame(1000, &reason, None);
        assert!(f[1] as usize <= 125);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }

    #[test]
    fn close_codes_that_may_be_sent() {
        for ok in [
            1000, 1001, 1003, 1007, 1008, 1011, 1012, 1013, 1014, 3000, 4000, 4999,
        ] {
            assert!(close_code_may_be_sent(ok), "{ok}");
        }
        for no in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!close_code_may_be_sent(no), "{no}");
            assert!(check_close_code(no).unwrap_err().contains(&no.to_string()));
        }
    }

    #[test]
    fn mask_keys_differ() {
        let keys: std::collections::HashSet<_> = (0..64).map(|_| mask_key()).collect();
        assert!(keys.len() > 60, "64 keys, {} distinct", keys.len());
    }
}
