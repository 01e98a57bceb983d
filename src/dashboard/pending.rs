//! A destructive action (kill a backend, close a tunnel, quit with tunnels open)
//! waiting for its confirmation, with the words its popup shows and the command it
//! becomes once confirmed.

use std::net::SocketAddr;

use super::fmt::close_code_name;
use crate::control::{CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART};
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
        }
    }

    /// A second line saying what happens afterwards.
    pub fn consequence(&self) -> &'static str {
        match self {
            Pending::Kill { .. } => "It takes no new tunnels until enabled again (e).",
            Pending::CloseTunnel { .. } => "The client may reconnect to any backend.",
            Pending::Quit { .. } => "The proxy stops once they have closed.",
            Pending::Reload { .. } => "No tunnel is dropped: removed backends drain.",
        }
    }
}
