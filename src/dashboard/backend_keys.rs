//! The keys that act on the selected backend: drain and enable act at once (pressing
//! again undoes them); kill, drain-and-close and rebalance ask first.

use crate::control::Command;
use crate::event::{AdminState, Health};

use super::input::{Effect, Popup, Ui};
use super::pending::Pending;
use super::state::State;

pub fn drain(state: &State, ui: &mut Ui) -> Option<Effect> {
    let b = ui.backend_index(state).map(|i| &state.backends[i])?;
    let (cmd, what) = match b.admin {
        AdminState::Active => (Command::Drain(b.id.clone()), "drain"),
        AdminState::Draining | AdminState::Drained => (Command::Undrain(b.id.clone()), "undrain"),
        AdminState::Disabled => {
            ui.flash(
                format!("{} is disabled: e enables it", b.id),
                state.now,
                true,
            );
            return None;
        }
    };
    ui.flash(format!("{what} sent: {}", b.id), state.now, false);
    Some(Effect::Send(cmd))
}

pub fn enable(state: &State, ui: &mut Ui) -> Option<Effect> {
    let b = ui.backend_index(state).map(|i| &state.backends[i])?;
    let cmd = match b.admin {
        AdminState::Disabled => Command::Enable(b.id.clone()),
        AdminState::Draining | AdminState::Drained => Command::Undrain(b.id.clone()),
        AdminState::Active => {
            ui.flash(format!("{} is already active", b.id), state.now, false);
            return None;
        }
    };
    ui.flash(format!("enable sent: {}", b.id), state.now, false);
    Some(Effect::Send(cmd))
}

pub fn kill(state: &State, ui: &mut Ui) {
    let Some(b) = ui.backend_index(state).map(|i| &state.backends[i]) else {
        return;
    };
    ui.popup = Some(Popup::Confirm(Pending::Kill {
        backend: b.id.clone(),
        tunnels: b.active_tunnels,
        code: ui.kill_close.0,
        reason: ui.kill_close.1.clone(),
    }));
}

pub fn drain_now(state: &State, ui: &mut Ui) {
    let Some(b) = ui.backend_index(state).map(|i| &state.backends[i]) else {
        return;
    };
    if b.admin == AdminState::Disabled {
        ui.flash(
            format!("{} is disabled: e enables it", b.id),
            state.now,
            true,
        );
        return;
    }
    ui.popup = Some(Popup::Confirm(Pending::DrainNow {
        backend: b.id.clone(),
        tunnels: b.active_tunnels,
    }));
}

pub fn rebalance(state: &State, ui: &mut Ui) {
    let Some(b) = ui.backend_index(state).map(|i| &state.backends[i]) else {
        return;
    };
    let pool = b.id.pool.to_string();
    let spread: Vec<u64> = state
        .backends
        .iter()
        .filter(|o| o.id.pool == b.id.pool && !o.backup)
        .filter(|o| o.admin == AdminState::Active && o.health == Health::Up)
        .map(|o| o.active_tunnels)
        .collect();
    if spread.len() < 2 {
        ui.flash(
            format!("pool {pool} has fewer than two backends in service: nothing to even"),
            state.now,
            true,
        );
        return;
    }
    ui.popup = Some(Popup::Confirm(Pending::Rebalance { pool, spread }));
}
