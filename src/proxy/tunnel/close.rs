//! Closing a tunnel on purpose (kill, close command, idle timeout, shutdown, a
//! violation or a limit): each direction stops at a frame boundary, each peer that
//! can take one gets a Close frame, both get until the deadline to answer.

use std::io;

use std::time::SystemTime;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::relay::{Ctx, Half, Mode, Relay};
use crate::event::{Dir, Limit, Side};
use crate::sync::lock;
use crate::ws;

/// The Close the client gets when its backend vanished without one: 1011 ("the
/// server encountered an unexpected condition"), so it can reconnect elsewhere.
pub const BACKEND_GONE: (u16, &str) = (1011, "backend went away");

/// Stops both directions at a frame boundary, sends Close frames, waits for the
/// peers to answer, then shuts both down; all of it over by `deadline` (the close
/// grace, or less when shutdown's own deadline comes first).
pub(super) async fn close_on_purpose(
    relay: &mut Relay,
    ctx: &mut Ctx<'_>,
    deadline: tokio::time::Instant,
    close_client: (u16, &str),
    close_backend: (u16, &str),
) {
    let shared = ctx.shared;
    // A shutdown that begins while this close runs may bring its deadline closer.
    let by = || match lock(&shared.close).as_ref().and_then(|r| r.by) {
        Some(b) => deadline.min(b.into()),
        None => deadline,
    };
    let _ = tokio::time::timeout_at(by(), relay.run(Mode::ToBoundary, ctx)).await;
    // A peer only gets our Close if its incoming direction is at a frame boundary,
    // is still open, and has not carried a Close already.
    let fits = |half: &Half| {
        let s = lock(shared.scanner(half.dir));
        !half.shut
            && half.pos >= half.end
            && match half.withheld {
                Some(close_forwarded) => !close_forwarded,
                None => s.at_boundary() && s.stats().close.is_none(),
            }
    };
    let to_client = fits(&relay.down);
    let to_backend = fits(&relay.up);
    let send = async {
        if to_client {
            relay
                .client
                .write_all(&ws::close_frame(close_client.0, close_client.1, None))
                .await?;
            relay.client.flush().await?;
        }
        if to_backend {
            let mask = ws::mask_key();
            relay
                .backend
                .write_all(&ws::close_frame(
                    close_backend.0,
                    close_backend.1,
                    Some(mask),
                ))
                .await?;
            relay.backend.flush().await?;
        }
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout_at(by(), send).await;
    // Whatever was cut off mid-frame is dropped: after our Close nothing else may go.
    relay.up.release();
    relay.down.release();
    let _ = tokio::time::timeout_at(by(), relay.run(Mode::Discard, ctx)).await;
    let _ = tokio::time::timeout_at(by(), async {
        let _ = relay.client.shutdown().await;
        let _ = relay.backend.shutdown().await;
    })
    .await;
}

/// A peer missed the proxy's Ping: the live side gets a Close 1001 naming why (if
/// its stream is at a frame boundary), and until the deadline to answer it; the
/// dead side gets nothing written to it (its socket is closed when the relay is
/// dropped), since writing to a peer that no longer reads could only block.
pub(super) async fn close_dead_side(
    relay: &mut Relay,
    ctx: &mut Ctx<'_>,
    dead: Side,
    deadline: tokio::time::Instant,
    reason: &str,
) {
    let shared = ctx.shared;
    // The half that writes to the live side reads from the dead one.
    let (toward_live, live_dir, live) = match dead {
        Side::Client => (&relay.up, Dir::BackendToClient, &mut relay.backend),
        _ => (&relay.down, Dir::ClientToBackend, &mut relay.client),
    };
    let fits = {
        let s = lock(shared.scanner(toward_live.dir));
        !toward_live.shut
            && toward_live.pos >= toward_live.end
            && toward_live.withheld.is_none()
            && s.at_boundary()
            && s.stats().close.is_none()
    };
    let mask = (dead == Side::Client).then(ws::mask_key);
    let _ = tokio::time::timeout_at(deadline, async {
        if fits {
            live.write_all(&ws::close_frame(ws::close::GOING_AWAY, reason, mask))
                .await?;
            live.flush().await?;
        }
        // Read (and count) what the live side still sends, up to its Close.
        let mut buf = vec![0u8; 4096];
        while lock(shared.scanner(live_dir)).stats().close.is_none() {
            let n = live.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            lock(shared.scanner(live_dir))
                .made()
                .feed(&buf[..n], SystemTime::now(), &mut |_| {});
        }
        live.shutdown().await
    })
    .await;
}

/// Why the proxy stops a tunnel on its own accord, from what one side sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// The direction the offending frame went.
    pub(super) dir: Dir,
    /// The Close code that calls for (the sender's, for a limit).
    pub(super) code: u16,
    pub(super) limit: Option<Limit>,
}

impl Policy {
    /// The Close frames (code, reason) for the client and for the backend: for a
    /// violation the same for both; for a limit, the sender gets the limit's code
    /// and the other side 1001.
    pub(super) fn closes(&self) -> ((u16, &'static str), (u16, &'static str)) {
        match self.limit {
            None => {
                let reason = match self.code {
                    1007 => "invalid payload data",
                    _ => "protocol error",
                };
                ((self.code, reason), (self.code, reason))
            }
            Some(limit) => {
                let sender = (limit.close_code(), limit.reason());
                let other = (1001, limit.reason());
                match self.dir {
                    Dir::ClientToBackend => (sender, other),
                    Dir::BackendToClient => (other, sender),
                }
            }
        }
    }
}
