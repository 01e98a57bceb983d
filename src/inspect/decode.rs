//! Decoders for what applications put inside WebSocket messages: Socket.IO over
//! Engine.IO, SignalR (JSON and MessagePack hub protocols), MessagePack and CBOR.
//! Each turns a payload into labelled JSON values the views can pretty-print, or says
//! it does not apply. Pure functions of the bytes; they never panic on hostile input
//! and nest at most [`MAX_DEPTH`] deep.

use std::io::Cursor;

use serde_json::{Map, Number, Value};

/// How deep decoded structures may nest before a payload counts as not decodable.
pub const MAX_DEPTH: usize = 64;

/// The record separator that ends every SignalR JSON message.
const RECORD_SEPARATOR: u8 = 0x1e;

/// A framing the message view can decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decoder {
    SocketIo,
    SignalR,
    MsgPack,
    Cbor,
}

impl Decoder {
    /// In the order detection tries them: the strict framings before the generic ones.
    pub const ALL: [Decoder; 4] = [
        Decoder::SignalR,
        Decoder::SocketIo,
        Decoder::MsgPack,
        Decoder::Cbor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Decoder::SocketIo => "socket.io",
            Decoder::SignalR => "signalr",
            Decoder::MsgPack => "msgpack",
            Decoder::Cbor => "cbor",
        }
    }

    /// Decodes `payload` (`binary`: it came in a Binary message), or None when this
    /// framing does not describe it.
    pub fn decode(self, payload: &[u8], binary: bool) -> Option<Decoded> {
        match self {
            Decoder::SocketIo if !binary => socket_io(std::str::from_utf8(payload).ok()?),
            Decoder::SignalR if binary => signalr_msgpack(payload),
            Decoder::SignalR => signalr_json(payload),
            Decoder::MsgPack => msgpack(payload).map(|v| Decoded::one("MessagePack", v)),
            Decoder::Cbor => cbor(payload).map(|v| Decoded::one("CBOR", v)),
            Decoder::SocketIo => None,
        }
    }
}

/// The first decoder that reads `payload` as its own: what the view opens with.
/// MessagePack and CBOR only claim binary messages holding a map or an array, since
/// almost any short byte string is some valid scalar in both.
pub fn detect(payload: &[u8], binary: bool) -> Option<(Decoder, Decoded)> {
    Decoder::ALL.into_iter().find_map(|d| {
        let decoded = d.decode(payload, binary)?;
        let generic = matches!(d, Decoder::MsgPack | Decoder::Cbor);
        let structured = decoded
            .parts
            .iter()
            .all(|(_, v)| v.is_object() || v.is_array());
        (!generic || (binary && structured)).then_some((d, decoded))
    })
}

/// A decoded payload: one or more parts (SignalR batches several records in one
/// message), each a label saying what it is and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub parts: Vec<(String, Value)>,
}

impl Decoded {
    fn one(label: impl Into<String>, value: Value) -> Self {
        Decoded {
            parts: vec![(label.into(), value)],
        }
    }

    /// The parts as lines: each label, then its value pretty-printed.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (label, value) in &self.parts {
            lines.push(format!("── {label}"));
            match serde_json::to_string_pretty(value) {
                Ok(p) if !value.is_null() => lines.extend(p.lines().map(str::to_owned)),
                _ => {}
            }
        }
        lines
    }
}

const ENGINE_IO: [&str; 7] = [
    "open", "close", "ping", "pong", "message", "upgrade", "noop",
];
const SOCKET_IO: [&str; 7] = [
    "CONNECT",
    "DISCONNECT",
    "EVENT",
    "ACK",
    "CONNECT_ERROR",
    "BINARY_EVENT",
    "BINARY_ACK",
];

/// An Engine.IO packet (`0{…}` open, `2`/`3` ping and pong, `4…` message), and a
/// Socket.IO packet inside a message: `42/chat,17["event",{…}]`.
fn socket_io(text: &str) -> Option<Decoded> {
    let mut chars = text.chars();
    let engine = chars.next()?.to_digit(10).filter(|d| *d < 7)? as usize;
    let rest = chars.as_str();
    let label = format!("Engine.IO {}", ENGINE_IO[engine]);
    match engine {
        0 => {
            let v = json(rest)?;
            v.is_object().then(|| Decoded::one(label, v))
        }
        2 | 3 if rest.is_empty() || rest == "probe" => Some(Decoded::one(
            format!("{label}{}", if rest.is_empty() { "" } else { " probe" }),
            Value::Null,
        )),
        1 | 5 | 6 if rest.is_empty() => Some(Decoded::one(label, Value::Null)),
        4 => socket_io_packet(rest),
        _ => None,
    }
}

fn socket_io_packet(text: &str) -> Option<Decoded> {
    let kind = text.chars().next()?.to_digit(10).filter(|d| *d < 7)? as usize;
    let mut rest = &text[1..];
    let mut label = format!("Socket.IO {}", SOCKET_IO[kind]);
    if kind == 5 || kind == 6 {
        let (n, after) = rest.split_once('-')?;
        n.parse::<u32>().ok()?;
        label.push_str(&format!(" · {n} binary attachments"));
        rest = after;
    }
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        label.push_str(&format!(" · namespace {}", &rest[..end]));
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits > 0 {
        label.push_str(&format!(" · ack {}", &rest[..digits]));
        rest = &rest[digits..];
    }
    let value = if rest.is_empty() {
        Value::Null
    } else {
        json(rest)?
    };
    let ok = match kind {
        0 => value.is_null() || value.is_object(),
        1 => value.is_null(),
        2 | 5 => value
            .as_array()
            .and_then(|a| a.first())
            .is_some_and(Value::is_string),
        3 | 6 => value.is_array(),
        _ => value.is_object() || value.is_string(),
    };
    if let Some(Value::String(event)) = value.as_array().and_then(|a| a.first()) {
        if kind == 2 || kind == 5 {
            label.push_str(&format!(" {event:?}"));
        }
    }
    ok.then(|| Decoded::one(label, value))
}

const SIGNALR: [&str; 7] = [
    "Invocation",
    "StreamItem",
    "Completion",
    "StreamInvocation",
    "CancelInvocation",
    "Ping",
    "Close",
];

/// SignalR's JSON hub protocol: JSON objects, each ended by 0x1E.
fn signalr_json(payload: &[u8]) -> Option<Decoded> {
    let body = payload.strip_suffix(&[RECORD_SEPARATOR])?;
    let mut parts = Vec::new();
    for record in body.split(|b| *b == RECORD_SEPARATOR) {
        let value: Value = serde_json::from_slice(record).ok()?;
        let object = value.as_object()?;
        let label = match object.get("type").and_then(Value::as_u64) {
            Some(t @ 1..=7) => {
                let mut label = format!("SignalR {}", SIGNALR[t as usize - 1]);
                if let Some(Value::String(target)) = object.get("target") {
                    label.push_str(&format!(" {target:?}"));
                }
                if let Some(Value::String(id)) = object.get("invocationId") {
                    label.push_str(&format!(" · invocation {id}"));
                }
                label
            }
            Some(_) => return None,
            None if object.contains_key("protocol") => "SignalR handshake request".into(),
            None if object.is_empty() || object.contains_key("error") => {
                "SignalR handshake response".into()
            }
            None => return None,
        };
        parts.push((label, value));
    }
    Some(Decoded { parts })
}

/// SignalR's MessagePack hub protocol: each record a varint length, then a
/// MessagePack array whose first element is the message type.
fn signalr_msgpack(payload: &[u8]) -> Option<Decoded> {
    let mut rest = payload;
    let mut parts = Vec::new();
    while !rest.is_empty() {
        let (len, used) = varint(rest)?;
        let record = rest.get(used..used.checked_add(len)?)?;
        rest = &rest[used + len..];
        let value = msgpack(record)?;
        let t = value
            .as_array()?
            .first()?
            .as_u64()
            .filter(|t| (1..=7).contains(t))?;
        parts.push((format!("SignalR {}", SIGNALR[t as usize - 1]), value));
    }
    (!parts.is_empty()).then_some(Decoded { parts })
}

/// A little-endian base-128 length of at most 5 bytes, and the bytes it took.
fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut len = 0usize;
    for (i, b) in bytes.iter().take(5).enumerate() {
        len |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Some((len, i + 1));
        }
    }
    None
}

fn json(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok()
}

/// One MessagePack value filling all of `payload`.
fn msgpack(payload: &[u8]) -> Option<Value> {
    let mut cursor = Cursor::new(payload);
    let value = rmpv::decode::read_value_with_max_depth(&mut cursor, MAX_DEPTH).ok()?;
    (cursor.position() as usize == payload.len()).then(|| from_msgpack(value))
}

fn from_msgpack(v: rmpv::Value) -> Value {
    use rmpv::Value as M;
    match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(n), _) => n.into(),
            (_, Some(n)) => n.into(),
            _ => Value::Null,
        },
        M::F32(f) => float(f as f64),
        M::F64(f) => float(f),
        M::String(s) => match s.into_str() {
            Some(s) => Value::String(s),
            None => Value::String("<invalid UTF-8 string>".into()),
        },
        M::Binary(b) => bytes(&b),
        M::Array(items) => Value::Array(items.into_iter().map(from_msgpack).collect()),
        M::Map(entries) => object(
            entries
                .into_iter()
                .map(|(k, v)| (from_msgpack(k), from_msgpack(v))),
        ),
        M::Ext(t, data) => {
            let mut m = Map::new();
            m.insert("$ext".into(), t.into());
            m.insert("data".into(), bytes(&data));
            Value::Object(m)
        }
    }
}

/// One CBOR item filling all of `payload`.
fn cbor(payload: &[u8]) -> Option<Value> {
    let mut rest = payload;
    let value: ciborium::Value =
        ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH).ok()?;
    rest.is_empty().then(|| from_cbor(value))
}

fn from_cbor(v: ciborium::Value) -> Value {
    use ciborium::Value as C;
    match v {
        C::Null => Value::Null,
        C::Bool(b) => Value::Bool(b),
        C::Integer(i) => {
            let n = i128::from(i);
            match (i64::try_from(n), u64::try_from(n)) {
                (Ok(n), _) => n.into(),
                (_, Ok(n)) => n.into(),
                _ => Value::String(n.to_string()),
            }
        }
        C::Float(f) => float(f),
        C::Text(s) => Value::String(s),
        C::Bytes(b) => bytes(&b),
        C::Array(items) => Value::Array(items.into_iter().map(from_cbor).collect()),
        C::Map(entries) => object(
            entries
                .into_iter()
                .map(|(k, v)| (from_cbor(k), from_cbor(v))),
        ),
        C::Tag(tag, inner) => {
            let mut m = Map::new();
            m.insert("$tag".into(), tag.into());
            m.insert("value".into(), from_cbor(*inner));
            Value::Object(m)
        }
        _ => Value::Null,
    }
}

/// A map as a JSON object: string keys as they are, other keys written as JSON.
fn object(entries: impl Iterator<Item = (Value, Value)>) -> Value {
    Value::Object(
        entries
            .map(|(k, v)| match k {
                Value::String(s) => (s, v),
                other => (other.to_string(), v),
            })
            .collect(),
    )
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or_else(|| Value::String(f.to_string()), Value::Number)
}

/// Bytes as `"<3 bytes: 0a0b0c>"`, the hex cut after 32 bytes.
fn bytes(b: &[u8]) -> Value {
    let hex: String = b.iter().take(32).map(|x| format!("{x:02x}")).collect();
    let more = if b.len() > 32 { "…" } else { "" };
    Value::String(format!("<{} bytes: {hex}{more}>", b.len()))
}

#[cfg(test)]
mod tests;
