//! The terminal dashboard without a terminal: its model fed with event sequences, its
//! screens drawn into ratatui's `TestBackend` at 80x24 and 160x48, its keys checked
//! against a real control channel, and its run loop driven through real channels.

mod keys;
mod messages;
mod render;
mod run_loop;
mod state;
mod talk;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;
use tunnelscope::dashboard::input::Ui;
use tunnelscope::dashboard::state::State;
use tunnelscope::dashboard::ui::draw;
use tunnelscope::event::{
    AdminState, BackendId, BackendInfo, CapturedFrame, CapturedMessage, Dir, DirStats, Event,
    FrameSample, Handshake, Health, ListenerInfo, OpKind, Snapshot, TunnelStats,
};

/// A fixed wall clock so ages and expiry are exact.
pub fn at(secs: f64) -> SystemTime {
    let base = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    if secs >= 0.0 {
        base + Duration::from_secs_f64(secs)
    } else {
        base - Duration::from_secs_f64(-secs)
    }
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn bid(addr: &str) -> BackendId {
    BackendId::new("chat", addr)
}

pub fn backend(addr: &str, admin: AdminState, active: u64, total: u64) -> BackendInfo {
    BackendInfo {
        id: bid(addr),
        weight: 1,
        backup: false,
        via: None,
        admin,
        health: Health::Up,
        active_tunnels: active,
        total_tunnels: total,
        failures: 0,
        last_error: None,
        check: None,
        closing: None,
        // Each call is a newer state, as each event from the proxy is.
        version: VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    }
}

static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A proxy with one listener and three backends, started 100 s before `at(0)`.
pub fn snapshot() -> Snapshot {
    Snapshot {
        listeners: vec![ListenerInfo {
            name: "public".into(),
            addr: addr("127.0.0.1:8080"),
            tls: false,
        }],
        backends: vec![
            backend("127.0.0.1:9001", AdminState::Active, 0, 0),
            backend("127.0.0.1:9002", AdminState::Active, 0, 0),
            backend("127.0.0.1:9003", AdminState::Active, 0, 0),
        ],
        tunnels: Vec::new(),
        total_tunnels: 0,
        started: Some(at(-100.0)),
        resolutions: Vec::new(),
        fleet: None,
    }
}

fn headers(pairs: &[(&str, &str)]) -> tunnelscope::event::Headers {
    tunnelscope::event::Headers::from_pairs(pairs.iter().copied())
}

pub fn handshake(deflate: bool) -> Handshake {
    let ext = deflate.then(|| "permessage-deflate; client_max_window_bits".to_string());
    Handshake {
        request_in: headers(&[
            ("host", "chat.example"),
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "chat.v2"),
            ("x-room", "lobby-7"),
        ]),
        request_out: headers(&[
            ("host", "chat.example"),
            ("upgrade", "websocket"),
            ("x-forwarded-for", "10.1.2.3"),
        ]),
        response: headers(&[
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ]),
        subprotocol: Some("chat.v2".into()),
        extensions: ext,
        h2: false,
    }
}

/// The events of a tunnel being opened, routed and upgraded.
pub fn open_events(id: u64, client: &str, path: &str, backend: &str, opened: f64) -> Vec<Event> {
    vec![
        Event::TunnelOpened {
            id,
            at: at(opened),
            client: addr(client),
            listener: "public".into(),
            route: "chat".into(),
            path: path.into(),
            idle_timeout: Some(Duration::from_secs(3600)),
            instance: None,
        },
        Event::BackendChosen {
            id,
            backend: bid(backend),
        },
        Event::Handshake {
            id,
            handshake: handshake(true),
        },
    ]
}

pub fn open(state: &mut State, id: u64, client: &str, path: &str, backend: &str, opened: f64) {
    for ev in open_events(id, client, path, backend, opened) {
        state.apply(&ev, at(opened));
    }
}

/// Counters: `(messages, bytes)` client→backend and backend→client, all text frames.
pub fn stats(c2b: (u64, u64), b2c: (u64, u64), last: f64) -> TunnelStats {
    let dir = |(msgs, bytes): (u64, u64)| {
        let mut d = DirStats::default();
        d.by_opcode[OpKind::Text as usize].frames = msgs;
        d.by_opcode[OpKind::Text as usize].payload_bytes = bytes;
        d.messages = msgs;
        d.bytes = bytes;
        d.last_frame = (msgs > 0).then(|| at(last));
        d
    };
    TunnelStats {
        client_to_backend: dir(c2b),
        backend_to_client: dir(b2c),
    }
}

pub fn sample(seq: u64, dir: Dir, opcode: u8, rsv: u8, preview: &[u8], when: f64) -> FrameSample {
    FrameSample {
        injected: false,
        seq,
        at: at(when),
        dir,
        fin: true,
        rsv,
        opcode,
        masked: dir == Dir::ClientToBackend,
        len: preview.len() as u64,
        preview: preview.to_vec(),
    }
}

/// A whole single-frame message as capture keeps it, first sent at 2 + `seq` s.
pub fn captured(seq: u64, dir: Dir, kind: OpKind, data: &[u8]) -> CapturedMessage {
    let at = at(2.0 + seq as f64);
    let opcode = match kind {
        OpKind::Binary => 2,
        OpKind::Close => 8,
        OpKind::Ping => 9,
        OpKind::Pong => 10,
        _ => 1,
    };
    CapturedMessage {
        seq,
        at,
        dir,
        kind,
        compressed: false,
        len: data.len() as u64,
        frames: 1,
        data: data.to_vec(),
        truncated: false,
        inflated: None,
        inflated_len: 0,
        injected: false,
        first: CapturedFrame {
            seq,
            at,
            len: data.len() as u64,
            fin: true,
            rsv: 0,
            opcode,
            masked: dir == Dir::ClientToBackend,
        },
        more: Vec::new(),
    }
}

pub fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

pub fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// The buffer as lines of text, trailing spaces trimmed.
pub fn buffer_text(buf: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buf.area.height {
        let row: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

/// Draws one frame at `w`×`h` and returns it as text.
pub fn screen(state: &State, ui: &Ui, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| draw(f, state, ui)).unwrap();
    buffer_text(terminal.backend().buffer())
}

/// The text inside a popup drawn with `border` characters, wrapped lines rejoined.
pub fn popup_text(screen: &str, border: char) -> String {
    let parts: Vec<&str> = screen
        .lines()
        .filter_map(|l| {
            let a = l.find(border)?;
            let b = l.rfind(border)?;
            (b > a).then(|| l[a + border.len_utf8()..b].trim())
        })
        .filter(|s| !s.is_empty())
        .collect();
    parts.join(" ")
}

/// A state with a live tunnel on each of two backends and traffic on the first.
pub fn busy_state() -> State {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    open(
        &mut s,
        7,
        "10.1.2.3:50000",
        "/chat?room=lobby",
        "127.0.0.1:9001",
        1.0,
    );
    open(&mut s, 8, "10.9.9.9:40000", "/feed", "127.0.0.1:9002", 2.0);
    s.apply(
        &Event::BackendState(backend("127.0.0.1:9001", AdminState::Active, 1, 5)),
        at(2.0),
    );
    s.apply(
        &Event::BackendState(backend("127.0.0.1:9002", AdminState::Active, 1, 3)),
        at(2.0),
    );
    s.apply(
        &Event::FrameStats {
            id: 7,
            stats: stats((12, 1229), (30, 4096), 2.5),
        },
        at(3.0),
    );
    s.tick(at(3.0));
    s
}
