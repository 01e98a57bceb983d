//! A [`Snapshot`] kept current by applying the events that follow it: what an
//! observer that cannot ask the proxy for a fresh snapshot (one following the admin
//! API) hands its dashboard when the dashboard resyncs.

use super::{Event, Snapshot, TunnelId, TunnelInfo};

impl Event {
    /// The tunnel the event is about, to read or renumber (an observer of several
    /// proxies gives each tunnel an id of its own); None for events about no tunnel.
    pub fn tunnel_id_mut(&mut self) -> Option<&mut TunnelId> {
        match self {
            Event::TunnelOpened { id, .. }
            | Event::BackendChosen { id, .. }
            | Event::Hold { id, .. }
            | Event::Parked { id, .. }
            | Event::Handshake { id, .. }
            | Event::Refused { id, .. }
            | Event::FrameStats { id, .. }
            | Event::FrameSamples { id, .. }
            | Event::Violation { id, .. }
            | Event::TunnelClosed { id, .. } => Some(id),
            Event::BackendState(_)
            | Event::Resolved(_)
            | Event::ConfigReloaded(_)
            | Event::ReloadPreview(_)
            | Event::HttpRequest { .. }
            | Event::Fleet(_)
            | Event::FleetOutcome(_) => None,
        }
    }
}

/// Frame samples a mirrored tunnel keeps, newest last.
const SAMPLES_KEPT: usize = 64;

impl Snapshot {
    /// Advances the snapshot by one event that followed it.
    pub fn apply(&mut self, ev: &Event) {
        match ev {
            Event::TunnelOpened {
                id,
                at,
                client,
                listener,
                route,
                path,
                idle_timeout,
                instance,
            } => {
                if find(&mut self.tunnels, *id).is_none() {
                    self.total_tunnels += 1;
                    self.tunnels.push(TunnelInfo {
                        id: *id,
                        opened: *at,
                        client: *client,
                        listener: listener.clone(),
                        route: route.clone(),
                        path: path.clone(),
                        backend: None,
                        handshake: None,
                        stats: Default::default(),
                        samples: Vec::new(),
                        idle_timeout: *idle_timeout,
                        held: Vec::new(),
                        parked: false,
                        instance: instance.clone(),
                    });
                }
            }
            Event::BackendChosen { id, backend } => {
                if let Some(t) = find(&mut self.tunnels, *id) {
                    t.backend = Some(backend.clone());
                }
            }
            Event::Handshake { id, handshake } => {
                if let Some(t) = find(&mut self.tunnels, *id) {
                    t.handshake = Some(handshake.clone());
                }
            }
            Event::FrameStats { id, stats } => {
                if let Some(t) = find(&mut self.tunnels, *id) {
                    t.stats = stats.clone();
                }
            }
            Event::FrameSamples { id, samples } => {
                if let Some(t) = find(&mut self.tunnels, *id) {
                    t.samples.extend(samples.iter().cloned());
                    let over = t.samples.len().saturating_sub(SAMPLES_KEPT);
                    t.samples.drain(..over);
                }
            }
            Event::Hold { id, dir, state } => {
                if let Some(t) = find(&mut self.tunnels, *id) {
                    t.held.retain(|h| h.dir != *dir);
                    t.held.extend(state.clone());
                }
            }
            Event::Parked { id, parked } => {
                if let Some(t) = find(&mut self.tunnels, *id) {
                    t.parked = *parked;
                }
            }
            Event::Refused { id, .. } | Event::TunnelClosed { id, .. } => {
                self.tunnels.retain(|t| t.id != *id);
            }
            Event::BackendState(info) => match self.backends.iter_mut().find(|b| b.id == info.id) {
                Some(b) if b.version <= info.version => *b = info.clone(),
                Some(_) => {}
                None => self.backends.push(info.clone()),
            },
            Event::Fleet(f) => self.fleet = Some(f.clone()),
            Event::Violation { .. }
            | Event::Resolved(_)
            | Event::ConfigReloaded(_)
            | Event::ReloadPreview(_)
            | Event::HttpRequest { .. }
            | Event::FleetOutcome(_) => {}
        }
    }
}

fn find(tunnels: &mut [TunnelInfo], id: u64) -> Option<&mut TunnelInfo> {
    tunnels.iter_mut().find(|t| t.id == id)
}

#[cfg(test)]
impl TunnelInfo {
    /// A tunnel from 127.0.0.1:5000 on `/`, mid-handshake, that has carried nothing:
    /// tests change what they look at.
    pub fn bare(id: TunnelId) -> TunnelInfo {
        TunnelInfo {
            id,
            opened: std::time::UNIX_EPOCH,
            client: std::net::SocketAddr::from(([127, 0, 0, 1], 5000)),
            listener: std::sync::Arc::from("l"),
            route: std::sync::Arc::from("r"),
            path: "/".to_string(),
            backend: None,
            handshake: None,
            stats: Default::default(),
            samples: Vec::new(),
            idle_timeout: None,
            held: Vec::new(),
            parked: false,
            instance: None,
        }
    }
}
