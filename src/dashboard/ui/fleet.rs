//! `tunnelscope top`'s lines under the header: each instance's state (up, its
//! tunnels; down, why, and when it is tried again; connecting), and what the last
//! command sent to all of them did on each.

use std::time::{Duration, SystemTime};

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::super::fmt;
use super::super::state::State;
use super::super::theme;
use crate::event::Link;

/// How long a command's outcome stays on screen (it stays in the log pane).
const OUTCOME_SHOWN: Duration = Duration::from_secs(15);

/// Rows these lines take: none without a fleet.
pub fn height(state: &State) -> u16 {
    match &state.fleet {
        None => 0,
        Some(_) => 1 + u16::from(outcome(state).is_some()),
    }
}

fn outcome(state: &State) -> Option<&crate::event::FleetOutcome> {
    let (at, o) = state.outcome.as_ref()?;
    (fmt::since(state.now, *at) < OUTCOME_SHOWN).then_some(o)
}

pub fn draw(frame: &mut Frame, area: Rect, state: &State) {
    let Some(fleet) = &state.fleet else {
        return;
    };
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let up = fleet
        .instances
        .iter()
        .filter(|i| i.link == Link::Up)
        .count();
    let mut spans = vec![Span::styled(
        format!(" fleet {up}/{} up", fleet.instances.len()),
        bold,
    )];
    for i in &fleet.instances {
        spans.push(Span::raw(" │ "));
        spans.push(Span::styled(i.name.to_string(), bold));
        match &i.link {
            Link::Up => {
                spans.push(Span::styled(" ● up", Style::new().fg(theme::OK)));
                spans.push(Span::raw(format!(" {} live", fmt::grouped(i.tunnels))));
            }
            Link::Connecting => {
                spans.push(Span::styled(" ◌ connecting", Style::new().fg(theme::WARN)));
            }
            Link::Down { why, retry_at } => {
                let left = retry_at
                    .duration_since(state.now.max(SystemTime::UNIX_EPOCH))
                    .unwrap_or_default();
                spans.push(Span::styled(
                    format!(
                        " ✕ down: {why}, retrying in {} s",
                        left.as_secs_f64().ceil() as u64
                    ),
                    Style::new().fg(theme::BAD),
                ));
            }
        }
    }
    let rows = area.height as usize;
    let first = Rect { height: 1, ..area };
    frame.render_widget(Paragraph::new(Line::from(spans)), first);
    if let (Some(o), true) = (outcome(state), rows > 1) {
        let failed = o.results.iter().any(|(_, r)| r.is_err());
        let (mark, colour) = if failed {
            (" ✕ ", theme::BAD)
        } else {
            (" ✓ ", theme::OK)
        };
        let line = Line::from(vec![
            Span::styled(mark, Style::new().fg(colour)),
            Span::raw(fmt::fleet_outcome(o)),
        ]);
        let second = Rect {
            y: area.y + 1,
            height: 1,
            ..area
        };
        frame.render_widget(Paragraph::new(line), second);
    }
}
