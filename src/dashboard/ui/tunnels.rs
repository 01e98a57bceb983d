//! The Tunnels panel: one row per live tunnel (or handshake in progress), then the
//! recently closed ones dimmed with their close code and side. Sorted and filtered by
//! [`super::super::rows`]; narrow terminals drop the least important columns.

use std::time::Duration;

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::super::fmt;
use super::super::input::{Panel, Ui};
use super::super::keys::{Action, Scope};
use super::super::rows::{self, SortKey};
use super::super::state::{Ending, State};
use super::super::theme;
use super::{fit, hints, panel, widths, Col};

/// Columns in display order; the sort key of each is at the same index in
/// [`SortKey::ALL`].
#[rustfmt::skip]
const COLS: [Col; 12] = [
    Col { title: "#", width: 5, prio: 0, flex: false },
    Col { title: "Client", width: 21, prio: 2, flex: false },
    Col { title: "Path", width: 16, prio: 1, flex: true },
    Col { title: "Backend", width: 19, prio: 7, flex: false },
    Col { title: "Proto", width: 10, prio: 9, flex: false },
    Col { title: "Age", width: 6, prio: 8, flex: false },
    Col { title: "→Frm", width: 6, prio: 10, flex: false },
    Col { title: "←Frm", width: 6, prio: 11, flex: false },
    Col { title: "→Bytes", width: 8, prio: 6, flex: false },
    Col { title: "←Bytes", width: 8, prio: 5, flex: false },
    Col { title: "Msg/s", width: 6, prio: 3, flex: false },
    Col { title: "Last", width: 14, prio: 4, flex: false },
];

pub fn draw(frame: &mut Frame, area: Rect, state: &State, ui: &Ui) {
    let focused = ui.focus == Panel::Tunnels;
    let rows = ui.rows(state);
    let live = rows.iter().filter(|r| r.closed.is_none()).count();
    let mut title = vec![
        Span::styled(" Tunnels ", theme::title()),
        Span::styled(format!("{live} live"), Style::new().fg(theme::OK)),
        Span::styled(format!(" · {} closed ", rows.len() - live), theme::closed()),
    ];
    if !ui.filter.is_empty() {
        title.push(Span::styled(
            format!("filter \"{}\" ", ui.filter),
            Style::new().fg(theme::WARN),
        ));
    }
    let arrow = if ui.sort_desc { "▼" } else { "▲" };
    title.push(Span::styled(
        format!("sort {} {arrow} ", ui.sort.name()),
        theme::closed(),
    ));
    let hint = hints(
        &[
            (Action::Open, "detail"),
            (Action::CloseTunnel, "close"),
            (Action::Filter, "filter"),
            (Action::Sort, "sort"),
        ],
        Scope::Overview,
    );
    let block = panel(Line::from(title), hint, focused, area.width);
    let inner = block.inner(area);
    if rows.is_empty() {
        frame.render_widget(block, area);
        let msg = if ui.filter.is_empty() {
            let to = state
                .listeners
                .first()
                .map(|l| format!(" to {}://{}", if l.tls { "wss" } else { "ws" }, l.addr))
                .unwrap_or_default();
            format!("No tunnels yet: connect a WebSocket client{to}")
        } else {
            format!(
                "No tunnel matches \"{}\" (Esc clears the filter)",
                ui.filter
            )
        };
        let y = inner.y + inner.height / 2;
        let line = Rect {
            y,
            height: 1,
            ..inner
        };
        frame.render_widget(Paragraph::new(msg).style(theme::closed()).centered(), line);
        return;
    }
    // Addresses are as wide as the data needs: IPv4 clients are rarely 21 cells,
    // IPv6 ones can be much wider.
    let mut cols = COLS;
    let widest = |f: &dyn Fn(&rows::Row) -> usize| rows.iter().map(f).max().unwrap_or(0) as u16;
    // Followed instances (`top`) label each tunnel's client with the instance.
    let label = |r: &rows::Row| {
        r.tunnel
            .instance
            .as_ref()
            .map_or(0, |i| i.chars().count() + 1)
    };
    cols[1].width = widest(&|r| r.tunnel.client.to_string().len() + label(r)).clamp(6, 56);
    cols[3].width =
        widest(&|r| r.tunnel.backend.as_ref().map_or(1, |b| b.to_string().len())).clamp(7, 40);
    // Closed tunnels say why in the Last column: as wide as that needs, within reason;
    // parked ones add a word ("12m03s parked ✂59m59s").
    cols[11].width = widest(&|r| match r.closed {
        Some(c) => ending_text(&c.ending).chars().count(),
        None if r.tunnel.parked => 21,
        None => 0,
    })
    .clamp(14, 36);
    let keep = fit(&cols, inner.width);
    let header = Row::new(keep.iter().map(|&c| {
        let mut t = cols[c].title.to_string();
        if SortKey::ALL[c] == ui.sort {
            t.push_str(arrow);
        }
        Cell::from(t)
    }))
    .style(theme::header());
    // Only the rows on screen are formatted: thousands of tunnels cost a sort per
    // frame, not thousands of formatted rows. The window keeps the selection visible
    // the way ratatui would from offset 0.
    let visible = inner.height.saturating_sub(1).max(1) as usize;
    let selected = ui.selected_index(&rows);
    let offset = selected.map_or(0, |s| (s + 1).saturating_sub(visible));
    let window = &rows[offset..(offset + visible).min(rows.len())];
    let table_rows = window.iter().map(|r| {
        let cells: Vec<Cell> = keep.iter().map(|&c| cell(c, r, state)).collect();
        let row = Row::new(cells);
        if r.closed.is_some() {
            row.style(theme::closed())
        } else {
            row
        }
    });
    let table = Table::new(table_rows, widths(&cols, &keep))
        .header(header)
        .block(block)
        .row_highlight_style(theme::selected(focused));
    let mut ts = TableState::default().with_selected(selected.map(|s| s - offset));
    frame.render_stateful_widget(table, area, &mut ts);
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::from(s).right_aligned())
}

fn cell(col: usize, r: &rows::Row, state: &State) -> Cell<'static> {
    let t = r.tunnel;
    let c2b = &t.stats.client_to_backend;
    let b2c = &t.stats.backend_to_client;
    let live = r.closed.is_none();
    // Coloured numbers only on live rows; history stays uniformly dim.
    let tint = |c| {
        if live {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    };
    match col {
        0 => right(t.id.to_string()),
        1 => match &t.instance {
            Some(name) => Cell::from(Line::from(vec![
                Span::styled(format!("{name} "), Style::new().fg(theme::INFO)),
                Span::raw(t.client.to_string()),
            ])),
            None => Cell::from(t.client.to_string()),
        },
        2 => Cell::from(t.path.clone()),
        3 => Cell::from(match &t.backend {
            Some(b) => b.to_string(),
            None => "…".to_string(),
        }),
        4 => {
            // Tunnels opened over HTTP/2 (RFC 8441) are marked.
            let proto = t.subprotocol().unwrap_or("-").to_string();
            match t.handshake.as_ref().is_some_and(|h| h.h2) {
                true => Cell::from(Line::from(vec![
                    Span::styled("h2 ", Style::new().fg(theme::INFO)),
                    Span::raw(proto),
                ])),
                false => Cell::from(proto),
            }
        }
        5 => {
            let age = match r.closed.map(|c| &c.ending) {
                Some(Ending::Closed { duration, .. }) => *duration,
                _ => fmt::since(state.now, t.opened),
            };
            right(fmt::duration(age))
        }
        6 => right(fmt::count(c2b.frames())),
        7 => right(fmt::count(b2c.frames())),
        8 => Cell::from(
            Line::from(Span::styled(fmt::bytes(c2b.bytes), tint(theme::C2B))).right_aligned(),
        ),
        9 => Cell::from(
            Line::from(Span::styled(fmt::bytes(b2c.bytes), tint(theme::B2C))).right_aligned(),
        ),
        10 => {
            let rate = if live { t.msgs_per_sec(state.now) } else { 0.0 };
            right(if live { fmt::rate(rate) } else { "-".into() })
        }
        _ => last_cell(r, state),
    }
}

/// Time since the last frame for live tunnels; how it ended for closed ones.
fn last_cell(r: &rows::Row, state: &State) -> Cell<'static> {
    let t = r.tunnel;
    let Some(closed) = r.closed else {
        if t.handshake.is_none() {
            return Cell::from(Span::styled("handshake", Style::new().fg(theme::WARN)));
        }
        // A parked tunnel (its relay task given up while silent) says so.
        let parked = t.parked.then(|| Span::styled(" parked", theme::closed()));
        // When an idle timeout applies: how long idle, and until it cuts (✂).
        let Some((idle, left)) = t.idle_cut(state.now) else {
            let quiet = match t.last_frame() {
                Some(at) => Span::raw(fmt::ago(fmt::since(state.now, at))),
                None => Span::styled("no frames", theme::closed()),
            };
            return Cell::from(Line::from_iter(std::iter::once(quiet).chain(parked)));
        };
        let quiet = match t.last_frame() {
            Some(_) if idle < Duration::from_secs(1) => Span::raw("now"),
            Some(_) => Span::raw(fmt::duration(idle)),
            None => Span::styled("-", theme::closed()),
        };
        let timeout = t.idle_timeout.unwrap_or_default();
        let cut = Span::styled(
            format!(" ✂{}", fmt::duration(left)),
            super::detail::idle_style(left, timeout),
        );
        return Cell::from(Line::from_iter(
            std::iter::once(quiet).chain(parked).chain([cut]),
        ));
    };
    let text = ending_text(&closed.ending);
    Cell::from(Span::styled(text, Style::new().add_modifier(Modifier::DIM)))
}

/// How a closed tunnel's *Last* cell says it ended: who, the code, and why.
fn ending_text(ending: &Ending) -> String {
    match ending {
        Ending::Closed {
            code,
            side,
            reason,
            error,
            ..
        } => {
            // Who, the code, and why: the reason says which timer or command
            // (idle timeout, backend drained, closed by operator…).
            let code = code.map_or_else(|| "-".to_string(), |c| c.to_string());
            let why = error.as_deref().unwrap_or(reason);
            if why.is_empty() {
                format!("{code} {side}")
            } else {
                format!("{code} {side}: {why}")
            }
        }
        Ending::Refused(r) => format!("refused {}", r.status),
        Ending::Lost => "missed".to_string(),
    }
}
