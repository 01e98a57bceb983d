//! The dashboard's colours, in one place so every panel means the same thing by the
//! same colour: cyan is client→backend, magenta backend→client, green healthy, yellow
//! draining, blue drained, red down or killed, grey history.

use ratatui::style::{Color, Modifier, Style};

use crate::event::{AdminState, Dir, Health};

pub const ACCENT: Color = Color::Cyan;
pub const C2B: Color = Color::Cyan;
pub const B2C: Color = Color::Magenta;
pub const DIM: Color = Color::DarkGray;
pub const OK: Color = Color::Green;
pub const WARN: Color = Color::Yellow;
pub const INFO: Color = Color::Blue;
pub const BAD: Color = Color::Red;

/// The colour of a direction of flow.
pub fn dir(d: Dir) -> Color {
    match d {
        Dir::ClientToBackend => C2B,
        Dir::BackendToClient => B2C,
    }
}

/// The colour of a backend's state word; health `Down` wins over admin state because
/// it is what an operator must notice first.
pub fn backend_state(admin: AdminState, health: Health) -> Style {
    if health == Health::Down {
        return Style::new().fg(BAD).add_modifier(Modifier::BOLD);
    }
    match admin {
        AdminState::Active => Style::new().fg(OK),
        AdminState::Draining => Style::new().fg(WARN),
        AdminState::Drained => Style::new().fg(INFO),
        AdminState::Disabled => Style::new().fg(Color::Gray).add_modifier(Modifier::DIM),
    }
}

/// Panel border: bright when the panel has the keyboard, dim otherwise.
pub fn border(focused: bool) -> Style {
    if focused {
        Style::new().fg(ACCENT)
    } else {
        Style::new().fg(DIM)
    }
}

/// Panel titles.
pub fn title() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// Key names inside hints (`d`, `Enter`).
pub fn key() -> Style {
    Style::new().fg(WARN).add_modifier(Modifier::BOLD)
}

/// Table headers.
pub fn header() -> Style {
    Style::new().fg(ACCENT).add_modifier(Modifier::BOLD)
}

/// The selected row; a focused table highlights harder than an unfocused one so the
/// user sees which selection the keys act on.
pub fn selected(focused: bool) -> Style {
    if focused {
        Style::new()
            .bg(Color::Rgb(40, 60, 90))
            .add_modifier(Modifier::BOLD)
    } else {
        Style::new().bg(Color::Rgb(40, 40, 40))
    }
}

/// Tunnels that have ended, kept for a while as history.
pub fn closed() -> Style {
    Style::new().fg(DIM)
}

/// The title bar across the top.
pub fn bar() -> Style {
    Style::new().bg(Color::Rgb(30, 50, 70)).fg(Color::White)
}
