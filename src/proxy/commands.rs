//! The command loop: the one task that applies control commands (drain, kill,
//! close, shutdown) and publishes batched frame statistics, until shutdown is
//! complete.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::pacing::{self, Plan, RebalanceError};
use super::pool::Backend;
use super::registry::{shutdown_begun, Registry};
use crate::control::{Command, Outcome, Request};
use crate::event::{AdminState, Dir, Event, PaceCause, TunnelId};

impl Registry {
    pub(super) fn apply(self: &Arc<Self>, command: Command) -> Outcome {
        let backend = |id| {
            self.pools
                .backend(id)
                .ok_or_else(|| Outcome::UnknownBackend(id.clone()))
        };
        let res = match &command {
            Command::Reload => {
                return match self.reload() {
                    Ok(diff) => {
                        tracing::info!(changes = %diff.summary(), "config reloaded");
                        self.publish(Event::ConfigReloaded(diff.clone()));
                        Outcome::Reloaded(Box::new(diff))
                    }
                    Err(why) => {
                        tracing::error!(error = %why, "config reload refused; the running config stays");
                        Outcome::ReloadRefused(why)
                    }
                }
            }
            Command::PreviewReload => {
                let preview = self.preview_reload();
                self.publish(Event::ReloadPreview(preview.clone()));
                return match preview {
                    Ok(diff) => Outcome::WouldReload(Box::new(diff)),
                    Err(why) => Outcome::ReloadRefused(why),
                };
            }
            Command::Drain(id) => backend(id).map(|b| self.drain(&b, None, None)),
            Command::DrainWithin {
                backend: id,
                deadline,
                close_rate,
            } => backend(id).map(|b| self.drain(&b, Some(*deadline), *close_rate)),
            Command::Rebalance(pool) => return self.rebalance(pool),
            Command::Undrain(id) => backend(id).map(|b| b.undrain()),
            Command::Enable(id) => backend(id).map(|b| b.enable()),
            Command::Disable(id) => backend(id).map(|b| b.disable()),
            Command::Kill {
                backend: id,
                code,
                reason,
            } => {
                return match backend(id) {
                    Ok(b) => {
                        b.kill(*code, reason);
                        let mut n = 0;
                        for t in self.tunnels().iter().filter(|t| &t.backend == id) {
                            t.request_close(*code, reason);
                            n += 1;
                        }
                        tracing::info!(backend = %id, tunnels = n, code, "backend killed");
                        Outcome::Closing(n)
                    }
                    Err(o) => o,
                }
            }
            Command::CloseTunnel { id, code, reason } => {
                return match lock(&self.tunnels).get(id) {
                    Some(t) => {
                        t.request_close(*code, reason);
                        Outcome::Closing(1)
                    }
                    None => Outcome::UnknownTunnel(*id),
                }
            }
            Command::Inject {
                id,
                to,
                kind,
                payload,
            } => {
                return match lock(&self.tunnels).get(id) {
                    Some(t) => match t.inject(*to, *kind, payload.clone()) {
                        Ok(()) => Outcome::Done,
                        Err(why) => Outcome::Refused(why),
                    },
                    None => Outcome::UnknownTunnel(*id),
                }
            }
            Command::Hold { id, from, on } => {
                return match lock(&self.tunnels).get(id) {
                    Some(t) => match t.hold(*from, *on) {
                        Ok(()) => Outcome::Done,
                        Err(why) => Outcome::Refused(why),
                    },
                    None => Outcome::UnknownTunnel(*id),
                }
            }
            Command::Shutdown => {
                self.begin_shutdown();
                Ok(())
            }
        };
        match res {
            Ok(()) => {
                tracing::info!(?command, "control command applied");
                Outcome::Done
            }
            Err(o) => o,
        }
    }
}

/// The core task: applies commands and publishes batched frame statistics, until
/// shutdown is complete.
pub async fn run(core: Arc<Registry>, mut commands: mpsc::Receiver<Request>) {
    let mut tick = tokio::time::interval(core.config().inspect.stats_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published: HashMap<TunnelId, (u64, u64, u64)> = HashMap::new();
    let mut shutdown = core.shutdown_signal();
    loop {
        tokio::select! {
            req = commands.recv() => match req {
                Some(req) => {
                    let outcome = core.apply(req.command);
                    if let Some(reply) = req.reply {
                        let _ = reply.send(outcome);
                    }
                }
                None => core.begin_shutdown(),
            },
            _ = tick.tick() => publish_stats(&core, &mut published),
            _ = shutdown_begun(&mut shutdown) => break,
        }
    }
    let grace = core.config().timeouts.shutdown_grace;
    let drain = async {
        loop {
            tokio::select! {
                _ = async { core.tunnels_gone().await; core.connections_gone().await } => break,
                _ = tick.tick() => publish_stats(&core, &mut published),
                req = commands.recv() => if let Some(Request { reply: Some(r), .. }) = req {
                    let _ = r.send(Outcome::Done);
                },
            }
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!("shutdown grace of {grace:?} over; dropping remaining tunnels and requests");
    }
}

/// One FrameStats and one FrameSamples event per tunnel that moved since last time.
fn publish_stats(core: &Registry, published: &mut HashMap<TunnelId, (u64, u64, u64)>) {
    // Nobody listening (headless): don't copy counters and samples for nothing. A
    // subscriber that arrives later starts from a snapshot anyway.
    let watched = core.bus.receiver_count() > 0;
    core.watched
        .store(watched, std::sync::atomic::Ordering::Relaxed);
    if !watched {
        published.clear();
        return;
    }
    let tunnels = core.tunnels();
    let mut seen = HashMap::with_capacity(tunnels.len());
    for t in tunnels {
        let now = t.progress();
        let last = published.get(&t.id).copied().unwrap_or((0, 0, 0));
        seen.insert(t.id, now);
        if now == last {
            continue;
        }
        core.publish(Event::FrameStats {
            id: t.id,
            stats: t.stats(),
        });
        let mut samples = Vec::new();
        t.samples_since(Dir::ClientToBackend, last.1, &mut samples);
        t.samples_since(Dir::BackendToClient, last.2, &mut samples);
        if !samples.is_empty() {
            samples.sort_by_key(|s| s.at);
            core.publish(Event::FrameSamples { id: t.id, samples });
        }
    }
    // Closed tunnels drop out here.
    *published = seen;
}

impl Registry {
    /// Drains the backend; if a deadline applies (given, or the pool's
    /// `drain_deadline`), the tunnels still on it then are closed at a paced rate.
    fn drain(
        self: &Arc<Self>,
        backend: &Arc<Backend>,
        deadline: Option<Duration>,
        rate: Option<u32>,
    ) {
        backend.drain();
        let Some(pool) = self.pools.get(&backend.id.pool) else {
            return;
        };
        let after = deadline.unwrap_or(pool.config.drain_deadline);
        if after.is_zero() && deadline.is_none() || backend.admin() != AdminState::Draining {
            return;
        }
        let plan = Plan {
            cause: PaceCause::Drain,
            after,
            rate: rate.unwrap_or(pool.config.close_rate),
            quota: None,
        };
        tokio::spawn(pacing::run(self.clone(), backend.clone(), plan));
    }

    /// Starts a paced close on each backend of the pool holding more than its share.
    fn rebalance(self: &Arc<Self>, pool: &str) -> Outcome {
        let plan = match pacing::rebalance_plan(self, pool) {
            Ok(plan) => plan,
            Err(RebalanceError::UnknownPool(p)) => return Outcome::UnknownPool(p),
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        let rate = self.pools.get(pool).map_or(1, |p| p.config.close_rate);
        let mut report = Vec::with_capacity(plan.len());
        for (backend, quota) in plan {
            report.push((backend.id.clone(), quota));
            let plan = Plan {
                cause: PaceCause::Rebalance,
                after: Duration::ZERO,
                rate,
                quota: Some(quota),
            };
            tokio::spawn(pacing::run(self.clone(), backend, plan));
        }
        tracing::info!(pool, ?report, "rebalance");
        Outcome::Rebalancing(report)
    }
}
