//! The tunnel: after the 101, two byte pumps relay everything unchanged between the
//! client and the backend. Each pump hands what it forwards to a frame [`Scanner`](super::frame::Scanner)
//! (counting only; frames are never decoded or re-encoded). Buffers are borrowed from
//! [`bufpool`] only while bytes are in flight, so an idle tunnel holds none.
//!
//! Closing on purpose (kill, close command, idle timeout, shutdown) stops each
//! direction exactly at a frame boundary, sends the client an unmasked Close frame
//! and the backend a masked one, gives both a short grace to answer, then tears down.
//!
//! - `relay`: the two directions, their buffers and the frame scanning.
//! - `close`: closing on purpose, and the Close frames each side is owed.
//! - `shared`: what the rest of the proxy sees of a running tunnel.

mod close;
mod inject;
mod ping;
mod relay;
mod resume;
mod shared;

use std::io;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;

use self::close::{close_dead_side, close_on_purpose, BACKEND_GONE};
pub use self::ping::PingSettings;
use self::ping::Pinger;
use self::relay::{Ctx, Mode, Relay, Stop};
pub use self::resume::{Outcome, Resume, Start};
use self::shared::CloseRequest;
pub use self::shared::TunnelShared;
use crate::event::{Dir, Event, Limit, Side};
use crate::sync::lock;

/// Settings the relay needs.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Silence in both directions before the tunnel is closed; zero means never.
    pub idle: Duration,
    pub close_grace: Duration,
    pub strict: bool,
    /// Give the client a Close 1011 when its backend vanishes without one.
    pub close_on_backend_loss: bool,
    /// Proxy-originated pings, when configured.
    pub ping: Option<PingSettings>,
    /// When whole messages are kept, and how many bytes.
    pub capture: CaptureSettings,
    /// Silence after which a plain tunnel gives up its task and waits in its event
    /// loop's lot (`proxy::park`); `None`: never.
    pub park_after: Option<Duration>,
}

/// `[inspect] capture`, `message_bytes`, `tunnel_memory` for one tunnel.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub mode: crate::config::CaptureMode,
    pub message_bytes: usize,
    /// Per direction.
    pub budget: usize,
    /// Whether someone watches now (for `watched`): set when an observer
    /// subscribes, cleared by the statistics tick once none is left. Read once per
    /// chunk, so it must be an atomic, not the bus's count (which takes a lock).
    pub watched: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// permessage-deflate negotiated: whether (client→backend, backend→client)
    /// messages each start a fresh compression context.
    pub deflate: Option<(bool, bool)>,
    /// The proxy-wide budget of captured bytes.
    pub global: std::sync::Arc<crate::proxy::frame::capture::Budget>,
}

#[cfg(test)]
impl CaptureSettings {
    pub fn off() -> CaptureSettings {
        CaptureSettings {
            mode: crate::config::CaptureMode::Off,
            message_bytes: 0,
            budget: 0,
            watched: Default::default(),
            deflate: None,
            global: Default::default(),
        }
    }
}

/// How a tunnel ended.
#[derive(Debug, Clone)]
pub struct Ending {
    pub side: Side,
    pub code: Option<u16>,
    pub reason: String,
    /// An I/O error that ended it, if any.
    pub error: Option<String>,
    /// The limit that ended it, if one did.
    pub limit: Option<Limit>,
}

/// Relays until the tunnel ends, or until it has been silent for `park_after`
/// (then it hands back what resuming it takes).
pub async fn run(
    shared: &TunnelShared,
    start: Start,
    settings: RelaySettings,
    bus: &broadcast::Sender<Event>,
) -> Outcome {
    // Taken apart: each setting lives where it is used, not twice in the task.
    let RelaySettings {
        idle,
        close_grace,
        strict,
        close_on_backend_loss,
        ping,
        capture,
        park_after,
    } = settings;
    let started = Instant::now();
    let (mut relay, resumed) = start.into_relay();
    let mut ctx = Ctx {
        shared,
        bus,
        strict,
        last_active: resumed.as_ref().map_or(started, |r| r.last_active),
        anchor: (started, SystemTime::now()),
        first_close: None,
        backend_error: None,
        policy: None,
        close_on_backend_loss,
        pong: [None, None],
        capture,
    };
    let mut pinger = ping.map(|p| Pinger::new(p, resumed.as_ref().map_or(0, |r| r.ping_seq)));
    let mut ping_due = match &resumed {
        Some(r) => r.ping_due,
        None => pinger.as_ref().map_or(started, |p| p.first_due(started)),
    };
    let mut idle_deadline = resumed.as_ref().map_or(started + idle, |r| r.idle_deadline);
    // Silence is measured from the last byte read, or from the resumption.
    let parkable = park_after.filter(|_| relay.parkable());
    let mut park_base = started;
    let park_at = |relay: &Relay, base: Instant| parkable.map(|d| relay.last_read().max(base) + d);
    let mut gone = false;
    let mut delayed: Option<Box<CloseRequest>> = None;
    // When to try placing injections again, and to look behind holds.
    let mut place_due: Option<Instant> = None;
    let mut look_due: Option<Instant> = None;
    // What observers were last told of the holds (boxed once there are any).
    let mut holds: Option<Box<inject::Holds>> = None;
    // One timer for every deadline the tunnel keeps, set to the earliest: each timer
    // is state the idle tunnel holds, and a branch each wake-up polls.
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);
    let (code, reason, by) = 'relay: loop {
        let due = [
            delayed.as_ref().and_then(|r| r.not_before),
            place_due,
            look_due,
            pinger.is_some().then_some(ping_due),
            (!idle.is_zero()).then_some(idle_deadline),
            park_at(&relay, park_base),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(at) = due.map(tokio::time::Instant::from_std) {
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
        }
        tokio::select! {
            res = relay.run(Mode::Relay, &mut ctx) => match res {
                Ok(Stop::Policy) => {
                    let policy = ctx.policy.expect("a policy stop records why");
                    let (to_client, to_backend) = policy.closes();
                    let deadline = tokio::time::Instant::now() + close_grace;
                    Box::pin(close_on_purpose(&mut relay, &mut ctx, deadline, to_client, to_backend)).await;
                    let (code, reason) = match policy.dir {
                        Dir::ClientToBackend => to_client,
                        Dir::BackendToClient => to_backend,
                    };
                    return Outcome::Ended(Ending {
                        side: Side::Proxy,
                        code: Some(code),
                        reason: reason.to_string(),
                        error: None,
                        limit: policy.limit,
                    });
                }
                Err(e) if ctx.first_close == Some(Side::Backend)
                    && relay.down.backend_gone(Mode::Relay, &ctx) =>
                {
                    // Writing to the backend failed first: it is gone all the same.
                    ctx.backend_error = Some(e);
                    relay.down.eof = true;
                    relay.down.stopped = true;
                    gone = true;
                    break (BACKEND_GONE.0, BACKEND_GONE.1.to_string(), None);
                }
                Ok(Stop::BackendGone) => {
                    gone = true;
                    break (BACKEND_GONE.0, BACKEND_GONE.1.to_string(), None);
                }
                Ok(_) => return Outcome::Ended(natural_ending(shared, &ctx, None)),
                Err(e) => return Outcome::Ended(natural_ending(shared, &ctx, Some(e))),
            },
            _ = shared.wake.notified() => {
                place_due = Some(Instant::now());
                look_due = Some(Instant::now());
                if let Some(req) = lock(&shared.close).take() {
                    match req.not_before {
                        // Paced (shutdown): relay on until its turn.
                        Some(at) if at > Instant::now() => delayed = Some(req),
                        _ => break (req.code, req.reason, req.by),
                    }
                }
            }
            _ = &mut timer, if due.is_some() => {
                let now = Instant::now();
                let is_due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
                if is_due(place_due) {
                    place_due = inject::place(&mut relay, &mut ctx);
                }
                if is_due(look_due) {
                    look_due = inject::look(&relay, &ctx, holds.get_or_insert_with(Default::default))
                        .then(|| Instant::now() + inject::LOOK);
                }
                if let Some(p) = pinger.as_mut().filter(|_| ping_due <= now) {
                    match p.tick(&mut relay, &mut ctx, now) {
                        Ok(next) => ping_due = next,
                        Err(dead) => {
                            let reason = match dead {
                                Side::Client => "client missed ping",
                                _ => "backend missed ping",
                            };
                            let deadline = tokio::time::Instant::now() + close_grace;
                            Box::pin(close_dead_side(&mut relay, &mut ctx, dead, deadline, reason)).await;
                            return Outcome::Ended(Ending {
                                side: dead,
                                code: Some(crate::ws::close::GOING_AWAY),
                                reason: reason.to_string(),
                                error: None,
                                limit: None,
                            });
                        }
                    }
                }
                if is_due(delayed.as_ref().and_then(|r| r.not_before)) {
                    let req = delayed.take().expect("a delayed close is pending");
                    break 'relay (req.code, req.reason, req.by);
                }
                if !idle.is_zero() && idle_deadline <= now {
                    let quiet = ctx.last_active.elapsed();
                    // A held tunnel is silent because an operator holds it: the time
                    // held counts as activity, so a release does not meet an overdue
                    // cut.
                    if look_due.is_some() {
                        ctx.last_active = Instant::now();
                        idle_deadline = Instant::now() + idle;
                    } else if quiet >= idle {
                        break 'relay (1001, "idle timeout".to_string(), None);
                    } else {
                        idle_deadline = Instant::now() + (idle - quiet);
                    }
                }
                if park_at(&relay, park_base).is_some_and(|at| at <= now) {
                    // A ping whose Pong came is done with (the Pong clears
                    // `ctx.pong`); one still unanswered keeps the tunnel up.
                    let quiet = delayed.is_none()
                        && place_due.is_none()
                        && look_due.is_none()
                        && relay.quiet(&ctx);
                    if quiet {
                        let state = Resume {
                            last_active: ctx.last_active,
                            last_read: [relay.up.last_read, relay.down.last_read],
                            idle_deadline,
                            ping_due,
                            ping_seq: pinger.as_ref().map_or(0, |p| p.seq()),
                        };
                        match relay.into_plain() {
                            Ok((client, backend)) => {
                                return Outcome::Parked {
                                    client,
                                    backend,
                                    state,
                                }
                            }
                            Err(back) => relay = back,
                        }
                    }
                    // Busy with something other than bytes: look again later.
                    park_base = now;
                }
            }
        }
    };
    let mut deadline = tokio::time::Instant::now() + close_grace;
    if let Some(by) = by {
        deadline = deadline.min(by.into());
    }
    let close = (code, reason.as_str());
    // Boxed, as the closes above: a future awaited once per tunnel, at its end,
    // need not be room every idle tunnel holds.
    Box::pin(close_on_purpose(
        &mut relay, &mut ctx, deadline, close, close,
    ))
    .await;
    Outcome::Ended(Ending {
        // A vanished backend ended it; the code is the Close the client was given.
        side: if gone { Side::Backend } else { Side::Proxy },
        code: Some(code),
        reason,
        error: ctx.backend_error.map(|e| e.to_string()),
        limit: None,
    })
}

fn closed_both_ways(shared: &TunnelShared) -> bool {
    lock(&shared.c2b).stats().close.is_some() && lock(&shared.b2c).stats().close.is_some()
}

fn natural_ending(shared: &TunnelShared, ctx: &Ctx<'_>, error: Option<io::Error>) -> Ending {
    let side = ctx.first_close.unwrap_or(Side::Client);
    let dir = match side {
        Side::Backend => Dir::BackendToClient,
        _ => Dir::ClientToBackend,
    };
    let close = lock(shared.scanner(dir)).stats().close.clone();
    Ending {
        side,
        code: close.as_ref().and_then(|c| c.code),
        reason: close.map(|c| c.reason).unwrap_or_default(),
        error: error.map(|e| e.to_string()),
        limit: None,
    }
}

#[cfg(test)]
mod tests;
