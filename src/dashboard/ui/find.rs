//! The search across tunnels: its input line in the footer, and the matches in a
//! popup, each with its tunnel, direction, kind, time and a snippet with the match
//! highlighted.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph};
use ratatui::Frame;

use super::super::find::{FindPrompt, Found};
use super::super::fmt;
use super::super::theme;
use super::centered;
use crate::inspect::search::position;

pub fn prompt(p: &FindPrompt) -> Line<'_> {
    Line::from(vec![
        Span::styled(" f ", theme::key()),
        Span::styled("find in every tunnel's messages: ", theme::title()),
        Span::styled(p.text.as_str(), Style::new().add_modifier(Modifier::BOLD)),
        Span::styled("█", Style::new().fg(theme::ACCENT)),
        Span::styled("   any case · Enter search · Esc cancel", theme::closed()),
    ])
}

pub fn found(frame: &mut Frame, area: Rect, f: &Found) {
    let area = centered(
        area,
        area.width.saturating_sub(4),
        (f.hits.len() as u16 + 2).min(area.height.saturating_sub(2)),
    );
    frame.render_widget(Clear, area);
    let title = format!(
        " {} {} containing {:?} ",
        f.hits.len(),
        if f.hits.len() == 1 {
            "message"
        } else {
            "messages"
        },
        f.query
    );
    let block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(Style::new().fg(theme::ACCENT))
        .title(Line::from(Span::styled(title, theme::title())))
        .title(Line::from(" ↑↓ choose · Enter open · Esc close ").right_aligned());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let h = inner.height as usize;
    let start = (f.selected + 1).saturating_sub(h);
    let needle = f.query.to_ascii_lowercase();
    let lines: Vec<Line> = f
        .hits
        .iter()
        .enumerate()
        .skip(start)
        .take(h)
        .map(|(i, hit)| {
            let mut spans = vec![
                Span::styled(format!("#{:<5} ", hit.tunnel), theme::title()),
                Span::styled(
                    format!("{} ", hit.dir.arrow()),
                    Style::new().fg(theme::dir(hit.dir)),
                ),
                Span::raw(format!("{:<7}", hit.kind.name())),
                Span::styled(format!("{} ", fmt::clock_ms(hit.at)), theme::closed()),
            ];
            let text = hit.snippet.as_str();
            match position(text.as_bytes(), needle.as_bytes()) {
                Some(at) if text.is_char_boundary(at + needle.len()) => {
                    spans.push(Span::raw(text[..at].to_string()));
                    spans.push(Span::styled(
                        text[at..at + needle.len()].to_string(),
                        Style::new().fg(Color::Black).bg(theme::WARN),
                    ));
                    spans.push(Span::raw(text[at + needle.len()..].to_string()));
                }
                _ => spans.push(Span::raw(text.to_string())),
            }
            let line = Line::from(spans);
            if i == f.selected {
                line.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                line
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}
