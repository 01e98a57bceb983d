//! Fixtures for the handshake and plain-HTTP tests:
//!
//! - a raw HTTP/1.1 client: hand-written request bytes, the answer parsed here
//!   (status line, repeated headers, Content-Length / chunked / until-close bodies),
//!   reading the head byte by byte so nothing after a 101 is swallowed;
//! - [`HttpBackend`]: a real hyper 1 server that records every request (method,
//!   target, headers, body) and every accepted connection, echoes, streams large
//!   chunked responses and answers any status;
//! - [`RawBackend`]: a TCP backend with a scripted answer (a 403, a bad 101, half a
//!   head, or silence) for the failure paths hyper-based servers cannot produce.
//!
//! (Named `http_fixtures`, not `http`, so `use common::*` never shadows the `http`
//! crate in a test binary.)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::WAIT;

/// A key from RFC 6455 §1.3 and the accept value that belongs to it.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Header pairs kept in the order they were seen; lookups ignore case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(String, String)>);

impl HeaderList {
    /// All values of a header, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first value of a header.
    pub fn get(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }

    pub fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }
}

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: HeaderList,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request head: the request line, then the headers in this order, then the
/// blank line. Add a body yourself.
pub fn request_bytes(request_line: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("{request_line}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The headers of a valid WebSocket upgrade (Host, Upgrade, Connection, key,
/// version), followed by `extra`.
pub fn upgrade_headers<'a>(host: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", WS_KEY),
        ("Sec-WebSocket-Version", "13"),
    ];
    h.extend_from_slice(extra);
    h
}

/// Reads one response head byte by byte (so bytes after it stay in the stream).
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut head = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read_u8().await {
                Ok(b) => head.push(b),
                Err(e) => panic!(
                    "stream ended inside a head ({e}); got {:?}",
                    String::from_utf8_lossy(&head)
                ),
            }
        }
    })
    .await
    .expect("a complete head in time");
    head
}

/// Parses a head into (first line split in three, headers).
pub fn parse_head(head: &[u8]) -> (String, String, String, HeaderList) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.splitn(3, ' ');
    let (a, b, c) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("header line without a colon: {l:?}"));
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    (a, b, c, HeaderList(headers))
}

async fn read_line<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.push(stream.read_u8().await.expect("a line before the end"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).expect("ASCII line")
}

/// Reads one response: head, then a body framed by Transfer-Encoding: chunked,
/// Content-Length, or the end of the stream. 1xx, 204 and 304 have no body.
pub async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> RawResponse {
    let head = read_head(stream).await;
    let (version, status, reason, headers) = parse_head(&head);
    let status: u16 = status
        .parse()
        .unwrap_or_else(|_| panic!("not a status line: {}", String::from_utf8_lossy(&head)));
    let mut body = Vec::new();
    let chunked = headers
        .all("transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    tokio::time::timeout(WAIT, async {
        if (100..200).contains(&status) || status == 204 || status == 304 {
        } else if chunked {
            loop {
                let line = read_line(stream).await;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16).expect("hex chunk size");
                if size == 0 {
                    // Trailers (none expected), then the blank line.
                    while !read_line(stream).await.is_empty() {}
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                stream.read_exact(&mut body[start..]).await.unwrap();
                assert_eq!(read_line(stream).await, "", "CRLF after a chunk");
            }
        } else if let Some(len) = headers.get("content-length") {
            body.resize(len.parse().expect("numeric Content-Length"), 0);
            stream.read_exact(&mut body).await.unwrap();
        } else {
            stream.read_to_end(&mut body).await.unwrap();
        }
    })
    .await
    .expect("the whole body in time");
    RawResponse {
        version,
        status,
        reason,
        headers,
        body,
    }
}

/// Writes `request` on `stream` and reads one response.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> RawResponse {
    stream.write_all(request).await.unwrap();
    stream.flush().await.unwrap();
    read_response(stream).await
}

/// Connects to `addr`, sends `request`, reads one response. The stream is returned
/// too (after a 101 it is the tunnel).
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> (RawResponse, TcpStream) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let resp = exchange(&mut tcp, request).await;
    (resp, tcp)
}

/// Is the stream closed by the peer (EOF or reset) within [`WAIT`], with no more
/// bytes sent?
pub async fn closed_by_peer(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(WAIT, tcp.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// What an [`HttpBackend`] saw of one request.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    pub headers: HeaderList,
    pub body: Vec<u8>,
}

type BackendBody = BoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> BackendBody {
    Full::new(body.into()).boxed()
}

/// The bytes of `/stream/N`: byte i is `i * 13 % 251`.
pub fn stream_pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

/// Size of the pieces a `/stream/N` response is written in.
pub const STREAM_CHUNK: usize = 16 * 1024;

/// A real HTTP/1.1 server (hyper 1). Every response carries `X-Backend: NAME`,
/// `X-Method`, `X-Target` and `X-Custom-Response: kept`. By path:
///
/// - `/status/N`: status N, body `status N\n`;
/// - `/stream/N`: N [`stream_pattern`] bytes written in [`STREAM_CHUNK`] pieces
///   with no length announced, so the response is chunked;
/// - `/hop`: also sends `Connection: x-hop-secret`, `X-Hop-Secret`, `Keep-Alive`
///   (which a proxy must strip) and `X-End-To-End`;
/// - anything else: 200; the request body echoed, or `NAME METHOD TARGET\n` when
///   there is none.
pub struct HttpBackend {
    pub name: String,
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpBackend {
    pub async fn start(name: &str) -> HttpBackend {
        HttpBackend::serve(name, TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    /// A backend on a given address (one that refused connections until now).
    pub async fn serve_on(addr: SocketAddr, name: &str) -> HttpBackend {
        HttpBackend::serve(name, TcpListener::bind(addr).await.unwrap())
    }

    fn serve(name: &str, listener: TcpListener) -> HttpBackend {
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (name2, requests2, connections2) =
            (name.to_string(), requests.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                connections2.fetch_add(1, Ordering::SeqCst);
                let (name, requests) = (name2.clone(), requests2.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (name, requests) = (name.clone(), requests.clone());
                        async move { Ok::<_, Infallible>(answer(&name, &requests, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        HttpBackend {
            name: name.to_string(),
            addr,
            requests,
            connections,
            task,
        }
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn answer(
    name: &str,
    requests: &Mutex<Vec<SeenRequest>>,
    req: Request<Incoming>,
) -> Response<BackendBody> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let mut resp = Response::new(full(format!("body failed: {e}\n")));
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            return resp;
        }
    };
    let method = parts.method.to_string();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.to_string(), |p| p.to_string());
    requests.lock().unwrap().push(SeenRequest {
        method: method.clone(),
        target: target.clone(),
        headers: HeaderList(
            parts
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect(),
        ),
        body: body.to_vec(),
    });

    let path = parts.uri.path();
    let mut resp = if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(format!("status {code}\n")));
        *r.status_mut() = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        r
    } else if let Some(n) = path.strip_prefix("/stream/") {
        let data = Bytes::from(stream_pattern(n.parse().unwrap()));
        let pieces: Vec<Result<Frame<Bytes>, Infallible>> = (0..data.len())
            .step_by(STREAM_CHUNK)
            .map(|i| {
                Ok(Frame::data(
                    data.slice(i..(i + STREAM_CHUNK).min(data.len())),
                ))
            })
            .collect();
        Response::new(StreamBody::new(futures_util::stream::iter(pieces)).boxed())
    } else if body.is_empty() {
        Response::new(full(format!("{name} {method} {target}\n")))
    } else {
        Response::new(full(body))
    };
    let h = resp.headers_mut();
    h.insert("x-backend", name.parse().unwrap());
    h.insert("x-method", method.parse().unwrap());
    h.insert("x-target", target.parse().unwrap());
    h.insert("x-custom-response", "kept".parse().unwrap());
    if path == "/hop" {
        h.insert("connection", "x-hop-secret".parse().unwrap());
        h.insert("x-hop-secret", "backend-only".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-end-to-end", "yes".parse().unwrap());
    }
    resp
}

/// What a [`RawBackend`] does once it has read a request head.
#[derive(Debug, Clone)]
pub enum Script {
    /// Writes these bytes, then closes the connection.
    Answer(Vec<u8>),
    /// Never answers; keeps the connection open until the backend is dropped.
    Silent,
}

/// A TCP backend that reads one request head per connection, records it and
/// follows its [`Script`].
pub struct RawBackend {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    pub async fn start(script: Script) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let heads2 = heads.clone();
        let task = tokio::spawn(async move {
            // Silent connections live here, so they close when the task is aborted.
            let mut held = Vec::new();
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    match tcp.read_u8().await {
                        Ok(b) => head.push(b),
                        Err(_) => break,
                    }
                }
                heads2
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                match &script {
                    Script::Answer(bytes) => {
                        let _ = tcp.write_all(bytes).await;
                        let _ = tcp.shutdown().await;
                    }
                    Script::Silent => held.push(tcp),
                }
            }
        });
        RawBackend { addr, heads, task }
    }

    /// The request heads received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}
