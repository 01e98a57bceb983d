//! The `/` filter of a tunnel's frame tail and message list: words to find
//! (case-insensitive), or `re:` and a regular expression; `->` / `<-` (or `c2b` /
//! `b2c`) for one direction; `op:text,binary,close,ping,pong` for opcodes. Pure, so
//! it is tested without a terminal.

use regex::Regex;

use crate::event::{Dir, OpKind};

/// A parsed filter. The empty filter lets everything through.
#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    dir: Option<Dir>,
    kinds: Vec<OpKind>,
    pattern: Option<Pattern>,
}

#[derive(Debug, Clone)]
enum Pattern {
    /// Lowercased.
    Words(String),
    Regex(Regex),
}

impl TailFilter {
    /// Reads a filter line; a bad `op:` or regular expression says what is wrong.
    pub fn parse(line: &str) -> Result<TailFilter, String> {
        let mut f = TailFilter::default();
        let mut words = Vec::new();
        let mut rest = line.trim_start();
        while !rest.is_empty() {
            if let Some(re) = rest.strip_prefix("re:") {
                let re = Regex::new(re).map_err(|e| format!("re: {e}"))?;
                f.pattern = Some(Pattern::Regex(re));
                break;
            }
            let (token, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            rest = after.trim_start();
            match token {
                "->" | "→" | "c2b" => f.dir = Some(Dir::ClientToBackend),
                "<-" | "←" | "b2c" => f.dir = Some(Dir::BackendToClient),
                _ => match token.strip_prefix("op:") {
                    Some(ops) => {
                        for op in ops.split(',').filter(|o| !o.is_empty()) {
                            f.kinds.push(kind(op).ok_or_else(|| {
                                format!("op:{op}? say text, binary, close, ping, pong or cont")
                            })?);
                        }
                    }
                    None => words.push(token),
                },
            }
        }
        if f.pattern.is_none() && !words.is_empty() {
            f.pattern = Some(Pattern::Words(words.join(" ").to_ascii_lowercase()));
        }
        Ok(f)
    }

    pub fn is_empty(&self) -> bool {
        self.dir.is_none() && self.kinds.is_empty() && self.pattern.is_none()
    }

    /// Whether a frame or message going `dir`, of `kind`, with `text` (its payload
    /// as text) passes.
    pub fn matches(&self, dir: Dir, kind: OpKind, text: &str) -> bool {
        self.dir.is_none_or(|d| d == dir)
            && (self.kinds.is_empty() || self.kinds.contains(&kind))
            && (self.pattern.is_none() || !self.found(text).is_empty())
    }

    /// Where the pattern occurs in `text` (byte ranges), to highlight.
    pub fn found(&self, text: &str) -> Vec<(usize, usize)> {
        match &self.pattern {
            None => Vec::new(),
            Some(Pattern::Regex(re)) => re
                .find_iter(text)
                .filter(|m| !m.is_empty())
                .map(|m| (m.start(), m.end()))
                .collect(),
            Some(Pattern::Words(w)) => {
                // ASCII lowercasing keeps byte offsets; other letters match as typed.
                let hay = text.to_ascii_lowercase();
                hay.match_indices(w.as_str())
                    .map(|(i, m)| (i, i + m.len()))
                    .collect()
            }
        }
    }
}

fn kind(op: &str) -> Option<OpKind> {
    Some(match op {
        "text" => OpKind::Text,
        "binary" => OpKind::Binary,
        "close" => OpKind::Close,
        "ping" => OpKind::Ping,
        "pong" => OpKind::Pong,
        "cont" | "continuation" => OpKind::Continuation,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dir::{BackendToClient as B2C, ClientToBackend as C2B};

    #[test]
    fn words_match_case_insensitively_and_say_where() {
        let f = TailFilter::parse("order a-1042").unwrap();
        assert!(f.matches(C2B, OpKind::Text, r#"{"Order A-1042": 1}"#));
        assert!(!f.matches(C2B, OpKind::Text, "order A-1043"));
        assert_eq!(
            f.found("x ORDER A-1042 y order a-1042"),
            [(2, 14), (17, 29)]
        );
    }

    #[test]
    fn direction_and_opcodes_narrow_it() {
        let f = TailFilter::parse("<- op:text,binary").unwrap();
        assert!(f.matches(B2C, OpKind::Binary, ""));
        assert!(!f.matches(C2B, OpKind::Text, ""));
        assert!(!f.matches(B2C, OpKind::Ping, ""));
        let f = TailFilter::parse("-> hello").unwrap();
        assert!(f.matches(C2B, OpKind::Text, "say hello"));
        assert!(!f.matches(B2C, OpKind::Text, "say hello"));
    }

    #[test]
    fn re_takes_the_rest_of_the_line_as_a_regex() {
        let f = TailFilter::parse("op:text re:id\":\\s*4[0-9]+ ").unwrap();
        assert!(f.matches(C2B, OpKind::Text, r#"{"id": 42 }"#));
        assert!(!f.matches(C2B, OpKind::Text, r#"{"id": 52 }"#));
        assert_eq!(f.found(r#"{"id": 42 }"#), [(2, 10)]);
        assert!(TailFilter::parse("re:(").unwrap_err().starts_with("re:"));
        assert!(TailFilter::parse("op:pang").unwrap_err().contains("pang"));
    }

    #[test]
    fn the_empty_filter_lets_everything_through() {
        let f = TailFilter::parse("  ").unwrap();
        assert!(f.is_empty());
        assert!(f.matches(B2C, OpKind::Pong, "anything"));
    }
}
