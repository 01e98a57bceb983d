//! The frame tail in a tunnel's detail: live, or frozen while paused or scrolled
//! back; filtered by the detail's `/` filter; injected frames and holds marked.

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::super::fmt;
use super::super::input::Detail;
use super::super::state::{State, Tunnel};
use super::super::theme;
use crate::event::{FrameSample, OpKind};

pub fn draw(frame: &mut Frame, area: Rect, state: &State, t: &Tunnel, d: &Detail) {
    let samples = d.frames(state);
    let h = area.height.saturating_sub(1) as usize;
    let scroll = d.scroll.min(samples.len().saturating_sub(1));
    let end = samples.len() - scroll.min(samples.len());
    let start = end.saturating_sub(h);
    let mut title = vec![
        Span::styled("Frames ", theme::title()),
        Span::styled(
            format!(
                "{} kept of {} ",
                samples.len(),
                fmt::grouped(t.samples_seen)
            ),
            theme::closed(),
        ),
    ];
    title.extend(badges(t, d));
    title.push(if d.frozen.is_some() {
        Span::styled(" PAUSED ", Style::new().fg(Color::Black).bg(theme::WARN))
    } else {
        Span::styled(" LIVE ", Style::new().fg(Color::Black).bg(theme::OK))
    });
    if scroll > 0 {
        title.push(Span::styled(format!(" ↓ {scroll} newer"), theme::closed()));
    }
    let mut lines = vec![Line::from(title)];
    if samples.is_empty() {
        let text = if d.filtering() {
            "no frames kept match the filter"
        } else {
            "no frames yet"
        };
        lines.push(Line::from(Span::styled(text, theme::closed())));
    }
    let width = area.width as usize;
    lines.extend(
        samples[start..end]
            .iter()
            .map(|s| highlight(frame_line(s, width), d)),
    );
    let area = Rect {
        x: area.x + 1,
        width: area.width.saturating_sub(1),
        ..area
    };
    frame.render_widget(Paragraph::new(lines), area);
}

/// What the detail's lists say beside their title: the filter, and each hold with
/// what waits behind it.
pub fn badges(t: &Tunnel, d: &Detail) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    if !d.filter.source.trim().is_empty() {
        spans.push(Span::styled(
            format!(" / {} ", d.filter.source.trim()),
            Style::new().fg(Color::Black).bg(theme::ACCENT),
        ));
    }
    if d.hide_pings {
        spans.push(Span::styled(" no pings ", theme::closed()));
    }
    for h in &t.held {
        let waiting = match (h.waiting_bytes, h.waiting_frames) {
            (None, _) => "waiting unknown (HTTP/2)".to_string(),
            (Some(b), frames) => {
                let more = if h.at_least { "≥" } else { "" };
                let frames = frames.map_or(String::new(), |f| format!("{f} frames, "));
                let enc = if h.encrypted { " (TLS)" } else { "" };
                format!("{frames}{more}{} waiting{enc}", fmt::bytes(b))
            }
        };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            format!(" HELD {} {waiting} ", h.dir.arrow()),
            Style::new().fg(Color::Black).bg(theme::BAD),
        ));
    }
    spans
}

/// `text`, starting a little before the filter's first match when that match
/// would fall past `room` columns, so what was searched for is in sight.
pub fn around_match(text: &str, room: usize, d: &Detail) -> String {
    let Some(&(from, to)) = d.filter.parsed.found(text).first() else {
        return text.to_string();
    };
    if text[..to].chars().count() <= room || room < 12 {
        return text.to_string();
    }
    // Keep about a third of the room before the match.
    let lead = room / 3;
    let start_char = text[..from].chars().count().saturating_sub(lead);
    let start = text.char_indices().nth(start_char).map_or(from, |(i, _)| i);
    format!("…{}", &text[start..])
}

/// `line` with what the filter's pattern found in its last span (the payload)
/// highlighted.
pub fn highlight(line: Line<'static>, d: &Detail) -> Line<'static> {
    let mut spans = line.spans;
    let Some(last) = spans.pop() else {
        return Line::default();
    };
    let text = last.content.to_string();
    let found = d.filter.parsed.found(&text);
    if found.is_empty() {
        spans.push(last);
        return Line::from(spans);
    }
    let mut at = 0;
    for (from, to) in found {
        if from < at {
            continue;
        }
        spans.push(Span::styled(text[at..from].to_string(), last.style));
        spans.push(Span::styled(
            text[from..to].to_string(),
            Style::new().fg(Color::Black).bg(theme::WARN),
        ));
        at = to;
    }
    spans.push(Span::styled(text[at..].to_string(), last.style));
    Line::from(spans)
}

/// `12:03:04.123 → text     1.2 KiB FIN compressed "hello"`.
pub fn frame_line(s: &FrameSample, width: usize) -> Line<'static> {
    let kind = OpKind::from_opcode(s.opcode);
    let op_style = match kind {
        OpKind::Text => Style::new().fg(Color::White),
        OpKind::Binary | OpKind::Continuation => Style::new().fg(theme::INFO),
        OpKind::Close | OpKind::Ping | OpKind::Pong => Style::new().fg(theme::WARN),
        OpKind::Reserved => Style::new().fg(theme::BAD),
    };
    let mut flags = String::from(if s.fin { "FIN" } else { "   " });
    if s.injected {
        flags.push_str(" injected");
    }
    if s.rsv & 0b100 != 0 {
        flags.push_str(" compressed");
    }
    if s.rsv & 0b010 != 0 {
        flags.push_str(" RSV2");
    }
    if s.rsv & 0b001 != 0 {
        flags.push_str(" RSV3");
    }
    let preview = if kind == OpKind::Close && s.preview.len() >= 2 {
        let code = u16::from_be_bytes([s.preview[0], s.preview[1]]);
        let reason = String::from_utf8_lossy(&s.preview[2..]);
        format!("{code} {} {reason:?}", fmt::close_code_name(code))
    } else if s.preview.is_empty() {
        String::new()
    } else {
        fmt::preview(&s.preview, (s.preview.len() as u64) < s.len)
    };
    // Compressed frames are why previews look like noise: make that visible.
    let flag_style = if s.injected {
        Style::new().fg(theme::ACCENT)
    } else if s.rsv != 0 {
        Style::new().fg(theme::WARN)
    } else {
        Style::new().fg(theme::DIM)
    };
    let head = format!("{} ", fmt::clock_ms(s.at));
    let used = head.len() + 2 + 9 + 10 + flags.len().max(14) + 1;
    Line::from(vec![
        Span::styled(head, theme::closed()),
        Span::styled(
            format!("{} ", s.dir.arrow()),
            Style::new().fg(theme::dir(s.dir)),
        ),
        Span::styled(format!("{:<8} ", kind.name()), op_style),
        Span::raw(format!("{:>9} ", fmt::bytes(s.len))),
        Span::styled(format!("{flags:<14} "), flag_style),
        Span::raw(fmt::truncate(&preview, width.saturating_sub(used))),
    ])
}
