//! The live terminal dashboard. It sees the proxy only through the event bus, a
//! snapshot function and the control handle; it never touches proxy internals.
//!
//! - [`state`]: the pure model, built from a snapshot and advanced by events.
//! - [`keys`] and [`input`]: the binding table, and keys → UI changes and commands.
//! - [`ui`]: rendering, a pure function of `&State` and `&Ui`.
//! - [`logs`]: a tracing layer that feeds the log pane instead of the screen.
//!
//! [`run`] is the loop (generic over the ratatui backend so tests draw into a
//! `TestBackend`); [`run_terminal`] wraps it with a real terminal.

mod backend_keys;
pub mod detail;
mod export;
pub mod find;
pub mod fmt;
pub mod inject;
pub mod input;
pub mod keys;
pub mod logs;
pub mod message;
mod message_keys;
mod pending;
pub mod rates;
pub mod rows;
pub mod state;
pub mod tail_filter;
mod theme;
mod tunnel;
pub mod ui;

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::control::ControlHandle;
use crate::event::{Event, Snapshot};
use crossterm::event::{Event as TermEvent, EventStream, KeyEvent};
use futures_util::StreamExt;
use ratatui::backend::Backend;
use ratatui::Terminal;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::MissedTickBehavior;

pub use input::{handle, Effect, Ui};
pub use logs::{log_channel, LogLayer, LogReceiver};
pub use state::State;

/// The dashboard's frame period: 10 frames per second.
pub const TICK: Duration = Duration::from_millis(100);

/// Why the dashboard returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The user quit: the caller should shut the proxy down gracefully.
    Quit,
    /// The event bus closed: the proxy has stopped on its own.
    ProxyStopped,
    /// The key source ended (the terminal went away).
    InputClosed,
}

/// Everything about a run that has a sensible default.
pub struct Options {
    /// Time between frames.
    pub tick: Duration,
    /// A line under the header (for example the demo's URL).
    pub banner: Option<String>,
    /// Log lines for the log pane, from [`log_channel`].
    pub logs: Option<LogReceiver>,
    /// The Close code and reason a kill sends.
    pub kill_close: input::KillClose,
    /// Where the open detail's whole messages come from (the proxy's captures).
    pub messages: Option<MessagesSource>,
    /// Copy (`y`) writes an OSC 52 sequence to stdout (set by [`run_terminal`]).
    pub osc52: bool,
    /// Header values shown redacted unless revealed (`v`), and in exports.
    pub redact: crate::inspect::redact::Redact,
    /// Searches every live tunnel's captured messages (`f`).
    pub search: Option<SearchSource>,
}

/// A search of captured messages: the hits, or None while they are still being
/// gathered (from remote instances), in which case the dashboard asks again each
/// tick with the same query. A local proxy answers at once
/// (`ProxyHandle::search_source`).
pub type SearchSource =
    std::sync::Arc<dyn Fn(&str) -> Option<Vec<crate::event::SearchHit>> + Send + Sync>;

/// How long the dashboard waits for a search's hits before giving up on it.
const SEARCH_PATIENCE: Duration = Duration::from_secs(10);

/// A tunnel's captured messages, None when it is not live (see
/// `ProxyHandle::messages_source`).
pub type MessagesSource = std::sync::Arc<
    dyn Fn(crate::event::TunnelId) -> Option<Vec<crate::event::CapturedMessage>> + Send + Sync,
>;

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("tick", &self.tick)
            .field("banner", &self.banner)
            .field("kill_close", &self.kill_close)
            .field("messages", &self.messages.is_some())
            .field("osc52", &self.osc52)
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tick: TICK,
            banner: None,
            logs: None,
            kill_close: input::KillClose::default(),
            messages: None,
            osc52: false,
            redact: Default::default(),
            search: None,
        }
    }
}

/// Runs the dashboard on `terminal` until the user quits or the proxy stops.
///
/// On every tick (and on every key) it applies the pending events, up to
/// [`MAX_EVENTS_PER_TICK`] (resyncing from `snapshot()` if the bus lagged), handles
/// pending keys, and draws once, so a burst of events costs one frame, not one per
/// event, and a flood cannot keep it from drawing or from reading keys.
pub async fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    mut events: broadcast::Receiver<Event>,
    snapshot: impl Fn() -> Snapshot,
    control: ControlHandle,
    mut keys: mpsc::Receiver<KeyEvent>,
    mut options: Options,
) -> Result<Exit, B::Error> {
    let mut state = State::from_snapshot(snapshot(), SystemTime::now());
    state.banner = options.banner.take();
    let mut ui = Ui {
        kill_close: options.kill_close.clone(),
        redact: options.redact.clone(),
        ..Ui::default()
    };
    let mut tick = tokio::time::interval(options.tick);
    // After a stall, draw once and carry on rather than drawing the missed frames.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending_keys = Vec::new();
    // A search whose hits are still being gathered, and since when.
    let mut searching: Option<(String, SystemTime)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            key = keys.recv() => match key {
                Some(k) => pending_keys.push(k),
                None => return Ok(Exit::InputClosed),
            },
        }
        let now = SystemTime::now();
        let bus_closed = drain_events(&mut events, &mut state, now);
        if state.needs_resync() {
            state.resync(snapshot(), now);
        }
        state.tick(now);
        input::take_reload_preview(&mut state, &mut ui);
        // The open detail's messages, fetched afresh each tick (kept as they were
        // once the tunnel has ended).
        if let (Some(src), Some(d)) = (&options.messages, &ui.detail) {
            if let Some(list) = src(d.id) {
                state.messages = Some((d.id, list));
            }
        }
        if let Some(logs) = options.logs.as_mut() {
            while let Ok(rec) = logs.rx.try_recv() {
                state.push_log(rec.level, rec.line);
            }
            state.logs_dropped = logs.dropped.load(Ordering::Relaxed);
        }
        if let (Some((query, since)), Some(search)) = (&searching, &options.search) {
            if let Some(hits) = search(query) {
                // The "searching…" line has done its job.
                ui.flash = None;
                find::show(&state, &mut ui, query.clone(), hits);
                searching = None;
            } else if now.duration_since(*since).unwrap_or_default() > SEARCH_PATIENCE {
                ui.flash(format!("no answer to the search for {query:?}"), now, true);
                searching = None;
            }
        }
        while let Ok(k) = keys.try_recv() {
            pending_keys.push(k);
        }
        for key in pending_keys.drain(..) {
            match handle(key, &state, &mut ui) {
                Some(Effect::Quit) => return Ok(Exit::Quit),
                Some(Effect::Copy(bytes)) if options.osc52 => {
                    use base64::Engine;
                    use std::io::Write;
                    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                    let mut out = io::stdout();
                    let _ = write!(out, "\x1b]52;c;{b64}\x07");
                    let _ = out.flush();
                }
                Some(Effect::Copy(_)) => {}
                Some(Effect::Search(query)) => match &options.search {
                    Some(search) => match search(&query) {
                        Some(hits) => find::show(&state, &mut ui, query, hits),
                        None => {
                            ui.flash(format!("searching for {query:?}…"), now, false);
                            searching = Some((query, now));
                        }
                    },
                    None => ui.flash("nothing to search here", now, true),
                },
                Some(Effect::Save(files)) => {
                    let mut done = Vec::new();
                    for (name, bytes) in &files {
                        // New files only: an existing one is never overwritten.
                        let written = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(name)
                            .and_then(|mut f| std::io::Write::write_all(&mut f, bytes));
                        match written {
                            Ok(()) => done.push(format!("{name} ({} bytes)", bytes.len())),
                            Err(e) => {
                                ui.flash(format!("cannot write {name}: {e}"), now, true);
                                done.clear();
                                break;
                            }
                        }
                    }
                    if !done.is_empty() {
                        ui.flash(format!("wrote {}", done.join(" and ")), now, false);
                    }
                }
                Some(Effect::Send(cmd)) => {
                    // try_send: a full control queue must not freeze the screen.
                    if let Err(e) = control.try_send(cmd) {
                        ui.flash(format!("command not sent: {e}"), now, true);
                    }
                }
                None => {}
            }
        }
        terminal.draw(|f| ui::draw(f, &state, &ui))?;
        if bus_closed {
            return Ok(Exit::ProxyStopped);
        }
    }
}

/// Most events applied per tick. Under a flood the rest wait for the next tick (or
/// are lost to lag and resynced): the screen keeps redrawing and keys keep working.
pub const MAX_EVENTS_PER_TICK: usize = 4096;

/// Applies the events waiting on the bus, at most [`MAX_EVENTS_PER_TICK`]; returns
/// whether the bus has closed.
fn drain_events(
    events: &mut broadcast::Receiver<Event>,
    state: &mut State,
    now: SystemTime,
) -> bool {
    for _ in 0..MAX_EVENTS_PER_TICK {
        match events.try_recv() {
            Ok(ev) => state.apply(&ev, now),
            Err(TryRecvError::Empty) => return false,
            // Missed events cannot be replayed: note it and rebuild from a snapshot.
            Err(TryRecvError::Lagged(_)) => state.on_lagged(),
            Err(TryRecvError::Closed) => return true,
        }
    }
    false
}

/// Restores the terminal when dropped, so every way out of [`run_terminal`] (return,
/// error, unwinding) leaves the shell usable.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the dashboard on the real terminal: raw mode, alternate screen, a panic hook
/// that restores the terminal before the panic message prints, and keys from
/// crossterm's event stream. The terminal is restored on every exit.
///
/// Call it only when stdout is a terminal, and route logs away from stdout/stderr
/// first (see [`log_channel`]).
pub async fn run_terminal(
    events: broadcast::Receiver<Event>,
    snapshot: impl Fn() -> Snapshot,
    control: ControlHandle,
    options: Options,
) -> io::Result<Exit> {
    // try_init installs ratatui's restoring panic hook before touching the terminal.
    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    let (tx, rx) = mpsc::channel(64);
    let reader = tokio::spawn(async move {
        let mut stream = EventStream::new();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(TermEvent::Key(k)) => {
                    if tx.send(k).await.is_err() {
                        break;
                    }
                }
                // Resizes need nothing: every draw fits the current size.
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let options = Options {
        osc52: true,
        ..options
    };
    let exit = run(&mut terminal, events, snapshot, control, rx, options).await;
    reader.abort();
    exit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BackendId;

    #[test]
    fn one_tick_applies_a_bounded_number_of_events_and_leaves_the_rest() {
        let (bus, mut rx) = broadcast::channel(4 * MAX_EVENTS_PER_TICK);
        for id in 0..(2 * MAX_EVENTS_PER_TICK) as u64 {
            bus.send(Event::BackendChosen {
                id,
                backend: BackendId::new("app", "127.0.0.1:9001"),
            })
            .unwrap();
        }
        let now = SystemTime::now();
        let mut state = State::from_snapshot(Snapshot::default(), now);
        assert!(!drain_events(&mut rx, &mut state, now));
        assert_eq!(
            rx.len(),
            MAX_EVENTS_PER_TICK,
            "the rest waits for the next tick"
        );
        assert!(!drain_events(&mut rx, &mut state, now));
        assert_eq!(rx.len(), 0);
        drop(bus);
        assert!(
            drain_events(&mut rx, &mut state, now),
            "a closed bus is reported"
        );
    }
}
