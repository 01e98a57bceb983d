//! A relay that stops when its tunnel has been silent a while, and starts again
//! from where it stopped: what it hands back ([`Outcome::Parked`]) and what it
//! starts from ([`Start`]). The tunnel waits meanwhile in its event loop's lot
//! (`proxy::park`), which holds only the sockets and this state.

use std::time::Instant;

use bytes::Bytes;
use tokio::net::TcpStream;

use super::relay::{Ctx, Half, Relay};
use super::{Ending, RelaySettings};
use crate::event::Dir;
use crate::proxy::stream::Stream;

/// Where a relay begins.
pub enum Start {
    /// Just upgraded: the streams, and the bytes hyper read past each side's head.
    Fresh {
        client: Stream,
        client_pre: Bytes,
        backend: Stream,
        backend_pre: Bytes,
    },
    /// Back from the lot (only plain tunnels park).
    Resumed {
        client: TcpStream,
        backend: TcpStream,
        state: Resume,
    },
}

/// How a relay stopped.
pub enum Outcome {
    Ended(Ending),
    /// Silent for `park_after` with nothing in flight: the sockets, and what the
    /// relay picks up from when it resumes.
    Parked {
        client: TcpStream,
        backend: TcpStream,
        state: Resume,
    },
}

/// What a parked tunnel's relay resumes from: its clocks.
#[derive(Debug, Clone)]
pub struct Resume {
    pub(super) last_active: Instant,
    /// When bytes last came from the client, from the backend (pings ask after it).
    pub(super) last_read: [Instant; 2],
    pub(super) idle_deadline: Instant,
    pub(super) ping_due: Instant,
    pub(super) ping_seq: u32,
}

impl Resume {
    /// When the tunnel must resume even if no one speaks: its idle timeout or its
    /// next ping.
    pub fn due(&self, settings: &RelaySettings) -> Option<Instant> {
        let idle = (!settings.idle.is_zero()).then_some(self.idle_deadline);
        let ping = settings.ping.is_some().then_some(self.ping_due);
        idle.into_iter().chain(ping).min()
    }
}

impl Start {
    pub(super) fn into_relay(self) -> (Relay, Option<Resume>) {
        match self {
            Start::Fresh {
                client,
                client_pre,
                backend,
                backend_pre,
            } => (
                Relay {
                    client,
                    backend,
                    up: Half::new(Dir::ClientToBackend, client_pre),
                    down: Half::new(Dir::BackendToClient, backend_pre),
                },
                None,
            ),
            Start::Resumed {
                client,
                backend,
                state,
            } => {
                let mut up = Half::new(Dir::ClientToBackend, Bytes::new());
                let mut down = Half::new(Dir::BackendToClient, Bytes::new());
                [up.last_read, down.last_read] = state.last_read;
                (
                    Relay {
                        client: Stream::Plain(client),
                        backend: Stream::Plain(backend),
                        up,
                        down,
                    },
                    Some(state),
                )
            }
        }
    }
}

impl Relay {
    /// Whether both streams can wait in a lot: plain TCP (TLS keeps its session
    /// state in the stream; HTTP/2 streams live in their connection).
    pub(super) fn parkable(&self) -> bool {
        matches!(
            (&self.client, &self.backend),
            (Stream::Plain(_), Stream::Plain(_))
        )
    }

    /// The two sockets of a plain tunnel; the relay back otherwise. (Only a relay
    /// that [`parkable`](Self::parkable) said yes to is asked, so the large `Err`
    /// is never moved in practice.)
    #[allow(clippy::result_large_err)]
    pub(super) fn into_plain(self) -> Result<(TcpStream, TcpStream), Relay> {
        match (self.client, self.backend) {
            (Stream::Plain(client), Stream::Plain(backend)) => Ok((client, backend)),
            (client, backend) => Err(Relay {
                client,
                backend,
                up: self.up,
                down: self.down,
            }),
        }
    }

    /// When bytes last came from either side.
    pub(super) fn last_read(&self) -> Instant {
        self.up.last_read.max(self.down.last_read)
    }

    /// Nothing in flight either way and nothing begun: no bytes waiting to be
    /// written, no end or close under way, no Pong owed, no operator's hold or
    /// injection waiting, not asked to close.
    pub(super) fn quiet(&self, ctx: &Ctx<'_>) -> bool {
        let idle = |h: &Half| {
            h.chunk.is_none()
                && h.pos >= h.end
                && !h.needs_flush
                && !h.eof
                && !h.shut
                && !h.stopped
                && h.withheld.is_none()
                && h.skip.is_none()
        };
        idle(&self.up)
            && idle(&self.down)
            && ctx.first_close.is_none()
            && ctx.policy.is_none()
            && ctx.backend_error.is_none()
            && ctx.pong.iter().all(Option::is_none)
            && !ctx.shared.needs_relay()
    }
}
