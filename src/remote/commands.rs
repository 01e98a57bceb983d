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

/// Serves the control channel until every sender has gone.
pub async fn serve(
    mut rx: mpsc::Receiver<Request>,
    model: Shared,
    bus: broadcast::Sender<Event>,
    auth: Auth,
) {
    while let Some(req) = rx.recv().await {
        let (command, results) = run(&req.command, &model, &auth).await;
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
async fn run(
    command: &Command,
    model: &Shared,
    auth: &Auth,
) -> (String, Vec<(Arc<str>, Result<String, String>)>) {
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
                Ok(path) => {
                    wire::outcome(wire::request(&target, auth, Method::POST, &path, body).await)
                }
                Err(why) => Err(why),
            };
            (name, result)
        }
    });
    (what, futures_util::future::join_all(calls).await)
}
