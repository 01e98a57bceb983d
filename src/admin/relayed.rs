//! The one piece of state the admin API keeps: traffic relayed by tunnels that have
//! closed.
//!
//! Frames, messages and bytes relayed are cumulative over live and closed tunnels. A
//! live tunnel's counts are in the snapshot; a closed one's only ever pass by in its
//! `TunnelClosed` event, so [`Relayed`] runs a task that folds those from the bus.
//! [`Relayed::totals`] adds the two. The core drops a tunnel from its registry just
//! before it publishes `TunnelClosed`, so between the two the tunnel is counted
//! nowhere: the totals reported never go below what was reported before, so the
//! counters stay monotonic. Events missed because the task lagged are counted in
//! `events_lagged` (their tunnels' traffic is then missing).

use crate::sync::lock;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

use crate::event::{DirStats, Event, Snapshot, TunnelStats};

/// Frames, messages and bytes in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flow {
    pub frames: u64,
    pub messages: u64,
    pub bytes: u64,
}

impl Flow {
    fn add(&mut self, d: &DirStats) {
        self.frames += d.frames();
        self.messages += d.messages;
        self.bytes += d.bytes;
    }

    fn max(self, o: Flow) -> Flow {
        Flow {
            frames: self.frames.max(o.frames),
            messages: self.messages.max(o.messages),
            bytes: self.bytes.max(o.bytes),
        }
    }
}

/// Totals as `/api/state` shows them and `/metrics` exports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub tunnels_active: u64,
    pub tunnels_total: u64,
    /// Relayed by live and closed tunnels since the admin API started.
    pub client_to_backend: Flow,
    pub backend_to_client: Flow,
    /// Bus events the aggregator missed by lagging.
    pub events_lagged: u64,
}

#[derive(Default)]
struct Folded {
    closed: [Flow; 2],
    lagged: u64,
    /// The highest totals reported so far.
    reported: [Flow; 2],
}

impl Folded {
    fn add(&mut self, stats: &TunnelStats) {
        self.closed[0].add(&stats.client_to_backend);
        self.closed[1].add(&stats.backend_to_client);
    }
}

/// Traffic of closed tunnels, folded from the event bus by a task that ends with the
/// bus or when this is dropped.
pub struct Relayed {
    // A std Mutex: held for a few additions, never across an await.
    folded: Arc<Mutex<Folded>>,
    task: JoinHandle<()>,
}

impl Drop for Relayed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relayed {
    /// Starts folding `TunnelClosed` events from `events`.
    pub fn start(mut events: broadcast::Receiver<Event>) -> Relayed {
        let folded = Arc::new(Mutex::new(Folded::default()));
        let sink = folded.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::TunnelClosed { stats, .. }) => lock(&sink).add(&stats),
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => lock(&sink).lagged += n,
                    Err(RecvError::Closed) => break,
                }
            }
        });
        Relayed { folded, task }
    }

    /// Totals now: closed tunnels' traffic plus the live ones' in `snapshot`.
    pub fn totals(&self, snapshot: &Snapshot) -> Totals {
        let mut live = [Flow::default(); 2];
        for t in &snapshot.tunnels {
            live[0].add(&t.stats.client_to_backend);
            live[1].add(&t.stats.backend_to_client);
        }
        let mut f = lock(&self.folded);
        for (i, flow) in live.iter().enumerate() {
            let now = Flow {
                frames: f.closed[i].frames + flow.frames,
                messages: f.closed[i].messages + flow.messages,
                bytes: f.closed[i].bytes + flow.bytes,
            };
            f.reported[i] = f.reported[i].max(now);
        }
        Totals {
            tunnels_active: snapshot.tunnels.len() as u64,
            tunnels_total: snapshot.total_tunnels,
            client_to_backend: f.reported[0],
            backend_to_client: f.reported[1],
            events_lagged: f.lagged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::OpKind;

    #[tokio::test]
    async fn closed_tunnels_add_up_and_totals_never_go_down() {
        let (bus, _) = broadcast::channel(16);
        let relayed = Relayed::start(bus.subscribe());
        let mut stats = TunnelStats::default();
        stats.client_to_backend.by_opcode[OpKind::Text as usize].frames = 3;
        stats.client_to_backend.messages = 3;
        stats.client_to_backend.bytes = 30;
        stats.backend_to_client.bytes = 7;
        let closed = Event::TunnelClosed {
            id: 1,
            code: Some(1000),
            reason: String::new(),
            side: crate::event::Side::Client,
            duration: std::time::Duration::ZERO,
            stats,
        };
        bus.send(closed.clone()).unwrap();
        bus.send(closed).unwrap();
        let empty = Snapshot::default();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while relayed.totals(&empty).client_to_backend.frames < 6 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "events folded in time"
            );
            tokio::task::yield_now().await;
        }
        let t = relayed.totals(&empty);
        assert_eq!(
            t.client_to_backend,
            Flow {
                frames: 6,
                messages: 6,
                bytes: 60
            }
        );
        assert_eq!(t.backend_to_client.bytes, 14);

        // A live tunnel adds its counts; once it has left the registry but its
        // TunnelClosed is not folded yet, the totals stay where they were.
        let mut live = TunnelStats::default();
        live.client_to_backend.by_opcode[OpKind::Binary as usize].frames = 4;
        let with_live = Snapshot {
            tunnels: vec![crate::event::TunnelInfo {
                id: 2,
                opened: std::time::SystemTime::now(),
                client: "127.0.0.1:1".parse().unwrap(),
                listener: "l".into(),
                route: "/".into(),
                path: "/".into(),
                backend: None,
                handshake: None,
                stats: live,
                samples: Vec::new(),
            }],
            ..Snapshot::default()
        };
        assert_eq!(relayed.totals(&with_live).client_to_backend.frames, 10);
        assert_eq!(relayed.totals(&with_live).tunnels_active, 1);
        assert_eq!(relayed.totals(&empty).client_to_backend.frames, 10);
    }
}
