//! Screens drawn into a `TestBackend`, checked for what a person would look at.

use std::time::Duration;

use crossterm::event::KeyCode;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tunnelscope::dashboard::fmt::clock_ms;
use tunnelscope::dashboard::input::{handle, Panel, Ui};
use tunnelscope::dashboard::keys::BINDINGS;
use tunnelscope::dashboard::state::State;
use tunnelscope::dashboard::ui::draw;
use tunnelscope::event::{
    AdminState, CheckResult, Dir, Event, Health, PaceCause, PacedClose, Side, TunnelStats,
};

use super::{
    at, backend, buffer_text, busy_state, ch, key, open, popup_text, sample, screen, snapshot,
};

/// Every admin/health state at once, with counts that make the words checkable.
fn mixed_backends() -> State {
    let mut s = busy_state();
    let mut down = backend("127.0.0.1:9004", AdminState::Active, 0, 2);
    down.health = Health::Down;
    down.failures = 3;
    down.last_error = Some("connection refused".into());
    for b in [
        backend("127.0.0.1:9001", AdminState::Active, 1, 5),
        backend("127.0.0.1:9002", AdminState::Draining, 2, 3),
        backend("127.0.0.1:9003", AdminState::Drained, 0, 4),
        down,
        backend("127.0.0.1:9005", AdminState::Disabled, 0, 1),
    ] {
        s.apply(&Event::BackendState(b), at(3.0));
    }
    s
}

#[test]
fn overview_at_80x24_shows_backend_states_and_tunnel_rows() {
    let s = mixed_backends();
    let text = screen(&s, &Ui::default(), 80, 24);
    for word in ["active", "draining (2 left)", "drained", "down", "disabled"] {
        assert!(text.contains(word), "missing {word:?} in\n{text}");
    }
    for cell in [
        "chat/127.0.0.1:9001",
        "10.1.2.3:50000",
        "/chat?room=lobby",
        "1.2 KiB",
    ] {
        assert!(text.contains(cell), "missing {cell:?} in\n{text}");
    }
    // The header tells how many tunnels are live and names the listener.
    assert!(text.contains("2 live"), "{text}");
    assert!(text.contains("ws://127.0.0.1:8080"), "{text}");
    // No line is wider than the terminal (nothing wraps or spills).
    assert!(text.lines().all(|l| l.chars().count() <= 80));
}

#[test]
fn overview_at_160x48_has_room_for_every_column() {
    let s = busy_state();
    let text = screen(&s, &Ui::default(), 160, 48);
    for col in [
        "Client", "Path", "Backend", "Proto", "Age", "→Frm", "←Frm", "→Bytes", "←Bytes", "Msg/s",
        "Last",
    ] {
        assert!(text.contains(col), "missing column {col:?} in\n{text}");
    }
    assert!(text.contains("chat.v2"), "subprotocol shown");
    assert!(text.contains("4.0 KiB"), "bytes backend→client shown");
    assert!(text.contains("Share"), "{text}");
}

#[test]
fn closed_tunnels_show_who_closed_the_code_and_why() {
    let mut s = busy_state();
    s.apply(
        &Event::TunnelClosed {
            id: 8,
            code: Some(1001),
            reason: "idle timeout".into(),
            side: Side::Proxy,
            duration: Duration::from_secs(3),
            stats: TunnelStats::default(),
            error: None,
        },
        at(4.0),
    );
    let text = screen(&s, &Ui::default(), 160, 48);
    assert!(text.contains("1001 proxy: idle timeout"), "{text}");
    assert!(text.contains("1 live · 1 closed"), "{text}");

    // A connection reset is the cause when there was one.
    s.apply(
        &Event::TunnelClosed {
            id: 7,
            code: None,
            reason: String::new(),
            side: Side::Client,
            duration: Duration::from_secs(3),
            stats: TunnelStats::default(),
            error: Some("connection reset by peer".into()),
        },
        at(4.0),
    );
    let text = screen(&s, &Ui::default(), 160, 48);
    assert!(
        text.contains("- client: connection reset by peer"),
        "{text}"
    );
    let mut ui = Ui::default();
    handle(key(KeyCode::Enter), &s, &mut ui);
    let text = screen(&s, &ui, 160, 48);
    assert!(
        text.contains("closed by client · no code · error: connection reset by peer"),
        "{text}"
    );
}

/// A drain waiting for its deadline counts down; a running paced close shows its
/// rate and progress; the latest health check shows its latency or its failure.
#[test]
fn paced_closes_show_a_countdown_then_progress_and_checks_their_latency() {
    let mut s = busy_state();
    let mut waiting = backend("127.0.0.1:9001", AdminState::Draining, 2, 5);
    waiting.closing = Some(PacedClose {
        cause: PaceCause::Drain,
        starts: at(10.0),
        rate: 5,
        closed: 0,
        left: 2,
    });
    waiting.check = Some(CheckResult {
        at: at(2.5),
        latency: Duration::from_millis(3),
        error: None,
    });
    waiting.via = Some("chat.internal:9001".into());
    let mut running = backend("127.0.0.1:9002", AdminState::Active, 6, 9);
    running.closing = Some(PacedClose {
        cause: PaceCause::Rebalance,
        starts: at(1.0),
        rate: 5,
        closed: 2,
        left: 1,
    });
    running.check = Some(CheckResult {
        at: at(1.0),
        latency: Duration::from_millis(40),
        error: Some("answered 500, expected 101".into()),
    });
    s.apply(&Event::BackendState(waiting), at(3.0));
    s.apply(&Event::BackendState(running), at(3.0));
    let text = screen(&s, &Ui::default(), 160, 48);
    assert!(text.contains("Paced close"), "{text}");
    assert!(text.contains("drain in 7s (2 left)"), "{text}");
    assert!(text.contains("rebalance 5/s: 2 closed, 1 left"), "{text}");
    assert!(text.contains("ok 3ms"), "{text}");
    assert!(
        text.contains("chat/127.0.0.1:9001 (chat.internal)"),
        "found by DNS: {text}"
    );
    assert!(text.contains("fail 2s ago"), "{text}");
    // At 80 columns the progress still shows (the check column gives way).
    let narrow = screen(&s, &Ui::default(), 80, 24);
    assert!(narrow.contains("drain in 7s"), "{narrow}");
    // Without a paced close the column is not there.
    let plain = screen(&busy_state(), &Ui::default(), 160, 48);
    assert!(!plain.contains("Paced close"), "{plain}");
    // Nor is the Check column without health checks.
    assert!(!plain.contains("Check"), "{plain}");
}

#[test]
fn kill_confirmation_says_how_many_tunnels_close_with_1012() {
    let mut s = busy_state();
    s.apply(
        &Event::BackendState(backend("127.0.0.1:9001", AdminState::Active, 3, 10)),
        at(3.0),
    );
    let mut ui = Ui {
        focus: Panel::Backends,
        ..Ui::default()
    };
    assert_eq!(handle(ch('x'), &s, &mut ui), None);
    for (w, h) in [(80, 24), (160, 48)] {
        let text = screen(&s, &ui, w, h);
        let popup = popup_text(&text, '║');
        assert!(
            popup.contains(
                "Kill backend chat/127.0.0.1:9001? 3 tunnels will be closed with code 1012 (service restart)"
            ),
            "{w}x{h}: {popup}\n{text}"
        );
        assert!(popup.contains("[y/Enter] yes"), "{popup}");
        assert!(popup.contains("[n/Esc] no"), "{popup}");
    }
}

#[test]
fn help_overlay_lists_every_binding_from_the_table() {
    let s = busy_state();
    let mut ui = Ui::default();
    handle(ch('?'), &s, &mut ui);
    let text = screen(&s, &ui, 160, 48);
    for b in BINDINGS {
        assert!(text.contains(b.help), "help lacks {:?}\n{text}", b.help);
    }
    // At 80x24 it scrolls: the first binding is on screen, then the last.
    let small = screen(&s, &ui, 80, 24);
    assert!(small.contains(BINDINGS[0].help), "{small}");
    assert!(small.contains("↑↓ more"), "{small}");
    for _ in 0..60 {
        handle(key(KeyCode::Down), &s, &mut ui);
    }
    let small = screen(&s, &ui, 80, 24);
    assert!(small.contains(BINDINGS[BINDINGS.len() - 1].help), "{small}");
}

fn detail_state() -> State {
    let mut s = busy_state();
    let samples = vec![
        sample(0, Dir::ClientToBackend, 1, 0, b"hello backend", 2.5),
        sample(
            0,
            Dir::BackendToClient,
            1,
            0b100,
            &[0xf2, 0x48, 0xcd, 0xc9],
            2.6,
        ),
        sample(
            1,
            Dir::BackendToClient,
            2,
            0,
            &[0xde, 0xad, 0xbe, 0xef],
            2.7,
        ),
    ];
    s.apply(&Event::FrameSamples { id: 7, samples }, at(3.0));
    s
}

/// Tunnel 5 on `/quiet`, opened at 1 s with `idle_timeout`, its one frame sent at
/// 3 s, as the dashboard sees it at `now` seconds.
fn quiet_tunnel(idle_timeout: Option<Duration>, now: f64) -> State {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    for mut ev in super::open_events(5, "10.0.0.5:5000", "/quiet", "127.0.0.1:9001", 1.0) {
        if let Event::TunnelOpened {
            idle_timeout: t, ..
        } = &mut ev
        {
            *t = idle_timeout;
        }
        s.apply(&ev, at(1.0));
    }
    s.apply(
        &Event::FrameStats {
            id: 5,
            stats: super::stats((1, 10), (0, 0), 3.0),
        },
        at(now),
    );
    s
}

/// With an idle timeout, the list says when each live tunnel will be cut, and the
/// detail how long it has been idle and when it is cut; near the end it warns.
#[test]
fn the_idle_timeout_counts_down_in_the_list_and_the_detail() {
    let s = quiet_tunnel(Some(Duration::from_secs(90)), 33.0);
    let text = screen(&s, &Ui::default(), 160, 40);
    assert!(text.contains("30s ✂1m00s"), "{text}");
    let mut ui = Ui::default();
    handle(key(KeyCode::Enter), &s, &mut ui);
    let text = screen(&s, &ui, 160, 40);
    assert!(
        text.contains("idle 30s, cut in 1m00s (idle timeout 1m30s)"),
        "{text}"
    );
    // Without an idle timeout (idle = 0) there is no countdown.
    let mut never = State::from_snapshot(snapshot(), at(0.0));
    for mut ev in super::open_events(5, "10.0.0.5:5000", "/quiet", "127.0.0.1:9001", 1.0) {
        if let Event::TunnelOpened { idle_timeout, .. } = &mut ev {
            *idle_timeout = None;
        }
        never.apply(&ev, at(1.0));
    }
    let plain = screen(&never, &Ui::default(), 160, 40);
    assert!(
        plain.contains("no frames") && !plain.contains('✂'),
        "{plain}"
    );
}

/// A parked tunnel says so in the list and the detail, and stops saying so once it
/// relays again; a tunnel without an idle timeout says it too.
#[test]
fn a_parked_tunnel_is_marked_in_the_list_and_the_detail_until_it_resumes() {
    for timeout in [Some(Duration::from_secs(90)), None] {
        let mut s = quiet_tunnel(timeout, 3.0);
        let quiet = screen(&s, &Ui::default(), 160, 40);
        assert!(!quiet.contains("parked"), "{quiet}");
        s.apply(
            &Event::Parked {
                id: 5,
                parked: true,
            },
            at(4.0),
        );
        let list = screen(&s, &Ui::default(), 160, 40);
        let cell = if timeout.is_some() {
            "1s parked ✂1m29s"
        } else {
            "1s ago parked"
        };
        assert!(list.contains(cell), "{timeout:?}: {list}");
        let mut ui = Ui::default();
        handle(key(KeyCode::Enter), &s, &mut ui);
        let detail = screen(&s, &ui, 160, 40);
        assert!(detail.contains("parked: silent, no relay task"), "{detail}");
        s.apply(
            &Event::Parked {
                id: 5,
                parked: false,
            },
            at(4.5),
        );
        let resumed = screen(&s, &Ui::default(), 160, 40);
        assert!(!resumed.contains("parked"), "{resumed}");
    }
}

/// A tunnel opened over HTTP/2 is marked in the list and the detail.
#[test]
fn a_tunnel_over_http2_is_marked_h2() {
    let mut s = State::from_snapshot(snapshot(), at(0.0));
    for mut ev in super::open_events(5, "10.0.0.5:5000", "/h2", "127.0.0.1:9001", 1.0) {
        if let Event::Handshake { handshake, .. } = &mut ev {
            handshake.h2 = true;
        }
        s.apply(&ev, at(1.0));
    }
    let text = screen(&s, &Ui::default(), 160, 40);
    assert!(text.contains("h2 chat.v2"), "{text}");
    let mut ui = Ui::default();
    handle(key(KeyCode::Enter), &s, &mut ui);
    let text = screen(&s, &ui, 160, 40);
    assert!(text.contains("over HTTP/2 (extended CONNECT)"), "{text}");
}

#[test]
fn detail_view_shows_handshake_headers_extensions_and_frame_tail() {
    let s = detail_state();
    let mut ui = Ui::default();
    handle(key(KeyCode::Enter), &s, &mut ui);
    assert_eq!(ui.detail.as_ref().map(|d| d.id), Some(7));
    let text = screen(&s, &ui, 160, 48);
    for want in [
        "Tunnel #7",
        "Client → proxy request",
        "Proxy → backend request",
        "Backend 101 response",
        "x-room: lobby-7",
        "x-forwarded-for: 10.1.2.3",
        "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "subprotocol chat.v2",
        "permessage-deflate",
        "→ frames",
        "messages",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let lines: Vec<&str> = text.lines().collect();
    let find = |needle: &str| lines.iter().find(|l| l.contains(needle)).copied();
    let first = find("\"hello backend\"").expect("text frame line");
    assert!(first.contains(&clock_ms(at(2.5))), "{first}");
    assert!(first.contains("→ text"), "{first}");
    assert!(first.contains("FIN"), "{first}");
    // The RSV1 frame: flagged as compressed, its (deflated) payload shown as hex.
    let compressed = find("f2 48 cd c9").expect("RSV1 frame line");
    assert!(compressed.contains("← text"), "{compressed}");
    assert!(compressed.contains("FIN compressed"), "{compressed}");
    assert!(find("de ad be ef").is_some_and(|l| l.contains("← binary")));
    assert!(text.contains("LIVE"), "{text}");
}

#[test]
fn detail_at_80x24_keeps_the_frame_tail() {
    let s = detail_state();
    let mut ui = Ui::default();
    handle(key(KeyCode::Enter), &s, &mut ui);
    handle(ch('p'), &s, &mut ui);
    let text = screen(&s, &ui, 80, 24);
    assert!(text.contains("PAUSED"), "{text}");
    assert!(text.contains("compressed"), "{text}");
    assert!(text.contains("\"hello backend\""), "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 80));
}

#[test]
fn the_screen_follows_a_resize() {
    let s = busy_state();
    let ui = Ui::default();
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
    terminal.draw(|f| draw(f, &s, &ui)).unwrap();
    terminal.backend_mut().resize(80, 24);
    terminal.draw(|f| draw(f, &s, &ui)).unwrap();
    let text = buffer_text(terminal.backend().buffer());
    assert_eq!(text.lines().count(), 24);
    assert!(text.contains("10.1.2.3:50000"), "{text}");
    assert!(
        !text.contains("Proto"),
        "narrow screens drop low-priority columns"
    );
}

#[test]
fn a_tiny_terminal_gets_a_notice_not_a_panic() {
    let text = screen(&busy_state(), &Ui::default(), 30, 8);
    assert!(text.contains("too small"), "{text}");
}

#[test]
fn the_filter_prompt_shows_in_the_footer_and_narrows_the_list() {
    let s = busy_state();
    let mut ui = Ui::default();
    for k in "/feed".chars() {
        handle(ch(k), &s, &mut ui);
    }
    let text = screen(&s, &ui, 80, 24);
    assert!(text.contains("filter: feed"), "{text}");
    assert!(text.contains("10.9.9.9:40000"), "{text}");
    assert!(!text.contains("10.1.2.3:50000"), "{text}");
}

#[test]
fn an_empty_proxy_says_how_to_get_a_tunnel() {
    let s = State::from_snapshot(snapshot(), at(0.0));
    let text = screen(&s, &Ui::default(), 80, 24);
    assert!(text.contains("No tunnels yet"), "{text}");
}

#[test]
fn a_banner_and_the_log_pane_show_when_asked() {
    let mut s = busy_state();
    s.banner = Some("demo: open http://127.0.0.1:8080/".into());
    s.push_log(tracing::Level::WARN, "upgrade refused status=503");
    let mut ui = Ui::default();
    handle(ch('l'), &s, &mut ui);
    let text = screen(&s, &ui, 80, 24);
    assert!(text.contains("demo: open http://127.0.0.1:8080/"), "{text}");
    assert!(text.contains("WARN  upgrade refused status=503"), "{text}");
    let mut s2 = State::from_snapshot(snapshot(), at(0.0));
    open(&mut s2, 1, "10.0.0.1:1", "/", "127.0.0.1:9001", 0.0);
    assert!(!screen(&s2, &Ui::default(), 80, 24).contains("Log"));
}
