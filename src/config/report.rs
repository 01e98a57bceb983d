//! The summary `tunnelscope check FILE` prints for a valid file.

use std::fmt::Write;

use super::{duration, Balance, Config};

impl Config {
    /// A short human summary of what this configuration does: listeners (plain or
    /// TLS), routes in match order, pools with their balance and servers, the admin API.
    ///
    /// ```text
    /// 1 listener, 2 routes, 2 pools
    /// listener  127.0.0.1:8080          ws
    /// listener  public (0.0.0.0:443)    wss, 1 SNI certificate
    /// route     *.example.com/chat  ->  chat
    /// route     /                   ->  api
    /// pool      chat  least_conn, 3 servers (1 backup)
    /// pool      api   hash on cookie:session, 2 servers
    /// idle timeout 1h, connect 5s, backend response 30s; at most 10000 connections
    /// admin API on 127.0.0.1:9090 (bearer token required)
    /// ```
    pub fn check_report(&self) -> String {
        let mut out = String::new();
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let _ = writeln!(
            out,
            "{}, {}, {}",
            plural(self.listeners.len(), "listener"),
            plural(self.routes.len(), "route"),
            plural(self.pools.len(), "pool")
        );
        let names: Vec<String> = self
            .listeners
            .iter()
            .map(|l| match &l.name {
                Some(name) => format!("{name} ({})", l.bind),
                None => l.bind.to_string(),
            })
            .collect();
        let width = names.iter().map(String::len).max().unwrap_or(0);
        for (l, name) in self.listeners.iter().zip(&names) {
            let kind = match &l.tls {
                None => "ws".to_string(),
                Some(tls) if tls.sni.is_empty() => "wss".to_string(),
                Some(tls) => format!("wss, {}", plural(tls.sni.len(), "SNI certificate")),
            };
            let _ = writeln!(out, "listener  {name:width$}  {kind}");
        }
        let targets: Vec<String> = self
            .routes
            .iter()
            .map(|r| format!("{}{}", r.host.as_deref().unwrap_or(""), r.path))
            .collect();
        let width = targets.iter().map(String::len).max().unwrap_or(0);
        for (r, target) in self.routes.iter().zip(&targets) {
            let _ = writeln!(out, "route     {target:width$}  ->  {}", r.pool);
        }
        if let Some(pool) = self.default_pool() {
            let _ = writeln!(out, "route     (every request)  ->  {pool}");
        }
        let width = self.pools.keys().map(String::len).max().unwrap_or(0);
        for (name, pool) in &self.pools {
            let balance = match (&pool.balance, &pool.hash_key) {
                (Balance::Hash, Some(key)) => format!("hash on {key}"),
                (b, _) => b.as_str().to_string(),
            };
            let backups = pool.servers.iter().filter(|s| s.backup).count();
            let mut line = format!(
                "pool      {name:width$}  {balance}, {}",
                plural(pool.servers.len(), "server")
            );
            if backups > 0 {
                let _ = write!(line, " ({backups} backup)");
            }
            if pool.tls {
                line.push_str(", TLS to backends");
            }
            let used = self.default_pool() == Some(name.as_str())
                || self.routes.iter().any(|r| &r.pool == name);
            if !used {
                line.push_str(" (no route uses it)");
            }
            let _ = writeln!(out, "{line}");
        }
        let t = &self.timeouts;
        let idle = if t.idle.is_zero() {
            "never".to_string()
        } else {
            duration::format(t.idle)
        };
        let limit = match self.limits.max_connections {
            0 => "no connection limit".to_string(),
            n => format!("at most {n} connections"),
        };
        let _ = writeln!(
            out,
            "idle timeout {idle}, connect {}, backend response {}; {limit}",
            duration::format(t.connect),
            duration::format(t.backend_response),
        );
        if let Some(bind) = self.admin.bind {
            let auth = match self.admin.token {
                Some(_) => "bearer token required",
                None => "no token",
            };
            let _ = writeln!(out, "admin API on {bind} ({auth})");
        }
        out
    }
}
