//! The configurations each target runs with: nginx's classic WebSocket config, HAProxy's,
//! and tunnelscope's, in front of the same two echo backends.

use super::*;

/// The classic nginx WebSocket setup, one worker, logs in the work directory.
/// `worker_connections` and `worker_rlimit_nofile` only make room for 8,000 tunnels
/// (each is two connections).
pub fn nginx_conf(
    dir: &Path,
    plain: SocketAddr,
    tls: SocketAddr,
    b: [SocketAddr; 2],
    cert: &Path,
    key: &Path,
) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 1;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{
    worker_connections 20000;
}}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-tmp/body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream websocket {{
        least_conn;
        server {b0};
        server {b1};
    }}
    server {{
        listen {plain};
        listen {tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://websocket;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"#,
        b0 = b[0],
        b1 = b[1],
        cert = cert.display(),
        key = key.display(),
    )
}

/// HAProxy in HTTP mode, one thread, leastconn, one-hour tunnel timeout.
/// `maxconn` only makes room for 8,000 tunnels.
pub fn haproxy_conf(plain: SocketAddr, tls: SocketAddr, b: [SocketAddr; 2], pem: &Path) -> String {
    format!(
        r#"global
    nbthread 1
    maxconn 9000

defaults
    mode http
    maxconn 9000
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout tunnel 3600s

frontend ws
    bind {plain}
    bind {tls} ssl crt {pem}
    default_backend app

backend app
    balance leastconn
    server b1 {b0}
    server b2 {b1}
"#,
        b0 = b[0],
        b1 = b[1],
        pem = pem.display(),
    )
}

/// tunnelscope with the same two backends; everything else at its defaults.
pub fn tunnelscope_conf(
    plain: SocketAddr,
    tls: SocketAddr,
    b: [SocketAddr; 2],
    cert: &Path,
    key: &Path,
) -> String {
    format!(
        r#"[timeouts]
idle = "1h"

[[listener]]
bind = "{plain}"

[[listener]]
bind = "{tls}"
[listener.tls]
cert = "{cert}"
key = "{key}"

[pool.app]
balance = "least_conn"
[[pool.app.server]]
addr = "{b0}"
[[pool.app.server]]
addr = "{b1}"
"#,
        b0 = b[0],
        b1 = b[1],
        cert = cert.display(),
        key = key.display(),
    )
}
