//! `f`: find a string (the order id being chased) in every live tunnel's captured
//! messages. The input line runs the search on Enter; the matches are listed newest
//! first with a snippet each, and Enter on one opens its tunnel's detail on the
//! message list with that message selected.

use super::detail::Detail;
use super::input::{Effect, Popup, Ui};
use super::keys::Action;
use super::state::State;
use crate::event::SearchHit;

/// The input line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FindPrompt {
    pub text: String,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub query: String,
    pub hits: Vec<SearchHit>,
    pub selected: usize,
}

pub fn open(ui: &mut Ui) {
    ui.popup = Some(Popup::Find(FindPrompt::default()));
}

/// A bound key while the input line is open: Enter searches, Esc cancels.
pub fn in_prompt(action: Action, ui: &mut Ui) -> Option<Effect> {
    let Some(Popup::Find(p)) = ui.popup.as_ref() else {
        return None;
    };
    match action {
        Action::Confirm if !p.text.trim().is_empty() => {
            let query = p.text.trim().to_string();
            ui.popup = None;
            Some(Effect::Search(query))
        }
        Action::Cancel => {
            ui.popup = None;
            None
        }
        _ => None,
    }
}

/// Shows what the search for `query` found.
pub fn show(state: &State, ui: &mut Ui, query: String, hits: Vec<SearchHit>) {
    if hits.is_empty() {
        ui.flash(
            format!("no captured message contains {query:?} ([inspect] capture keeps them while someone watches)"),
            state.now,
            true,
        );
        return;
    }
    ui.popup = Some(Popup::Found(Found {
        query,
        hits,
        selected: 0,
    }));
}

/// A bound key while the matches are listed.
pub fn in_list(action: Action, state: &State, ui: &mut Ui) -> Option<Effect> {
    let Some(Popup::Found(f)) = ui.popup.as_mut() else {
        return None;
    };
    let last = f.hits.len().saturating_sub(1);
    match action {
        Action::MoveUp => f.selected = f.selected.saturating_sub(1),
        Action::MoveDown => f.selected = (f.selected + 1).min(last),
        Action::PageUp => f.selected = f.selected.saturating_sub(10),
        Action::PageDown => f.selected = (f.selected + 10).min(last),
        Action::Confirm => {
            let hit = f.hits.get(f.selected)?.clone();
            ui.popup = None;
            jump(state, ui, &hit);
        }
        Action::Cancel => ui.popup = None,
        _ => {}
    }
    None
}

/// Opens the hit's tunnel on its message list, the hit selected.
fn jump(state: &State, ui: &mut Ui, hit: &SearchHit) {
    if state.find(hit.tunnel).is_none() {
        ui.flash(format!("tunnel #{} is gone", hit.tunnel), state.now, true);
        return;
    }
    let mut d = Detail::new(hit.tunnel);
    d.messages = true;
    d.selected = Some((hit.dir, hit.seq));
    d.redact = ui.shown_redaction();
    ui.tunnel_sel = Some(hit.tunnel);
    ui.detail = Some(d);
}
