//! A destructive action (kill or drain-and-close a backend, rebalance a pool, close
//! a tunnel, quit with tunnels open)
//! waiting for its confirmation, with the words its popup shows and the command it
//! becomes once confirmed.

use std::net::SocketAddr;

use super::fmt::close_code_name;
use super::input::{Effect, Popup, Ui, CLOSE_REASON};
use super::state::State;
use crate::control::{Command, CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART};
use crate::event::{BackendId, TunnelId};

/// A destructive action waiting for a yes or no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Kill {
        backend: BackendId,
        tunnels: u64,
        /// The Close frame the backend's clients get (`[proxy] kill_close_*`).
        code: u16,
        reason: String,
    },
    CloseTunnel {
        id: TunnelId,
        client: SocketAddr,
        backend: Option<BackendId>,
    },
    Quit {
        tunnels: usize,
    },
    /// Drain the backend and close its tunnels now, paced.
    DrainNow {
        backend: BackendId,
        tunnels: u64,
    },
    /// Close a share of the busiest backends' tunnels so reconnects even the spread.
    Rebalance {
        pool: String,
        /// Live tunnels per backend in service, as the dashboard sees them.
        spread: Vec<u64>,
    },
    /// Re-read the config file; `changes` is what the proxy worked out it would do.
    Reload {
        changes: String,
    },
}

fn tunnels_word(n: u64) -> String {
    if n == 1 {
        "1 tunnel".to_string()
    } else {
        format!("{n} tunnels")
    }
}

impl Pending {
    /// The question the popup asks, naming what will be closed and with which code.
    pub fn message(&self) -> String {
        match self {
            Pending::Kill {
                backend,
                tunnels,
                code,
                ..
            } => format!(
                "Kill backend {backend}? {} will be closed with code {code} ({}).",
                tunnels_word(*tunnels),
                close_code_name(*code),
            ),
            Pending::CloseTunnel {
                id,
                client,
                backend,
            } => {
                let to = backend
                    .as_ref()
                    .map(|b| format!(" → {b}"))
                    .unwrap_or_default();
                format!(
                    "Close tunnel #{id} ({client}{to})? It will be closed with code {CLOSE_SERVICE_RESTART} ({}).",
                    close_code_name(CLOSE_SERVICE_RESTART),
                )
            }
            Pending::Quit { tunnels } => format!(
                "Quit tunnelscope? {} open will be closed with code {CLOSE_GOING_AWAY} ({}).",
                tunnels_word(*tunnels as u64),
                close_code_name(CLOSE_GOING_AWAY),
            ),
            Pending::Reload { changes } => format!("Reload the config file? {changes}."),
            Pending::DrainNow { backend, tunnels } => format!(
                "Drain {backend} and close its {} now with code {CLOSE_SERVICE_RESTART} ({}), a few a second?",
                tunnels_word(*tunnels),
                close_code_name(CLOSE_SERVICE_RESTART),
            ),
            Pending::Rebalance { pool, spread } => {
                let spread: Vec<String> = spread.iter().map(u64::to_string).collect();
                format!(
                    "Rebalance pool {pool} (live tunnels {})? The busiest backends close their extra tunnels with code {CLOSE_SERVICE_RESTART} ({}), a few a second.",
                    spread.join(" / "),
                    close_code_name(CLOSE_SERVICE_RESTART),
                )
            }
        }
    }

    /// The footer's word once confirmed.
    pub fn sent(&self) -> Option<String> {
        match self {
            Pending::Kill { backend, .. } => Some(format!("kill sent: {backend}")),
            Pending::CloseTunnel { id, .. } => Some(format!("close sent: tunnel #{id}")),
            Pending::Reload { .. } => Some("reload sent".into()),
            Pending::DrainNow { backend, .. } => Some(format!("drain and close sent: {backend}")),
            Pending::Rebalance { pool, .. } => Some(format!("rebalance sent: {pool}")),
            Pending::Quit { .. } => None,
        }
    }

    /// A second line saying what happens afterwards.
    pub fn consequence(&self) -> &'static str {
        match self {
            Pending::Kill { .. } => "It takes no new tunnels until enabled again (e).",
            Pending::CloseTunnel { .. } => "The client may reconnect to any backend.",
            Pending::Quit { .. } => "The proxy stops once they have closed.",
            Pending::Reload { .. } => "No tunnel is dropped: removed backends drain.",
            Pending::DrainNow { .. } => "Clients reconnect to the other backends as a trickle.",
            Pending::Rebalance { .. } => {
                "Their clients reconnect to the least busy backends; progress shows per backend."
            }
        }
    }
}

/// The effect of a confirmed destructive action.
pub(super) fn confirmed(pending: &Pending) -> Effect {
    match pending {
        Pending::Kill {
            backend,
            code,
            reason,
            ..
        } => Effect::Send(Command::Kill {
            backend: backend.clone(),
            code: *code,
            reason: reason.clone(),
        }),
        Pending::CloseTunnel { id, .. } => Effect::Send(Command::CloseTunnel {
            id: *id,
            code: CLOSE_SERVICE_RESTART,
            reason: CLOSE_REASON.into(),
        }),
        Pending::Quit { .. } => Effect::Quit,
        Pending::Reload { .. } => Effect::Send(Command::Reload),
        Pending::DrainNow { backend, .. } => Effect::Send(Command::DrainWithin {
            backend: backend.clone(),
            deadline: std::time::Duration::ZERO,
            close_rate: None,
        }),
        Pending::Rebalance { pool, .. } => Effect::Send(Command::Rebalance(pool.clone())),
    }
}

/// Turns the proxy's answer to `R` into the confirmation that shows what a reload
/// would change, or a flash saying why it would be refused.
pub fn take_reload_preview(state: &mut State, ui: &mut Ui) {
    let Some(preview) = state.reload_preview.take() else {
        return;
    };
    match preview {
        Ok(diff) => {
            ui.popup = Some(Popup::Confirm(Pending::Reload {
                changes: diff.summary(),
            }))
        }
        Err(why) => ui.flash(format!("reload refused: {why}"), state.now, true),
    }
}
