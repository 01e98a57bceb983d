//! Regenerates the dashboard pictures in `screenshots/`:
//!
//! ```text
//! cargo run --example screenshots
//! ```
//!
//! It builds a plausible proxy state from fake events (three backends, one of them
//! draining; a dozen tunnels with traffic, frame samples and handshakes; some closed
//! and refused ones), renders the overview, a tunnel's detail, the kill confirmation
//! and the help overlay into a 120x36 `TestBackend` (`--size=WxH` to change), and
//! writes each screen as an SVG (monospace text with the cells' colours); `--text`
//! also prints them.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;
use tunnelscope::dashboard::input::{handle, Panel, Ui};
use tunnelscope::dashboard::state::State;
use tunnelscope::dashboard::ui::draw;
use tunnelscope::event::{
    AdminState, BackendId, BackendInfo, Dir, DirStats, Event, FrameSample, Handshake, Health,
    ListenerInfo, OpCount, OpKind, Refusal, Side, Snapshot, TunnelStats,
};

/// Screen size; `--size=WxH` overrides it (try 80x24 and 160x48).
fn size() -> (u16, u16) {
    std::env::args()
        .find_map(|a| {
            let (w, h) = a.strip_prefix("--size=")?.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .unwrap_or((120, 36))
}

fn main() -> std::io::Result<()> {
    let now = SystemTime::now();
    let state = fake_state(now);
    std::fs::create_dir_all("screenshots")?;

    let mut ui = Ui::default();
    key(&state, &mut ui, KeyCode::Down);
    key(&state, &mut ui, KeyCode::Down);
    save("overview", &state, &ui)?;

    let mut detail = Ui::default();
    key(&state, &mut detail, KeyCode::Enter);
    save("tunnel-detail", &state, &detail)?;

    let mut kill = Ui {
        focus: Panel::Backends,
        ..Ui::default()
    };
    key(&state, &mut kill, KeyCode::Char('x'));
    save("kill-confirm", &state, &kill)?;

    let mut help = ui.clone();
    key(&state, &mut help, KeyCode::Char('?'));
    save("help", &state, &help)?;

    // Whole messages: the list, then one Socket.IO event decoded.
    let id = detail
        .detail
        .as_ref()
        .map(|d| d.id)
        .expect("a detail is open");
    let mut state = state;
    state.messages = Some((id, captured(now)));
    let mut messages = detail.clone();
    key(&state, &mut messages, KeyCode::Char('m'));
    save("messages", &state, &messages)?;
    let mut view = messages.clone();
    key(&state, &mut view, KeyCode::Up);
    key(&state, &mut view, KeyCode::Enter);
    save("message-view", &state, &view)?;

    // The tail filtered by an order id, matches highlighted, the client held.
    state.apply(
        &Event::Hold {
            id,
            dir: Dir::ClientToBackend,
            state: Some(tunnelscope::event::HoldState {
                dir: Dir::ClientToBackend,
                since: now,
                waiting_bytes: Some(1843),
                waiting_frames: Some(7),
                at_least: false,
                encrypted: false,
            }),
        },
        now,
    );
    let mut filtered = messages.clone();
    key(&state, &mut filtered, KeyCode::Char('/'));
    for c in "a-1042".chars() {
        key(&state, &mut filtered, KeyCode::Char(c));
    }
    key(&state, &mut filtered, KeyCode::Enter);
    save("messages-filtered", &state, &filtered)?;
    Ok(())
}

/// Messages a chat and order app might carry, as capture keeps them.
fn captured(now: SystemTime) -> Vec<tunnelscope::event::CapturedMessage> {
    let texts: [(Dir, &str, bool); 8] = [
        (
            Dir::BackendToClient,
            r#"0{"sid":"Zq3x9","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#,
            false,
        ),
        (Dir::ClientToBackend, "40", false),
        (
            Dir::ClientToBackend,
            r#"42["order:create",{"id":"A-1042","items":[{"sku":"tea-earl-grey","qty":2},{"sku":"scone","qty":4}],"total":18.4,"currency":"EUR"}]"#,
            false,
        ),
        (
            Dir::BackendToClient,
            r#"42["order:accepted",{"id":"A-1042","eta":"12:30","courier":"bike-7"}]"#,
            true,
        ),
        (Dir::BackendToClient, "2", false),
        (Dir::ClientToBackend, "3", false),
        (
            Dir::BackendToClient,
            r#"42["order:status",{"id":"A-1042","status":"picked up"}]"#,
            true,
        ),
        (
            Dir::ClientToBackend,
            r#"42["chat",{"to":"bike-7","text":"ring twice please"}]"#,
            false,
        ),
    ];
    let mut seq = [0u64; 2];
    texts
        .iter()
        .enumerate()
        .map(|(i, (dir, text, compressed))| {
            let d = usize::from(*dir == Dir::BackendToClient);
            seq[d] += 1;
            let at = now - Duration::from_millis(4000 - 450 * i as u64);
            tunnelscope::event::CapturedMessage {
                seq: seq[d],
                at,
                dir: *dir,
                kind: OpKind::Text,
                compressed: *compressed,
                len: if *compressed {
                    text.len() as u64 * 2 / 3
                } else {
                    text.len() as u64
                },
                frames: 1,
                data: if *compressed {
                    vec![0xaa; text.len() * 2 / 3]
                } else {
                    text.as_bytes().to_vec()
                },
                truncated: false,
                inflated: compressed.then(|| Ok(text.as_bytes().to_vec())),
                inflated_len: text.len() as u64,
                injected: false,
                first: Default::default(),
                more: Vec::new(),
            }
        })
        .collect()
}

fn key(state: &State, ui: &mut Ui, code: KeyCode) {
    let _ = handle(KeyEvent::from(code), state, ui);
}

fn save(name: &str, state: &State, ui: &Ui) -> std::io::Result<()> {
    let (w, h) = size();
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    terminal
        .draw(|f| draw(f, state, ui))
        .expect("drawing into memory cannot fail");
    let path = format!("screenshots/{name}.svg");
    let buf = terminal.backend().buffer();
    std::fs::write(&path, to_svg(buf))?;
    // `--text` also prints each screen, for a look without an SVG viewer.
    if std::env::args().any(|a| a == "--text") {
        for y in 0..buf.area.height {
            let row: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
            println!("{}", row.trim_end());
        }
    }
    println!("wrote {path}");
    Ok(())
}

// ---- fake but plausible proxy state -------------------------------------------

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

fn headers(pairs: &[(&str, &str)]) -> tunnelscope::event::Headers {
    tunnelscope::event::Headers::from_pairs(pairs.iter().copied())
}

fn handshake(client: &str, host: &str, proto: Option<&str>, deflate: bool) -> Handshake {
    let ext = deflate.then_some("permessage-deflate; client_max_window_bits");
    let mut req = vec![
        ("host", host),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
        ),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
        ("origin", "https://app.example.com"),
    ];
    if let Some(p) = proto {
        req.push(("sec-websocket-protocol", p));
    }
    if let Some(e) = ext {
        req.push(("sec-websocket-extensions", e));
    }
    let mut out = req.clone();
    out.push(("x-forwarded-for", client));
    out.push(("x-forwarded-proto", "https"));
    out.push(("x-forwarded-host", host));
    let mut resp = vec![
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ];
    if let Some(p) = proto {
        resp.push(("sec-websocket-protocol", p));
    }
    if let Some(e) = ext {
        resp.push(("sec-websocket-extensions", e));
    }
    Handshake {
        request_in: headers(&req),
        request_out: headers(&out),
        response: headers(&resp),
        subprotocol: proto.map(str::to_owned),
        extensions: ext.map(str::to_owned),
        h2: false,
    }
}

/// Counters after `secs` seconds of traffic at `rate` messages/s of `size` bytes.
fn stats(secs: f64, rate: f64, size: u64, last: SystemTime) -> TunnelStats {
    let dir = |rate: f64, size: u64| {
        let msgs = (secs * rate) as u64;
        let mut d = DirStats::default();
        d.by_opcode[OpKind::Text as usize] = OpCount {
            frames: msgs,
            payload_bytes: msgs * size,
            wire_bytes: msgs * (size + 6),
        };
        let pings = (secs / 30.0) as u64;
        d.by_opcode[OpKind::Ping as usize] = OpCount {
            frames: pings,
            payload_bytes: 0,
            wire_bytes: pings * 6,
        };
        d.messages = msgs;
        d.bytes = msgs * (size + 6) + pings * 6;
        d.last_frame = (msgs > 0).then_some(last);
        d
    };
    TunnelStats {
        client_to_backend: dir(rate * 0.3, size / 3),
        backend_to_client: dir(rate, size),
    }
}

fn backend(pool: &str, a: &str, admin: AdminState, active: u64, total: u64) -> BackendInfo {
    BackendInfo {
        id: BackendId::new(pool, a),
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
        version: 1,
    }
}

struct Fake {
    id: u64,
    client: &'static str,
    path: &'static str,
    pool: &'static str,
    backend: &'static str,
    proto: Option<&'static str>,
    deflate: bool,
    age: u64,
    rate: f64,
    size: u64,
}

#[rustfmt::skip]
const TUNNELS: [Fake; 12] = [
    Fake { id: 1041, client: "203.0.113.7:51544", path: "/chat?room=lobby", pool: "chat", backend: "10.0.0.11:9001", proto: Some("chat.v2"), deflate: true, age: 3725, rate: 14.0, size: 180 },
    Fake { id: 1052, client: "198.51.100.23:40112", path: "/chat?room=ops", pool: "chat", backend: "10.0.0.12:9001", proto: Some("chat.v2"), deflate: true, age: 1260, rate: 3.5, size: 240 },
    Fake { id: 1077, client: "192.0.2.140:62001", path: "/chat?room=lobby", pool: "chat", backend: "10.0.0.13:9001", proto: Some("chat.v2"), deflate: false, age: 845, rate: 9.0, size: 120 },
    Fake { id: 1090, client: "203.0.113.90:50003", path: "/live/prices", pool: "feed", backend: "10.0.1.7:7000", proto: None, deflate: true, age: 610, rate: 120.0, size: 96 },
    Fake { id: 1101, client: "198.51.100.4:41870", path: "/live/prices", pool: "feed", backend: "10.0.1.7:7000", proto: None, deflate: true, age: 402, rate: 118.0, size: 96 },
    Fake { id: 1113, client: "192.0.2.77:33210", path: "/chat?room=dev", pool: "chat", backend: "10.0.0.11:9001", proto: Some("chat.v2"), deflate: true, age: 377, rate: 1.2, size: 300 },
    Fake { id: 1120, client: "203.0.113.51:49152", path: "/game/7f3a", pool: "chat", backend: "10.0.0.12:9001", proto: Some("game.bin"), deflate: false, age: 298, rate: 30.0, size: 64 },
    Fake { id: 1134, client: "198.51.100.61:52211", path: "/chat?room=lobby", pool: "chat", backend: "10.0.0.13:9001", proto: Some("chat.v2"), deflate: true, age: 201, rate: 6.0, size: 150 },
    Fake { id: 1142, client: "192.0.2.9:45678", path: "/live/prices", pool: "feed", backend: "10.0.1.7:7000", proto: None, deflate: true, age: 95, rate: 121.0, size: 96 },
    Fake { id: 1150, client: "203.0.113.200:60100", path: "/chat?room=ops", pool: "chat", backend: "10.0.0.11:9001", proto: Some("chat.v2"), deflate: true, age: 44, rate: 2.0, size: 200 },
    Fake { id: 1157, client: "198.51.100.88:39000", path: "/collab/doc-42", pool: "chat", backend: "10.0.0.11:9001", proto: Some("yjs"), deflate: false, age: 17, rate: 22.0, size: 512 },
    Fake { id: 1163, client: "192.0.2.33:51000", path: "/chat?room=lobby", pool: "chat", backend: "10.0.0.12:9001", proto: Some("chat.v2"), deflate: true, age: 3, rate: 0.0, size: 0 },
];

fn fake_state(now: SystemTime) -> State {
    let start = now - Duration::from_secs(2 * 3600 + 14 * 60 + 9);
    let ago = |s: u64| now - Duration::from_secs(s);
    let mut draining = backend("chat", "10.0.0.12:9001", AdminState::Draining, 3, 1_877);
    draining.failures = 1;
    let mut feed = backend("feed", "10.0.1.7:7000", AdminState::Active, 3, 611);
    feed.failures = 4;
    feed.last_error = Some("connect: connection refused (os error 111)".into());
    let snapshot = Snapshot {
        listeners: vec![
            ListenerInfo {
                name: "public".into(),
                addr: addr("0.0.0.0:8080"),
                tls: false,
            },
            ListenerInfo {
                name: "secure".into(),
                addr: addr("0.0.0.0:8443"),
                tls: true,
            },
        ],
        backends: vec![
            backend("chat", "10.0.0.11:9001", AdminState::Active, 4, 2_413),
            draining,
            backend("chat", "10.0.0.13:9001", AdminState::Active, 2, 2_390),
            feed,
        ],
        tunnels: Vec::new(),
        total_tunnels: 7_291,
        started: Some(start),
        resolutions: Vec::new(),
    };
    let mut state = State::from_snapshot(snapshot, ago(61));
    // A minute of traffic, four stat batches a second, swelling and ebbing so the
    // sparklines have a shape. Tunnels open when their time comes. `done` is the
    // effective seconds of traffic per tunnel: it never shrinks, as real counters.
    let mut opened = [false; TUNNELS.len()];
    let mut done: Vec<f64> = TUNNELS
        .iter()
        .map(|f| (f.age as f64 - 60.0).max(0.0))
        .collect();
    for step in 0..=240u64 {
        let t = ago(60) + Duration::from_millis(step * 250);
        let swell = 0.3
            + 1.4
                * ((step as f64) / 240.0 * std::f64::consts::PI * 3.0)
                    .sin()
                    .abs();
        for (i, f) in TUNNELS.iter().enumerate() {
            if t < ago(f.age) {
                continue;
            }
            if !opened[i] {
                opened[i] = true;
                open(&mut state, f, ago(f.age), t);
            }
            if f.rate > 0.0 {
                done[i] += 0.25 * swell;
                // Quiet tunnels last sent a frame a little while ago.
                let last = t - Duration::from_millis((f.id % 7) * 900);
                let s = stats(done[i], f.rate, f.size, last);
                state.apply(&Event::FrameStats { id: f.id, stats: s }, t);
            }
        }
        state.tick(t);
    }
    samples(&mut state, 1041, now, true);
    samples(&mut state, 1090, now, true);
    closed_and_refused(&mut state, now);
    state.tick(now);
    state.banner =
        Some("demo: open http://127.0.0.1:8080/ in a browser to chat through the proxy".into());
    state
}

fn open(state: &mut State, f: &Fake, at: SystemTime, now: SystemTime) {
    state.apply(
        &Event::TunnelOpened {
            id: f.id,
            at,
            client: addr(f.client),
            listener: "secure".into(),
            route: f.pool.into(),
            path: f.path.into(),
            idle_timeout: Some(Duration::from_secs(3600)),
        },
        now,
    );
    state.apply(
        &Event::BackendChosen {
            id: f.id,
            backend: BackendId::new(f.pool, f.backend),
        },
        now,
    );
    let host = if f.pool == "feed" {
        "feed.example.com"
    } else {
        "app.example.com"
    };
    let hs = handshake(
        f.client.split(':').next().unwrap_or(""),
        host,
        f.proto,
        f.deflate,
    );
    state.apply(
        &Event::Handshake {
            id: f.id,
            handshake: hs,
        },
        now,
    );
}

fn samples(state: &mut State, id: u64, now: SystemTime, deflate: bool) {
    let msgs = [
        (
            false,
            1,
            r#"{"type":"typing","user":"ana"}"#.as_bytes().to_vec(),
        ),
        (
            true,
            1,
            r#"{"type":"message","user":"bo","text":"deploy is done, draining 10.0.0.12 now"}"#
                .as_bytes()
                .to_vec(),
        ),
        (false, 1, r#"{"type":"ack","id":88812}"#.as_bytes().to_vec()),
        (true, 9, Vec::new()),
        (false, 10, Vec::new()),
        (
            true,
            2,
            vec![
                0x82, 0x1f, 0x00, 0x07, 0xde, 0xad, 0xbe, 0xef, 0x10, 0x20, 0x30,
            ],
        ),
        (
            true,
            1,
            r#"{"type":"presence","online":["ana","bo","cy"]}"#.as_bytes().to_vec(),
        ),
    ];
    let mut out = Vec::new();
    for i in 0..60u64 {
        let (to_client, op, body) = &msgs[(i % msgs.len() as u64) as usize];
        let compressed = deflate && *op == 1 && i % 3 == 0;
        let preview = if compressed {
            vec![0xaa, 0x56, 0x2a, 0xa9, 0x2c, 0x48, 0x55, 0xb2]
        } else {
            body.clone()
        };
        out.push(FrameSample {
            injected: false,
            seq: i,
            at: now - Duration::from_millis((60 - i) * 430),
            dir: if *to_client {
                tunnelscope::event::Dir::BackendToClient
            } else {
                tunnelscope::event::Dir::ClientToBackend
            },
            fin: true,
            rsv: if compressed { 0b100 } else { 0 },
            opcode: *op,
            masked: !*to_client,
            len: body.len() as u64,
            preview,
        });
    }
    state.apply(&Event::FrameSamples { id, samples: out }, now);
}

fn closed_and_refused(state: &mut State, now: SystemTime) {
    let ended = [
        (
            1139,
            "192.0.2.150:41000",
            "/chat?room=ops",
            Some(1000),
            Side::Client,
            41,
        ),
        (
            1146,
            "203.0.113.19:52400",
            "/game/11b0",
            Some(1012),
            Side::Proxy,
            23,
        ),
        (
            1151,
            "198.51.100.5:47001",
            "/live/prices",
            Some(1006),
            Side::Backend,
            9,
        ),
    ];
    for (id, client, path, code, side, secs_ago) in ended {
        let at = now - Duration::from_secs(secs_ago);
        state.apply(
            &Event::TunnelOpened {
                id,
                at: at - Duration::from_secs(180),
                client: addr(client),
                listener: "public".into(),
                route: "chat".into(),
                path: path.into(),
                idle_timeout: Some(Duration::from_secs(3600)),
            },
            at,
        );
        state.apply(
            &Event::BackendChosen {
                id,
                backend: BackendId::new("chat", "10.0.0.12:9001"),
            },
            at,
        );
        state.apply(
            &Event::Handshake {
                id,
                handshake: handshake(client, "app.example.com", Some("chat.v2"), true),
            },
            at,
        );
        let stats = stats(180.0, 2.0, 140, at);
        state.apply(
            &Event::TunnelClosed {
                id,
                code,
                reason: String::new(),
                side,
                duration: Duration::from_secs(180),
                stats,
                error: None,
            },
            at,
        );
    }
    let at = now - Duration::from_secs(5);
    state.apply(
        &Event::TunnelOpened {
            id: 1160,
            at,
            client: addr("192.0.2.201:50500"),
            listener: "public".into(),
            route: "feed".into(),
            path: "/live/bonds".into(),
            idle_timeout: Some(Duration::from_secs(3600)),
        },
        at,
    );
    state.apply(
        &Event::Refused {
            id: 1160,
            refusal: Refusal {
                status: 502,
                reason: "backend unreachable".into(),
            },
        },
        at,
    );
}

// ---- buffer → SVG -------------------------------------------------------------

const CELL_W: f64 = 8.4;
const CELL_H: f64 = 17.0;
const FONT: f64 = 14.0;
const BG: &str = "#1b1d23";
const FG: &str = "#d0d4dc";

/// A cell colour as hex, using a VS Code-like dark palette for the named colours.
fn hex(c: Color) -> Option<String> {
    let named = match c {
        Color::Reset => return None,
        Color::Black => "#1b1d23",
        Color::Red => "#e06c75",
        Color::Green => "#98c379",
        Color::Yellow => "#e5c07b",
        Color::Blue => "#61afef",
        Color::Magenta => "#c678dd",
        Color::Cyan => "#56b6c2",
        Color::Gray => "#abb2bf",
        Color::DarkGray => "#6b7280",
        Color::LightRed => "#ff7b86",
        Color::LightGreen => "#b5e890",
        Color::LightYellow => "#ffe08a",
        Color::LightBlue => "#82c4ff",
        Color::LightMagenta => "#e099f0",
        Color::LightCyan => "#7fd8e3",
        Color::White => "#f0f2f5",
        Color::Rgb(r, g, b) => return Some(format!("#{r:02x}{g:02x}{b:02x}")),
        Color::Indexed(i) => return Some(format!("#{i:02x}{i:02x}{i:02x}")),
    };
    Some(named.to_string())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Each row becomes background rectangles plus runs of same-styled text; every run
/// is pinned to its cell column with `textLength`, so the grid holds whatever the
/// viewer's monospace font measures.
fn to_svg(buf: &Buffer) -> String {
    let (w, h) = (buf.area.width, buf.area.height);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{:.0}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT}">"#,
        f64::from(w) * CELL_W + 16.0,
        f64::from(h) * CELL_H + 16.0
    );
    let _ = write!(
        svg,
        r#"<rect width="100%" height="100%" fill="{BG}"/><g transform="translate(8,8)">"#
    );
    for y in 0..h {
        let mut x = 0;
        while x < w {
            let cell = &buf[(x, y)];
            let reversed = cell.modifier.contains(Modifier::REVERSED);
            let (fg, bg) = if reversed {
                (cell.bg, cell.fg)
            } else {
                (cell.fg, cell.bg)
            };
            // Gather a run of cells sharing the style.
            let start = x;
            let mut text = String::new();
            while x < w {
                let c = &buf[(x, y)];
                if c.fg != cell.fg || c.bg != cell.bg || c.modifier != cell.modifier {
                    break;
                }
                text.push_str(c.symbol());
                x += 1;
            }
            let len = x - start;
            let px = f64::from(start) * CELL_W;
            let py = f64::from(y) * CELL_H;
            if let Some(bg) = hex(bg) {
                let _ = write!(
                    svg,
                    r#"<rect x="{px:.1}" y="{py:.1}" width="{:.1}" height="{CELL_H}" fill="{bg}"/>"#,
                    f64::from(len) * CELL_W
                );
            }
            if text.trim().is_empty() {
                continue;
            }
            let fill = hex(fg).unwrap_or_else(|| FG.to_string());
            let mut attrs = format!(r#"fill="{fill}""#);
            if cell.modifier.contains(Modifier::BOLD) {
                attrs.push_str(r#" font-weight="bold""#);
            }
            if cell.modifier.contains(Modifier::DIM) {
                attrs.push_str(r#" opacity="0.6""#);
            }
            if cell.modifier.contains(Modifier::UNDERLINED) {
                attrs.push_str(r#" text-decoration="underline""#);
            }
            let _ = write!(
                svg,
                r#"<text x="{px:.1}" y="{:.1}" textLength="{:.1}" lengthAdjust="spacingAndGlyphs" xml:space="preserve" {attrs}>{}</text>"#,
                py + CELL_H * 0.78,
                f64::from(len) * CELL_W,
                esc(&text)
            );
        }
    }
    svg.push_str("</g></svg>\n");
    svg
}
