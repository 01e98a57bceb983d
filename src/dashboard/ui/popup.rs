//! Modal popups drawn over everything: the confirmation of a destructive action and
//! the help overlay, which lists the binding table itself so it cannot go stale.

use unicode_width::UnicodeWidthStr;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::super::input::Pending;
use super::super::keys::{in_scope, keys_label, Action, Scope};
use super::super::theme;
use super::centered;

pub fn confirm(frame: &mut Frame, area: Rect, p: &Pending) {
    let danger = !matches!(p, Pending::Quit { .. });
    let colour = if danger { theme::BAD } else { theme::WARN };
    let w = area.width.saturating_sub(4).min(72);
    let text = vec![
        Line::from(Span::styled(
            p.message(),
            Style::new().add_modifier(Modifier::BOLD),
        )),
        Line::from(""),
        Line::from(Span::styled(p.consequence(), theme::closed())),
        Line::from(""),
        answer_line(),
    ];
    // Wrapped height: message lines plus the fixed ones, inside borders.
    let inner_w = w.saturating_sub(4).max(1) as usize;
    let msg_lines = p.message().width().div_ceil(inner_w) as u16;
    let cons_lines = p.consequence().width().div_ceil(inner_w) as u16;
    let h = msg_lines + cons_lines + 3 + 2;
    let rect = centered(area, w, h);
    let title = if danger { " Confirm " } else { " Quit " };
    let block = Block::bordered()
        .border_type(BorderType::Double)
        .border_style(Style::new().fg(colour))
        .title(Span::styled(
            title,
            Style::new().fg(colour).add_modifier(Modifier::BOLD),
        ))
        .padding(ratatui::widgets::Padding::horizontal(1));
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
        rect,
    );
}

fn answer_line() -> Line<'static> {
    let keys = |a: Action| {
        in_scope(Scope::Confirm)
            .find(|b| b.action == a)
            .map(keys_label)
            .unwrap_or_default()
    };
    Line::from(vec![
        Span::styled(format!("[{}]", keys(Action::Confirm)), theme::key()),
        Span::raw(" yes    "),
        Span::styled(format!("[{}]", keys(Action::Cancel)), theme::key()),
        Span::raw(" no"),
    ])
    .centered()
}

/// Scopes in the order help lists them.
const SCOPES: [Scope; 10] = [
    Scope::Any,
    Scope::Overview,
    Scope::Detail,
    Scope::Message,
    Scope::Inject,
    Scope::Find,
    Scope::Found,
    Scope::Confirm,
    Scope::Filter,
    Scope::Help,
];

/// Help lines: a heading per scope, then one line per binding.
fn help_lines(key_w: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for scope in SCOPES {
        lines.push(Line::from(Span::styled(scope.title(), theme::header())));
        for b in in_scope(scope) {
            lines.push(Line::from(vec![
                Span::styled(format!(" {:<key_w$}", keys_label(b)), theme::key()),
                Span::raw(format!(" {}", b.help)),
            ]));
        }
    }
    lines
}

/// The help overlay, scrolled down by `scroll` lines when it does not fit.
pub fn help(frame: &mut Frame, area: Rect, scroll: usize) {
    let key_w = 8;
    let mut lines = help_lines(key_w);
    let w = area.width.saturating_sub(2).min(100);
    // Two columns unless the list fits in one with room to spare.
    let two = (lines.len() as u16 + 3) > area.height.saturating_sub(2) || w >= 90;
    let room = area.height.saturating_sub(3).max(1) as usize;
    let per_col = if two {
        lines.len().div_ceil(2)
    } else {
        lines.len()
    }
    .min(room);
    let shown = if two { per_col * 2 } else { per_col };
    let more = lines.len() > shown;
    let scroll = scroll.min(lines.len().saturating_sub(shown));
    lines.drain(..scroll);
    lines.truncate(shown);
    let h = (per_col as u16 + 2).min(area.height);
    let rect = centered(area, if two { w } else { w.min(50) }, h);
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(Style::new().fg(theme::ACCENT))
        .title(Span::styled(" Keys ", theme::title()))
        .title_bottom(
            Line::from(vec![
                Span::styled(" ?", theme::key()),
                Span::raw("/"),
                Span::styled("Esc", theme::key()),
                Span::raw(if more {
                    " close · ↑↓ more "
                } else {
                    " close · filter matches client, path, backend, header values "
                }),
            ])
            .right_aligned(),
        );
    frame.render_widget(Clear, rect);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    if two {
        let [a, b] = Layout::horizontal([Constraint::Fill(1); 2])
            .spacing(1)
            .areas(inner);
        let mut first = lines;
        let second = first.split_off(per_col.min(first.len()));
        frame.render_widget(Paragraph::new(first), a);
        frame.render_widget(Paragraph::new(second), b);
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}
