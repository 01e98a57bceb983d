//! The Backends panel: address, admin/health state in colour, live and total tunnels,
//! a bar of each backend's share of the live tunnels, failures and the last error.

use std::time::{Duration, SystemTime};

use crate::event::{AdminState, BackendInfo, Health, PacedClose};
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table, TableState};
use ratatui::Frame;

use super::super::fmt;
use super::super::input::{Panel, Ui};
use super::super::keys::{Action, Scope};
use super::super::state::State;
use super::super::theme;
use super::{fit, hints, panel, widths, Col};

const BAR: u16 = 10;

#[rustfmt::skip]
const COLS: [Col; 10] = [
    Col { title: "Backend", width: 20, prio: 0, flex: false },
    Col { title: "State", width: 19, prio: 1, flex: false },
    Col { title: "Paced close", width: 34, prio: 2, flex: false },
    Col { title: "Live", width: 5, prio: 3, flex: false },
    Col { title: "Total", width: 7, prio: 5, flex: false },
    Col { title: "Share", width: BAR + 5, prio: 4, flex: false },
    Col { title: "Check", width: 12, prio: 6, flex: false },
    Col { title: "Fails", width: 5, prio: 7, flex: false },
    Col { title: "Per instance", width: 28, prio: 4, flex: false },
    Col { title: "Last error", width: 16, prio: 8, flex: true },
];
/// Shown only with several instances (`tunnelscope top`).
const SPLIT: usize = 8;
/// Shown only while some backend has a paced close.
const PACED: usize = 2;
/// Shown only when some backend is health-checked.
const CHECK: usize = 6;

/// Rows the panel wants: every backend if it can, at most half of `avail` (the
/// table scrolls to keep the selection visible beyond that).
pub fn height(state: &State, avail: u16) -> u16 {
    let want = state.backends.len().max(1) as u16 + 3;
    want.min((avail / 2).max(5))
}

/// The state word(s): "draining (3 left)" says how long a drain still has to go.
pub fn state_word(b: &BackendInfo) -> String {
    let admin = match b.admin {
        AdminState::Draining => format!("draining ({} left)", b.active_tunnels),
        other => other.to_string(),
    };
    match (b.health, b.admin) {
        (Health::Down, AdminState::Active) => "down".to_string(),
        (Health::Down, _) => format!("{admin}, down"),
        (Health::Up, _) => admin,
    }
}

/// A paced close in a few words: `drain in 42s (7 left)` while it waits for its
/// start, `rebalance 5/s: 3 closed, 4 left` while it runs.
pub fn paced_word(p: &PacedClose, active: u64, now: SystemTime) -> String {
    let cause = p.cause.name();
    match p.starts.duration_since(now) {
        Ok(wait) if !wait.is_zero() => {
            let wait = Duration::from_secs(wait.as_secs_f64().ceil() as u64);
            format!("{cause} in {} ({active} left)", fmt::duration(wait))
        }
        _ => format!("{cause} {}/s: {} closed, {} left", p.rate, p.closed, p.left),
    }
}

/// The host a backend found by DNS was resolved from.
fn via(b: &BackendInfo) -> Option<&str> {
    b.via.as_deref().map(crate::config::host_of)
}

/// `██████▍   ` for a share of 0.0..=1.0, in eighths of a cell.
pub fn bar(share: f64, width: u16) -> String {
    const PARTS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let eighths = (share.clamp(0.0, 1.0) * f64::from(width) * 8.0).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    s.push_str(PARTS[eighths % 8]);
    let used = eighths / 8 + usize::from(!eighths.is_multiple_of(8));
    s.push_str(&" ".repeat(width as usize - used.min(width as usize)));
    s
}

pub fn draw(frame: &mut Frame, area: Rect, state: &State, ui: &Ui) {
    let focused = ui.focus == Panel::Backends;
    let title = Line::from(vec![
        Span::styled(" Backends ", theme::title()),
        Span::styled(format!("{} ", state.backends.len()), theme::closed()),
    ]);
    let hint = hints(
        &[
            (Action::Drain, "drain"),
            (Action::Kill, "kill"),
            (Action::Enable, "enable"),
            (Action::Rebalance, "rebalance"),
        ],
        Scope::Overview,
    );
    let block = panel(title, hint, focused, area.width);
    // The name column is as wide as the longest name; spare room goes to the error.
    let mut cols = COLS;
    let widest = state.backends.iter().map(|b| {
        // The DNS name only widens the column on wide screens (else it is cut).
        let via = via(b)
            .filter(|_| area.width >= 120)
            .map_or(0, |v| v.len() + 3);
        b.id.to_string().len() + if b.backup { 7 } else { 0 } + via
    });
    cols[0].width = (widest.max().unwrap_or(7) as u16).clamp(7, 48);
    let paced = state.backends.iter().any(|b| b.closing.is_some());
    if !paced {
        cols[PACED].width = 0;
    }
    // The health check column only where some pool has checks.
    let checked = state.backends.iter().any(|b| b.check.is_some());
    if !checked {
        cols[CHECK].width = 0;
    }
    let split = state.fleet.as_ref().is_some_and(|f| f.instances.len() > 1);
    if split {
        // As wide as the longest breakdown, within reason.
        let widest = state
            .backends
            .iter()
            .map(|b| split_text(b, state).chars().count())
            .max()
            .unwrap_or(0);
        cols[SPLIT].width = (widest as u16).clamp(12, 64);
    } else {
        cols[SPLIT].width = 0;
    }
    let mut keep = fit(&cols, block.inner(area).width);
    keep.retain(|&c| (c != PACED || paced) && (c != CHECK || checked) && (c != SPLIT || split));
    let shares = state.shares();
    let rows = state.backends.iter().zip(&shares).map(|(b, share)| {
        let cells: Vec<Cell> = keep
            .iter()
            .map(|&c| match c {
                SPLIT => per_instance(b, state),
                _ => cell(c, b, *share, state.now),
            })
            .collect();
        Row::new(cells)
    });
    let header = Row::new(keep.iter().map(|&c| Cell::from(cols[c].title))).style(theme::header());
    let table = Table::new(rows, widths(&cols, &keep))
        .header(header)
        .block(block)
        .row_highlight_style(theme::selected(focused));
    let mut ts = TableState::default().with_selected(ui.backend_index(state));
    frame.render_stateful_widget(table, area, &mut ts);
}

/// Each instance's live tunnels on the backend, and its state where it differs
/// from active: `edge-a 3 · edge-b 2 draining`.
fn per_instance(b: &BackendInfo, state: &State) -> Cell<'static> {
    per_instance_spans(b, state).map_or_else(|| Cell::from(""), |s| Cell::from(Line::from(s)))
}

fn split_text(b: &BackendInfo, state: &State) -> String {
    per_instance_spans(b, state).map_or_else(String::new, |s| {
        s.iter().map(|sp| sp.content.as_ref()).collect()
    })
}

fn per_instance_spans(b: &BackendInfo, state: &State) -> Option<Vec<Span<'static>>> {
    let shares = state.fleet.as_ref().and_then(|f| f.shares(&b.id))?;
    let mut spans = Vec::new();
    for (i, s) in shares.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" · ", theme::closed()));
        }
        spans.push(Span::raw(format!("{} {}", s.instance, s.active_tunnels)));
        if s.admin != AdminState::Active {
            spans.push(Span::styled(
                format!(" {}", s.admin),
                theme::backend_state(s.admin, Health::Up),
            ));
        }
    }
    Some(spans)
}

fn cell(col: usize, b: &BackendInfo, share: f64, now: SystemTime) -> Cell<'static> {
    match col {
        0 => {
            let mut spans = vec![Span::raw(b.id.to_string())];
            if let Some(v) = via(b) {
                spans.push(Span::styled(format!(" ({v})"), theme::closed()));
            }
            if b.backup {
                spans.push(Span::styled(" backup", theme::closed()));
            }
            Cell::from(Line::from(spans))
        }
        1 => Cell::from(Span::styled(
            state_word(b),
            theme::backend_state(b.admin, b.health),
        )),
        PACED => Cell::from(Span::styled(
            b.closing
                .as_ref()
                .map(|p| paced_word(p, b.active_tunnels, now))
                .unwrap_or_default(),
            Style::new().fg(theme::WARN),
        )),
        3 => Cell::from(Line::from(b.active_tunnels.to_string()).right_aligned()),
        4 => Cell::from(Line::from(fmt::count(b.total_tunnels)).right_aligned()),
        5 => Cell::from(Line::from(vec![
            Span::styled(bar(share, BAR), Style::new().fg(theme::ACCENT)),
            Span::raw(format!("{:>4.0}%", share * 100.0)),
        ])),
        CHECK => match &b.check {
            None => Cell::from(""),
            Some(c) if c.error.is_none() => Cell::from(Span::styled(
                format!("ok {}", fmt::duration(c.latency)),
                Style::new().fg(theme::OK),
            )),
            Some(c) => Cell::from(Span::styled(
                format!("fail {}", fmt::ago(fmt::since(now, c.at))),
                Style::new().fg(theme::BAD),
            )),
        },
        7 => {
            let style = if b.failures > 0 {
                Style::new().fg(theme::BAD)
            } else {
                theme::closed()
            };
            Cell::from(Line::from(Span::styled(b.failures.to_string(), style)).right_aligned())
        }
        _ => Cell::from(Span::styled(
            b.last_error.clone().unwrap_or_default(),
            Style::new().fg(theme::BAD).add_modifier(Modifier::DIM),
        )),
    }
}
