//! The targets: what runs between the load generator and the two echo backends,
//! with the config files written for each, and starting and stopping them. Every
//! process started here is written to `pids` in the work directory until it is
//! stopped, so `bench/run.sh` can kill leftovers by PID if this program dies.

use std::fmt;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio_rustls::TlsConnector;

use crate::net::Endpoint;
use crate::procfs;

pub mod confs;
mod dashboard;

pub use self::confs::{haproxy_conf, nginx_conf, tunnelscope_conf};
pub use self::dashboard::dashboard_available;
use self::dashboard::{tmux_start, tmux_stop};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// The load generator straight to the backends: the physical limit.
    Direct,
    Nginx,
    /// nginx with two workers, against tunnelscope's two event loops (echo only).
    NginxTwoWorkers,
    Haproxy,
    /// tunnelscope --headless at its defaults (one event loop per CPU).
    Tunnelscope,
    /// tunnelscope --headless with one event loop (`[proxy] threads = 1`), as nginx
    /// has one worker and HAProxy one thread.
    TunnelscopeOneLoop,
    /// tunnelscope with its dashboard drawing in a tmux pseudo-terminal.
    TunnelscopeDashboard,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Direct => "direct",
            Kind::Nginx => "nginx",
            Kind::NginxTwoWorkers => "nginx, 2 workers",
            Kind::Haproxy => "HAProxy",
            Kind::Tunnelscope => "tunnelscope",
            Kind::TunnelscopeOneLoop => "tunnelscope, threads = 1",
            Kind::TunnelscopeDashboard => "tunnelscope + dashboard",
        })
    }
}

/// Everything the targets share: the backends, the certificate, the binaries.
pub struct Env {
    pub dir: PathBuf,
    pub backends_plain: [SocketAddr; 2],
    pub backends_tls: [SocketAddr; 2],
    pub tunnelscope: PathBuf,
    pub tls: TlsConnector,
    /// The backends' processes.
    pub backend_pids: Vec<u32>,
    backend_children: Vec<Child>,
}

/// A started target.
pub struct Running {
    pub kind: Kind,
    /// Root process whose tree is measured; `None` for the direct target.
    pub pid: Option<u32>,
    pub plain: Endpoint,
    pub tls: Endpoint,
    child: Option<Child>,
    /// tmux socket name, for the dashboard target.
    tmux: Option<String>,
}

/// A free port on 127.0.0.1 (bound and released; the small race is acceptable here).
pub fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

fn record_pid(dir: &Path, pid: u32, add: bool) {
    let path = dir.join("pids");
    let mut pids: Vec<u32> = fs::read_to_string(&path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.retain(|&p| p != pid);
    if add {
        pids.push(pid);
    }
    let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
    let _ = fs::write(path, text);
}

pub fn spawn(dir: &Path, log: &str, cmd: &mut Command) -> Result<Child> {
    let out = fs::File::create(dir.join(log))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    record_pid(dir, child.id(), true);
    Ok(child)
}

/// Starts the tunnelscope binary `bin` headless on config file `conf`, logging
/// warnings to `log` in `dir`.
pub fn spawn_tunnelscope(dir: &Path, log: &str, bin: &Path, conf: &Path) -> Result<Child> {
    spawn(
        dir,
        log,
        Command::new(bin)
            .arg("--config")
            .arg(conf)
            .arg("--headless")
            .arg("--log")
            .arg("warn"),
    )
}

/// Waits until every address accepts TCP connections, or fails after 10 s.
pub fn wait_listening(addrs: &[SocketAddr], what: &str, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for a in addrs {
        while TcpStream::connect_timeout(a, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                let tail = fs::read_to_string(log).unwrap_or_default();
                bail!("{what} is not listening on {a} after 10s; its log:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// SIGTERM, then SIGKILL after `grace`; reaps our own child.
pub fn terminate(dir: &Path, pid: u32, child: Option<&mut Child>, grace: Duration) {
    // SAFETY: kill has no memory-safety preconditions; pid is a process we started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    let mut child = child;
    loop {
        let gone = match child.as_deref_mut() {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => !procfs::alive(pid),
        };
        if gone {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            if let Some(c) = child.as_deref_mut() {
                let _ = c.wait();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    record_pid(dir, pid, false);
}

impl Env {
    /// Makes the certificate and starts the two echo backends (this same binary).
    pub fn start(dir: PathBuf, tunnelscope: PathBuf) -> Result<Env> {
        crate::net::make_cert(&dir)?;
        let me = std::env::current_exe()?;
        let mut env = Env {
            backends_plain: [free_port()?, free_port()?],
            backends_tls: [free_port()?, free_port()?],
            tls: crate::net::tls_connector(&dir.join("cert.pem"))?,
            tunnelscope,
            backend_pids: Vec::new(),
            backend_children: Vec::new(),
            dir,
        };
        for i in 0..2 {
            let log = format!("backend{}.log", i + 1);
            let child = spawn(
                &env.dir,
                &log,
                Command::new(&me)
                    .arg("backend")
                    .arg("--plain")
                    .arg(env.backends_plain[i].to_string())
                    .arg("--tls")
                    .arg(env.backends_tls[i].to_string())
                    .arg("--cert")
                    .arg(env.dir.join("cert.pem"))
                    .arg("--key")
                    .arg(env.dir.join("key.pem")),
            )?;
            env.backend_pids.push(child.id());
            env.backend_children.push(child);
            let addrs = [env.backends_plain[i], env.backends_tls[i]];
            wait_listening(&addrs, "echo backend", &env.dir.join(log))?;
        }
        Ok(env)
    }

    pub fn stop(&mut self) {
        for mut c in std::mem::take(&mut self.backend_children) {
            terminate(&self.dir, c.id(), Some(&mut c), Duration::from_secs(2));
        }
    }

    fn endpoint(&self, addr: SocketAddr, tls: bool) -> Endpoint {
        Endpoint {
            addrs: vec![addr],
            tls: tls.then(|| self.tls.clone()),
        }
    }

    /// Starts a fresh instance of a target and waits until it listens.
    pub fn start_target(&self, kind: Kind) -> Result<Running> {
        if kind == Kind::Direct {
            return Ok(Running {
                kind,
                pid: None,
                plain: Endpoint {
                    addrs: self.backends_plain.to_vec(),
                    tls: None,
                },
                tls: Endpoint {
                    addrs: self.backends_tls.to_vec(),
                    tls: Some(self.tls.clone()),
                },
                child: None,
                tmux: None,
            });
        }
        let (plain, tls) = (free_port()?, free_port()?);
        let d = &self.dir;
        let (b1, b2) = (self.backends_plain[0], self.backends_plain[1]);
        let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
        let log = d.join(format!("{}.log", slug(kind)));
        let (child, pid, tmux) = match kind {
            Kind::Nginx | Kind::NginxTwoWorkers => {
                let conf = d.join("nginx.conf");
                let workers = if kind == Kind::Nginx { 1 } else { 2 };
                let text = nginx_conf(d, plain, tls, [b1, b2], &cert, &key);
                let text = text.replacen(
                    "worker_processes 1;",
                    &format!("worker_processes {workers};"),
                    1,
                );
                fs::write(&conf, text)?;
                let c = spawn(
                    d,
                    "nginx.log",
                    Command::new("nginx")
                        .arg("-p")
                        .arg(d)
                        .arg("-e")
                        .arg(&log)
                        .arg("-c")
                        .arg(&conf)
                        .arg("-g")
                        .arg("daemon off;"),
                )?;
                let pid = c.id();
                (Some(c), pid, None)
            }
            Kind::Haproxy => {
                let conf = d.join("haproxy.cfg");
                fs::write(
                    &conf,
                    haproxy_conf(plain, tls, [b1, b2], &d.join("combined.pem")),
                )?;
                let c = spawn(
                    d,
                    "haproxy.log",
                    Command::new("haproxy").arg("-db").arg("-f").arg(&conf),
                )?;
                let pid = c.id();
                (Some(c), pid, None)
            }
            Kind::Tunnelscope | Kind::TunnelscopeOneLoop => {
                let conf = d.join(format!("{}.toml", slug(kind)));
                let mut text = tunnelscope_conf(plain, tls, [b1, b2], &cert, &key);
                if kind == Kind::TunnelscopeOneLoop {
                    text = format!("[proxy]\nthreads = 1\n\n{text}");
                }
                fs::write(&conf, text)?;
                let c = spawn_tunnelscope(d, "tunnelscope.log", &self.tunnelscope, &conf)?;
                let pid = c.id();
                (Some(c), pid, None)
            }
            Kind::TunnelscopeDashboard => {
                let conf = d.join("tunnelscope-dashboard.toml");
                fs::write(&conf, tunnelscope_conf(plain, tls, [b1, b2], &cert, &key))?;
                let (sock, child) = tmux_start(d, &self.tunnelscope, &conf)?;
                let pid = child.id();
                (Some(child), pid, Some(sock))
            }
            Kind::Direct => unreachable!("handled above"),
        };
        let running = Running {
            kind,
            pid: Some(pid),
            plain: self.endpoint(plain, false),
            tls: self.endpoint(tls, true),
            child,
            tmux,
        };
        if let Err(e) = wait_listening(&[plain, tls], &kind.to_string(), &log) {
            running.stop(d);
            return Err(e);
        }
        Ok(running)
    }
}

impl Running {
    pub fn stop(mut self, dir: &Path) {
        if let Some(pid) = self.pid {
            terminate(dir, pid, self.child.as_mut(), Duration::from_secs(5));
        }
        if let Some(sock) = self.tmux.take() {
            tmux_stop(dir, &sock);
        }
    }
}

fn slug(kind: Kind) -> &'static str {
    match kind {
        Kind::Direct => "direct",
        Kind::Nginx | Kind::NginxTwoWorkers => "nginx-error",
        Kind::Haproxy => "haproxy",
        Kind::Tunnelscope => "tunnelscope",
        Kind::TunnelscopeOneLoop => "tunnelscope-one-loop",
        Kind::TunnelscopeDashboard => "tunnelscope-dashboard",
    }
}
