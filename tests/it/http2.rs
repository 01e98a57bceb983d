//! WebSocket over HTTP/2 (RFC 8441) with the `h2` crate's client: a TLS listener
//! offers ALPN h2 and SETTINGS_ENABLE_CONNECT_PROTOCOL; an extended CONNECT becomes
//! an HTTP/1.1 upgrade to a backend that knows nothing of HTTP/2, the frames flow
//! both ways, and the tunnel is shown as h2. Plain requests over h2 are proxied too.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use rustls::pki_types::ServerName;

use crate::common::certs::TestPki;
use crate::common::http_fixtures::HttpBackend;
use crate::common::*;

/// A TLS listener (h2 offered) in front of a WebSocket pool, and `/http` in front of
/// a plain HTTP one.
async fn h2_proxy(
    pki: &TestPki,
    ws: &Backend,
    web: &HttpBackend,
) -> tunnelscope::proxy::ProxyHandle {
    h2_proxy_with(pki, ws, web, "").await
}

/// The same, with `top` (whole sections) before the listener.
async fn h2_proxy_with(
    pki: &TestPki,
    ws: &Backend,
    web: &HttpBackend,
    top: &str,
) -> tunnelscope::proxy::ProxyHandle {
    proxy(&format!(
        "{top}\n[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [[route]]\npath = \"/http\"\npool = \"web\"\n\n[[route]]\npath = \"/\"\npool = \"ws\"\n\n\
         [pool.ws]\n[[pool.ws.server]]\naddr = \"{}\"\n\n[pool.web]\n[[pool.web.server]]\naddr = \"{}\"\n",
        pki.cert_pem.display(),
        pki.key_pem.display(),
        ws.addr,
        web.addr
    ))
    .await
}

/// An HTTP/2 client connection (ALPN h2) to `addr`.
async fn h2_client(pki: &TestPki, addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    h2_client_and_connection(pki, addr).await.0
}

/// The same, with the task driving the connection (it ends with the connection).
async fn h2_client_and_connection(
    pki: &TestPki,
    addr: SocketAddr,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let mut config = (*pki.client_config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "h2 negotiated"
    );
    let (sender, connection) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, driver)
}

fn websocket_connect(path: &str) -> Request<()> {
    Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://localhost{path}"))
        .header("sec-websocket-version", "13")
        .extension(h2::ext::Protocol::from("websocket"))
        .body(())
        .unwrap()
}

/// A masked text frame (the client masks, over HTTP/2 as over HTTP/1.1).
fn text_frame(text: &str) -> Bytes {
    let key = [7u8, 1, 3, 9];
    let mut f = BytesMut::from(&[0x81, 0x80 | text.len() as u8][..]);
    f.extend_from_slice(&key);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f.freeze()
}

/// Reads the next whole (unmasked, short) frame from the stream: opcode, payload.
async fn next_frame(body: &mut h2::RecvStream, buf: &mut BytesMut) -> (u8, Vec<u8>) {
    loop {
        if buf.len() >= 2 && buf.len() >= 2 + (buf[1] & 0x7F) as usize {
            let len = (buf[1] & 0x7F) as usize;
            let frame = buf.split_to(2 + len);
            return (frame[0] & 0x0F, frame[2..].to_vec());
        }
        let data = tokio::time::timeout(WAIT, body.data())
            .await
            .expect("data in time")
            .expect("the stream is open")
            .unwrap();
        let _ = body.flow_control().release_capacity(data.len());
        buf.extend_from_slice(&data);
    }
}

#[tokio::test]
async fn a_websocket_over_http2_reaches_an_http11_backend_and_relays_both_ways() {
    let pki = TestPki::new();
    let (ws, web) = (Backend::start("ws").await, HttpBackend::start("web").await);
    let proxy = h2_proxy(&pki, &ws, &web).await;
    let mut client = h2_client(&pki, proxy.local_addrs()[0]).await;

    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("https://localhost/chat?room=7")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat.v2, chat.v1")
        .extension(h2::ext::Protocol::from("websocket"))
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (response, mut send) = client.send_request(req, false).unwrap();
    let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat.v2");
    for banned in ["upgrade", "connection", "sec-websocket-accept"] {
        assert!(
            !response.headers().contains_key(banned),
            "{banned} in an h2 answer"
        );
    }
    let mut body = response.into_body();
    let mut buf = BytesMut::new();
    send.send_data(text_frame("whoami"), false).unwrap();
    assert_eq!(next_frame(&mut body, &mut buf).await, (1, b"ws".to_vec()));
    send.send_data(text_frame("over h2"), false).unwrap();
    assert_eq!(
        next_frame(&mut body, &mut buf).await,
        (1, b"over h2".to_vec())
    );

    // The backend got an ordinary HTTP/1.1 handshake, Host from :authority.
    let seen = ws.seen();
    let h = &seen.last().unwrap().headers;
    let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(get("host"), Some("localhost"));
    assert_eq!(get("upgrade"), Some("websocket"));
    assert!(get("sec-websocket-key").is_some());
    assert_eq!(seen.last().unwrap().path, "/chat?room=7");

    // The tunnel is listed, as h2, with its frames counted.
    let snapshot = proxy.snapshot();
    let tunnel = &snapshot.tunnels[0];
    let hs = tunnel.handshake.as_ref().unwrap();
    assert!(hs.h2);
    assert_eq!(hs.subprotocol.as_deref(), Some("chat.v2"));
    assert!(tunnel.stats.client_to_backend.frames() >= 2);

    // A Close from the client is answered through the proxy and the tunnel ends.
    let key = [1u8, 2, 3, 4];
    let payload = 1000u16.to_be_bytes();
    let mut close = BytesMut::from(&[0x88, 0x82][..]);
    close.extend_from_slice(&key);
    close.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    send.send_data(close.freeze(), false).unwrap();
    let (op, code) = next_frame(&mut body, &mut buf).await;
    assert_eq!((op, &code[..2]), (8, &1000u16.to_be_bytes()[..]));
}

#[tokio::test]
async fn plain_requests_over_http2_are_proxied_and_a_bad_connect_is_refused() {
    let pki = TestPki::new();
    let (ws, web) = (Backend::start("ws").await, HttpBackend::start("web").await);
    let proxy = h2_proxy(&pki, &ws, &web).await;
    let mut client = h2_client(&pki, proxy.local_addrs()[0]).await;

    let req = Request::get("https://localhost/http/hello")
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = web.requests();
    assert_eq!(seen.last().unwrap().target, "/http/hello");
    assert_eq!(
        seen.last().unwrap().headers.get("host").as_deref(),
        Some("localhost")
    );

    // An extended CONNECT without sec-websocket-version 13: 400, no backend contacted.
    let before = ws.seen().len();
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("https://localhost/chat")
        .extension(h2::ext::Protocol::from("websocket"))
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
    assert_eq!(ws.seen().len(), before);

    // A CONNECT that is not a WebSocket is not a tunnel to anywhere: 405.
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("localhost:22")
        .body(())
        .unwrap();
    client = client.ready().await.unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// Each WebSocket over one HTTP/2 connection takes a place of its own under
/// `max_connections` (the connection holds one): with 2, the connection and one
/// tunnel fit, a second tunnel gets 503.
#[tokio::test]
async fn websockets_over_one_http2_connection_count_against_max_connections() {
    let pki = TestPki::new();
    let (ws, web) = (Backend::start("ws").await, HttpBackend::start("web").await);
    let proxy = h2_proxy_with(&pki, &ws, &web, "[limits]\nmax_connections = 2\n").await;
    let mut client = h2_client(&pki, proxy.local_addrs()[0]).await;
    client = client.ready().await.unwrap();
    let (first, _send1) = client
        .send_request(websocket_connect("/one"), false)
        .unwrap();
    let first = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    client = client.ready().await.unwrap();
    let (second, _send2) = client
        .send_request(websocket_connect("/two"), false)
        .unwrap();
    let second = tokio::time::timeout(WAIT, second).await.unwrap().unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// An HTTP/2 connection with nothing in flight for `request_head` is closed, as an
/// idle HTTP/1.1 one is: it holds no place under the limits for nothing.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_request_head() {
    let pki = TestPki::new();
    let (ws, web) = (Backend::start("ws").await, HttpBackend::start("web").await);
    let proxy = h2_proxy_with(&pki, &ws, &web, "[timeouts]\nrequest_head = \"300ms\"\n").await;
    let (client, driver) = h2_client_and_connection(&pki, proxy.local_addrs()[0]).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(WAIT, driver)
        .await
        .expect("the idle connection was closed")
        .unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    drop(client);
}
