//! Fixtures for the limits, faults and lifecycle tests: a raw WebSocket backend the
//! test drives byte by byte, raw clients (from a chosen loopback address, over TLS),
//! reading a connection until the proxy ends it, and the real `tunnelscope` binary
//! run as a child process that is killed (by PID) when the test ends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::certs::TestPki;
use super::{ws_config, ws_url, Client, WAIT};

/// A hand-written upgrade request for `path` (the key is RFC 6455's sample nonce).
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// What the proxy did with a connection it was sent something on.
#[derive(Debug)]
pub struct Outcome {
    /// Everything read until the end (or until a complete response head).
    pub bytes: Vec<u8>,
    /// The stream ended (EOF or reset); false means a response head arrived and the
    /// connection stayed open.
    pub ended: bool,
    /// A reset rather than a clean EOF.
    pub reset: bool,
}

impl Outcome {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The status code of an HTTP response head, if one arrived.
    pub fn status(&self) -> Option<u16> {
        let text = self.text();
        let rest = text.strip_prefix("HTTP/1.1 ")?;
        rest.get(..3)?.parse().ok()
    }
}

/// Reads until the stream ends, or until a complete HTTP response head has arrived
/// and nothing more follows at once (so a served upgrade does not hang the test).
pub async fn read_outcome<S: AsyncRead + Unpin>(stream: &mut S) -> Outcome {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let result = tokio::time::timeout(WAIT, async {
        loop {
            let has_head = bytes.windows(4).any(|w| w == b"\r\n\r\n");
            let read = if has_head {
                // A head arrived: see whether the connection ends right after it.
                match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await
                {
                    Ok(r) => r,
                    Err(_) => return (false, false),
                }
            } else {
                stream.read(&mut buf).await
            };
            match read {
                Ok(0) => return (true, false),
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(_) => return (true, true),
            }
        }
    })
    .await;
    let (ended, reset) = result.unwrap_or_else(|_| {
        panic!(
            "the proxy neither answered nor closed within {WAIT:?}; got {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Outcome {
        bytes,
        ended,
        reset,
    }
}

/// Connects, sends `request` (write errors ignored: the proxy may already have hung
/// up), and reads the outcome.
pub async fn send_and_read(addr: SocketAddr, request: &[u8]) -> Outcome {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(request).await;
    read_outcome(&mut tcp).await
}

/// Asserts the proxy closed a new connection carrying a valid upgrade request
/// without serving it: no byte of answer, the stream ended.
pub async fn assert_refused(addr: SocketAddr, from: Ipv4Addr) {
    let mut tcp = tcp_from(from, addr).await;
    let _ = tcp.write_all(upgrade_request("/").as_bytes()).await;
    let out = read_outcome(&mut tcp).await;
    assert!(
        out.ended && out.bytes.is_empty(),
        "a connection over the limit from {from} was served: {:?}",
        out.text()
    );
}

/// A TCP connection to `addr` from a chosen loopback address (all of 127.0.0.0/8
/// is local on Linux).
pub async fn tcp_from(ip: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).unwrap();
    tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("TCP connect in time")
        .expect("TCP connect")
}

/// A WebSocket client through the proxy from a chosen loopback address, or the
/// error that prevented it.
pub async fn try_connect_from(
    ip: Ipv4Addr,
    addr: SocketAddr,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let tcp = tcp_from(ip, addr).await;
    tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async_with_config(
            ws_url(addr, "/"),
            MaybeTlsStream::Plain(tcp),
            Some(ws_config()),
        ),
    )
    .await
    .expect("upgrade answered or refused in time")
    .map(|(ws, _)| ws)
}

pub async fn connect_from(ip: Ipv4Addr, addr: SocketAddr) -> Client {
    try_connect_from(ip, addr)
        .await
        .unwrap_or_else(|e| panic!("upgrade from {ip} failed: {e}"))
}

/// Retries an upgrade until the proxy admits it: a limit is released by the
/// connection task a moment after the tunnel's end is published. Bounded by WAIT.
pub async fn connect_once_admitted(ip: Ipv4Addr, addr: SocketAddr) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        match try_connect_from(ip, addr).await {
            Ok(ws) => return ws,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("still refused after {WAIT:?}: {e}"),
        }
    }
}

/// Sends a text message and expects it echoed, on any WebSocket stream.
pub async fn echo_on<S>(ws: &mut WebSocketStream<S>, text: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.expect("send");
    let got = tokio::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("echo in time");
    match got {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
        other => panic!("expected the echo of {text:?}, got {other:?}"),
    }
}

/// A wss:// client through a TLS listener, trusting only the test CA.
pub async fn connect_wss(
    pki: &TestPki,
    addr: SocketAddr,
    path: &str,
) -> WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>> {
    let tls = pki.connect(addr, "localhost").await;
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (ws, resp) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async_with_config(url, tls, Some(ws_config())),
    )
    .await
    .expect("wss upgrade in time")
    .expect("wss upgrade succeeds");
    assert_eq!(resp.status(), 101);
    ws
}

/// Resets a client's connection (SO_LINGER 0) as it is dropped: the peer sees RST.
pub fn reset_on_drop(ws: &Client) {
    match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.set_zero_linger().expect("SO_LINGER 0"),
        _ => panic!("plain clients only"),
    }
}

/// One upgraded connection to a [`RawBackend`]: the test writes and reads raw bytes.
pub struct RawConn {
    pub tcp: TcpStream,
    /// The request head as the proxy sent it.
    pub head: String,
}

/// A backend that answers every upgrade with a correct 101 and hands the raw
/// connection to the test, which then plays the backend byte by byte.
pub struct RawBackend {
    pub addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<RawConn>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    pub async fn start() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(conn) = answer_upgrade(tcp).await {
                        let _ = tx.send(conn);
                    }
                });
            }
        });
        RawBackend { addr, conns, task }
    }

    /// The next upgraded connection (waits for it, bounded).
    pub async fn accept(&mut self) -> RawConn {
        tokio::time::timeout(WAIT, self.conns.recv())
            .await
            .expect("the proxy connected to the raw backend in time")
            .expect("raw backend running")
    }
}

async fn answer_upgrade(mut tcp: TcpStream) -> Option<RawConn> {
    let (head, key) = super::read_upgrade_head(&mut tcp).await?;
    let accept = derive_accept_key(key.as_bytes());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(resp.as_bytes()).await.ok()?;
    Some(RawConn { tcp, head })
}

/// Reads everything until EOF (bounded); panics on a reset.
pub async fn read_to_eof(tcp: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("EOF in time")
        .expect("a clean EOF, not a reset");
    out
}

/// Two pools chosen by path: `/raw...` goes to `raw`, everything else to `app`.
pub fn two_pool_config(top: &str, app: SocketAddr, raw: SocketAddr) -> String {
    format!(
        "{top}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
         [[route]]\npath = \"/raw\"\npool = \"raw\"\n\n[[route]]\npath = \"/\"\npool = \"app\"\n\n\
         [pool.app]\n[[pool.app.server]]\naddr = \"{app}\"\n\n\
         [pool.raw]\n[[pool.raw.server]]\naddr = \"{raw}\"\n"
    )
}

/// The `tunnelscope` binary running as a child process. Its stderr (the logs) is
/// read line by line; it is killed by PID when dropped if still running.
pub struct Proc {
    child: tokio::process::Child,
    pub pid: u32,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stderr line read so far, for failure messages.
    pub seen: Vec<String>,
    stall: Arc<tokio::sync::Notify>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.start_kill();
        }
    }
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tunnelscope"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the tunnelscope binary");
        let pid = child.id().expect("a running child has a pid");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = mpsc::unbounded_channel();
        let stall = Arc::new(tokio::sync::Notify::new());
        let stalled = stall.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            loop {
                let line = tokio::select! {
                    line = reader.next_line() => line,
                    _ = stalled.notified() => {
                        // Stalled: the pipe stays open, unread, until resumed.
                        stalled.notified().await;
                        continue;
                    }
                };
                match line {
                    Ok(Some(line)) if !tx.is_closed() => {
                        let _ = tx.send(line);
                    }
                    _ => return,
                }
            }
        });
        Proc {
            child,
            pid,
            lines,
            seen: Vec::new(),
            stall,
        }
    }

    /// The next stderr line matching `pred`; None when stderr ended first (the
    /// process exited). Panics after WAIT.
    pub async fn wait_line<F: FnMut(&str) -> bool>(&mut self, mut pred: F) -> Option<String> {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line.clone());
                if pred(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(found) => found,
            Err(_) => panic!(
                "no matching log line within {WAIT:?}; stderr so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Waits for the "listening" line and returns the bound address it names.
    pub async fn listening(&mut self) -> SocketAddr {
        let line = self
            .wait_line(|l| l.contains("listening") && l.contains("addr="))
            .await
            .unwrap_or_else(|| panic!("exited before listening:\n{}", self.seen.join("\n")));
        let addr = field(&line, "addr").expect("the listening line names its address");
        addr.parse()
            .unwrap_or_else(|e| panic!("bad address {addr:?} in {line:?}: {e}"))
    }

    /// Stops reading stderr but keeps the pipe open: once its buffer is full, every
    /// write the process makes to stderr would block.
    pub fn stall_stderr(&self) {
        self.stall.notify_one();
    }

    /// Reads stderr again after [`stall_stderr`](Self::stall_stderr).
    pub fn resume_stderr(&self) {
        self.stall.notify_one();
    }

    /// Sends a signal by PID with the `kill` command (`sig` as in `kill -TERM`).
    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid);
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit within `within`; panics if it does not.
    pub async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for the child"),
            Err(_) => panic!(
                "still running after {within:?}; stderr so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }
}

/// The value of `key=value` in a log line (the last occurrence), with the quotes
/// tracing puts around strings removed.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    fields(line).remove(key)
}

/// Every `key=value` pair in a log line; later ones win (so a span's fields are
/// overridden by the event's own).
pub fn fields(line: &str) -> HashMap<String, &str> {
    line.split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_string(), v.trim_matches('"')))
        })
        .collect()
}

/// An address on 127.0.0.1 that was free a moment ago (the caller retries on the
/// rare race where someone else takes it first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
