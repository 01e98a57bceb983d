//! The capture against hand-made frames: reassembly, truncation, the budgets, and
//! inflating with and without context takeover.

use super::*;

fn t() -> SystemTime {
    SystemTime::UNIX_EPOCH
}

fn plain(dir: Dir, cap: usize, budget: usize) -> Capture {
    Capture::new(dir, cap, budget, None, true)
}

/// A frame header as the scanner hands it over.
fn head(kind: OpKind, rsv: u8, len: usize, fin: bool) -> crate::event::CapturedFrame {
    let opcode = match kind {
        OpKind::Continuation => 0,
        OpKind::Text => 1,
        OpKind::Binary => 2,
        OpKind::Close => 8,
        OpKind::Ping => 9,
        OpKind::Pong => 10,
        OpKind::Reserved => 3,
    };
    crate::event::CapturedFrame {
        seq: 0,
        at: t(),
        len: len as u64,
        fin,
        rsv,
        opcode,
        masked: true,
    }
}

fn frame(c: &mut Capture, kind: OpKind, fin: bool, payload: &[u8], mask: [u8; 4]) {
    let masked: Vec<u8> = payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    c.begin(head(kind, 0, payload.len(), fin), mask);
    // Split anywhere: the key offset must carry on.
    let (a, b) = masked.split_at(masked.len() / 2);
    c.payload(a);
    c.payload(b);
    c.end(fin);
}

#[test]
fn fragments_are_reassembled_and_a_ping_between_them_kept_apart() {
    let mut c = plain(Dir::ClientToBackend, 1024, 1 << 20);
    frame(&mut c, OpKind::Text, false, b"hello, ", [1, 2, 3, 4]);
    frame(&mut c, OpKind::Ping, true, b"are you there", [5, 6, 7, 8]);
    frame(&mut c, OpKind::Continuation, false, b"whole ", [9, 9, 9, 9]);
    frame(&mut c, OpKind::Continuation, true, b"world", [0, 0, 0, 0]);
    let got: Vec<_> = c.owned().into_iter().collect();
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
    // Each frame as it went: opcodes, lengths and FIN in order.
    let parts: Vec<_> = got[1]
        .frame_list()
        .map(|p| (p.opcode, p.len, p.fin))
        .collect();
    assert_eq!(parts, [(1, 7, false), (0, 6, false), (0, 5, true)]);
}

#[test]
fn a_message_in_very_many_frames_keeps_only_the_first_frames_headers() {
    let mut c = plain(Dir::ClientToBackend, 1 << 20, 1 << 20);
    frame(&mut c, OpKind::Binary, false, b"a", [1, 2, 3, 4]);
    for _ in 0..1000 {
        frame(&mut c, OpKind::Continuation, false, b"b", [1, 2, 3, 4]);
    }
    frame(&mut c, OpKind::Continuation, true, b"c", [1, 2, 3, 4]);
    let m = c.owned().into_iter().next().unwrap();
    assert_eq!(m.frames, 1002);
    assert_eq!(m.frame_list().count(), crate::event::MAX_FRAMES_KEPT);
    assert_eq!(m.data.len(), 1002);
}

#[test]
fn a_long_message_is_kept_truncated_at_the_cap_and_marked() {
    let mut c = plain(Dir::BackendToClient, 8, 1 << 20);
    frame(&mut c, OpKind::Binary, true, &[7u8; 100], [0; 4]);
    let m = c.owned().into_iter().next().unwrap();
    assert_eq!((m.data.len(), m.len, m.truncated), (8, 100, true));
}

#[test]
fn the_budget_evicts_the_oldest_messages_first() {
    // What is held counts the blocks and records as allocated, not only payloads.
    let budget = 8 * 1024;
    let mut c = plain(Dir::BackendToClient, 100, budget);
    for i in 0..200u8 {
        frame(&mut c, OpKind::Binary, true, &[i; 100], [0; 4]);
        assert!(c.bytes_held() <= budget, "{} after {i}", c.bytes_held());
    }
    let kept: Vec<u64> = c.owned().iter().map(|m| m.seq).collect();
    let n = kept.len() as u64;
    assert_eq!(
        kept,
        (200 - n..200).collect::<Vec<_>>(),
        "the newest, in order"
    );
    assert!(
        n * 100 >= budget as u64 / 4,
        "only {n} kept: the budget is wasted"
    );
    let newest = c.owned().pop().unwrap();
    assert_eq!(newest.data, [199; 100]);
}

#[test]
fn a_continuation_without_its_start_is_kept_as_such() {
    let mut c = plain(Dir::ClientToBackend, 64, 1024);
    frame(&mut c, OpKind::Continuation, true, b"tail", [3, 1, 4, 1]);
    let m = c.owned().into_iter().next().unwrap();
    assert_eq!((m.kind, &m.data[..]), (OpKind::Continuation, &b"tail"[..]));
}

#[test]
fn nothing_is_held_before_a_frame_is_captured() {
    let c = plain(Dir::ClientToBackend, 65536, 1 << 20);
    assert_eq!(c.bytes_held(), 0);
    assert_eq!(c.owned().len(), 0);
}

/// Compresses messages as permessage-deflate does (one shared context unless
/// `reset`), with the 4-byte tail stripped.
fn deflate_messages(messages: &[&[u8]], reset: bool) -> Vec<Vec<u8>> {
    let mut z = flate2::Compress::new(flate2::Compression::default(), false);
    messages
        .iter()
        .map(|m| {
            if reset {
                z.reset();
            }
            let mut out = Vec::with_capacity(m.len() + 64);
            z.compress_vec(m, &mut out, flate2::FlushCompress::Sync)
                .unwrap();
            assert!(out.ends_with(&DEFLATE_TAIL));
            out.truncate(out.len() - 4);
            out
        })
        .collect()
}

fn compressed(c: &mut Capture, payload: &[u8], mask: [u8; 4]) {
    let masked: Vec<u8> = payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    c.begin(head(OpKind::Text, 0b100, payload.len(), true), mask);
    for piece in masked.chunks(3) {
        c.payload(piece);
    }
    c.end(true);
}

#[test]
fn compressed_messages_are_inflated_across_a_shared_context() {
    let texts: [&[u8]; 3] = [b"hello hello hello", b"hello again, hello", b"hello"];
    let wire = deflate_messages(&texts, false);
    let mut c = Capture::new(Dir::ClientToBackend, 1024, 1 << 20, Some(false), true);
    for w in &wire {
        compressed(&mut c, w, [4, 3, 2, 1]);
    }
    let got: Vec<_> = c.owned().into_iter().collect();
    for (m, want) in got.iter().zip(texts) {
        assert!(m.compressed);
        assert_eq!(
            m.data.len() as u64,
            m.len,
            "the compressed bytes are kept too"
        );
        assert_eq!(m.inflated.as_ref().unwrap().as_deref(), Ok(want));
        assert_eq!(m.inflated_len, want.len() as u64);
    }
}

#[test]
fn an_inflated_message_over_the_cap_is_truncated_and_its_length_counted() {
    let big = vec![b'a'; 10_000];
    let wire = deflate_messages(&[&big], true);
    let mut c = Capture::new(Dir::BackendToClient, 100, 1 << 20, Some(true), true);
    compressed(&mut c, &wire[0], [0; 4]);
    let m = c.owned().into_iter().next().unwrap();
    assert_eq!(m.inflated.as_ref().unwrap().as_ref().unwrap().len(), 100);
    assert_eq!((m.inflated_len, m.truncated), (10_000, true));
}

/// Compressed bytes past the cap are not kept, yet still inflated: the shared
/// context stays in step for the messages after.
#[test]
fn compressed_bytes_past_the_cap_still_keep_the_shared_context_in_step() {
    let first: Vec<u8> = (0..400u32).map(|i| (i * 7919 % 251) as u8).collect();
    let second = [&first[..200], b"and then some"].concat();
    let wire = deflate_messages(&[&first, &second], false);
    assert!(
        wire[0].len() > 64,
        "the first is longer than the cap compressed"
    );
    let mut c = Capture::new(Dir::ClientToBackend, 64, 1 << 20, Some(false), true);
    for w in &wire {
        compressed(&mut c, w, [9, 8, 7, 6]);
    }
    let got = c.owned();
    for ((m, text), w) in got.iter().zip([&first, &second]).zip(&wire) {
        assert_eq!((m.data.len(), m.truncated), (w.len().min(64), true));
        assert_eq!(m.inflated.as_ref().unwrap().as_deref(), Ok(&text[..64]));
        assert_eq!(m.inflated_len, text.len() as u64);
    }
}

#[test]
fn capture_begun_mid_stream_with_context_takeover_says_the_context_is_missing() {
    let wire = deflate_messages(&[b"first", b"second"], false);
    let mut c = Capture::new(Dir::ClientToBackend, 1024, 1 << 20, Some(false), false);
    compressed(&mut c, &wire[1], [0; 4]);
    let m = c.owned().into_iter().next().unwrap();
    let why = m.inflated.clone().unwrap().unwrap_err();
    assert!(why.contains("context is missing"), "{why}");
    assert_eq!(
        (m.first.len, m.len),
        (wire[1].len() as u64, wire[1].len() as u64),
        "its one frame's length"
    );
    // Without context takeover each message stands alone: inflated even so.
    let wire = deflate_messages(&[b"first", b"second"], true);
    let mut c = Capture::new(Dir::ClientToBackend, 1024, 1 << 20, Some(true), false);
    compressed(&mut c, &wire[1], [0; 4]);
    let m = c.owned().into_iter().next().unwrap();
    assert_eq!(m.inflated.clone().unwrap().as_deref(), Ok(&b"second"[..]));
}

#[test]
fn the_negotiated_extension_says_which_side_resets_its_context() {
    assert_eq!(deflate_resets("permessage-deflate"), Some((false, false)));
    assert_eq!(
        deflate_resets("permessage-deflate; server_no_context_takeover; client_max_window_bits=10"),
        Some((false, true))
    );
    assert_eq!(
        deflate_resets("x-other, permessage-deflate;client_no_context_takeover"),
        Some((true, false))
    );
    assert_eq!(deflate_resets("x-webkit-deflate-frame"), None);
}

#[test]
fn the_proxy_wide_budget_evicts_this_tunnels_oldest_and_is_given_back_on_drop() {
    let limit = 4096;
    let global = std::sync::Arc::new(Budget::new(limit));
    let mut a = plain(Dir::ClientToBackend, 100, 1 << 20).with_global(global.clone());
    let mut b = plain(Dir::ClientToBackend, 100, 1 << 20).with_global(global.clone());
    for i in 0..100u8 {
        frame(&mut a, OpKind::Binary, true, &[i; 100], [0; 4]);
        assert!(global.used() <= limit, "{}", global.used());
    }
    assert_eq!(a.owned().last().unwrap().data[0], 99, "the newest is kept");
    // a holds what the proxy allows: b, the one adding, gives up its own oldest,
    // which is the new one; a keeps its messages.
    let before = a.owned().len();
    frame(&mut b, OpKind::Binary, true, &[200; 100], [0; 4]);
    assert!(global.used() <= limit);
    assert_eq!(a.owned().len(), before);
    frame(&mut a, OpKind::Binary, true, &[100; 100], [0; 4]);
    assert!(global.used() <= limit);
    assert_eq!(a.owned().last().unwrap().data[0], 100, "the newest is kept");
    drop(a);
    drop(b);
    assert_eq!(global.used(), 0, "what they kept is given back");
}

proptest::proptest! {
    /// Whatever the sizes (empty pings, messages larger than a block, larger than
    /// the budget), what is kept is the newest run of messages, each with its own
    /// bytes, within the budget.
    #[test]
    fn kept_messages_are_the_newest_each_with_its_own_bytes(
        sizes in proptest::collection::vec(
            proptest::prop_oneof![0usize..3, 1usize..3000, 60_000usize..140_000],
            1..60,
        ),
        budget in 2_000usize..300_000,
    ) {
        let cap = 100_000;
        let mut c = plain(Dir::BackendToClient, cap, budget);
        for (i, &n) in sizes.iter().enumerate() {
            let kind = if n < 3 { OpKind::Ping } else { OpKind::Binary };
            frame(&mut c, kind, true, &vec![i as u8; n], [9, 8, 7, 6]);
            proptest::prop_assert!(c.bytes_held() <= budget);
        }
        let kept = c.owned();
        let first = sizes.len() as u64 - kept.len() as u64;
        for (k, m) in kept.iter().enumerate() {
            let i = first as usize + k;
            proptest::prop_assert_eq!(m.seq, i as u64);
            proptest::prop_assert_eq!(m.len, sizes[i] as u64);
            proptest::prop_assert_eq!(&m.data, &vec![i as u8; sizes[i].min(cap)]);
        }
    }
}

#[test]
fn messages_with_their_own_context_are_inflated_when_read_not_as_they_pass() {
    let texts: [&[u8]; 3] = [b"order A-1042 accepted", b"order A-1043 accepted", b"bye"];
    let wire = deflate_messages(&texts, true);
    let mut c = Capture::new(Dir::BackendToClient, 1024, 1 << 20, Some(true), true);
    compressed(&mut c, &wire[0], [0; 4]);
    // The second in two frames: inflated as it passes (fragmented), in step.
    let (a, b) = wire[1].split_at(wire[1].len() / 2);
    c.begin(head(OpKind::Text, 0b100, a.len(), false), [0; 4]);
    c.payload(a);
    c.end(false);
    c.begin(head(OpKind::Continuation, 0, b.len(), true), [0; 4]);
    c.payload(b);
    c.end(true);
    compressed(&mut c, &wire[2], [0; 4]);
    let lazy: Vec<bool> = c
        .messages()
        .map(|k| k.meta.has(super::record::LAZY))
        .collect();
    assert_eq!(
        lazy,
        [true, false, true],
        "whole single-frame messages wait"
    );
    for (m, text) in c.owned().iter().zip(texts) {
        assert_eq!(m.inflated.as_ref().unwrap().as_ref().unwrap(), text);
        assert_eq!(m.inflated_len, text.len() as u64);
    }
    let found: Vec<Vec<u8>> = c.messages().map(|k| k.payload().into_owned()).collect();
    assert_eq!(found[0], texts[0], "search reads the inflated text");
}

#[test]
fn a_frame_cut_off_mid_payload_is_not_kept_and_spoils_nothing_after_it() {
    let mut c = plain(Dir::ClientToBackend, 1024, 1 << 20);
    frame(&mut c, OpKind::Text, true, b"first", [1, 2, 3, 4]);
    // Ten bytes announced, four arrive: the stream ends there.
    c.begin(head(OpKind::Binary, 0, 10, true), [0; 4]);
    c.payload(b"half");
    let seen: Vec<_> = c.owned().into_iter().map(|m| m.data).collect();
    assert_eq!(seen, [b"first".to_vec()]);
    // Whatever is kept next (here an operator's message) reads whole.
    c.injected(9, t(), 1, b"after");
    frame(&mut c, OpKind::Text, true, b"and on", [4, 3, 2, 1]);
    let got = c.owned();
    let seen: Vec<_> = got.iter().map(|m| (m.seq, &m.data[..])).collect();
    assert_eq!(
        seen,
        [(0, &b"first"[..]), (1, &b"after"[..]), (2, &b"and on"[..])]
    );
    assert!(got[1].injected && !got[2].injected);
}

#[test]
fn a_message_left_unfinished_by_a_new_one_is_dropped() {
    let mut c = plain(Dir::ClientToBackend, 1024, 1 << 20);
    frame(&mut c, OpKind::Text, false, b"never ", [1, 2, 3, 4]);
    // A peer that breaks the rules: a new message before the last one's end.
    frame(&mut c, OpKind::Text, true, b"whole", [5, 6, 7, 8]);
    frame(&mut c, OpKind::Continuation, true, b"stray", [0; 4]);
    let got = c.owned();
    assert_eq!(got[0].data, b"whole");
    assert_eq!((got[0].frames, got[0].len), (1, 5));
    // The stray end is kept as what it is: a continuation with no start.
    assert_eq!((got.len(), got[1].kind), (2, OpKind::Continuation));
}

#[test]
fn what_every_kept_message_touches_lies_in_the_first_cache_line() {
    use std::mem::{align_of, offset_of};
    assert_eq!(align_of::<Capture>(), 64);
    let store = offset_of!(Capture, store);
    assert!(offset_of!(Capture, flow) < store && offset_of!(Capture, next_seq) < store);
    assert!(offset_of!(Capture, direct_cap) < store && offset_of!(Capture, direct_pos) < store);
    assert!(offset_of!(Capture, now_nanos) < store);
    let hot_end = store + store::Store::HOT_END;
    assert!(hot_end <= 64, "hot state ends at byte {hot_end}");
}

#[test]
fn messages_no_budget_has_room_for_are_counted_and_not_kept() {
    let mut c = plain(Dir::ClientToBackend, 1024, 0);
    frame(&mut c, OpKind::Text, true, b"one", [1, 2, 3, 4]);
    frame(&mut c, OpKind::Ping, true, b"two", [0; 4]);
    frame(&mut c, OpKind::Text, false, b"three ", [0; 4]);
    frame(&mut c, OpKind::Continuation, true, b"parts", [0; 4]);
    assert!(c.owned().is_empty());
    assert_eq!((c.next_seq(), c.bytes_held()), (3, 0));
}

#[test]
fn a_whole_message_in_one_frame_costs_a_short_header_and_others_keep_every_field() {
    // 64-byte messages in a 1 KiB budget (one block): 11 fit with the 24-byte
    // header; with 48 bytes the tenth would have let the first nine go.
    let mut c = plain(Dir::ClientToBackend, 1024, 1024);
    for i in 0..11u8 {
        frame(
            &mut c,
            OpKind::Text,
            true,
            &[b'a' + i % 26; 64],
            [1, 2, 3, 4],
        );
    }
    assert_eq!(c.owned().len(), 11, "whole messages, short headers");

    // The long form (truncated, fragmented) and the short one (injected, a control
    // frame) read back whole.
    let mut c = plain(Dir::ClientToBackend, 8, 1 << 20);
    frame(&mut c, OpKind::Binary, true, &[7u8; 100], [0; 4]);
    frame(&mut c, OpKind::Text, false, b"abc", [1, 1, 1, 1]);
    frame(&mut c, OpKind::Continuation, true, b"def", [2, 2, 2, 2]);
    c.injected(9, t(), 2, b"mine");
    frame(&mut c, OpKind::Pong, true, b"p", [3, 3, 3, 3]);
    let got = c.owned();
    let summary: Vec<_> = got
        .iter()
        .map(|m| {
            (
                m.kind,
                m.len,
                m.frames,
                m.data.clone(),
                m.truncated,
                m.injected,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (OpKind::Binary, 100, 1, vec![7u8; 8], true, false),
            (OpKind::Text, 6, 2, b"abcdef".to_vec(), false, false),
            (OpKind::Binary, 4, 1, b"mine".to_vec(), false, true),
            (OpKind::Pong, 1, 1, b"p".to_vec(), false, false),
        ]
    );
    assert_eq!(got[1].first.len, 3, "the first fragment's own length");
    assert!(got.iter().all(|m| m.first.masked));
}
