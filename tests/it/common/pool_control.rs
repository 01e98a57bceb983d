//! Fixtures for the balancing and control tests: configs with weights and backups,
//! addresses that refuse connections, clients with hash-key headers, a backend that
//! records the Close it receives and can stall mid-frame, and raw WebSocket frames.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tunnelscope::event::{BackendId, BackendInfo, Event};
use tunnelscope::proxy::ProxyHandle;

use super::{ws_config, ws_url, Client, WAIT};

/// The pool every config here names.
pub const POOL: &str = "app";

/// The id the proxy gives the server configured at `addr` in [`POOL`].
pub fn backend_id(addr: SocketAddr) -> BackendId {
    BackendId::new(POOL, &addr.to_string())
}

/// One listener, `top` (e.g. a `[proxy]` table) and one pool with `pool_extra` and
/// these servers, each with its own extra lines (`weight = 2`, `backup = true`).
pub fn pool_config(top: &str, pool_extra: &str, servers: &[(SocketAddr, &str)]) -> String {
    let servers: String = servers
        .iter()
        .map(|(addr, extra)| format!("[[pool.{POOL}.server]]\naddr = \"{addr}\"\n{extra}\n"))
        .collect();
    format!("{top}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n[pool.{POOL}]\n{pool_extra}\n{servers}")
}

/// An address on which nothing listens: connecting is refused at once.
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Binds `addr` again (after [`dead_addr`] released it), allowing reuse.
pub fn rebind(addr: SocketAddr) -> TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(addr)
        .expect("the released port can be bound again");
    socket.listen(128).unwrap()
}

/// Tries an upgrade through the proxy: the client, or the HTTP status it got instead.
pub async fn try_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Client, u16> {
    let mut req = ws_url(addr, path).into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let res = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), false),
    )
    .await
    .expect("upgrade answered in time");
    match res {
        Ok((ws, resp)) => {
            assert_eq!(resp.status(), 101);
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("upgrade failed without an HTTP answer: {e}"),
    }
}

/// A client through the proxy with extra request headers.
pub async fn connect_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Client {
    match try_connect(addr, path, headers).await {
        Ok(ws) => ws,
        Err(status) => panic!("upgrade refused with {status}"),
    }
}

/// The client's own address: what the proxy sees as the tunnel's client.
pub fn local_addr(ws: &Client) -> SocketAddr {
    match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap(),
        _ => panic!("plain clients only"),
    }
}

/// Reads until the proxy's Close frame and the end of the stream (letting the client
/// answer the Close, as real clients do). Any data message on the way fails.
pub async fn expect_close(ws: &mut Client) -> CloseFrame {
    tokio::time::timeout(WAIT, async {
        let mut close: Option<Option<CloseFrame>> = None;
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => close = Some(frame),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => panic!("expected a Close, got data {other:?}"),
                // After the Close the proxy may hang up without ceremony.
                Some(Err(_)) if close.is_some() => break,
                Some(Err(e)) => panic!("stream failed before any Close: {e}"),
                None => break,
            }
        }
        close
            .expect("a Close frame before the end of the stream")
            .expect("the Close frame carries a code")
    })
    .await
    .expect("Close and end of stream in time")
}

/// Closes a client normally and reads until the end.
pub async fn hang_up(mut ws: Client) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
}

/// The backend's state in the snapshot.
pub fn backend_info(proxy: &ProxyHandle, addr: SocketAddr) -> BackendInfo {
    let id = backend_id(addr);
    proxy
        .snapshot()
        .backends
        .into_iter()
        .find(|b| b.id == id)
        .unwrap_or_else(|| panic!("{id} is in the snapshot"))
}

/// Waits for a BackendState event of the backend at `addr` that matches `pred`.
pub async fn wait_backend<F: FnMut(&BackendInfo) -> bool>(
    rx: &mut broadcast::Receiver<Event>,
    addr: SocketAddr,
    mut pred: F,
) -> BackendInfo {
    let id = backend_id(addr);
    match super::wait_event(
        rx,
        |e| matches!(e, Event::BackendState(b) if b.id == id && pred(b)),
    )
    .await
    {
        Event::BackendState(info) => info,
        _ => unreachable!(),
    }
}

/// The payload a [`Recorder`] sends for `split:N`: byte i is `i * 7 % 251`.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// How one connection to a [`Recorder`] ended, as the backend saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A well-formed (masked) Close frame: its code and reason.
    Close(Option<u16>, String),
    /// tungstenite rejected the stream (an unmasked or malformed frame).
    Error(String),
    /// The connection ended without a Close.
    Eof,
}

/// A tokio-tungstenite backend that answers `whoami` with its name, echoes other
/// data, and reports how each connection ended (notably the Close it received: the
/// tungstenite server would fail on an unmasked or malformed one). Text `split:N`
/// makes it send one binary frame of N [`pattern`] bytes in two halves, the second
/// only after [`Recorder::release`].
pub struct Recorder {
    pub name: String,
    pub addr: SocketAddr,
    /// Every text message received, in order.
    pub texts: Arc<Mutex<Vec<String>>>,
    /// Every binary message received, in order.
    pub binaries: Arc<Mutex<Vec<Vec<u8>>>>,
    endings: mpsc::UnboundedReceiver<Ending>,
    gate: Arc<Semaphore>,
    handshakes: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// `accept_unmasked`: let unmasked client frames through (to see what a proxy
    /// forwards after a violation) instead of failing the stream on them.
    pub async fn start(name: &str, accept_unmasked: bool) -> Recorder {
        Recorder::start_with(name, accept_unmasked, false).await
    }

    /// A recorder that answers each upgrade request only after
    /// [`Recorder::release_handshake`].
    pub async fn start_holding_handshakes(name: &str) -> Recorder {
        Recorder::start_with(name, false, true).await
    }

    async fn start_with(name: &str, accept_unmasked: bool, hold: bool) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let texts = Arc::new(Mutex::new(Vec::new()));
        let binaries = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let handshakes = Arc::new(Semaphore::new(0));
        let (tx, endings) = mpsc::unbounded_channel();
        let config = ws_config().accept_unmasked_frames(accept_unmasked);
        let received = Received {
            texts: texts.clone(),
            binaries: binaries.clone(),
        };
        let (name2, gate2, handshakes2) = (name.to_string(), gate.clone(), handshakes.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (name, received, gate, tx) =
                    (name2.clone(), received.clone(), gate2.clone(), tx.clone());
                let handshakes = handshakes2.clone();
                tokio::spawn(async move {
                    let ws = if hold {
                        held_handshake(tcp, &handshakes, config).await
                    } else {
                        tokio_tungstenite::accept_async_with_config(tcp, Some(config))
                            .await
                            .ok()
                    };
                    let Some(ws) = ws else {
                        return;
                    };
                    let ending = serve_recorded(ws, &name, &received, &gate).await;
                    let _ = tx.send(ending);
                });
            }
        });
        Recorder {
            name: name.to_string(),
            addr,
            texts,
            binaries,
            endings,
            gate,
            handshakes,
            task,
        }
    }

    /// Lets one held upgrade request be answered with 101.
    pub fn release_handshake(&self) {
        self.handshakes.add_permits(1);
    }

    /// How the next connection ended (waits for it).
    pub async fn next_ending(&mut self) -> Ending {
        tokio::time::timeout(WAIT, self.endings.recv())
            .await
            .expect("a backend connection ended in time")
            .expect("recorder running")
    }

    /// An ending already reported, if any (does not wait).
    pub fn ended(&mut self) -> Option<Ending> {
        self.endings.try_recv().ok()
    }

    /// Lets one stalled `split:N` frame finish.
    pub fn release(&self) {
        self.gate.add_permits(1);
    }
}

/// Reads an upgrade request, waits for a permit, then answers 101 by hand.
async fn held_handshake(
    mut tcp: TcpStream,
    permits: &Semaphore,
    config: tokio_tungstenite::tungstenite::protocol::WebSocketConfig,
) -> Option<tokio_tungstenite::WebSocketStream<TcpStream>> {
    let (_, key) = super::read_upgrade_head(&mut tcp).await?;
    permits.acquire().await.ok()?.forget();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(response.as_bytes()).await.ok()?;
    Some(
        tokio_tungstenite::WebSocketStream::from_raw_socket(
            tcp,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            Some(config),
        )
        .await,
    )
}

/// Where a [`Recorder`] connection keeps what it received.
#[derive(Clone)]
struct Received {
    texts: Arc<Mutex<Vec<String>>>,
    binaries: Arc<Mutex<Vec<Vec<u8>>>>,
}

async fn serve_recorded(
    mut ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    name: &str,
    received: &Received,
    gate: &Semaphore,
) -> Ending {
    let mut close = None;
    loop {
        let msg = match ws.next().await {
            Some(Ok(msg)) => msg,
            // After a Close the peer may hang up without ceremony.
            Some(Err(_)) | None if close.is_some() => break,
            Some(Err(e)) => return Ending::Error(e.to_string()),
            None => return Ending::Eof,
        };
        let reply = match msg {
            Message::Close(frame) => {
                // tungstenite answers it on the next poll; keep polling to the end.
                close = Some(match frame {
                    Some(f) => Ending::Close(Some(f.code.into()), f.reason.to_string()),
                    None => Ending::Close(None, String::new()),
                });
                continue;
            }
            Message::Text(t) => {
                received.texts.lock().unwrap().push(t.to_string());
                if t.as_str() == "whoami" {
                    Message::text(name)
                } else if let Some(n) = t.as_str().strip_prefix("split:") {
                    let payload = pattern(n.parse().unwrap());
                    let half = payload.len() / 2;
                    let raw = ws.get_mut();
                    let ok = async {
                        raw.write_all(&frame_header(0x2, payload.len(), false))
                            .await?;
                        raw.write_all(&payload[..half]).await?;
                        raw.flush().await?;
                        gate.acquire().await.expect("gate open").forget();
                        raw.write_all(&payload[half..]).await?;
                        raw.flush().await
                    }
                    .await;
                    if let Err(e) = ok {
                        return Ending::Error(e.to_string());
                    }
                    continue;
                } else {
                    Message::Text(t)
                }
            }
            Message::Binary(b) => {
                received.binaries.lock().unwrap().push(b.to_vec());
                Message::Binary(b)
            }
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
    close.unwrap_or(Ending::Eof)
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
