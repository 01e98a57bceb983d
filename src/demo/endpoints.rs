//! What the demo backends do once a WebSocket is open: `/echo`, the shared `/chat`
//! room, and the `/ticker` feed. Kept apart from the HTTP side in [`super::backends`]
//! so each reads on its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::Rng;

/// How often `/ticker` pushes an update.
pub const TICK: Duration = Duration::from_millis(200);
/// Longest chat text relayed; keeps a pasted novel from flooding every page.
const MAX_CHAT_TEXT: usize = 1000;

/// A server-side WebSocket on a connection hyper has upgraded.
pub(crate) type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The chat room every instance shares. A member that falls behind skips lines
/// (broadcast lag) instead of slowing the room down.
pub(crate) struct Room {
    tx: broadcast::Sender<Utf8Bytes>,
    guests: AtomicU64,
}

impl Room {
    pub(crate) fn new() -> Room {
        Room {
            tx: broadcast::channel(256).0,
            guests: AtomicU64::new(1),
        }
    }

    fn say(&self, line: String) {
        // No members is normal.
        let _ = self.tx.send(line.into());
    }

    /// `name=` from the query if it is short and tame, else `guest-N`.
    pub(crate) fn name_for(&self, query: Option<&str>) -> String {
        let given = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("name="))
            .filter(|n| {
                (1..=24).contains(&n.len())
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            });
        match given {
            Some(n) => n.to_string(),
            None => format!("guest-{}", self.guests.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

/// Pings are answered by tungstenite while reading; only data comes back here.
pub(crate) async fn echo(mut ws: Ws) {
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// One member of the room, served by `backend`, until its connection ends.
pub(crate) async fn chat(mut ws: Ws, room: &Room, backend: &str, who: String) {
    // Subscribe before announcing, so the newcomer sees its own join.
    let mut lines = room.tx.subscribe();
    let welcome = chat_json(
        "welcome",
        &who,
        backend,
        &format!("you are {who}, served by {backend}"),
    );
    if ws.send(Message::text(welcome)).await.is_err() {
        return;
    }
    room.say(chat_json(
        "join",
        &who,
        backend,
        &format!("{who} joined via {backend}"),
    ));
    // Said on drop, so members of a stopped (crashed) instance leave too.
    let _leave = Leave {
        room,
        line: chat_json("leave", &who, backend, &format!("{who} left {backend}")),
    };
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let t = clip(t.as_str(), MAX_CHAT_TEXT);
                    room.say(chat_json("msg", &who, backend, t));
                }
                // Binary has no meaning in the chat; control frames are handled by
                // tungstenite.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            line = lines.recv() => match line {
                Ok(line) => if ws.send(Message::Text(line)).await.is_err() {
                    break;
                },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// Announces a member's departure when its task ends, however it ends.
struct Leave<'a> {
    room: &'a Room,
    line: String,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.room.say(std::mem::take(&mut self.line));
    }
}

/// Pushes a price update every [`TICK`] until the connection ends.
pub(crate) async fn ticker(mut ws: Ws) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut rng = Rng::new(start.as_nanos() as u64);
    let mut prices: [u32; 4] = [10_250, 4_210, 99_900, 1_337];
    let mut seq: u64 = 0;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            _ = tick.tick() => {
                for p in &mut prices {
                    // A random walk of at most ±0.5%, never below one cent.
                    let step = (*p / 200).max(1);
                    let delta = rng.range(0, 2 * step as u64) as i64 - step as i64;
                    *p = (*p as i64 + delta).max(1) as u32;
                }
                if ws.send(Message::binary(tick_payload(seq, &prices))).await.is_err() {
                    break;
                }
                seq += 1;
            }
        }
    }
}

/// 32 bytes: sequence, Unix milliseconds, four prices, all big-endian.
fn tick_payload(seq: u64, prices: &[u32; 4]) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&now.to_be_bytes());
    for p in prices {
        out.extend_from_slice(&p.to_be_bytes());
    }
    out
}

fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn chat_json(kind: &str, from: &str, backend: &str, text: &str) -> String {
    format!(
        r#"{{"type":"{}","from":"{}","backend":"{}","text":"{}"}}"#,
        json_escape(kind),
        json_escape(from),
        json_escape(backend),
        json_escape(text)
    )
}

/// Escapes a string for a JSON string literal (RFC 8259 §7).
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_escaped() {
        assert_eq!(
            chat_json("msg", "a\"b", "app-1", "x\\y\n\u{1}"),
            r#"{"type":"msg","from":"a\"b","backend":"app-1","text":"x\\y\n\u0001"}"#
        );
    }

    #[test]
    fn names_are_tame_or_generated() {
        let room = Room::new();
        assert_eq!(room.name_for(Some("x=1&name=ada")), "ada");
        assert_eq!(room.name_for(Some("name=<script>")), "guest-1");
        assert_eq!(room.name_for(None), "guest-2");
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }

    #[test]
    fn ticks_are_32_bytes() {
        let t = tick_payload(5, &[1, 2, 3, 4]);
        assert_eq!(t.len(), 32);
        assert_eq!(&t[..8], &5u64.to_be_bytes());
        assert_eq!(&t[28..], &4u32.to_be_bytes());
    }
}
