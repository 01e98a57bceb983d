use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::event::CapturedFrame;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
}

fn part(ms: u64, opcode: u8, len: usize, fin: bool, rsv: u8) -> CapturedFrame {
    CapturedFrame {
        seq: ms,
        at: at(ms),
        len: len as u64,
        fin,
        rsv,
        opcode,
        masked: true,
    }
}

fn message(dir: Dir, kind: OpKind, data: &[u8], parts: Vec<CapturedFrame>) -> CapturedMessage {
    CapturedMessage {
        seq: 0,
        at: parts[0].at,
        dir,
        kind,
        compressed: parts[0].rsv & 0b100 != 0,
        len: parts.iter().map(|p| p.len).sum(),
        frames: parts.len() as u32,
        data: data.to_vec(),
        truncated: false,
        inflated: None,
        inflated_len: 0,
        injected: false,
        first: parts[0],
        more: parts[1..].to_vec(),
    }
}

fn sample() -> Vec<CapturedMessage> {
    let fragmented = message(
        Dir::ClientToBackend,
        OpKind::Text,
        b"hello, world",
        vec![part(0, 1, 7, false, 0), part(20, 0, 5, true, 0)],
    );
    let ping = message(
        Dir::ClientToBackend,
        OpKind::Ping,
        b"hb",
        vec![part(10, 9, 2, true, 0)],
    );
    let mut compressed = message(
        Dir::BackendToClient,
        OpKind::Text,
        &[0xf2, 0x48, 0xcd],
        vec![part(30, 1, 3, true, 0b100)],
    );
    compressed.inflated = Some(Ok(b"{\"ok\":true}".to_vec()));
    let mut close = message(
        Dir::BackendToClient,
        OpKind::Close,
        b"\x03\xe8bye",
        vec![part(40, 8, 5, true, 0)],
    );
    close.first.masked = false;
    let mut truncated = message(
        Dir::BackendToClient,
        OpKind::Binary,
        &[1, 2, 3, 4],
        vec![part(35, 2, 100, true, 0)],
    );
    truncated.truncated = true;
    vec![fragmented, ping, compressed, close, truncated]
}

#[test]
fn frames_go_in_time_order_with_their_bits_payloads_and_close_codes() {
    let lines = frames(&sample());
    let f: Vec<&Frame> = lines
        .iter()
        .map(|l| match l {
            Line::Frame(f) => f,
            other => panic!("{other:?}"),
        })
        .collect();
    let order: Vec<(u8, &str)> = f.iter().map(|f| (f.opcode, f.dir.as_str())).collect();
    assert_eq!(
        order,
        [
            (1, "c2b"),
            (9, "c2b"),
            (0, "c2b"),
            (1, "b2c"),
            (2, "b2c"),
            (8, "b2c")
        ]
    );
    assert_eq!(f[0].text.as_deref(), Some("hello, "));
    assert!(!f[0].fin && f[2].fin);
    assert_eq!(f[2].text.as_deref(), Some("world"));
    assert!(f[3].rsv1, "compressed");
    assert_eq!(
        f[3].base64.as_deref(),
        Some("8kjN"),
        "the bytes as they went"
    );
    assert_eq!(f[3].inflated_text.as_deref(), Some("{\"ok\":true}"));
    assert!(f[4].truncated && f[4].len == 100);
    assert_eq!(
        (f[5].close_code, f[5].close_reason.as_deref()),
        (Some(1000), Some("bye"))
    );
    assert!(!f[5].masked);
}

#[test]
fn a_recording_reads_back_into_its_messages() {
    let t = crate::event::TunnelInfo {
        opened: at(0),
        listener: "public".into(),
        route: "chat".into(),
        path: "/chat?room=1".into(),
        ..crate::event::TunnelInfo::bare(7)
    };
    let ended = Ended {
        side: "backend".into(),
        code: Some(1000),
        reason: "bye".into(),
    };
    let text = write(&t, &sample(), Some(&ended), &Redact::default());
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("each line is JSON");
    }
    assert!(
        text.starts_with("{\"type\":\"start\",\"version\":1,\"id\":7,"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("\"reason\":\"bye\"}"), "{text}");
    let r = read(&text).unwrap();
    assert_eq!(r.path, "/chat?room=1");
    let m = r.messages();
    let got: Vec<(Dir, u8, Vec<u8>)> = m
        .iter()
        .map(|m| (m.dir, m.opcode, m.payload.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (Dir::ClientToBackend, 1, b"hello, world".to_vec()),
            (Dir::BackendToClient, 1, b"{\"ok\":true}".to_vec()),
            (Dir::BackendToClient, 2, vec![1, 2, 3, 4]),
        ]
    );
    assert!(m[2].truncated);
    assert!(read("{\"type\":\"start\"\nnot json")
        .unwrap_err()
        .starts_with("line 1"));
    // Lines of a later version are skipped.
    assert!(read("{\"type\":\"marker\",\"x\":1}\n")
        .unwrap()
        .frames
        .is_empty());
}

#[test]
fn a_message_in_more_frames_than_kept_ends_with_one_frame_carrying_the_rest() {
    let total = 300usize;
    let data: Vec<u8> = (0..total).map(|i| b'a' + (i % 26) as u8).collect();
    let mut parts: Vec<CapturedFrame> = (0..crate::event::MAX_FRAMES_KEPT as u64)
        .map(|i| part(i, if i == 0 { 2 } else { 0 }, 1, false, 0))
        .collect();
    parts[0].seq = 0;
    let mut m = message(Dir::ClientToBackend, OpKind::Binary, &data, parts);
    m.frames = total as u32;
    m.len = total as u64;
    let lines = frames(&[m]);
    assert_eq!(lines.len(), crate::event::MAX_FRAMES_KEPT + 1);
    let Line::Frame(last) = lines.last().unwrap() else {
        panic!("a frame")
    };
    assert!(last.fin);
    assert_eq!(last.len, (total - crate::event::MAX_FRAMES_KEPT) as u64);
    assert_eq!(
        last.frames_omitted,
        Some((total - crate::event::MAX_FRAMES_KEPT) as u32)
    );
    let text: String = lines.iter().map(to_line).collect();
    let back = read(&text).unwrap().messages();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].payload, data, "the whole message reads back");
}

#[test]
fn replay_leaves_out_what_an_operator_injected_toward_the_client() {
    let mut injected = message(
        Dir::BackendToClient,
        OpKind::Text,
        b"from the operator",
        vec![part(50, 1, 17, true, 0)],
    );
    injected.injected = true;
    let mut all = sample();
    all.push(injected);
    let text: String = frames(&all).iter().map(to_line).collect();
    let got = read(&text).unwrap().messages();
    assert!(
        got.iter().all(|m| m.payload != b"from the operator"),
        "{got:?}"
    );
}
