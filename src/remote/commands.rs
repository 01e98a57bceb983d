//! The dashboard's commands (the `control` contract) carried out through every
//! instance's admin API: a backend command goes to each instance that has the
//! backend, a tunnel command to the tunnel's own instance. What each instance
//! answered is published as one [`FleetOutcome`], and is the reply when one is
//! awaited.

use std::sync::Arc;

use http::Method;
use tokio::sync::{broadcast, mpsc};

use crate::control::{Command, Outcome, Request};
use crate::event::{BackendId, Event, FleetOutcome, Side};

use super::fleet::Shared;
use super::target::Auth;
use super::wire;

/// What an instance answered (status and body), or why it could not be asked.
type Answer = Result<(u16, String), String>;

/// Serves the control channel until every sender has gone.
pub async fn serve(
    mut rx: mpsc::Receiver<Request>,
    model: Shared,
    bus: broadcast::Sender<Event>,
    auth: Auth,
) {
    while let Some(req) = rx.recv().await {
        let (command, answers) = run(&req.command, &model, &auth).await;
        if req.command == Command::PreviewReload {
            // The dashboard's confirmation shows what every instance would change.
            let _ = bus.send(Event::ReloadPreview(preview(&answers)));
        }
        let results: Vec<_> = answers
            .into_iter()
            .map(|(n, a)| (n, wire::outcome(a)))
            .collect();
        let failed: Vec<String> = results
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
            .collect();
        let _ = bus.send(Event::FleetOutcome(FleetOutcome { command, results }));
        if let Some(reply) = req.reply {
            let _ = reply.send(if failed.is_empty() {
                Outcome::Done
            } else {
                Outcome::Refused(failed.join("; "))
            });
        }
    }
}

/// What an API path segment must look like (an IPv6 address or a reason).
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn side(s: Side) -> &'static str {
    match s {
        Side::Backend => "backend",
        _ => "client",
    }
}

/// The command as an operator says it, and each instance's answer.
async fn run(command: &Command, model: &Shared, auth: &Auth) -> (String, Vec<(Arc<str>, Answer)>) {
    let backend_path = |b: &BackendId, action: &str| {
        format!(
            "/api/backends/{}/{}/{action}",
            escape(&b.pool),
            escape(&b.addr)
        )
    };
    // (what, path, body, which instances: None = all that know the backend)
    let (what, path, body, backend, tunnel): (
        String,
        String,
        Vec<u8>,
        Option<&BackendId>,
        Option<u64>,
    ) = match command {
        Command::Drain(b) => (
            format!("drain {b}"),
            backend_path(b, "drain"),
            Vec::new(),
            Some(b),
            None,
        ),
        Command::DrainWithin {
            backend,
            deadline,
            close_rate,
        } => {
            let mut path = backend_path(backend, "drain");
            path.push_str(&format!("?deadline={}ms", deadline.as_millis()));
            if let Some(r) = close_rate {
                path.push_str(&format!("&rate={r}"));
            }
            (
                format!("drain {backend} within {deadline:?}"),
                path,
                Vec::new(),
                Some(backend),
                None,
            )
        }
        Command::Undrain(b) => (
            format!("undrain {b}"),
            backend_path(b, "undrain"),
            Vec::new(),
            Some(b),
            None,
        ),
        Command::Enable(b) => (
            format!("enable {b}"),
            backend_path(b, "enable"),
            Vec::new(),
            Some(b),
            None,
        ),
        Command::Disable(b) => (
            format!("disable {b}"),
            backend_path(b, "disable"),
            Vec::new(),
            Some(b),
            None,
        ),
        Command::Kill {
            backend,
            code,
            reason,
        } => {
            let path = format!(
                "{}?code={code}&reason={}",
                backend_path(backend, "kill"),
                escape(reason)
            );
            (
                format!("kill {backend}"),
                path,
                Vec::new(),
                Some(backend),
                None,
            )
        }
        Command::Rebalance(pool) => (
            format!("rebalance {pool}"),
            format!("/api/pools/{}/rebalance", escape(pool)),
            Vec::new(),
            None,
            None,
        ),
        Command::CloseTunnel { id, code, reason } => (
            format!("close tunnel {id}"),
            format!("/tunnels/close?code={code}&reason={}", escape(reason)),
            Vec::new(),
            None,
            Some(*id),
        ),
        Command::Inject {
            id,
            to,
            kind,
            payload,
        } => (
            format!("send into tunnel {id}"),
            format!("/tunnels/send?to={}&type={}", side(*to), kind.name()),
            payload.clone(),
            None,
            Some(*id),
        ),
        Command::Hold { id, from, on } => (
            format!("{} tunnel {id}", if *on { "hold" } else { "release" }),
            format!(
                "/tunnels/{}?from={}",
                if *on { "hold" } else { "release" },
                side(*from)
            ),
            Vec::new(),
            None,
            Some(*id),
        ),
        Command::Reload => (
            "reload".into(),
            "/api/reload".into(),
            Vec::new(),
            None,
            None,
        ),
        Command::PreviewReload => (
            "reload (dry run)".into(),
            "/api/reload?dry_run=true".into(),
            Vec::new(),
            None,
            None,
        ),
        Command::Shutdown => {
            let m = crate::sync::lock(model);
            let all = m
                .instances
                .iter()
                .map(|i| {
                    let why =
                        "top does not shut instances down: use each one's admin API or signal";
                    (i.name.clone(), Err(why.to_string()))
                })
                .collect();
            return ("shutdown".into(), all);
        }
    };
    // Who gets it: the tunnel's instance (its own id in the path), or every
    // instance (only those that know the backend, for a backend command).
    let jobs: Vec<(Arc<str>, super::target::Target, Result<String, String>)> = {
        let m = crate::sync::lock(model);
        match tunnel {
            Some(id) => match m.remote(id) {
                Some((i, rid)) => {
                    let inst = &m.instances[i];
                    let path = path.replacen("/tunnels/", &format!("/api/tunnels/{rid}/"), 1);
                    vec![(inst.name.clone(), inst.target.clone(), Ok(path))]
                }
                None => {
                    return (
                        what,
                        vec![(
                            Arc::from("top"),
                            Err(format!("tunnel {id} is not live on any instance")),
                        )],
                    );
                }
            },
            None => m
                .instances
                .iter()
                .map(|inst| {
                    let knows =
                        backend.is_none_or(|b| inst.mirror.backends.iter().any(|x| x.id == *b));
                    let path = if knows {
                        Ok(path.clone())
                    } else if inst.link == crate::event::Link::Up {
                        Err("has no such backend".to_string())
                    } else {
                        Err("not connected".to_string())
                    };
                    (inst.name.clone(), inst.target.clone(), path)
                })
                .collect(),
        }
    };
    let calls = jobs.into_iter().map(|(name, target, path)| {
        let body = body.clone();
        async move {
            let result = match path {
                Ok(path) => wire::request(&target, auth, Method::POST, &path, body).await,
                Err(why) => Err(why),
            };
            (name, result)
        }
    });
    (what, futures_util::future::join_all(calls).await)
}

/// The reload every instance would do, merged: the union of their changes, or who
/// would refuse and why.
fn preview(answers: &[(Arc<str>, Answer)]) -> Result<crate::event::ConfigDiff, String> {
    let mut merged = crate::event::ConfigDiff::default();
    let mut refused = Vec::new();
    for (name, a) in answers {
        let diff = wire::outcome(a.clone()).and_then(|_| {
            let body = a.as_ref().map(|(_, b)| b.as_str()).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
            super::parse::diff(&v["changes"]).map_err(|e| e.to_string())
        });
        match diff {
            Err(why) => refused.push(format!("{name}: {why}")),
            Ok(d) => {
                fn union<T: PartialEq>(into: &mut Vec<T>, from: Vec<T>) {
                    for x in from {
                        if !into.contains(&x) {
                            into.push(x);
                        }
                    }
                }
                union(&mut merged.listeners_added, d.listeners_added);
                union(&mut merged.listeners_removed, d.listeners_removed);
                union(&mut merged.backends_added, d.backends_added);
                union(&mut merged.backends_removed, d.backends_removed);
                union(&mut merged.backends_changed, d.backends_changed);
                union(&mut merged.certificates_reloaded, d.certificates_reloaded);
                union(&mut merged.not_applied, d.not_applied);
                merged.routes_changed |= d.routes_changed;
                merged.settings_changed |= d.settings_changed;
            }
        }
    }
    if refused.is_empty() {
        Ok(merged)
    } else {
        Err(refused.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn would(backends_added: &[&str]) -> Answer {
        let body = serde_json::json!({
            "outcome": "would_reload",
            "changes": {"backends_added": backends_added, "routes_changed": false,
                        "settings_changed": false, "summary": "x"},
        });
        Ok((200, body.to_string()))
    }

    #[test]
    fn a_reload_preview_is_the_union_of_every_instances_changes_or_who_refuses() {
        let ok = preview(&[
            (Arc::from("east"), would(&["app/10.0.0.1:80"])),
            (
                Arc::from("west"),
                would(&["app/10.0.0.1:80", "app/10.0.0.2:80"]),
            ),
        ])
        .unwrap();
        let added: Vec<String> = ok.backends_added.iter().map(|b| b.to_string()).collect();
        assert_eq!(added, ["app/10.0.0.1:80", "app/10.0.0.2:80"]);
        let refused = r#"{"error": "tunnelscope.toml:3:1: bad key", "status": 400}"#;
        let err = preview(&[
            (Arc::from("east"), would(&[])),
            (Arc::from("west"), Ok((400, refused.to_string()))),
            (Arc::from("north"), Err("connection refused".into())),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            "west: answered 400: tunnelscope.toml:3:1: bad key; north: connection refused"
        );
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(escape("[::1]:80"), "%5B%3A%3A1%5D%3A80");
        assert_eq!(escape("a b/../c"), "a%20b%2F..%2Fc");
    }
}
