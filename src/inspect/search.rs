//! Finding a string in captured messages across tunnels (the order id being
//! chased): ASCII case-insensitive, in what the application sent (inflated when it
//! was compressed), with a snippet around the first match.

/// Hits returned at most by one search.
pub const MAX_HITS: usize = 200;

/// Where `needle` (already ASCII-lowercased, not empty) first occurs in `hay`,
/// ignoring ASCII case.
pub fn position(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    (0..=hay.len() - needle.len()).find(|&i| {
        hay[i].to_ascii_lowercase() == first
            && hay[i..i + needle.len()]
                .iter()
                .zip(needle)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
    })
}

/// The snippet for a payload that contains `needle` (lowercased), if it does.
pub fn find(payload: &[u8], needle: &[u8]) -> Option<String> {
    let at = position(payload, needle)?;
    Some(snippet(payload, at, needle.len()))
}

/// Up to 40 bytes either side of the match, as text (lossy), cut marks shown.
pub fn snippet(p: &[u8], at: usize, len: usize) -> String {
    const AROUND: usize = 40;
    let from = at.saturating_sub(AROUND);
    let to = (at + len + AROUND).min(p.len());
    let mut s = String::new();
    if from > 0 {
        s.push('…');
    }
    s.push_str(&String::from_utf8_lossy(&p[from..to]).replace(['\n', '\r', '\t'], " "));
    if to < p.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_ignore_ascii_case_and_report_the_first_place() {
        assert_eq!(position(b"order A-1042 and a-1042", b"a-1042"), Some(6));
        assert_eq!(position(b"nothing", b"a-1042"), None);
        assert_eq!(position(b"ab", b"abc"), None);
        assert_eq!(position(b"", b""), None);
    }

    #[test]
    fn snippets_show_the_match_in_its_context() {
        let p = b"{\"customer\":\"ada lovelace, analytical engines\",\n\"order\":\"A-1042\",\"items\":[1,2,3,4,5,6,7,8,9,10,11,12],\"paid\":true}";
        let at = position(p, b"a-1042").unwrap();
        let s = snippet(p, at, 6);
        assert!(s.contains("\"order\":\"A-1042\""), "{s}");
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(!s.contains('\n'));
    }
}
