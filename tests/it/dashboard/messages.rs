//! Whole messages in the tunnel detail: `m` lists them, the arrows choose, Enter
//! opens one in full as pretty-printed JSON (or text, or hex with Tab), `y` copies
//! it, `w` writes it to a file, Esc closes; drawn into a `TestBackend` at 80×24 and 160×48.

use crossterm::event::KeyCode;
use tunnelscope::dashboard::input::{handle, Effect, Popup, Ui};
use tunnelscope::dashboard::message::View;
use tunnelscope::dashboard::state::State;
use tunnelscope::event::{Dir, OpKind};

use super::{busy_state, captured, ch, key, screen};

const ORDER: &[u8] = br#"{"order":{"id":"A-1042","items":[{"sku":"tea","qty":2}],"paid":true}}"#;

/// Tunnel 7's detail open on its messages: an order (JSON), an answer, a ping.
fn with_messages() -> (State, Ui) {
    let mut s = busy_state();
    s.messages = Some((
        7,
        vec![
            captured(0, Dir::ClientToBackend, OpKind::Text, ORDER),
            captured(0, Dir::BackendToClient, OpKind::Text, b"accepted A-1042"),
            captured(1, Dir::ClientToBackend, OpKind::Ping, b"hb"),
        ],
    ));
    let mut ui = Ui::default();
    handle(key(KeyCode::Enter), &s, &mut ui);
    assert_eq!(ui.detail.as_ref().map(|d| d.id), Some(7));
    handle(ch('m'), &s, &mut ui);
    (s, ui)
}

#[test]
fn m_lists_whole_messages_with_direction_kind_size_and_preview() {
    let (s, ui) = with_messages();
    for (w, h) in [(80, 24), (160, 48)] {
        let text = screen(&s, &ui, w, h);
        assert!(text.contains("Messages 3 kept"), "{w}x{h}\n{text}");
        assert!(text.contains("← text"), "{text}");
        assert!(text.contains("accepted A-1042"), "{text}");
        assert!(text.contains("→ ping"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= w as usize));
    }
}

#[test]
fn enter_opens_the_chosen_message_as_json_then_tab_shows_hex_and_esc_closes() {
    let (s, mut ui) = with_messages();
    // The newest is selected; two up is the order.
    handle(key(KeyCode::Up), &s, &mut ui);
    handle(key(KeyCode::Up), &s, &mut ui);
    handle(key(KeyCode::Enter), &s, &mut ui);
    let Some(Popup::Message(p)) = &ui.popup else {
        panic!("no message view: {:?}", ui.popup)
    };
    assert_eq!(p.view, View::Json, "JSON opens as JSON");
    let text = screen(&s, &ui, 160, 48);
    assert!(text.contains("Message → text · client → backend"), "{text}");
    assert!(
        text.contains(r#""id": "A-1042","#),
        "pretty-printed:\n{text}"
    );
    assert!(text.contains(r#""qty": 2"#), "{text}");

    // `w` writes it to a file named after the tunnel, direction and number.
    assert_eq!(
        handle(ch('w'), &s, &mut ui),
        Some(Effect::Save(vec![(
            "tunnel-7-c2b-0.json".into(),
            ORDER.to_vec()
        )]))
    );

    handle(key(KeyCode::Tab), &s, &mut ui);
    let text = screen(&s, &ui, 160, 48);
    assert!(
        text.contains("00000000  7b 22 6f 72 64 65 72 22  3a 7b"),
        "hex dump:\n{text}"
    );
    assert!(
        text.contains(r#"  {"order":{"id":""#),
        "ASCII column:\n{text}"
    );

    let copied = handle(ch('y'), &s, &mut ui);
    assert_eq!(copied, Some(Effect::Copy(ORDER.to_vec())));

    handle(key(KeyCode::Esc), &s, &mut ui);
    assert_eq!(ui.popup, None);
    assert!(ui.detail.is_some(), "back in the detail");
}

#[test]
fn a_long_message_scrolls_in_the_full_view() {
    let mut s = busy_state();
    let lines: Vec<String> = (0..200).map(|i| format!("line {i}")).collect();
    let body = lines.join("\n");
    s.messages = Some((
        7,
        vec![captured(
            0,
            Dir::BackendToClient,
            OpKind::Text,
            body.as_bytes(),
        )],
    ));
    let mut ui = Ui::default();
    handle(key(KeyCode::Enter), &s, &mut ui);
    handle(ch('m'), &s, &mut ui);
    handle(key(KeyCode::Enter), &s, &mut ui);
    let text = screen(&s, &ui, 80, 24);
    assert!(
        text.contains("line 0") && !text.contains("line 50"),
        "{text}"
    );
    for _ in 0..3 {
        handle(key(KeyCode::PageDown), &s, &mut ui);
    }
    let text = screen(&s, &ui, 80, 24);
    assert!(
        text.contains("line 60") && !text.contains("line 0 "),
        "{text}"
    );
}

#[test]
fn socket_io_and_messagepack_open_decoded_and_tab_goes_through_every_view() {
    let mut s = busy_state();
    // MessagePack {"id": 7, "tags": ["a"]}, as a binary message.
    let msgpack = [
        0x82, 0xa2, b'i', b'd', 0x07, 0xa4, b't', b'a', b'g', b's', 0x91, 0xa1, b'a',
    ];
    s.messages = Some((
        7,
        vec![
            captured(
                0,
                Dir::BackendToClient,
                OpKind::Text,
                br#"42/chat,["message",{"from":"ada","text":"hi"}]"#,
            ),
            captured(1, Dir::BackendToClient, OpKind::Binary, &msgpack),
        ],
    ));
    let mut ui = Ui::default();
    handle(key(KeyCode::Enter), &s, &mut ui);
    handle(ch('m'), &s, &mut ui);
    handle(key(KeyCode::Up), &s, &mut ui);
    handle(key(KeyCode::Enter), &s, &mut ui);
    let view = |ui: &Ui| match &ui.popup {
        Some(Popup::Message(p)) => p.view,
        other => panic!("no message view: {other:?}"),
    };
    assert_eq!(view(&ui).name(), "socket.io");
    for (w, h) in [(80, 24), (160, 48)] {
        let text = screen(&s, &ui, w, h);
        assert!(
            text.contains(r#"Socket.IO EVENT · namespace /chat "message""#),
            "{w}x{h}\n{text}"
        );
        assert!(text.contains(r#""from": "ada","#), "{text}");
        assert!(text.contains(" socket.io "), "its tab:\n{text}");
    }
    // Tab: hex, then text, then JSON (which says it is not JSON), then back.
    let mut seen = vec![view(&ui).name()];
    for _ in 0..4 {
        handle(key(KeyCode::Tab), &s, &mut ui);
        seen.push(view(&ui).name());
    }
    assert_eq!(seen, ["socket.io", "hex", "text", "json", "socket.io"]);

    handle(key(KeyCode::Esc), &s, &mut ui);
    handle(key(KeyCode::Down), &s, &mut ui);
    handle(key(KeyCode::Enter), &s, &mut ui);
    assert_eq!(view(&ui).name(), "msgpack");
    let text = screen(&s, &ui, 80, 24);
    assert!(text.contains("── MessagePack"), "{text}");
    assert!(text.contains(r#""id": 7,"#), "{text}");
}
