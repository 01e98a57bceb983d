//! The signals the process answers: SIGINT and SIGTERM stop it gracefully, SIGHUP
//! reloads the config file, SIGUSR2 asks for a binary upgrade.

/// A signal that asks for something.
pub enum Sig {
    /// SIGINT or SIGTERM: stop.
    Stop(&'static str),
    /// SIGUSR2: binary upgrade.
    Upgrade,
}

/// SIGINT and SIGTERM, listened for from before the proxy starts so that no signal
/// in the first moments kills the process without a graceful shutdown. SIGHUP
/// reloads the config file, as nginx's does; it never ends the process.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
    /// Where SIGHUP sends its reload, once the proxy runs.
    reload: Option<tunnelscope::control::ControlHandle>,
}

impl Signals {
    pub fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            usr2: signal(SignalKind::user_defined2())?,
            reload: None,
        })
    }

    /// From now on SIGHUP asks this proxy to reload its config file.
    pub fn reload_through(&mut self, control: tunnelscope::control::ControlHandle) {
        self.reload = Some(control);
    }

    /// Resolves on the next SIGINT or SIGTERM, naming which; SIGUSR2 (an upgrade)
    /// is logged as not possible here.
    pub async fn stop(&mut self) -> &'static str {
        loop {
            match self.next().await {
                Sig::Stop(name) => return name,
                Sig::Upgrade => tracing::warn!(
                    "SIGUSR2: a binary upgrade needs the process to run headless (--headless); ignored"
                ),
            }
        }
    }

    /// Resolves on the next SIGINT or SIGTERM, or SIGUSR2. SIGHUP starts a reload
    /// (the proxy logs what changed, or why the file was refused) and waits on.
    pub async fn next(&mut self) -> Sig {
        loop {
            tokio::select! {
                _ = self.int.recv() => return Sig::Stop("SIGINT"),
                _ = self.term.recv() => return Sig::Stop("SIGTERM"),
                _ = self.usr2.recv() => return Sig::Upgrade,
                _ = self.hup.recv() => match &self.reload {
                    Some(control) => {
                        tracing::info!("SIGHUP received: reloading the config");
                        if let Err(e) = control.try_send(tunnelscope::control::Command::Reload) {
                            tracing::warn!(error = %e, "SIGHUP: reload not started");
                        }
                    }
                    None => tracing::warn!("SIGHUP received before the proxy started: ignored"),
                },
            }
        }
    }
}
