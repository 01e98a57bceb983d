//! Prometheus metrics: `GET /metrics` in the text exposition format 0.0.4, from the
//! proxy's exact [`Counters`] (no tunnel's frame samples are copied for a scrape).

use std::fmt::Write;

use std::time::SystemTime;

use crate::event::{AdminState, BackendInfo, Counters, Flow, Health, Limit};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition.
pub fn render(counters: &Counters, events_lagged: u64, now: SystemTime) -> String {
    let totals = counters;
    let uptime_seconds = counters
        .started
        .and_then(|t| now.duration_since(t).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    let mut out = Exposition::default();
    out.single(
        "tunnelscope_uptime_seconds",
        "Seconds since the proxy started.",
        "gauge",
        uptime_seconds,
    );
    out.single(
        "tunnelscope_tunnels_active",
        "Tunnels open now.",
        "gauge",
        totals.tunnels_active,
    );
    out.single(
        "tunnelscope_tunnels_parked",
        "Open tunnels waiting parked: silent for park_after, holding no relay task.",
        "gauge",
        totals.tunnels_parked,
    );
    out.single(
        "tunnelscope_tunnels_total",
        "Tunnels opened since the proxy started.",
        "counter",
        totals.tunnels_total,
    );
    out.per_direction(
        totals,
        "tunnelscope_relayed_frames_total",
        "WebSocket frames relayed by live and closed tunnels, by direction.",
        |f| f.frames,
    );
    out.per_direction(
        totals,
        "tunnelscope_relayed_messages_total",
        "Complete data messages relayed by live and closed tunnels, by direction.",
        |f| f.messages,
    );
    out.per_direction(
        totals,
        "tunnelscope_relayed_bytes_total",
        "Bytes relayed by live and closed tunnels, by direction.",
        |f| f.bytes,
    );
    let name = "tunnelscope_limit_hits_total";
    out.family(
        name,
        "Handshakes refused (origin) and tunnels closed (message_size, message_rate) by a WebSocket limit.",
        "counter",
    );
    for limit in Limit::ALL {
        out.sample(
            name,
            &[("limit", limit.name())],
            counters.limit_hits[limit as usize],
        );
    }
    let backends = &counters.backends;
    out.per_backend(
        backends,
        "tunnelscope_backend_tunnels_active",
        "Tunnels open to the backend now.",
        "gauge",
        |b| b.active_tunnels,
    );
    out.per_backend(
        backends,
        "tunnelscope_backend_tunnels_total",
        "Tunnels the backend has served.",
        "counter",
        |b| b.total_tunnels,
    );
    out.per_backend(
        backends,
        "tunnelscope_backend_failures_total",
        "Failed connects and handshakes to the backend.",
        "counter",
        |b| b.failures,
    );
    out.per_backend(
        backends,
        "tunnelscope_backend_up",
        "1 when the backend is up (passive and active health checks), else 0.",
        "gauge",
        |b| u64::from(b.health == Health::Up),
    );
    // Checks: only backends of pools with active health checks, once checked.
    out.per_backend_with(
        backends,
        "tunnelscope_backend_check_up",
        "1 when the backend's latest active health check passed, else 0.",
        "gauge",
        |b| b.check.as_ref().map(|c| u64::from(c.error.is_none())),
    );
    out.per_backend_with(
        backends,
        "tunnelscope_backend_check_duration_seconds",
        "How long the backend's latest active health check took.",
        "gauge",
        |b| b.check.as_ref().map(|c| c.latency.as_secs_f64()),
    );
    out.per_backend(
        backends,
        "tunnelscope_backend_paced_closes_left",
        "Tunnels a paced close (drain deadline, down, rebalance) still means to close.",
        "gauge",
        |b| b.closing.as_ref().map_or(0, |p| p.left),
    );
    let name = "tunnelscope_backend_admin_state";
    out.family(
        name,
        "1 for the backend's admin state (active, draining, drained, disabled), 0 for the others.",
        "gauge",
    );
    for b in backends {
        for state in ADMIN_STATES {
            let label = state.to_string();
            let labels = [
                ("pool", &*b.id.pool),
                ("addr", &*b.id.addr),
                ("state", &label),
            ];
            out.sample(name, &labels, u64::from(b.admin == state));
        }
    }
    out.single(
        "tunnelscope_admin_events_lagged_total",
        "Events that /api/events streams missed by falling behind.",
        "counter",
        events_lagged,
    );
    out.0
}

const ADMIN_STATES: [AdminState; 4] = [
    AdminState::Active,
    AdminState::Draining,
    AdminState::Drained,
    AdminState::Disabled,
];

/// A text exposition being written.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
        self.family(name, help, kind);
        self.sample(name, &[], value);
    }

    fn per_direction(&mut self, t: &Counters, name: &str, help: &str, get: impl Fn(&Flow) -> u64) {
        self.family(name, help, "counter");
        for (dir, flow) in [
            ("client_to_backend", &t.client_to_backend),
            ("backend_to_client", &t.backend_to_client),
        ] {
            self.sample(name, &[("direction", dir)], get(flow));
        }
    }

    fn per_backend(
        &mut self,
        backends: &[BackendInfo],
        name: &str,
        help: &str,
        kind: &str,
        get: impl Fn(&BackendInfo) -> u64,
    ) {
        self.per_backend_with(backends, name, help, kind, |b| Some(get(b)));
    }

    /// A family with a sample for each backend `get` has a value for.
    fn per_backend_with<V: std::fmt::Display>(
        &mut self,
        backends: &[BackendInfo],
        name: &str,
        help: &str,
        kind: &str,
        get: impl Fn(&BackendInfo) -> Option<V>,
    ) {
        self.family(name, help, kind);
        for b in backends {
            if let Some(v) = get(b) {
                self.sample(name, &[("pool", &b.id.pool), ("addr", &b.id.addr)], v);
            }
        }
    }
}

/// A label value as the format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BackendId;

    fn backend(pool: &str, addr: &str, admin: AdminState) -> BackendInfo {
        BackendInfo {
            id: BackendId::new(pool, addr),
            weight: 1,
            backup: false,
            via: None,
            admin,
            health: Health::Up,
            active_tunnels: 2,
            total_tunnels: 5,
            failures: 1,
            last_error: None,
            check: None,
            closing: None,
            version: 1,
        }
    }

    #[test]
    fn every_sample_follows_its_help_and_type() {
        let started = SystemTime::UNIX_EPOCH;
        let counters = Counters {
            started: Some(started),
            backends: vec![backend("app", "10.0.0.1:80", AdminState::Draining)],
            tunnels_total: 5,
            ..Counters::default()
        };
        let text = render(
            &counters,
            0,
            started + std::time::Duration::from_millis(1500),
        );
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
            }
        }
        assert!(text.contains("tunnelscope_uptime_seconds 1.5\n"));
        assert!(text.contains(
            "tunnelscope_backend_admin_state{pool=\"app\",addr=\"10.0.0.1:80\",state=\"draining\"} 1\n"
        ));
        assert!(text.contains(
            "tunnelscope_backend_admin_state{pool=\"app\",addr=\"10.0.0.1:80\",state=\"active\"} 0\n"
        ));
        assert!(text
            .contains("tunnelscope_backend_tunnels_total{pool=\"app\",addr=\"10.0.0.1:80\"} 5\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("a\nb"), "a\\nb");
    }
}
