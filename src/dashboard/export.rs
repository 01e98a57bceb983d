//! `E` in a tunnel's detail: the tunnel written to two new files in the working
//! directory, `tunnel-7.har` (HAR 1.2 as Chrome exports a WebSocket) and
//! `tunnel-7.jsonl` (the full-fidelity recording `tunnelscope replay` reads), with
//! the messages capture holds. Credentials are redacted as configured
//! (`[inspect] reveal_secrets`), whatever `v` shows on screen.

use super::input::{Effect, Ui};
use super::state::{Ending, State};
use crate::inspect::{har, recording};

pub fn export(state: &State, ui: &mut Ui) -> Option<Effect> {
    let d = ui.detail.as_ref()?;
    let (t, closed) = state.find(d.id)?;
    let info = t.info();
    let messages: &[crate::event::CapturedMessage] = match &state.messages {
        Some((id, list)) if *id == t.id => list,
        _ => &[],
    };
    let tls = state
        .listeners
        .iter()
        .any(|l| *l.name == *t.listener && l.tls);
    let doc = har::har(&info, messages, tls, &ui.redact);
    let har_bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    let ended = closed.and_then(|c| match &c.ending {
        Ending::Closed {
            code, reason, side, ..
        } => Some(recording::Ended {
            side: side.to_string(),
            code: *code,
            reason: reason.clone(),
        }),
        _ => None,
    });
    let lines = recording::write(&info, messages, ended.as_ref(), &ui.redact);
    if messages.is_empty() {
        ui.flash(
            "no messages captured yet: the files hold the handshake only",
            state.now,
            false,
        );
    }
    Some(Effect::Save(vec![
        (format!("tunnel-{}.har", t.id), har_bytes),
        (format!("tunnel-{}.jsonl", t.id), lines.into_bytes()),
    ]))
}
