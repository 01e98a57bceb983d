//! Talking into a tunnel: messages injected through the API reach the client and
//! the backend whole, masked toward the backend, never inside a fragmented message,
//! and the tail marks them; a hold stops reading one side, so TCP pushes back on the
//! sender instead of the proxy buffering, and the release delivers everything in
//! order.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::event::{Dir, Event};

use crate::admin::client::Admin;
use crate::common::clients::echo_on;
use crate::common::wire::{frame, frame_header, raw_upgrade, read_frame, RawBackend};
use crate::common::*;

fn config(backend: std::net::SocketAddr) -> String {
    format!(
        "[inspect]\ncapture = \"all\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{backend}\"\n"
    )
}

async fn tunnel_id(admin: &Admin) -> u64 {
    let v = admin.get_json("/api/tunnels").await;
    v["tunnels"][0]["id"].as_u64().expect("a tunnel")
}

/// One tunnel through a proxy (capturing everything) to an echo backend, its
/// client having had one echo, and the proxy's event bus.
struct Echoing {
    _backend: Backend,
    proxy: tunnelscope::proxy::ProxyHandle,
    admin: Admin,
    bus: tokio::sync::broadcast::Receiver<Event>,
    ws: Client,
    id: u64,
}

impl Echoing {
    async fn start() -> Echoing {
        let backend = Backend::start("b").await;
        let proxy = proxy(&config(backend.addr)).await;
        let admin = Admin::start(&proxy, None).await;
        let bus = proxy.subscribe();
        let mut ws = connect(proxy.local_addrs()[0], "/").await;
        echo_on(&mut ws, "hello").await;
        let id = tunnel_id(&admin).await;
        Echoing {
            _backend: backend,
            proxy,
            admin,
            bus,
            ws,
            id,
        }
    }
}

/// `POST /api/tunnels/{id}/hold?from=backend`, which must succeed.
async fn hold_backend(admin: &Admin, id: u64) {
    let r = admin
        .post(&format!("/api/tunnels/{id}/hold?from=backend"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn injected_messages_reach_both_sides_whole_and_the_tail_marks_them() {
    let Echoing {
        _backend,
        proxy: _proxy,
        admin,
        mut ws,
        id,
        ..
    } = Echoing::start().await;

    let r = admin
        .post_body(
            &format!("/api/tunnels/{id}/send?to=client"),
            b"from the operator",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(next_data(&mut ws).await, Message::text("from the operator"));

    // Toward the backend it must be masked, or tungstenite's server would fail the
    // connection; the echo proves it arrived whole.
    let r = admin
        .post_body(
            &format!("/api/tunnels/{id}/send?to=backend&type=binary"),
            &[0, 1, 2, 255],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        next_data(&mut ws).await,
        Message::binary(vec![0, 1, 2, 255])
    );

    let r = admin
        .post_body(
            &format!("/api/tunnels/{id}/send?to=client&type=ping"),
            b"are you there",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ping = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(p))) => return p,
                Some(Ok(_)) => continue,
                other => panic!("no ping: {other:?}"),
            }
        }
    })
    .await
    .expect("the ping in time");
    assert_eq!(&ping[..], b"are you there");
    // The tunnel carries on as before.
    echo_on(&mut ws, "still relaying").await;

    let detail = admin.get_json(&format!("/api/tunnels/{id}")).await;
    let samples = detail["samples"].as_array().unwrap();
    let injected: Vec<_> = samples
        .iter()
        .filter(|s| s["injected"] == true)
        .map(|s| (s["dir"].as_str().unwrap(), s["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        injected,
        [
            ("backend_to_client", "text"),
            ("client_to_backend", "binary"),
            ("backend_to_client", "ping"),
        ],
        "{samples:?}"
    );
    let toward_backend = samples
        .iter()
        .find(|s| s["injected"] == true && s["dir"] == "client_to_backend")
        .unwrap();
    assert_eq!(toward_backend["masked"], true);
    let messages = admin.get_json(&format!("/api/tunnels/{id}/messages")).await;
    let m = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["injected"] == true && m["type"] == "text")
        .expect("the injected text among the captured messages")
        .clone();
    assert_eq!(m["text"], "from the operator");
    assert_eq!(m["direction"], "backend_to_client");
}

#[tokio::test]
async fn bad_injections_are_refused_with_the_reason() {
    let Echoing {
        _backend,
        proxy: _proxy,
        admin,
        mut ws,
        id,
        ..
    } = Echoing::start().await;
    let send = |q: String, body: Vec<u8>| {
        let admin = &admin;
        async move {
            admin
                .post_body(&format!("/api/tunnels/{id}/send?{q}"), &body)
                .await
        }
    };
    let e = send("to=client".into(), vec![0xff, 0xfe]).await.error(400);
    assert!(e.contains("UTF-8"), "{e}");
    let e = send("to=backend&type=ping".into(), vec![b'x'; 126])
        .await
        .error(400);
    assert!(e.contains("125"), "{e}");
    let e = send("type=text".into(), b"x".to_vec()).await.error(400);
    assert!(e.contains("to=client"), "{e}");
    let e = send("to=client&type=pong".into(), b"x".to_vec())
        .await
        .error(400);
    assert!(e.contains("pong"), "{e}");
    let big = vec![b'a'; tunnelscope::control::MAX_INJECT_BYTES + 1];
    send("to=client".into(), big).await.error(413);
    let r = admin
        .post_body(&format!("/api/tunnels/{}/send?to=client", id + 1000), b"x")
        .await;
    r.error(404);
    // None of that disturbed the tunnel.
    echo_on(&mut ws, "unharmed").await;
}

#[tokio::test]
async fn an_injection_waits_for_the_end_of_a_fragmented_message() {
    let b = Backend::start("b").await;
    let proxy = proxy(&config(b.addr)).await;
    let admin = Admin::start(&proxy, None).await;
    let mut bus = proxy.subscribe();
    let mut tcp = raw_upgrade(proxy.local_addrs()[0]).await;
    let id = tunnel_id(&admin).await;
    let mut first = frame(0x1, b"part one, ", Some([1, 2, 3, 4]));
    first[0] &= 0x7F;
    tcp.write_all(&first).await.unwrap();
    // The proxy has passed the first fragment on.
    wait_event(&mut bus, |e| {
        matches!(e, Event::FrameSamples { id: i, samples }
            if *i == id && samples.iter().any(|s| s.dir == Dir::ClientToBackend))
    })
    .await;

    let r = admin
        .post_body(&format!("/api/tunnels/{id}/send?to=backend"), b"injected")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    tcp.write_all(&frame(0x0, b"part two", Some([5, 6, 7, 8])))
        .await
        .unwrap();
    // The backend echoes what it got, in order: had the injection landed between
    // the fragments, it would have failed the connection instead.
    assert_eq!(
        read_frame(&mut tcp).await,
        Some((0x1, b"part one, part two".to_vec()))
    );
    assert_eq!(
        read_frame(&mut tcp).await,
        Some((0x1, b"injected".to_vec()))
    );
}

/// Waits for the proxy to report `waiting` on the hold of `dir`.
async fn wait_hold(
    bus: &mut tokio::sync::broadcast::Receiver<Event>,
    id: u64,
    dir: Dir,
    mut waiting: impl FnMut(&tunnelscope::event::HoldState) -> bool,
) -> tunnelscope::event::HoldState {
    match wait_event(bus, |e| {
        matches!(e, Event::Hold { id: i, dir: d, state: Some(s) } if *i == id && *d == dir && waiting(s))
    })
    .await
    {
        Event::Hold { state: Some(s), .. } => s,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_hold_keeps_what_one_side_sends_in_its_socket_until_released() {
    let Echoing {
        _backend,
        proxy: _proxy,
        admin,
        mut bus,
        mut ws,
        id,
    } = Echoing::start().await;

    hold_backend(&admin, id).await;
    for i in 0..5 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    // The echoes wait, unread, in the proxy's socket from the backend.
    let held = wait_hold(&mut bus, id, Dir::BackendToClient, |s| {
        s.waiting_frames == Some(5)
    })
    .await;
    assert_eq!(held.waiting_bytes, Some(5 * 4));
    assert!(!held.encrypted);
    let listed = admin.get_json(&format!("/api/tunnels/{id}")).await;
    assert_eq!(
        listed["held"][0]["direction"], "backend_to_client",
        "{listed}"
    );
    assert_eq!(listed["held"][0]["waiting_frames"], 5, "{listed}");

    let r = admin
        .post(&format!("/api/tunnels/{id}/release?from=backend"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for i in 0..5 {
        assert_eq!(next_data(&mut ws).await, Message::text(format!("m{i}")));
    }
    let listed = admin.get_json(&format!("/api/tunnels/{id}")).await;
    assert_eq!(listed["held"], serde_json::json!([]), "{listed}");
}

#[tokio::test]
async fn a_held_flood_is_pushed_back_to_its_sender_not_buffered_by_the_proxy() {
    let mut raw = RawBackend::start().await;
    let proxy = proxy(&config(raw.addr)).await;
    let admin = Admin::start(&proxy, None).await;
    let mut bus = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    let mut backend = raw.accept().await;
    let id = tunnel_id(&admin).await;
    hold_backend(&admin, id).await;

    // The backend writes 64 KiB frames until a write stalls, at most 64 MiB.
    const FRAME: usize = 64 * 1024;
    let payload = vec![b'z'; FRAME];
    let mut one = frame_header(0x2, FRAME, false);
    one.extend_from_slice(&payload);
    let mut written = 0usize;
    while written < 64 << 20 {
        match tokio::time::timeout(Duration::from_millis(500), backend.tcp.write_all(&one)).await {
            Ok(Ok(())) => written += 1,
            Ok(Err(e)) => panic!("backend write failed: {e}"),
            Err(_) => break,
        }
    }
    // What the kernel may hold: the backend's send buffer and the proxy's receive
    // buffer, each at most its configured maximum.
    let max = |f: &str| -> usize {
        let text = std::fs::read_to_string(f).unwrap();
        text.split_whitespace().last().unwrap().parse().unwrap()
    };
    let sockets = max("/proc/sys/net/ipv4/tcp_rmem") + max("/proc/sys/net/ipv4/tcp_wmem");
    let bytes = written * one.len();
    assert!(
        bytes <= sockets && bytes < 64 << 20,
        "the backend wrote {bytes} bytes into a held tunnel (socket buffers hold {sockets})"
    );
    let held = wait_hold(&mut bus, id, Dir::BackendToClient, |s| s.at_least).await;
    assert_eq!(
        held.waiting_bytes,
        Some(64 * 1024),
        "a look sees 64 KiB ahead"
    );

    // Released, every whole frame the backend got out arrives.
    admin
        .post(&format!("/api/tunnels/{id}/release?from=backend"))
        .await;
    for _ in 0..written {
        assert_eq!(next_data(&mut ws).await.into_data().len(), FRAME);
    }
}

/// A hold never keeps a tunnel alive: once the client closes, the held side's
/// answer is read and the tunnel ends.
#[tokio::test]
async fn a_held_tunnel_still_ends_when_the_client_closes() {
    let Echoing {
        _backend,
        proxy: _proxy,
        admin,
        mut bus,
        mut ws,
        id,
    } = Echoing::start().await;
    hold_backend(&admin, id).await;
    wait_hold(&mut bus, id, Dir::BackendToClient, |_| true).await;
    ws.close(None).await.unwrap();
    let ended = wait_event(
        &mut bus,
        |e| matches!(e, Event::TunnelClosed { id: i, .. } if *i == id),
    )
    .await;
    let Event::TunnelClosed { side, .. } = ended else {
        unreachable!()
    };
    assert_eq!(side, tunnelscope::event::Side::Client);
}
