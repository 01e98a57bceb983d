//! Where in the file a problem is: key paths (`pool.chat.server[0].weight`), a
//! schema-free span tree of the document, and one-line messages.
//!
//! The tree is built only when something went wrong, by parsing the same text again
//! with `toml_edit` (the parser under `toml`), which keeps the span of every key and
//! value; it maps a byte offset to the key path that covers it (for serde errors) and a
//! key path to its line and column (for validation).

use std::fmt;
use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(k: &str) -> Self {
        Seg::Key(k.to_string())
    }
}
impl From<&String> for Seg {
    fn from(k: &String) -> Self {
        Seg::Key(k.clone())
    }
}
impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// A key path as written in TOML: `pool.chat.server[0].weight`, `pool."a.b".tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn new<const N: usize>(segs: [Seg; N]) -> Self {
        KeyPath(segs.into())
    }

    fn with(&self, seg: Seg) -> Self {
        let mut p = self.clone();
        p.0.push(seg);
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A node of the document: its span (absent for implicit tables such as `pool` in
/// `[pool.chat]`) and what it holds.
#[derive(Debug)]
pub(crate) struct Node {
    span: Option<Range<usize>>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Keys with their spans, and values.
    Table(Vec<(String, Option<Range<usize>>, Node)>),
    Array(Vec<Node>),
    Leaf,
}

impl Node {
    /// The span tree of `text`, or `None` when it is not valid TOML.
    pub fn parse(text: &str) -> Option<Node> {
        let doc = ImDocument::parse(text).ok()?;
        Some(Node::table(doc.as_table()))
    }

    fn table(t: &Table) -> Node {
        let entries = t
            .iter()
            .map(|(k, item)| {
                let span = t.key(k).and_then(|key| key.span());
                (k.to_string(), span, Node::item(item))
            })
            .collect();
        Node {
            span: t.span(),
            kind: Kind::Table(entries),
        }
    }

    fn item(item: &Item) -> Node {
        match item {
            Item::Table(t) => Node::table(t),
            Item::ArrayOfTables(a) => Node {
                span: a.span(),
                kind: Kind::Array(a.iter().map(Node::table).collect()),
            },
            Item::Value(v) => Node::value(v),
            Item::None => Node {
                span: None,
                kind: Kind::Leaf,
            },
        }
    }

    fn value(v: &Value) -> Node {
        let kind = match v {
            Value::Array(a) => Kind::Array(a.iter().map(Node::value).collect()),
            Value::InlineTable(t) => Kind::Table(
                t.iter()
                    .map(|(k, v)| {
                        let span = t.key(k).and_then(|key| key.span());
                        (k.to_string(), span, Node::value(v))
                    })
                    .collect(),
            ),
            _ => Kind::Leaf,
        };
        Node {
            span: v.span(),
            kind,
        }
    }

    /// The span of the deepest part of `path` present in the document: the key itself
    /// when it is there, else its nearest ancestor (a missing key is reported where
    /// its table is). `None` when not even the first step is present.
    pub fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut node = self;
        let mut found = None;
        for seg in &path.0 {
            let (span, child) = match (seg, &node.kind) {
                (Seg::Key(k), Kind::Table(entries)) => {
                    match entries.iter().find(|(key, _, _)| key == k) {
                        Some((_, span, child)) => (span.clone(), child),
                        None => break,
                    }
                }
                (Seg::Index(i), Kind::Array(items)) => match items.get(*i) {
                    Some(child) => (child.span.clone(), child),
                    None => break,
                },
                _ => break,
            };
            found = span.or(found);
            node = child;
        }
        found
    }

    /// The key path at a span reported by the parser: the key whose name or value is
    /// exactly that span, else the innermost one containing its start.
    pub fn path_at(&self, span: &Range<usize>) -> Option<KeyPath> {
        let mut all = Vec::new();
        self.collect(&KeyPath::default(), &mut all);
        // Prefer an exact match, then the tightest span; on ties, the deeper path.
        all.into_iter()
            .filter(|(_, s)| s.start <= span.start && span.start < s.end.max(s.start + 1))
            .min_by_key(|(path, s)| (s != span, s.end - s.start, usize::MAX - path.0.len()))
            .map(|(path, _)| path)
    }

    fn collect(&self, here: &KeyPath, out: &mut Vec<(KeyPath, Range<usize>)>) {
        let mut visit = |path: KeyPath, spans: [Option<Range<usize>>; 2], child: &Node| {
            out.extend(spans.into_iter().flatten().map(|s| (path.clone(), s)));
            child.collect(&path, out);
        };
        match &self.kind {
            Kind::Table(entries) => {
                for (key, span, child) in entries {
                    let path = here.with(Seg::Key(key.clone()));
                    visit(path, [span.clone(), child.span.clone()], child);
                }
            }
            Kind::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    visit(here.with(Seg::Index(i)), [child.span.clone(), None], child);
                }
            }
            Kind::Leaf => {}
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A parser or serde message made to fit one line, with names unquoted and values in
/// double quotes: "unknown field `wieght`, expected one of `addr`, `weight`" becomes
/// "unknown field, expected one of addr, weight (did you mean weight?)".
pub(crate) fn tidy_message(message: &str) -> String {
    let one_line = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    for (prefix, what) in [("unknown field `", "field"), ("unknown variant `", "value")] {
        let Some(rest) = one_line.strip_prefix(prefix) else {
            continue;
        };
        let Some((name, expected)) = rest.split_once('`') else {
            break;
        };
        let choices: Vec<&str> = expected.split('`').skip(1).step_by(2).collect::<Vec<_>>();
        let head = if what == "field" {
            "unknown field".to_string()
        } else {
            format!("unknown value {name:?}")
        };
        if choices.is_empty() {
            return format!("{head}, there are none here");
        }
        let mut out = format!("{head}, expected one of {}", choices.join(", "));
        if let Some(near) = choices.iter().find(|c| similar(name, c)) {
            out.push_str(&format!(" (did you mean {near}?)"));
        }
        return out;
    }
    plain_types(&one_line.replace('`', ""))
}

/// Close enough to be a typo: at most 2 edits (1 for short words), where an edit is
/// an insertion, deletion, substitution or swap of neighbours.
fn similar(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // d[i][j]: edits between a[..i] and b[..j] (optimal string alignment).
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j - 1] + cost)
                .min(d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    let limit = if b.len() <= 4 { 1 } else { 2 };
    d[a.len()][b.len()] <= limit
}

/// Serde names integer types; people read numbers.
fn plain_types(message: &str) -> String {
    let mut out = message.to_string();
    for (ty, bound) in [
        ("usize", ""),
        ("u64", ""),
        ("u32", " up to 4294967295"),
        ("u16", " up to 65535"),
        ("u8", " up to 255"),
    ] {
        let from = format!("expected {ty}");
        if out.ends_with(&from) {
            out.truncate(out.len() - from.len());
            out.push_str(&format!("expected a whole number{bound}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_like_toml() {
        let p = KeyPath::new(["pool".into(), "a.b".into(), "server".into(), 0.into()]);
        assert_eq!(p.to_string(), r#"pool."a.b".server[0]"#);
    }

    #[test]
    fn messages_are_one_line() {
        assert_eq!(
            tidy_message("unknown field `wieght`, expected one of `addr`, `weight`, `backup`"),
            "unknown field, expected one of addr, weight, backup (did you mean weight?)"
        );
        assert_eq!(
            tidy_message("unknown variant `lest_conn`, expected `least_conn` or `hash`"),
            "unknown value \"lest_conn\", expected one of least_conn, hash (did you mean least_conn?)"
        );
        assert_eq!(
            tidy_message("invalid table header\nexpected `.`, `]`\n"),
            "invalid table header: expected ., ]"
        );
    }

    #[test]
    fn spans_and_paths_round_trip() {
        let text = "a = 1\n[pool.chat]\nbalance = \"hash\"\n[[pool.chat.server]]\naddr = \"x:1\"\n[[pool.chat.server]]\naddr = \"y:1\"\nd = 1979-05-27\n";
        let tree = Node::parse(text).unwrap();
        let path = KeyPath::new([
            "pool".into(),
            "chat".into(),
            "server".into(),
            1.into(),
            "addr".into(),
        ]);
        let span = tree.span_of(&path).unwrap();
        assert_eq!(line_col(text, span.start), (7, 1));
        assert_eq!(tree.path_at(&span), Some(path));
        let missing = KeyPath::new(["pool".into(), "chat".into(), "hash_key".into()]);
        assert_eq!(line_col(text, tree.span_of(&missing).unwrap().start).0, 2);
    }
}
