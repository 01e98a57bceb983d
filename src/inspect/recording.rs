//! A tunnel as a JSON Lines recording, full fidelity where HAR cannot go: a `start`
//! line (the tunnel), a `handshake` line (the request as the client sent it and as
//! the backend got it, the 101), then one `frame` line per frame in the order they
//! went: time, direction, opcode, FIN and RSV bits, length, masked or not, injected
//! or not, the payload (`text` when it is valid UTF-8 in an uncompressed text or
//! close frame, else `base64`; cut at the capture's cap and marked `truncated`),
//! the close code and reason of a Close, and, on the last frame of a compressed
//! message, the message inflated. An `end` line says how the tunnel ended, when it
//! has.
//!
//! [`read`] parses one back for `tunnelscope replay`; unknown fields and line types
//! are skipped, so later versions stay readable.

use std::time::SystemTime;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::redact::Redact;
use super::rfc3339;
use crate::event::{CapturedMessage, Dir, OpKind, TunnelInfo};

/// The format's version, in the `start` line.
pub const VERSION: u32 = 1;

/// One line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Start {
        version: u32,
        id: u64,
        opened: String,
        client: String,
        listener: String,
        route: String,
        path: String,
        backend: Option<String>,
    },
    Handshake {
        /// The request as the client sent it.
        request: Vec<(String, String)>,
        /// The request as the backend got it.
        request_to_backend: Vec<(String, String)>,
        /// The backend's 101.
        response: Vec<(String, String)>,
        subprotocol: Option<String>,
        extensions: Option<String>,
    },
    Frame(Frame),
    /// Messages capture let go before the recorder wrote them.
    Gap {
        dir: String,
        missed: u64,
    },
    End {
        side: String,
        code: Option<u16>,
        reason: String,
    },
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Frame {
    pub at: String,
    /// `c2b` (client to backend) or `b2c`.
    pub dir: String,
    pub opcode: u8,
    pub fin: bool,
    pub rsv1: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub rsv2: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub rsv3: bool,
    /// Payload bytes on the wire.
    pub len: u64,
    pub masked: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub injected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// Only the first bytes of the payload are here.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    /// This line stands for the message's last N frames and carries their
    /// payloads (a message in more than 256 frames keeps the others' records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames_omitted: Option<u32>,
    /// The last frame of a compressed message: the whole message inflated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inflated_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inflated_base64: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How a tunnel ended, for the `end` line.
#[derive(Debug, Clone)]
pub struct Ended {
    pub side: String,
    pub code: Option<u16>,
    pub reason: String,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn dir_code(dir: Dir) -> &'static str {
    match dir {
        Dir::ClientToBackend => "c2b",
        Dir::BackendToClient => "b2c",
    }
}

/// The `start` and `handshake` lines of tunnel `t`, header values redacted.
pub fn head(t: &TunnelInfo, redact: &Redact) -> Vec<Line> {
    let pairs = |h: &crate::event::Headers| -> Vec<(String, String)> {
        redact
            .pairs(h)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.into_owned()))
            .collect()
    };
    let mut lines = vec![Line::Start {
        version: VERSION,
        id: t.id,
        opened: rfc3339(t.opened),
        client: t.client.to_string(),
        listener: t.listener.to_string(),
        route: t.route.to_string(),
        path: t.path.clone(),
        backend: t.backend.as_ref().map(ToString::to_string),
    }];
    if let Some(h) = &t.handshake {
        lines.push(Line::Handshake {
            request: pairs(&h.request_in),
            request_to_backend: pairs(&h.request_out),
            response: pairs(&h.response),
            subprotocol: h.subprotocol.clone(),
            extensions: h.extensions.clone(),
        });
    }
    lines
}

/// The `frame` lines of the captured `messages` (any order), in the order the
/// frames went.
pub fn frames(messages: &[CapturedMessage]) -> Vec<Line> {
    let mut out: Vec<((SystemTime, u64), Frame)> = Vec::new();
    for m in messages {
        let mut offset = 0usize;
        let mut these: Vec<((SystemTime, u64), Frame)> = Vec::new();
        let mut describe = |p: &crate::event::CapturedFrame, offset: &mut usize| {
            let len = usize::try_from(p.len).unwrap_or(usize::MAX);
            let kept = m.data.get(*offset..).unwrap_or(&[]);
            let payload = &kept[..len.min(kept.len())];
            *offset = offset.saturating_add(len);
            let mut f = Frame {
                at: rfc3339(p.at),
                dir: dir_code(m.dir).into(),
                opcode: p.opcode,
                fin: p.fin,
                rsv1: p.rsv & 0b100 != 0,
                rsv2: p.rsv & 0b010 != 0,
                rsv3: p.rsv & 0b001 != 0,
                len: p.len,
                masked: p.masked,
                injected: m.injected,
                truncated: payload.len() < len,
                ..Frame::default()
            };
            set_payload(&mut f, m, payload);
            // Frames read in one chunk share a time: their numbers keep the order.
            these.push(((p.at, p.seq), f));
        };
        for p in m.frame_list() {
            describe(p, &mut offset);
        }
        // A message in more frames than are kept: the rest as one last frame.
        let kept = 1 + m.more.len() as u32;
        if m.frames > kept {
            let last = m.more.last().unwrap_or(&m.first);
            let written: u64 = m.frame_list().map(|p| p.len).sum();
            let rest = crate::event::CapturedFrame {
                seq: last.seq + 1,
                len: m.len.saturating_sub(written),
                fin: true,
                rsv: 0,
                opcode: 0,
                ..*last
            };
            describe(&rest, &mut offset);
            if let Some((_, f)) = these.last_mut() {
                f.frames_omitted = Some(m.frames - kept);
            }
        }
        if let (Some((_, f)), Some(Ok(inflated))) = (these.last_mut(), &m.inflated) {
            if f.fin {
                match std::str::from_utf8(inflated) {
                    Ok(t) if m.kind == OpKind::Text => f.inflated_text = Some(t.into()),
                    _ => f.inflated_base64 = Some(b64(inflated)),
                }
            }
        }
        out.extend(these);
    }
    out.sort_by_key(|(key, _)| *key);
    out.into_iter().map(|(_, f)| Line::Frame(f)).collect()
}

/// A frame's payload as text (an uncompressed text message's, when valid UTF-8)
/// or base64, and a Close's code and reason.
fn set_payload(f: &mut Frame, m: &CapturedMessage, payload: &[u8]) {
    if m.kind == OpKind::Close {
        if payload.len() >= 2 {
            f.close_code = Some(u16::from_be_bytes([payload[0], payload[1]]));
            f.close_reason = Some(String::from_utf8_lossy(&payload[2..]).into_owned());
        }
        f.base64 = Some(b64(payload));
        return;
    }
    let textual = m.kind == OpKind::Text && !m.compressed;
    match std::str::from_utf8(payload) {
        // Fragments of a text message may split a character: base64 then.
        Ok(text) if textual => f.text = Some(text.to_string()),
        _ => f.base64 = Some(b64(payload)),
    }
}

/// A whole recording as JSON Lines.
pub fn write(
    t: &TunnelInfo,
    messages: &[CapturedMessage],
    ended: Option<&Ended>,
    redact: &Redact,
) -> String {
    let mut lines = head(t, redact);
    lines.extend(frames(messages));
    if let Some(e) = ended {
        lines.push(Line::End {
            side: e.side.clone(),
            code: e.code,
            reason: e.reason.clone(),
        });
    }
    lines.iter().map(to_line).collect()
}

/// One line of JSON and its newline.
pub fn to_line(line: &Line) -> String {
    let mut s = serde_json::to_string(line).expect("a recording line serializes");
    s.push('\n');
    s
}

/// A recording read back.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub path: String,
    pub subprotocol: Option<String>,
    pub frames: Vec<Frame>,
}

/// A whole message of a recording: its direction, opcode, when its first frame
/// went (as recorded), and its payload (inflated when it was compressed and the
/// recording has it inflated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedMessage {
    pub dir: Dir,
    pub opcode: u8,
    pub at: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub payload: Vec<u8>,
    /// Part of the payload was not recorded.
    pub truncated: bool,
}

/// Parses a recording; a line that is not JSON is an error naming its number.
pub fn read(text: &str) -> Result<Recording, String> {
    let mut r = Recording::default();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| format!("line {}: {e}", i + 1))?;
        let Ok(line) = serde_json::from_value::<Line>(value) else {
            continue; // A line type from a later version.
        };
        match line {
            Line::Start { path, .. } => r.path = path,
            Line::Handshake { subprotocol, .. } => r.subprotocol = subprotocol,
            Line::Frame(f) => r.frames.push(f),
            Line::End { .. } | Line::Gap { .. } => {}
        }
    }
    Ok(r)
}

impl Frame {
    pub fn dir(&self) -> Dir {
        if self.dir == "b2c" {
            Dir::BackendToClient
        } else {
            Dir::ClientToBackend
        }
    }

    /// The payload as recorded.
    pub fn payload(&self) -> Vec<u8> {
        match (&self.text, &self.base64) {
            (Some(t), _) => t.as_bytes().to_vec(),
            (_, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

impl Recording {
    /// The data messages, reassembled from their frames, in order (control frames
    /// left out).
    pub fn messages(&self) -> Vec<RecordedMessage> {
        let mut out = Vec::new();
        let mut open: [Option<RecordedMessage>; 2] = [None, None];
        for f in &self.frames {
            let i = match f.dir() {
                Dir::ClientToBackend => 0,
                Dir::BackendToClient => 1,
            };
            // Control frames are not replayed; what an operator injected toward the
            // client is not an answer the backend gave.
            if f.opcode >= 8 || (f.injected && f.dir() == Dir::BackendToClient) {
                continue;
            }
            let m = open[i].get_or_insert_with(|| RecordedMessage {
                dir: f.dir(),
                opcode: f.opcode,
                at: chrono::DateTime::parse_from_rfc3339(&f.at).ok(),
                payload: Vec::new(),
                truncated: false,
            });
            m.payload.extend(f.payload());
            m.truncated |= f.truncated;
            if f.fin {
                let mut m = open[i].take().expect("a message is open");
                let inflated = match (&f.inflated_text, &f.inflated_base64) {
                    (Some(t), _) => Some(t.as_bytes().to_vec()),
                    (_, Some(b)) => base64::engine::general_purpose::STANDARD.decode(b).ok(),
                    _ => None,
                };
                if let Some(p) = inflated {
                    m.payload = p;
                }
                out.push(m);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
