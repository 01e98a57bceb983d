//! Following one instance: its `/api/events` stream read into the shared model,
//! and, when it is refused or lost, the reason shown and another attempt after a
//! backoff (0.5 s doubling to 10 s, back to 0.5 s once a snapshot was read). One
//! instance's trouble never holds up another's link. Each link publishes while it
//! holds the model's lock, so the fleet's events keep the model's order.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::event::{Event, Link};

use super::fleet::{publish, retry_at, Shared};
use super::parse::{self, Message};
use super::target::Auth;
use super::wire;

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Follows instance `i` until the task is dropped.
pub async fn follow(i: usize, model: Shared, bus: broadcast::Sender<Event>, auth: Auth) {
    let target = crate::sync::lock(&model).instances[i].target.clone();
    let mut delay = FIRST_RETRY;
    loop {
        let why = match wire::events(&target, &auth).await {
            Err(why) => why,
            Ok(ws) => {
                let (why, served) = read(i, ws, &model, &bus).await;
                if served {
                    delay = FIRST_RETRY;
                }
                why
            }
        };
        tracing::warn!(instance = %target.url(), "{why}; retrying in {:.1} s", delay.as_secs_f64());
        {
            let mut m = crate::sync::lock(&model);
            let down = Link::Down {
                why,
                retry_at: retry_at(delay),
            };
            m.lost(i, down);
            publish(&bus, vec![Event::Fleet(m.fleet())]);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY);
        {
            let mut m = crate::sync::lock(&model);
            m.set_link(i, Link::Connecting);
            publish(&bus, vec![Event::Fleet(m.fleet())]);
        }
    }
}

/// Reads the stream until it ends: why it ended, and whether a snapshot was read.
async fn read(
    i: usize,
    mut ws: wire::Events,
    model: &Shared,
    bus: &broadcast::Sender<Event>,
) -> (String, bool) {
    let mut served = false;
    let why = loop {
        let text = match ws.next().await {
            Some(Ok(Ws::Text(t))) => t,
            Some(Ok(Ws::Close(frame))) => {
                break match frame {
                    Some(f) if !f.reason.is_empty() => {
                        format!("the instance closed the stream ({}: {})", f.code, f.reason)
                    }
                    Some(f) => format!("the instance closed the stream ({})", f.code),
                    None => "the instance closed the stream".to_string(),
                };
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => break format!("connection lost: {e}"),
            None => break "connection lost".to_string(),
        };
        match parse::message(&text) {
            Ok(Message::Snapshot(s, name)) => {
                let mut m = crate::sync::lock(model);
                m.reset(i, *s, name);
                served = true;
                publish(bus, vec![Event::Fleet(m.fleet())]);
            }
            Ok(Message::Event(ev)) => {
                let mut m = crate::sync::lock(model);
                let out = m.apply(i, *ev);
                if let Some(
                    Event::TunnelOpened { .. }
                    | Event::TunnelClosed { .. }
                    | Event::BackendState(_),
                ) = out.first()
                {
                    // Tunnel counts and shares changed: published a few times a second
                    // at most (see `fleet_ticks`), not once per tunnel.
                    m.dirty = true;
                }
                publish(bus, out);
            }
            Ok(Message::Note(line)) => {
                let name = crate::sync::lock(model).instances[i].name.clone();
                tracing::info!("{name}: {line}");
            }
            Ok(Message::Lagged | Message::Other) => {}
            Err(e) => {
                if text.contains("\"snapshot\"") {
                    // A snapshot this client cannot read: nothing would make sense.
                    break e.to_string();
                }
                tracing::debug!("skipped an event stream message: {e}");
            }
        }
    };
    (why, served)
}
