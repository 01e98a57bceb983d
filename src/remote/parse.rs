//! The admin API's JSON (the `/api/events` contract, version 1) read back into the
//! event types the dashboard takes. Unknown fields and message types are ignored,
//! as the contract asks of a client; a field missing or of the wrong type makes
//! that one message unreadable (reported, skipped), never a panic.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::event::{
    AdminState, BackendId, BackendInfo, CheckResult, CloseInfo, Dir, DirStats, Event, FrameSample,
    Handshake, Headers, Health, HoldState, ListenerInfo, OpKind, PaceCause, PacedClose, Refusal,
    Side, Snapshot, TunnelInfo, TunnelStats,
};

/// Why a message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Unreadable(pub String);

type R<T> = Result<T, Unreadable>;

fn bad(what: &str) -> Unreadable {
    Unreadable(format!("missing or malformed {what}"))
}

/// What one message of the stream says.
#[derive(Debug)]
pub enum Message {
    /// The state (first, and after a lag), with the instance's `[admin] name`.
    Snapshot(Box<Snapshot>, Option<String>),
    /// The stream fell behind; a snapshot follows.
    Lagged,
    Event(Box<Event>),
    /// A change the instance made to its backends or listeners (`config_reloaded`,
    /// `resolved`), as a line for the log; its state follows in a snapshot.
    Note(String),
    /// A `type` this client does not know (a later addition): ignored.
    Other,
}

/// A `resolved` message as a log line, as the instance's own dashboard words it.
fn resolved(v: &Value) -> R<String> {
    let addrs = v["addrs"]
        .as_array()
        .ok_or_else(|| bad("addrs"))?
        .iter()
        .map(|a| {
            a.as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("addrs"))
        })
        .collect::<R<_>>()?;
    let resolution = crate::event::Resolution {
        pool: str_of(v, "pool")?.to_string(),
        name: str_of(v, "name")?.to_string(),
        addrs,
        error: v["error"].as_str().map(str::to_string),
        // Not part of the line.
        at: SystemTime::UNIX_EPOCH,
    };
    Ok(resolution.summary())
}

/// Reads one text message of `/api/events`.
pub fn message(text: &str) -> R<Message> {
    let v: Value = serde_json::from_str(text).map_err(|e| Unreadable(format!("not JSON: {e}")))?;
    let kind = str_of(&v, "type")?;
    let id = || u64_of(&v, "id");
    let ev = match kind {
        "snapshot" => {
            let version = u64_of(&v, "version").unwrap_or(0);
            if version != 1 {
                return Err(Unreadable(format!(
                    "event stream version {version}; this tunnelscope reads version 1"
                )));
            }
            let name = v["instance"].as_str().map(str::to_string);
            return Ok(Message::Snapshot(Box::new(snapshot(&v)?), name));
        }
        "lagged" => return Ok(Message::Lagged),
        "tunnel_opened" => Event::TunnelOpened {
            id: id()?,
            at: time_of(&v, "at")?,
            client: addr_of(&v, "client")?,
            listener: Arc::from(str_of(&v, "listener")?),
            route: Arc::from(str_of(&v, "route")?),
            path: str_of(&v, "path")?.to_string(),
            idle_timeout: secs(&v["idle_timeout_s"]),
            instance: None,
        },
        "backend_chosen" => Event::BackendChosen {
            id: id()?,
            backend: backend_id(str_of(&v, "backend")?)?,
        },
        "hold" => {
            let dir = dir_of(str_of(&v, "dir")?)?;
            Event::Hold {
                id: id()?,
                dir,
                state: match &v["held"] {
                    Value::Null => None,
                    h => Some(hold(h, dir)?),
                },
            }
        }
        "parked" => Event::Parked {
            id: id()?,
            parked: v["parked"].as_bool().ok_or_else(|| bad("parked"))?,
        },
        "handshake" => Event::Handshake {
            id: id()?,
            handshake: handshake(&v["handshake"])?,
        },
        "refused" => Event::Refused {
            id: id()?,
            refusal: Refusal {
                status: u64_of(&v, "status")? as u16,
                reason: str_of(&v, "reason")?.to_string(),
            },
        },
        "frame_stats" => Event::FrameStats {
            id: id()?,
            stats: stats(&v)?,
        },
        "frame_samples" => Event::FrameSamples {
            id: id()?,
            samples: v["samples"]
                .as_array()
                .ok_or_else(|| bad("samples"))?
                .iter()
                .map(sample)
                .collect::<R<_>>()?,
        },
        "tunnel_closed" => Event::TunnelClosed {
            id: id()?,
            code: v["code"].as_u64().map(|c| c as u16),
            reason: str_of(&v, "reason")?.to_string(),
            side: match str_of(&v, "side")? {
                "client" => Side::Client,
                "backend" => Side::Backend,
                _ => Side::Proxy,
            },
            duration: secs(&v["duration_seconds"]).unwrap_or_default(),
            stats: stats(&v)?,
            error: v["error"].as_str().map(str::to_string),
        },
        "backend_state" => Event::BackendState(backend(&v)?),
        "config_reloaded" => {
            let summary = v["summary"].as_str().unwrap_or("changed");
            return Ok(Message::Note(format!("config reloaded: {summary}")));
        }
        "resolved" => return Ok(Message::Note(resolved(&v)?)),
        // Violations are counted in the stats.
        _ => return Ok(Message::Other),
    };
    Ok(Message::Event(Box::new(ev)))
}

fn str_of<'a>(v: &'a Value, key: &str) -> R<&'a str> {
    v[key].as_str().ok_or_else(|| bad(key))
}

fn u64_of(v: &Value, key: &str) -> R<u64> {
    v[key].as_u64().ok_or_else(|| bad(key))
}

fn addr_of(v: &Value, key: &str) -> R<std::net::SocketAddr> {
    str_of(v, key)?.parse().map_err(|_| bad(key))
}

pub(super) fn time(s: &str) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let nanos = u64::try_from(t.timestamp_nanos_opt()?).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
}

fn time_of(v: &Value, key: &str) -> R<SystemTime> {
    time(str_of(v, key)?).ok_or_else(|| bad(key))
}

fn secs(v: &Value) -> Option<Duration> {
    Duration::try_from_secs_f64(v.as_f64()?).ok()
}

pub(super) fn dir_of(s: &str) -> R<Dir> {
    match s {
        "client_to_backend" => Ok(Dir::ClientToBackend),
        "backend_to_client" => Ok(Dir::BackendToClient),
        _ => Err(bad("direction")),
    }
}

/// `pool/addr`: the pool is up to the first `/` (an address has none).
fn backend_id(s: &str) -> R<BackendId> {
    let (pool, addr) = s.split_once('/').ok_or_else(|| bad("backend"))?;
    Ok(BackendId::new(pool, addr))
}

fn snapshot(v: &Value) -> R<Snapshot> {
    let list = |key: &str| v[key].as_array().ok_or_else(|| bad(key));
    Ok(Snapshot {
        listeners: list("listeners")?
            .iter()
            .map(|l| {
                Ok(ListenerInfo {
                    name: Arc::from(str_of(l, "name")?),
                    addr: addr_of(l, "addr")?,
                    tls: l["tls"].as_bool().unwrap_or(false),
                })
            })
            .collect::<R<_>>()?,
        backends: list("backends")?.iter().map(backend).collect::<R<_>>()?,
        tunnels: list("tunnels")?.iter().map(tunnel).collect::<R<_>>()?,
        total_tunnels: v["totals"]["tunnels_total"].as_u64().unwrap_or(0),
        started: v["started"].as_str().and_then(time),
        resolutions: Vec::new(),
        fleet: None,
    })
}

fn backend(v: &Value) -> R<BackendInfo> {
    let closing = match &v["closing"] {
        Value::Null => None,
        c => Some(PacedClose {
            cause: match str_of(c, "cause")? {
                "down" => PaceCause::Down,
                "rebalance" => PaceCause::Rebalance,
                _ => PaceCause::Drain,
            },
            starts: time_of(c, "starts")?,
            rate: u64_of(c, "rate")? as u32,
            closed: u64_of(c, "closed")?,
            left: u64_of(c, "left")?,
        }),
    };
    let check = match &v["check"] {
        Value::Null => None,
        c => Some(CheckResult {
            at: time_of(c, "at")?,
            latency: Duration::try_from_secs_f64(c["latency_ms"].as_f64().unwrap_or(0.0) / 1e3)
                .unwrap_or_default(),
            error: c["error"].as_str().map(str::to_string),
        }),
    };
    Ok(BackendInfo {
        id: BackendId::new(str_of(v, "pool")?, str_of(v, "addr")?),
        weight: u64_of(v, "weight")? as u32,
        backup: v["backup"].as_bool().unwrap_or(false),
        via: v["via"].as_str().map(str::to_string),
        admin: match str_of(v, "admin")? {
            "draining" => AdminState::Draining,
            "drained" => AdminState::Drained,
            "disabled" => AdminState::Disabled,
            _ => AdminState::Active,
        },
        health: match str_of(v, "health")? {
            "down" => Health::Down,
            _ => Health::Up,
        },
        active_tunnels: u64_of(v, "active")?,
        total_tunnels: u64_of(v, "total")?,
        failures: u64_of(v, "failures")?,
        last_error: v["last_error"].as_str().map(str::to_string),
        check,
        closing,
        version: u64_of(v, "version")?,
    })
}

fn tunnel(v: &Value) -> R<TunnelInfo> {
    let held = match v["held"].as_array() {
        Some(list) => list
            .iter()
            .map(|h| hold(h, dir_of(str_of(h, "direction")?)?))
            .collect::<R<_>>()?,
        None => Vec::new(),
    };
    Ok(TunnelInfo {
        id: u64_of(v, "id")?,
        opened: time_of(v, "opened")?,
        client: addr_of(v, "client")?,
        listener: Arc::from(str_of(v, "listener")?),
        route: Arc::from(str_of(v, "route")?),
        path: str_of(v, "path")?.to_string(),
        backend: v["backend"].as_str().map(backend_id).transpose()?,
        // The listing has no headers, but says the handshake is done (`http`).
        handshake: v["http"].as_str().map(|http| Handshake {
            request_in: Headers::from_pairs::<&str, &str>([]),
            request_out: Headers::from_pairs::<&str, &str>([]),
            response: Headers::from_pairs::<&str, &str>([]),
            subprotocol: v["subprotocol"].as_str().map(str::to_string),
            extensions: v["extensions"].as_str().map(str::to_string),
            h2: http == "h2",
        }),
        stats: stats(v)?,
        samples: Vec::new(),
        idle_timeout: secs(&v["idle_timeout_s"]),
        held,
        // Absent from proxies older than parking: none of theirs park.
        parked: v["parked"].as_bool().unwrap_or(false),
        instance: None,
    })
}

fn stats(v: &Value) -> R<TunnelStats> {
    Ok(TunnelStats {
        client_to_backend: direction(&v["client_to_backend"])?,
        backend_to_client: direction(&v["backend_to_client"])?,
    })
}

fn direction(v: &Value) -> R<DirStats> {
    let mut d = DirStats {
        messages: u64_of(v, "messages")?,
        bytes: u64_of(v, "bytes")?,
        last_frame: v["last_frame"].as_str().and_then(time),
        close: match &v["close"] {
            Value::Null => None,
            c => Some(CloseInfo {
                code: c["code"].as_u64().map(|c| c as u16),
                reason: c["reason"].as_str().unwrap_or_default().to_string(),
            }),
        },
        violations: v["violations"].as_u64().unwrap_or(0),
        ..Default::default()
    };
    match v["by_opcode"].as_object() {
        Some(by) => {
            for kind in OpKind::ALL {
                let c = &by[kind.name()];
                let count = &mut d.by_opcode[kind as usize];
                count.frames = c["frames"].as_u64().unwrap_or(0);
                count.payload_bytes = c["payload_bytes"].as_u64().unwrap_or(0);
                count.wire_bytes = c["wire_bytes"].as_u64().unwrap_or(0);
            }
        }
        // The listing gives the total only: kept as data frames, so the total reads
        // right until the next frame_stats brings the split.
        None => d.by_opcode[OpKind::Text as usize].frames = u64_of(v, "frames")?,
    }
    Ok(d)
}

fn hold(v: &Value, dir: Dir) -> R<HoldState> {
    Ok(HoldState {
        dir,
        since: time_of(v, "since")?,
        waiting_bytes: v["waiting_bytes"].as_u64(),
        waiting_frames: v["waiting_frames"].as_u64(),
        at_least: v["at_least"].as_bool().unwrap_or(false),
        encrypted: v["encrypted"].as_bool().unwrap_or(false),
    })
}

fn headers(v: &Value, key: &str) -> R<Headers> {
    let pairs = v[key].as_array().ok_or_else(|| bad(key))?;
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|p| Some((p.get(0)?.as_str()?, p.get(1)?.as_str()?)))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(key))?;
    Ok(Headers::from_pairs(pairs))
}

fn handshake(v: &Value) -> R<Handshake> {
    Ok(Handshake {
        request_in: headers(v, "request_in")?,
        request_out: headers(v, "request_out")?,
        response: headers(v, "response")?,
        subprotocol: v["subprotocol"].as_str().map(str::to_string),
        extensions: v["extensions"].as_str().map(str::to_string),
        h2: v["http"].as_str() == Some("h2"),
    })
}

fn sample(v: &Value) -> R<FrameSample> {
    let preview = &v["preview"];
    let data = str_of(preview, "data")?;
    let preview = match str_of(preview, "encoding")? {
        "hex" if !data.is_ascii() || data.len() % 2 == 1 => return Err(bad("preview")),
        "hex" => (0..data.len() / 2)
            .map(|i| u8::from_str_radix(&data[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| bad("preview"))?,
        _ => data.as_bytes().to_vec(),
    };
    Ok(FrameSample {
        seq: u64_of(v, "seq")?,
        at: time_of(v, "at")?,
        dir: dir_of(str_of(v, "dir")?)?,
        fin: v["fin"].as_bool().unwrap_or(true),
        rsv: u64_of(v, "rsv")? as u8,
        opcode: u64_of(v, "opcode")? as u8,
        masked: v["masked"].as_bool().unwrap_or(false),
        len: u64_of(v, "len")?,
        preview,
        injected: v["injected"].as_bool().unwrap_or(false),
    })
}

/// A reload's `changes` (`POST /api/reload`'s answer) read back.
pub fn diff(v: &Value) -> R<crate::event::ConfigDiff> {
    let ids = |key: &str| -> R<Vec<BackendId>> {
        v[key].as_array().map_or(Ok(Vec::new()), |l| {
            l.iter()
                .map(|b| backend_id(b.as_str().unwrap_or("")))
                .collect()
        })
    };
    let listeners = |key: &str| -> R<Vec<ListenerInfo>> {
        v[key].as_array().map_or(Ok(Vec::new()), |l| {
            l.iter()
                .map(|l| {
                    Ok(ListenerInfo {
                        name: Arc::from(str_of(l, "name")?),
                        addr: addr_of(l, "addr")?,
                        tls: l["tls"].as_bool().unwrap_or(false),
                    })
                })
                .collect()
        })
    };
    let strings = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(crate::event::ConfigDiff {
        listeners_added: listeners("listeners_added")?,
        listeners_removed: listeners("listeners_removed")?,
        backends_added: ids("backends_added")?,
        backends_removed: ids("backends_removed")?,
        backends_changed: ids("backends_changed")?,
        routes_changed: v["routes_changed"].as_bool().unwrap_or(false),
        settings_changed: v["settings_changed"].as_bool().unwrap_or(false),
        certificates_reloaded: strings("certificates_reloaded"),
        not_applied: strings("not_applied"),
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
