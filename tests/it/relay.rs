//! Tunnels relay every kind of frame unchanged, in both directions, over ws and wss,
//! and report what they saw.

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::event::{Event, OpKind, Side};

#[tokio::test]
async fn text_and_binary_messages_are_echoed_through_the_proxy() {
    let b = Backend::start("b1").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let mut ws = connect(proxy.local_addrs()[0], "/chat").await;
    for i in 0..50 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        assert_eq!(
            next_data(&mut ws).await,
            Message::text(format!("hello {i}"))
        );
        let bin: Vec<u8> = (0..=255u8).cycle().take(1000 + i).collect();
        ws.send(Message::binary(bin.clone())).await.unwrap();
        assert_eq!(next_data(&mut ws).await, Message::binary(bin));
    }
    assert_eq!(b.seen()[0].path, "/chat");
}

#[tokio::test]
async fn sixteen_mib_messages_cross_both_ways() {
    let b = Backend::start("big").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    let big: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match next_data(&mut ws).await {
        Message::Binary(got) => assert!(got[..] == big[..], "payload changed in transit"),
        other => panic!("expected binary, got {other:?}"),
    }
}

#[tokio::test]
async fn fragmented_message_is_relayed_and_counted_as_one_message() {
    let b = Backend::start("frag").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let mut events = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    ws.send(Message::Frame(Frame::message(
        b"Hel".to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        b"lo".to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text("Hello"));
    let ev = wait_event(
        &mut events,
        |e| matches!(e, Event::FrameStats { stats, .. } if stats.client_to_backend.messages == 1),
    )
    .await;
    let Event::FrameStats { stats, .. } = ev else {
        unreachable!()
    };
    let up = &stats.client_to_backend;
    assert_eq!(up.op(OpKind::Text).frames, 1);
    assert_eq!(up.op(OpKind::Continuation).frames, 1);
    assert_eq!(
        up.op(OpKind::Text).payload_bytes + up.op(OpKind::Continuation).payload_bytes,
        5
    );
}

#[tokio::test]
async fn pings_reach_the_backend_and_pongs_come_back() {
    let b = Backend::start("ping").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Pong(p))) => return p,
                Some(Ok(_)) => continue,
                other => panic!("stream ended: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(&pong[..], b"are you there");
}

#[tokio::test]
async fn client_close_handshake_is_relayed_and_reported() {
    let b = Backend::start("cc").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let mut events = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    assert_eq!(whoami(&mut ws).await, "cc");
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .unwrap();
    // The backend's close reply arrives through the proxy, then the stream ends.
    let reply = tokio::time::timeout(WAIT, async {
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Close(frame)) = msg {
                return frame;
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(reply.map(|f| f.code), Some(CloseCode::Normal));
    let ev = wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;
    let Event::TunnelClosed {
        code,
        side,
        reason,
        stats,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(
        (code, side, reason.as_str()),
        (Some(1000), Side::Client, "done")
    );
    assert_eq!(stats.client_to_backend.op(OpKind::Close).frames, 1);
    assert_eq!(stats.backend_to_client.op(OpKind::Close).frames, 1);
}

#[tokio::test]
async fn backend_close_reaches_the_client_with_its_code() {
    let b = Backend::start("bc").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let mut events = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    ws.send(Message::text("close:4001")).await.unwrap();
    // Reading on after the Close lets the client send its reply, as real clients do.
    let frame = tokio::time::timeout(WAIT, async {
        let mut close = None;
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Close(frame)) = msg {
                close = frame;
            }
        }
        close
    })
    .await
    .unwrap()
    .expect("a close frame");
    assert_eq!(u16::from(frame.code), 4001);
    assert_eq!(frame.reason.as_str(), "backend closes");
    let ev = wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;
    let Event::TunnelClosed { code, side, .. } = ev else {
        unreachable!()
    };
    assert_eq!((code, side), (Some(4001), Side::Backend));
}

#[tokio::test]
async fn wss_listener_terminates_tls_and_relays() {
    let pki = certs::TestPki::new();
    let b = Backend::start("tls").await;
    let toml = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
        pki.cert_pem.display(),
        pki.key_pem.display(),
        b.addr
    );
    let proxy = proxy(&toml).await;
    let addr = proxy.local_addrs()[0];
    let tls = pki.connect(addr, "localhost").await;
    let (mut ws, resp) = tokio_tungstenite::client_async_with_config(
        format!("wss://localhost:{}/secure", addr.port()),
        tls,
        Some(ws_config()),
    )
    .await
    .expect("wss upgrade");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("over tls")).await.unwrap();
    let got = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::text("over tls"));
    let seen = &b.seen()[0];
    assert_eq!(seen.get("x-forwarded-proto").as_deref(), Some("https"));
}
