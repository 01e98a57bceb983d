//! The configuration file end to end, through `Config::load`: every fixture under
//! tests/config/valid loads, every fixture under tests/config/invalid fails with the
//! message and position written in its first line, and the shipped sample
//! assets/tunnelscope.toml stays valid.
//!
//! An invalid fixture starts with `# expect: LINE:COL: rest of the message`; the error
//! must read `PATH:LINE:COL: rest of the message...`. For a problem that has no place
//! in the file (a missing section), `# expect: -: key NAME: message` means the error
//! reads `PATH: key NAME: message...`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tunnelscope::config::{
    duration, Balance, Config, ConfigError, HashKey, HostHeader, Inspect, Limits, Timeouts,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = root().join("tests/config").join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn load(path: &Path) -> Config {
    Config::load(path).unwrap_or_else(|e| panic!("{e}"))
}

fn fixture(kind: &str, name: &str) -> PathBuf {
    root().join("tests/config").join(kind).join(name)
}

#[test]
fn every_valid_fixture_loads() {
    let files = fixtures("valid");
    assert!(files.len() >= 5, "valid fixtures: {files:?}");
    for path in files {
        let config = load(&path);
        let report = config.check_report();
        assert!(report.contains("listener"), "{}:\n{report}", path.display());
    }
}

#[test]
fn every_invalid_fixture_fails_where_it_says() {
    let files = fixtures("invalid");
    assert!(files.len() >= 12, "invalid fixtures: {files:?}");
    let mut failures = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()));
        let want = match expect.strip_prefix("-: ") {
            Some(rest) => format!("{}: {rest}", path.display()),
            None => format!("{}:{expect}", path.display()),
        };
        match Config::load(&path) {
            Ok(_) => failures.push(format!("{}: loaded, expected an error", path.display())),
            Err(e) => {
                let got = e.to_string();
                assert!(!got.contains('\n'), "not one line: {got}");
                assert!(
                    matches!(e, ConfigError::Parse { .. } | ConfigError::Invalid { .. }),
                    "{got}"
                );
                if !got.starts_with(&want) {
                    failures.push(format!("want: {want}\n got: {got}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_example_from_the_docs() {
    let err = Config::from_str("[timeouts]\nidle = \"10x\"\n", "tunnelscope.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"tunnelscope.toml:2:8: key timeouts.idle: unknown unit "x" in "10x" (use ms, s, m, h or d)"#
    );
}

#[test]
fn minimal_gets_every_default() {
    let c = load(&fixture("valid", "minimal.toml"));
    let (t, d) = (&c.timeouts, Timeouts::default());
    assert_eq!(
        (
            t.tls_handshake,
            t.request_head,
            t.connect,
            t.backend_response
        ),
        (
            d.tls_handshake,
            d.request_head,
            d.connect,
            d.backend_response
        )
    );
    assert_eq!(
        (t.idle, t.close_grace, t.shutdown_grace),
        (d.idle, d.close_grace, d.shutdown_grace)
    );
    assert_eq!(c.proxy.kill_close_code, 1012);
    assert!(c.admin.bind.is_none() && c.admin.token.is_none());
    assert_eq!(c.listeners[0].display_name(), "127.0.0.1:8080");
    assert_eq!(c.default_pool(), Some("app"));
    let pool = &c.pools["app"];
    assert_eq!(pool.balance, Balance::LeastConn);
    assert_eq!((pool.max_fails, pool.tries), (1, 3));
    assert_eq!(pool.fail_timeout, Duration::from_secs(10));
    assert_eq!(pool.host_header, HostHeader::Keep);
    assert_eq!((pool.servers[0].weight, pool.servers[0].backup), (1, false));
}

#[test]
fn full_sets_every_setting() {
    let c = load(&fixture("valid", "full.toml"));
    assert_eq!(c.proxy.trusted_proxies.len(), 3);
    assert_eq!(c.proxy.trusted_proxies[1].to_string(), "192.168.1.10/32");
    assert_eq!(c.proxy.kill_close_code, 4000);
    assert!(c.proxy.strict);
    assert_eq!(c.limits.max_connections_per_ip, 100);
    assert_eq!(c.limits.max_headers, 200);
    assert_eq!(c.timeouts.idle, Duration::from_secs(7200));
    assert_eq!(c.inspect.stats_interval, Duration::from_millis(500));
    assert_eq!(c.admin.bind, Some("[::1]:9090".parse().unwrap()));
    assert_eq!(c.admin.token.as_deref(), Some("full-fixture-token"));
    assert_eq!(c.listeners[0].display_name(), "public");
    assert_eq!(c.listeners[0].tls.as_ref().unwrap().sni.len(), 1);
    assert_eq!(c.routes.len(), 2);
    let api = &c.pools["api"];
    assert_eq!(api.hash_key, Some(HashKey::Header("x-user-id".into())));
    assert_eq!(api.host_header, HostHeader::Set("api.internal".into()));
    assert_eq!(api.fail_timeout, Duration::ZERO);
    let chat = &c.pools["chat"];
    assert!(chat.tls);
    assert_eq!(chat.server_name.as_deref(), Some("chat.internal"));
    assert_eq!(chat.servers.iter().filter(|s| s.backup).count(), 1);
}

#[test]
fn durations_in_every_form() {
    let c = load(&fixture("valid", "durations.toml"));
    let t = &c.timeouts;
    assert_eq!(t.tls_handshake, Duration::from_secs(90));
    assert_eq!(t.request_head, Duration::from_secs(15));
    assert_eq!(t.connect, Duration::from_millis(1500));
    assert_eq!(t.idle, Duration::ZERO);
    assert_eq!(t.shutdown_grace, Duration::ZERO);
    assert_eq!(duration::parse("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(duration::format(Duration::from_millis(1500)), "1s500ms");
}

#[test]
fn admin_api_on_a_public_address_with_a_token() {
    let c = load(&fixture("valid", "admin.toml"));
    assert_eq!(c.admin.bind, Some("0.0.0.0:9090".parse().unwrap()));
    assert_eq!(c.admin.token.as_deref(), Some("s3cret-Token_1"));
    let report = c.check_report();
    assert!(
        report.contains("admin API on 0.0.0.0:9090 (bearer token required)"),
        "{report}"
    );
}

#[test]
fn admin_api_on_loopback_needs_no_token() {
    for bind in ["127.0.0.1:9090", "[::1]:0"] {
        let text = format!(
            "[admin]\nbind = \"{bind}\"\n\n[[listener]]\nbind = \"127.0.0.1:8080\"\n\n\
             [[pool.app.server]]\naddr = \"127.0.0.1:9001\"\n"
        );
        let c = Config::from_str(&text, "admin.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.admin.bind, Some(bind.parse().unwrap()));
        assert!(c.admin.token.is_none());
        assert!(c.check_report().contains("(no token)"));
    }
}

#[test]
fn hash_by_cookie() {
    let c = load(&fixture("valid", "hash-cookie.toml"));
    let api = &c.pools["api"];
    assert_eq!(api.balance, Balance::Hash);
    assert_eq!(api.hash_key, Some(HashKey::Cookie("session".into())));
    assert_eq!(api.servers[1].weight, 2);
    assert!(api.servers[2].backup);
}

#[test]
fn relative_paths_resolve_against_the_file() {
    let path = fixture("valid", "tls-sni.toml");
    let dir = path.parent().unwrap();
    let c = load(&path);
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.cert, dir.join("certs/default.pem"));
    assert_eq!(tls.key, dir.join("certs/default.key"));
    assert_eq!(tls.sni[0].cert, dir.join("certs/chat.pem"));
    assert_eq!(tls.sni[1].cert, Path::new("/etc/tunnelscope/api.pem"));
    assert_eq!(tls.sni[1].names, ["api.example.com"]);
    assert_eq!(
        c.pools["chat"].ca.as_deref(),
        Some(&*dir.join("certs/backend-ca.pem"))
    );

    // from_str has no file, so it leaves paths as written.
    let text = std::fs::read_to_string(&path).unwrap();
    let c = Config::from_str(&text, "tls-sni.toml").unwrap();
    assert_eq!(
        c.listeners[0].tls.as_ref().unwrap().cert,
        Path::new("certs/default.pem")
    );
}

#[test]
fn several_pools_and_routes() {
    let c = load(&fixture("valid", "routes.toml"));
    assert_eq!(c.default_pool(), None);
    assert_eq!(c.routes[1].host.as_deref(), Some("*.games.example.com"));
    assert_eq!(c.routes[3].path, "/");
    assert_eq!(c.pools["games"].balance, Balance::RoundRobin);
    assert_eq!(c.pools["api"].host_header, HostHeader::Backend);
    let report = c.check_report();
    assert!(
        report.contains("4 listeners, 4 routes, 3 pools"),
        "{report}"
    );
    assert!(report.contains("ip_hash, 1 server"), "{report}");
}

#[test]
fn the_shipped_sample_is_valid() {
    let path = root().join("assets/tunnelscope.toml");
    let c = load(&path);
    assert_eq!(c.listeners.len(), 1);
    let bind: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    assert_eq!(c.listeners[0].bind, bind);
    assert!(c.listeners[0].tls.is_none());
    let chat = &c.pools["chat"];
    assert_eq!(chat.balance, Balance::LeastConn);
    assert_eq!(chat.servers.len(), 3);
    assert_eq!(chat.servers.iter().filter(|s| s.backup).count(), 1);
    let api = &c.pools["api"];
    assert_eq!(api.balance, Balance::Hash);
    assert!(matches!(api.hash_key, Some(HashKey::Cookie(_))));
    assert!(c.routes.iter().any(|r| r.path == "/api" && r.pool == "api"));

    // The global sections are written out with their defaults: they must stay so.
    let (l, d) = (&c.limits, Limits::default());
    assert_eq!(
        (
            l.max_connections,
            l.max_connections_per_ip,
            l.max_header_bytes,
            l.max_headers
        ),
        (
            d.max_connections,
            d.max_connections_per_ip,
            d.max_header_bytes,
            d.max_headers
        )
    );
    let (t, d) = (&c.timeouts, Timeouts::default());
    assert_eq!(
        [
            t.tls_handshake,
            t.request_head,
            t.connect,
            t.backend_response,
            t.idle
        ],
        [
            d.tls_handshake,
            d.request_head,
            d.connect,
            d.backend_response,
            d.idle
        ]
    );
    assert_eq!(
        [t.close_grace, t.shutdown_grace],
        [d.close_grace, d.shutdown_grace]
    );
    let (i, d) = (&c.inspect, Inspect::default());
    assert_eq!(
        (i.ring, i.preview_bytes, i.event_capacity, i.stats_interval),
        (d.ring, d.preview_bytes, d.event_capacity, d.stats_interval)
    );
    assert_eq!(c.proxy.kill_close_code, 1012);
    assert_eq!(c.proxy.kill_close_reason, "service restart");
    assert!(c.proxy.trusted_proxies.is_empty() && !c.proxy.strict);
    // The admin API is off unless asked for.
    assert!(c.admin.bind.is_none() && c.admin.token.is_none());
}

/// Lines written `#setting` (no space) are settings to turn on; with all of them
/// turned on the sample must still be valid, and has a TLS listener.
#[test]
fn the_shipped_sample_is_valid_with_every_option_on() {
    let text = std::fs::read_to_string(root().join("assets/tunnelscope.toml")).unwrap();
    let on: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.starts_with([' ', '#']) && !rest.is_empty() => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = Config::from_str(&on, "tunnelscope.toml (all options on)")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[0].name.as_deref(), Some("local"));
    let tls = c.listeners[1].tls.as_ref().expect("the wss listener");
    assert_eq!(tls.sni.len(), 1);
    assert!(c.pools["chat"].tls);
    assert_eq!(c.routes.len(), 3);
    assert!(c.admin.bind.is_some() && c.admin.token.is_some());
}

#[test]
fn validate_without_text_names_the_key() {
    let mut c = Config::quick(
        "127.0.0.1:8080".parse().unwrap(),
        &["127.0.0.1:9001".into()],
    );
    assert!(c.validate("--upstream").is_ok());
    c.pools.get_mut("default").unwrap().servers[0].weight = 0;
    let err = c.validate("--upstream").unwrap_err().to_string();
    assert!(
        err.starts_with("--upstream: key pool.default.server[0].weight: must be at least 1"),
        "{err}"
    );
    let c = Config::quick("127.0.0.1:8080".parse().unwrap(), &["localhost".into()]);
    let err = c.validate("--upstream").unwrap_err().to_string();
    assert!(err.contains(r#""localhost" needs a port"#), "{err}");
}

#[test]
fn a_missing_file_is_named() {
    let path = root().join("tests/config/no-such-file.toml");
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().starts_with(&path.display().to_string()));
}
