//! Rendering: a pure function of `&State` and `&Ui` into a ratatui [`Frame`]. Nothing
//! here mutates; everything that changes lives in `state` (events) and `input` (keys).
//!
//! Layout, top to bottom: header (title bar, rates with sparklines, optional banner),
//! the body (Backends over Tunnels, or a tunnel's detail), an optional log pane, and a
//! one-line footer with key hints, the filter prompt or the last action's result.
//! Narrow terminals lose low-priority table columns instead of wrapping.

mod backends;
mod detail;
mod find;
mod fleet;
mod header;
mod messages;
mod popup;
mod tail;
mod tunnels;

use std::time::Duration;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Paragraph};
use ratatui::Frame;
use tracing::Level;

use super::fmt;
use super::input::{Popup, Ui};
use super::keys::{key_for, Action, Scope};
use super::state::State;
use super::theme;

/// Smallest area the dashboard draws into; below it, a notice asks for more room.
pub const MIN_WIDTH: u16 = 50;
pub const MIN_HEIGHT: u16 = 12;

/// How long an action's message stays in the footer.
const FLASH_FOR: Duration = Duration::from_secs(4);

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, state: &State, ui: &Ui) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small: {}x{} (need {MIN_WIDTH}x{MIN_HEIGHT})",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(msg).style(theme::closed()), area);
        return;
    }
    let [head, fleet_rows, body, foot] = Layout::vertical([
        Constraint::Length(header::height(state)),
        Constraint::Length(fleet::height(state)),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    header::draw(frame, head, state);
    fleet::draw(frame, fleet_rows, state);
    let main = if ui.show_log {
        let log_h = (body.height / 3).clamp(4, 12);
        let [main, log] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(log_h)]).areas(body);
        draw_log(frame, log, state);
        main
    } else {
        body
    };
    match &ui.detail {
        Some(d) => detail::draw(frame, main, state, d),
        None => {
            let [b, t] = Layout::vertical([
                Constraint::Length(backends::height(state, main.height)),
                Constraint::Fill(1),
            ])
            .areas(main);
            backends::draw(frame, b, state, ui);
            tunnels::draw(frame, t, state, ui);
        }
    }
    draw_footer(frame, foot, state, ui);
    match &ui.popup {
        Some(Popup::Confirm(p)) => popup::confirm(frame, area, p),
        Some(Popup::Help) => popup::help(frame, area, ui.help_scroll),
        Some(Popup::Message(p)) => messages::full_view(frame, area, state, p),
        Some(Popup::Found(f)) => find::found(frame, area, f),
        Some(Popup::Filter) | Some(Popup::Inject(_)) | Some(Popup::Find(_)) | None => {}
    }
}

/// A bordered panel `width` cells wide with a bold title on the left and key hints
/// on the right; the hints are left out when both would not fit (they would overlap).
pub(super) fn panel<'a>(title: Line<'a>, hints: Line<'a>, focused: bool, width: u16) -> Block<'a> {
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(theme::border(focused));
    if title.width() + hints.width() + 4 <= width as usize {
        block.title(title).title(hints.right_aligned())
    } else {
        block.title(title)
    }
}

/// `" d drain · x kill "`: key names from the binding table, words from the caller.
pub(super) fn hints(pairs: &[(Action, &'static str)], scope: Scope) -> Line<'static> {
    let mut spans = vec![Span::raw(" ")];
    for (i, (action, word)) in pairs.iter().enumerate() {
        let Some(key) = key_for(*action, scope) else {
            continue;
        };
        if i > 0 {
            spans.push(Span::styled(" · ", theme::closed()));
        }
        spans.push(Span::styled(key, theme::key()));
        spans.push(Span::raw(format!(" {word}")));
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}

/// A table column that may be dropped when the terminal is narrow.
#[derive(Debug, Clone, Copy)]
pub(super) struct Col {
    pub title: &'static str,
    pub width: u16,
    /// Lower is more important: kept first.
    pub prio: u8,
    /// Takes the width left over (the width is then its minimum).
    pub flex: bool,
}

/// Which columns fit in `avail` cells (with one cell between columns), most
/// important first, returned in display order.
pub(super) fn fit(cols: &[Col], avail: u16) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cols.len()).collect();
    order.sort_by_key(|&i| cols[i].prio);
    let mut used = 0u16;
    let mut keep = Vec::new();
    for i in order {
        let need = cols[i].width + u16::from(!keep.is_empty());
        if used + need <= avail {
            used += need;
            keep.push(i);
        }
    }
    keep.sort_unstable();
    keep
}

/// Constraints for the kept columns.
pub(super) fn widths(cols: &[Col], keep: &[usize]) -> Vec<Constraint> {
    keep.iter()
        .map(|&i| {
            if cols[i].flex {
                Constraint::Min(cols[i].width)
            } else {
                Constraint::Length(cols[i].width)
            }
        })
        .collect()
}

/// A rectangle of at most `w`×`h` centred in `area`.
pub(super) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn level_style(level: Level) -> Style {
    match level {
        Level::ERROR => Style::new().fg(theme::BAD).add_modifier(Modifier::BOLD),
        Level::WARN => Style::new().fg(theme::WARN),
        Level::INFO => Style::new().fg(theme::OK),
        Level::DEBUG => Style::new().fg(theme::INFO),
        Level::TRACE => Style::new().fg(theme::DIM),
    }
}

fn draw_log(frame: &mut Frame, area: Rect, state: &State) {
    let mut title = vec![Span::styled(" Log ", theme::title())];
    if state.logs_dropped > 0 {
        title.push(Span::styled(
            format!("({} lines dropped) ", state.logs_dropped),
            Style::new().fg(theme::WARN),
        ));
    }
    let block = panel(
        Line::from(title),
        hints(&[(Action::ToggleLog, "hide")], Scope::Any),
        false,
        area.width,
    );
    let inner = block.inner(area);
    let skip = state.logs.len().saturating_sub(inner.height as usize);
    let lines: Vec<Line> = state
        .logs
        .iter()
        .skip(skip)
        .map(|l| {
            Line::from(vec![
                Span::styled(fmt::clock_ms(l.at), theme::closed()),
                Span::raw(" "),
                Span::styled(format!("{:<5}", l.level.as_str()), level_style(l.level)),
                Span::raw(" "),
                Span::raw(l.text.as_str()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_footer(frame: &mut Frame, area: Rect, state: &State, ui: &Ui) {
    if ui.popup == Some(Popup::Filter) {
        let (text, hint) = match &ui.detail {
            Some(d) => (
                d.filter_text.as_str(),
                match &d.filter_error {
                    Some(e) => Span::styled(format!("   {e}"), Style::new().fg(theme::BAD)),
                    None => Span::styled(
                        "   words · re:REGEX · -> <- · op:text,binary,ping · Enter keep · Esc clear",
                        theme::closed(),
                    ),
                },
            ),
            None => (
                ui.filter.as_str(),
                Span::styled(
                    "   client, path, backend or header value · Enter keep · Esc clear",
                    theme::closed(),
                ),
            ),
        };
        let prompt = Line::from(vec![
            Span::styled(" / ", theme::key()),
            Span::raw("filter: "),
            Span::styled(text, Style::new().add_modifier(Modifier::BOLD)),
            Span::styled("█", Style::new().fg(theme::ACCENT)),
            hint,
        ]);
        frame.render_widget(Paragraph::new(prompt), area);
        return;
    }
    if let Some(Popup::Find(p)) = &ui.popup {
        frame.render_widget(Paragraph::new(find::prompt(p)), area);
        return;
    }
    if let Some(Popup::Inject(p)) = &ui.popup {
        let toward = match p.to {
            crate::event::Side::Client => "← to client",
            _ => "→ to backend",
        };
        let prompt = Line::from(vec![
            Span::styled(" i ", theme::key()),
            Span::styled(format!("send {toward}: "), theme::title()),
            Span::styled(p.text.as_str(), Style::new().add_modifier(Modifier::BOLD)),
            Span::styled("█", Style::new().fg(theme::ACCENT)),
            Span::styled(
                "   Tab other side · hex: ping: close:CODE · Enter send · Esc cancel",
                theme::closed(),
            ),
        ]);
        frame.render_widget(Paragraph::new(prompt), area);
        return;
    }
    if let Some(f) = &ui.flash {
        if fmt::since(state.now, f.at) < FLASH_FOR {
            let style = if f.error {
                Style::new().fg(Color::White).bg(theme::BAD)
            } else {
                Style::new().fg(Color::Black).bg(theme::OK)
            };
            let line = Line::from(Span::styled(format!(" {} ", f.text), style));
            frame.render_widget(Paragraph::new(line), area);
            return;
        }
    }
    // (action, word, importance): the least important hints go first when the
    // footer is too narrow for all of them.
    let scope = ui.scope();
    let all: &[(Action, &'static str, u8)] = match scope {
        Scope::Detail => &[
            (Action::MoveUp, "scroll", 3),
            (Action::Pause, "pause", 1),
            (Action::Inject, "send", 2),
            (Action::HoldClient, "hold", 3),
            (Action::CloseTunnel, "close", 2),
            (Action::ToggleLog, "log", 4),
            (Action::Back, "back", 0),
            (Action::Help, "help", 0),
            (Action::Quit, "quit", 0),
        ],
        _ => &[
            (Action::NextPanel, "panel", 2),
            (Action::Open, "detail", 1),
            (Action::Drain, "drain", 1),
            (Action::Kill, "kill", 1),
            (Action::Enable, "enable", 3),
            (Action::CloseTunnel, "close", 2),
            (Action::Filter, "filter", 2),
            (Action::Sort, "sort", 3),
            (Action::ToggleLog, "log", 4),
            (Action::Help, "help", 0),
            (Action::Quit, "quit", 0),
        ],
    };
    let scope = if scope == Scope::Detail {
        Scope::Detail
    } else {
        Scope::Overview
    };
    let mut pairs: Vec<(Action, &'static str, u8)> = all.to_vec();
    let as_pairs = |p: &[(Action, &'static str, u8)]| -> Vec<(Action, &'static str)> {
        p.iter().map(|(a, w, _)| (*a, *w)).collect()
    };
    while hints(&as_pairs(&pairs), scope).width() > area.width as usize {
        let Some(i) = (0..pairs.len()).max_by_key(|&i| (pairs[i].2, i)) else {
            break;
        };
        if pairs[i].2 == 0 {
            break;
        }
        pairs.remove(i);
    }
    frame.render_widget(Paragraph::new(hints(&as_pairs(&pairs), scope)), area);
}
