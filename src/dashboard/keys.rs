//! Keybindings as data: one table maps keys to [`Action`]s per [`Scope`], with the
//! help text the `?` overlay and the footer show. Changing a binding is editing a row
//! here; nothing else knows which key does what.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key asks for; [`super::input::handle`] turns it into UI changes and
/// commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    MoveUp,
    MoveDown,
    PageUp,
    PageDown,
    Top,
    Bottom,
    NextPanel,
    PrevPanel,
    /// Open the selected tunnel's detail view.
    Open,
    /// Leave the detail view, or clear the filter.
    Back,
    /// Drain the selected backend, or undrain it when draining/drained.
    Drain,
    /// Drain the selected backend and close its tunnels now at the pool's paced
    /// rate (after confirmation).
    DrainNow,
    /// Even the spread of the selected backend's pool (after confirmation).
    Rebalance,
    /// Kill the selected backend (after confirmation).
    Kill,
    /// Re-enable a disabled backend.
    Enable,
    /// Close the selected tunnel (after confirmation).
    CloseTunnel,
    Filter,
    Sort,
    SortReverse,
    /// Pause or resume the frame tail.
    Pause,
    /// Switch the detail's lower pane between frames and whole messages.
    ToggleMessages,
    /// Open the selected message in full.
    OpenMessage,
    /// The full view's next way of showing the message (text, JSON, hex).
    NextView,
    /// Copy the message to the clipboard (OSC 52: works over ssh and tmux).
    Copy,
    /// Write the message to a file in the working directory.
    Save,
    /// Open the input line that sends a message into the tunnel.
    Inject,
    /// In that line: send toward the other side.
    SwitchTarget,
    /// Search every tunnel's captured messages.
    Find,
    /// Show or redact credential header values (for the session).
    Reveal,
    /// Write the tunnel as HAR and as a JSON Lines recording.
    Export,
    /// Hide or show pings and pongs in the detail's lists.
    HidePings,
    /// Hold or release what the client sends.
    HoldClient,
    /// Hold or release what the backend sends.
    HoldBackend,
    ToggleLog,
    /// Re-read the config file (after a confirmation that shows what changes).
    Reload,
    Help,
    Quit,
    Confirm,
    Cancel,
}

/// Where a binding applies. Popups are modal: while one is open only its scope counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Overview and detail view.
    Any,
    Overview,
    Detail,
    Confirm,
    Help,
    Filter,
    /// One message in full.
    Message,
    /// The input line of `i`.
    Inject,
    /// The input line of `f`.
    Find,
    /// What `f` found.
    Found,
}

impl Scope {
    pub fn title(self) -> &'static str {
        match self {
            Scope::Any => "Anywhere",
            Scope::Overview => "Overview",
            Scope::Detail => "Tunnel detail",
            Scope::Confirm => "Confirmation",
            Scope::Help => "Help",
            Scope::Filter => "Filter prompt",
            Scope::Message => "Message view",
            Scope::Inject => "Send into the tunnel",
            Scope::Find => "Find in messages",
            Scope::Found => "Messages found",
        }
    }
}

/// A key with the modifiers that matter (Shift is implied by the character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl Key {
    pub const fn plain(code: KeyCode) -> Self {
        Self {
            code,
            mods: KeyModifiers::NONE,
        }
    }

    pub const fn ch(c: char) -> Self {
        Self::plain(KeyCode::Char(c))
    }

    pub const fn ctrl(c: char) -> Self {
        Self {
            code: KeyCode::Char(c),
            mods: KeyModifiers::CONTROL,
        }
    }

    /// Whether a key event from the terminal is this key. Shift is ignored because
    /// terminals disagree on reporting it with `?`, `G` or BackTab.
    pub fn matches(&self, ev: &KeyEvent) -> bool {
        let mods = ev.modifiers - KeyModifiers::SHIFT;
        let code = match ev.code {
            // Some terminals send Shift+Tab as Tab with Shift.
            KeyCode::Tab if ev.modifiers.contains(KeyModifiers::SHIFT) => KeyCode::BackTab,
            c => c,
        };
        code == self.code && mods == self.mods
    }

    /// The key as help text writes it.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Up => "↑".to_string(),
            KeyCode::Down => "↓".to_string(),
            KeyCode::PageUp => "PgUp".to_string(),
            KeyCode::PageDown => "PgDn".to_string(),
            KeyCode::Home => "Home".to_string(),
            KeyCode::End => "End".to_string(),
            KeyCode::Tab => "Tab".to_string(),
            KeyCode::BackTab => "S-Tab".to_string(),
            KeyCode::Enter => "Enter".to_string(),
            KeyCode::Esc => "Esc".to_string(),
            KeyCode::Char(c) => c.to_string(),
            other => format!("{other:?}"),
        };
        if self.mods.contains(KeyModifiers::CONTROL) {
            format!("Ctrl-{base}")
        } else {
            base
        }
    }
}

/// One row of the table: these keys, in this scope, do this.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub keys: &'static [Key],
    pub scope: Scope,
    pub action: Action,
    pub help: &'static str,
}

const fn bind(keys: &'static [Key], scope: Scope, action: Action, help: &'static str) -> Binding {
    Binding {
        keys,
        scope,
        action,
        help,
    }
}

use Action as A;
use KeyCode as K;
use Scope as S;

/// Every binding of the dashboard. The help overlay lists exactly this.
#[rustfmt::skip]
pub const BINDINGS: &[Binding] = &[
    bind(&[Key::plain(K::Up), Key::ch('k')], S::Any, A::MoveUp, "move up / scroll back"),
    bind(&[Key::plain(K::Down), Key::ch('j')], S::Any, A::MoveDown, "move down / scroll on"),
    bind(&[Key::plain(K::PageUp)], S::Any, A::PageUp, "page up"),
    bind(&[Key::plain(K::PageDown)], S::Any, A::PageDown, "page down"),
    bind(&[Key::plain(K::Home), Key::ch('g')], S::Any, A::Top, "first row / oldest frame"),
    bind(&[Key::plain(K::End), Key::ch('G')], S::Any, A::Bottom, "last row / newest frame"),
    bind(&[Key::plain(K::Tab)], S::Overview, A::NextPanel, "next panel"),
    bind(&[Key::plain(K::BackTab)], S::Overview, A::PrevPanel, "previous panel"),
    bind(&[Key::plain(K::Enter)], S::Overview, A::Open, "open detail / filter backend"),
    bind(&[Key::plain(K::Esc)], S::Overview, A::Back, "clear the filter"),
    bind(&[Key::plain(K::Esc)], S::Detail, A::Back, "back to the overview"),
    bind(&[Key::ch('d')], S::Overview, A::Drain, "drain / undrain backend"),
    bind(&[Key::ch('D')], S::Overview, A::DrainNow, "drain, close tunnels paced (confirm)"),
    bind(&[Key::ch('b')], S::Overview, A::Rebalance, "rebalance backend's pool (confirm)"),
    bind(&[Key::ch('x')], S::Overview, A::Kill, "kill backend (confirm)"),
    bind(&[Key::ch('e')], S::Overview, A::Enable, "enable disabled backend"),
    bind(&[Key::ch('c')], S::Any, A::CloseTunnel, "close tunnel (confirm)"),
    bind(&[Key::ch('/')], S::Overview, A::Filter, "filter tunnels"),
    bind(&[Key::ch('s')], S::Overview, A::Sort, "sort by next column"),
    bind(&[Key::ch('S')], S::Overview, A::SortReverse, "reverse sort order"),
    bind(&[Key::ch('p')], S::Detail, A::Pause, "pause / resume frame tail"),
    bind(&[Key::ch('m')], S::Detail, A::ToggleMessages, "frames / whole messages"),
    bind(&[Key::plain(K::Enter)], S::Detail, A::OpenMessage, "open the message in full"),
    bind(&[Key::ch('/')], S::Detail, A::Filter, "filter (words, re:, -> <-, op:)"),
    bind(&[Key::ch('v')], S::Detail, A::Reveal, "show / redact credential headers"),
    bind(&[Key::ch('E')], S::Detail, A::Export, "export as HAR and JSON Lines files"),
    bind(&[Key::ch('P')], S::Detail, A::HidePings, "hide / show pings and pongs"),
    bind(&[Key::ch('i')], S::Detail, A::Inject, "send a message into the tunnel"),
    bind(&[Key::ch('h')], S::Detail, A::HoldClient, "hold / release what the client sends"),
    bind(&[Key::ch('H')], S::Detail, A::HoldBackend, "hold / release what the backend sends"),
    bind(&[Key::plain(K::Up), Key::ch('k')], S::Message, A::MoveUp, "scroll up"),
    bind(&[Key::plain(K::Down), Key::ch('j')], S::Message, A::MoveDown, "scroll down"),
    bind(&[Key::plain(K::PageUp)], S::Message, A::PageUp, "page up"),
    bind(&[Key::plain(K::PageDown)], S::Message, A::PageDown, "page down"),
    bind(&[Key::plain(K::Tab)], S::Message, A::NextView, "text / JSON / decoders / hex"),
    bind(&[Key::ch('y')], S::Message, A::Copy, "copy (OSC 52)"),
    bind(&[Key::ch('w')], S::Message, A::Save, "write to a file"),
    bind(&[Key::plain(K::Esc), Key::ch('q')], S::Message, A::Cancel, "close"),
    bind(&[Key::ch('f')], S::Any, A::Find, "find text in every tunnel's messages"),
    bind(&[Key::ch('l')], S::Any, A::ToggleLog, "show / hide log pane"),
    bind(&[Key::ch('R')], S::Any, A::Reload, "reload config (confirm)"),
    bind(&[Key::ch('?')], S::Any, A::Help, "this help"),
    bind(&[Key::ch('q'), Key::ctrl('c')], S::Any, A::Quit, "quit (asks if tunnels open)"),
    bind(&[Key::ch('y'), Key::plain(K::Enter)], S::Confirm, A::Confirm, "yes, do it"),
    bind(&[Key::ch('n'), Key::plain(K::Esc)], S::Confirm, A::Cancel, "no, cancel"),
    bind(&[Key::ch('?'), Key::plain(K::Esc), Key::ch('q')], S::Help, A::Cancel, "close help"),
    bind(&[Key::plain(K::Down), Key::ch('j')], S::Help, A::MoveDown, "scroll help"),
    bind(&[Key::plain(K::Up), Key::ch('k')], S::Help, A::MoveUp, "scroll help back"),
    bind(&[Key::plain(K::Enter)], S::Inject, A::Confirm, "send (prefixes hex: ping: close:)"),
    bind(&[Key::plain(K::Tab)], S::Inject, A::SwitchTarget, "toward the backend / the client"),
    bind(&[Key::plain(K::Esc)], S::Inject, A::Cancel, "cancel"),
    bind(&[Key::plain(K::Enter)], S::Find, A::Confirm, "search"),
    bind(&[Key::plain(K::Esc)], S::Find, A::Cancel, "cancel"),
    bind(&[Key::plain(K::Up), Key::ch('k')], S::Found, A::MoveUp, "previous match"),
    bind(&[Key::plain(K::Down), Key::ch('j')], S::Found, A::MoveDown, "next match"),
    bind(&[Key::plain(K::Enter)], S::Found, A::Confirm, "open it in its tunnel"),
    bind(&[Key::plain(K::Esc), Key::ch('q')], S::Found, A::Cancel, "close"),
    bind(&[Key::plain(K::Enter)], S::Filter, A::Confirm, "keep filter"),
    bind(&[Key::plain(K::Esc)], S::Filter, A::Cancel, "clear filter"),
];

/// The action `ev` triggers in `scope`, if any. Key releases and repeats of
/// non-movement keys are ignored (Windows terminals report releases too).
pub fn action_for(ev: &KeyEvent, scope: Scope) -> Option<Action> {
    if ev.kind == KeyEventKind::Release {
        return None;
    }
    let modal = matches!(
        scope,
        Scope::Confirm
            | Scope::Help
            | Scope::Filter
            | Scope::Message
            | Scope::Inject
            | Scope::Find
            | Scope::Found
    );
    BINDINGS
        .iter()
        .filter(|b| b.scope == scope || (!modal && b.scope == Scope::Any))
        .find(|b| b.keys.iter().any(|k| k.matches(ev)))
        .map(|b| b.action)
}

/// The bindings of one scope, for help and hints.
pub fn in_scope(scope: Scope) -> impl Iterator<Item = &'static Binding> {
    BINDINGS.iter().filter(move |b| b.scope == scope)
}

/// "↑/k" for a binding's keys.
pub fn keys_label(b: &Binding) -> String {
    b.keys.iter().map(Key::label).collect::<Vec<_>>().join("/")
}

/// The first key bound to `action` in `scope`, for hints like "d drain".
pub fn key_for(action: Action, scope: Scope) -> Option<String> {
    BINDINGS
        .iter()
        .find(|b| b.action == action && (b.scope == scope || b.scope == Scope::Any))
        .and_then(|b| b.keys.first())
        .map(Key::label)
}
