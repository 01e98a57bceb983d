//! Plain HTTP (no Upgrade) through the proxy to a real hyper backend: status,
//! headers and bodies intact in both directions (large and chunked ones too),
//! keep-alive on the client side, forwarding and hop-by-hop headers, routing by
//! path prefix and host, and the proxy's own 404/502/503/504.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::http_fixtures::*;
use crate::common::pools::dead_addr;
use crate::common::*;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tunnelscope::control::{Command, Outcome};
use tunnelscope::event::{BackendId, Event};

type ClientBody = BoxBody<Bytes, Infallible>;

/// One client connection to the proxy (hyper's HTTP/1.1 client), and its local
/// address, which is what the proxy sees as the client.
async fn client(addr: SocketAddr) -> (SendRequest<ClientBody>, SocketAddr) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    (sender, local)
}

fn get(target: &str, host: &str) -> Request<ClientBody> {
    Request::get(target)
        .header("host", host)
        .body(Empty::new().boxed())
        .unwrap()
}

/// Sends a request and reads the whole answer.
async fn send(
    sender: &mut SendRequest<ClientBody>,
    req: Request<ClientBody>,
) -> (http::response::Parts, Bytes) {
    tokio::time::timeout(WAIT, async {
        sender.ready().await.expect("connection usable");
        let resp: Response<_> = sender.send_request(req).await.expect("a response");
        let (parts, body) = resp.into_parts();
        (parts, body.collect().await.expect("whole body").to_bytes())
    })
    .await
    .expect("answered in time")
}

/// A fresh connection, one request.
async fn fetch(addr: SocketAddr, req: Request<ClientBody>) -> (http::response::Parts, Bytes) {
    let (mut sender, _) = client(addr).await;
    send(&mut sender, req).await
}

fn header<'a>(parts: &'a http::response::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).map(|v| v.to_str().unwrap())
}

/// One listener and a pool `app` with these servers.
fn pool_of(addrs: &[SocketAddr], top: &str) -> String {
    let servers: String = addrs
        .iter()
        .map(|a| format!("[[pool.app.server]]\naddr = \"{a}\"\n"))
        .collect();
    format!("{top}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.app]\n{servers}")
}

#[tokio::test]
async fn get_is_proxied_with_status_headers_and_body_intact() {
    let b = HttpBackend::start("web").await;
    let proxy = proxy(&pool_of(&[b.addr], "")).await;
    let addr = proxy.local_addrs()[0];

    let (parts, body) = fetch(addr, get("/hello?x=1&y=two", "front.example")).await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, "web GET /hello?x=1&y=two\n");
    assert_eq!(header(&parts, "x-backend"), Some("web"));
    assert_eq!(header(&parts, "x-target"), Some("/hello?x=1&y=two"));
    assert_eq!(header(&parts, "x-custom-response"), Some("kept"));
    assert_eq!(header(&parts, "content-length"), Some("25"));

    // Any status the backend picks comes back as it is.
    let (parts, body) = fetch(addr, get("/status/418", "front.example")).await;
    assert_eq!(
        (parts.status.as_u16(), &body[..]),
        (418, &b"status 418\n"[..])
    );
    assert_eq!(header(&parts, "x-custom-response"), Some("kept"));

    let seen = b.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str()),
        ("GET", "/hello?x=1&y=two")
    );
    assert_eq!(seen[0].headers.all("host"), ["front.example"]);
}

#[tokio::test]
async fn five_mib_post_body_is_streamed_to_the_backend_and_back_intact() {
    let b = HttpBackend::start("echo").await;
    let proxy = proxy(&pool_of(&[b.addr], "")).await;
    let payload = Bytes::from(
        (0..5 * 1024 * 1024u32)
            .map(|i| (i * 31 % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    // Sent in 64 KiB pieces with no length announced: a chunked upload.
    let pieces: Vec<Result<Frame<Bytes>, Infallible>> = (0..payload.len())
        .step_by(64 * 1024)
        .map(|i| {
            Ok(Frame::data(
                payload.slice(i..(i + 64 * 1024).min(payload.len())),
            ))
        })
        .collect();
    let req = Request::post("/upload")
        .header("host", "front.example")
        .header("content-type", "application/octet-stream")
        .body(StreamBody::new(futures_util::stream::iter(pieces)).boxed())
        .unwrap();
    let (parts, body) = fetch(proxy.local_addrs()[0], req).await;
    assert_eq!(parts.status, 200);
    assert_eq!(body.len(), payload.len());
    assert!(body == payload, "response body changed in transit");

    let seen = b.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert!(
        seen[0].body[..] == payload[..],
        "request body changed in transit"
    );
    assert_eq!(
        seen[0].headers.all("content-type"),
        ["application/octet-stream"]
    );
}

#[tokio::test]
async fn five_mib_post_with_content_length_arrives_intact() {
    let b = HttpBackend::start("echo").await;
    let proxy = proxy(&pool_of(&[b.addr], "")).await;
    let payload = Bytes::from(
        (0..5 * 1024 * 1024u32)
            .map(|i| (i * 17 % 241) as u8)
            .collect::<Vec<u8>>(),
    );
    let req = Request::post("/upload")
        .header("host", "front.example")
        .body(Full::new(payload.clone()).boxed())
        .unwrap();
    let (parts, body) = fetch(proxy.local_addrs()[0], req).await;
    assert_eq!(parts.status, 200);
    assert!(body == payload, "response body changed in transit");
    let seen = &b.requests()[0];
    assert_eq!(
        seen.headers.all("content-length"),
        [payload.len().to_string()]
    );
    assert!(seen.body[..] == payload[..]);
}

#[tokio::test]
async fn chunked_response_from_the_backend_arrives_intact_and_chunked() {
    let b = HttpBackend::start("stream").await;
    let proxy = proxy(&pool_of(&[b.addr], "")).await;
    let len = 3 * 1024 * 1024 + 7;
    // Raw, to see the framing on the wire as well as the bytes.
    let req = request_bytes(
        &format!("GET /stream/{len} HTTP/1.1"),
        &[("Host", "front.example")],
    );
    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.headers.all("transfer-encoding"),
        ["chunked"],
        "a response of unknown length is relayed chunked: {:?}",
        resp.headers
    );
    assert!(!resp.headers.has("content-length"));
    assert_eq!(resp.body.len(), len);
    assert!(resp.body == stream_pattern(len), "chunked body changed");
}

#[tokio::test]
async fn three_requests_on_one_client_connection_are_all_answered() {
    let b = HttpBackend::start("ka").await;
    let proxy = proxy(&pool_of(&[b.addr], "")).await;
    let mut events = proxy.subscribe();
    let (mut sender, local) = client(proxy.local_addrs()[0]).await;
    for i in 0..3 {
        let (parts, body) = send(&mut sender, get(&format!("/ka/{i}"), "front.example")).await;
        assert_eq!(parts.status, 200);
        assert_eq!(body, format!("ka GET /ka/{i}\n"));
        assert_ne!(
            header(&parts, "connection"),
            Some("close"),
            "the proxy must keep the client connection open"
        );
    }
    let targets: Vec<String> = b.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/ka/0", "/ka/1", "/ka/2"]);
    for i in 0..3 {
        let ev = wait_event(&mut events, |e| matches!(e, Event::HttpRequest { .. })).await;
        let Event::HttpRequest {
            client,
            method,
            path,
            status,
            backend,
            ..
        } = ev
        else {
            unreachable!()
        };
        assert_eq!(client, local, "all three came on one client connection");
        assert_eq!(
            (method.as_str(), path.as_str(), status),
            ("GET", &*format!("/ka/{i}"), 200)
        );
        assert_eq!(backend, Some(BackendId::new("app", &b.addr.to_string())));
    }
}

#[tokio::test]
async fn forwarding_headers_are_written_and_forged_ones_dropped() {
    let b = HttpBackend::start("web").await;
    let proxy = proxy(&pool_of(&[b.addr], "")).await;
    let req = Request::get("/")
        .header("host", "front.example")
        .header("x-forwarded-for", "1.2.3.4")
        .header("x-real-ip", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .body(Empty::new().boxed())
        .unwrap();
    let (parts, _) = fetch(proxy.local_addrs()[0], req).await;
    assert_eq!(parts.status, 200);
    let h = &b.requests()[0].headers;
    assert_eq!(h.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(h.all("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(h.all("x-forwarded-proto"), ["http"]);
    assert_eq!(h.all("x-forwarded-host"), ["front.example"]);
    assert_eq!(h.all("host"), ["front.example"]);
}

#[tokio::test]
async fn trusted_proxys_forwarded_for_is_appended_to_on_plain_requests() {
    let b = HttpBackend::start("web").await;
    let proxy = proxy(&pool_of(
        &[b.addr],
        "[proxy]\ntrusted_proxies = [\"127.0.0.0/8\"]",
    ))
    .await;
    let req = Request::get("/")
        .header("host", "front.example")
        .header("x-forwarded-for", "1.2.3.4")
        .body(Empty::new().boxed())
        .unwrap();
    fetch(proxy.local_addrs()[0], req).await;
    let h = &b.requests()[0].headers;
    assert_eq!(h.all("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let b = HttpBackend::start("web").await;
    let proxy = proxy(&pool_of(&[b.addr], "")).await;
    let req = request_bytes(
        "GET /hop HTTP/1.1",
        &[
            ("Host", "front.example"),
            ("Connection", "keep-alive, X-Secret"),
            ("X-Secret", "for the proxy only"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Connection", "keep-alive"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
            ("Authorization", "Bearer t0ken"),
            ("X-Custom", "custom value"),
        ],
    );
    // The backend really sends hop-by-hop headers of its own.
    let (direct, _tcp) = raw_request(b.addr, &req).await;
    assert!(direct.headers.has("x-hop-secret") && direct.headers.has("keep-alive"));

    let (resp, _tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 200, "{resp:?}");

    let h = &b.requests()[1].headers;
    for stripped in [
        "x-secret",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(!h.has(stripped), "{stripped} reached the backend: {h:?}");
    }
    assert!(
        h.all("connection")
            .iter()
            .all(|v| !v.to_ascii_lowercase().contains("x-secret")),
        "{h:?}"
    );
    assert_eq!(h.all("cookie"), ["a=1", "b=2"]);
    assert_eq!(h.all("authorization"), ["Bearer t0ken"]);
    assert_eq!(h.all("x-custom"), ["custom value"]);

    // The backend's own hop-by-hop headers stop at the proxy too.
    assert!(!resp.headers.has("x-hop-secret"), "{:?}", resp.headers);
    assert!(!resp.headers.has("keep-alive"), "{:?}", resp.headers);
    assert_eq!(resp.header("x-end-to-end").as_deref(), Some("yes"));
}

#[tokio::test]
async fn path_no_route_matches_gets_404_and_reaches_no_backend() {
    let b = HttpBackend::start("api").await;
    let toml = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[[route]]\npath = \"/api\"\npool = \"app\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
        b.addr
    );
    let proxy = proxy(&toml).await;
    let addr = proxy.local_addrs()[0];
    let (parts, body) = fetch(addr, get("/elsewhere", "front.example")).await;
    assert_eq!(parts.status, 404);
    assert!(!body.is_empty(), "404 says why");
    assert_eq!(b.connections(), 0);

    let (parts, _) = fetch(addr, get("/api/users", "front.example")).await;
    assert_eq!(parts.status, 200);
    assert_eq!(header(&parts, "x-backend"), Some("api"));
    let targets: Vec<String> = b.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/api/users"]);
}

#[tokio::test]
async fn routes_send_each_request_to_the_pool_of_its_host_or_path() {
    let a = HttpBackend::start("a").await;
    let bb = HttpBackend::start("b").await;
    let api = HttpBackend::start("api").await;
    let web = HttpBackend::start("web").await;
    let toml = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [[route]]\nhost = \"a.test\"\npool = \"a\"\n\n\
         [[route]]\nhost = \"*.b.test\"\npool = \"b\"\n\n\
         [[route]]\npath = \"/api\"\npool = \"api\"\n\n\
         [[route]]\npool = \"web\"\n\n\
         [pool.a]\n[[pool.a.server]]\naddr = \"{}\"\n\n\
         [pool.b]\n[[pool.b.server]]\naddr = \"{}\"\n\n\
         [pool.api]\n[[pool.api.server]]\naddr = \"{}\"\n\n\
         [pool.web]\n[[pool.web.server]]\naddr = \"{}\"\n",
        a.addr, bb.addr, api.addr, web.addr
    );
    let proxy = proxy(&toml).await;
    let addr = proxy.local_addrs()[0];
    let cases = [
        ("a.test", "/", "a"),
        ("A.Test:8080", "/api/x", "a"),
        ("x.b.test", "/", "b"),
        ("deep.x.b.test:81", "/api", "b"),
        // The wildcard needs a label before the suffix.
        ("b.test", "/", "web"),
        ("b.test", "/api/v1", "api"),
        ("c.test", "/api", "api"),
        ("c.test", "/", "web"),
        ("xa.test", "/", "web"),
    ];
    for (host, path, pool) in cases {
        let (parts, _) = fetch(addr, get(path, host)).await;
        assert_eq!(parts.status, 200, "{host}{path}");
        assert_eq!(header(&parts, "x-backend"), Some(pool), "{host}{path}");
    }
    assert_eq!(a.requests().len(), 2);
    assert_eq!(bb.requests().len(), 2);
    assert_eq!(api.requests().len(), 2);
    assert_eq!(web.requests().len(), 3);
}

/// The status of the next HttpRequest event.
async fn request_event(events: &mut tokio::sync::broadcast::Receiver<Event>) -> u16 {
    match wait_event(events, |e| matches!(e, Event::HttpRequest { .. })).await {
        Event::HttpRequest { status, .. } => status,
        _ => unreachable!(),
    }
}

fn assert_plain_text(parts: &http::response::Parts, body: &Bytes) {
    assert!(
        header(parts, "content-type").is_some_and(|c| c.starts_with("text/plain")),
        "{parts:?}"
    );
    assert!(!body.is_empty(), "the proxy's own answer says why");
}

#[tokio::test]
async fn plain_request_gets_502_when_no_backend_is_reachable() {
    let dead = dead_addr().await;
    let proxy = proxy(&pool_of(&[dead], "")).await;
    let mut events = proxy.subscribe();
    let (parts, body) = fetch(proxy.local_addrs()[0], get("/", "front.example")).await;
    assert_eq!(parts.status, 502);
    assert_plain_text(&parts, &body);
    assert_eq!(request_event(&mut events).await, 502);
}

#[tokio::test]
async fn plain_request_gets_503_when_every_backend_is_drained() {
    let b = HttpBackend::start("web").await;
    let proxy = proxy(&pool_of(&[b.addr], "")).await;
    let outcome = proxy
        .control()
        .send(Command::Drain(BackendId::new("app", &b.addr.to_string())))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Done);
    let mut events = proxy.subscribe();
    let (parts, body) = fetch(proxy.local_addrs()[0], get("/", "front.example")).await;
    assert_eq!(parts.status, 503);
    assert_plain_text(&parts, &body);
    assert_eq!(request_event(&mut events).await, 503);
    assert_eq!(b.connections(), 0);
}

#[tokio::test]
async fn plain_request_gets_504_when_the_backend_never_answers() {
    let silent = RawBackend::start(Script::Silent).await;
    let proxy = proxy(&pool_of(
        &[silent.addr],
        "[timeouts]\nbackend_response = \"300ms\"",
    ))
    .await;
    let mut events = proxy.subscribe();
    let started = std::time::Instant::now();
    let (parts, body) = fetch(proxy.local_addrs()[0], get("/slow", "front.example")).await;
    assert_eq!(parts.status, 504);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_plain_text(&parts, &body);
    assert_eq!(request_event(&mut events).await, 504);
    assert_eq!(silent.heads().len(), 1);
}

#[tokio::test]
async fn client_connection_stays_usable_after_a_proxy_error() {
    let dead = dead_addr().await;
    let b = HttpBackend::start("web").await;
    let toml = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [[route]]\npath = \"/dead\"\npool = \"dead\"\n\n\
         [[route]]\npool = \"app\"\n\n\
         [pool.dead]\n[[pool.dead.server]]\naddr = \"{dead}\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
        b.addr
    );
    let proxy = proxy(&toml).await;
    let (mut sender, _) = client(proxy.local_addrs()[0]).await;
    let (parts, _) = send(&mut sender, get("/dead", "front.example")).await;
    assert_eq!(parts.status, 502);
    let (parts, body) = send(&mut sender, get("/alive", "front.example")).await;
    assert_eq!(parts.status, 200);
    assert_eq!(body, "web GET /alive\n");
}

#[tokio::test]
async fn http_1_0_client_gets_a_streamed_response_without_chunked_framing() {
    let b = HttpBackend::start("stream").await;
    let proxy = proxy(&pool_of(&[b.addr], "")).await;
    let len = 200 * 1024 + 3;
    let req = request_bytes(
        &format!("GET /stream/{len} HTTP/1.0"),
        &[("Host", "front.example")],
    );
    let (resp, mut tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        !resp.headers.has("transfer-encoding"),
        "HTTP/1.0 has no chunked encoding: {:?}",
        resp.headers
    );
    assert!(resp.body == stream_pattern(len), "body changed");
    assert!(
        closed_by_peer(&mut tcp).await,
        "an HTTP/1.0 exchange ends with the connection"
    );
}

#[tokio::test]
async fn request_with_content_length_and_chunked_is_refused_before_any_backend_is_contacted() {
    // RFC 9112 §6.3 lets a server either process such a request as chunked and close,
    // or refuse it; like nginx, tunnelscope refuses it (400) and closes: it is a
    // smuggling attempt or a broken client, and no backend should see it.
    let b = HttpBackend::start("web").await;
    let proxy = proxy(&pool_of(&[b.addr], "")).await;
    let mut req = request_bytes(
        "POST /smuggle HTTP/1.1",
        &[
            ("Host", "front.example"),
            ("Content-Length", "4"),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    req.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n");
    let (resp, mut tcp) = raw_request(proxy.local_addrs()[0], &req).await;
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(closed_by_peer(&mut tcp).await, "the connection must close");
    assert_eq!(b.connections(), 0, "no backend is contacted");
    assert!(b.requests().is_empty(), "{:?}", b.requests());
}

/// Shutdown gives a plain request in flight the same grace as a tunnel: a response
/// the backend sends after shutdown began still reaches the client whole, and the
/// proxy finishes only after that.
#[tokio::test]
async fn shutdown_lets_a_plain_request_in_flight_finish_within_the_grace() {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = proxy(&pool_of(
        &[backend.local_addr().unwrap()],
        "[timeouts]\nshutdown_grace = \"10s\"",
    ))
    .await;
    let addr = proxy.local_addrs()[0];
    let client = tokio::spawn(async move {
        let req = request_bytes("GET /slow HTTP/1.1", &[("host", "front.example")]);
        raw_request(addr, &req).await.0
    });
    let (mut conn, _) = backend.accept().await.unwrap();
    read_head(&mut conn).await;

    proxy.shutdown();
    let mut done = tokio::spawn(proxy.wait());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut done)
            .await
            .is_err(),
        "the proxy waits for the request in flight"
    );
    use tokio::io::AsyncWriteExt;
    conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nlate!")
        .await
        .unwrap();
    let resp = client.await.unwrap();
    assert_eq!((resp.status, &resp.body[..]), (200, &b"late!"[..]));
    tokio::time::timeout(WAIT, done)
        .await
        .expect("then the proxy finishes")
        .unwrap();
}
