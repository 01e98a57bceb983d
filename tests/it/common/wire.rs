//! Bytes on the wire, by hand: upgrade requests and frames written byte by byte,
//! what the proxy answered (or whether it hung up), and a raw backend that answers
//! the upgrade and hands the connection to the test.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::{clients::*, read_upgrade_head, WAIT};

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
    let (head, key) = read_upgrade_head(&mut tcp).await?;
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

/// The header of one FIN frame with `opcode` and a payload of `len` bytes (the
/// masking key, if any, follows it).
pub fn frame_header(opcode: u8, len: usize, masked: bool) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let bit = if masked { 0x80 } else { 0 };
    match len {
        0..=125 => out.push(bit | len as u8),
        126..=0xFFFF => {
            out.push(bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out
}

/// One FIN frame with `opcode`, masked with `mask` when given.
pub fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = frame_header(opcode, payload.len(), mask.is_some());
    match mask {
        None => out.extend_from_slice(payload),
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
    }
    out
}

/// A hand-made upgrade over a raw socket; returns it once the 101 head is read.
pub async fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /raw HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.expect("response head"));
        }
    })
    .await
    .expect("response head in time");
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
    tcp
}

/// Reads one unfragmented frame from a server: (opcode, payload). None at EOF.
pub async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(WAIT, async {
        let b0 = tcp.read_u8().await.ok()?;
        let b1 = tcp.read_u8().await.ok()?;
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        let len = match b1 & 0x7F {
            126 => u64::from(tcp.read_u16().await.ok()?),
            127 => tcp.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let mut payload = vec![0; len as usize];
        tcp.read_exact(&mut payload).await.ok()?;
        assert_eq!(b0 & 0x80, 0x80, "unfragmented frames only");
        Some((b0 & 0x0F, payload))
    })
    .await
    .expect("a frame or EOF in time")
}
