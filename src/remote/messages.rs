//! The open detail's whole messages for `top`: the dashboard asks every tick (a
//! plain function, it must not wait), so it gets what was fetched last, and a task
//! fetches the asked tunnel's `GET /api/tunnels/{id}/messages` from its instance
//! twice a second while a detail is open.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use http::Method;
use serde_json::Value;

use crate::event::{CapturedFrame, CapturedMessage, Dir, OpKind, TunnelId};

use super::fleet::Shared;
use super::target::Auth;
use super::wire;

const EVERY: Duration = Duration::from_millis(500);

/// The tunnel asked for last, and its messages as last fetched.
#[derive(Default)]
pub struct Cache {
    wanted: Option<(TunnelId, SystemTime)>,
    got: Option<(TunnelId, Vec<CapturedMessage>)>,
}

pub type Messages = Arc<Mutex<Cache>>;

/// What the dashboard calls: records the ask, answers with the last fetch.
pub fn source(cache: Messages) -> impl Fn(TunnelId) -> Option<Vec<CapturedMessage>> + Send + Sync {
    move |id| {
        let mut c = crate::sync::lock(&cache);
        c.wanted = Some((id, SystemTime::now()));
        match &c.got {
            Some((got, list)) if *got == id => Some(list.clone()),
            _ => None,
        }
    }
}

/// Fetches what is asked while it is asked (a detail closed a second ago is not).
pub async fn fetch(cache: Messages, model: Shared, auth: Auth) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let wanted = crate::sync::lock(&cache).wanted;
        let Some((id, asked)) = wanted else { continue };
        if asked.elapsed().unwrap_or_default() > Duration::from_secs(1) {
            continue;
        }
        let target = {
            let m = crate::sync::lock(&model);
            m.remote(id)
                .map(|(i, rid)| (m.instances[i].target.clone(), rid))
        };
        let Some((target, rid)) = target else {
            continue;
        };
        let path = format!("/api/tunnels/{rid}/messages");
        if let Ok((200, body)) = wire::request(&target, &auth, Method::GET, &path, Vec::new()).await
        {
            if let Some(list) = parse(&body) {
                crate::sync::lock(&cache).got = Some((id, list));
            }
        }
    }
}

/// `{"messages": [...]}` read back; None when it is not that.
pub fn parse(body: &str) -> Option<Vec<CapturedMessage>> {
    let v: Value = serde_json::from_str(body).ok()?;
    v["messages"].as_array()?.iter().map(message).collect()
}

fn message(v: &Value) -> Option<CapturedMessage> {
    let b64 = |key: &str| {
        v[key]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
    };
    let data = match v["text"].as_str() {
        Some(t) => t.as_bytes().to_vec(),
        None => b64("base64")?,
    };
    let inflated = if let Some(why) = v["inflate_error"].as_str() {
        Some(Err(why.to_string()))
    } else if let Some(t) = v["inflated_text"].as_str() {
        Some(Ok(t.as_bytes().to_vec()))
    } else {
        b64("inflated_base64").map(Ok)
    };
    let at = super::parse::time(v["at"].as_str()?)?;
    let dir = super::parse::dir_of(v["direction"].as_str()?).ok()?;
    let (kind, opcode) = match v["type"].as_str()? {
        "text" => (OpKind::Text, 1),
        "binary" => (OpKind::Binary, 2),
        "close" => (OpKind::Close, 8),
        "ping" => (OpKind::Ping, 9),
        "pong" => (OpKind::Pong, 10),
        _ => (OpKind::Continuation, 0),
    };
    let len = v["length"].as_u64()?;
    let compressed = v["compressed"].as_bool().unwrap_or(false);
    Some(CapturedMessage {
        seq: v["seq"].as_u64()?,
        at,
        dir,
        kind,
        compressed,
        len,
        frames: v["frames"]
            .as_u64()
            .and_then(|f| u32::try_from(f).ok())
            .unwrap_or(1),
        data,
        truncated: v["truncated"].as_bool().unwrap_or(false),
        inflated,
        inflated_len: v["inflated_length"].as_u64().unwrap_or(0),
        injected: v["injected"].as_bool().unwrap_or(false),
        // The API gives the message, not its frames: one frame stands for it.
        first: CapturedFrame {
            seq: 0,
            at,
            len,
            fin: true,
            rsv: if compressed { 0b100 } else { 0 },
            opcode,
            masked: dir == Dir::ClientToBackend,
        },
        more: Vec::new(),
    })
}
