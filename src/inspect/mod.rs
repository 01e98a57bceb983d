//! What captured traffic is, read and written: decoders for the framings
//! applications put inside WebSocket messages, the redaction of credentials, a
//! tunnel as HAR and as a JSON Lines recording. A leaf like [`crate::event`]: the
//! dashboard, the admin API and the `replay` command use it, and it knows none of
//! them.

pub mod decode;
pub mod har;
pub mod recording;
pub mod redact;
pub mod search;

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};

/// `2024-05-01T12:00:00.123Z`.
pub fn rfc3339(at: SystemTime) -> String {
    DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Millis, true)
}
