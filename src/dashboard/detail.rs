//! The state of a tunnel's detail view: which tunnel, the frame tail frozen or
//! live and how far scrolled, frames or whole messages, the selected message, and
//! the `/` filter (with `P` hiding pings and pongs) both panes apply.

use crate::event::{CapturedMessage, Dir, FrameSample, OpKind, TunnelId};

use super::message::MessageKey;
use super::state::State;
use super::tail_filter::TailFilter;

/// The detail view of one tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub id: TunnelId,
    /// The frame tail as it was when paused; `None` while following live frames.
    pub frozen: Option<Vec<FrameSample>>,
    /// Frames scrolled back from the newest shown (0 = bottom).
    pub scroll: usize,
    /// The lower pane lists whole messages instead of frames (`m`).
    pub messages: bool,
    /// The message selected in that list; None: the newest.
    pub selected: Option<MessageKey>,
    /// The filter line as typed.
    pub filter_text: String,
    /// The last filter line that parsed (a half-typed regex keeps the one before).
    pub filter: TailFilterState,
    /// Why the filter line as typed does not parse.
    pub filter_error: Option<String>,
    /// Pings and pongs are left out (`P`).
    pub hide_pings: bool,
    /// How header values are shown: redacted as the API does, unless revealed
    /// (`v`) for the session.
    pub redact: crate::inspect::redact::Redact,
}

/// A parsed filter, compared by the line it came from.
#[derive(Debug, Clone, Default)]
pub struct TailFilterState {
    pub source: String,
    pub parsed: TailFilter,
}

impl PartialEq for TailFilterState {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for TailFilterState {}

impl Detail {
    pub fn new(id: TunnelId) -> Detail {
        Detail {
            id,
            frozen: None,
            scroll: 0,
            messages: false,
            selected: None,
            filter_text: String::new(),
            filter: TailFilterState::default(),
            filter_error: None,
            hide_pings: false,
            redact: Default::default(),
        }
    }

    /// Whether anything is filtered out.
    pub fn filtering(&self) -> bool {
        self.hide_pings || !self.filter.parsed.is_empty()
    }

    /// Whether a frame or message passes the filter and the ping switch.
    pub fn shows(&self, dir: Dir, kind: OpKind, payload: &[u8]) -> bool {
        if self.hide_pings && matches!(kind, OpKind::Ping | OpKind::Pong) {
            return false;
        }
        self.filter.parsed.is_empty()
            || self
                .filter
                .parsed
                .matches(dir, kind, &String::from_utf8_lossy(payload))
    }

    /// The frames the tail shows: frozen or live, filtered, oldest first.
    pub fn frames<'a>(&'a self, state: &'a State) -> Vec<&'a FrameSample> {
        let all: Box<dyn Iterator<Item = &FrameSample>> = match &self.frozen {
            Some(f) => Box::new(f.iter()),
            None => match state.find(self.id) {
                Some((t, _)) => Box::new(t.tail.iter()),
                None => Box::new(std::iter::empty()),
            },
        };
        all.filter(|s| self.shows(s.dir, OpKind::from_opcode(s.opcode), &s.preview))
            .collect()
    }

    /// The captured messages the list shows, filtered, oldest first.
    pub fn messages<'a>(&self, state: &'a State) -> Vec<&'a CapturedMessage> {
        match &state.messages {
            Some((id, list)) if *id == self.id => list
                .iter()
                .filter(|m| self.shows(m.dir, m.kind, m.payload()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Sets the filter line; the filter changes when it parses.
    pub fn set_filter(&mut self, text: String) {
        match TailFilter::parse(&text) {
            Ok(parsed) => {
                self.filter = TailFilterState {
                    source: text.clone(),
                    parsed,
                };
                self.filter_error = None;
            }
            Err(why) => self.filter_error = Some(why),
        }
        self.filter_text = text;
        self.scroll = 0;
    }
}
