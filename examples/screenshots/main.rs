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

mod fake;
mod svg;

use fake::*;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use svg::to_svg;

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
    save("top", &fleet_state(&state, now), &Ui::default())?;
    Ok(())
}

/// `tunnelscope top` following two instances, one of them down, after a drain sent
/// to both.
fn fleet_state(state: &State, now: SystemTime) -> State {
    use std::sync::Arc;
    use tunnelscope::event::{Event, Fleet, FleetOutcome, Instance, Link, Share};
    let mut s = state.clone();
    s.banner = Some("top: 2 instances · commands go to every instance · ? help".into());
    let (east, west): (Arc<str>, Arc<str>) = (Arc::from("east"), Arc::from("west"));
    for (n, t) in s.tunnels.values_mut().enumerate() {
        t.instance = Some(if n % 3 == 2 {
            west.clone()
        } else {
            east.clone()
        });
    }
    let shares = s
        .backends
        .iter()
        .map(|b| {
            let split = |name: &Arc<str>, n: u64| Share {
                instance: name.clone(),
                active_tunnels: n,
                admin: b.admin,
            };
            let west_part = b.active_tunnels / 3;
            (
                b.id.clone(),
                vec![
                    split(&east, b.active_tunnels - west_part),
                    split(&west, west_part),
                ],
            )
        })
        .collect();
    let instances = vec![
        Instance {
            name: east.clone(),
            url: "https://10.0.0.1:9090".into(),
            link: Link::Up,
            tunnels: 9,
        },
        Instance {
            name: west.clone(),
            url: "https://10.0.0.2:9090".into(),
            link: Link::Down {
                why: "connection lost: Connection reset by peer".into(),
                retry_at: now + Duration::from_secs(4),
            },
            tunnels: 0,
        },
    ];
    s.apply(
        &Event::Fleet(Fleet {
            instances,
            shares,
            generation: 0,
        }),
        now,
    );
    let drained = s
        .backends
        .first()
        .map(|b| b.id.to_string())
        .unwrap_or_default();
    s.apply(
        &Event::FleetOutcome(FleetOutcome {
            command: format!("drain {drained}"),
            results: vec![
                (east, Ok("done".into())),
                (west, Err("not connected".into())),
            ],
        }),
        now,
    );
    s
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
