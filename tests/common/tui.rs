//! Driving the real `tunnelscope` binary in a real terminal: a detached tmux session
//! of a fixed size on a tmux server of its own (private socket, no user config), keys
//! sent with `send-keys`, the screen read with `capture-pane`.
//!
//! The screen is the interface here, so waiting for what it shows is the
//! synchronisation: [`Tmux::wait_for`] polls it every [`POLL`] for at most
//! [`super::WAIT`]. Dropping a [`Tmux`] kills its server and makes sure the program
//! in the pane is gone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::WAIT;

/// Time between two looks at the screen.
pub const POLL: Duration = Duration::from_millis(50);

/// Whether the `tmux` command can be run.
pub fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// True when the test should go on; false (after saying why on stderr) when tmux is
/// missing outside CI. In CI a missing tmux is a failure: `.ci/run` installs it.
pub fn require_tmux() -> bool {
    if tmux_available() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("tmux is not installed but CI is set: .ci/run installs it (apt-get install tmux)");
    }
    eprintln!("skipping: tmux not installed");
    false
}

/// A program running in a detached tmux session on a private tmux server.
pub struct Tmux {
    /// The server's socket, in the caller's scratch directory.
    socket: PathBuf,
    session: String,
    /// The program in the pane, once known (the pane runs it without a shell).
    pid: Option<u32>,
    /// The last screen captured, printed if the test panics.
    last: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Tmux {
    /// Starts `program args…` in a new `width`x`height` session. `scratch` is a
    /// directory for the server's config file. The pane stays after the program
    /// exits (`remain-on-exit`) so its exit status can be read.
    pub fn start(
        scratch: &Path,
        width: u16,
        height: u16,
        env: &[(&str, &str)],
        program: &Path,
        args: &[&str],
    ) -> Tmux {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("tunnelscope-e2e-{}-{n}", std::process::id());
        let conf: PathBuf = scratch.join(format!("{name}.tmux.conf"));
        std::fs::write(
            &conf,
            "set -g remain-on-exit on\nset -g status off\nset -g history-limit 0\n",
        )
        .expect("write tmux config");
        let mut tmux = Tmux {
            socket: scratch.join(format!("{name}.sock")),
            session: name,
            pid: None,
            last: String::new(),
        };
        let mut cmd = Command::new("tmux");
        cmd.env_remove("TMUX")
            .arg("-S")
            .arg(&tmux.socket)
            .arg("-f")
            .arg(&conf)
            .args(["new-session", "-d", "-s", &tmux.session])
            .args(["-x", &width.to_string(), "-y", &height.to_string()]);
        for (k, v) in env {
            cmd.arg("-e").arg(format!("{k}={v}"));
        }
        // More than one argument: tmux runs the program directly, without a shell.
        cmd.arg(program).args(args);
        let out = cmd.output().expect("run tmux new-session");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux.pid = tmux
            .pane_field("pane_pid")
            .and_then(|p| p.trim().parse().ok());
        tmux
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .env_remove("TMUX")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// A `#{format}` of the pane, or `None` when the session no longer exists.
    pub fn pane_field(&self, field: &str) -> Option<String> {
        let out = self.tmux(&[
            "list-panes",
            "-t",
            &self.session,
            "-F",
            &format!("#{{{field}}}"),
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The id of the program in the pane.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The exit status once the program has exited, `None` while it runs. A vanished
    /// session counts as exited with an unknown status (`Some(None)`).
    pub fn exit_status(&self) -> Option<Option<i32>> {
        match self.pane_field("pane_dead") {
            None => Some(None),
            Some(d) if d == "1" => Some(
                self.pane_field("pane_dead_status")
                    .and_then(|s| s.parse().ok()),
            ),
            Some(_) => None,
        }
    }

    /// Sends keys, each as tmux names it (`Tab`, `j`, `Enter`, …).
    pub fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        let out = self.tmux(&args);
        assert!(
            out.status.success(),
            "tmux send-keys {keys:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The visible screen as plain text, one line per row.
    pub fn capture(&mut self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", &self.session]);
        assert!(
            out.status.success(),
            "tmux capture-pane failed (did the program exit?): {}\nlast screen:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.last
        );
        self.last = String::from_utf8_lossy(&out.stdout).into_owned();
        self.last.clone()
    }

    /// The last screen captured.
    pub fn last_screen(&self) -> &str {
        &self.last
    }

    /// Polls the screen until `pred` holds and returns that screen; fails after
    /// [`WAIT`] naming `what` and showing the last screen. Every screen seen is also
    /// passed to `check` (for "never shows" assertions). Fails at once if the
    /// program exits.
    pub async fn wait_for(
        &mut self,
        what: &str,
        check: impl Fn(&str),
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                panic!(
                    "the program exited (status {status:?}) while waiting for {what}; screen:\n{}",
                    self.last
                );
            }
            let screen = self.capture();
            check(&screen);
            if pred(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < WAIT,
                "gave up after {WAIT:?} waiting for {what}; screen:\n{screen}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits (bounded by [`WAIT`]) for the program to exit and returns its status.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            assert!(
                start.elapsed() < WAIT,
                "the program did not exit within {WAIT:?}; screen:\n{}",
                self.capture()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Whether process `pid` still runs (a zombie counts as gone). Linux `/proc`.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.last.is_empty() {
            eprintln!("--- last screen of {} ---\n{}", self.session, self.last);
        }
        // Remember what runs in the pane before the server (and its pane) goes.
        let name = self.pid.and_then(process_name);
        let _ = self.tmux(&["kill-server"]);
        let _ = std::fs::remove_file(&self.socket);
        let Some(pid) = self.pid else { return };
        // tmux hangs up on the pane; give the program a moment, then make sure.
        let start = Instant::now();
        while process_alive(pid) && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(POLL);
        }
        // Only kill what is still the same program (not a recycled id).
        if process_alive(pid) && name.is_some() && process_name(pid) == name {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}
