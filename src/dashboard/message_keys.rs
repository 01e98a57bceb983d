//! Keys for whole messages: `m` switches the detail's lower pane to the captured
//! messages, the arrows choose one, Enter opens it in full; in the full view Tab
//! changes the view (text, JSON, a decoder, hex), the arrows and PgUp/PgDn scroll, `y` copies
//! it, Esc closes it.

use super::input::{Effect, MessagePopup, Popup, Ui};
use super::keys::Action;
use super::message::{self, View};
use super::state::State;
use crate::event::CapturedMessage;

/// Rows PgUp/PgDn scroll the full view by.
const PAGE: usize = 20;

/// The captured messages of the tunnel whose detail is open that its filter lets
/// through, oldest first.
pub fn of_detail<'a>(state: &'a State, ui: &Ui) -> Vec<&'a CapturedMessage> {
    ui.detail
        .as_ref()
        .map(|d| d.messages(state))
        .unwrap_or_default()
}

/// The index of the selected message in `list` (the newest when none is chosen or
/// the chosen one has been evicted or filtered out).
pub fn selected_index(list: &[&CapturedMessage], ui: &Ui) -> Option<usize> {
    let last = list.len().checked_sub(1)?;
    let chosen = ui.detail.as_ref().and_then(|d| d.selected);
    Some(
        chosen
            .and_then(|k| list.iter().position(|m| message::key(m) == k))
            .unwrap_or(last),
    )
}

pub fn toggle(state: &State, ui: &mut Ui) {
    let Some(d) = ui.detail.as_mut() else {
        return;
    };
    d.messages = !d.messages;
    if d.messages && of_detail(state, ui).is_empty() {
        ui.flash(
            "no whole messages yet: they are kept while someone watches ([inspect] capture)",
            state.now,
            false,
        );
    }
}

/// Moves the selection in the message list by `delta` (negative: older).
pub fn move_selection(state: &State, ui: &mut Ui, delta: isize) {
    let list = of_detail(state, ui);
    let Some(i) = selected_index(&list, ui) else {
        return;
    };
    let j = (i as isize + delta).clamp(0, list.len() as isize - 1) as usize;
    let key = message::key(list[j]);
    if let Some(d) = ui.detail.as_mut() {
        d.selected = Some(key);
    }
}

pub fn open(state: &State, ui: &mut Ui) {
    let list = of_detail(state, ui);
    let (Some(d), Some(i)) = (&ui.detail, selected_index(&list, ui)) else {
        return;
    };
    if !d.messages {
        return;
    }
    let m = list[i];
    ui.popup = Some(Popup::Message(MessagePopup {
        tunnel: d.id,
        key: message::key(m),
        view: View::best_for(m),
        scroll: 0,
    }));
}

/// A key while the full view is open.
pub fn in_view(action: Action, state: &State, ui: &mut Ui) -> Option<Effect> {
    let list = of_detail(state, ui);
    let Some(Popup::Message(p)) = ui.popup.as_mut() else {
        return None;
    };
    let m = list.iter().find(|m| message::key(m) == p.key);
    match action {
        Action::MoveUp => p.scroll = p.scroll.saturating_sub(1),
        Action::MoveDown => p.scroll += 1,
        Action::PageUp => p.scroll = p.scroll.saturating_sub(PAGE),
        Action::PageDown => p.scroll += PAGE,
        Action::NextView => {
            p.view = m.map_or(View::Text, |m| p.view.next(m));
            p.scroll = 0;
        }
        Action::Copy => {
            let bytes = m.map(|m| m.payload().to_vec())?;
            ui.flash(
                format!("copied {} bytes (OSC 52)", bytes.len()),
                state.now,
                false,
            );
            return Some(Effect::Copy(bytes));
        }
        Action::Save => {
            let m = m?;
            let payload = m.payload();
            let ext = match p.view {
                View::Json if message::json_lines(payload).is_some() => "json",
                View::Hex => "bin",
                _ if m.kind == crate::event::OpKind::Binary => "bin",
                _ => "txt",
            };
            let dir = match m.dir {
                crate::event::Dir::ClientToBackend => "c2b",
                crate::event::Dir::BackendToClient => "b2c",
            };
            let name = format!("tunnel-{}-{dir}-{}.{ext}", p.tunnel, m.seq);
            return Some(Effect::Save(vec![(name, payload.to_vec())]));
        }
        Action::Cancel => ui.popup = None,
        _ => {}
    }
    None
}
