//! Finding and talking in a tunnel's detail: `/` filters the frame tail and the
//! message list (words, `re:`, `->`/`<-`, `op:`) and highlights what it found, `P`
//! hides pings; `i` sends a message toward the backend or (Tab) the client, `h`/`H`
//! hold a side, and the tail marks injected frames and shows what waits behind a
//! hold. Drawn into a `TestBackend` at 80×24 and 160×48.

use crossterm::event::KeyCode;
use tunnelscope::control::{Command, InjectKind};
use tunnelscope::dashboard::input::{handle, Effect, Popup, Ui};
use tunnelscope::dashboard::state::State;
use tunnelscope::event::{Dir, Event, HoldState, Side};

use super::{at, busy_state, captured, ch, key, sample, screen};

/// Tunnel 7's detail open on a tail of an order, an answer, pings, and one frame
/// the operator injected.
fn with_tail() -> (State, Ui) {
    let mut s = busy_state();
    let mut injected = sample(4, Dir::BackendToClient, 0x1, 0, b"maintenance at noon", 3.5);
    injected.injected = true;
    let samples = vec![
        sample(
            0,
            Dir::ClientToBackend,
            0x1,
            0,
            br#"{"order":"A-1042"}"#,
            3.0,
        ),
        sample(1, Dir::BackendToClient, 0x1, 0, b"accepted A-1042", 3.1),
        sample(2, Dir::ClientToBackend, 0x9, 0, b"hb", 3.2),
        sample(3, Dir::BackendToClient, 0xA, 0, b"hb", 3.3),
        injected,
    ];
    s.apply(&Event::FrameSamples { id: 7, samples }, at(3.6));
    let mut ui = Ui::default();
    handle(key(KeyCode::Enter), &s, &mut ui);
    assert_eq!(ui.detail.as_ref().map(|d| d.id), Some(7));
    (s, ui)
}

fn type_line(s: &State, ui: &mut Ui, text: &str) {
    for c in text.chars() {
        handle(ch(c), s, ui);
    }
}

#[test]
fn slash_filters_the_tail_and_highlights_the_match() {
    let (s, mut ui) = with_tail();
    let text = screen(&s, &ui, 160, 48);
    assert!(text.contains("→ ping"), "pings shown at first:\n{text}");
    handle(ch('/'), &s, &mut ui);
    type_line(&s, &mut ui, "a-1042");
    for (w, h) in [(80, 24), (160, 48)] {
        let text = screen(&s, &ui, w, h);
        assert!(text.contains("filter: a-1042"), "the prompt:\n{text}");
        assert!(text.contains("accepted A-1042"), "{w}x{h}\n{text}");
        assert!(text.contains(r#""order":"A-1042""#), "{text}");
        assert!(!text.contains("maintenance"), "filtered out:\n{text}");
        assert!(!text.contains("→ ping"), "{text}");
    }
    handle(key(KeyCode::Enter), &s, &mut ui);
    let text = screen(&s, &ui, 160, 48);
    assert!(
        text.contains("/ a-1042"),
        "the filter stays in the title:\n{text}"
    );

    // The match is highlighted: its cells have the highlight's background.
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 48)).unwrap();
    terminal
        .draw(|f| tunnelscope::dashboard::ui::draw(f, &s, &ui))
        .unwrap();
    let buf = terminal.backend().buffer().clone();
    let row = (0..48)
        .find(|&y| {
            let line: String = (0..160).map(|x| buf[(x, y)].symbol()).collect();
            line.contains("accepted A-1042")
        })
        .expect("the answer's row");
    let line: String = (0..160).map(|x| buf[(x, row)].symbol()).collect();
    let col = line.find("A-1042").unwrap() as u16;
    let (hit, before) = (&buf[(col, row)], &buf[(col - 2, row)]);
    assert_ne!(hit.bg, before.bg, "the match stands out");

    // Direction and opcode narrow it; a bad regex keeps the last good filter.
    handle(ch('/'), &s, &mut ui);
    for _ in 0..6 {
        handle(key(KeyCode::Backspace), &s, &mut ui);
    }
    type_line(&s, &mut ui, "<- op:text re:(");
    let text = screen(&s, &ui, 160, 48);
    assert!(text.contains("re: regex parse error"), "{text}");
    handle(key(KeyCode::Backspace), &s, &mut ui);
    type_line(&s, &mut ui, "noon");
    let text = screen(&s, &ui, 160, 48);
    assert!(text.contains("maintenance at noon"), "{text}");
    assert!(!text.contains("accepted"), "{text}");
    handle(key(KeyCode::Esc), &s, &mut ui);
    let text = screen(&s, &ui, 160, 48);
    assert!(
        text.contains("accepted") && text.contains("→ ping"),
        "cleared:\n{text}"
    );
}

#[test]
fn p_hides_pings_and_pongs() {
    let (s, mut ui) = with_tail();
    handle(ch('P'), &s, &mut ui);
    let text = screen(&s, &ui, 80, 24);
    assert!(
        !text.contains("→ ping") && !text.contains("← pong"),
        "{text}"
    );
    assert!(text.contains("accepted A-1042"), "{text}");
    assert!(text.contains("no pings"), "{text}");
}

#[test]
fn injected_frames_are_marked_in_the_tail() {
    let (s, ui) = with_tail();
    for (w, h) in [(80, 24), (160, 48)] {
        let text = screen(&s, &ui, w, h);
        let line = text
            .lines()
            .find(|l| l.contains("maintenance"))
            .unwrap_or_else(|| panic!("{w}x{h}\n{text}"));
        assert!(line.contains("injected"), "{line}");
    }
}

#[test]
fn i_sends_toward_the_backend_or_after_tab_the_client() {
    let (s, mut ui) = with_tail();
    handle(ch('i'), &s, &mut ui);
    assert!(matches!(ui.popup, Some(Popup::Inject(_))));
    type_line(&s, &mut ui, r#"{"cmd":"refresh"}"#);
    let text = screen(&s, &ui, 80, 24);
    assert!(
        text.contains(r#"send → to backend: {"cmd":"refresh"}"#),
        "{text}"
    );
    let sent = handle(key(KeyCode::Enter), &s, &mut ui);
    assert_eq!(
        sent,
        Some(Effect::Send(Command::Inject {
            id: 7,
            to: Side::Backend,
            kind: InjectKind::Text,
            payload: br#"{"cmd":"refresh"}"#.to_vec(),
        }))
    );
    assert_eq!(ui.popup, None);

    handle(ch('i'), &s, &mut ui);
    handle(key(KeyCode::Tab), &s, &mut ui);
    type_line(&s, &mut ui, "hex:00ff");
    let text = screen(&s, &ui, 80, 24);
    assert!(text.contains("send ← to client: hex:00ff"), "{text}");
    let sent = handle(key(KeyCode::Enter), &s, &mut ui);
    assert_eq!(
        sent,
        Some(Effect::Send(Command::Inject {
            id: 7,
            to: Side::Client,
            kind: InjectKind::Binary,
            payload: vec![0, 255],
        }))
    );

    // A ping too long stays in the line, with the reason.
    handle(ch('i'), &s, &mut ui);
    type_line(&s, &mut ui, &format!("ping:{}", "x".repeat(130)));
    assert_eq!(handle(key(KeyCode::Enter), &s, &mut ui), None);
    assert!(matches!(ui.popup, Some(Popup::Inject(_))));
    assert!(ui.flash.as_ref().unwrap().text.contains("125"));
    handle(key(KeyCode::Esc), &s, &mut ui);
    assert_eq!(ui.popup, None);

    handle(ch('i'), &s, &mut ui);
    type_line(&s, &mut ui, "close:4001 come back later");
    assert_eq!(
        handle(key(KeyCode::Enter), &s, &mut ui),
        Some(Effect::Send(Command::CloseTunnel {
            id: 7,
            code: 4001,
            reason: "come back later".into(),
        }))
    );
}

#[test]
fn h_holds_the_client_and_the_tail_shows_what_waits() {
    let (mut s, mut ui) = with_tail();
    assert_eq!(
        handle(ch('h'), &s, &mut ui),
        Some(Effect::Send(Command::Hold {
            id: 7,
            from: Side::Client,
            on: true
        }))
    );
    let held = HoldState {
        dir: Dir::ClientToBackend,
        since: at(3.7),
        waiting_bytes: Some(2048),
        waiting_frames: Some(3),
        at_least: false,
        encrypted: false,
    };
    s.apply(
        &Event::Hold {
            id: 7,
            dir: Dir::ClientToBackend,
            state: Some(held),
        },
        at(3.8),
    );
    for (w, h) in [(80, 24), (160, 48)] {
        let text = screen(&s, &ui, w, h);
        assert!(
            text.contains("HELD → 3 frames, 2.0 KiB waiting"),
            "{w}x{h}\n{text}"
        );
    }
    // Pressed again, it releases.
    assert_eq!(
        handle(ch('h'), &s, &mut ui),
        Some(Effect::Send(Command::Hold {
            id: 7,
            from: Side::Client,
            on: false
        }))
    );
    assert_eq!(
        handle(ch('H'), &s, &mut ui),
        Some(Effect::Send(Command::Hold {
            id: 7,
            from: Side::Backend,
            on: true
        }))
    );
}

/// Tunnel 7 again, its client having sent credentials.
fn with_credentials() -> (State, Ui) {
    let (mut s, _) = with_tail();
    let mut hs = super::handshake(false);
    hs.request_in = tunnelscope::event::Headers::from_pairs([
        ("host", "chat.example"),
        ("authorization", "Bearer s3cret-token"),
        ("cookie", "session=abc123"),
    ]);
    s.apply(
        &Event::Handshake {
            id: 7,
            handshake: hs,
        },
        at(3.9),
    );
    let mut ui = Ui {
        redact: tunnelscope::inspect::redact::Redact::new(&[], false),
        ..Ui::default()
    };
    handle(key(KeyCode::Enter), &s, &mut ui);
    (s, ui)
}

#[test]
fn credentials_are_redacted_until_v_reveals_them_for_the_session() {
    let (s, mut ui) = with_credentials();
    let text = screen(&s, &ui, 160, 48);
    assert!(
        text.contains("authorization: «redacted, 19 bytes»"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    handle(ch('v'), &s, &mut ui);
    let text = screen(&s, &ui, 160, 48);
    assert!(
        text.contains("authorization: Bearer s3cret-token"),
        "{text}"
    );
    assert!(text.contains("cookie: session=abc123"), "{text}");
    // Back to the overview and into the detail again: still revealed this session.
    handle(key(KeyCode::Esc), &s, &mut ui);
    handle(key(KeyCode::Enter), &s, &mut ui);
    assert!(screen(&s, &ui, 160, 48).contains("Bearer s3cret-token"));
    handle(ch('v'), &s, &mut ui);
    assert!(!screen(&s, &ui, 160, 48).contains("s3cret"));
}

#[test]
fn e_exports_har_and_a_recording_with_credentials_redacted_even_when_shown() {
    let (mut s, mut ui) = with_credentials();
    s.messages = Some((
        7,
        vec![captured(
            1,
            Dir::ClientToBackend,
            tunnelscope::event::OpKind::Text,
            b"hello",
        )],
    ));
    handle(ch('v'), &s, &mut ui);
    let Some(Effect::Save(files)) = handle(ch('E'), &s, &mut ui) else {
        panic!("E saves files")
    };
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["tunnel-7.har", "tunnel-7.jsonl"]);
    let har: serde_json::Value = serde_json::from_slice(&files[0].1).unwrap();
    let entry = &har["log"]["entries"][0];
    assert_eq!(entry["_webSocketMessages"][0]["data"], "hello");
    let auth = entry["request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "authorization")
        .unwrap()
        .clone();
    assert_eq!(auth["value"], "«redacted, 19 bytes»");
    let jsonl = String::from_utf8(files[1].1.clone()).unwrap();
    assert!(!jsonl.contains("s3cret"), "{jsonl}");
    let r = tunnelscope::inspect::recording::read(&jsonl).unwrap();
    assert_eq!(r.messages()[0].payload, b"hello");
}

#[test]
fn a_filtered_message_list_shows_each_match_even_far_into_a_long_message() {
    let mut s = busy_state();
    let long = format!(r#"{{"padding":"{}","order":"A-1042"}}"#, "x".repeat(300));
    let m = captured(
        1,
        Dir::ClientToBackend,
        tunnelscope::event::OpKind::Text,
        long.as_bytes(),
    );
    s.messages = Some((7, vec![m]));
    let mut ui = Ui::default();
    handle(key(KeyCode::Enter), &s, &mut ui);
    handle(ch('m'), &s, &mut ui);
    assert!(
        !screen(&s, &ui, 80, 24).contains("A-1042"),
        "past the edge at first"
    );
    handle(ch('/'), &s, &mut ui);
    type_line(&s, &mut ui, "a-1042");
    handle(key(KeyCode::Enter), &s, &mut ui);
    for (w, h) in [(80, 24), (160, 48)] {
        let text = screen(&s, &ui, w, h);
        let row = text
            .lines()
            .find(|l| l.contains("→ text"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            row.contains("…") && row.contains("A-1042"),
            "{w}x{h}: {row}"
        );
    }
}
