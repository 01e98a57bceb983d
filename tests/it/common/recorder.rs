//! A tokio-tungstenite backend that records what it received and how each
//! connection ended (the Close it got), and can stall a frame mid-way.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use super::{read_upgrade_head, wire::*, ws_config, WAIT};

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
    let (_, key) = read_upgrade_head(&mut tcp).await?;
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
