//! The messages of the `/api/events` stream: one JSON object per bus event, tagged
//! by `type` (`tunnel_opened`, `backend_chosen`, `handshake`, `refused`,
//! `frame_stats`, `frame_samples`, `hold`, `parked`, `violation`, `tunnel_closed`,
//! `backend_state`,
//! `config_reloaded`, `resolved`, `reload_preview`, `http_request`), plus the
//! stream's own `snapshot` and `lagged`. The contract, version 1, is
//! `assets/events.schema.json`: within a version, fields and types are only added.
//!
//! A `snapshot` comes first, after a `lagged`, and after a `config_reloaded` or a
//! `resolved` that found addresses: listeners and backends may have come and gone,
//! which no other event says, so a client mirroring the state takes it afresh.

use std::net::SocketAddr;

use serde::Serialize;

use crate::event::{BackendId, Event};

use super::json::{self, dir_name, rfc3339, Backend, Direction, Handshake, Sample, State};

/// One message on the stream.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message<'a> {
    /// The state when the stream starts, and again after a lag or a change of the
    /// backends and listeners (a reload, a DNS answer).
    Snapshot(State<'a>),
    /// The stream fell behind the bus and skipped `missed` events; a fresh
    /// `snapshot` follows.
    Lagged {
        missed: u64,
    },
    TunnelOpened {
        id: u64,
        at: String,
        client: SocketAddr,
        listener: &'a str,
        route: &'a str,
        path: &'a str,
        /// Seconds of silence after which the tunnel is closed; null when never.
        idle_timeout_s: Option<f64>,
    },
    BackendChosen {
        id: u64,
        backend: String,
    },
    /// A direction was held (`held` set) or released (`held` null), or what waits
    /// behind a hold changed.
    Hold {
        id: u64,
        dir: &'static str,
        held: Option<json::message::Hold>,
    },
    /// A silent tunnel's relay gave up its task (`parked` true), or took it up again.
    Parked {
        id: u64,
        parked: bool,
    },
    Handshake {
        id: u64,
        handshake: Handshake<'a>,
    },
    Refused {
        id: u64,
        status: u16,
        reason: &'a str,
    },
    FrameStats {
        id: u64,
        client_to_backend: Direction<'a>,
        backend_to_client: Direction<'a>,
    },
    FrameSamples {
        id: u64,
        samples: Vec<Sample>,
    },
    Violation {
        id: u64,
        dir: &'static str,
        violation: String,
    },
    TunnelClosed {
        id: u64,
        code: Option<u16>,
        reason: &'a str,
        /// `client`, `backend` or `proxy`.
        side: String,
        duration_seconds: f64,
        client_to_backend: Direction<'a>,
        backend_to_client: Direction<'a>,
        /// The I/O error it ended on (a reset, a TLS failure), if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
    BackendState(Backend<'a>),
    ConfigReloaded(json::Diff),
    Resolved(json::Resolved<'a>),
    ReloadPreview {
        #[serde(skip_serializing_if = "Option::is_none")]
        changes: Option<json::Diff>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
    HttpRequest {
        client: SocketAddr,
        method: &'a str,
        path: &'a str,
        status: u16,
        backend: Option<String>,
        duration_seconds: f64,
    },
}

impl<'a> Message<'a> {
    /// The message for a proxy's event; None for what only an observer of several
    /// proxies makes (`Fleet`, `FleetOutcome`), which a proxy never publishes.
    pub fn from_event(event: &'a Event, redact: &super::json::Redact) -> Option<Message<'a>> {
        Some(match event {
            Event::TunnelOpened {
                id,
                at,
                client,
                listener,
                route,
                path,
                idle_timeout,
                instance: _,
            } => Message::TunnelOpened {
                id: *id,
                at: rfc3339(*at),
                client: *client,
                listener,
                route,
                path,
                idle_timeout_s: idle_timeout.map(|d| d.as_secs_f64()),
            },
            Event::BackendChosen { id, backend } => Message::BackendChosen {
                id: *id,
                backend: backend.to_string(),
            },
            Event::Hold { id, dir, state } => Message::Hold {
                id: *id,
                dir: dir_name(*dir),
                held: state.as_ref().map(json::message::Hold::new),
            },
            Event::Parked { id, parked } => Message::Parked {
                id: *id,
                parked: *parked,
            },
            Event::Handshake { id, handshake } => Message::Handshake {
                id: *id,
                handshake: Handshake::new(handshake, redact),
            },
            Event::Refused { id, refusal } => Message::Refused {
                id: *id,
                status: refusal.status,
                reason: &refusal.reason,
            },
            Event::FrameStats { id, stats } => {
                let [client_to_backend, backend_to_client] = Direction::both(stats, true);
                Message::FrameStats {
                    id: *id,
                    client_to_backend,
                    backend_to_client,
                }
            }
            Event::FrameSamples { id, samples } => Message::FrameSamples {
                id: *id,
                samples: samples.iter().map(Sample::new).collect(),
            },
            Event::Violation { id, dir, violation } => Message::Violation {
                id: *id,
                dir: dir_name(*dir),
                violation: violation.to_string(),
            },
            Event::TunnelClosed {
                id,
                code,
                reason,
                side,
                duration,
                stats,
                error,
            } => {
                let [client_to_backend, backend_to_client] = Direction::both(stats, false);
                Message::TunnelClosed {
                    id: *id,
                    code: *code,
                    reason,
                    side: side.to_string(),
                    duration_seconds: duration.as_secs_f64(),
                    client_to_backend,
                    backend_to_client,
                    error: error.as_deref(),
                }
            }
            Event::BackendState(info) => Message::BackendState(json::Backend::new(info)),
            Event::ConfigReloaded(diff) => Message::ConfigReloaded(json::Diff::new(diff)),
            Event::Resolved(r) => Message::Resolved(json::Resolved::new(r)),
            Event::ReloadPreview(preview) => Message::ReloadPreview {
                changes: preview.as_ref().ok().map(json::Diff::new),
                error: preview.as_ref().err().map(String::as_str),
            },
            Event::HttpRequest {
                client,
                method,
                path,
                status,
                backend,
                duration,
            } => Message::HttpRequest {
                client: *client,
                method,
                path,
                status: *status,
                backend: backend.as_ref().map(BackendId::to_string),
                duration_seconds: duration.as_secs_f64(),
            },
            Event::Fleet(_) | Event::FleetOutcome(_) => return None,
        })
    }

    /// The message as one line of JSON.
    pub fn to_json(&self) -> String {
        // Every field is a string, number, bool or list of them: encoding cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","error":"cannot encode an event: {e}"}}"#)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn events_are_tagged_objects() {
        let opened = Event::TunnelOpened {
            id: 7,
            at: UNIX_EPOCH + Duration::from_secs(1),
            client: "10.0.0.9:5000".parse().unwrap(),
            listener: "edge".into(),
            route: "/chat".into(),
            path: "/chat?room=1".into(),
            idle_timeout: Some(Duration::from_secs(90)),
            instance: None,
        };
        let v: serde_json::Value = serde_json::from_str(
            &Message::from_event(&opened, &super::json::Redact::default())
                .unwrap()
                .to_json(),
        )
        .unwrap();
        assert_eq!(v["type"], "tunnel_opened");
        assert_eq!(v["id"], 7);
        assert_eq!(v["at"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["client"], "10.0.0.9:5000");
        assert_eq!(v["path"], "/chat?room=1");

        let lagged: serde_json::Value =
            serde_json::from_str(&Message::Lagged { missed: 3 }.to_json()).unwrap();
        assert_eq!(lagged, serde_json::json!({"type": "lagged", "missed": 3}));
    }
}
