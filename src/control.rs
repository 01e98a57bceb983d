//! The commands the dashboard and the admin API send to the core. Control flows one
//! way: observers send a [`Command`] on a channel, only the core changes state, and
//! the optional reply says what happened.

use tokio::sync::{mpsc, oneshot};

use crate::event::{BackendId, Side, TunnelId};

/// Close code for a backend kill or a tunnel closed by an operator: service restart.
pub const CLOSE_SERVICE_RESTART: u16 = crate::ws::close::SERVICE_RESTART;
/// Close code sent to everyone when the proxy shuts down: going away.
pub const CLOSE_GOING_AWAY: u16 = crate::ws::close::GOING_AWAY;

/// What the core is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Stop giving the backend new tunnels; existing ones run on.
    Drain(BackendId),
    /// Drain, then close the tunnels still on the backend after `deadline`, at
    /// `close_rate` a second (the pool's when None), with 1012.
    DrainWithin {
        backend: BackendId,
        deadline: std::time::Duration,
        close_rate: Option<u32>,
    },
    /// Close, at the pool's `close_rate` with 1012, just enough tunnels on the
    /// busiest backends of the pool that their reconnects even the spread.
    Rebalance(String),
    /// Undo a drain (or a disable): the backend takes new tunnels again.
    Undrain(BackendId),
    /// Re-enable a disabled (for instance killed) backend.
    Enable(BackendId),
    /// Take no new tunnels, leave the existing ones alone.
    Disable(BackendId),
    /// Disable the backend and close all its tunnels at a frame boundary with a Close
    /// frame (`code`, `reason`), so clients reconnect elsewhere.
    Kill {
        backend: BackendId,
        code: u16,
        reason: String,
    },
    /// Close one tunnel at a frame boundary with a Close frame.
    CloseTunnel {
        id: TunnelId,
        code: u16,
        reason: String,
    },
    /// Send a message of the operator's into a tunnel, toward one side: whole, at a
    /// frame boundary between messages, masked toward the backend, uncompressed.
    Inject {
        id: TunnelId,
        to: Side,
        kind: InjectKind,
        payload: Vec<u8>,
    },
    /// Stop (`on`) or resume relaying what one side of a tunnel sends: the proxy
    /// stops reading that side, so its socket buffers fill and TCP pushes back.
    Hold { id: TunnelId, from: Side, on: bool },
    /// Close every tunnel with 1001 and stop, as SIGTERM does.
    Shutdown,
    /// Re-read the config file and apply it; a file that does not load is refused
    /// whole and the running config stays.
    Reload,
    /// Work out what a reload would change, changing nothing: published as a
    /// `ReloadPreview` event (the dashboard's confirmation shows it).
    PreviewReload,
}

/// Largest message an operator may inject.
pub const MAX_INJECT_BYTES: usize = 1 << 20;

/// What kind of message an injection sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectKind {
    Text,
    Binary,
    Ping,
}

impl InjectKind {
    pub fn parse(s: &str) -> Option<InjectKind> {
        match s {
            "text" => Some(InjectKind::Text),
            "binary" => Some(InjectKind::Binary),
            "ping" => Some(InjectKind::Ping),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InjectKind::Text => "text",
            InjectKind::Binary => "binary",
            InjectKind::Ping => "ping",
        }
    }

    pub fn opcode(self) -> u8 {
        match self {
            InjectKind::Text => crate::ws::opcode::TEXT,
            InjectKind::Binary => crate::ws::opcode::BINARY,
            InjectKind::Ping => crate::ws::opcode::PING,
        }
    }

    /// Why `payload` cannot be sent as this kind toward `to`, if it cannot.
    pub fn check(self, to: Side, payload: &[u8]) -> Result<(), String> {
        if to == Side::Proxy {
            return Err("send toward the client or the backend".into());
        }
        if payload.len() > MAX_INJECT_BYTES {
            return Err(format!(
                "{} bytes is over the {} bytes an injected message may have",
                payload.len(),
                MAX_INJECT_BYTES
            ));
        }
        match self {
            InjectKind::Text if std::str::from_utf8(payload).is_err() => {
                Err("a text message must be UTF-8 (send it as binary)".into())
            }
            InjectKind::Ping if payload.len() as u64 > crate::ws::MAX_CONTROL_PAYLOAD => Err(
                format!("a ping carries at most 125 bytes, not {}", payload.len()),
            ),
            _ => Ok(()),
        }
    }
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// How many tunnels were asked to close.
    Closing(usize),
    UnknownBackend(BackendId),
    UnknownPool(String),
    /// A rebalance began: tunnels each backend will close.
    Rebalancing(Vec<(BackendId, u64)>),
    /// The command does not apply (the message says why); nothing changed.
    Refused(String),
    UnknownTunnel(TunnelId),
    /// The config was reloaded with these changes.
    Reloaded(Box<crate::event::ConfigDiff>),
    /// A reload now would make these changes (nothing was changed).
    WouldReload(Box<crate::event::ConfigDiff>),
    /// The file did not load (the message names file:line:col and key), or there is
    /// no file to reload; the running config stays.
    ReloadRefused(String),
}

/// A command and where to send its outcome.
#[derive(Debug)]
pub struct Request {
    pub command: Command,
    pub reply: Option<oneshot::Sender<Outcome>>,
}

/// The sending half handed to observers; cheap to clone.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Request>,
}

/// The core went away before it could answer.
#[derive(Debug, thiserror::Error)]
#[error("the proxy core has stopped")]
pub struct CoreGone;

/// Why [`ControlHandle::try_send`] sent nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrySendError {
    /// The command queue is full: the core is busy; try again.
    #[error("the proxy core is busy (its command queue is full); try again")]
    Busy,
    /// The core has stopped.
    #[error("the proxy core has stopped")]
    Gone,
}

impl ControlHandle {
    pub fn new(tx: mpsc::Sender<Request>) -> Self {
        Self { tx }
    }

    /// Sends a command and waits for its outcome.
    pub async fn send(&self, command: Command) -> Result<Outcome, CoreGone> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                command,
                reply: Some(reply),
            })
            .await
            .map_err(|_| CoreGone)?;
        rx.await.map_err(|_| CoreGone)
    }

    /// Sends a command without waiting; for callers that must not block (a UI tick).
    pub fn try_send(&self, command: Command) -> Result<(), TrySendError> {
        self.tx
            .try_send(Request {
                command,
                reply: None,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => TrySendError::Busy,
                mpsc::error::TrySendError::Closed(_) => TrySendError::Gone,
            })
    }
}

#[cfg(test)]
mod try_send_tests {
    use super::*;

    #[test]
    fn a_full_queue_is_busy_and_a_closed_one_is_gone() {
        let (tx, rx) = mpsc::channel(1);
        let handle = ControlHandle::new(tx);
        assert_eq!(handle.try_send(Command::Shutdown), Ok(()));
        let busy = handle.try_send(Command::Shutdown).unwrap_err();
        assert_eq!(busy, TrySendError::Busy);
        assert!(busy.to_string().contains("busy"), "{busy}");
        drop(rx);
        assert_eq!(handle.try_send(Command::Shutdown), Err(TrySendError::Gone));
    }
}
