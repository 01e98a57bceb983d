//! Synthetic clients that keep the demo's dashboard busy. Each is one task that
//! connects through the proxy, plays its part until the tunnel ends, pauses a
//! randomised moment and reconnects: so when a backend is killed or drained its
//! clients visibly move to the others.
//!
//! The cast ([`CLIENTS`]), chosen so every column of the dashboard has something in
//! it:
//!
//! | kind          | path        | what it does                                       |
//! |---------------|-------------|----------------------------------------------------|
//! | `Chatty` ×3   | `/chat`     | a text line every 0.5–2 s                          |
//! | `Bursts` ×2   | `/echo`     | 10 binary messages of 1–16 KiB every 2–5 s         |
//! | `Pinger`      | `/echo`     | a Ping every second                                |
//! | `Idle` ×3     | `/echo`     | connects and stays silent (pongs only)             |
//! | `Ticker` ×2   | `/ticker`   | listens to 5 binary updates a second               |
//! | `ComeAndGo`   | `/chat`     | 2–3 lines, Close 1000, back after 1–3 s            |
//! | `Fragmenter`  | `/chat`     | a text message in 3 frames every 3–6 s             |
//! | `Subprotocol` | `/echo`     | offers `demo.v1`, a text line every 2–4 s          |
//!
//! Every client reads all the time (so Pings are answered and the backends never
//! block on it), backs off on failed connects (never spins), and says goodbye with
//! Close 1001 when [`Traffic::stop`] is called.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{SEC_WEBSOCKET_PROTOCOL, USER_AGENT};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::backends::SUBPROTOCOL;
use super::{stop_signal, Rng, Stop};

type Ws = WebSocketStream<TcpStream>;
type Tx = SplitSink<Ws, Message>;
type Rx = SplitStream<Ws>;

/// What a synthetic client does; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chatty,
    Bursts,
    Pinger,
    Idle,
    Ticker,
    ComeAndGo,
    Fragmenter,
    Subprotocol,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Kind::Chatty | Kind::ComeAndGo | Kind::Fragmenter => "/chat",
            Kind::Bursts | Kind::Pinger | Kind::Idle | Kind::Subprotocol => "/echo",
            Kind::Ticker => "/ticker",
        }
    }
}

/// Every synthetic client and its name. The name goes in the query string
/// (`/echo?name=idle-2`) and the User-Agent, so the dashboard shows who is who.
pub const CLIENTS: &[(Kind, &str)] = &[
    (Kind::Chatty, "ada"),
    (Kind::Chatty, "grace"),
    (Kind::Chatty, "linus"),
    (Kind::Bursts, "bursts-1"),
    (Kind::Bursts, "bursts-2"),
    (Kind::Pinger, "pinger"),
    (Kind::Idle, "idle-1"),
    (Kind::Idle, "idle-2"),
    (Kind::Idle, "idle-3"),
    (Kind::Ticker, "ticker-1"),
    (Kind::Ticker, "ticker-2"),
    (Kind::ComeAndGo, "visitor"),
    (Kind::Fragmenter, "fragments"),
    (Kind::Subprotocol, "v1-client"),
];

const LINES: &[&str] = &[
    "hello from the other side of the proxy",
    "anyone else on app-2?",
    "ship it",
    "the tunnel is holding up nicely",
    "who drained my backend?",
    "brb, reconnecting",
    "frames all the way down",
    "is this thing on?",
    "least_conn says hi",
    "ping me if you need me",
    "just watching the bytes go by",
    "nice weather in the tunnel today",
];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a goodbye (Close frame and its answer) may take on stop.
const GOODBYE: Duration = Duration::from_secs(1);

/// The running synthetic clients.
pub struct Traffic {
    stop: watch::Sender<()>,
    tasks: JoinSet<()>,
}

impl Traffic {
    /// Starts every client in [`CLIENTS`] against the proxy at `target`.
    pub fn start(target: SocketAddr) -> Traffic {
        let (stop, listener) = stop_signal();
        let mut tasks = JoinSet::new();
        for (n, &(kind, name)) in CLIENTS.iter().enumerate() {
            // Seeded per client: runs look alike, clients do not.
            let rng = Rng::new(n as u64);
            tasks.spawn(client(target, kind, name, rng, listener.clone()));
        }
        Traffic { stop, tasks }
    }

    /// Asks every client to close (1001) and waits for them, briefly.
    pub async fn stop(self) {
        let Traffic { stop, mut tasks } = self;
        drop(stop);
        let all = async { while tasks.join_next().await.is_some() {} };
        if timeout(GOODBYE * 2, all).await.is_err() {
            tasks.abort_all();
        }
    }
}

/// Why a session ended, for the debug log.
#[derive(Debug)]
enum End {
    /// The tunnel closed; the close code received, if any.
    Closed(Option<u16>),
    Error(WsError),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Closed(Some(code)) => write!(f, "closed with {code}"),
            End::Closed(None) => f.write_str("closed"),
            End::Error(e) => write!(f, "error: {e}"),
        }
    }
}

impl From<WsError> for End {
    fn from(e: WsError) -> End {
        End::Error(e)
    }
}

async fn client(target: SocketAddr, kind: Kind, name: &'static str, mut rng: Rng, mut stop: Stop) {
    let mut backoff = MIN_BACKOFF;
    while !stop.is_stopped() {
        let connected = tokio::select! {
            r = connect(target, kind, name) => r,
            _ = stop.wait() => return,
        };
        let ws = match connected {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(client = name, error = %e, "demo client could not connect");
                // Jittered so the cast does not reconnect in lockstep.
                let pause = backoff + rng.millis(0, backoff.as_millis() as u64 / 2);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                tokio::select! {
                    _ = sleep(pause) => continue,
                    _ = stop.wait() => return,
                }
            }
        };
        backoff = MIN_BACKOFF;
        let (mut tx, mut rx) = ws.split();
        let end = tokio::select! {
            // The writer only ends on a send error; the reader sees every ending.
            r = play(kind, name, &mut tx, &mut rng) => r.err().unwrap_or(End::Closed(None)),
            end = read_until_end(&mut rx) => end,
            _ = stop.wait() => {
                goodbye(&mut tx, &mut rx).await;
                return;
            }
        };
        // Close the socket now, not after the pause: the proxy counts the tunnel
        // until both ends have hung up.
        drop((tx, rx));
        tracing::debug!(client = name, %end, "demo tunnel ended");
        let pause = match kind {
            Kind::ComeAndGo => rng.millis(1000, 3000),
            _ => rng.millis(300, 1500),
        };
        tokio::select! {
            _ = sleep(pause) => {}
            _ = stop.wait() => return,
        }
    }
}

async fn connect(target: SocketAddr, kind: Kind, name: &str) -> Result<Ws, WsError> {
    let url = format!("ws://{target}{}?name={name}", kind.endpoint());
    let mut req = url.into_client_request()?;
    let h = req.headers_mut();
    if let Ok(ua) = HeaderValue::from_str(&format!("tunnelscope-demo/{name}")) {
        h.insert(USER_AGENT, ua);
    }
    if kind == Kind::Subprotocol {
        // tungstenite then insists the backend picks it, which checks the relay.
        h.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    let handshake = async {
        let tcp = TcpStream::connect(target).await?;
        let _ = tcp.set_nodelay(true);
        let (ws, _) = tokio_tungstenite::client_async(req, tcp).await?;
        Ok(ws)
    };
    timeout(CONNECT_TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| Err(WsError::Io(io::ErrorKind::TimedOut.into())))
}

/// Reads (and so answers Pings and Close frames) until the tunnel is over.
async fn read_until_end(rx: &mut Rx) -> End {
    let mut code = None;
    loop {
        match rx.next().await {
            // tungstenite queues the answering Close; reading on sends it and then
            // ends the stream.
            Some(Ok(Message::Close(frame))) => code = frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(e)) if code.is_none() => return End::Error(e),
            Some(Err(_)) | None => return End::Closed(code),
        }
    }
}

async fn goodbye(tx: &mut Tx, rx: &mut Rx) {
    let bye = async {
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: "demo stopping".into(),
        };
        if tx.send(Message::Close(Some(frame))).await.is_ok() {
            read_until_end(rx).await;
        }
    };
    let _ = timeout(GOODBYE, bye).await;
}

/// The sending side of each kind. Runs until a send fails (or forever); the
/// reader next to it notices the tunnel ending.
async fn play(kind: Kind, name: &str, tx: &mut Tx, rng: &mut Rng) -> Result<(), End> {
    match kind {
        Kind::Chatty => loop {
            sleep(rng.millis(500, 2000)).await;
            tx.send(Message::text(*rng.pick(LINES))).await?;
        },
        Kind::Bursts => {
            // The first burst comes soon, so a fresh dashboard has binary at once.
            sleep(rng.millis(300, 1000)).await;
            loop {
                for _ in 0..10 {
                    let mut buf = vec![0u8; rng.range(1024, 16 * 1024) as usize];
                    rng.fill(&mut buf);
                    // Queue the burst and flush once: it leaves as one write.
                    tx.feed(Message::binary(buf)).await?;
                }
                tx.flush().await?;
                sleep(rng.millis(2000, 5000)).await;
            }
        }
        Kind::Pinger => {
            for n in 0u64.. {
                sleep(Duration::from_secs(1)).await;
                tx.send(Message::Ping(n.to_be_bytes().to_vec().into()))
                    .await?;
            }
            Ok(())
        }
        Kind::Idle | Kind::Ticker => std::future::pending().await,
        Kind::ComeAndGo => {
            for _ in 0..rng.range(2, 3) {
                sleep(rng.millis(500, 1500)).await;
                tx.send(Message::text(*rng.pick(LINES))).await?;
            }
            sleep(rng.millis(300, 800)).await;
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "see you soon".into(),
            };
            tx.send(Message::Close(Some(frame))).await?;
            // The reader sees the answering Close and ends the session.
            std::future::pending().await
        }
        Kind::Fragmenter => {
            sleep(rng.millis(300, 1000)).await;
            for n in 1u64.. {
                let parts = [
                    (
                        format!("message #{n} from {name}, "),
                        OpCode::Data(Data::Text),
                    ),
                    ("sent in three ".to_string(), OpCode::Data(Data::Continue)),
                    ("fragments".to_string(), OpCode::Data(Data::Continue)),
                ];
                for (i, (part, op)) in parts.into_iter().enumerate() {
                    let fin = i == 2;
                    tx.feed(Message::Frame(Frame::message(part.into_bytes(), op, fin)))
                        .await?;
                }
                tx.flush().await?;
                sleep(rng.millis(3000, 6000)).await;
            }
            Ok(())
        }
        Kind::Subprotocol => {
            for n in 1u64.. {
                sleep(rng.millis(2000, 4000)).await;
                tx.send(Message::text(format!("{SUBPROTOCOL} hello #{n}")))
                    .await?;
            }
            Ok(())
        }
    }
}
