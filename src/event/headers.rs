//! [`Headers`]: the compact header lists that events, tunnels and the dashboard keep
//! for every handshake.

use std::cell::RefCell;
use std::sync::Arc;

/// Header name/value pairs in the order they were seen (values lossily decoded).
///
/// Every live tunnel keeps three of these, so they sit in one shared allocation
/// (`name\0value\0…`) rather than two strings per header; cloning is an `Arc` bump.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Arc<str>);

impl Headers {
    /// Builds a list from pairs; a NUL (which no valid header holds) becomes a space.
    /// The list is assembled in a per-thread buffer, so building one costs a single
    /// allocation: this runs three times for every handshake.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Headers {
        thread_local! {
            static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
        }
        SCRATCH.with_borrow_mut(|text| {
            text.clear();
            for (name, value) in pairs {
                for part in [name.as_ref(), value.as_ref()] {
                    let mut pieces = part.split('\0');
                    text.push_str(pieces.next().unwrap_or_default());
                    for piece in pieces {
                        text.push(' ');
                        text.push_str(piece);
                    }
                    text.push('\0');
                }
            }
            let headers = Headers(Arc::from(text.as_str()));
            // An unusually long list (over four times the default head limit) does
            // not leave its buffer behind in the thread.
            if text.capacity() > 64 * 1024 {
                *text = String::new();
            }
            headers
        })
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut parts = self.0.split_terminator('\0');
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
    }

    pub fn len(&self) -> usize {
        self.0.bytes().filter(|&b| b == 0).count() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first value of a header, by case-insensitive name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Owned pairs, for callers that sort or keep them.
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Headers;

    #[test]
    fn headers_keep_pairs_in_order_with_repeats_and_empty_values() {
        let pairs = [
            ("host", "a"),
            ("cookie", "x=1"),
            ("cookie", "y=2"),
            ("x-empty", ""),
        ];
        let h = Headers::from_pairs(pairs);
        assert_eq!(h.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(h.len(), 4);
        assert_eq!(h.get("COOKIE"), Some("x=1"));
        assert_eq!(h.get("x-empty"), Some(""));
        assert_eq!(h.get("missing"), None);
    }

    #[test]
    fn headers_without_pairs_are_empty_and_a_nul_cannot_split_a_pair() {
        assert!(Headers::from_pairs(std::iter::empty::<(&str, &str)>()).is_empty());
        let h = Headers::from_pairs([("a\0b", "c\0d")]);
        assert_eq!(h.iter().collect::<Vec<_>>(), [("a b", "c d")]);
    }
}
