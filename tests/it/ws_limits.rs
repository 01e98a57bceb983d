//! The WebSocket limits of a route (`[limits]`, overridden per `[[route]]`): an
//! `Origin` allow-list checked before any backend is contacted, a maximum message
//! size and a maximum message rate, each enforced at a frame boundary on whichever
//! side sent too much, counted, and shown as the close reason.

use crate::common::wire::{read_outcome, upgrade_request};
use crate::common::*;
use crate::common::{clients::*, pools::*, recorder::*};
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::event::{Event, Limit, Side};
use tunnelscope::proxy::ProxyHandle;

/// Two routes to one recorder: `/open` allows any origin, everything else only
/// the `[limits]` list.
fn origin_config(r: &Recorder) -> String {
    format!(
        "[limits]\nallowed_origins = [\"https://app.example.com\", \"https://*.Example.org\"]\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [[route]]\npath = \"/open\"\npool = \"app\"\nallowed_origins = []\n\n\
         [[route]]\npath = \"/\"\npool = \"app\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
        r.addr
    )
}

/// An upgrade request for `path`, with this `Origin` if any: the status answered.
async fn upgrade_with_origin(proxy: &ProxyHandle, path: &str, origin: Option<&str>) -> u16 {
    let mut tcp = TcpStream::connect(proxy.local_addrs()[0]).await.unwrap();
    let mut req = upgrade_request(path);
    if let Some(o) = origin {
        req = req.replacen("\r\n", &format!("\r\nOrigin: {o}\r\n"), 1);
    }
    tcp.write_all(req.as_bytes()).await.unwrap();
    let out = read_outcome(&mut tcp).await;
    out.status()
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", out.text()))
}

fn hits(proxy: &ProxyHandle, limit: Limit) -> u64 {
    (proxy.counters_source())().limit_hits[limit as usize]
}

#[tokio::test]
async fn a_handshake_from_an_origin_not_allowed_gets_403_and_never_reaches_a_backend() {
    let mut r = Recorder::start("app", false).await;
    let proxy = proxy(&origin_config(&r)).await;
    let mut events = proxy.subscribe();

    for evil in [
        "https://evil.example",
        "null",
        "https://app.example.com.evil.example",
        "http://app.example.com",
    ] {
        assert_eq!(
            upgrade_with_origin(&proxy, "/chat", Some(evil)).await,
            403,
            "{evil}"
        );
        let ev = wait_event(&mut events, |e| matches!(e, Event::Refused { .. })).await;
        let Event::Refused { refusal, .. } = ev else {
            unreachable!()
        };
        assert_eq!(
            (refusal.status, refusal.reason.as_str()),
            (403, "origin not allowed")
        );
    }
    assert!(r.ended().is_none(), "no backend connection was made");
    assert_eq!(hits(&proxy, Limit::Origin), 4);

    // Listed origins (case aside), any subdomain of a wildcard, and clients that send
    // no Origin at all (not browsers) go through; so does anything on /open.
    for (path, origin) in [
        ("/chat", Some("https://APP.example.com")),
        ("/chat", Some("https://eu.chat.example.org")),
        ("/chat", None),
        ("/open", Some("https://evil.example")),
    ] {
        assert_eq!(
            upgrade_with_origin(&proxy, path, origin).await,
            101,
            "{path} {origin:?}"
        );
    }
    assert_eq!(hits(&proxy, Limit::Origin), 4);
}

/// A client message over `max_message_bytes` is not forwarded: the client gets
/// Close 1009, the backend 1001, and the tunnel's close reason says why.
#[tokio::test]
async fn a_client_message_over_the_size_limit_gets_1009_and_the_backend_1001() {
    let mut r = Recorder::start("app", false).await;
    let proxy = proxy(&pool_config(
        "[limits]\nmax_message_bytes = 1000",
        "",
        &[(r.addr, "")],
    ))
    .await;
    let mut events = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    let fits = "a".repeat(1000);
    ws.send(Message::text(fits.clone())).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text(fits.clone()));

    ws.send(Message::text("b".repeat(1001))).await.unwrap();
    let close = expect_close(&mut ws).await;
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1009, "message too big")
    );
    assert_eq!(
        r.next_ending().await,
        Ending::Close(Some(1001), "message too big".into())
    );
    assert_eq!(
        *r.texts.lock().unwrap(),
        [fits],
        "the big one never reached the backend"
    );

    let ev = wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;
    let Event::TunnelClosed {
        code, reason, side, ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(
        (code, reason.as_str(), side),
        (Some(1009), "message too big", Side::Proxy)
    );
    assert_eq!(hits(&proxy, Limit::MessageSize), 1);
}

/// The limit holds for what the backend sends too: then the backend is the one
/// told 1009, and the client gets 1001 and none of the message.
#[tokio::test]
async fn a_backend_message_over_the_size_limit_gets_the_backend_1009_and_the_client_1001() {
    let mut r = Recorder::start("app", false).await;
    let proxy = proxy(&pool_config(
        "[limits]\nmax_message_bytes = 1000",
        "",
        &[(r.addr, "")],
    ))
    .await;
    let mut events = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    ws.send(Message::text("split:5000")).await.unwrap();
    r.release();
    let close = expect_close(&mut ws).await;
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1001, "message too big")
    );
    assert_eq!(
        r.next_ending().await,
        Ending::Close(Some(1009), "message too big".into())
    );
    wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;
    assert_eq!(hits(&proxy, Limit::MessageSize), 1);
}

/// A route may lift the limit: the same message passes on a route whose own
/// `max_message_bytes` is 0.
#[tokio::test]
async fn a_route_overrides_the_message_size_limit() {
    let r = Recorder::start("app", false).await;
    let proxy = proxy(&format!(
        "[limits]\nmax_message_bytes = 10\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [[route]]\npath = \"/bulk\"\npool = \"app\"\nmax_message_bytes = 0\n\n\
         [[route]]\npath = \"/\"\npool = \"app\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
        r.addr
    ))
    .await;
    let mut ws = connect(proxy.local_addrs()[0], "/bulk").await;
    let big = "c".repeat(100_000);
    ws.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text(big));
    let mut small = connect(proxy.local_addrs()[0], "/").await;
    small.send(Message::text("eleven byte")).await.unwrap();
    assert_eq!(u16::from(expect_close(&mut small).await.code), 1009);
}

/// Over `max_message_rate` a flooding client gets Close 1008: the burst allowed
/// goes through, the message after it does not.
#[tokio::test]
async fn a_client_over_the_message_rate_gets_1008_after_its_burst() {
    let mut r = Recorder::start("app", false).await;
    let proxy = proxy(&pool_config(
        "[limits]\nmax_message_rate = 5",
        "",
        &[(r.addr, "")],
    ))
    .await;
    let mut events = proxy.subscribe();
    let mut ws = connect(proxy.local_addrs()[0], "/").await;
    // Twenty messages in one write: they arrive together, with no time to refill.
    for n in 0..20 {
        ws.feed(Message::text(format!("m{n}"))).await.unwrap();
    }
    ws.flush().await.unwrap();
    let close = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws))
            .await
            .expect("a Close in time")
        {
            Some(Ok(Message::Close(Some(f)))) => break f,
            Some(Ok(Message::Text(_))) => continue,
            other => panic!("expected echoes then a Close, got {other:?}"),
        }
    };
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (1008, "message rate exceeded")
    );
    assert_eq!(
        r.next_ending().await,
        Ending::Close(Some(1001), "message rate exceeded".into())
    );
    let got = r.texts.lock().unwrap().clone();
    assert_eq!(got, (0..5).map(|n| format!("m{n}")).collect::<Vec<_>>());
    wait_event(&mut events, |e| matches!(e, Event::TunnelClosed { .. })).await;
    assert_eq!(hits(&proxy, Limit::MessageRate), 1);
}
