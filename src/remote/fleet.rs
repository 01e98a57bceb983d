//! The instances `top` follows, merged into one model in the dashboard's terms:
//! tunnel ids made unique (each instance numbers its own), each tunnel labelled
//! with its instance, backends merged by pool and address with their tunnels summed
//! and each instance's part kept, and the fleet's own state ([`Event::Fleet`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::event::{
    AdminState, BackendId, BackendInfo, Event, Fleet, Health, Instance, Link, Share, Snapshot,
    TunnelId,
};

use super::target::Target;

/// One followed instance.
pub struct Inst {
    pub target: Target,
    pub name: Arc<str>,
    pub link: Link,
    /// What it reported, in its own tunnel ids.
    pub mirror: Snapshot,
}

/// Everything `top` knows, shared by the links, the commands and the dashboard.
pub struct Model {
    pub instances: Vec<Inst>,
    /// (instance, its id) → the dashboard's id, and back.
    ids: HashMap<(usize, TunnelId), TunnelId>,
    back: HashMap<TunnelId, (usize, TunnelId)>,
    next_id: TunnelId,
    /// Versions of the merged backends (each instance counts its own).
    version: u64,
    generation: u64,
    /// Tunnel counts or shares changed since the fleet was last published.
    pub dirty: bool,
}

pub type Shared = Arc<Mutex<Model>>;

impl Model {
    pub fn new(targets: Vec<Target>) -> Model {
        Model {
            instances: targets
                .into_iter()
                .map(|t| Inst {
                    name: Arc::from(t.name.clone().unwrap_or_else(|| t.authority.clone())),
                    target: t,
                    link: Link::Connecting,
                    mirror: Snapshot::default(),
                })
                .collect(),
            ids: HashMap::new(),
            back: HashMap::new(),
            next_id: 1,
            version: 0,
            generation: 0,
            dirty: false,
        }
    }

    /// The dashboard's id for a tunnel an event names, if it is known.
    pub(super) fn known(&self, i: usize, id: TunnelId) -> Option<TunnelId> {
        self.ids.get(&(i, id)).copied()
    }

    fn local(&mut self, i: usize, id: TunnelId) -> TunnelId {
        if let Some(&l) = self.ids.get(&(i, id)) {
            return l;
        }
        let l = self.next_id;
        self.next_id += 1;
        self.ids.insert((i, id), l);
        self.back.insert(l, (i, id));
        l
    }

    /// The instance and its own id for a dashboard tunnel id.
    pub fn remote(&self, id: TunnelId) -> Option<(usize, TunnelId)> {
        self.back.get(&id).copied()
    }

    fn forget(&mut self, i: usize, id: TunnelId) {
        if let Some(l) = self.ids.remove(&(i, id)) {
            self.back.remove(&l);
        }
    }

    /// Instance `i` sent a fresh snapshot (named, maybe): it replaces what was known.
    pub fn reset(&mut self, i: usize, snapshot: Snapshot, name: Option<String>) {
        let inst = &mut self.instances[i];
        if let (None, Some(n)) = (&inst.target.name, name) {
            inst.name = Arc::from(n);
        }
        inst.mirror = snapshot;
        inst.link = Link::Up;
        let live: Vec<TunnelId> = inst.mirror.tunnels.iter().map(|t| t.id).collect();
        self.ids.retain(|(j, id), _| *j != i || live.contains(id));
        let ids = &self.ids;
        self.back
            .retain(|_, (j, id)| *j != i || ids.contains_key(&(*j, *id)));
        // Known from now on, not from the dashboard's next resync: the events that
        // follow the snapshot (a handshake finishing, a close) must not be dropped as
        // those of a stranger, or the mirror would keep the tunnel as it was.
        for id in live {
            self.local(i, id);
        }
        self.generation += 1;
    }

    /// Instance `i` is out of reach: what it had is not known any more.
    pub fn lost(&mut self, i: usize, link: Link) {
        let inst = &mut self.instances[i];
        let was_up = inst.link == Link::Up;
        inst.link = link;
        // Nothing it said still holds: its tunnels and its part of each backend go.
        inst.mirror.tunnels.clear();
        inst.mirror.backends.clear();
        self.ids.retain(|(j, _), _| *j != i);
        self.back.retain(|_, (j, _)| *j != i);
        if was_up {
            self.generation += 1;
        }
    }

    pub fn set_link(&mut self, i: usize, link: Link) {
        self.instances[i].link = link;
    }

    /// Applies instance `i`'s event; the events to publish, in dashboard terms.
    pub fn apply(&mut self, i: usize, mut ev: Event) -> Vec<Event> {
        let opened = matches!(ev, Event::TunnelOpened { .. });
        let ends = matches!(ev, Event::Refused { .. } | Event::TunnelClosed { .. });
        if let Some(id) = ev.tunnel_id_mut().map(|id| *id) {
            // Events of tunnels this model does not know (opened before the stream
            // began and still handshaking then) are dropped: only tunnel_opened makes
            // an id known, so an instance cannot grow the map with made-up ones.
            if !opened && self.known(i, id).is_none() {
                return Vec::new();
            }
        }
        self.instances[i].mirror.apply(&ev);
        if let Event::BackendState(info) = &ev {
            return self
                .merged(&info.id)
                .map(Event::BackendState)
                .into_iter()
                .collect();
        }
        if let Event::TunnelOpened { instance, .. } = &mut ev {
            *instance = Some(self.instances[i].name.clone());
        }
        if let Some(id) = ev.tunnel_id_mut() {
            let theirs = *id;
            *id = self.local(i, theirs);
            if ends {
                self.forget(i, theirs);
            }
        }
        vec![ev]
    }

    /// Backend `id` as the fleet has it: tunnels summed over the instances that
    /// know it; the least available state any reports (the shares tell which).
    fn merged(&mut self, id: &BackendId) -> Option<BackendInfo> {
        let mut parts = self
            .instances
            .iter()
            .filter_map(|inst| inst.mirror.backends.iter().find(|b| b.id == *id));
        let mut b = parts.next()?.clone();
        let rank = |a: AdminState| match a {
            AdminState::Active => 0,
            AdminState::Drained => 1,
            AdminState::Draining => 2,
            AdminState::Disabled => 3,
        };
        for p in parts {
            b.active_tunnels += p.active_tunnels;
            b.total_tunnels += p.total_tunnels;
            b.failures += p.failures;
            if rank(p.admin) > rank(b.admin) {
                b.admin = p.admin;
            }
            if p.health == Health::Down {
                b.health = Health::Down;
            }
            b.last_error = b.last_error.or_else(|| p.last_error.clone());
            b.closing = b.closing.or_else(|| p.closing.clone());
        }
        self.version += 1;
        b.version = self.version;
        Some(b)
    }

    /// The fleet's state, for the header and the backend breakdown.
    pub fn fleet(&self) -> Fleet {
        let mut shares: Vec<(BackendId, Vec<Share>)> = Vec::new();
        for inst in &self.instances {
            for b in &inst.mirror.backends {
                let share = Share {
                    instance: inst.name.clone(),
                    active_tunnels: b.active_tunnels,
                    admin: b.admin,
                };
                match shares.iter_mut().find(|(id, _)| *id == b.id) {
                    Some((_, v)) => v.push(share),
                    None => shares.push((b.id.clone(), vec![share])),
                }
            }
        }
        Fleet {
            instances: self
                .instances
                .iter()
                .map(|inst| Instance {
                    name: inst.name.clone(),
                    url: inst.target.url(),
                    link: inst.link.clone(),
                    tunnels: inst.mirror.tunnels.len() as u64,
                })
                .collect(),
            shares,
            generation: self.generation,
        }
    }

    /// Everything merged, in dashboard terms (what a resync loads).
    pub fn snapshot(&mut self) -> Snapshot {
        let mut s = Snapshot::default();
        let mut ids: Vec<BackendId> = Vec::new();
        for i in 0..self.instances.len() {
            let name = self.instances[i].name.clone();
            let mirror = self.instances[i].mirror.clone();
            for l in mirror.listeners {
                if !s.listeners.contains(&l) {
                    s.listeners.push(l);
                }
            }
            for b in &mirror.backends {
                if !ids.contains(&b.id) {
                    ids.push(b.id.clone());
                }
            }
            for mut t in mirror.tunnels {
                t.id = self.local(i, t.id);
                t.instance = Some(name.clone());
                s.tunnels.push(t);
            }
            s.total_tunnels += mirror.total_tunnels;
            s.started = match (s.started, mirror.started) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        s.backends = ids.iter().filter_map(|id| self.merged(id)).collect();
        s.tunnels.sort_by_key(|t| t.id);
        s.fleet = Some(self.fleet());
        s
    }
}

/// Publishes what the links learn; a dashboard that is not there yet loses nothing
/// it cannot get from the snapshot.
pub fn publish(bus: &broadcast::Sender<Event>, events: Vec<Event>) {
    for ev in events {
        let _ = bus.send(ev);
    }
}

/// When the next attempt is due after `delay`.
pub fn retry_at(delay: std::time::Duration) -> SystemTime {
    SystemTime::now() + delay
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BackendInfo, TunnelInfo};

    fn backend(admin: AdminState, active: u64, version: u64) -> BackendInfo {
        BackendInfo {
            id: BackendId::new("app", "127.0.0.1:9001"),
            weight: 1,
            backup: false,
            via: None,
            admin,
            health: Health::Up,
            active_tunnels: active,
            total_tunnels: active,
            failures: 0,
            last_error: None,
            check: None,
            closing: None,
            version,
        }
    }

    #[test]
    fn events_of_a_tunnel_in_the_snapshot_apply_before_any_resync() {
        let mut m = Model::new(vec![Target::parse("a=127.0.0.1:1").unwrap()]);
        let snap = Snapshot {
            tunnels: vec![TunnelInfo::bare(7), TunnelInfo::bare(8)],
            ..Default::default()
        };
        m.reset(0, snap, None);
        // No `snapshot()` taken since (the dashboard has not resynced yet).
        let out = m.apply(
            0,
            Event::TunnelClosed {
                id: 7,
                code: Some(1000),
                reason: String::new(),
                side: crate::event::Side::Client,
                duration: std::time::Duration::from_secs(1),
                stats: Default::default(),
                error: None,
            },
        );
        assert_eq!(out.len(), 1, "the close was dropped");
        let left: Vec<TunnelId> = m.instances[0].mirror.tunnels.iter().map(|t| t.id).collect();
        assert_eq!(left, [8], "the mirror kept a closed tunnel");
        // Ids stay stable: the survivor keeps the local id given at the reset.
        let eight = m.known(0, 8).expect("known since the reset");
        assert_eq!(m.snapshot().tunnels[0].id, eight);
    }

    #[test]
    fn each_instances_share_follows_its_own_events() {
        let t = |s: &str| Target::parse(s).unwrap();
        let mut m = Model::new(vec![t("a=127.0.0.1:1"), t("b=127.0.0.1:2")]);
        for i in 0..2 {
            let snap = Snapshot {
                backends: vec![backend(AdminState::Active, i as u64 + 1, 5)],
                ..Default::default()
            };
            m.reset(i, snap, None);
        }
        let out = m.apply(1, Event::BackendState(backend(AdminState::Draining, 2, 9)));
        let merged = match &out[0] {
            Event::BackendState(b) => b.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (merged.admin, merged.active_tunnels),
            (AdminState::Draining, 3)
        );
        let fleet = m.fleet();
        let shares = fleet.shares(&merged.id).unwrap();
        assert_eq!(shares[0].admin, AdminState::Active);
        assert_eq!(shares[1].admin, AdminState::Draining, "{shares:?}");
    }
}
