//! End to end through the dashboard: the real `tunnelscope` binary in a real terminal
//! (a tmux session; `.ci/run` installs tmux), with a real config file, real backends
//! and real WebSocket clients. A person's keys drain a backend, kill it and quit;
//! the clients prove what each key did, and the screen shows it.

use std::net::SocketAddr;
use std::path::Path;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::common::tui::{process_alive, require_tmux, Tmux};
use crate::common::{connect, next_data, whoami, Backend, Client, WAIT};

const WIDTH: u16 = 160;
const HEIGHT: u16 = 48;

/// The address the title bar says the listener is on (`ws://127.0.0.1:PORT`).
fn header_addr(screen: &str) -> Option<SocketAddr> {
    let title = screen.lines().next()?;
    let at = title.find("ws://")? + "ws://".len();
    title[at..].split_whitespace().next()?.parse().ok()
}

/// The address the log file's "listening" line names.
fn log_addr(log: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("listening"))?;
    let at = line.find(" addr=")? + " addr=".len();
    line[at..].split_whitespace().next()?.parse().ok()
}

/// The rows of the Backends panel, from under its column titles to its bottom border.
fn backend_rows(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .skip_while(|l| !(l.starts_with("│Backend") && l.contains("State")))
        .skip(1)
        .take_while(|l| !l.starts_with('╰'))
        .collect()
}

/// The position and text of one backend's row in the Backends panel.
fn backend_row<'a>(screen: &'a str, id: &str) -> Option<(usize, &'a str)> {
    let cell = format!("│{id} ");
    backend_rows(screen)
        .into_iter()
        .enumerate()
        .find(|(_, l)| l.starts_with(&cell))
}

/// Whether a backend's row shows this state word (`active`, `draining (1 left)`, …).
fn shows_state(screen: &str, id: &str, state: &str) -> bool {
    backend_row(screen, id).is_some_and(|(_, row)| row.contains(&format!(" {state} ")))
}

/// The text inside a confirm popup (double borders), lines joined with single spaces
/// so that wrapping does not matter.
fn popup_text(screen: &str) -> String {
    let inner: Vec<&str> = screen
        .lines()
        .filter_map(|l| {
            let (start, end) = (l.find('║')?, l.rfind('║')?);
            (end > start).then(|| l[start + '║'.len_utf8()..end].trim())
        })
        .collect();
    inner
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Logs go to the log file (and the hidden log pane), never raw onto the screen.
fn no_log_lines(screen: &str) {
    for needle in ["INFO", "WARN", "ERROR", "tunnelscope::"] {
        assert!(
            !screen.contains(needle),
            "log output ({needle}) on the screen:\n{screen}"
        );
    }
}

fn tunnels(n: usize) -> String {
    if n == 1 {
        "1 tunnel".into()
    } else {
        format!("{n} tunnels")
    }
}

/// The tunnel still relays both ways.
async fn echoes(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    match next_data(ws).await {
        Message::Text(t) => assert_eq!(t.as_str(), text),
        other => panic!("expected the echo of {text:?}, got {other:?}"),
    }
}

/// The next message is a Close frame; returns it.
async fn close_frame(ws: &mut Client) -> CloseFrame {
    match next_data(ws).await {
        Message::Close(Some(frame)) => frame,
        other => panic!("expected a Close frame with a code, got {other:?}"),
    }
}

/// After a Close: answers it and waits for the connection to end.
async fn closed(ws: &mut Client) {
    tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} })
        .await
        .expect("the connection ends after the close handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_keys_drain_kill_and_quit_act_on_real_tunnels() {
    if !require_tmux() {
        return;
    }
    let a = Backend::start("alpha").await;
    let b = Backend::start("beta").await;
    let a_id = format!("app/{}", a.addr);
    let b_id = format!("app/{}", b.addr);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tunnelscope.toml");
    let log = dir.path().join("tunnelscope.log");
    // The listener binds port 0 and the test reads the port off the screen: no race
    // for a free port. B is listed first so that selecting A takes Tab and j.
    std::fs::write(
        &config,
        format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
             [pool.app]\nbalance = \"least_conn\"\n\n\
             [[pool.app.server]]\naddr = \"{}\"\n\n\
             [[pool.app.server]]\naddr = \"{}\"\n",
            b.addr, a.addr
        ),
    )
    .unwrap();

    let mut tui = Tmux::start(
        dir.path(),
        WIDTH,
        HEIGHT,
        &[("RUST_LOG", "info")],
        Path::new(env!("CARGO_BIN_EXE_tunnelscope")),
        &[
            "--config",
            config.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
        ],
    );
    let pid = tui.pid().expect("the pane's process id");

    // The dashboard lists both backends, active, and says where it listens.
    let screen = tui
        .wait_for(
            "the listening address and both backends active",
            no_log_lines,
            |s| {
                header_addr(s).is_some()
                    && shows_state(s, &a_id, "active")
                    && shows_state(s, &b_id, "active")
            },
        )
        .await;
    let addr = header_addr(&screen).unwrap();
    assert_eq!(
        log_addr(&log),
        Some(addr),
        "the log file's \"listening\" line names the address the header shows"
    );

    // Tunnels on both backends, held open.
    let (mut on_a, mut on_b) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let mut ws = connect(addr, "/").await;
        match whoami(&mut ws).await.as_str() {
            "alpha" => on_a.push(ws),
            "beta" => on_b.push(ws),
            other => panic!("unknown backend {other:?}"),
        }
    }
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "least_conn spreads 4 tunnels over both backends: {} on A, {} on B",
        on_a.len(),
        on_b.len()
    );
    let screen = tui
        .wait_for("4 live tunnels in the title bar", no_log_lines, |s| {
            s.lines()
                .next()
                .is_some_and(|t| t.contains("│ 4 live · 4 total"))
        })
        .await;

    // Select A's row with the keys a person would press, and drain it.
    let (row, _) = backend_row(&screen, &a_id).expect("A's row");
    tui.send(&["Tab", "g"]);
    for _ in 0..row {
        tui.send(&["j"]);
    }
    tui.send(&["d"]);
    let draining = format!("draining ({} left)", on_a.len());
    tui.wait_for(&format!("A {draining}, B active"), no_log_lines, |s| {
        shows_state(s, &a_id, &draining)
            && shows_state(s, &b_id, "active")
            && s.contains(&format!("drain sent: {a_id}"))
    })
    .await;

    // New clients never reach A; its existing tunnels still work.
    let upgrades_on_a = a.seen().len();
    for i in 0..10 {
        let mut ws = connect(addr, "/").await;
        assert_eq!(
            whoami(&mut ws).await,
            "beta",
            "new tunnel {i} went to the draining backend"
        );
        on_b.push(ws);
    }
    assert_eq!(
        a.seen().len(),
        upgrades_on_a,
        "no upgrade request reached A while it drained"
    );
    for (i, ws) in on_a.iter_mut().enumerate() {
        echoes(ws, &format!("still on A while draining #{i}")).await;
        assert_eq!(whoami(ws).await, "alpha");
    }

    // Kill A: the popup names it and the code; yes closes its clients with 1012.
    tui.send(&["x"]);
    let expected = format!(
        "Kill backend {a_id}? {} will be closed with code 1012",
        tunnels(on_a.len())
    );
    tui.wait_for("the kill confirmation", no_log_lines, |s| {
        popup_text(s).contains(&expected)
    })
    .await;
    tui.send(&["y"]);
    for ws in &mut on_a {
        let frame = close_frame(ws).await;
        assert_eq!(u16::from(frame.code), 1012, "A's client got {frame:?}");
        closed(ws).await;
    }
    for (i, ws) in on_b.iter_mut().enumerate() {
        echoes(ws, &format!("B unaffected by the kill #{i}")).await;
    }
    let live = format!("│ {} live", on_b.len());
    tui.wait_for(
        "A disabled, B active, only B's tunnels live",
        no_log_lines,
        |s| {
            shows_state(s, &a_id, "disabled")
                && shows_state(s, &b_id, "active")
                && s.lines().next().is_some_and(|t| t.contains(&live))
        },
    )
    .await;

    // Quit: it asks first (tunnels are open), then closes them with 1001 and exits.
    tui.send(&["q"]);
    let expected = format!(
        "Quit tunnelscope? {} open will be closed with code 1001",
        tunnels(on_b.len())
    );
    tui.wait_for("the quit confirmation", no_log_lines, |s| {
        popup_text(s).contains(&expected)
    })
    .await;
    tui.send(&["y"]);
    for ws in &mut on_b {
        let frame = close_frame(ws).await;
        assert_eq!(u16::from(frame.code), 1001, "B's client got {frame:?}");
        closed(ws).await;
    }
    let status = tui.wait_exit().await;
    assert_eq!(
        status,
        Some(0),
        "tunnelscope exits with status 0 after quit"
    );
    assert!(!process_alive(pid), "the tunnelscope process is gone");
    // The terminal is restored: the dashboard is no longer on the screen.
    let after = tui.capture();
    no_log_lines(&after);
    assert!(
        !after.contains("╭ Backends"),
        "the dashboard left the terminal as it found it; screen:\n{after}"
    );
}
