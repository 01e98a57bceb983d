//! Whole messages in the tunnel detail: the list (`m` shows it instead of the frame
//! tail), and one message in full in a popup, as text, pretty-printed JSON or a hex
//! dump, scrolled with the arrows.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph};
use ratatui::Frame;

use super::super::fmt;
use super::super::input::{Detail, MessagePopup};
use super::super::message::{self, View};
use super::super::state::{State, Tunnel};
use super::super::theme;
use crate::event::{CapturedMessage, Dir, OpKind};

/// The captured messages of the detail's tunnel, the selected one highlighted.
pub fn list(frame: &mut Frame, area: Rect, state: &State, t: &Tunnel, d: &Detail) {
    let list = d.messages(state);
    let selected = d
        .selected
        .and_then(|k| list.iter().position(|m| message::key(m) == k))
        .or(list.len().checked_sub(1));
    // What is filtered and held comes before the key hints, so a narrow pane keeps it.
    let mut title = vec![
        Span::styled("Messages ", theme::title()),
        Span::styled(format!("{} kept ", list.len()), theme::closed()),
    ];
    title.extend(super::tail::badges(t, d));
    title.push(Span::styled(
        " ↑↓ choose · Enter open · m frames",
        theme::closed(),
    ));
    let mut lines = vec![Line::from(title)];
    if list.is_empty() {
        let text = if d.filtering() {
            "no messages kept match the filter"
        } else {
            "no whole messages kept yet (they are captured while someone watches)"
        };
        lines.push(Line::from(Span::styled(text, theme::closed())));
    }
    let h = area.height.saturating_sub(1) as usize;
    // Keep the selection in sight, near the bottom when it is the newest.
    let end = selected.map_or(list.len(), |i| (i + 1).max(h.min(list.len())));
    let start = end.saturating_sub(h);
    for (i, m) in list.iter().enumerate().take(end).skip(start) {
        let mut line = super::tail::highlight(row(m, area.width as usize, d), d);
        if Some(i) == selected {
            line = line.style(Style::new().add_modifier(Modifier::REVERSED));
        }
        lines.push(line);
    }
    let area = Rect {
        x: area.x + 1,
        width: area.width.saturating_sub(1),
        ..area
    };
    frame.render_widget(Paragraph::new(lines), area);
}

/// `12:03:04.123 → text   1.2 KiB  3 frames  compressed 420 B  {"order":…`.
fn row(m: &CapturedMessage, width: usize, d: &Detail) -> Line<'static> {
    let payload = m.payload();
    let mut spans = vec![
        Span::raw(format!("{} ", fmt::clock_ms(m.at))),
        Span::styled(
            format!("{} ", m.dir.arrow()),
            Style::new().fg(theme::dir(m.dir)),
        ),
        Span::styled(format!("{:<12}", kind_name(m.kind)), kind_style(m.kind)),
        Span::raw(format!("{:>9} ", fmt::bytes(payload.len() as u64))),
    ];
    if m.frames > 1 {
        spans.push(Span::styled(
            format!("{} frames ", m.frames),
            theme::closed(),
        ));
    }
    if m.compressed {
        spans.push(Span::styled(
            format!("compressed {} ", fmt::bytes(m.len)),
            Style::new().fg(theme::WARN),
        ));
    }
    if m.truncated {
        spans.push(Span::styled("truncated ", Style::new().fg(theme::WARN)));
    }
    if m.injected {
        spans.push(Span::styled("injected ", Style::new().fg(theme::ACCENT)));
    }
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let room = width.saturating_sub(used + 1);
    let preview = super::tail::around_match(&fmt::preview(payload, false), room, d);
    spans.push(Span::raw(fmt::truncate(&preview, room)));
    Line::from(spans)
}

fn kind_name(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Text => "text",
        OpKind::Binary => "binary",
        OpKind::Close => "close",
        OpKind::Ping => "ping",
        OpKind::Pong => "pong",
        OpKind::Continuation | OpKind::Reserved => "(continued)",
    }
}

fn kind_style(kind: OpKind) -> Style {
    match kind {
        OpKind::Text => Style::new().fg(Color::White),
        OpKind::Binary => Style::new().fg(theme::INFO),
        _ => Style::new().fg(theme::WARN),
    }
}

/// One message in full, over most of the screen.
pub fn full_view(frame: &mut Frame, area: Rect, state: &State, p: &MessagePopup) {
    let area = super::centered(
        area,
        area.width.saturating_sub(4),
        area.height.saturating_sub(2),
    );
    frame.render_widget(Clear, area);
    let m = match &state.messages {
        Some((id, list)) if *id == p.tunnel => list.iter().find(|m| message::key(m) == p.key),
        _ => None,
    };
    let Some(m) = m else {
        let block = Block::bordered().title(" Message ");
        let text = "This message is no longer kept (newer ones took its place). Esc closes.";
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    };
    let (arrow, dir) = (
        m.dir.arrow(),
        match m.dir {
            Dir::ClientToBackend => "client → backend",
            Dir::BackendToClient => "backend → client",
        },
    );
    let mut title = format!(
        " Message {arrow} {} · {dir} · {} · {} ",
        kind_name(m.kind),
        fmt::bytes(m.payload().len() as u64),
        fmt::clock_ms(m.at)
    );
    if m.frames > 1 {
        title.push_str(&format!("· {} frames ", m.frames));
    }
    if m.compressed {
        title.push_str(&format!("· compressed {} ", fmt::bytes(m.len)));
    }
    let block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(Style::new().fg(theme::ACCENT))
        .title(Line::from(Span::styled(title, theme::title())))
        .title(Line::from(" Tab view · ↑↓ scroll · y copy · Esc close ").right_aligned());
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let mut tabs = vec![Span::raw(" ")];
    for v in View::all_for(m) {
        let style = if v == p.view {
            Style::new().fg(Color::Black).bg(theme::ACCENT)
        } else {
            theme::closed()
        };
        tabs.push(Span::styled(format!(" {} ", v.name()), style));
        tabs.push(Span::raw(" "));
    }
    let mut notes = Vec::new();
    if m.truncated {
        notes.push(format!("kept truncated: {} on the wire", fmt::bytes(m.len)));
    }
    if let Some(Err(why)) = &m.inflated {
        notes.push(format!("not inflated: {why}"));
    }
    let binary = m.kind == OpKind::Binary;
    match p.view {
        View::Json if message::json_lines(m.payload()).is_none() => {
            notes.push("not JSON: shown as text".into())
        }
        View::Decoded(d) if d.decode(m.payload(), binary).is_none() => {
            notes.push(format!("not {}: shown as text", d.name()))
        }
        _ => {}
    }
    if !notes.is_empty() {
        tabs.push(Span::styled(
            notes.join(" · "),
            Style::new().fg(theme::WARN),
        ));
    }
    let body = message::lines(m, p.view);
    let height = inner.height.saturating_sub(1) as usize;
    let scroll = p.scroll.min(body.len().saturating_sub(height));
    let mut lines = vec![Line::from(tabs)];
    lines.extend(
        body.iter()
            .skip(scroll)
            .take(height)
            .map(|l| styled(l, p.view)),
    );
    frame.render_widget(Paragraph::new(lines), inner);
}

/// A body line; JSON keys, strings and numbers in colour, a decoder's part labels as
/// headings.
fn styled(line: &str, view: View) -> Line<'static> {
    if let (View::Decoded(_), Some(label)) = (view, line.strip_prefix("── ")) {
        return Line::from(vec![
            Span::styled("── ", theme::closed()),
            Span::styled(label.to_string(), theme::title()),
        ]);
    }
    if !matches!(view, View::Json | View::Decoded(_)) {
        return Line::from(line.to_string());
    }
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let value_style = |v: &str| {
        let v = v.trim_end_matches(',');
        if v.starts_with('"') {
            Style::new().fg(theme::OK)
        } else if v.parse::<f64>().is_ok() {
            Style::new().fg(theme::WARN)
        } else if matches!(v, "true" | "false" | "null") {
            Style::new().fg(theme::B2C)
        } else {
            Style::new()
        }
    };
    match trimmed.split_once("\": ") {
        Some((key, value)) if trimmed.starts_with('"') => Line::from(vec![
            Span::raw(indent.to_string()),
            Span::styled(format!("{key}\""), Style::new().fg(theme::ACCENT)),
            Span::raw(": "),
            Span::styled(value.to_string(), value_style(value)),
        ]),
        _ => Line::from(vec![
            Span::raw(indent.to_string()),
            Span::styled(trimmed.to_string(), value_style(trimmed)),
        ]),
    }
}
