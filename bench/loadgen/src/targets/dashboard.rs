//! tunnelscope with its dashboard open in a tmux terminal, for the echo test run with
//! someone watching.

use super::*;

fn tmux(sock: &str) -> Command {
    let mut c = Command::new("tmux");
    c.arg("-L").arg(sock);
    c
}

fn tmux_out(sock: &str, args: &[&str]) -> Result<String> {
    let out = tmux(sock).args(args).output().context("running tmux")?;
    if !out.status.success() {
        bail!(
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Starts tunnelscope (no --headless) drawing into a detached 160x48 tmux pane on a
/// tmux server of our own; returns the socket name and tunnelscope's process.
///
/// tunnelscope is not the pane's command: the pane holds its terminal with `sleep`,
/// and tunnelscope is started here, as our child, with the pane's tty as stdin,
/// stdout and stderr. A pane's command runs in a session of its own, and with the
/// kernel's autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`) a
/// session of its own is a CPU share of its own: measured that way, headless
/// tunnelscope itself lost a quarter of its echo rate. Started from here, it shares
/// a session with the load generator, like every other target, so the comparison
/// measures the dashboard and nothing else. Keys sent to the pane still reach it.
pub(super) fn tmux_start(dir: &Path, bin: &Path, conf: &Path) -> Result<(String, Child)> {
    let sock = format!("tsbench-{}", std::process::id());
    let tmux_conf = dir.join("tmux.conf");
    fs::write(&tmux_conf, "set -g remain-on-exit on\nset -g status off\n")?;
    let (cwd, tconf) = (dir.to_string_lossy(), tmux_conf.to_string_lossy());
    tmux_out(
        &sock,
        &[
            "-f",
            &tconf,
            "new-session",
            "-d",
            "-s",
            "ts",
            "-c",
            &cwd,
            "-x",
            "160",
            "-y",
            "48",
            "exec sleep 86400",
        ],
    )?;
    let server: u32 = tmux_out(&sock, &["display-message", "-p", "-t", "ts", "#{pid}"])?.parse()?;
    record_pid(dir, server, true);
    let holder: u32 =
        tmux_out(&sock, &["display-message", "-p", "-t", "ts", "#{pane_pid}"])?.parse()?;
    record_pid(dir, holder, true);
    let tty = tmux_out(&sock, &["display-message", "-p", "-t", "ts", "#{pane_tty}"])?;
    let term = tmux_out(&sock, &["show-options", "-gv", "default-terminal"])
        .unwrap_or_else(|_| "screen".to_string());
    let open = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tty)
            .with_context(|| format!("opening the pane's tty {tty}"))
    };
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(conf).args(["--log", "warn"]);
    // With the dashboard, logs go to a file (tunnelscope.log in the working directory
    // unless told otherwise): keep it in the work directory.
    let help = Command::new(bin).arg("--help").output()?;
    if String::from_utf8_lossy(&help.stdout).contains("--log-file") {
        cmd.arg("--log-file")
            .arg(dir.join("tunnelscope-dashboard-app.log"));
    }
    let mut child = cmd
        .current_dir(dir)
        .env("TERM", term)
        .stdin(open()?)
        .stdout(open()?)
        .stderr(open()?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    record_pid(dir, child.id(), true);
    std::thread::sleep(Duration::from_millis(300));
    if let Ok(Some(status)) = child.try_wait() {
        let screen = tmux_out(&sock, &["capture-pane", "-p", "-t", "ts"]).unwrap_or_default();
        record_pid(dir, child.id(), false);
        tmux_stop(dir, &sock);
        bail!(
            "tunnelscope exited at once ({status}) in tmux:\n{}",
            screen.trim()
        );
    }
    Ok((sock, child))
}

pub(super) fn tmux_stop(dir: &Path, sock: &str) {
    let server = tmux_out(sock, &["display-message", "-p", "#{pid}"]).ok();
    let path = tmux_out(sock, &["display-message", "-p", "#{socket_path}"]).ok();
    let _ = tmux(sock).arg("kill-server").output();
    if let Some(pid) = server.and_then(|s| s.parse::<u32>().ok()) {
        record_pid(dir, pid, false);
    }
    // A killed server can leave its socket file behind.
    if let Some(p) = path.filter(|p| p.contains(sock)) {
        let _ = fs::remove_file(p);
    }
}

/// Whether tunnelscope without --headless draws a dashboard: its `--help` mentions
/// one and, started in a tmux pane, it switches to the alternate screen or draws
/// box characters within 3 s. Anything else (no such mode yet) means no.
pub fn dashboard_available(dir: &Path, bin: &Path, b: [SocketAddr; 2]) -> Result<bool> {
    let help = Command::new(bin).arg("--help").output()?;
    let help = String::from_utf8_lossy(&help.stdout).to_lowercase();
    if !help.contains("dashboard") {
        return Ok(false);
    }
    let (plain, tls) = (free_port()?, free_port()?);
    let conf = dir.join("tunnelscope-probe.toml");
    fs::write(
        &conf,
        tunnelscope_conf(plain, tls, b, &dir.join("cert.pem"), &dir.join("key.pem")),
    )?;
    let (sock, mut child) = match tmux_start(dir, bin, &conf) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("dashboard probe: {e:#}");
            return Ok(false);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = false;
    while Instant::now() < deadline && !seen {
        std::thread::sleep(Duration::from_millis(250));
        let alt = tmux_out(
            &sock,
            &["display-message", "-p", "-t", "ts", "#{alternate_on}"],
        );
        let screen = tmux_out(&sock, &["capture-pane", "-p", "-t", "ts"]).unwrap_or_default();
        let boxes = screen
            .chars()
            .any(|c| matches!(c, '─' | '│' | '┌' | '╭' | '┐' | '╮'));
        seen = procfs::alive(child.id()) && (alt.is_ok_and(|a| a == "1") || boxes);
    }
    terminate(dir, child.id(), Some(&mut child), Duration::from_secs(5));
    tmux_stop(dir, &sock);
    Ok(seen)
}
