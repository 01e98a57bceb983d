//! The tunnel list as the Tunnels panel shows it: filtered, sorted, live tunnels
//! first and recently closed ones after. Key handling and rendering both use this one
//! function, so "the selected row" means the same thing to both.

use std::cmp::Ordering;

use super::state::{ClosedTunnel, State, Tunnel};

/// A column the Tunnels panel can be sorted by; `s` cycles through them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Id,
    Client,
    Path,
    Backend,
    Subprotocol,
    Age,
    FramesC2B,
    FramesB2C,
    BytesC2B,
    BytesB2C,
    Rate,
    Idle,
}

impl SortKey {
    pub const ALL: [SortKey; 12] = [
        SortKey::Id,
        SortKey::Client,
        SortKey::Path,
        SortKey::Backend,
        SortKey::Subprotocol,
        SortKey::Age,
        SortKey::FramesC2B,
        SortKey::FramesB2C,
        SortKey::BytesC2B,
        SortKey::BytesB2C,
        SortKey::Rate,
        SortKey::Idle,
    ];

    /// The next column, wrapping around.
    pub fn next(self) -> SortKey {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    pub fn name(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Client => "client",
            SortKey::Path => "path",
            SortKey::Backend => "backend",
            SortKey::Subprotocol => "subprotocol",
            SortKey::Age => "age",
            SortKey::FramesC2B => "frames →",
            SortKey::FramesB2C => "frames ←",
            SortKey::BytesC2B => "bytes →",
            SortKey::BytesB2C => "bytes ←",
            SortKey::Rate => "msg/s",
            SortKey::Idle => "idle",
        }
    }
}

/// One row of the Tunnels panel.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub tunnel: &'a Tunnel,
    /// Set for tunnels that have ended.
    pub closed: Option<&'a ClosedTunnel>,
}

/// The rows matching `filter`, sorted by `key` (`desc` reverses), live before closed.
pub fn tunnel_rows<'a>(state: &'a State, key: SortKey, desc: bool, filter: &str) -> Vec<Row<'a>> {
    let needle = filter.trim().to_lowercase();
    let keep = |t: &Tunnel| needle.is_empty() || matches(t, &needle);
    let mut live: Vec<Row<'a>> = state
        .tunnels
        .values()
        .filter(|t| keep(t))
        .map(|tunnel| Row {
            tunnel,
            closed: None,
        })
        .collect();
    let mut closed: Vec<Row<'a>> = state
        .closed
        .iter()
        .rev()
        .filter(|c| keep(&c.tunnel))
        .map(|c| Row {
            tunnel: &c.tunnel,
            closed: Some(c),
        })
        .collect();
    let by = |a: &Row, b: &Row| {
        let o = compare(state, key, a.tunnel, b.tunnel).then(a.tunnel.id.cmp(&b.tunnel.id));
        if desc {
            o.reverse()
        } else {
            o
        }
    };
    live.sort_by(by);
    // History keeps "most recently closed first" unless the user picked a column.
    if key != SortKey::Id || desc {
        closed.sort_by(by);
    }
    live.extend(closed);
    live
}

/// Whether `t` matches a lower-cased filter: client address, path, backend, or the
/// value of any request header the client sent.
pub fn matches(t: &Tunnel, needle: &str) -> bool {
    let hit = |s: &str| s.to_lowercase().contains(needle);
    if hit(&t.client.to_string()) || hit(&t.path) {
        return true;
    }
    if t.backend.as_ref().is_some_and(|b| hit(&b.to_string())) {
        return true;
    }
    t.handshake.as_ref().is_some_and(|h| {
        h.request_in.iter().any(|(_, v)| hit(v)) || h.subprotocol.as_deref().is_some_and(hit)
    })
}

fn compare(state: &State, key: SortKey, a: &Tunnel, b: &Tunnel) -> Ordering {
    let now = state.now;
    match key {
        SortKey::Id => a.id.cmp(&b.id),
        SortKey::Client => a.client.cmp(&b.client),
        SortKey::Path => a.path.cmp(&b.path),
        SortKey::Backend => a.backend.cmp(&b.backend),
        SortKey::Subprotocol => a.subprotocol().cmp(&b.subprotocol()),
        // Oldest first reads as "longest-lived at the top".
        SortKey::Age => a.opened.cmp(&b.opened),
        SortKey::FramesC2B => a
            .stats
            .client_to_backend
            .frames()
            .cmp(&b.stats.client_to_backend.frames()),
        SortKey::FramesB2C => a
            .stats
            .backend_to_client
            .frames()
            .cmp(&b.stats.backend_to_client.frames()),
        SortKey::BytesC2B => a
            .stats
            .client_to_backend
            .bytes
            .cmp(&b.stats.client_to_backend.bytes),
        SortKey::BytesB2C => a
            .stats
            .backend_to_client
            .bytes
            .cmp(&b.stats.backend_to_client.bytes),
        // Busiest first: that is what one sorts by rate for.
        SortKey::Rate => b.msgs_per_sec(now).total_cmp(&a.msgs_per_sec(now)),
        // Most recently active first; never-active last.
        SortKey::Idle => b.last_frame().cmp(&a.last_frame()),
    }
}
