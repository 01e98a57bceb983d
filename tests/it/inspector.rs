//! Whole messages for the inspector (`[inspect] capture`): fragmented messages
//! reassembled, control frames kept beside them, long ones truncated at
//! `message_bytes` and marked, served by `GET /api/tunnels/{id}/messages`; with the
//! default `watched`, nothing is kept while no one watches.

use serde_json::Value;

use crate::admin::client::Admin;
use crate::common::wire::{frame, raw_upgrade, read_frame};
use crate::common::*;
use tokio::io::AsyncWriteExt;

fn config(backend: &Backend, inspect: &str) -> String {
    format!("[inspect]\n{inspect}\n\n{}", simple_config(&[backend], ""))
}

/// A frame without FIN.
fn fragment(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = frame(opcode, payload, Some(mask));
    f[0] &= 0x7F;
    f
}

async fn messages(admin: &Admin, proxy: &tunnelscope::proxy::ProxyHandle) -> Vec<Value> {
    let id = proxy.snapshot().tunnels[0].id;
    let v = admin.get_json(&format!("/api/tunnels/{id}/messages")).await;
    v["messages"]
        .as_array()
        .expect("a list of messages")
        .clone()
}

#[tokio::test]
async fn a_fragmented_message_is_kept_whole_with_the_ping_between_its_fragments() {
    let b = Backend::start("b").await;
    let proxy = proxy(&config(&b, "capture = \"all\"")).await;
    let admin = Admin::start(&proxy, None).await;
    let mut tcp = raw_upgrade(proxy.local_addrs()[0]).await;
    let mut bytes = fragment(0x1, b"hello, ", [1, 2, 3, 4]);
    bytes.extend(frame(0x9, b"still there?", Some([5, 6, 7, 8])));
    bytes.extend(fragment(0x0, b"whole ", [9, 8, 7, 6]));
    bytes.extend(frame(0x0, b"world", Some([0, 1, 0, 1])));
    tcp.write_all(&bytes).await.unwrap();
    // The backend answers the ping and echoes the message (in either order).
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(read_frame(&mut tcp).await.expect("a frame"));
    }
    assert!(
        seen.contains(&(0x1, b"hello, whole world".to_vec())),
        "{seen:?}"
    );

    let got = messages(&admin, &proxy).await;
    let find = |dir: &str, kind: &str| {
        got.iter()
            .find(|m| m["direction"] == dir && m["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} {dir} in {got:?}"))
            .clone()
    };
    let text = find("client_to_backend", "text");
    assert_eq!(text["text"], "hello, whole world");
    assert_eq!(
        (text["frames"].as_u64(), text["length"].as_u64()),
        (Some(3), Some(18))
    );
    assert_eq!(text["truncated"], false);
    assert_eq!(
        find("client_to_backend", "ping")["base64"],
        "c3RpbGwgdGhlcmU/"
    );
    assert_eq!(
        find("backend_to_client", "text")["text"],
        "hello, whole world"
    );
    find("backend_to_client", "pong");
}

#[tokio::test]
async fn a_message_over_message_bytes_is_kept_truncated_and_marked() {
    let b = Backend::start("b").await;
    let proxy = proxy(&config(&b, "capture = \"all\"\nmessage_bytes = 16")).await;
    let admin = Admin::start(&proxy, None).await;
    let mut tcp = raw_upgrade(proxy.local_addrs()[0]).await;
    let payload: Vec<u8> = (0..100u8).collect();
    tcp.write_all(&frame(0x2, &payload, Some([3, 3, 3, 3])))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut tcp).await, Some((0x2, payload.clone())));
    let got = messages(&admin, &proxy).await;
    let m = got
        .iter()
        .find(|m| m["direction"] == "client_to_backend")
        .unwrap();
    assert_eq!(
        (m["length"].as_u64(), m["truncated"].as_bool()),
        (Some(100), Some(true))
    );
    use base64::Engine;
    let kept = base64::engine::general_purpose::STANDARD
        .decode(m["base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(kept, payload[..16]);
}

/// With the default `watched`, a tunnel no one watches keeps nothing; once an
/// observer subscribes, what follows is kept.
#[tokio::test]
async fn with_capture_watched_nothing_is_kept_until_someone_watches() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let admin = Admin::start(&proxy, None).await;
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    assert_eq!(whoami(&mut ws).await, "b");
    assert!(
        messages(&admin, &proxy).await.is_empty(),
        "kept while unwatched"
    );
    let _watching = proxy.subscribe();
    assert_eq!(whoami(&mut ws).await, "b");
    let got = messages(&admin, &proxy).await;
    let texts: Vec<_> = got.iter().map(|m| m["text"].clone()).collect();
    assert_eq!(texts, ["whoami", "b"], "{got:?}");
}

/// `GET /api/tunnels/{id}/har`: HAR 1.2 as Chrome exports a WebSocket, the
/// handshake as the entry and the data messages (not the pings) in
/// `_webSocketMessages`, send and receive, with their time.
#[tokio::test]
async fn a_tunnel_exports_as_har_with_its_websocket_messages() {
    let b = Backend::start("b").await;
    let proxy = proxy(&config(&b, "capture = \"all\"")).await;
    let admin = Admin::start(&proxy, None).await;
    let mut tcp = raw_upgrade(proxy.local_addrs()[0]).await;
    let mut bytes = frame(0x1, b"hello", Some([1, 2, 3, 4]));
    bytes.extend(frame(0x9, b"ping", Some([1, 2, 3, 4])));
    bytes.extend(frame(0x2, &[0, 159, 146, 150], Some([4, 3, 2, 1])));
    tcp.write_all(&bytes).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(read_frame(&mut tcp).await.expect("a frame"));
    }
    let id = proxy.snapshot().tunnels[0].id;
    let har = admin.get_json(&format!("/api/tunnels/{id}/har")).await;
    assert_eq!(har["log"]["version"], "1.2");
    let entry = &har["log"]["entries"][0];
    assert_eq!(entry["request"]["url"], "ws://localhost/raw");
    assert_eq!(entry["response"]["status"], 101);
    let has = |list: &Value, name: &str| {
        list.as_array().unwrap().iter().any(|h| {
            h["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    };
    assert!(has(&entry["request"]["headers"], "sec-websocket-key"));
    assert!(has(&entry["response"]["headers"], "sec-websocket-accept"));
    let messages = entry["_webSocketMessages"].as_array().unwrap();
    let summary: Vec<(String, u64, String)> = messages
        .iter()
        .map(|m| {
            assert!(m["time"].as_f64().unwrap() > 1.7e9, "{m}");
            (
                m["type"].as_str().unwrap().to_string(),
                m["opcode"].as_u64().unwrap(),
                m["data"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("send", 1, "hello"),
        ("receive", 1, "hello"),
        ("send", 2, "AJ+Slg=="),
        ("receive", 2, "AJ+Slg=="),
    ] {
        assert!(
            summary.contains(&(want.0.into(), want.1, want.2.into())),
            "{want:?} not in {summary:?}"
        );
    }
    assert_eq!(summary.len(), 4, "no control frames in HAR: {summary:?}");
}

/// `inspect.memory` bounds what all tunnels keep together: two tunnels flooding
/// 500-byte messages keep at most 4,000 bytes between them, each its newest.
#[tokio::test]
async fn the_proxy_wide_capture_budget_holds_under_a_flood() {
    let b = Backend::start("b").await;
    let proxy = proxy(&config(&b, "capture = \"all\"\nmemory = 4000")).await;
    let admin = Admin::start(&proxy, None).await;
    let (mut one, mut two) = (
        raw_upgrade(proxy.local_addrs()[0]).await,
        raw_upgrade(proxy.local_addrs()[0]).await,
    );
    for i in 0..40u8 {
        for tcp in [&mut one, &mut two] {
            tcp.write_all(&frame(0x2, &[i; 500], Some([9, 9, 9, 9])))
                .await
                .unwrap();
            assert_eq!(read_frame(tcp).await, Some((0x2, vec![i; 500])));
        }
    }
    let mut kept = 0;
    for t in proxy.snapshot().tunnels {
        let got = admin
            .get_json(&format!("/api/tunnels/{}/messages", t.id))
            .await;
        for m in got["messages"].as_array().unwrap() {
            use base64::Engine;
            let data = base64::engine::general_purpose::STANDARD
                .decode(m["base64"].as_str().unwrap())
                .unwrap();
            kept += data.len();
            assert!(
                data[0] >= 30,
                "an old message outlived newer ones: {}",
                data[0]
            );
        }
    }
    assert!(kept <= 4000, "{kept} bytes kept over a budget of 4000");
    assert!(kept >= 2000, "the budget was used: {kept}");
}

/// `GET /api/tunnels/{id}/recording`: JSON Lines with the tunnel, the handshake
/// (credentials redacted), then every frame with its bits: fragments, the ping
/// between them, masked toward the backend, and the echo back unmasked.
#[tokio::test]
async fn a_tunnel_exports_as_a_json_lines_recording_with_every_frame() {
    let b = Backend::start("b").await;
    let proxy = proxy(&config(&b, "capture = \"all\"")).await;
    let admin = Admin::start(&proxy, None).await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.local_addrs()[0])
        .await
        .unwrap();
    tcp.write_all(
        b"GET /rec?room=1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nAuthorization: Bearer s3cret\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = crate::common::http_fixtures::read_head(&mut tcp).await;
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let mut bytes = fragment(0x1, b"part one, ", [1, 2, 3, 4]);
    bytes.extend(frame(0x9, b"hb", Some([5, 6, 7, 8])));
    bytes.extend(frame(0x0, b"part two", Some([9, 8, 7, 6])));
    tcp.write_all(&bytes).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(read_frame(&mut tcp).await.expect("pong and echo"));
    }

    let id = proxy.snapshot().tunnels[0].id;
    let reply = admin.get(&format!("/api/tunnels/{id}/recording")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/jsonl");
    let lines: Vec<Value> = reply
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines[0]["type"], "start");
    assert_eq!(lines[0]["path"], "/rec?room=1");
    assert_eq!(lines[1]["type"], "handshake");
    let auth = lines[1]["request"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == "authorization")
        .expect("the authorization header")
        .clone();
    assert_eq!(auth[1], "«redacted, 13 bytes»");
    let frames: Vec<(String, u64, bool, bool)> = lines[2..]
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "frame", "{f}");
            (
                f["dir"].as_str().unwrap().to_string(),
                f["opcode"].as_u64().unwrap(),
                f["fin"].as_bool().unwrap(),
                f["masked"].as_bool().unwrap(),
            )
        })
        .collect();
    let c2b: Vec<_> = frames.iter().filter(|f| f.0 == "c2b").cloned().collect();
    assert_eq!(
        c2b,
        [
            ("c2b".into(), 1, false, true),
            ("c2b".into(), 9, true, true),
            ("c2b".into(), 0, true, true)
        ]
    );
    assert!(
        frames.contains(&("b2c".into(), 1, true, false)),
        "{frames:?}"
    );
    assert!(
        frames.contains(&("b2c".into(), 10, true, false)),
        "{frames:?}"
    );
    let first = &lines[2];
    assert_eq!(first["text"], "part one, ");
    // It reads back into the messages, as `tunnelscope replay` will.
    let r = tunnelscope::inspect::recording::read(&reply.body).unwrap();
    let texts: Vec<String> = r
        .messages()
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(texts, ["part one, part two", "part one, part two"]);
}

/// Across tunnels: `GET /api/search?q=` and the dashboard's `f` find the messages
/// containing an order id in every live tunnel, and Enter on a match opens its
/// tunnel on that message.
#[tokio::test]
async fn a_search_finds_the_order_id_in_every_tunnel_and_jumps_to_the_match() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tunnelscope::dashboard::input::{handle, Effect, Popup, Ui};
    use tunnelscope::dashboard::state::State;

    let b = Backend::start("b").await;
    let proxy = proxy(&config(&b, "capture = \"all\"")).await;
    let admin = Admin::start(&proxy, None).await;
    let addr = proxy.local_addrs()[0];
    let mut one = connect(addr, "/orders").await;
    let mut two = connect(addr, "/support").await;
    for (first, text) in [
        (true, r#"{"order":"A-1042","qty":2}"#),
        (true, r#"{"order":"B-7","qty":1}"#),
        (false, "where is my order a-1042?"),
    ] {
        let ws = if first { &mut one } else { &mut two };
        ws.send(Message::text(text)).await.unwrap();
        assert_eq!(next_data(ws).await, Message::text(text));
    }

    let found = admin.get_json("/api/search?q=A-1042").await;
    let matches = found["matches"].as_array().unwrap();
    // Each message went both ways (the echo): two in each tunnel.
    assert_eq!(matches.len(), 4, "{found}");
    let tunnels: std::collections::BTreeSet<u64> = matches
        .iter()
        .map(|m| m["tunnel"].as_u64().unwrap())
        .collect();
    assert_eq!(tunnels.len(), 2);
    assert!(matches.iter().all(|m| m["snippet"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("a-1042")));
    admin.get("/api/search").await.error(400);

    // The dashboard: f, the id, Enter; the matches; Enter on one opens it.
    let snapshot = proxy.snapshot();
    let mut state = State::from_snapshot(snapshot, std::time::SystemTime::now());
    let mut ui = Ui::default();
    let key = |c: KeyCode| KeyEvent::new(c, KeyModifiers::NONE);
    handle(key(KeyCode::Char('f')), &state, &mut ui);
    for c in "a-1042".chars() {
        handle(key(KeyCode::Char(c)), &state, &mut ui);
    }
    let Some(Effect::Search(query)) = handle(key(KeyCode::Enter), &state, &mut ui) else {
        panic!("Enter searches");
    };
    let search = proxy.search_source();
    tunnelscope::dashboard::find::show(&state, &mut ui, query.clone(), search(&query));
    let Some(Popup::Found(f)) = &ui.popup else {
        panic!("the matches are listed: {:?}", ui.popup)
    };
    assert_eq!(f.hits.len(), 4);
    let text = crate::dashboard::screen(&state, &ui, 120, 30);
    assert!(text.contains("4 messages containing \"a-1042\""), "{text}");
    assert!(text.contains("where is my order a-1042?"), "{text}");
    let want = f.hits[1].clone();
    handle(key(KeyCode::Down), &state, &mut ui);
    handle(key(KeyCode::Enter), &state, &mut ui);
    let d = ui.detail.as_ref().expect("the tunnel's detail opens");
    assert_eq!(d.id, want.tunnel);
    assert!(d.messages, "on its message list");
    assert_eq!(d.selected, Some((want.dir, want.seq)));
    // With the tunnel's messages fetched (as the run loop does each tick), the
    // selected one is the match.
    state.messages = Some((want.tunnel, (proxy.messages_source())(want.tunnel).unwrap()));
    handle(key(KeyCode::Enter), &state, &mut ui);
    let text = crate::dashboard::screen(&state, &ui, 120, 30);
    assert!(text.to_ascii_lowercase().contains("a-1042"), "{text}");
    assert!(matches!(ui.popup, Some(Popup::Message(_))));
}

/// Bytes the proxy has forwarded to a raw backend connection, exactly `n` (bounded).
async fn forwarded(conn: &mut crate::common::wire::RawConn, n: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0; n];
    tokio::time::timeout(WAIT, conn.tcp.read_exact(&mut buf))
        .await
        .expect("forwarded in time")
        .expect("the proxy's connection to the backend is open");
    buf
}

async fn texts_sent(admin: &Admin, id: u64) -> Vec<String> {
    let v = admin.get_json(&format!("/api/tunnels/{id}/messages")).await;
    v["messages"]
        .as_array()
        .expect("a list of messages")
        .iter()
        .filter(|m| m["direction"] == "client_to_backend")
        .map(|m| m["text"].as_str().unwrap_or("<not text>").to_string())
        .collect()
}

/// A client that sends half a frame and vanishes: while the frame is unfinished its
/// tunnel lists only its whole messages, and another client's capture is untouched,
/// before and after.
#[tokio::test]
async fn a_client_vanishing_mid_frame_leaves_only_whole_messages_and_spares_others() {
    use crate::common::wire::RawBackend;
    let mut raw = RawBackend::start().await;
    let conf = format!(
        "[inspect]\ncapture = \"all\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
        raw.addr
    );
    let proxy = proxy(&conf).await;
    let admin = Admin::start(&proxy, None).await;
    let addr = proxy.local_addrs()[0];

    let mut a = raw_upgrade(addr).await;
    let mut a_back = raw.accept().await;
    let a_id = proxy.snapshot().tunnels[0].id;
    let first = frame(0x1, b"first", Some([1, 2, 3, 4]));
    a.write_all(&first).await.unwrap();
    assert_eq!(forwarded(&mut a_back, first.len()).await, first);
    // A binary frame announcing 100 bytes, of which 10 come.
    let mut half = frame(0x2, &[7u8; 100], Some([9, 9, 9, 9]));
    half.truncate(2 + 4 + 10);
    a.write_all(&half).await.unwrap();
    assert_eq!(forwarded(&mut a_back, half.len()).await, half);
    assert_eq!(texts_sent(&admin, a_id).await, ["first"]);

    let mut b = raw_upgrade(addr).await;
    let mut b_back = raw.accept().await;
    let b_id = proxy
        .snapshot()
        .tunnels
        .iter()
        .map(|t| t.id)
        .find(|&id| id != a_id)
        .expect("the second tunnel");
    let other = frame(0x1, b"other", Some([4, 3, 2, 1]));
    b.write_all(&other).await.unwrap();
    assert_eq!(forwarded(&mut b_back, other.len()).await, other);

    drop(a);
    let still = frame(0x1, b"still here", Some([5, 5, 5, 5]));
    b.write_all(&still).await.unwrap();
    assert_eq!(forwarded(&mut b_back, still.len()).await, still);
    assert_eq!(texts_sent(&admin, b_id).await, ["other", "still here"]);
}
