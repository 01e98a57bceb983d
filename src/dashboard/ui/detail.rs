//! A tunnel's detail view: who talks to whom, the handshake as each side saw it, the
//! negotiated subprotocol and extensions, counters by opcode and direction, and the
//! frame tail (live, or frozen while paused or scrolled back).

use crate::event::{Dir, DirStats, Headers, OpKind};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::super::fmt;
use super::super::input::Detail;
use super::super::keys::{Action, Scope};
use super::super::state::{ClosedTunnel, Ending, State, Tunnel};
use super::super::theme;
use super::{hints, panel};

/// Width of the counters table when there is room for it beside the tail.
const COUNTERS_W: u16 = 50;

pub fn draw(frame: &mut Frame, area: Rect, state: &State, d: &Detail) {
    let hint = hints(
        &[
            (Action::Pause, "pause"),
            (Action::PageUp, "scroll"),
            (Action::CloseTunnel, "close"),
            (Action::Back, "back"),
        ],
        Scope::Detail,
    );
    let Some((t, closed)) = state.find(d.id) else {
        let block = panel(
            Line::from(format!(" Tunnel #{} ", d.id)),
            hint,
            true,
            area.width,
        );
        let msg = "This tunnel has left the history. Esc goes back.";
        frame.render_widget(
            Paragraph::new(msg).style(theme::closed()).block(block),
            area,
        );
        return;
    };
    let block = panel(title(t, closed, state), hint, true, area.width);
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let wide = inner.width >= 110;
    let summary = summary(t, wide);
    let header_rows = t.handshake.as_ref().map_or(1, |h| {
        h.request_in
            .len()
            .max(h.request_out.len())
            .max(h.response.len())
            + 1
    }) as u16;
    let rest = inner.height.saturating_sub(summary.len() as u16);
    let headers_h = header_rows.min(rest * 2 / 5).max(2);
    let [sum_a, head_a, low_a] = Layout::vertical([
        Constraint::Length(summary.len() as u16),
        Constraint::Length(headers_h),
        Constraint::Fill(1),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(summary), sum_a);
    headers(frame, head_a, t, d);
    if wide {
        let [c, tail_a] =
            Layout::horizontal([Constraint::Length(COUNTERS_W), Constraint::Fill(1)]).areas(low_a);
        counters(frame, c, t);
        lower(frame, tail_a, state, t, d);
    } else {
        lower(frame, low_a, state, t, d);
    }
}

/// The lower pane: the frame tail, or the whole messages (`m`).
fn lower(frame: &mut Frame, area: Rect, state: &State, t: &Tunnel, d: &Detail) {
    if d.messages {
        super::messages::list(frame, area, state, t, d);
    } else {
        super::tail::draw(frame, area, state, t, d);
    }
}

fn title<'a>(t: &Tunnel, closed: Option<&ClosedTunnel>, state: &State) -> Line<'a> {
    let mut spans = vec![Span::styled(format!(" Tunnel #{} ", t.id), theme::title())];
    let (word, style) = match closed.map(|c| &c.ending) {
        None if t.handshake.is_none() => ("handshaking".to_string(), Style::new().fg(theme::WARN)),
        None => (
            format!("live {}", fmt::duration(fmt::since(state.now, t.opened))),
            Style::new().fg(theme::OK),
        ),
        Some(Ending::Closed {
            code,
            reason,
            side,
            duration,
            error,
        }) => {
            let code = code.map_or_else(
                || "no code".into(),
                |c| format!("{c} {}", fmt::close_code_name(c)),
            );
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(" \"{reason}\"")
            };
            let error = error
                .as_ref()
                .map_or(String::new(), |e| format!(" · error: {e}"));
            (
                format!(
                    "closed by {side} · {code}{reason}{error} · after {}",
                    fmt::duration(*duration)
                ),
                theme::closed(),
            )
        }
        Some(Ending::Refused(r)) => (
            format!("refused {} {}", r.status, r.reason),
            Style::new().fg(theme::BAD),
        ),
        Some(Ending::Lost) => ("ended while the dashboard lagged".into(), theme::closed()),
    };
    spans.push(Span::styled(format!("{word} "), style));
    if let (None, Some((idle, left))) = (closed, t.idle_cut(state.now)) {
        let timeout = t.idle_timeout.unwrap_or_default();
        spans.push(Span::styled(
            format!(
                "· idle {}, cut in {} (idle timeout {}) ",
                fmt::duration(idle),
                fmt::duration(left),
                fmt::duration(timeout)
            ),
            idle_style(left, timeout),
        ));
    }
    if closed.is_none() && t.parked {
        spans.push(Span::styled(
            "· parked: silent, no relay task until a byte, timer or command ",
            theme::closed(),
        ));
    }
    Line::from(spans)
}

/// Calm while the cut is far, a warning in its last tenth (or last minute).
pub(super) fn idle_style(left: std::time::Duration, timeout: std::time::Duration) -> Style {
    if left < (timeout / 10).max(std::time::Duration::from_secs(60)) {
        Style::new().fg(theme::WARN)
    } else {
        theme::closed()
    }
}

fn kv(k: &str, v: String, style: Style) -> [Span<'static>; 2] {
    [
        Span::styled(format!("{k} "), theme::closed()),
        Span::styled(v, style),
    ]
}

fn summary(t: &Tunnel, wide: bool) -> Vec<Line<'static>> {
    let plain = Style::new();
    let mut first: Vec<Span> = Vec::new();
    first.extend(kv(
        "client",
        t.client.to_string(),
        Style::new().fg(theme::C2B),
    ));
    first.push(Span::raw("  "));
    first.extend(kv(
        "backend",
        t.backend
            .as_ref()
            .map_or("(choosing)".into(), |b| b.to_string()),
        Style::new().fg(theme::B2C),
    ));
    first.push(Span::raw("  "));
    first.extend(kv(
        "path",
        t.path.clone(),
        plain.add_modifier(Modifier::BOLD),
    ));
    let mut second: Vec<Span> = Vec::new();
    second.extend(kv("opened", fmt::clock_ms(t.opened), plain));
    second.push(Span::raw("  "));
    if wide {
        second.extend(kv(
            "via",
            format!("{} → route {}", t.listener, t.route),
            plain,
        ));
        second.push(Span::raw("  "));
    }
    if t.handshake.as_ref().is_some_and(|h| h.h2) {
        second.extend(kv(
            "over",
            "HTTP/2 (extended CONNECT)".to_string(),
            Style::new().fg(theme::INFO),
        ));
        second.push(Span::raw("  "));
    }
    second.extend(kv(
        "subprotocol",
        t.subprotocol().unwrap_or("none").to_string(),
        plain.fg(Color::White),
    ));
    let ext = t.extensions().unwrap_or("none");
    let deflate = ext.contains("permessage-deflate");
    let ext_style = if deflate {
        Style::new().fg(theme::WARN).add_modifier(Modifier::BOLD)
    } else {
        plain
    };
    let mut third: Vec<Span> = kv("extensions", ext.to_string(), ext_style).into();
    if deflate {
        third.push(Span::styled("  (RSV1 = compressed)", theme::closed()));
    }
    let mut lines = vec![Line::from(first), Line::from(second), Line::from(third)];
    if !wide {
        lines.push(compact_counters(
            &t.stats.client_to_backend,
            Dir::ClientToBackend,
        ));
        lines.push(compact_counters(
            &t.stats.backend_to_client,
            Dir::BackendToClient,
        ));
    }
    if t.violation_count > 0 {
        let last: Vec<String> = t
            .violations
            .iter()
            .rev()
            .take(3)
            .map(|(d, v)| format!("{} {v}", d.arrow()))
            .collect();
        lines.push(Line::from(Span::styled(
            format!(
                "⚠ {} protocol violations: {}",
                t.violation_count,
                last.join("; ")
            ),
            Style::new().fg(theme::BAD),
        )));
    }
    lines
}

/// One line per direction for narrow terminals: frames by opcode, bytes, messages.
fn compact_counters(s: &DirStats, dir: Dir) -> Line<'static> {
    let parts: Vec<String> = OpKind::ALL
        .iter()
        .filter(|k| s.op(**k).frames > 0)
        .map(|k| format!("{} {}", k.name(), fmt::count(s.op(*k).frames)))
        .collect();
    let parts = if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" · ")
    };
    Line::from(vec![
        Span::styled(
            format!("{} ", dir.arrow()),
            Style::new().fg(theme::dir(dir)),
        ),
        Span::raw(format!(
            "{} frames ({parts}) · {} msgs · {}",
            fmt::count(s.frames()),
            fmt::count(s.messages),
            fmt::bytes(s.bytes)
        )),
    ])
}

fn headers(frame: &mut Frame, area: Rect, t: &Tunnel, d: &Detail) {
    let Some(h) = &t.handshake else {
        let msg = "Handshake in progress: headers appear once the backend answers 101.";
        frame.render_widget(Paragraph::new(msg).style(theme::closed()), area);
        return;
    };
    let cols = Layout::horizontal([Constraint::Fill(1); 3])
        .spacing(1)
        .split(area);
    let parts: [(&str, &Headers, Color); 3] = [
        ("Client → proxy request", &h.request_in, theme::C2B),
        ("Proxy → backend request", &h.request_out, theme::C2B),
        ("Backend 101 response", &h.response, theme::B2C),
    ];
    for (i, ((label, hs, colour), col)) in parts.into_iter().zip(cols.iter()).enumerate() {
        let mut lines = vec![Line::from(Span::styled(
            label,
            Style::new()
                .fg(colour)
                .add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
        ))];
        let room = col.height.saturating_sub(1) as usize;
        let more = hs.len().saturating_sub(room);
        let shown = if more > 0 {
            room.saturating_sub(1)
        } else {
            room
        };
        let redacted = d.redact.pairs(hs);
        for ((k, v), (_, shown_v)) in hs.iter().zip(&redacted).take(shown) {
            // What the proxy added or rewrote on the way to the backend stands out:
            // that is the difference one opens this view to see.
            let rewritten = i == 1 && !h.request_in.iter().any(|(k2, v2)| k2 == k && v2 == v);
            let v = shown_v.as_ref();
            let value = if rewritten {
                Style::new().fg(theme::OK)
            } else {
                Style::new()
            };
            lines.push(Line::from(vec![
                Span::styled(format!("{k}: "), theme::closed()),
                Span::styled(v, value),
            ]));
        }
        if more > 0 {
            lines.push(Line::from(Span::styled(
                format!("… {} more", hs.len() - shown),
                theme::closed(),
            )));
        }
        frame.render_widget(Paragraph::new(lines), *col);
    }
}

fn counters(frame: &mut Frame, area: Rect, t: &Tunnel) {
    let c2b = &t.stats.client_to_backend;
    let b2c = &t.stats.backend_to_client;
    let num = |n: u64| Cell::from(Line::from(fmt::count(n)).right_aligned());
    let bytes = |n: u64| Cell::from(Line::from(fmt::bytes(n)).right_aligned());
    let mut rows: Vec<Row> = OpKind::ALL
        .iter()
        .filter(|k| **k != OpKind::Reserved || c2b.op(**k).frames + b2c.op(**k).frames > 0)
        .map(|k| {
            let (a, b) = (c2b.op(*k), b2c.op(*k));
            let dim = a.frames + b.frames == 0;
            let row = Row::new(vec![
                Cell::from(k.name()),
                num(a.frames),
                bytes(a.payload_bytes),
                num(b.frames),
                bytes(b.payload_bytes),
            ]);
            if dim {
                row.style(theme::closed())
            } else {
                row
            }
        })
        .collect();
    let bold = Style::new().add_modifier(Modifier::BOLD);
    rows.push(
        Row::new(vec![
            Cell::from("messages"),
            num(c2b.messages),
            Cell::from(""),
            num(b2c.messages),
            Cell::from(""),
        ])
        .style(bold),
    );
    rows.push(
        Row::new(vec![
            Cell::from("on wire"),
            num(c2b.frames()),
            bytes(c2b.bytes),
            num(b2c.frames()),
            bytes(b2c.bytes),
        ])
        .style(bold),
    );
    for (s, dir) in [(c2b, Dir::ClientToBackend), (b2c, Dir::BackendToClient)] {
        if let Some(c) = &s.close {
            let code = c.code.map_or("no code".into(), |c| {
                format!("{c} {}", fmt::close_code_name(c))
            });
            rows.push(Row::new(vec![
                Cell::from(format!("close {}", dir.arrow())),
                Cell::from(format!("{code} {:?}", c.reason)),
            ]));
        }
    }
    let header = Row::new(vec![
        "opcode",
        "→ frames",
        "→ payload",
        "← frames",
        "← payload",
    ])
    .style(theme::header());
    let widths = [
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(10),
    ];
    let block = Block::new()
        .borders(Borders::RIGHT)
        .border_style(theme::border(false))
        .title(Span::styled("Counters", theme::title()));
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}
