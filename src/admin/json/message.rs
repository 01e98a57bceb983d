//! A captured whole message as `GET /api/tunnels/{id}/messages` serves it, and a
//! held direction as tunnels list it.

use serde::Serialize;

use super::rfc3339;

/// A captured whole message: `seq` (per direction), `at`, `direction`, `type`
/// (`text`, `binary`, `close`, `ping`, `pong`, or `continuation` for one whose start
/// was not seen), `compressed` (permessage-deflate; the bytes are as sent),
/// `length` (payload bytes on the wire), `frames`, `truncated`, and the payload as
/// `text` (valid UTF-8, not compressed) or else `base64`.
#[derive(Serialize)]
pub struct Message<'a> {
    pub seq: u64,
    pub at: String,
    pub direction: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub compressed: bool,
    pub length: u64,
    pub frames: u32,
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// Compressed messages: the inflated length, and the inflated payload as
    /// `inflated_text` (UTF-8 text messages) or `inflated_base64`, or why it could
    /// not be inflated (`inflate_error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inflated_length: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inflated_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inflated_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inflate_error: Option<&'a str>,
    /// Sent by the proxy on an operator's request, not by the peer.
    pub injected: bool,
}

impl<'a> Message<'a> {
    pub fn new(m: &'a crate::event::CapturedMessage) -> Message<'a> {
        use crate::event::OpKind;
        use base64::Engine;
        let textual = m.kind == OpKind::Text && !m.compressed;
        let text = textual.then(|| std::str::from_utf8(&m.data).ok()).flatten();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let inflated = m.inflated.as_ref().and_then(|r| r.as_ref().ok());
        let inflated_text = inflated
            .filter(|_| m.kind == OpKind::Text)
            .and_then(|b| std::str::from_utf8(b).ok());
        Message {
            seq: m.seq,
            at: rfc3339(m.at),
            direction: super::dir_name(m.dir),
            kind: match m.kind {
                OpKind::Text => "text",
                OpKind::Binary => "binary",
                OpKind::Close => "close",
                OpKind::Ping => "ping",
                OpKind::Pong => "pong",
                OpKind::Continuation | OpKind::Reserved => "continuation",
            },
            compressed: m.compressed,
            length: m.len,
            frames: m.frames,
            truncated: m.truncated,
            text,
            base64: text.is_none().then(|| b64(&m.data)),
            inflated_length: m.inflated.is_some().then_some(m.inflated_len),
            inflated_text,
            inflated_base64: inflated.filter(|_| inflated_text.is_none()).map(|b| b64(b)),
            inflate_error: m
                .inflated
                .as_ref()
                .and_then(|r| r.as_ref().err())
                .map(String::as_str),
            injected: m.injected,
        }
    }
}

/// A direction an operator holds: since when, and what waits unread in the socket
/// (`waiting_bytes` null when it cannot be seen: HTTP/2 streams; `waiting_frames`
/// null when encrypted; `at_least`: the look ahead was cut at 64 KiB).
#[derive(Serialize)]
pub struct Hold {
    pub direction: &'static str,
    pub since: String,
    pub waiting_bytes: Option<u64>,
    pub waiting_frames: Option<u64>,
    pub at_least: bool,
    pub encrypted: bool,
}

impl Hold {
    pub fn new(h: &crate::event::HoldState) -> Hold {
        Hold {
            direction: super::dir_name(h.dir),
            since: rfc3339(h.since),
            waiting_bytes: h.waiting_bytes,
            waiting_frames: h.waiting_frames,
            at_least: h.at_least,
            encrypted: h.encrypted,
        }
    }
}

/// A message a search found: where (`tunnel`, `direction`, `seq`), when, its
/// `type`, and a `snippet` around the match.
#[derive(Serialize)]
pub struct Hit {
    pub tunnel: u64,
    pub direction: &'static str,
    pub seq: u64,
    pub at: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub snippet: String,
}

impl Hit {
    pub fn new(h: &crate::event::SearchHit) -> Hit {
        Hit {
            tunnel: h.tunnel,
            direction: super::dir_name(h.dir),
            seq: h.seq,
            at: rfc3339(h.at),
            kind: h.kind.name(),
            snippet: h.snippet.clone(),
        }
    }
}
