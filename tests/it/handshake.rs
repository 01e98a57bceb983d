//! The upgrade handshake through the proxy, as a real backend and a real client see
//! it: hop-by-hop headers rebuilt as nginx's `map $http_upgrade $connection_upgrade`
//! does, end-to-end headers passed unchanged, Host and X-Forwarded-* written, the
//! backend's 101 (or refusal) relayed, the proxy's own 502/503/504, and malformed
//! client handshakes refused before any backend sees them.

use std::time::{Duration, Instant};

use crate::common::clients::try_connect;
use crate::common::http_fixtures::*;
use crate::common::pools::dead_addr;
use crate::common::wire::{frame, read_frame};
use crate::common::*;
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::control::{Command, Outcome};
use tunnelscope::event::{BackendId, Event, Refusal};

/// A browser-like upgrade with everything a proxy must strip or keep: a header
/// named in `Connection`, the legacy hop-by-hop ones, and the end-to-end ones.
fn rich_upgrade(path: &str) -> Vec<u8> {
    request_bytes(
        &format!("GET {path} HTTP/1.1"),
        &[
            ("Host", "chat.example:8080"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade, X-Secret"),
            ("X-Secret", "for the proxy only"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Connection", "keep-alive"),
            ("Sec-WebSocket-Key", WS_KEY),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Protocol", "chat.v2, chat.v1"),
            (
                "Sec-WebSocket-Extensions",
                "permessage-deflate; client_max_window_bits",
            ),
            ("Origin", "https://app.example"),
            ("Cookie", "session=abc"),
            ("Cookie", "theme=dark"),
            ("Authorization", "Bearer t0ken"),
            ("X-Custom", "custom value"),
        ],
    )
}

/// The single request the backend saw.
fn only_seen(b: &Backend) -> Seen {
    let seen = b.seen();
    assert_eq!(seen.len(), 1, "backend saw {} upgrade requests", seen.len());
    seen.into_iter().next().unwrap()
}

/// The refusal of the first Refused event.
async fn refusal(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Refusal {
    match wait_event(events, |e| matches!(e, Event::Refused { .. })).await {
        Event::Refused { refusal, .. } => refusal,
        _ => unreachable!(),
    }
}

fn assert_plain_text_error(resp: &RawResponse, status: u16) {
    assert_eq!(resp.status, status, "{resp:?}");
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "the proxy's own answers are plain text: {resp:?}"
    );
    assert!(
        !resp.body_text().trim().is_empty(),
        "the proxy's own answers say why: {resp:?}"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_rebuilt_like_the_nginx_connection_upgrade_map() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &rich_upgrade("/chat")).await;
    assert_eq!(resp.status, 101, "{resp:?}");

    let seen = only_seen(&b);
    assert_eq!(seen.all("upgrade"), ["websocket"]);
    assert_eq!(seen.all("connection"), ["upgrade"]);
    for stripped in ["x-secret", "keep-alive", "te", "proxy-connection"] {
        assert!(
            seen.all(stripped).is_empty(),
            "{stripped} must not reach the backend: {:?}",
            seen.headers
        );
    }
}

#[tokio::test]
async fn end_to_end_handshake_headers_reach_the_backend_unchanged() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &rich_upgrade("/chat?room=7")).await;
    assert_eq!(resp.status, 101, "{resp:?}");

    let seen = only_seen(&b);
    assert_eq!(seen.path, "/chat?room=7");
    let expect = [
        ("sec-websocket-key", vec![WS_KEY]),
        ("sec-websocket-version", vec!["13"]),
        ("sec-websocket-protocol", vec!["chat.v2, chat.v1"]),
        (
            "sec-websocket-extensions",
            vec!["permessage-deflate; client_max_window_bits"],
        ),
        ("origin", vec!["https://app.example"]),
        ("cookie", vec!["session=abc", "theme=dark"]),
        ("authorization", vec!["Bearer t0ken"]),
        ("x-custom", vec!["custom value"]),
    ];
    for (name, values) in expect {
        assert_eq!(seen.all(name), values, "{name} changed on the way");
    }
}

#[tokio::test]
async fn backend_101_headers_come_back_and_the_tunnel_relays_after_a_raw_handshake() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let (resp, mut tcp) = raw_request(proxy.local_addrs()[0], &rich_upgrade("/chat")).await;

    assert_eq!(
        (resp.version.as_str(), resp.status),
        ("HTTP/1.1", 101),
        "{resp:?}"
    );
    assert!(resp
        .header("upgrade")
        .unwrap()
        .eq_ignore_ascii_case("websocket"));
    assert!(resp
        .header("connection")
        .unwrap()
        .to_ascii_lowercase()
        .contains("upgrade"));
    assert_eq!(
        resp.header("sec-websocket-accept").as_deref(),
        Some(WS_ACCEPT)
    );
    // The backend picks the first offered subprotocol; the client learns it.
    assert_eq!(
        resp.header("sec-websocket-protocol").as_deref(),
        Some("chat.v2")
    );
    assert_eq!(resp.headers.all("set-cookie"), ["backend=seen; Path=/"]);

    // The stream after the head is the tunnel.
    tcp.write_all(&frame(0x1, b"after raw 101", Some([1, 2, 3, 4])))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut tcp).await,
        Some((0x1, b"after raw 101".to_vec()))
    );
}

#[tokio::test]
async fn firefox_style_connection_keep_alive_upgrade_is_forwarded_as_connection_upgrade() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let req = request_bytes(
        "GET / HTTP/1.1",
        &[
            ("Host", "front.example"),
            ("Upgrade", "WebSocket"),
            ("Connection", "keep-alive"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", WS_KEY),
            ("Sec-WebSocket-Version", "13"),
        ],
    );
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 101, "{resp:?}");
    let seen = only_seen(&b);
    assert_eq!(seen.all("upgrade"), ["websocket"]);
    assert_eq!(seen.all("connection"), ["upgrade"]);
}

#[tokio::test]
async fn backends_101_keeps_end_to_end_headers_and_loses_hop_by_hop_ones() {
    let backend = RawBackend::start(Script::Answer(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade, X-Internal\r\nX-Internal: backend secret\r\n\
             Keep-Alive: timeout=5\r\nSec-WebSocket-Accept: {WS_ACCEPT}\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\
             X-Served-By: raw\r\n\r\n"
        )
        .into_bytes(),
    ))
    .await;
    let proxy = proxy(&one_server_config(&backend.addr.to_string(), "")).await;
    let mut events = proxy.subscribe();
    let req = request_bytes(
        "GET / HTTP/1.1",
        &upgrade_headers(
            "front.example",
            &[("Sec-WebSocket-Extensions", "permessage-deflate")],
        ),
    );
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(
        resp.header("sec-websocket-accept").as_deref(),
        Some(WS_ACCEPT)
    );
    assert_eq!(
        resp.header("sec-websocket-extensions").as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    assert_eq!(resp.header("x-served-by").as_deref(), Some("raw"));
    assert!(!resp.headers.has("x-internal"), "{:?}", resp.headers);
    assert!(!resp.headers.has("keep-alive"), "{:?}", resp.headers);

    let Event::Handshake { handshake, .. } =
        wait_event(&mut events, |e| matches!(e, Event::Handshake { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(
        handshake.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    assert_eq!(handshake.subprotocol, None);
}

#[tokio::test]
async fn backend_answering_200_to_an_upgrade_is_relayed_and_published_as_refused() {
    let b = HttpBackend::start("plain").await;
    let proxy = proxy(&one_server_config(&b.addr.to_string(), "")).await;
    let mut events = proxy.subscribe();
    let req = request_bytes("GET /ws HTTP/1.1", &upgrade_headers("front.example", &[]));
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_text(), "plain GET /ws\n");
    assert_eq!(resp.header("x-custom-response").as_deref(), Some("kept"));
    assert_eq!(refusal(&mut events).await.status, 200);
    let seen = b.requests();
    assert_eq!(seen[0].headers.all("upgrade"), ["websocket"]);
}

#[tokio::test]
async fn frame_sent_in_the_same_packet_as_the_handshake_is_not_lost() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let mut bytes = request_bytes("GET / HTTP/1.1", &upgrade_headers("front.example", &[]));
    bytes.extend(frame(0x1, b"eager", Some([9, 8, 7, 6])));
    let (resp, mut tcp) = raw_request(proxy.local_addrs()[0], &bytes).await;
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(read_frame(&mut tcp).await, Some((0x1, b"eager".to_vec())));
}

#[tokio::test]
async fn frame_the_backend_sends_right_behind_its_101_reaches_the_client() {
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {WS_ACCEPT}\r\n\r\n"
    )
    .into_bytes();
    answer.extend(frame(0x1, b"welcome", None));
    let backend = RawBackend::start(Script::Answer(answer)).await;
    let proxy = proxy(&one_server_config(&backend.addr.to_string(), "")).await;
    let req = request_bytes("GET / HTTP/1.1", &upgrade_headers("front.example", &[]));
    let (resp, mut tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(read_frame(&mut tcp).await, Some((0x1, b"welcome".to_vec())));
}

#[tokio::test]
async fn subprotocol_is_negotiated_end_to_end_with_a_real_client() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let mut req = ws_url(proxy.local_addrs()[0], "/sub")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-ws, mqtt".parse().unwrap(),
    );
    let (mut ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("upgrade in time")
        .expect("upgrade succeeds");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("graphql-ws")
    );
    assert_eq!(
        only_seen(&b).all("sec-websocket-protocol"),
        ["graphql-ws, mqtt"]
    );
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_data(&mut ws).await, Message::text("hi"));
}

#[tokio::test]
async fn handshake_event_carries_the_request_in_and_out_the_response_and_the_subprotocol() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let mut events = proxy.subscribe();
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &rich_upgrade("/chat")).await;
    assert_eq!(resp.status, 101);

    let Event::Handshake { handshake, .. } =
        wait_event(&mut events, |e| matches!(e, Event::Handshake { .. })).await
    else {
        unreachable!()
    };
    let list = |h: &[(String, String)], name: &str| -> Vec<String> {
        h.iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    };
    // As the client sent it.
    let inbound = &handshake.request_in.to_vec();
    assert_eq!(list(inbound, "x-secret"), ["for the proxy only"]);
    assert_eq!(list(inbound, "keep-alive"), ["timeout=5"]);
    assert_eq!(list(inbound, "connection"), ["Upgrade, X-Secret"]);
    assert_eq!(list(inbound, "cookie"), ["session=abc", "theme=dark"]);

    // As the backend received it: exactly what the backend recorded.
    let mut out: Vec<(String, String)> = handshake.request_out.to_vec();
    let mut seen = only_seen(&b).headers;
    out.sort();
    seen.sort();
    assert_eq!(out, seen, "request_out must be what the backend received");
    assert_eq!(list(&out, "connection"), ["upgrade"]);
    assert!(list(&out, "x-secret").is_empty());

    // The backend's 101.
    let response = &handshake.response.to_vec();
    assert_eq!(list(response, "sec-websocket-accept"), [WS_ACCEPT]);
    assert_eq!(list(response, "sec-websocket-protocol"), ["chat.v2"]);
    assert_eq!(list(response, "set-cookie"), ["backend=seen; Path=/"]);
    assert_eq!(handshake.subprotocol.as_deref(), Some("chat.v2"));
}

async fn host_seen(pool_extra: &str) -> (Seen, String) {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], pool_extra)).await;
    let req = request_bytes(
        "GET / HTTP/1.1",
        &upgrade_headers("front.example:8443", &[]),
    );
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 101, "{resp:?}");
    (only_seen(&b), b.addr.to_string())
}

#[tokio::test]
async fn host_is_kept_by_default() {
    let (seen, _) = host_seen("").await;
    assert_eq!(seen.all("host"), ["front.example:8443"]);
    assert_eq!(seen.all("x-forwarded-host"), ["front.example:8443"]);
}

#[tokio::test]
async fn host_header_backend_sends_the_backend_address() {
    let (seen, backend_addr) = host_seen("host_header = \"backend\"").await;
    assert_eq!(seen.all("host"), [backend_addr]);
    // The client's Host still travels, as X-Forwarded-Host.
    assert_eq!(seen.all("x-forwarded-host"), ["front.example:8443"]);
}

#[tokio::test]
async fn host_header_with_a_fixed_value_sends_that_value() {
    let (seen, _) = host_seen("host_header = \"example.org\"").await;
    assert_eq!(seen.all("host"), ["example.org"]);
    assert_eq!(seen.all("x-forwarded-host"), ["front.example:8443"]);
}

/// Forwarding headers a client might forge.
const FORGED: &[(&str, &str)] = &[
    ("X-Forwarded-For", "1.2.3.4"),
    ("X-Real-IP", "6.6.6.6"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "forged.example"),
];

#[tokio::test]
async fn untrusted_clients_forwarding_headers_are_replaced_by_what_the_proxy_saw() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let req = request_bytes("GET / HTTP/1.1", &upgrade_headers("front.example", FORGED));
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 101, "{resp:?}");

    let seen = only_seen(&b);
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.all("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-proto"), ["http"]);
    assert_eq!(seen.all("x-forwarded-host"), ["front.example"]);
}

#[tokio::test]
async fn trusted_proxys_forwarded_for_is_appended_to() {
    let b = Backend::start("b").await;
    let toml = format!(
        "[proxy]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n{}",
        simple_config(&[&b], "")
    );
    let proxy = proxy(&toml).await;
    let req = request_bytes("GET / HTTP/1.1", &upgrade_headers("front.example", FORGED));
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 101, "{resp:?}");

    let seen = only_seen(&b);
    assert_eq!(seen.all("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    // A trusted proxy in front knows better what the client used.
    assert_eq!(seen.all("x-forwarded-proto"), ["https"]);
    assert_eq!(seen.all("x-forwarded-host"), ["forged.example"]);
    assert_eq!(seen.all("x-real-ip"), ["6.6.6.6"]);
}

#[tokio::test]
async fn tls_listener_sends_forwarded_proto_https() {
    let pki = certs::TestPki::new();
    let b = Backend::start("b").await;
    let toml = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
        pki.cert_pem.display(),
        pki.key_pem.display(),
        b.addr
    );
    let proxy = proxy(&toml).await;
    let addr = proxy.local_addrs()[0];
    let mut req = format!("wss://localhost:{}/secure", addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("x-forwarded-proto", "http".parse().unwrap());
    let tls = pki.connect(addr, "localhost").await;
    let (_ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, tls))
        .await
        .expect("upgrade in time")
        .expect("wss upgrade");
    assert_eq!(resp.status(), 101);

    let seen = only_seen(&b);
    assert_eq!(seen.all("x-forwarded-proto"), ["https"]);
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.all("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(
        seen.all("x-forwarded-host"),
        [format!("localhost:{}", addr.port())]
    );
}

#[tokio::test]
async fn backend_refusal_reaches_the_client_unchanged_and_is_published() {
    let body = "you are banned\n";
    let backend = RawBackend::start(Script::Answer(
        format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nX-Ban-Reason: abuse\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    ))
    .await;
    let toml = one_server_config(&backend.addr.to_string(), "");
    let proxy = proxy(&toml).await;
    let mut events = proxy.subscribe();
    let req = request_bytes("GET /ws HTTP/1.1", &upgrade_headers("front.example", &[]));
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;

    assert_eq!((resp.status, resp.reason.as_str()), (403, "Forbidden"));
    assert_eq!(resp.header("x-ban-reason").as_deref(), Some("abuse"));
    assert_eq!(resp.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(resp.body_text(), body);
    assert_eq!(refusal(&mut events).await.status, 403);
    assert_eq!(backend.heads().len(), 1);
}

/// One listener and a pool `app` with one server at `addr`.
fn one_server_config(addr: &str, top: &str) -> String {
    format!(
        "{top}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.app]\n[[pool.app.server]]\naddr = \"{addr}\"\n"
    )
}

#[tokio::test]
async fn unreachable_backend_gives_502_with_a_plain_text_reason() {
    let dead = dead_addr().await;
    let proxy = proxy(&one_server_config(&dead.to_string(), "")).await;
    let mut events = proxy.subscribe();
    let req = request_bytes("GET / HTTP/1.1", &upgrade_headers("front.example", &[]));
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_plain_text_error(&resp, 502);
    assert_eq!(refusal(&mut events).await.status, 502);
}

#[tokio::test]
async fn drained_pool_gives_503_and_the_backend_sees_nothing() {
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let outcome = proxy
        .control()
        .send(Command::Drain(BackendId::new("app", &b.addr.to_string())))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Done);
    let mut events = proxy.subscribe();
    let req = request_bytes("GET / HTTP/1.1", &upgrade_headers("front.example", &[]));
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_plain_text_error(&resp, 503);
    assert_eq!(refusal(&mut events).await.status, 503);
    assert!(b.seen().is_empty());
}

#[tokio::test]
async fn backend_that_never_answers_the_handshake_gives_504_after_backend_response() {
    let silent = RawBackend::start(Script::Silent).await;
    let toml = one_server_config(
        &silent.addr.to_string(),
        "[timeouts]\nbackend_response = \"300ms\"\n",
    );
    let proxy = proxy(&toml).await;
    let mut events = proxy.subscribe();
    let req = request_bytes("GET / HTTP/1.1", &upgrade_headers("front.example", &[]));
    let started = Instant::now();
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    let waited = started.elapsed();
    assert_plain_text_error(&resp, 504);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "answered after {waited:?}, expected just over 300ms"
    );
    assert_eq!(refusal(&mut events).await.status, 504);
    assert_eq!(silent.heads().len(), 1, "the handshake was forwarded");
}

#[tokio::test]
async fn backend_101_with_a_wrong_accept_gives_502() {
    let liar = RawBackend::start(Script::Answer(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
            .to_vec(),
    ))
    .await;
    let proxy = proxy(&one_server_config(&liar.addr.to_string(), "")).await;
    let mut events = proxy.subscribe();
    let req = request_bytes("GET / HTTP/1.1", &upgrade_headers("front.example", &[]));
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_plain_text_error(&resp, 502);
    assert_eq!(refusal(&mut events).await.status, 502);
}

#[tokio::test]
async fn backend_closing_mid_handshake_gives_502() {
    let quitter = RawBackend::start(Script::Answer(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: webso".to_vec(),
    ))
    .await;
    let proxy = proxy(&one_server_config(&quitter.addr.to_string(), "")).await;
    let mut events = proxy.subscribe();
    let req = request_bytes("GET / HTTP/1.1", &upgrade_headers("front.example", &[]));
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_plain_text_error(&resp, 502);
    assert_eq!(refusal(&mut events).await.status, 502);
}

/// Sends `request` through a proxy in front of an [`HttpBackend`]; asserts the
/// backend saw nothing at all, not even a connection.
async fn refused_before_any_backend(request: &[u8]) -> RawResponse {
    let b = HttpBackend::start("never").await;
    let proxy = proxy(&one_server_config(&b.addr.to_string(), "")).await;
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], request).await;
    assert!(
        b.requests().is_empty() && b.connections() == 0,
        "a bad handshake reached the backend: {:?}",
        b.requests()
    );
    resp
}

#[tokio::test]
async fn upgrade_without_a_key_gets_400() {
    let req = request_bytes(
        "GET / HTTP/1.1",
        &[
            ("Host", "front.example"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
        ],
    );
    assert_eq!(refused_before_any_backend(&req).await.status, 400);
}

#[tokio::test]
async fn upgrade_with_a_key_of_the_wrong_length_gets_400() {
    // Base64 of 15 bytes, not 16.
    let req = request_bytes(
        "GET / HTTP/1.1",
        &[
            ("Host", "front.example"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA"),
            ("Sec-WebSocket-Version", "13"),
        ],
    );
    assert_eq!(refused_before_any_backend(&req).await.status, 400);
}

#[tokio::test]
async fn upgrade_with_version_8_gets_426_naming_version_13() {
    let req = request_bytes(
        "GET / HTTP/1.1",
        &[
            ("Host", "front.example"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", WS_KEY),
            ("Sec-WebSocket-Version", "8"),
        ],
    );
    let resp = refused_before_any_backend(&req).await;
    assert_eq!(resp.status, 426);
    assert_eq!(resp.headers.all("sec-websocket-version"), ["13"]);
}

#[tokio::test]
async fn post_with_upgrade_gets_400() {
    let headers = upgrade_headers("front.example", &[("Content-Length", "0")]);
    let req = request_bytes("POST / HTTP/1.1", &headers);
    assert_eq!(refused_before_any_backend(&req).await.status, 400);
}

#[tokio::test]
async fn http_1_0_upgrade_gets_400() {
    let req = request_bytes("GET / HTTP/1.0", &upgrade_headers("front.example", &[]));
    assert_eq!(refused_before_any_backend(&req).await.status, 400);
}

#[tokio::test]
async fn bad_handshakes_are_refused_and_the_same_proxy_still_upgrades_good_ones() {
    // Guards the refusal tests above: the backend is reachable, so "saw nothing"
    // means the proxy refused, not that nothing could have arrived.
    let b = Backend::start("b").await;
    let proxy = proxy(&simple_config(&[&b], "")).await;
    let addr = proxy.local_addrs()[0];
    let bad = request_bytes(
        "GET / HTTP/1.1",
        &[
            ("Host", "front.example"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
        ],
    );
    assert_eq!(raw_request(addr, &bad).await.0.status, 400);
    assert!(b.seen().is_empty());
    assert!(try_connect(addr, "/", &[]).await.is_ok());
    assert_eq!(b.seen().len(), 1);
}

#[tokio::test]
async fn h2c_upgrade_is_proxied_as_a_plain_request_without_upgrade_headers() {
    let b = HttpBackend::start("plain").await;
    let proxy = proxy(&one_server_config(&b.addr.to_string(), "")).await;
    let req = request_bytes(
        "GET /h2c HTTP/1.1",
        &[
            ("Host", "front.example"),
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
        ],
    );
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_text(), "plain GET /h2c\n");
    assert!(resp.header("upgrade").is_none());

    let seen = b.requests();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert!(!h.has("upgrade"), "backend saw an Upgrade: {h:?}");
    assert!(!h.has("http2-settings"), "named in Connection: {h:?}");
    assert!(
        !h.all("connection")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("upgrade")),
        "backend saw Connection: upgrade: {h:?}"
    );
}
