//! `GET /api/events`: a WebSocket carrying every bus event as one JSON text message
//! (see `events`), after a first `snapshot` message.
//!
//! The stream has its own bus receiver, so it can never slow the proxy: if its
//! client reads too slowly the receiver lags, and the client gets a `lagged`
//! message with the number of events it missed, then a fresh `snapshot`. A client
//! that stops reading altogether (one message not taken within [`SEND_TIMEOUT`]) is
//! dropped with Close 1008. Messages from the client are read (for Close and Ping)
//! and otherwise ignored.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use http::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, Instrument};

use crate::event::Event;

use super::events::Message;
use super::json::State;
use super::reply::{self, Body};
use super::Ctx;

/// How long one message may wait for a client that does not read.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients only send control frames; anything big is refused.
const MAX_INCOMING: usize = 64 * 1024;

/// Checks the upgrade request, answers 101, and streams on the upgraded connection.
pub(crate) fn upgrade(req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    let headers = req.headers();
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(UPGRADE, "websocket") || !has_token(CONNECTION, "upgrade") {
        let mut resp = reply::error(
            StatusCode::UPGRADE_REQUIRED,
            "/api/events is a WebSocket: send Upgrade: websocket",
        );
        resp.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        return resp;
    }
    if headers.get(SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return reply::error(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13");
    }
    let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
        return reply::error(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing");
    };
    let accept = derive_accept_key(key.as_bytes());
    // Subscribe now, before the snapshot is taken, so nothing falls between them.
    let events = (ctx.shared.api.subscribe)();
    let span = tracing::debug_span!("events", peer = %ctx.peer);
    tokio::spawn(
        async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => run(TokioIo::new(upgraded), events, ctx).await,
                Err(e) => debug!(error = %e, "event stream upgrade failed"),
            }
        }
        .instrument(span),
    );
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// Why the stream ended.
enum End {
    /// The client went away, closed, or failed.
    Client,
    /// The client did not take a message in time.
    TooSlow,
    /// The proxy or the admin API is stopping.
    Stopping,
}

async fn run<S>(io: S, mut events: broadcast::Receiver<Event>, ctx: Arc<Ctx>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_INCOMING))
        .max_frame_size(Some(MAX_INCOMING));
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let mut stop = ctx.shared.stop.subscribe();
    let end: Result<(), End> = async {
        send(&mut ws, snapshot(&ctx)).await?;
        loop {
            let text = tokio::select! {
                _ = super::stopped(&mut stop) => return Err(End::Stopping),
                incoming = ws.next() => match incoming {
                    Some(Ok(_)) => continue,
                    None | Some(Err(_)) => return Err(End::Client),
                },
                event = events.recv() => match event {
                    Ok(event) => match Message::from_event(&event, &ctx.shared.api.redact) {
                        Some(m) if changes_the_set(&event) => {
                            // Backends and listeners may have come and gone: the state
                            // follows, for clients that mirror it (`top`).
                            send(&mut ws, m.to_json()).await?;
                            snapshot(&ctx)
                        }
                        Some(m) => m.to_json(),
                        None => continue,
                    },
                    Err(RecvError::Lagged(missed)) => {
                        ctx.shared.lagged.fetch_add(missed, std::sync::atomic::Ordering::Relaxed);
                        send(&mut ws, Message::Lagged { missed }.to_json()).await?;
                        snapshot(&ctx)
                    }
                    Err(RecvError::Closed) => return Err(End::Stopping),
                },
            };
            send(&mut ws, text).await?;
        }
    }
    .await;
    let close = |code, reason: &'static str| CloseFrame {
        code,
        reason: reason.into(),
    };
    let frame = match end {
        Ok(()) | Err(End::Client) => return,
        Err(End::TooSlow) => close(CloseCode::Policy, "too slow: events were not read"),
        Err(End::Stopping) => close(CloseCode::Away, "going away"),
    };
    debug!(code = %frame.code, "closing event stream");
    // A client that does not read may not take the Close either: bounded.
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await;
}

/// Whether `event` says the backends or listeners changed in a way no other event
/// carries: a reload, or a DNS answer (backends joined or left).
fn changes_the_set(event: &Event) -> bool {
    match event {
        Event::ConfigReloaded(_) => true,
        Event::Resolved(r) => r.error.is_none(),
        _ => false,
    }
}

fn snapshot(ctx: &Ctx) -> String {
    let snapshot = (ctx.shared.api.snapshot)();
    let totals = ctx.shared.totals();
    let name = ctx.shared.api.name.as_deref();
    Message::Snapshot(State::new(&snapshot, totals, SystemTime::now(), name)).to_json()
}

async fn send<S>(ws: &mut WebSocketStream<S>, text: String) -> Result<(), End>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(SEND_TIMEOUT, ws.send(WsMessage::text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Client),
        Err(_) => Err(End::TooSlow),
    }
}
