//! Binary upgrade without dropping tunnels (as nginx's and Sozu's): on SIGUSR2 or
//! `POST /api/upgrade`, this process starts the binary at its path again (a new
//! build deployed there), hands it every listening socket, admin API included (fd
//! inheritance, in the `LISTEN_FDS` convention of systemd socket activation), and
//! waits for it to say it serves. Then this one stops accepting and keeps its
//! tunnels until they end or `[timeouts] upgrade_deadline` passes, and exits. If
//! the new binary fails to start, this one serves on as if nothing happened.
//!
//! The new process learns which socket is which from `TUNNELSCOPE_LISTENERS`
//! (`BIND=i,j;admin=k`: configured addresses and socket indices) and says it is
//! ready on its stdout (`ready PID`), which this process reads through a pipe.
//! Under systemd (`NOTIFY_SOCKET`) the new process also tells systemd it is the
//! main process now (`MAINPID`), so the unit follows it.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use tokio::io::{AsyncBufReadExt, BufReader};
use tunnelscope::admin;
use tunnelscope::proxy::{Inherited, ProxyHandle};

use crate::signals::Signals;

/// Names the sockets handed over: `BIND=i,j;admin=k`.
const LISTENERS_ENV: &str = "TUNNELSCOPE_LISTENERS";
/// The first inherited descriptor, as in systemd's convention.
const FIRST_FD: i32 = 3;
/// How long the new process gets to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Sockets this process was handed by the one it replaces.
#[derive(Default)]
pub struct Handed {
    pub listeners: Inherited,
    pub admin: Option<std::net::TcpListener>,
    /// Started by an upgrade: say so on stdout once serving.
    upgraded: bool,
}

/// Takes over the sockets named in the environment, if this process was started by
/// an upgrade; the variables are cleared so they do not reach later children.
pub fn handed() -> anyhow::Result<Handed> {
    let Ok(names) = std::env::var(LISTENERS_ENV) else {
        return Ok(Handed::default());
    };
    // listenfd checks that each descriptor is a TCP socket before taking it.
    let mut fds = listenfd::ListenFd::from_env();
    clear_env();
    let mut handed = Handed {
        upgraded: true,
        ..Handed::default()
    };
    for entry in names.split(';').filter(|e| !e.is_empty()) {
        let (key, list) = entry
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{LISTENERS_ENV}: {entry:?} is not KEY=FDS"))?;
        let mut sockets = Vec::new();
        for i in list.split(',') {
            let i: usize = i.parse()?;
            let socket = fds
                .take_tcp_listener(i)?
                .ok_or_else(|| anyhow::anyhow!("{LISTENERS_ENV}: no socket {i} was handed over"))?;
            sockets.push(socket);
        }
        if key == "admin" {
            handed.admin = sockets.into_iter().next();
        } else {
            let bind: SocketAddr = key.parse()?;
            handed.listeners.0.insert(bind, sockets);
        }
    }
    Ok(handed)
}

/// Clears the variables of the hand-over. Called first thing in `main`, while the
/// process has one thread (changing the environment races with other threads).
fn clear_env() {
    std::env::remove_var(LISTENERS_ENV);
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_PID");
}

impl Handed {
    /// Says the process serves: on stdout to the process that started it (an
    /// upgrade), and to systemd when it supervises (`NOTIFY_SOCKET`).
    pub fn ready(&self) {
        let pid = std::process::id();
        if self.upgraded {
            use std::io::Write;
            let mut out = std::io::stdout();
            let _ = writeln!(out, "ready {pid}");
            let _ = out.flush();
        }
        notify_systemd(&format!("READY=1\nMAINPID={pid}\n"));
    }
}

/// Sends a state line to systemd's notify socket, if there is one.
pub fn notify_systemd(state: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let sent = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "systemd notify failed");
    }
}

/// Starts the binary at `exe` with this process's arguments, hands it the proxy's
/// listening sockets (and the admin API's), and waits until it says it serves.
/// Returns its PID; on failure it is stopped and this process is unchanged.
pub async fn hand_over(
    exe: &std::path::Path,
    proxy: &ProxyHandle,
    admin: Option<&std::net::TcpListener>,
) -> Result<u32, String> {
    let mut mappings = Vec::new();
    let mut names = Vec::new();
    let mut next = 0usize;
    let mut add = |socket: OwnedFd, mappings: &mut Vec<FdMapping>| {
        mappings.push(FdMapping {
            parent_fd: socket,
            child_fd: FIRST_FD + next as i32,
        });
        next += 1;
        next - 1
    };
    for (bind, sockets) in proxy.handover() {
        let indices: Vec<String> = sockets
            .into_iter()
            .map(|s| add(OwnedFd::from(s), &mut mappings).to_string())
            .collect();
        if !indices.is_empty() {
            names.push(format!("{bind}={}", indices.join(",")));
        }
    }
    if let Some(admin) = admin {
        let copy = admin
            .try_clone()
            .map_err(|e| format!("admin socket: {e}"))?;
        let i = add(OwnedFd::from(copy), &mut mappings);
        names.push(format!("admin={i}"));
    }
    let count = mappings.len();
    let mut command = tokio::process::Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .env(LISTENERS_ENV, names.join(";"))
        .env("LISTEN_FDS", count.to_string())
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS_FIRST_FD")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(false);
    command
        .fd_mappings(mappings)
        .map_err(|e| format!("handing sockets over: {e}"))?;
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let pid = child.id().unwrap_or_default();
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(READY_WITHIN, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("ready ") {
                return true;
            }
        }
        false
    })
    .await;
    match ready {
        Ok(true) => {
            // Its stdout stays a pipe nobody reads: it writes nothing more there.
            drop(lines);
            // Reaped in the background if this process outlives it.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            Ok(pid)
        }
        Ok(false) => {
            let status = child.wait().await.map_err(|e| e.to_string())?;
            Err(format!(
                "the new process {pid} exited before it was ready ({status}); see its error above"
            ))
        }
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(format!(
                "the new process {pid} was not ready within {READY_WITHIN:?}: stopped it"
            ))
        }
    }
}

/// What a headless process needs to upgrade itself.
pub struct Upgrader<'a> {
    pub exe: &'a Path,
    pub admin: Option<&'a std::net::TcpListener>,
    pub requests: &'a mut tokio::sync::mpsc::Receiver<admin::UpgradeRequest>,
}

impl Upgrader<'_> {
    /// Hands over to a new process; on failure, says why and serves on.
    pub async fn run(&self, proxy: &ProxyHandle) -> Result<u32, String> {
        tracing::info!(exe = %self.exe.display(), "upgrade: starting the new binary");
        match hand_over(self.exe, proxy, self.admin).await {
            Ok(pid) => Ok(pid),
            Err(why) => {
                tracing::error!(error = %why, "upgrade failed; this process serves on");
                Err(why)
            }
        }
    }
}

/// After an upgrade: this process accepts nothing more and keeps its tunnels until
/// they end, `deadline` passes, or a signal says stop now.
pub async fn retire(proxy: &ProxyHandle, pid: u32, deadline: Duration, signals: &mut Signals) {
    let left = proxy.snapshot().tunnels.len();
    tracing::info!(
        new_pid = pid,
        tunnels = left,
        ?deadline,
        "upgrade: the new process serves; this one keeps its tunnels until they end"
    );
    tokio::select! {
        _ = proxy.tunnels_gone() => tracing::info!("upgrade: every tunnel has ended; exiting"),
        _ = tokio::time::sleep(deadline) => tracing::info!("upgrade: deadline passed; closing the remaining tunnels"),
        first = signals.stop() => tracing::info!("{first} received: closing the remaining tunnels"),
    }
}
