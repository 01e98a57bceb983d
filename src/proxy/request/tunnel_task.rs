//! A tunnel's life after the upgrade: its relay runs as a task until the tunnel
//! ends or has been silent for `park_after`; then the task ends and the tunnel
//! waits in its event loop's lot (`proxy::park`) as one small entry, and resumes
//! as a new task when a byte, a deadline or a command comes. Its end is reported
//! once, by whichever task sees it.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpStream;
use tracing::info;

use crate::event::{Event, Side};
use crate::proxy::admission::{ConnSlot, IpSlot};
use crate::proxy::headtimer::InFlightGuard;
use crate::proxy::park::{self, Parked};
use crate::proxy::pool::Lease;
use crate::proxy::registry::Registry;
use crate::proxy::tunnel::{self, Ending, Outcome, RelaySettings, Resume, Start, TunnelShared};

/// The tunnel's places under the connection limits (and, over HTTP/2, as a stream
/// in flight on its connection).
pub(super) type Slots = (Arc<ConnSlot>, Option<IpSlot>, Option<InFlightGuard>);

/// Everything a tunnel holds from its upgrade to its end, running or parked.
pub(super) struct TunnelTask {
    pub core: Arc<Registry>,
    pub shared: Arc<TunnelShared>,
    /// Its backend's count of tunnels; given back last.
    pub _lease: Lease,
    /// Given back before the end is published.
    pub slots: Option<Slots>,
    pub settings: RelaySettings,
}

/// Says how a tunnel ended if it is dropped before it can (its event loop stopped
/// with the shutdown grace run out, running or parked), so a recording still gets
/// its `end` line. The first ending set wins: a tunnel that ended normally is
/// unaffected.
impl Drop for TunnelTask {
    fn drop(&mut self) {
        self.shared.set_ended(&Ending {
            side: Side::Proxy,
            code: None,
            reason: "cut: the shutdown grace ran out".into(),
            error: None,
            limit: None,
        });
    }
}

/// Relays until the tunnel ends or parks.
pub(super) async fn relay(task: Box<TunnelTask>, start: Start) {
    let settings = task.settings.clone();
    match tunnel::run(&task.shared, start, settings, &task.core.bus).await {
        Outcome::Ended(ending) => finish(task, ending),
        Outcome::Parked {
            client,
            backend,
            state,
        } => park(task, client, backend, state),
    }
}

/// A tunnel waiting in a lot: its sockets, out of the reactor, and its clocks.
struct ParkedTunnel {
    task: TunnelTask,
    client: std::net::TcpStream,
    backend: std::net::TcpStream,
    state: Resume,
}

impl Parked for ParkedTunnel {
    fn fds(&self) -> [RawFd; 2] {
        [self.client.as_raw_fd(), self.backend.as_raw_fd()]
    }

    fn due(&self) -> Option<Instant> {
        self.state.due(&self.task.settings)
    }

    fn resume(self: Box<Self>) {
        let ParkedTunnel {
            task,
            client,
            backend,
            state,
        } = *self;
        if task.shared.parked.clear() {
            tell_parked(&task.core, task.shared.id, false);
        }
        let task = Box::new(task);
        let streams =
            TcpStream::from_std(client).and_then(|c| Ok((c, TcpStream::from_std(backend)?)));
        match streams {
            Ok((client, backend)) => {
                let start = Start::Resumed {
                    client,
                    backend,
                    state,
                };
                tokio::spawn(relay(task, start));
            }
            Err(e) => finish(task, lost(e)),
        }
    }
}

/// Parks the tunnel in this event loop's lot; resumes it at once if it cannot be.
fn park(task: Box<TunnelTask>, client: TcpStream, backend: TcpStream, state: Resume) {
    // Out of the reactor (a failure here closes the socket: the tunnel is lost).
    let streams = client.into_std().and_then(|c| Ok((c, backend.into_std()?)));
    let (client, backend) = match streams {
        Ok(s) => s,
        Err(e) => return finish(task, lost(e)),
    };
    let (shared, core) = (task.shared.clone(), task.core.clone());
    let entry = Box::new(ParkedTunnel {
        task: *task,
        client,
        backend,
        state,
    });
    match park::park(entry, &shared.parked, || shared.needs_relay()) {
        // Said once the entry is in the lot (the gauge counts it). Its resumption
        // is said after: the lot resumes entries on this thread, never before this
        // returns.
        Ok(()) => tell_parked(&core, shared.id, true),
        // Straight back into the reactor, as a resumption does.
        Err(entry) => entry.resume(),
    }
}

/// Tells observers, if any, that a tunnel parked or resumed.
fn tell_parked(core: &Registry, id: crate::event::TunnelId, parked: bool) {
    if core.observed() {
        core.publish(Event::Parked { id, parked });
    }
}

/// The ending of a tunnel whose sockets could not move in or out of the reactor.
fn lost(e: std::io::Error) -> Ending {
    Ending {
        side: Side::Proxy,
        code: None,
        reason: "lost while parking".into(),
        error: Some(e.to_string()),
        limit: None,
    }
}

/// Records and reports the end.
fn finish(mut task: Box<TunnelTask>, ending: Ending) {
    let slots = task.slots.take();
    let (core, shared) = (&task.core, &task.shared);
    let id = shared.id;
    shared.set_ended(&ending);
    core.unregister(id);
    if let Some(limit) = ending.limit {
        core.limit_hit(limit);
    }
    // Its places under the connection limits are free before its end is published.
    drop(slots);
    let stats = shared.stats();
    let duration = shared.opened.elapsed().unwrap_or_default();
    let (up, down) = (&stats.client_to_backend, &stats.backend_to_client);
    // The tunnel's span (in its connection's) is made again for its last line, not
    // kept: a parked tunnel holds as little as it can.
    let conn = crate::proxy::listener::conn_span(shared.client, &shared.listener);
    let span = conn.in_scope(|| super::upgrade::tunnel_span(shared.id, shared.client));
    let _entered = span.enter();
    info!(
        target: "tunnelscope::access",
        client = %shared.client,
        listener = %shared.listener,
        route = %shared.route,
        backend = %shared.backend,
        path = %shared.path,
        subprotocol = shared.handshake.subprotocol.as_deref().unwrap_or("-"),
        duration_ms = duration.as_millis() as u64,
        frames_in = up.frames(),
        bytes_in = up.bytes,
        frames_out = down.frames(),
        bytes_out = down.bytes,
        close_code = ending.code.map_or_else(|| "-".to_string(), |c| c.to_string()),
        closed_by = %ending.side,
        error = ending.error.as_deref().unwrap_or("-"),
        reason = %ending.reason,
        "tunnel closed"
    );
    if core.observed() {
        core.publish(Event::TunnelClosed {
            id,
            code: ending.code,
            reason: ending.reason,
            side: ending.side,
            duration,
            stats,
            error: ending.error,
        });
    }
}

#[cfg(test)]
mod tests {
    /// What a parked tunnel holds besides its shared state: this entry, boxed.
    /// Bounded to the allocator's 320-byte class (the next is 384), so that growth
    /// is a decision.
    #[test]
    fn a_parked_tunnel_is_one_small_entry() {
        let size = std::mem::size_of::<super::ParkedTunnel>();
        assert!(size <= 320, "a parked tunnel's entry is {size} bytes");
    }
}
