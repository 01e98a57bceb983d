//! Numbers and times as people read them: `1.2 KiB`, `3.4k/s`, `2m03s`, `1,234`.
//!
//! Every figure on screen goes through here so the panels agree on units and widths.

use std::time::{Duration, SystemTime};

/// Bytes in binary units with three significant digits (`512 B`, `1.2 KiB`,
/// `34.5 KiB`, `948 KiB`), so a value never needs more than 8 cells.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    // 1023.96 KiB would print as "1024 KiB"; carry it to the next unit instead.
    while v >= 1023.5 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v < 99.95 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// A count with SI suffixes (`999`, `1.2k`, `34k`, `5.6M`): for columns that must stay
/// narrow.
pub fn count(n: u64) -> String {
    compact(n as f64)
}

/// A rate per second, compact (`0`, `0.5`, `12`, `3.4k`).
pub fn rate(per_sec: f64) -> String {
    if per_sec <= 0.0 {
        return "0".into();
    }
    if per_sec < 10.0 {
        let s = format!("{per_sec:.1}");
        return s.strip_suffix(".0").map(str::to_owned).unwrap_or(s);
    }
    compact(per_sec)
}

/// Bytes per second (`0 B/s`, `1.2 KiB/s`).
pub fn byte_rate(per_sec: u64) -> String {
    format!("{}/s", bytes(per_sec))
}

fn compact(v: f64) -> String {
    const SUFFIX: [&str; 4] = ["k", "M", "G", "T"];
    if v < 1000.0 {
        return format!("{}", v.round() as u64);
    }
    let mut v = v / 1000.0;
    let mut i = 0;
    while v >= 999.95 && i + 1 < SUFFIX.len() {
        v /= 1000.0;
        i += 1;
    }
    if v < 9.95 {
        format!("{v:.1}{}", SUFFIX[i])
    } else {
        format!("{}{}", v.round() as u64, SUFFIX[i])
    }
}

/// An integer with thousands separators (`1,234,567`), for totals shown in full.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in the two most significant units (`340ms`, `45s`, `2m03s`, `4h05m`,
/// `3d07h`), so ages line up in a column.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.subsec_millis());
    }
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// How long ago something happened, for idle columns: `now` under a second.
pub fn ago(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        "now".to_string()
    } else {
        format!("{} ago", duration(d))
    }
}

/// Time from `then` to `now`, zero if the clock went backwards.
pub fn since(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// Local wall-clock time with milliseconds, as frame tails and logs show it.
pub fn clock_ms(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(at)
        .format("%H:%M:%S%.3f")
        .to_string()
}

/// Cuts `s` to at most `max` terminal cells, ending in `…` when it was longer. Cells,
/// not characters: CJK and most emoji take two, so tables stay aligned.
pub fn truncate(s: &str, max: usize) -> String {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    if s.width() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > max - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// A payload preview: quoted text when it is UTF-8 (a multi-byte character cut at the
/// end of the preview still counts), hex otherwise.
pub fn preview(bytes: &[u8], truncated: bool) -> String {
    let text = match std::str::from_utf8(bytes) {
        Ok(s) => Some(s),
        // The preview is a prefix: a character split at its end is not binary data.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    let more = if truncated { "…" } else { "" };
    match text {
        Some(s) => {
            let mut out = String::with_capacity(s.len() + 2);
            out.push('"');
            for c in s.chars() {
                match c {
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out.push_str(more);
            out
        }
        None => {
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("{}{more}", hex.join(" "))
        }
    }
}

/// The meaning of common close codes, so `1012` reads as "service restart".
pub fn close_code_name(code: u16) -> &'static str {
    match code {
        1000 => "normal",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1005 => "no status",
        1006 => "abnormal",
        1007 => "invalid payload",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "extension required",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        1014 => "bad gateway",
        1015 => "TLS handshake",
        _ => "",
    }
}

/// A command's result on every instance, on one line: `drain app/10.0.0.1:80 — a:
/// done · b: failed: connection refused`.
pub fn fleet_outcome(o: &crate::event::FleetOutcome) -> String {
    let parts: Vec<String> = o
        .results
        .iter()
        .map(|(name, r)| match r {
            Ok(what) => format!("{name}: {what}"),
            Err(why) => format!("{name}: failed: {why}"),
        })
        .collect();
    format!("{} — {}", o.command, parts.join(" · "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units_with_one_decimal() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1229), "1.2 KiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(bytes(1012 * 1024), "1012 KiB");
        assert_eq!(bytes(34 * 1024 + 512), "34.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn counts_and_rates_stay_narrow() {
        assert_eq!(count(999), "999");
        assert_eq!(count(1234), "1.2k");
        assert_eq!(count(34_500), "35k");
        assert_eq!(count(5_600_000), "5.6M");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(0.5), "0.5");
        assert_eq!(rate(3.0), "3");
        assert_eq!(rate(3400.0), "3.4k");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(12), "12");
    }

    #[test]
    fn durations_show_two_units() {
        assert_eq!(duration(Duration::from_millis(340)), "340ms");
        assert_eq!(duration(Duration::from_secs(45)), "45s");
        assert_eq!(duration(Duration::from_secs(123)), "2m03s");
        assert_eq!(duration(Duration::from_secs(4 * 3600 + 5 * 60)), "4h05m");
        assert_eq!(
            duration(Duration::from_secs(3 * 86_400 + 7 * 3600)),
            "3d07h"
        );
    }

    #[test]
    fn previews_are_text_or_hex() {
        assert_eq!(preview(b"hi\n", false), "\"hi\\n\"");
        assert_eq!(preview(&[0xff, 0x00, 0x10], true), "ff 00 10…");
        // "é" cut in half at the end of the preview is still text.
        assert_eq!(preview(&[b'a', 0xc3], true), "\"a\"…");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    #[test]
    fn truncation_counts_terminal_cells() {
        // Each of these characters takes two cells.
        assert_eq!(truncate("日本語テキスト", 7), "日本語…");
        assert_eq!(truncate("日本", 4), "日本");
        assert_eq!(truncate("a🎉b", 3), "a…");
    }
}
