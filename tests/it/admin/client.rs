//! Clients of the admin API for the tests: the server on 127.0.0.1:0 in front of a
//! real proxy, a hyper HTTP/1.1 client, a tungstenite client for `/api/events`, and a
//! line-by-line parser of the Prometheus text format.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::admin::{self, Api, Running};
use tunnelscope::proxy::ProxyHandle;

use crate::common::binary::Proc;
use crate::common::{Client, WAIT};

/// The admin API of one proxy, stopped when the test ends.
pub struct Admin {
    pub addr: SocketAddr,
    pub token: Option<String>,
    _running: Option<Running>,
}

impl Admin {
    /// A client of an admin API started elsewhere, without a token.
    pub fn at(addr: SocketAddr) -> Admin {
        Admin {
            addr,
            token: None,
            _running: None,
        }
    }

    /// Serves `proxy` on 127.0.0.1:0, requiring `token` when given.
    pub async fn start(proxy: &ProxyHandle, token: Option<&str>) -> Admin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = Api::new(
            proxy.snapshot_source(),
            proxy.counters_source(),
            proxy.subscribe_source(),
            proxy.control(),
        )
        .with_messages(proxy.messages_source())
        .with_search(proxy.search_source())
        .with_readiness(proxy.readiness_source())
        .with_token(token.map(String::from));
        Admin {
            addr,
            token: token.map(String::from),
            _running: Some(admin::spawn(listener, api)),
        }
    }

    /// A request with this admin's token (if any).
    pub async fn call(&self, method: Method, path: &str) -> Reply {
        request(self.addr, method, path, self.token.as_deref()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path).await
    }

    pub async fn post(&self, path: &str) -> Reply {
        self.call(Method::POST, path).await
    }

    /// `POST path` with `body`.
    pub async fn post_body(&self, path: &str, body: &[u8]) -> Reply {
        request_with(self.addr, Method::POST, path, self.token.as_deref(), body).await
    }

    /// `GET path`, expecting 200 and JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let reply = self.get(path).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    /// The metrics, parsed.
    pub async fn metrics(&self) -> Metrics {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let ct = reply.headers["content-type"].to_str().unwrap();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        Metrics::parse(&reply.body)
    }

    /// Opens `/api/events` with this admin's token (if any).
    pub async fn events(&self) -> Client {
        let mut req = format!("ws://{}/api/events", self.addr)
            .into_client_request()
            .unwrap();
        if let Some(t) = &self.token {
            req.headers_mut()
                .insert(AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
        }
        let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("events upgrade in time")
            .expect("events upgrade succeeds");
        assert_eq!(resp.status(), 101);
        ws
    }
}

/// A response as the client got it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Asserts a JSON error body with this status; returns its message.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let v = self.json();
        assert_eq!(v["status"], status, "{v}");
        v["error"].as_str().expect("an error message").to_string()
    }
}

/// One request on a fresh HTTP/1.1 connection, bounded by WAIT.
pub async fn request(addr: SocketAddr, method: Method, path: &str, token: Option<&str>) -> Reply {
    request_with(addr, method, path, token, b"").await
}

/// As [`request`], with a body.
pub async fn request_with(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Reply {
    tokio::time::timeout(WAIT, async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, addr.to_string());
        if let Some(t) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = sender
            .send_request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    })
    .await
    .expect("the admin API answers in time")
}

/// The next JSON message on the event stream.
pub async fn next_json(ws: &mut Client) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("valid message");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a JSON text message, got {other:?}"),
        }
    }
}

/// The next event of `type` matching `pred`, skipping others.
pub async fn next_of(ws: &mut Client, kind: &str, mut pred: impl FnMut(&Value) -> bool) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind && pred(&v) {
            return v;
        }
    }
}

/// A Prometheus text exposition, checked line by line as it is parsed: every sample
/// follows the `# HELP` and `# TYPE` of its family, and every value is a number.
#[derive(Debug)]
pub struct Metrics {
    /// `name{labels}` as written → value.
    pub samples: BTreeMap<String, f64>,
    /// Family name → `counter` or `gauge`.
    pub types: BTreeMap<String, String>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        let (mut help, mut family) = (None::<String>, None::<String>);
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, doc) = rest.split_once(' ').expect("HELP name text");
                assert!(!doc.is_empty(), "{line}");
                help = Some(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert_eq!(help.as_deref(), Some(name), "TYPE follows its HELP: {line}");
                assert!(matches!(kind, "counter" | "gauge"), "{line}");
                types.insert(name.to_string(), kind.to_string());
                family = Some(name.to_string());
            } else {
                let (series, value) = line.rsplit_once(' ').expect("a sample: series value");
                let name = series.split('{').next().unwrap();
                assert_eq!(
                    family.as_deref(),
                    Some(name),
                    "sample under its TYPE: {line}"
                );
                if let Some(labels) = series.strip_prefix(name) {
                    assert!(
                        labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                        "{line}"
                    );
                }
                let value: f64 = value
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number: {line}"));
                assert!(
                    samples.insert(series.to_string(), value).is_none(),
                    "twice: {line}"
                );
            }
        }
        Metrics { samples, types }
    }

    /// The value of `series` (`name` or `name{a="b",...}`), which must exist.
    pub fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {:#?}", self.samples))
    }

    /// A per-backend series of the `app` pool.
    pub fn backend(&self, name: &str, addr: SocketAddr) -> f64 {
        self.get(&format!("{name}{{pool=\"app\",addr=\"{addr}\"}}"))
    }

    pub fn relayed(&self, what: &str, direction: &str) -> f64 {
        self.get(&format!(
            "tunnelscope_relayed_{what}_total{{direction=\"{direction}\"}}"
        ))
    }
}

/// The real binary from a config file: `top` before an `[admin]` table on
/// 127.0.0.1:0 (plus `admin_extra` lines), one listener, and pool `app` with one
/// server. Returns the process, the admin API's and the listener's addresses, and
/// the directory holding the file (keep it while the process runs).
pub async fn spawn_binary(
    backend: SocketAddr,
    top: &str,
    admin_extra: &str,
) -> (Proc, SocketAddr, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("tunnelscope.toml");
    std::fs::write(
        &file,
        format!(
            "{top}\n\n[admin]\nbind = \"127.0.0.1:0\"\n{admin_extra}\n\n\
             [[listener]]\nbind = \"127.0.0.1:0\"\n\n\
             [pool.app]\n[[pool.app.server]]\naddr = \"{backend}\"\n"
        ),
    )
    .unwrap();
    let mut proc = Proc::spawn(&["--config", file.to_str().unwrap(), "--headless"]);
    let line = proc
        .wait_line(|l| l.contains("admin API listening on"))
        .await
        .unwrap_or_else(|| panic!("exited before the admin API:\n{}", proc.seen.join("\n")));
    let admin: SocketAddr = line
        .rsplit("http://")
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let listen = proc.listening().await;
    (proc, admin, listen, dir)
}
