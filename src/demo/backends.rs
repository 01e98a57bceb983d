//! The demo's backends: small hyper 1 HTTP/1.1 servers, each on its own port, that
//! serve on that one port:
//!
//! - `GET /`: the chat page (`assets/demo.html`); `GET /health`: `ok`.
//! - WebSocket `/echo`: every text or binary message comes back unchanged.
//! - WebSocket `/chat?name=NAME`: one room shared by *all* instances (an in-process
//!   broadcast channel), so people on different backends talk to each other. Every
//!   message goes to every member as JSON text
//!   `{"type":"msg","from":"ada","backend":"app-2","text":"hi"}`; `type` is also
//!   `welcome` (to the newcomer only), `join` or `leave`.
//! - WebSocket `/ticker`: a 32-byte binary update every 200 ms (big-endian u64
//!   sequence, u64 Unix milliseconds, four u32 prices in cents).
//!
//! The subprotocol `demo.v1` is accepted when offered. The upgrade is done with
//! hyper (101 + `hyper::upgrade::on`) rather than tungstenite's own handshake, so
//! plain HTTP and WebSocket share the port the way real application servers do.
//!
//! An instance can be stopped (every connection dropped at once, like a crashed
//! process) and restarted on the same port.

use crate::sync::lock;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::endpoints::{self, Room, Ws};
use super::{stop_signal, DemoError, Stop};

/// The chat page, shipped inside the binary.
pub const PAGE: &str = include_str!("../../assets/demo.html");
/// The subprotocol the backends accept when a client offers it.
pub const SUBPROTOCOL: &str = "demo.v1";

type Body = Full<Bytes>;

/// What one instance's tasks share.
struct Ctx {
    name: Arc<str>,
    room: Arc<Room>,
    stop: Stop,
}

/// One instance. Its port is released while stopped and bound again on restart.
struct Instance {
    name: Arc<str>,
    addr: SocketAddr,
    /// `Some` while running; dropping the sender stops every task of the instance.
    running: Mutex<Option<watch::Sender<()>>>,
}

/// The backend instances of the demo, in start order.
pub struct Backends {
    room: Arc<Room>,
    instances: Vec<Instance>,
}

impl Backends {
    /// Starts one instance per name on 127.0.0.1, each on a free port.
    pub async fn start(names: &[&str]) -> Result<Backends, DemoError> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let at: Vec<_> = names.iter().map(|n| (*n, any)).collect();
        Backends::start_at(&at).await
    }

    /// Starts one instance per (name, address); port 0 picks a free port.
    pub async fn start_at(at: &[(&str, SocketAddr)]) -> Result<Backends, DemoError> {
        let room = Arc::new(Room::new());
        let mut instances = Vec::new();
        for &(name, wanted) in at {
            let (listener, addr) = bind(name, wanted).await?;
            let instance = Instance {
                name: Arc::from(name),
                addr,
                running: Mutex::new(None),
            };
            instance.launch(listener, &room);
            instances.push(instance);
        }
        Ok(Backends { room, instances })
    }

    /// The address of each instance, in start order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.instances.iter().map(|i| i.addr).collect()
    }

    /// The name of each instance (`app-1`...), in start order.
    pub fn names(&self) -> Vec<&str> {
        self.instances.iter().map(|i| &*i.name).collect()
    }

    pub fn is_running(&self, index: usize) -> bool {
        self.instances
            .get(index)
            .is_some_and(|i| lock(&i.running).is_some())
    }

    /// Stops an instance as a crash would: the port closes and every connection
    /// drops without a Close frame. Returns whether it was running.
    pub fn stop(&self, index: usize) -> bool {
        let Some(i) = self.instances.get(index) else {
            return false;
        };
        let was = lock(&i.running).take().is_some();
        if was {
            tracing::info!(backend = %i.name, addr = %i.addr, "demo backend stopped");
        }
        was
    }

    /// Starts a stopped instance again on its old port. A running one is left alone.
    pub async fn restart(&self, index: usize) -> Result<(), DemoError> {
        let Some(i) = self.instances.get(index) else {
            return Ok(());
        };
        if lock(&i.running).is_some() {
            return Ok(());
        }
        let (listener, _) = bind(&i.name, i.addr).await?;
        i.launch(listener, &self.room);
        tracing::info!(backend = %i.name, addr = %i.addr, "demo backend restarted");
        Ok(())
    }

    /// Stops every instance.
    pub fn stop_all(&self) {
        for i in &self.instances {
            lock(&i.running).take();
        }
    }
}

impl Instance {
    fn launch(&self, listener: TcpListener, room: &Arc<Room>) {
        let (tx, stop) = stop_signal();
        let ctx = Arc::new(Ctx {
            name: self.name.clone(),
            room: room.clone(),
            stop,
        });
        tokio::spawn(accept_loop(listener, ctx));
        *lock(&self.running) = Some(tx);
    }
}

async fn bind(name: &str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), DemoError> {
    let err = |source| DemoError::Backend {
        name: name.to_string(),
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>) {
    let mut stop = ctx.stop.clone();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::debug!(backend = %ctx.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.wait() => return,
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut stop = ctx.stop.clone();
            let service = {
                let ctx = ctx.clone();
                service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(handle(req, ctx)) }
                })
            };
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            // Dropping the connection future closes it: that is what "stop" means.
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(backend = %ctx.name, error = %e, "demo connection ended");
                },
                _ = stop.wait() => {}
            }
        });
    }
}

fn handle(req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    if wants_websocket(req.headers()) {
        return upgrade(req, ctx);
    }
    let mut resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => {
            let mut r = Response::new(Body::new(Bytes::from_static(PAGE.as_bytes())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        (&Method::GET, "/health") => text(StatusCode::OK, "ok\n"),
        (_, "/" | "/health") => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try GET / (chat page), GET /health, or WebSocket /echo, /chat, /ticker\n",
        ),
    };
    // Lets `curl -i` through the proxy show which instance answered.
    if let Ok(v) = HeaderValue::from_str(&ctx.name) {
        resp.headers_mut().insert("x-served-by", v);
    }
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `Connection: upgrade` alone is not enough; it must be an upgrade to websocket.
fn wants_websocket(h: &HeaderMap) -> bool {
    h.get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
        })
}

fn offers_subprotocol(h: &HeaderMap) -> bool {
    h.get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == SUBPROTOCOL))
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Echo,
    Chat,
    Ticker,
}

fn upgrade(req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    let endpoint = match req.uri().path() {
        "/echo" => Endpoint::Echo,
        "/chat" => Endpoint::Chat,
        "/ticker" => Endpoint::Ticker,
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "no WebSocket here: use /echo, /chat or /ticker\n",
            )
        }
    };
    let h = req.headers();
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        let mut r = text(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only\n");
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "bad accept key\n");
    };
    let subprotocol = offers_subprotocol(h);
    let who = match endpoint {
        Endpoint::Chat => ctx.room.name_for(req.uri().query()),
        _ => String::new(),
    };

    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let rh = resp.headers_mut();
    rh.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    rh.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    rh.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if subprotocol {
        rh.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }

    // hyper hands the connection over once this 101 has been written.
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(backend = %ctx.name, error = %e, "upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let mut stop = ctx.stop.clone();
        tokio::select! {
            _ = run(endpoint, ws, &ctx, who) => {}
            // Stopped: drop the socket without a Close frame, as a crash would.
            _ = stop.wait() => {}
        }
    });
    resp
}

async fn run(endpoint: Endpoint, ws: Ws, ctx: &Ctx, who: String) {
    match endpoint {
        Endpoint::Echo => endpoints::echo(ws).await,
        Endpoint::Chat => endpoints::chat(ws, &ctx.room, &ctx.name, who).await,
        Endpoint::Ticker => endpoints::ticker(ws).await,
    }
}
