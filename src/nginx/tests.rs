//! The translation against the cases that trip naive ones: inherited certificates,
//! dual-stack listens, route order between exact, wildcard and no host, names
//! given after the locations, hostile text.

use super::import;
use crate::config::Config;

/// Imports `nginx` and loads the result as tunnelscope would.
fn load(nginx: &str) -> (String, Config) {
    let toml = import(nginx, "test.conf").unwrap();
    let config = Config::from_str(&toml, "import")
        .unwrap_or_else(|e| panic!("the import does not load: {e}\n{toml}"));
    (toml, config)
}

const WS: &str = "proxy_pass http://app; proxy_set_header Upgrade $http_upgrade;";

#[test]
fn certificates_given_in_http_are_inherited_and_dual_stack_listens_become_one() {
    let (toml, config) = load(&format!(
        "http {{ ssl_certificate /c.pem; ssl_certificate_key /k.pem;\n\
         upstream app {{ server 10.0.0.1:80; }}\n\
         server {{ listen 443 ssl; listen [::]:443 ssl; location / {{ {WS} }} }} }}"
    ));
    assert_eq!(config.listeners.len(), 1, "{toml}");
    assert_eq!(config.listeners[0].bind.to_string(), "[::]:443");
    assert!(config.listeners[0].tls.is_some(), "{toml}");
}

#[test]
fn exact_hosts_come_before_wildcards_and_names_after_locations_still_count() {
    let (toml, _) = load(&format!(
        "upstream app {{ server 10.0.0.1:80; }}\nupstream other {{ server 10.0.0.2:80; }}\n\
         server {{ listen 80; server_name api.example.com; location / {{ {WS} }} }}\n\
         server {{ listen 80; location /ws {{ proxy_pass http://other; }} server_name *.example.com; }}"
    ));
    let exact = toml
        .find("host = \"api.example.com\"")
        .expect("the exact host routed");
    let wild = toml
        .find("host = \"*.example.com\"")
        .expect("the wildcard routed");
    assert!(exact < wild, "{toml}");
}

#[test]
fn a_named_route_stays_where_a_longer_hostless_path_would_take_its_requests() {
    let (toml, _) = load(&format!(
        "upstream app {{ server 10.0.0.1:80; }}\nupstream z {{ server 10.0.0.9:80; }}\n\
         server {{ listen 80; server_name a.com; location /admin {{ proxy_pass http://z; }} location / {{ {WS} }} }}\n\
         server {{ listen 80; server_name b.com; location / {{ {WS} }} }}"
    ));
    assert!(
        toml.contains("host = \"b.com\""),
        "b.com/admin must stay on app:\n{toml}"
    );
}

#[test]
fn hostile_text_is_refused_or_kept_inert() {
    let deep = "a {".repeat(10_000);
    assert!(import(&deep, "deep.conf")
        .unwrap_err()
        .to_string()
        .contains("nested"));
    let (toml, _) = load(&format!(
        "upstream app {{ server 10.0.0.1:80 weight=0; }}\n\
         server {{ listen 80; location / {{ {WS} proxy_next_upstream_tries 0;\n\
         proxy_set_header X \"a\n[admin]\nbind = \\\"0.0.0.0:9090\\\"\"; }} }}"
    ));
    assert!(!toml.lines().any(|l| l.starts_with("[admin]")), "{toml}");
    assert!(
        !toml.contains("tries = 0") && !toml.contains("weight = 0"),
        "{toml}"
    );
}
