//! The header: a title bar (tunnels, uptime, listeners), one line per direction with
//! messages/s and bytes/s and their sparklines over the last minute, and the optional
//! banner (the demo's URL).

use crate::event::Dir;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};
use ratatui::Frame;

use super::super::fmt;
use super::super::rates::{Flow, Second};
use super::super::state::State;
use super::super::theme;

/// Rows the header takes.
pub fn height(state: &State) -> u16 {
    3 + u16::from(state.banner.is_some())
}

pub fn draw(frame: &mut Frame, area: Rect, state: &State) {
    let rows = Layout::vertical(vec![Constraint::Length(1); area.height as usize]).split(area);
    title_bar(frame, rows[0], state);
    flow_line(frame, rows[1], state, Dir::ClientToBackend);
    flow_line(frame, rows[2], state, Dir::BackendToClient);
    if let (Some(b), Some(row)) = (&state.banner, rows.get(3)) {
        let line = Line::from(vec![
            Span::styled(" ▸ ", Style::new().fg(theme::WARN)),
            Span::styled(b.as_str(), Style::new().fg(theme::WARN)),
        ]);
        frame.render_widget(Paragraph::new(line), *row);
    }
}

fn title_bar(frame: &mut Frame, area: Rect, state: &State) {
    let sep = || Span::raw(" │ ");
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut spans = vec![
        Span::styled(" tunnelscope", bold.fg(theme::ACCENT)),
        sep(),
        Span::styled(state.live_count().to_string(), bold),
        Span::raw(" live · "),
        Span::styled(fmt::grouped(state.totals.tunnels), bold),
        Span::raw(" total"),
    ];
    if state.totals.refused > 0 {
        spans.push(Span::raw(" · "));
        spans.push(Span::styled(
            format!("{} refused", fmt::grouped(state.totals.refused)),
            Style::new().fg(theme::WARN),
        ));
    }
    if state.totals.http_requests > 0 {
        spans.push(Span::raw(format!(
            " · {} http",
            fmt::grouped(state.totals.http_requests)
        )));
    }
    if let Some(up) = state.uptime() {
        spans.push(sep());
        spans.push(Span::raw(format!("up {}", fmt::duration(up))));
    }
    if let Some(f) = &state.fleet {
        spans.push(sep());
        spans.push(Span::raw(format!(
            "{} instance{}",
            f.instances.len(),
            if f.instances.len() == 1 { "" } else { "s" }
        )));
    } else if !state.listeners.is_empty() {
        spans.push(sep());
        let wide = area.width >= 120;
        let list: Vec<String> = state
            .listeners
            .iter()
            .map(|l| {
                let scheme = if l.tls { "wss" } else { "ws" };
                if wide {
                    format!("{} {scheme}://{}", l.name, l.addr)
                } else {
                    format!("{scheme}://{}", l.addr)
                }
            })
            .collect();
        spans.push(Span::raw(list.join("  ")));
    }
    if state.resyncs > 0 {
        spans.push(sep());
        spans.push(Span::styled(
            format!("resynced ×{}", state.resyncs),
            Style::new().fg(theme::WARN),
        ));
    }
    let left = Line::from(spans);
    let hint = Line::from(vec![Span::styled("?", theme::key()), Span::raw(" help ")]);
    frame.render_widget(Paragraph::new("").style(theme::bar()), area);
    let room = area.width as usize;
    if left.width() + hint.width() + 2 <= room {
        frame.render_widget(Paragraph::new(hint.right_aligned()), area);
    }
    frame.render_widget(Paragraph::new(left), area);
}

fn flow_line(frame: &mut Frame, area: Rect, state: &State, dir: Dir) {
    let pick = move |s: &Second| -> Flow {
        match dir {
            Dir::ClientToBackend => s.c2b,
            Dir::BackendToClient => s.b2c,
        }
    };
    let now = pick(&state.rates.last());
    let colour = theme::dir(dir);
    let label = match dir {
        Dir::ClientToBackend => "client→backend",
        Dir::BackendToClient => "backend→client",
    };
    let [l, m, ms, b, bs] = Layout::horizontal([
        Constraint::Length(17),
        Constraint::Length(12),
        Constraint::Fill(1),
        Constraint::Length(13),
        Constraint::Fill(1),
    ])
    .areas(area);
    let label = Line::from(vec![
        Span::styled(format!(" {} ", dir.arrow()), Style::new().fg(colour)),
        Span::styled(label, theme::closed()),
    ]);
    frame.render_widget(Paragraph::new(label), l);
    let value = |text: String| {
        Paragraph::new(Line::from(Span::styled(
            text,
            Style::new().fg(colour).add_modifier(Modifier::BOLD),
        )))
        .right_aligned()
    };
    frame.render_widget(value(format!("{} msg/s ", fmt::rate(now.msgs as f64))), m);
    frame.render_widget(value(format!("{} ", fmt::byte_rate(now.bytes))), b);
    spark(frame, ms, &state.rates.series(|s| pick(s).msgs), colour);
    spark(frame, bs, &state.rates.series(|s| pick(s).bytes), colour);
}

/// The newest seconds that fit, right-aligned so "now" is always at the right edge.
fn spark(frame: &mut Frame, area: Rect, series: &[u64], colour: ratatui::style::Color) {
    if area.width < 2 {
        return;
    }
    // One blank cell on the right keeps it off the next number.
    let w = (area.width - 1) as usize;
    let data = &series[series.len().saturating_sub(w)..];
    let max = data.iter().copied().max().unwrap_or(0).max(1);
    let area = Rect {
        x: area.x + (area.width - 1 - data.len() as u16),
        width: data.len() as u16,
        ..area
    };
    frame.render_widget(
        Sparkline::default()
            .data(data)
            .max(max)
            .style(Style::new().fg(colour)),
        area,
    );
}
