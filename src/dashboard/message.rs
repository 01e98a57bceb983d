//! A captured message as the full view shows it: its payload (inflated when it was
//! compressed), and that payload as text lines, pretty-printed JSON, decoded by one of
//! the [`Decoder`]s, or a hex dump. Pure functions of the bytes, so the views are
//! tested without a terminal.

use crate::event::{CapturedMessage, Dir, OpKind};
use crate::inspect::decode::{self, Decoder};

/// How the full view shows a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Text,
    Json,
    Decoded(Decoder),
    Hex,
}

impl View {
    pub fn name(self) -> &'static str {
        match self {
            View::Text => "text",
            View::Json => "json",
            View::Decoded(d) => d.name(),
            View::Hex => "hex",
        }
    }

    /// The views that apply to `m`, in Tab order: text and JSON, each decoder that
    /// reads it, hex.
    pub fn all_for(m: &CapturedMessage) -> Vec<View> {
        let (p, binary) = (m.payload(), m.kind == OpKind::Binary);
        let mut views = vec![View::Text, View::Json];
        views.extend(
            Decoder::ALL
                .into_iter()
                .filter(|d| d.decode(p, binary).is_some())
                .map(View::Decoded),
        );
        views.push(View::Hex);
        views
    }

    /// The view after this one for `m` (Tab).
    pub fn next(self, m: &CapturedMessage) -> View {
        let views = View::all_for(m);
        let i = views.iter().position(|v| *v == self).unwrap_or(0);
        views[(i + 1) % views.len()]
    }

    /// The view a message opens in: a decoder's when one recognises the framing, JSON
    /// when it parses, text when it is UTF-8, else hex.
    pub fn best_for(m: &CapturedMessage) -> View {
        let p = m.payload();
        if let Some((d, _)) = decode::detect(p, m.kind == OpKind::Binary) {
            View::Decoded(d)
        } else if json_lines(p).is_some() {
            View::Json
        } else if m.kind != OpKind::Binary && std::str::from_utf8(p).is_ok() {
            View::Text
        } else {
            View::Hex
        }
    }
}

/// Which message: direction and its per-direction number.
pub type MessageKey = (Dir, u64);

pub fn key(m: &CapturedMessage) -> MessageKey {
    (m.dir, m.seq)
}

/// The payload as text lines (invalid UTF-8 shown as U+FFFD), tabs expanded.
pub fn text_lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| l.replace('\t', "    "))
        .collect()
}

/// The payload pretty-printed as JSON, when it is JSON (an object or array).
pub fn json_lines(bytes: &[u8]) -> Option<Vec<String>> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' && *first != b'[' {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let pretty = serde_json::to_string_pretty(&value).ok()?;
    Some(pretty.lines().map(str::to_owned).collect())
}

/// A hex dump: offset, 16 bytes in hex (two groups of 8), and the printable ASCII.
pub fn hex_lines(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, row)| {
            let mut hex = String::with_capacity(49);
            for (j, b) in row.iter().enumerate() {
                if j == 8 {
                    hex.push(' ');
                }
                hex.push_str(&format!("{b:02x} "));
            }
            let ascii: String = row
                .iter()
                .map(|&b| {
                    if (0x20..0x7f).contains(&b) {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect();
            format!("{:08x}  {hex:<49} {ascii}", i * 16)
        })
        .collect()
}

/// The lines of `view` (JSON and decoders fall back to text when they do not apply).
pub fn lines(m: &CapturedMessage, view: View) -> Vec<String> {
    let p = m.payload();
    match view {
        View::Text => text_lines(p),
        View::Json => json_lines(p).unwrap_or_else(|| text_lines(p)),
        View::Decoded(d) => d
            .decode(p, m.kind == OpKind::Binary)
            .map_or_else(|| text_lines(p), |decoded| decoded.lines()),
        View::Hex => hex_lines(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_printed_only_when_it_parses() {
        let lines = json_lines(br#"{"order":{"id":42,"items":[1,2]}}"#).unwrap();
        assert_eq!(lines[0], "{");
        assert!(
            lines.iter().any(|l| l.trim() == r#""id": 42,"#),
            "{lines:?}"
        );
        assert!(json_lines(b"hello").is_none());
        assert!(json_lines(b"{ not json").is_none());
        assert!(json_lines(b"42").is_none(), "only objects and arrays");
        // Keys stay in the order the application wrote them.
        let lines = json_lines(br#"{"type":"msg","from":"ada","a":1}"#).unwrap();
        assert_eq!(lines[1].trim(), r#""type": "msg","#, "{lines:?}");
    }

    #[test]
    fn the_hex_dump_has_offsets_two_groups_and_ascii() {
        let bytes: Vec<u8> = (0x41..0x41 + 20).collect();
        let lines = hex_lines(&bytes);
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("00000000  41 42 43 44 45 46 47 48  49 4a"),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with(" ABCDEFGHIJKLMNOP"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("00000010  51 52 53 54 "),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with(" QRST"));
        assert_eq!(
            hex_lines(&[0, 0x7f])[0].trim_end().rsplit(' ').next(),
            Some("..")
        );
    }
}
