//! One tunnel as HAR 1.2, the way Chrome DevTools exports a WebSocket: one entry
//! (the handshake: request and 101 response with their headers) whose
//! `_webSocketMessages` list the data messages captured (`type` send or receive,
//! `time` in seconds since the epoch, `opcode` 1 or 2, `data` as text or base64;
//! compressed messages inflated). HAR has no place for control frames, fragments or
//! close codes; the recording does.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{json, Value};

use super::redact::Redact;
use super::rfc3339;
use crate::event::{CapturedMessage, Dir, OpKind, TunnelInfo};

/// The HAR document of tunnel `t` with its captured `messages`; `tls` says whether
/// its listener is wss://.
pub fn har(t: &TunnelInfo, messages: &[CapturedMessage], tls: bool, redact: &Redact) -> Value {
    let headers = |list: Option<&crate::event::Headers>| -> Vec<Value> {
        list.map(|l| {
            redact
                .pairs(l)
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect()
        })
        .unwrap_or_default()
    };
    let hs = t.handshake.as_ref();
    let host = hs
        .and_then(|h| h.request_in.get("host"))
        .unwrap_or("localhost");
    let url = format!("{}://{host}{}", if tls { "wss" } else { "ws" }, t.path);
    let query: Vec<Value> = t
        .path
        .split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (name, value) = p.split_once('=').unwrap_or((p, ""));
                    json!({"name": name, "value": value})
                })
                .collect()
        })
        .unwrap_or_default();
    let http = if hs.is_some_and(|h| h.h2) {
        "HTTP/2"
    } else {
        "HTTP/1.1"
    };
    let ws_messages: Vec<Value> = messages.iter().filter_map(message).collect();
    let entry = json!({
        "startedDateTime": rfc3339(t.opened),
        "time": 0,
        "_resourceType": "websocket",
        "request": {
            "method": "GET",
            "url": url,
            "httpVersion": http,
            "cookies": [],
            "headers": headers(hs.map(|h| &h.request_in)),
            "queryString": query,
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": 101,
            "statusText": "Switching Protocols",
            "httpVersion": http,
            "cookies": [],
            "headers": headers(hs.map(|h| &h.response)),
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": 0,
        },
        "cache": {},
        "timings": {"send": 0, "wait": 0, "receive": 0},
        "_webSocketMessages": ws_messages,
    });
    json!({
        "log": {
            "version": "1.2",
            "creator": {"name": "tunnelscope", "version": env!("CARGO_PKG_VERSION")},
            "pages": [],
            "entries": [entry],
        }
    })
}

/// A data message as Chrome's `_webSocketMessages` has it; None for control frames.
fn message(m: &CapturedMessage) -> Option<Value> {
    let opcode = match m.kind {
        OpKind::Text => 1,
        OpKind::Binary => 2,
        _ => return None,
    };
    // What the application sent: the inflated payload of a compressed message.
    let payload = m.payload();
    let data = match (opcode, std::str::from_utf8(payload)) {
        (1, Ok(text)) => text.to_string(),
        _ => base64::engine::general_purpose::STANDARD.encode(payload),
    };
    Some(json!({
        "type": match m.dir {
            Dir::ClientToBackend => "send",
            Dir::BackendToClient => "receive",
        },
        "time": seconds(m.at),
        "opcode": opcode,
        "data": data,
    }))
}

fn seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
