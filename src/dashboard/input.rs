//! Key handling: the [`Ui`] view state (focus, selections, sort, filter, popups) and
//! [`handle`], which turns a key into UI changes and at most one [`Effect`].
//!
//! Destructive commands (kill, close a tunnel, quit with tunnels open) only come out
//! of here after a confirm popup has been answered with `y`/Enter; drain and enable act
//! at once because they are undone by pressing the key again.

use std::time::SystemTime;

use crate::control::{Command, CLOSE_SERVICE_RESTART};
use crate::event::{Side, TunnelId};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::backend_keys;
use super::keys::action_for;
pub use super::keys::{Action, Scope};
use super::message::{MessageKey, View};
use super::message_keys;
use super::pending::confirmed;
pub use super::pending::{take_reload_preview, Pending};
use super::rows::{tunnel_rows, Row, SortKey};
use super::state::State;

/// Rows moved by PgUp/PgDn.
const PAGE: usize = 10;

/// The reason sent with close frames the dashboard asks for.
const KILL_REASON: &str = "backend killed by operator";
pub(super) const CLOSE_REASON: &str = "closed by operator";

/// What the run loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send a command to the proxy core.
    Send(Command),
    /// Leave the dashboard; the caller shuts the proxy down.
    Quit,
    /// Put these bytes on the clipboard (the terminal's, by OSC 52).
    Copy(Vec<u8>),
    /// Write new files of these names, with these bytes, in the working directory.
    Save(Vec<(String, Vec<u8>)>),
    /// Search every live tunnel's captured messages for this (the run loop asks the
    /// proxy and shows the matches with [`super::find::show`]).
    Search(String),
}

/// The overview panel that has the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Panel {
    Backends,
    #[default]
    Tunnels,
}

/// A modal popup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popup {
    Confirm(Pending),
    Help,
    /// The `/` prompt; typing edits [`Ui::filter`] live.
    Filter,
    /// One message in full (Enter on a message in the detail's list).
    Message(MessagePopup),
    /// The input line that sends a message into the tunnel (`i`).
    Inject(super::inject::InjectPrompt),
    /// The input line of a search across tunnels (`f`), then its matches.
    Find(super::find::FindPrompt),
    Found(super::find::Found),
}

pub use super::detail::Detail;

/// The full view of one captured message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePopup {
    pub tunnel: TunnelId,
    pub key: MessageKey,
    pub view: View,
    /// Lines scrolled down from the top.
    pub scroll: usize,
}

/// A short message in the footer after an action, e.g. "drain sent".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub text: String,
    pub at: SystemTime,
    pub error: bool,
}

/// Everything about the screen that is not about the proxy. Only [`handle`] (and the
/// run loop, for flashes) changes it; rendering reads it.
#[derive(Debug, Clone, Default)]
pub struct Ui {
    pub focus: Panel,
    pub backend_sel: usize,
    /// The selected tunnel, followed by id so live re-sorting does not move the cursor
    /// to another tunnel.
    pub tunnel_sel: Option<TunnelId>,
    /// Where the selection was, used when the selected tunnel disappears.
    pub tunnel_idx: usize,
    pub sort: SortKey,
    pub sort_desc: bool,
    pub filter: String,
    pub popup: Option<Popup>,
    pub detail: Option<Detail>,
    pub show_log: bool,
    pub flash: Option<Flash>,
    /// Close code and reason a kill sends (the proxy's `kill_close_code/_reason`).
    pub kill_close: KillClose,
    /// Lines the help overlay is scrolled down by (when it does not fit).
    pub help_scroll: usize,
    /// The header values shown redacted (`[inspect] reveal_secrets`, `redact`);
    /// exports use it as it is.
    pub redact: crate::inspect::redact::Redact,
    /// Secrets revealed on screen for this session (`v`).
    pub revealed: bool,
}

/// The Close frame a kill sends to the backend's clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillClose(pub u16, pub String);

impl Default for KillClose {
    fn default() -> Self {
        KillClose(CLOSE_SERVICE_RESTART, KILL_REASON.into())
    }
}

impl Ui {
    /// Which bindings apply now.
    pub fn scope(&self) -> Scope {
        match &self.popup {
            Some(Popup::Confirm(_)) => Scope::Confirm,
            Some(Popup::Help) => Scope::Help,
            Some(Popup::Filter) => Scope::Filter,
            Some(Popup::Message(_)) => Scope::Message,
            Some(Popup::Inject(_)) => Scope::Inject,
            Some(Popup::Find(_)) => Scope::Find,
            Some(Popup::Found(_)) => Scope::Found,
            None if self.detail.is_some() => Scope::Detail,
            None => Scope::Overview,
        }
    }

    /// The tunnel rows as the Tunnels panel shows them.
    pub fn rows<'a>(&self, state: &'a State) -> Vec<Row<'a>> {
        tunnel_rows(state, self.sort, self.sort_desc, &self.filter)
    }

    /// Index of the selected row in `rows`: the selected tunnel if still listed, else
    /// the same position, else nothing when the list is empty.
    pub fn selected_index(&self, rows: &[Row]) -> Option<usize> {
        if rows.is_empty() {
            return None;
        }
        self.tunnel_sel
            .and_then(|id| rows.iter().position(|r| r.tunnel.id == id))
            .or(Some(self.tunnel_idx.min(rows.len() - 1)))
    }

    /// The selected backend's index, clamped to the list.
    pub fn backend_index(&self, state: &State) -> Option<usize> {
        (!state.backends.is_empty()).then(|| self.backend_sel.min(state.backends.len() - 1))
    }

    /// How header values are shown on screen now.
    pub fn shown_redaction(&self) -> crate::inspect::redact::Redact {
        if self.revealed {
            crate::inspect::redact::Redact::new(&[], true)
        } else {
            self.redact.clone()
        }
    }

    /// Puts a message in the footer.
    pub fn flash(&mut self, text: impl Into<String>, at: SystemTime, error: bool) {
        self.flash = Some(Flash {
            text: text.into(),
            at,
            error,
        });
    }

    fn select_row(&mut self, rows: &[Row], idx: usize) {
        if let Some(r) = rows.get(idx) {
            self.tunnel_sel = Some(r.tunnel.id);
            self.tunnel_idx = idx;
        }
    }
}

/// Handles one key: updates `ui` and says what else must happen.
pub fn handle(key: KeyEvent, state: &State, ui: &mut Ui) -> Option<Effect> {
    let scope = ui.scope();
    let action = action_for(&key, scope);
    // Unbound keys type into whichever input line is open (releases aside).
    if action.is_none() {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        match (scope, ui.popup.as_mut()) {
            (Scope::Filter, _) => match ui.detail.as_mut() {
                Some(d) => {
                    let mut text = std::mem::take(&mut d.filter_text);
                    edit_line(&key, &mut text);
                    d.set_filter(text);
                }
                None => edit_line(&key, &mut ui.filter),
            },
            (Scope::Inject, Some(Popup::Inject(p))) => edit_line(&key, &mut p.text),
            (Scope::Find, Some(Popup::Find(p))) => edit_line(&key, &mut p.text),
            _ => {}
        }
        return None;
    }
    perform(action?, state, ui)
}

/// A key typed into an input line: a character is added, Backspace takes one off.
fn edit_line(key: &KeyEvent, line: &mut String) {
    match key.code {
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => line.push(c),
        KeyCode::Backspace => {
            line.pop();
        }
        _ => {}
    }
}

/// Carries out `action` as if its key had been pressed.
pub fn perform(action: Action, state: &State, ui: &mut Ui) -> Option<Effect> {
    let now = state.now;
    match ui.scope() {
        Scope::Confirm => {
            let Some(Popup::Confirm(pending)) = ui.popup.take() else {
                return None;
            };
            return match action {
                Action::Confirm => {
                    if let Some(text) = pending.sent() {
                        ui.flash(text, now, false);
                    }
                    Some(confirmed(&pending))
                }
                _ => None,
            };
        }
        Scope::Message => return message_keys::in_view(action, state, ui),
        Scope::Inject => return super::inject::in_prompt(action, state, ui),
        Scope::Find => return super::find::in_prompt(action, ui),
        Scope::Found => return super::find::in_list(action, state, ui),
        Scope::Help if action != Action::Cancel => {
            let by = match action {
                Action::MoveUp => -1,
                Action::MoveDown => 1,
                Action::PageUp => -(PAGE as isize),
                Action::PageDown => PAGE as isize,
                _ => 0,
            };
            ui.help_scroll = clamp(ui.help_scroll as isize + by, 200);
            return None;
        }
        Scope::Help | Scope::Filter => {
            if ui.popup == Some(Popup::Filter) {
                match (ui.detail.as_mut(), action) {
                    (Some(d), Action::Cancel) => d.set_filter(String::new()),
                    (Some(d), _) => {
                        // Keep what parsed: the line goes back to it.
                        let kept = d.filter.source.clone();
                        d.set_filter(kept);
                    }
                    (None, Action::Cancel) => ui.filter.clear(),
                    (None, _) => ui.focus = Panel::Tunnels,
                }
            }
            ui.popup = None;
            return None;
        }
        Scope::Any | Scope::Detail | Scope::Overview => {}
    }
    match action {
        Action::MoveUp => move_by(state, ui, -1),
        Action::MoveDown => move_by(state, ui, 1),
        Action::PageUp => move_by(state, ui, -(PAGE as isize)),
        Action::PageDown => move_by(state, ui, PAGE as isize),
        Action::Top => move_by(state, ui, isize::MIN / 2),
        Action::Bottom => move_by(state, ui, isize::MAX / 2),
        Action::NextPanel | Action::PrevPanel => {
            ui.focus = match ui.focus {
                Panel::Backends => Panel::Tunnels,
                Panel::Tunnels => Panel::Backends,
            };
        }
        Action::Open => open(state, ui),
        Action::Back => {
            if ui.detail.take().is_none() {
                ui.filter.clear();
            }
        }
        Action::Drain => return backend_keys::drain(state, ui),
        Action::DrainNow => backend_keys::drain_now(state, ui),
        Action::Enable => return backend_keys::enable(state, ui),
        Action::Kill => backend_keys::kill(state, ui),
        Action::Rebalance => backend_keys::rebalance(state, ui),
        Action::CloseTunnel => close_tunnel(state, ui),
        Action::Filter => ui.popup = Some(Popup::Filter),
        Action::Sort => {
            ui.sort = ui.sort.next();
            ui.flash(format!("sorted by {}", ui.sort.name()), now, false);
        }
        Action::SortReverse => ui.sort_desc = !ui.sort_desc,
        Action::Pause => toggle_pause(state, ui),
        Action::ToggleMessages => message_keys::toggle(state, ui),
        Action::OpenMessage => message_keys::open(state, ui),
        Action::NextView | Action::Copy | Action::Save | Action::SwitchTarget => {}
        Action::Inject => super::inject::open(state, ui),
        Action::Find => super::find::open(ui),
        Action::Reveal => {
            ui.revealed = !ui.revealed;
            let shown = ui.shown_redaction();
            if let Some(d) = ui.detail.as_mut() {
                d.redact = shown;
            }
            let text = if ui.revealed {
                "credentials shown for this session (v hides them)"
            } else {
                "credentials redacted"
            };
            ui.flash(text, now, false);
        }
        Action::Export => return super::export::export(state, ui),
        Action::HidePings => {
            if let Some(d) = ui.detail.as_mut() {
                d.hide_pings = !d.hide_pings;
                d.scroll = 0;
                let word = if d.hide_pings { "hidden" } else { "shown" };
                ui.flash(format!("pings and pongs {word}"), now, false);
            }
        }
        Action::HoldClient => return super::inject::toggle_hold(state, ui, Side::Client),
        Action::HoldBackend => return super::inject::toggle_hold(state, ui, Side::Backend),
        Action::ToggleLog => ui.show_log = !ui.show_log,
        Action::Reload => {
            // The proxy works out what would change; `take_reload_preview` asks.
            ui.flash("reading the config file…", now, false);
            return Some(Effect::Send(Command::PreviewReload));
        }
        Action::Help => {
            ui.help_scroll = 0;
            ui.popup = Some(Popup::Help);
        }
        Action::Quit => {
            let tunnels = state.live_count();
            // Following remote instances (`top`), quitting closes nothing.
            if tunnels == 0 || state.fleet.is_some() {
                return Some(Effect::Quit);
            }
            ui.popup = Some(Popup::Confirm(Pending::Quit { tunnels }));
        }
        Action::Confirm | Action::Cancel => {}
    }
    None
}

fn move_by(state: &State, ui: &mut Ui, delta: isize) {
    if ui.detail.as_ref().is_some_and(|d| d.messages) {
        return message_keys::move_selection(state, ui, delta);
    }
    if let Some(d) = ui.detail.as_mut() {
        // Scrolling back through a moving tail would make rows jump: freeze it first.
        if delta < 0 && d.frozen.is_none() {
            d.frozen = state
                .find(d.id)
                .map(|(t, _)| t.tail.iter().cloned().collect());
            ui.flash = Some(Flash {
                text: "tail paused while scrolling back (p resumes)".into(),
                at: state.now,
                error: false,
            });
        }
        let len = tail_len(state, d);
        d.scroll = clamp(d.scroll as isize - delta, len.saturating_sub(1));
        return;
    }
    match ui.focus {
        Panel::Backends => {
            let n = state.backends.len();
            ui.backend_sel = clamp(ui.backend_sel.min(n) as isize + delta, n.saturating_sub(1));
        }
        Panel::Tunnels => {
            let rows = ui.rows(state);
            let Some(i) = ui.selected_index(&rows) else {
                return;
            };
            let i = clamp(i as isize + delta, rows.len() - 1);
            ui.select_row(&rows, i);
        }
    }
}

fn clamp(v: isize, max: usize) -> usize {
    v.clamp(0, max as isize) as usize
}

/// How many frames the detail view can scroll through.
pub fn tail_len(state: &State, d: &Detail) -> usize {
    d.frames(state).len()
}

fn open(state: &State, ui: &mut Ui) {
    match ui.focus {
        // On a backend, Enter narrows the tunnel list to it: the usual next question.
        Panel::Backends => {
            if let Some(i) = ui.backend_index(state) {
                ui.filter = state.backends[i].id.to_string();
                ui.focus = Panel::Tunnels;
            }
        }
        Panel::Tunnels => {
            let rows = ui.rows(state);
            if let Some(i) = ui.selected_index(&rows) {
                ui.select_row(&rows, i);
                let mut d = Detail::new(rows[i].tunnel.id);
                d.redact = ui.shown_redaction();
                ui.detail = Some(d);
            }
        }
    }
}

fn close_tunnel(state: &State, ui: &mut Ui) {
    let now = state.now;
    let id = match &ui.detail {
        Some(d) => Some(d.id),
        None if ui.focus == Panel::Tunnels => {
            let rows = ui.rows(state);
            ui.selected_index(&rows).map(|i| rows[i].tunnel.id)
        }
        None => {
            ui.flash(
                "select a tunnel first (Tab to the Tunnels panel)",
                now,
                true,
            );
            return;
        }
    };
    let Some((t, closed)) = id.and_then(|id| state.find(id)) else {
        return;
    };
    if closed.is_some() {
        ui.flash(format!("tunnel #{} has already closed", t.id), now, true);
    } else if t.handshake.is_none() {
        ui.flash(format!("tunnel #{} is still handshaking", t.id), now, true);
    } else {
        ui.popup = Some(Popup::Confirm(Pending::CloseTunnel {
            id: t.id,
            client: t.client,
            backend: t.backend.clone(),
        }));
    }
}

fn toggle_pause(state: &State, ui: &mut Ui) {
    let Some(d) = ui.detail.as_mut() else {
        return;
    };
    if d.frozen.take().is_none() {
        d.frozen = state
            .find(d.id)
            .map(|(t, _)| t.tail.iter().cloned().collect());
    } else {
        d.scroll = 0;
    }
}
