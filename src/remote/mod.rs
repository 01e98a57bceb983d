//! `tunnelscope top`: the dashboard attached to running proxies through their admin
//! API instead of an in-process bus. Each instance is followed by a link (its
//! `/api/events` stream: a snapshot, then events; reconnected with backoff when it
//! is refused or lost); the fleet model merges what the links learn into one
//! stream of events in the `event` contract's terms, and the dashboard's commands
//! (the `control` contract) are carried to every instance through the API. The
//! dashboard is the same one a local proxy gets: it does not know it is remote.

mod commands;
mod fleet;
mod link;
mod messages;
pub mod parse;
mod search;
mod target;
mod wire;

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::control::ControlHandle;
use crate::event::{Event, Snapshot};

pub use target::{tls_config, Auth, Target};

/// Events the dashboard may fall behind by before it resyncs from the snapshot.
const BUS: usize = 1 << 16;

/// The instances followed; everything stops when it is dropped.
pub struct Top {
    bus: broadcast::Sender<Event>,
    model: fleet::Shared,
    control: ControlHandle,
    messages: messages::Messages,
    searches: search::Searches,
    tasks: Vec<JoinHandle<()>>,
}

impl Top {
    /// Starts following `targets` (within a tokio runtime).
    pub fn start(targets: Vec<Target>, auth: Auth) -> Top {
        let (bus, _) = broadcast::channel(BUS);
        let model = Arc::new(Mutex::new(fleet::Model::new(targets)));
        let n = crate::sync::lock(&model).instances.len();
        let mut tasks: Vec<JoinHandle<()>> = (0..n)
            .map(|i| tokio::spawn(link::follow(i, model.clone(), bus.clone(), auth.clone())))
            .collect();
        tasks.push(tokio::spawn(fleet_ticks(model.clone(), bus.clone())));
        let cache = messages::Messages::default();
        tasks.push(tokio::spawn(messages::fetch(
            cache.clone(),
            model.clone(),
            auth.clone(),
        )));
        let searches = search::Searches::default();
        tasks.push(tokio::spawn(search::serve(
            searches.clone(),
            model.clone(),
            auth.clone(),
        )));
        let (tx, rx) = mpsc::channel(64);
        tasks.push(tokio::spawn(commands::serve(
            rx,
            model.clone(),
            bus.clone(),
            auth,
        )));
        Top {
            bus,
            model,
            control: ControlHandle::new(tx),
            messages: cache,
            searches,
            tasks,
        }
    }

    /// Subscribe before taking the first snapshot, so nothing falls between them.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.bus.subscribe()
    }

    /// Everything known now, merged, as the dashboard loads it.
    pub fn snapshot(&self) -> Snapshot {
        crate::sync::lock(&self.model).snapshot()
    }

    /// The open detail's whole messages, as the dashboard asks for them (fetched
    /// from the tunnel's instance in the background).
    pub fn messages_source(
        &self,
    ) -> impl Fn(crate::event::TunnelId) -> Option<Vec<crate::event::CapturedMessage>> + Send + Sync
    {
        messages::source(self.messages.clone())
    }

    /// `f`: every instance's captured messages searched, as the dashboard asks (None
    /// until the instances have answered).
    pub fn search_source(
        &self,
    ) -> impl Fn(&str) -> Option<Vec<crate::event::SearchHit>> + Send + Sync {
        search::source(self.searches.clone())
    }

    /// Commands sent here go to the instances.
    pub fn control(&self) -> ControlHandle {
        self.control.clone()
    }
}

impl Drop for Top {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How often a changed fleet (tunnel counts, shares) is published at most.
const FLEET_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Publishes the fleet when it changed, at most every [`FLEET_EVERY`]: a burst of
/// tunnels costs a few summaries, not one each.
async fn fleet_ticks(model: fleet::Shared, bus: broadcast::Sender<Event>) {
    let mut tick = tokio::time::interval(FLEET_EVERY);
    loop {
        tick.tick().await;
        let mut m = crate::sync::lock(&model);
        if m.dirty {
            m.dirty = false;
            fleet::publish(&bus, vec![Event::Fleet(m.fleet())]);
        }
    }
}
