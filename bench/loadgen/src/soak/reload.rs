//! Reloads under the soak's load: while every tunnel is open and carrying traffic,
//! the proxy's config is rewritten (the second backend dropped, then added back, in
//! turn) and applied with `POST /api/reload`; each reload is timed (the API answers
//! once it has been applied) and the proxy's memory read before and after. The
//! soak's own checks then say whether any tunnel or message was lost.

use super::*;

/// What it takes to reload the proxy this run started.
pub(super) struct Reloader {
    pub(super) conf: PathBuf,
    pub(super) admin: SocketAddr,
    pub(super) listen: SocketAddr,
    pub(super) backends: Vec<SocketAddr>,
    pub(super) tunnels: u32,
}

/// One reload's figures.
#[derive(Clone, Copy)]
pub(super) struct ReloadFig {
    pub(super) ms: f64,
    pub(super) status: u16,
    pub(super) rss_before_kib: u64,
    pub(super) rss_after_kib: u64,
    pub(super) live: u64,
}

impl Reloader {
    /// Reload number `k` (from 1): odd ones serve the first backend only, even ones
    /// both again.
    pub(super) async fn reload(&self, k: u32, pid: Option<u32>, live: u64) -> Result<ReloadFig> {
        let backends = if k % 2 == 1 {
            &self.backends[..1]
        } else {
            &self.backends[..]
        };
        std::fs::write(
            &self.conf,
            proxy_conf(self.listen, backends, self.tunnels, Some(self.admin)),
        )?;
        let rss_before_kib = pid.map_or(0, procfs::rss_kib);
        let started = Instant::now();
        let status = post(self.admin, "/api/reload").await?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let rss_after_kib = pid.map_or(0, procfs::rss_kib);
        Ok(ReloadFig {
            ms,
            status,
            rss_before_kib,
            rss_after_kib,
            live,
        })
    }
}

/// `POST path` with no body; the response's status.
async fn post(addr: SocketAddr, path: &str) -> Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer = timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| anyhow!("no answer to POST {path} within 30 s"))??;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer: {:?}", text.lines().next()))
}

/// The reloads' lines of the report and whether they all succeeded.
pub(super) fn report_reloads(figs: &[ReloadFig]) -> bool {
    if figs.is_empty() {
        return true;
    }
    println!("reloads under load (each POST /api/reload, applied before it answers):");
    for (i, f) in figs.iter().enumerate() {
        println!(
            "  reload {}: {} in {:.1} ms with {} tunnels live; proxy rss {} -> {} KiB ({:+} KiB)",
            i + 1,
            f.status,
            f.ms,
            f.live,
            f.rss_before_kib,
            f.rss_after_kib,
            f.rss_after_kib as i64 - f.rss_before_kib as i64
        );
    }
    let mut ms: Vec<f64> = figs.iter().map(|f| f.ms).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "  reload time: median {:.1} ms, max {:.1} ms over {} reloads",
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        ms.len()
    );
    figs.iter().all(|f| f.status == 200)
}

/// The BENCHMARKS.md section of a soak that passed: its reloads and what the
/// tunnels carried meanwhile.
pub(super) fn soak_section(args: &Args, ctx: &Ctx, o: &Outcome) -> String {
    use std::fmt::Write as _;
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(s, "{}\n", crate::report::SOAK_HEADING);
    let _ = writeln!(
        s,
        "Written by `bench/soak.sh` on {date}: {} tunnels through the release binary, each \
         carrying sequence-numbered, checksummed messages both ways (one every {}-{} ms each \
         way, plus echoes, payloads up to {} bytes) for {:.0} s, while the config file was \
         reloaded {} times with `POST /api/reload` (the second backend dropped, then added \
         back, in turn; its tunnels run on while it drains). The API answers once the reload \
         is applied, so the time is the whole reload as a client of the API sees it.\n",
        args.tunnels,
        args.interval_min_ms,
        args.interval_max_ms,
        args.max_payload,
        o.soak_secs,
        o.reloads.len()
    );
    let _ = writeln!(
        s,
        "| reload | time | live tunnels | proxy RSS before → after |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---|");
    for (i, f) in o.reloads.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {} | {:.1} ms | {} | {} → {} KiB ({:+} KiB) |",
            i + 1,
            f.ms,
            f.live,
            f.rss_before_kib,
            f.rss_after_kib,
            f.rss_after_kib as i64 - f.rss_before_kib as i64
        );
    }
    let mut ms: Vec<f64> = o.reloads.iter().map(|f| f.ms).collect();
    ms.sort_by(f64::total_cmp);
    let lost = g(&ctx.c2b.lost) + g(&ctx.b2c.lost) + g(&ctx.echo.lost);
    let sent = g(&ctx.c2b.sent) + g(&ctx.b2c.sent);
    if !ms.is_empty() {
        let _ = writeln!(
            s,
            "\nMedian reload time {:.1} ms, longest {:.1} ms. Tunnels that died: {}; messages \
             lost: {lost} of {sent} (plus their echoes), none duplicated, out of order or corrupt. \
             The proxy's descriptors were back to the baseline after the last close.",
            ms[ms.len() / 2],
            ms[ms.len() - 1],
            g(&ctx.died),
        );
    }
    s
}
