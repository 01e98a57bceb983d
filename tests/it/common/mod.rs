//! Fixtures shared by the integration tests. Here: real WebSocket echo backends on
//! 127.0.0.1:0, a proxy started from a TOML string, clients, waiting for events.
//!
//! - `clients`: WebSocket clients through the proxy (from a chosen address, with
//!   headers, over TLS) and what they expect of it.
//! - `recorder`: a backend that records what it received and how it was closed.
//! - `wire`: bytes on the wire by hand: requests, frames, a raw backend.
//! - `pools`: pool configs, dead addresses, a backend's reported state.
//! - `http_fixtures`: plain HTTP backends and raw HTTP requests and responses.
//! - `binary`: the real `tunnelscope` binary as a child process.
//! - `certs`: a CA and certificates made in the test; `tui`: a real terminal (tmux).
#![allow(dead_code)]
// The handshake callback signature is tungstenite's; its error type is large by design.
#![allow(clippy::result_large_err)]

pub mod binary;
pub mod certs;
pub mod clients;
pub mod dns;
pub mod http_fixtures;
pub mod pools;
pub mod recorder;
pub mod screen;
pub mod tui;
pub mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tunnelscope::config::Config;
use tunnelscope::event::Event;
use tunnelscope::proxy::ProxyHandle;

/// Generous bound for anything a test waits on; a hang fails instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Big enough for the 16 MiB message tests on both ends.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// What a backend saw of one upgrade request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// All values of a header, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }
}

/// A tokio-tungstenite echo server. Text `whoami` is answered with its name, text
/// `close:CODE` makes it close with that code, anything else is echoed back. It
/// picks the first offered subprotocol.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Backend::serve(name, listener)
    }

    pub fn serve(name: &str, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (name2, seen2) = (name.to_string(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (name, seen) = (name2.clone(), seen2.clone());
                tokio::spawn(async move {
                    let callback = |req: &Request, mut resp: Response| {
                        seen.lock().unwrap().push(Seen {
                            path: req.uri().to_string(),
                            headers: req
                                .headers()
                                .iter()
                                .map(|(n, v)| {
                                    (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                                })
                                .collect(),
                        });
                        if let Some(p) = req.headers().get("sec-websocket-protocol") {
                            let first = p.to_str().unwrap_or("").split(',').next().unwrap_or("");
                            resp.headers_mut()
                                .insert("sec-websocket-protocol", first.trim().parse().unwrap());
                        }
                        resp.headers_mut()
                            .append("set-cookie", "backend=seen; Path=/".parse().unwrap());
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async_with_config(
                        tcp,
                        callback,
                        Some(ws_config()),
                    )
                    .await
                    else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        let reply = match &msg {
                            Message::Text(t) if t.as_str() == "whoami" => {
                                Message::text(name.clone())
                            }
                            Message::Text(t) if t.as_str().starts_with("close:") => {
                                let code: u16 = t.as_str()[6..].parse().unwrap_or(1000);
                                let _ = ws
                                    .close(Some(
                                        tokio_tungstenite::tungstenite::protocol::CloseFrame {
                                            code: code.into(),
                                            reason: "backend closes".into(),
                                        },
                                    ))
                                    .await;
                                continue;
                            }
                            Message::Text(_) | Message::Binary(_) => msg,
                            _ => continue,
                        };
                        if ws.send(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
            seen,
            task,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A proxy configured from TOML (listeners should bind 127.0.0.1:0).
pub async fn proxy(toml: &str) -> ProxyHandle {
    let config = Config::from_str(toml, "test.toml").expect("test config is valid");
    tunnelscope::proxy::start(config)
        .await
        .expect("proxy starts")
}

/// One plain listener in front of one pool with these backends.
pub fn simple_config(backends: &[&Backend], pool_extra: &str) -> String {
    let servers: String = backends
        .iter()
        .map(|b| format!("[[pool.app.server]]\naddr = \"{}\"\n", b.addr))
        .collect();
    format!("[[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.app]\n{pool_extra}\n{servers}")
}

pub fn ws_url(addr: SocketAddr, path: &str) -> String {
    format!("ws://{addr}{path}")
}

/// Connects a client through the proxy.
pub async fn connect(addr: SocketAddr, path: &str) -> Client {
    let (ws, resp) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(ws_url(addr, path), Some(ws_config()), false),
    )
    .await
    .expect("connect in time")
    .expect("upgrade succeeds");
    assert_eq!(resp.status(), 101);
    ws
}

/// The next data message, skipping pings and pongs.
pub async fn next_data(ws: &mut Client) -> Message {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("message in time")
            .expect("stream open")
            .expect("valid message");
        match msg {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

/// Asks the backend behind this tunnel for its name.
pub async fn whoami(ws: &mut Client) -> String {
    ws.send(Message::text("whoami")).await.unwrap();
    match next_data(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected a name, got {other:?}"),
    }
}

/// Waits for the first event matching `pred`, failing after [`WAIT`].
pub async fn wait_event<F: FnMut(&Event) -> bool>(
    rx: &mut broadcast::Receiver<Event>,
    mut pred: F,
) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
            }
        }
    })
    .await
    .expect("event in time")
}

/// Sends raw bytes and reads the whole answer until the peer closes (or WAIT).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a raw HTTP request head byte by byte (so nothing after it is swallowed) and
/// returns it with its Sec-WebSocket-Key, for hand-written backends.
pub async fn read_upgrade_head(tcp: &mut TcpStream) -> Option<(String, String)> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.ok()?);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let key = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_string())
    })?;
    Some((head, key))
}
