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
    /// The program in the pane, once known (a child of the pane's `sh`).
    pid: Option<u32>,
    /// Where the pane's `sh` writes the program's exit status: tmux's own
    /// `pane_dead_status` is sometimes never filled in.
    status_file: PathBuf,
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
        let status_file = scratch.join(format!("{name}.status"));
        let mut tmux = Tmux {
            socket: scratch.join(format!("{name}.sock")),
            session: name,
            pid: None,
            status_file,
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
        // sh runs the program in the foreground of the pane's terminal and records
        // its exit status ($0 is the status file, "$@" the program and its args).
        cmd.args(["sh", "-c", "\"$@\"; echo $? > \"$0\""])
            .arg(&tmux.status_file)
            .arg(program)
            .args(args);
        let out = cmd.output().expect("run tmux new-session");
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shell: Option<u32> = tmux
            .pane_field("pane_pid")
            .and_then(|p| p.trim().parse().ok());
        tmux.pid = shell.and_then(child_of);
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
        if let Ok(text) = std::fs::read_to_string(&self.status_file) {
            if let Ok(code) = text.trim().parse() {
                return Some(Some(code));
            }
        }
        match self.pane_field("pane_dead") {
            // The session is gone, or the shell died without writing a status.
            None => Some(None),
            Some(d) if d == "1" && std::fs::read_to_string(&self.status_file).is_err() => {
                Some(None)
            }
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

/// The first child of `parent` (the program the pane's `sh` started), waiting a
/// bounded time for it to appear. Linux `/proc`.
fn child_of(parent: u32) -> Option<u32> {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        let path = format!("/proc/{parent}/task/{parent}/children");
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
        {
            return Some(pid);
        }
        std::thread::sleep(POLL);
    }
    None
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
