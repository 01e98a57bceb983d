//! The soak's verdict: every check, printed, and whether all passed.

use super::*;

/// CPU seconds of this process.
pub(super) fn own_cpu() -> f64 {
    procfs::cpu_seconds(std::process::id())
}

/// Prints the report; whether every check passed.
pub(super) fn report(
    args: &Args,
    ctx: &Ctx,
    o: &Outcome,
    exit: Option<std::process::ExitStatus>,
) -> bool {
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut fails: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            fails.push(what);
        }
    };
    println!("\n== soak report");
    println!(
        "tunnels: wanted {}, opened {}, failed to open {}, ended cleanly {}, died {}, bad close {}, unfinished {}; ramp {:.1} s, soak window {:.1} s",
        args.tunnels,
        g(&ctx.opened),
        g(&ctx.open_failed),
        g(&ctx.finished),
        g(&ctx.died),
        g(&ctx.bad_close),
        o.unfinished,
        o.ramp_secs,
        o.soak_secs
    );
    check(o.ramp_complete, "the ramp did not complete".into());
    check(
        g(&ctx.opened) == u64::from(args.tunnels),
        format!("{} tunnels failed to open", g(&ctx.open_failed)),
    );
    check(
        g(&ctx.finished) == u64::from(args.tunnels),
        format!(
            "{} tunnels did not end cleanly",
            u64::from(args.tunnels) - g(&ctx.finished).min(u64::from(args.tunnels))
        ),
    );
    println!(
        "backend: {} connections, {} with a bad or repeated tunnel id, {} ended before the client's END, {} still open after 15 s",
        g(&ctx.backend_total),
        g(&ctx.backend_bad),
        g(&ctx.backend_died),
        o.backend_left
    );
    check(
        g(&ctx.backend_total) == g(&ctx.opened) && g(&ctx.backend_bad) == 0,
        "backend connections do not match the tunnels one to one".into(),
    );
    check(
        g(&ctx.backend_died) == 0,
        "backend connections ended early".into(),
    );
    check(o.backend_left == 0, "backend connections left open".into());
    check(
        report_reloads(&o.reloads),
        "a reload was refused or failed".into(),
    );
    check(
        o.reloads.len() as u32 == args.reloads || o.reloads.is_empty() && args.proxy_addr.is_some(),
        format!("{} of {} reloads done", o.reloads.len(), args.reloads),
    );
    println!("messages      sent     received  lost  duplicated  out-of-order  corrupt");
    for (name, s) in [
        ("client→backend", &ctx.c2b),
        ("backend→client", &ctx.b2c),
        ("echo (c→b→c)  ", &ctx.echo),
    ] {
        let sent = if std::ptr::eq(s, &ctx.echo) {
            g(&ctx.c2b.received)
        } else {
            g(&s.sent)
        };
        println!(
            "{name} {sent:>9} {:>9} {:>5} {:>11} {:>13} {:>8}",
            g(&s.received),
            g(&s.lost),
            g(&s.duplicated),
            g(&s.reordered),
            g(&s.corrupt)
        );
        check(
            s.bad() == 0,
            format!("{} stream: {} bad messages", name.trim(), s.bad()),
        );
        check(
            g(&s.received) == sent,
            format!(
                "{} stream: sent {sent}, received {}",
                name.trim(),
                g(&s.received)
            ),
        );
    }
    if let Some((p, l)) = o.cpu {
        println!("cpu during the soak window (share of one core): proxy {p:.0}%, loadgen {l:.0}% (clients and backend)");
    }

    // Memory.
    match o.baseline {
        None => println!("proxy memory and descriptors: not measured (no --pid)"),
        Some(base) => {
            let soak: Vec<&Sample> = o.samples.iter().filter(|s| s.t >= 0.0).collect();
            let at_open = soak.first().map(|s| s.rss_kib);
            let flat: Vec<&Sample> = soak
                .iter()
                .copied()
                .filter(|s| s.t >= args.flat_after)
                .collect();
            match (flat.first(), flat.last()) {
                (Some(first), Some(last)) => {
                    let max = flat
                        .iter()
                        .map(|s| s.rss_kib)
                        .max()
                        .unwrap_or(first.rss_kib);
                    let min = flat
                        .iter()
                        .map(|s| s.rss_kib)
                        .min()
                        .unwrap_or(first.rss_kib);
                    let grow_end = last.rss_kib as i64 - first.rss_kib as i64;
                    let grow_max = max as i64 - first.rss_kib as i64;
                    let pct = 100.0 * grow_max as f64 / first.rss_kib.max(1) as f64;
                    println!(
                        "proxy rss: baseline {} KiB; all tunnels open {} KiB ({:.1} KiB/tunnel); at {:.0} s {} KiB; end ({:.0} s) {} KiB; after {:.0} s min {} max {} KiB; growth after {:.0} s: end {:+} KiB ({:+.2}%), max {:+} KiB ({:+.2}%); {} samples",
                        base.rss_kib,
                        at_open.unwrap_or(0),
                        (at_open.unwrap_or(0) as f64 - base.rss_kib as f64) / g(&ctx.opened).max(1) as f64,
                        first.t,
                        first.rss_kib,
                        last.t,
                        last.rss_kib,
                        args.flat_after,
                        min,
                        max,
                        args.flat_after,
                        grow_end,
                        100.0 * grow_end as f64 / first.rss_kib.max(1) as f64,
                        grow_max,
                        pct,
                        flat.len()
                    );
                    // The inspector's per-tunnel frame rings fill during the first
                    // 16 frames of each direction (about 25 s at the default
                    // rate): the second half shows the steady state on its own.
                    let half: Vec<u64> = flat
                        .iter()
                        .filter(|s| s.t >= args.secs / 2.0)
                        .map(|s| s.rss_kib)
                        .collect();
                    if let (Some(&h0), Some(&hmax)) = (half.first(), half.iter().max()) {
                        println!(
                            "proxy rss over the second half ({:.0}-{:.0} s): {} -> max {} KiB ({:+} KiB)",
                            args.secs / 2.0,
                            args.secs,
                            h0,
                            hmax,
                            hmax as i64 - h0 as i64
                        );
                    }
                    check(
                        pct <= args.rss_growth_pct,
                        format!(
                            "proxy rss grew {pct:.1}% after {} s (limit {}%)",
                            args.flat_after, args.rss_growth_pct
                        ),
                    );
                }
                _ => check(false, "no memory samples after --flat-after".into()),
            }
            let peak = o.samples.iter().map(|s| s.fds).max().unwrap_or(0);
            let after = o.after_close.map(|s| s.fds);
            println!(
                "proxy descriptors: baseline {}, peak {} (baseline + {}), after close {} ({}); rss after close {} KiB, {} s later {} KiB",
                base.fds,
                peak,
                peak.saturating_sub(base.fds),
                after.map_or("-".into(), |a| a.to_string()),
                match o.fd_back_secs {
                    Some(s) => format!("back to baseline {s:.1} s after the last tunnel ended"),
                    None => format!("NOT back to baseline within {} s", args.fd_wait),
                },
                o.after_close.map_or("-".into(), |s| s.rss_kib.to_string()),
                args.settle,
                o.settled.map_or("-".into(), |s| s.rss_kib.to_string()),
            );
            check(
                o.fd_back_secs.is_some(),
                "the proxy's descriptors did not return to the baseline".into(),
            );
        }
    }
    if let Some(st) = exit {
        println!("proxy exit after SIGTERM: {st}");
        check(st.success(), format!("the proxy exited with {st}"));
    }
    let errors = ctx.errors.lock().expect("not poisoned");
    if !errors.is_empty() {
        println!(
            "errors ({} in all, the first {}):",
            g(&ctx.error_count),
            errors.len()
        );
        for e in errors.iter() {
            println!("  {e}");
        }
    }
    if fails.is_empty() {
        println!("checks: all passed");
        true
    } else {
        println!("checks FAILED:");
        for f in &fails {
            println!("  - {f}");
        }
        false
    }
}
