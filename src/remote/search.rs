//! `f` (find in every tunnel's messages) for `top`: the dashboard asks with a query
//! each tick (a plain function, it must not wait) and gets None until the hits are
//! in; a task asks every instance that is up for `GET /api/search?q=…` at once,
//! each bounded in time, and merges what they found in the dashboard's tunnel ids.
//! An instance that does not answer in time costs the others nothing: its hits are
//! left out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use serde_json::Value;
use tokio::sync::Notify;

use crate::event::{Link, OpKind, SearchHit};

use super::fleet::Shared;
use super::target::Auth;
use super::wire;

/// How long one instance may take to answer a search.
const PATIENCE: Duration = Duration::from_secs(3);

/// The query asked last, and the hits of the last one answered.
#[derive(Default)]
pub struct Cache {
    asked: Option<String>,
    got: Option<(String, Vec<SearchHit>)>,
}

#[derive(Default, Clone)]
pub struct Searches {
    cache: Arc<Mutex<Cache>>,
    /// Wakes the task when a new query is asked.
    asked: Arc<Notify>,
}

/// What the dashboard calls: the hits once they are in (handed over once: the same
/// search made again later asks again), None until then (a new query is passed on
/// to the task).
pub fn source(s: Searches) -> impl Fn(&str) -> Option<Vec<SearchHit>> + Send + Sync {
    move |query| {
        let mut c = crate::sync::lock(&s.cache);
        if c.got.as_ref().is_some_and(|(q, _)| q == query) {
            c.asked = None;
            return c.got.take().map(|(_, hits)| hits);
        }
        if c.asked.as_deref() != Some(query) {
            c.asked = Some(query.to_string());
            s.asked.notify_one();
        }
        None
    }
}

/// Answers each query asked, one at a time (a newer one asked meanwhile is answered
/// next).
pub async fn serve(s: Searches, model: Shared, auth: Auth) {
    loop {
        s.asked.notified().await;
        let Some(query) = crate::sync::lock(&s.cache).asked.clone() else {
            continue;
        };
        let up: Vec<_> = {
            let m = crate::sync::lock(&model);
            m.instances
                .iter()
                .enumerate()
                .filter(|(_, inst)| inst.link == Link::Up)
                .map(|(i, inst)| (i, inst.target.clone()))
                .collect()
        };
        let path = format!("/api/search?q={}", encode(&query));
        let asks = up.into_iter().map(|(i, target)| {
            let (auth, path) = (auth.clone(), path.clone());
            async move {
                let answer = tokio::time::timeout(
                    PATIENCE,
                    wire::request(&target, &auth, Method::GET, &path, Vec::new()),
                )
                .await;
                match answer {
                    Ok(Ok((200, body))) => parse(&body).map(|hits| (i, hits)),
                    _ => None,
                }
            }
        });
        let found = futures_util::future::join_all(asks).await;
        let mut hits = Vec::new();
        {
            let m = crate::sync::lock(&model);
            for (i, list) in found.into_iter().flatten() {
                for mut h in list {
                    // Only tunnels the dashboard knows (one that just ended is not).
                    if let Some(local) = m.known(i, h.tunnel) {
                        h.tunnel = local;
                        hits.push(h);
                    }
                }
            }
        }
        // Newest first, as a local search lists them.
        hits.sort_by_key(|h| std::cmp::Reverse(h.at));
        crate::sync::lock(&s.cache).got = Some((query, hits));
    }
}

/// The query as it goes in a URL: unreserved characters as they are, the rest
/// percent-encoded byte by byte.
fn encode(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `{"matches": [...]}` read back, in the instance's own tunnel ids; None when it
/// is not that.
pub fn parse(body: &str) -> Option<Vec<SearchHit>> {
    let v: Value = serde_json::from_str(body).ok()?;
    v["matches"].as_array()?.iter().map(hit).collect()
}

fn hit(v: &Value) -> Option<SearchHit> {
    let kind = v["type"].as_str()?;
    Some(SearchHit {
        tunnel: v["tunnel"].as_u64()?,
        dir: super::parse::dir_of(v["direction"].as_str()?).ok()?,
        seq: v["seq"].as_u64()?,
        at: super::parse::time(v["at"].as_str()?)?,
        kind: OpKind::ALL
            .into_iter()
            .find(|k| k.name() == kind)
            .unwrap_or(OpKind::Reserved),
        snippet: v["snippet"].as_str()?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_handed_over_once_and_the_same_search_made_again_asks_again() {
        let s = Searches::default();
        let ask = source(s.clone());
        assert!(ask("order").is_none());
        assert!(ask("order").is_none(), "still gathering");
        assert_eq!(crate::sync::lock(&s.cache).asked.as_deref(), Some("order"));
        // The task answers.
        crate::sync::lock(&s.cache).got = Some(("order".into(), Vec::new()));
        assert_eq!(ask("order").map(|h| h.len()), Some(0));
        // Asked again later: not the old answer, a new ask.
        assert!(ask("order").is_none());
        assert_eq!(crate::sync::lock(&s.cache).asked.as_deref(), Some("order"));
        // A different query is asked even while an answer for another waits.
        crate::sync::lock(&s.cache).got = Some(("other".into(), Vec::new()));
        assert!(ask("order").is_none());
    }

    #[test]
    fn a_query_is_percent_encoded_byte_by_byte() {
        assert_eq!(
            encode("order #4711 & co/é+?"),
            "order%20%234711%20%26%20co%2F%C3%A9%2B%3F"
        );
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
    }

    #[test]
    fn a_search_answer_is_read_back_and_anything_else_refused() {
        let body = r#"{"query":"x","matches":[{"tunnel":7,"direction":"backend_to_client",
            "seq":3,"at":"2026-12-05T00:00:01.5Z","type":"text","snippet":"…x…"}]}"#;
        let hits = parse(body).expect("read back");
        assert_eq!(hits.len(), 1);
        let h = &hits[0];
        assert_eq!((h.tunnel, h.seq, h.kind), (7, 3, OpKind::Text));
        assert_eq!(h.dir, crate::event::Dir::BackendToClient);
        assert_eq!(h.snippet, "…x…");
        assert!(parse("{}").is_none());
        assert!(parse(r#"{"matches":[{"tunnel":"seven"}]}"#).is_none());
        assert!(parse("not json").is_none());
    }
}
