//! The goals the relay-engine issue names, each as a ratio against the reference
//! measured in the same run, met or not.

use super::{fmt, med};
use crate::plan::Figures;
use crate::targets::Kind;

/// One goal from the issue: tunnelscope's figure against a reference target's.
struct Goal {
    what: &'static str,
    key: &'static str,
    reference: Kind,
    /// Met when `ratio <= factor` (lower is better) or `ratio >= factor`.
    lower_better: bool,
    factor: f64,
    goal: &'static str,
}

const GOALS: &[Goal] = &[
    Goal {
        what: "CPU per relayed message",
        key: "echo.cpu_us",
        reference: Kind::Nginx,
        lower_better: true,
        factor: 0.8,
        goal: "≤ 0.8 × nginx",
    },
    Goal {
        what: "echo messages/s",
        key: "echo.msgs",
        reference: Kind::Nginx,
        lower_better: false,
        factor: 1.0,
        goal: "≥ nginx",
    },
    Goal {
        what: "1 MiB messages MB/s",
        key: "large.mbs",
        reference: Kind::Nginx,
        lower_better: false,
        factor: 3.0,
        goal: "≥ 3 × nginx",
    },
    Goal {
        what: "round trip p99",
        key: "echo.p99",
        reference: Kind::Nginx,
        lower_better: true,
        factor: 1.0,
        goal: "≤ nginx",
    },
    Goal {
        what: "memory per idle tunnel, plain",
        key: "idle.kib",
        reference: Kind::Haproxy,
        lower_better: true,
        factor: 1.0,
        goal: "≤ HAProxy",
    },
    Goal {
        what: "memory per idle tunnel, TLS",
        key: "idle_tls.kib",
        reference: Kind::Haproxy,
        lower_better: true,
        factor: 1.0,
        goal: "≤ HAProxy",
    },
    Goal {
        what: "handshakes/s, plain",
        key: "hs.rate",
        reference: Kind::Nginx,
        lower_better: false,
        factor: 1.0,
        goal: "≥ nginx",
    },
    Goal {
        what: "handshakes/s, TLS",
        key: "hs_tls.rate",
        reference: Kind::Nginx,
        lower_better: false,
        factor: 1.0,
        goal: "≥ nginx",
    },
];

/// The goal lines as (what, tunnelscope, reference, ratio, goal, met), for the
/// report and the console.
pub(super) fn goal_lines(figs: &Figures, dashboard: &str) -> Vec<[String; 6]> {
    let mut out = Vec::new();
    for g in GOALS {
        let ts = med(figs, Kind::Tunnelscope, g.key);
        let rf = med(figs, g.reference, g.key);
        let (ratio, met) = match (ts, rf) {
            (Some(t), Some(r)) if r > 0.0 => {
                let ratio = t / r;
                let met = if g.lower_better {
                    ratio <= g.factor
                } else {
                    ratio >= g.factor
                };
                (
                    format!("{ratio:.2}"),
                    if met { "yes" } else { "**no**" }.to_string(),
                )
            }
            _ => ("—".to_string(), "not measured".to_string()),
        };
        out.push([
            g.what.to_string(),
            fmt(ts, 2),
            format!("{} {}", fmt(rf, 2), g.reference),
            ratio,
            g.goal.to_string(),
            met,
        ]);
    }
    let head = med(figs, Kind::Tunnelscope, "echo.msgs");
    let dash = med(figs, Kind::TunnelscopeDashboard, "echo.msgs");
    let line = match (head, dash) {
        (Some(h), Some(d)) if h > 0.0 => {
            let cost = 100.0 * (h - d) / h;
            [
                "dashboard attached: cost in echo messages/s".to_string(),
                format!("{d:.0} with, {h:.0} without"),
                "tunnelscope headless".to_string(),
                format!("{cost:.1} % cost"),
                "≤ 5 %".to_string(),
                if cost <= 5.0 { "yes" } else { "**no**" }.to_string(),
            ]
        }
        _ => [
            "dashboard attached: cost in echo messages/s".to_string(),
            "—".to_string(),
            "tunnelscope headless".to_string(),
            "—".to_string(),
            "≤ 5 %".to_string(),
            format!("not measured (dashboard: {dashboard})"),
        ],
    };
    out.push(line);
    out
}
