//! Binary upgrade with the real binary: SIGUSR2 (or `POST /api/upgrade`) starts the
//! binary again, hands it the listening sockets (admin API included), and the old
//! process keeps its tunnels until they end, then exits. A new binary that fails to
//! start leaves the old one serving.

use std::path::{Path, PathBuf};

use crate::admin::client::Admin;
use crate::common::binary::{field, free_addr, Proc};
use crate::common::clients::hang_up;
use crate::common::*;

/// A process started by the old one: killed by PID when the test ends.
struct Successor(u32);

impl Successor {
    fn alive(&self) -> bool {
        std::process::Command::new("kill")
            .args(["-0", &self.0.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn write_config(dir: &Path, backend: &Backend, admin: &str) -> PathBuf {
    let path = dir.join("tunnelscope.toml");
    std::fs::write(
        &path,
        format!(
            "[admin]\nbind = \"{admin}\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n\n\
             [pool.app]\n[[pool.app.server]]\naddr = \"{}\"\n",
            backend.addr
        ),
    )
    .unwrap();
    path
}

/// Ten held tunnels live through a SIGUSR2 upgrade: the new process takes the
/// listening socket and the admin API (its state lists none of the old tunnels),
/// new tunnels reach it, the old ones run on in the old process, which exits 0 once
/// they have ended.
#[tokio::test]
async fn a_binary_upgrade_hands_the_listeners_over_and_drops_no_tunnel() {
    let a = Backend::start("a").await;
    let dir = tempfile::TempDir::new().unwrap();
    let admin_addr = free_addr();
    let file = write_config(dir.path(), &a, &admin_addr);
    let mut old = Proc::spawn(&["--config", file.to_str().unwrap(), "--headless"]);
    let addr = old.listening().await;
    let admin = Admin::at(admin_addr.parse().unwrap());
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut ws = connect(addr, "/held").await;
        assert_eq!(whoami(&mut ws).await, "a");
        held.push(ws);
    }
    assert_eq!(
        admin.get_json("/api/state").await["tunnels"]
            .as_array()
            .unwrap()
            .len(),
        10
    );

    old.signal("USR2");
    let line = old
        .wait_line(|l| l.contains("the new process serves"))
        .await
        .expect("an upgrade, not an exit");
    let new_pid: u32 = field(&line, "new_pid").unwrap().parse().unwrap();
    let new = Successor(new_pid);
    assert_ne!(new_pid, old.pid);
    assert!(old.running(), "the old process keeps its tunnels");

    // The admin API and the listener are the new process's now.
    let state = admin.get_json("/api/state").await;
    assert_eq!(state["tunnels"].as_array().unwrap().len(), 0, "{state}");
    let mut fresh = connect(addr, "/fresh").await;
    assert_eq!(whoami(&mut fresh).await, "a");
    let state = admin.get_json("/api/state").await;
    assert_eq!(state["tunnels"].as_array().unwrap().len(), 1, "{state}");
    // The old tunnels run on, in the old process.
    for ws in &mut held {
        assert_eq!(whoami(ws).await, "a");
    }
    for ws in held {
        hang_up(ws).await;
    }
    let status = old.exit_within(WAIT).await;
    assert!(status.success(), "the old process exited with {status}");
    // The new one serves on.
    assert!(new.alive());
    assert_eq!(whoami(&mut fresh).await, "a");
    let mut again = connect(addr, "/again").await;
    assert_eq!(whoami(&mut again).await, "a");
}

/// `POST /api/upgrade` with a config file the new binary refuses: 500 saying the
/// new process exited, and the old one serves on (tunnels, listener, admin API);
/// with the file fixed, the same call upgrades and names the new PID.
#[tokio::test]
async fn a_new_binary_that_fails_to_start_leaves_the_old_one_serving() {
    let a = Backend::start("a").await;
    let dir = tempfile::TempDir::new().unwrap();
    let admin_addr = free_addr();
    let file = write_config(dir.path(), &a, &admin_addr);
    let mut old = Proc::spawn(&["--config", file.to_str().unwrap(), "--headless"]);
    let addr = old.listening().await;
    let admin = Admin::at(admin_addr.parse().unwrap());
    let mut held = connect(addr, "/held").await;
    assert_eq!(whoami(&mut held).await, "a");

    std::fs::write(&file, "[[listener]\nbind = ").unwrap();
    let reply = admin.post("/api/upgrade").await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(
        reply.body.contains("exited before it was ready"),
        "{}",
        reply.body
    );
    old.wait_line(|l| l.contains("upgrade failed"))
        .await
        .expect("the failure is logged");
    assert!(old.running());
    assert_eq!(whoami(&mut held).await, "a");
    let mut fresh = connect(addr, "/fresh").await;
    assert_eq!(whoami(&mut fresh).await, "a");
    assert_eq!(
        admin.get_json("/api/state").await["tunnels"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    write_config(dir.path(), &a, &admin_addr);
    let reply = admin.post("/api/upgrade").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let pid = reply.json()["pid"].as_u64().unwrap() as u32;
    let new = Successor(pid);
    assert!(new.alive());
    hang_up(held).await;
    hang_up(fresh).await;
    let status = old.exit_within(WAIT).await;
    assert!(status.success(), "{status}");
}
