//! Starting tunnelscope for the soak (release binary, headless, generated config),
//! and reading its open descriptors.

use super::*;

pub(super) fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

pub(super) fn proxy_conf(
    listen: SocketAddr,
    backends: &[SocketAddr],
    tunnels: u32,
    admin: Option<SocketAddr>,
) -> String {
    let servers: String = backends
        .iter()
        .map(|b| format!("[[pool.soak.server]]\naddr = \"{b}\"\n"))
        .collect();
    let admin = admin.map_or(String::new(), |a| format!("[admin]\nbind = \"{a}\"\n\n"));
    format!(
        r#"# Written by `loadgen soak`.
{admin}[limits]
max_connections = {max}

[timeouts]
idle = 0

[[listener]]
bind = "{listen}"

[pool.soak]
balance = "least_conn"
max_fails = 0
{servers}"#,
        max = (u64::from(tunnels) + 1000).max(10000),
    )
}

/// The proxy this run started.
pub(super) struct Started {
    pub(super) child: Child,
    pub(super) dir: PathBuf,
    /// How to reload it under load.
    pub(super) reloader: Reloader,
}

pub(super) fn start_proxy(
    args: &Args,
    dir: &Path,
    backends: &[SocketAddr],
) -> Result<(SocketAddr, Started)> {
    let bin = std::fs::canonicalize(&args.tunnelscope).with_context(|| {
        format!(
            "{}: no such binary (cargo build --release?)",
            args.tunnelscope.display()
        )
    })?;
    let listen = targets::free_port()?;
    let admin = targets::free_port()?;
    let conf = dir.join("tunnelscope-soak.toml");
    std::fs::write(
        &conf,
        proxy_conf(listen, backends, args.tunnels, Some(admin)),
    )?;
    let child = targets::spawn_tunnelscope(dir, "tunnelscope-soak.log", &bin, &conf)?;
    let started = Started {
        child,
        dir: dir.to_path_buf(),
        reloader: Reloader {
            conf,
            admin,
            listen,
            backends: backends.to_vec(),
            tunnels: args.tunnels,
        },
    };
    if let Err(e) =
        targets::wait_listening(&[listen], "tunnelscope", &dir.join("tunnelscope-soak.log"))
    {
        started.stop();
        return Err(e);
    }
    Ok((listen, started))
}

impl Started {
    /// SIGTERM, SIGKILL after 15 s; the exit status.
    pub(super) fn stop(mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id();
        targets::terminate(
            &self.dir,
            pid,
            Some(&mut self.child),
            Duration::from_secs(15),
        );
        self.child.try_wait().ok().flatten()
    }
}

// --- the run ----------------------------------------------------------------------
