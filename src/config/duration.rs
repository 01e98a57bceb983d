//! Durations as `"250ms"`, `"10s"`, `"5m"`, `"1h"`, `"2d"`, combinations such as
//! `"1m30s"` or `"1h 30m"`, or a plain number of seconds (`10`, `"10"`, `0`).
//!
//! Use with `#[serde(with = "duration")]`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

const UNITS: &str = "use ms, s, m, h or d";

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a duration such as "250ms", "10s", "1m30s", or a number of seconds"#)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("{v} is negative; a duration is 0 or more")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            let hint = if v.is_finite() && v >= 0.0 {
                format!(r#"; write "{}ms""#, (v * 1000.0).round())
            } else {
                String::new()
            };
            Err(E::custom(format!(
                "{v} is not a whole number of seconds{hint}"
            )))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse(v).map_err(E::custom)
        }
        // TOML dates and times arrive as a map.
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Duration, A::Error> {
            Err(de::Error::custom(
                r#"a date or time is not a duration; write e.g. "10s" or "1h""#,
            ))
        }
    }
    d.deserialize_any(V)
}

/// Parses `"250ms"`, `"10s"`, `"1h"`, `"1m30s"`, `"1h 30m"`, `"0"`, `"10"` (seconds).
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(r#"empty duration; write e.g. "10s", or "0""#.into());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = t.parse().map_err(|_| format!("{text:?} is too long"))?;
        return Ok(Duration::from_secs(secs));
    }
    let mut total_ms: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                r#"{text:?} is not a duration: expected a number at {rest:?} (write e.g. "10s" or "1m30s")"#
            ));
        }
        let (num, after) = rest.split_at(digits);
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let per = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" if after.is_empty() => {
                return Err(format!("missing unit after {num:?} in {text:?} ({UNITS})"))
            }
            "" => {
                return Err(format!(
                    "unexpected {:?} in {text:?} ({UNITS})",
                    after.chars().next().unwrap_or(' ')
                ))
            }
            other => return Err(format!("unknown unit {other:?} in {text:?} ({UNITS})")),
        };
        let n: u64 = num.parse().map_err(|_| format!("{text:?} is too long"))?;
        total_ms = n
            .checked_mul(per)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        rest = after.trim_start();
    }
    Ok(Duration::from_millis(total_ms))
}

/// The shortest text [`parse`] reads back: `"0"`, `"250ms"`, `"1m30s"`, `"2d"`.
/// Sub-millisecond parts are dropped.
pub fn format(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0".into();
    }
    let mut out = String::new();
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= per {
            out.push_str(&format!("{}{unit}", ms / per));
            ms %= per;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let ok = [
            ("0", 0),
            ("10", 10_000),
            ("250ms", 250),
            ("10s", 10_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
            ("1m30s", 90_000),
            (" 1h 30m ", 5_400_000),
            ("1s500ms", 1_500),
            ("10 s", 10_000),
        ];
        for (text, ms) in ok {
            assert_eq!(parse(text), Ok(Duration::from_millis(ms)), "{text}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let bad = [
            ("10x", r#"unknown unit "x" in "10x" (use ms, s, m, h or d)"#),
            ("", "empty duration"),
            ("s", "expected a number"),
            ("-5s", "expected a number"),
            ("1m30", r#"missing unit after "30""#),
            ("1.5s", r#"unexpected '.'"#),
            ("99999999999999999999", "too long"),
            ("999999999999d", "too long"),
        ];
        for (text, want) in bad {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn format_reads_back() {
        for ms in [0, 1, 250, 1_000, 90_000, 3_600_000, 93_784_005] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
    }
}
