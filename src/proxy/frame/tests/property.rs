//! Property test: random valid-or-mis-masked streams, chopped anywhere, scanned
//! as the generator says they were made.

use super::*;

/// One step of a generated stream; turned into frames by `encode`.
#[derive(Debug, Clone)]
enum Gen {
    /// A data fragment: starts a message, or continues the open one.
    Data {
        binary: bool,
        len: usize,
        more: bool,
    },
    /// A ping (0), pong (1) or close (2), possibly between fragments.
    Control { which: u8, len: usize, code: u16 },
}

/// What was encoded, frame by frame.
#[derive(Debug)]
struct Truth {
    stream: Vec<u8>,
    /// (opcode, fin, masked, len, plaintext preview)
    frames: Vec<(u8, bool, bool, u64, Vec<u8>)>,
    starts: Vec<usize>,
    ends: Vec<usize>,
    wire: [u64; 7],
    payload: [u64; 7],
    messages: u64,
    violations: u64,
    close: Option<CloseInfo>,
}

const PREVIEW: usize = 16;
const VALID_CODES: [u16; 6] = [1000, 1001, 1008, 1011, 3000, 4999];

fn data_len() -> impl Strategy<Value = usize> {
    // All three length encodings.
    prop_oneof![0usize..=125, 126usize..=65535, 65536usize..70000]
}

fn gen_step() -> impl Strategy<Value = Gen> {
    prop_oneof![
        3 => (any::<bool>(), data_len(), any::<bool>())
            .prop_map(|(binary, len, more)| Gen::Data { binary, len, more }),
        1 => (0u8..3, 0usize..=125, prop::sample::select(&VALID_CODES[..]))
            .prop_map(|(which, len, code)| Gen::Control { which, len, code }),
    ]
}

fn encode(dir: Dir, steps: &[(Gen, bool, [u8; 4])], seed: u64) -> Truth {
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64: payload bytes need not be good, only varied.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as u8
    };
    let mut t = Truth {
        stream: Vec::new(),
        frames: Vec::new(),
        starts: Vec::new(),
        ends: Vec::new(),
        wire: [0; 7],
        payload: [0; 7],
        messages: 0,
        violations: 0,
        close: None,
    };
    let mut in_message = false;
    let mut text_open = false;
    // Text payload comes from a run of random characters that carries on across the
    // fragments of a message, so sequences are split between frames; some fragments
    // get one byte spoilt. The whole text of each message is checked with std.
    let mut chars: Vec<u8> = Vec::new();
    let mut text: Option<Vec<u8>> = None;
    let mut text_byte = |next: &mut dyn FnMut() -> u8| {
        if chars.is_empty() {
            let c = match next() % 4 {
                0 => char::from(b'a' + next() % 26),
                1 => ['é', 'ß', 'ж'][usize::from(next() % 3)],
                2 => ['€', '中', '\u{FFFD}'][usize::from(next() % 3)],
                _ => ['😀', '𝄞', '\u{10FFFF}'][usize::from(next() % 3)],
            };
            let mut buf = [0; 4];
            chars.extend(c.encode_utf8(&mut buf).bytes().rev());
        }
        chars.pop().unwrap()
    };
    let mut push =
        |t: &mut Truth, fin: bool, opcode: u8, masked: bool, key: [u8; 4], payload: Vec<u8>| {
            let bytes = frame(fin, 0, opcode, masked.then_some(key), &payload);
            let kind = OpKind::from_opcode(opcode) as usize;
            t.wire[kind] += bytes.len() as u64;
            t.payload[kind] += payload.len() as u64;
            if fin && opcode <= 2 {
                t.messages += 1;
            }
            match opcode {
                0x1 => text = Some(payload.clone()),
                0x2 => text = None,
                0x0 => {
                    if let Some(text) = &mut text {
                        text.extend_from_slice(&payload);
                    }
                }
                _ => {}
            }
            if fin
                && opcode <= 2
                && text
                    .take()
                    .is_some_and(|m| std::str::from_utf8(&m).is_err())
            {
                t.violations += 1;
            }
            if masked != (dir == C2B) {
                t.violations += 1;
            }
            let preview = payload[..payload.len().min(PREVIEW)].to_vec();
            t.frames
                .push((opcode, fin, masked, payload.len() as u64, preview));
            t.starts.push(t.stream.len());
            t.stream.extend(bytes);
            t.ends.push(t.stream.len());
        };
    for (step, masked, key) in steps {
        match *step {
            Gen::Data { binary, len, more } => {
                let opcode = if in_message {
                    0
                } else if binary {
                    2
                } else {
                    1
                };
                let is_text = if in_message { text_open } else { !binary };
                text_open = is_text && more;
                in_message = more;
                let mut payload: Vec<u8> = if is_text {
                    (0..len).map(|_| text_byte(&mut next)).collect()
                } else {
                    (0..len).map(|_| next()).collect()
                };
                if is_text && len > 0 && next() % 4 == 0 {
                    let at = usize::from(next()) % len;
                    payload[at] = 0xFF;
                }
                push(&mut t, !more, opcode, *masked, *key, payload);
            }
            Gen::Control { which, len, code } => {
                let (opcode, payload) = match which {
                    0 => (0x9, (0..len).map(|_| next()).collect()),
                    1 => (0xA, (0..len).map(|_| next()).collect()),
                    _ if len == 0 => (0x8, Vec::new()),
                    _ => {
                        let mut p = code.to_be_bytes().to_vec();
                        p.extend((2..len.max(2)).map(|_| b'a' + next() % 26));
                        if t.close.is_none() {
                            let reason = String::from_utf8(p[2..].to_vec()).unwrap();
                            t.close = Some(CloseInfo {
                                code: Some(code),
                                reason,
                            });
                        }
                        (0x8, p)
                    }
                };
                if opcode == 0x8 && payload.is_empty() && t.close.is_none() {
                    t.close = Some(CloseInfo {
                        code: None,
                        reason: String::new(),
                    });
                }
                push(&mut t, true, opcode, *masked, *key, payload);
            }
        }
    }
    if in_message {
        push(&mut t, true, 0, dir == C2B, [7, 7, 7, 7], Vec::new());
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_streams_chopped_anywhere_match_the_encoded_truth(
        client in any::<bool>(),
        steps in prop::collection::vec((gen_step(), any::<bool>(), any::<[u8; 4]>()), 0..24),
        seed in any::<u64>(),
        near_headers in prop::collection::vec((any::<prop::sample::Index>(), 0usize..16), 0..24),
        anywhere in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        to_boundary in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let dir = if client { C2B } else { B2C };
        let t = encode(dir, &steps, seed);
        let total = t.stream.len();

        // Cut points both anywhere and close to frame starts (inside headers).
        let mut cuts = vec![0, total];
        if !t.starts.is_empty() {
            cuts.extend(near_headers.iter().map(|(i, off)| (t.starts[i.index(t.starts.len())] + off).min(total)));
        }
        cuts.extend(anywhere.iter().map(|i| i.index(total + 1)));
        cuts.sort_unstable();
        cuts.dedup();

        let mut s = Scanner::new(dir, 8, PREVIEW);
        let mut seen = 0u64;
        for (i, w) in cuts.windows(2).enumerate() {
            let chunk = &t.stream[w[0]..w[1]];
            let mut used = 0;
            if to_boundary[i % to_boundary.len()] {
                let was_at_boundary = s.at_boundary();
                used = s.feed_to_boundary(chunk, now(), &mut |_| seen += 1);
                // Exactly up to the end of the frame in progress, if within the chunk.
                let expected = if was_at_boundary {
                    0
                } else {
                    let end = t.ends.iter().find(|&&e| e > w[0]).copied().unwrap_or(total);
                    end.min(w[1]) - w[0]
                };
                prop_assert_eq!(used, expected);
                prop_assert_eq!(s.at_boundary(), t.ends.binary_search(&(w[0] + used)).is_ok() || w[0] + used == 0);
            }
            s.feed(&chunk[used..], now(), &mut |_| seen += 1);
        }

        let st = s.stats();
        for kind in OpKind::ALL {
            let k = kind as usize;
            let frames = t.frames.iter().filter(|f| OpKind::from_opcode(f.0) == kind).count() as u64;
            prop_assert_eq!(
                *st.op(kind),
                OpCount { frames, payload_bytes: t.payload[k], wire_bytes: t.wire[k] },
                "{:?}", kind
            );
        }
        prop_assert_eq!(st.frames(), t.frames.len() as u64);
        prop_assert_eq!(s.next_seq(), t.frames.len() as u64);
        prop_assert_eq!(st.messages, t.messages);
        prop_assert_eq!(st.bytes, total as u64);
        prop_assert_eq!(st.violations, t.violations);
        prop_assert_eq!(seen, t.violations);
        prop_assert_eq!(&st.close, &t.close);
        prop_assert!(s.at_boundary());

        let kept: Vec<_> = s.samples().collect();
        let first = t.frames.len().saturating_sub(8);
        prop_assert_eq!(kept.len(), t.frames.len() - first);
        for (sample, (seq, f)) in kept.iter().zip(t.frames.iter().enumerate().skip(first)) {
            prop_assert_eq!(sample.seq, seq as u64);
            prop_assert_eq!((sample.opcode, sample.fin, sample.masked, sample.len), (f.0, f.1, f.2, f.3));
            prop_assert_eq!(&sample.preview, &f.4);
        }
    }
}
