//! `tunnelscope demo`: a complete playground in one process, so a newcomer sees the
//! dashboard move within seconds of `cargo run --release -- demo`.
//!
//! [`Demo::start`] brings up three small WebSocket backends (`app-1`..`app-3`, see
//! [`backends`]), a proxy in front of them (one plain listener, one `least_conn`
//! pool called `app`, see [`config_toml`]), and a cast of synthetic clients (see
//! [`traffic`]) that chat, echo, ping, idle, fragment and reconnect. Killing or
//! draining a backend from the dashboard makes its clients visibly move to the
//! others. [`Demo::url`] is the chat page a person can open next to the bots.
//!
//! Only `main.rs` wires this to the dashboard; the demo itself only uses the proxy's
//! public API (`start`, the control channel, events, snapshots), like any observer.

pub mod backends;
mod endpoints;
pub mod traffic;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Config, ConfigError};
use crate::event::BackendId;
use crate::proxy::{ProxyHandle, StartError};

pub use backends::Backends;
pub use endpoints::TICK;
pub use traffic::Traffic;

/// Where the demo listens when it can, so the README can say
/// "open http://127.0.0.1:8080/".
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// The name of the demo's one pool; backends are `app/127.0.0.1:PORT`.
pub const POOL: &str = "app";

/// The names of the backend instances, in pool order.
pub const BACKEND_NAMES: [&str; 3] = ["app-1", "app-2", "app-3"];

/// How long the proxy gives tunnels to close on [`Demo::stop`]; short, because the
/// synthetic clients have already said goodbye by then.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A backend instance could not bind its port.
    #[error("demo backend {name} could not listen on {addr}: {source}")]
    Backend {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The generated configuration was rejected (a bug in the demo).
    #[error("demo configuration: {0}")]
    Config(#[from] ConfigError),
    /// The proxy could not start (usually: the listen address is taken).
    #[error(transparent)]
    Proxy(#[from] StartError),
}

/// A running demo: backends, proxy and synthetic traffic.
pub struct Demo {
    /// The proxy in front of the backends; hand it to the dashboard.
    pub proxy: ProxyHandle,
    /// The chat page through the proxy, e.g. `http://127.0.0.1:8080/`.
    pub url: String,
    /// The three backend instances; each can be stopped and restarted.
    pub backends: Backends,
    /// The configuration the proxy runs with, as TOML (worth showing to newcomers).
    pub config_toml: String,
    traffic: Traffic,
}

impl Demo {
    /// Starts everything on 127.0.0.1:8080, or on a free port when 8080 is taken.
    pub async fn start() -> Result<Demo, DemoError> {
        // Trying the real bind (rather than probing first) leaves no window for
        // another process to take the port in between.
        match Demo::start_on(DEFAULT_LISTEN).await {
            Err(DemoError::Proxy(StartError::Bind { addr, source })) => {
                tracing::info!(%addr, error = %source, "demo port busy, using a free one");
                Demo::start_on(any_port()).await
            }
            other => other,
        }
    }

    /// Starts everything with the proxy listening on `listen` (port 0: any free port).
    pub async fn start_on(listen: SocketAddr) -> Result<Demo, DemoError> {
        let backends = Backends::start(&BACKEND_NAMES).await?;
        let config_toml = config_toml(&backends.addrs(), listen);
        let config = Config::from_str(&config_toml, "demo configuration")?;
        // On error `backends` is dropped here, which stops every instance.
        let proxy = crate::proxy::start(config).await?;
        let addr = proxy.local_addrs()[0];
        let traffic = Traffic::start(addr);
        tracing::info!(%addr, "demo running");
        Ok(Demo {
            proxy,
            url: format!("http://{addr}/"),
            backends,
            config_toml,
            traffic,
        })
    }

    /// The proxy's id of each backend instance, in [`BACKEND_NAMES`] order: what
    /// `Command::Drain`/`Kill` take.
    pub fn backend_ids(&self) -> Vec<BackendId> {
        self.backends
            .addrs()
            .iter()
            .map(|a| BackendId::new(POOL, &a.to_string()))
            .collect()
    }

    /// One line per thing a person can open or watch, for a banner or headless mode.
    pub fn summary(&self) -> String {
        let mut out = format!("demo chat page: {}\n", self.url);
        for (name, addr) in BACKEND_NAMES.iter().zip(self.backends.addrs()) {
            out.push_str(&format!("backend {name}: {POOL}/{addr}\n"));
        }
        out.push_str(&format!(
            "{} synthetic clients on /chat, /echo and /ticker\n",
            traffic::CLIENTS.len()
        ));
        out
    }

    /// Stops the traffic (clients close with 1001), shuts the proxy down gracefully,
    /// then stops the backends.
    pub async fn stop(self) {
        self.traffic.stop().await;
        self.proxy.shutdown();
        // The proxy bounds its own grace; this only guards against a stuck task.
        if tokio::time::timeout(SHUTDOWN_GRACE * 2, self.proxy.wait())
            .await
            .is_err()
        {
            tracing::warn!("demo proxy did not finish shutting down in time");
        }
        self.backends.stop_all();
    }
}

/// 127.0.0.1:8080 if it can be bound now, else 127.0.0.1:0 (any free port). The
/// port is released again before returning, so another process could still take
/// it; [`Demo::start`] avoids that race by falling back on the real bind.
pub async fn pick_listen() -> SocketAddr {
    match tokio::net::TcpListener::bind(DEFAULT_LISTEN).await {
        Ok(_) => DEFAULT_LISTEN,
        Err(_) => any_port(),
    }
}

fn any_port() -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
}

/// The demo's configuration as TOML: the same schema as a user's file, so it doubles
/// as a minimal example.
pub fn config_toml(backends: &[SocketAddr], listen: SocketAddr) -> String {
    let servers: String = backends
        .iter()
        .map(|a| format!("    {{ addr = \"{a}\" }},\n"))
        .collect();
    format!(
        r#"# tunnelscope demo: three in-process backends behind one plain listener.

[timeouts]
# The demo's own clients close first on exit, so a short grace is plenty.
shutdown_grace = "{grace}s"

[[listener]]
name = "demo"
bind = "{listen}"

# No [[route]]: every request goes to the only pool.
[pool.{POOL}]
# Tunnels are long-lived: new ones go to the backend with the fewest.
balance = "least_conn"
# A stopped instance is retried after 3 s rather than 10, so a restart shows quickly.
fail_timeout = "3s"
server = [
{servers}]
"#,
        grace = SHUTDOWN_GRACE.as_secs(),
    )
}

/// The demo's configuration, parsed and validated.
pub fn config(backends: &[SocketAddr], listen: SocketAddr) -> Result<Config, ConfigError> {
    Config::from_str(&config_toml(backends, listen), "demo configuration")
}

/// Tells a group of tasks to stop: dropping the sender wakes every [`Stop`] at once,
/// and tasks started later see it immediately.
pub(crate) fn stop_signal() -> (watch::Sender<()>, Stop) {
    let (tx, rx) = watch::channel(());
    (tx, Stop(rx))
}

/// The receiving end of [`stop_signal`]; clone one per task.
#[derive(Debug, Clone)]
pub(crate) struct Stop(watch::Receiver<()>);

impl Stop {
    /// Resolves once the sender is gone. Nothing is ever sent, so `changed` only
    /// returns (with an error) when the sender is dropped.
    pub(crate) async fn wait(&mut self) {
        while self.0.changed().await.is_ok() {}
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.0.has_changed().is_err()
    }
}

/// The bots' randomness: `fastrand`, seeded per bot so each behaves differently and
/// a seed replays the same behaviour. Not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct Rng(fastrand::Rng);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0.u64(lo..=hi)
    }

    pub(crate) fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.0.usize(..items.len())]
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        self.0.fill(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_config_is_valid() {
        let backends: Vec<SocketAddr> = (9001..9004)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        let c = config(&backends, DEFAULT_LISTEN).unwrap();
        assert_eq!(c.listeners[0].bind, DEFAULT_LISTEN);
        assert_eq!(c.pools[POOL].servers.len(), 3);
        assert_eq!(c.default_pool(), Some(POOL));
    }

    #[test]
    fn rng_stays_in_range_and_differs_per_seed() {
        let mut a = Rng::new(0);
        let mut b = Rng::new(1);
        assert_ne!(a.range(0, u64::MAX), b.range(0, u64::MAX));
        for _ in 0..1000 {
            let v = a.range(3, 5);
            assert!((3..=5).contains(&v));
        }
        let mut buf = [0u8; 13];
        a.fill(&mut buf);
        assert!(buf.iter().any(|&b| b != 0));
    }
}
