//! Which header values are credentials, and how they are shown: the API, the
//! dashboard, HAR exports and recordings all redact the same names, unless
//! `[inspect] reveal_secrets = true`.

use std::borrow::Cow;

/// Headers whose values are credentials: served as `«redacted, N bytes»` unless
/// `[inspect] reveal_secrets = true`.
pub const SECRET_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Which header values the API serves redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redact {
    /// Lowercase names; empty when secrets are revealed.
    names: Vec<String>,
}

impl Default for Redact {
    fn default() -> Self {
        Self::new(&[], false)
    }
}

impl Redact {
    pub fn new(extra: &[String], reveal: bool) -> Redact {
        let names = if reveal {
            Vec::new()
        } else {
            SECRET_HEADERS
                .iter()
                .map(|n| n.to_string())
                .chain(extra.iter().map(|n| n.to_ascii_lowercase()))
                .collect()
        };
        Redact { names }
    }

    /// Whether nothing is redacted (secrets revealed).
    pub fn reveals(&self) -> bool {
        self.names.is_empty()
    }

    pub fn pairs<'a>(&self, list: &'a crate::event::Headers) -> Vec<(&'a str, Cow<'a, str>)> {
        list.iter()
            .map(|(name, value)| {
                if self.names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    let shown = format!("«redacted, {} bytes»", value.len());
                    (name, Cow::Owned(shown))
                } else {
                    (name, Cow::Borrowed(value))
                }
            })
            .collect()
    }
}
