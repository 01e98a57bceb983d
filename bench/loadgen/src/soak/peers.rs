//! The two ends of every soak tunnel: the checking echo backend and the clients.

use super::*;

pub(super) struct Ctx {
    pub(super) proxy: SocketAddr,
    pub(super) pattern: Pattern,
    pub(super) interval: (u64, u64),
    /// The tunnels a backend connection has claimed, so a second one for the same
    /// tunnel (crossed wires) is caught.
    pub(super) claimed: Vec<AtomicBool>,
    pub(super) opened: AtomicU64,
    pub(super) open_failed: AtomicU64,
    pub(super) live: AtomicU64,
    /// Tunnels that ended cleanly: both ENDs and the Close handshake.
    pub(super) finished: AtomicU64,
    /// Tunnels that broke before the end (error, early close, silence).
    pub(super) died: AtomicU64,
    /// Tunnels whose Close 1000 did not come back as such.
    pub(super) bad_close: AtomicU64,
    pub(super) c2b: Stream,
    pub(super) b2c: Stream,
    pub(super) echo: Stream,
    pub(super) backend_live: AtomicU64,
    pub(super) backend_total: AtomicU64,
    /// Backend connections with no or a wrong tunnel id, or one already claimed.
    pub(super) backend_bad: AtomicU64,
    /// Backend connections that ended before the client's END.
    pub(super) backend_died: AtomicU64,
    pub(super) errors: Mutex<Vec<String>>,
    pub(super) error_count: AtomicU64,
}

impl Ctx {
    pub(super) fn note(&self, e: String) {
        self.error_count.fetch_add(1, Ordering::Relaxed);
        let mut v = self.errors.lock().expect("not poisoned");
        if v.len() < 20 {
            v.push(e);
        }
    }

    pub(super) fn interval(&self, rng: &mut Rng) -> Duration {
        Duration::from_millis(rng.between(self.interval.0, self.interval.1))
    }
}

/// No message at all in a stream for this long means the tunnel is stuck.
pub(super) const STALL: Duration = Duration::from_secs(30);

/// Bound on the closing handshake.
pub(super) const CLOSE_WAIT: Duration = Duration::from_secs(10);

// --- the backend ------------------------------------------------------------------

pub(super) async fn backend_accept(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.backend_total.fetch_add(1, Ordering::Relaxed);
            ctx.backend_live.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = backend_conn(tcp, &ctx).await {
                ctx.note(format!("backend: {e:#}"));
            }
            ctx.backend_live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

pub(super) enum Out {
    Echo(Message),
    End,
}

pub(super) async fn backend_conn(tcp: TcpStream, ctx: &Ctx) -> Result<()> {
    let path = OnceLock::new();
    // The error type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let cb = |req: &Request, resp: Response| {
        let _ = path.set(req.uri().path().to_string());
        Ok::<_, ErrorResponse>(resp)
    };
    let ws = timeout(
        net::CONNECT_WAIT,
        tokio_tungstenite::accept_hdr_async_with_config(tcp, cb, Some(net::ws_config(4096))),
    )
    .await
    .map_err(|_| anyhow!("no handshake within {:?}", net::CONNECT_WAIT))??;
    let id = path
        .get()
        .and_then(|p| p.strip_prefix("/soak/"))
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|&i| (i as usize) < ctx.claimed.len());
    let Some(id) = id else {
        ctx.backend_bad.fetch_add(1, Ordering::Relaxed);
        bail!("unexpected path {:?}", path.get());
    };
    if ctx.claimed[id as usize].swap(true, Ordering::Relaxed) {
        ctx.backend_bad.fetch_add(1, Ordering::Relaxed);
        bail!("tunnel {id}: a second backend connection");
    }
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(256);

    // Echoes in the order received, the backend's own stream in between, END last.
    let writer = async {
        let mut rng = Rng(mix(u64::from(id) ^ 0xbac0_bac0));
        let mut seq = 0u64;
        let mut next = Instant::now() + ctx.interval(&mut rng);
        loop {
            tokio::select! {
                o = out_rx.recv() => match o {
                    Some(Out::Echo(m)) => tx.send(m).await?,
                    Some(Out::End) => {
                        tx.send(encode(KIND_BACKEND_END, id, seq, &[], false)).await?;
                        return anyhow::Ok(());
                    }
                    None => return Ok(()),
                },
                _ = sleep_until(next) => {
                    tx.send(ctx.pattern.data(KIND_BACKEND_DATA, id, seq)).await?;
                    ctx.b2c.sent.fetch_add(1, Ordering::Relaxed);
                    seq += 1;
                    next = Instant::now() + ctx.interval(&mut rng);
                }
            }
        }
    };

    let reader = async move {
        let r = async {
            let mut check = SeqCheck::default();
            let mut ended = false;
            loop {
                let m = match timeout(2 * STALL, rx.next()).await {
                    Err(_) => bail!("tunnel {id}: nothing from the client for {:?}", 2 * STALL),
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        if ended {
                            break;
                        }
                        bail!("tunnel {id}: {e}")
                    }
                    Ok(Some(Ok(m))) => m,
                };
                if !matches!(m, Message::Binary(_) | Message::Text(_)) {
                    continue;
                }
                let d = match decode(&m) {
                    Ok(d) if d.tunnel == id => d,
                    Ok(d) => {
                        ctx.c2b.corrupt.fetch_add(1, Ordering::Relaxed);
                        ctx.note(format!(
                            "tunnel {id}: backend got a message of tunnel {}",
                            d.tunnel
                        ));
                        continue;
                    }
                    Err(e) => {
                        ctx.c2b.corrupt.fetch_add(1, Ordering::Relaxed);
                        ctx.note(format!("tunnel {id}: backend got a bad message: {e}"));
                        continue;
                    }
                };
                match d.kind {
                    KIND_CLIENT_DATA if !ended => {
                        if d.payload() != ctx.pattern.payload(d.kind, id, d.seq)
                            || d.text != (d.seq % 8 == 7)
                        {
                            ctx.c2b.corrupt.fetch_add(1, Ordering::Relaxed);
                            ctx.note(format!(
                                "tunnel {id}: client message {} has the wrong content",
                                d.seq
                            ));
                            continue;
                        }
                        ctx.c2b.seen(check.accept(d.seq));
                        if out_tx.send(Out::Echo(m)).await.is_err() {
                            bail!("tunnel {id}: the writer stopped");
                        }
                    }
                    KIND_CLIENT_END if !ended => {
                        ended = true;
                        let lost = d.seq.saturating_sub(check.received);
                        ctx.c2b.lost.fetch_add(lost, Ordering::Relaxed);
                        if check.received > d.seq {
                            ctx.c2b
                                .corrupt
                                .fetch_add(check.received - d.seq, Ordering::Relaxed);
                        }
                        let _ = out_tx.send(Out::End).await;
                    }
                    k => {
                        ctx.c2b.corrupt.fetch_add(1, Ordering::Relaxed);
                        ctx.note(format!(
                            "tunnel {id}: backend got kind {k} (ended: {ended})"
                        ));
                    }
                }
            }
            if !ended {
                ctx.backend_died.fetch_add(1, Ordering::Relaxed);
                bail!("tunnel {id}: the client went away before its END");
            }
            Ok(())
        }
        .await;
        // The reader ends first on a clean close; dropping its sender lets the writer end.
        drop(out_tx);
        r
    };
    let (w, r) = tokio::join!(writer, reader);
    r?;
    w.with_context(|| format!("tunnel {id}: backend send"))?;
    Ok(())
}

// --- the clients ------------------------------------------------------------------

type ClientWs = WebSocketStream<TcpStream>;

pub(super) async fn client_tunnel(
    id: u32,
    start: Instant,
    ctx: Arc<Ctx>,
    stop: watch::Receiver<bool>,
) {
    sleep_until(start).await;
    let ws = match connect(&ctx, id).await {
        Ok(ws) => ws,
        Err(e) => {
            ctx.open_failed.fetch_add(1, Ordering::Relaxed);
            ctx.note(format!("tunnel {id}: open: {e:#}"));
            return;
        }
    };
    ctx.opened.fetch_add(1, Ordering::Relaxed);
    ctx.live.fetch_add(1, Ordering::Relaxed);
    match client_run(id, ws, &ctx, stop).await {
        Ok(()) => ctx.finished.fetch_add(1, Ordering::Relaxed),
        Err(e) => {
            ctx.note(format!("tunnel {id}: {e:#}"));
            ctx.died.fetch_add(1, Ordering::Relaxed)
        }
    };
    ctx.live.fetch_sub(1, Ordering::Relaxed);
}

pub(super) async fn connect(ctx: &Ctx, id: u32) -> Result<ClientWs> {
    timeout(net::CONNECT_WAIT, async {
        let tcp = TcpStream::connect(ctx.proxy).await?;
        tcp.set_nodelay(true)?;
        let url = format!("ws://localhost:{}/soak/{id}", ctx.proxy.port());
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(url, tcp, Some(net::ws_config(4096)))
                .await?;
        anyhow::Ok(ws)
    })
    .await
    .map_err(|_| anyhow!("no upgrade within {:?}", net::CONNECT_WAIT))?
}

pub(super) async fn client_run(
    id: u32,
    ws: ClientWs,
    ctx: &Ctx,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let (mut tx, mut rx) = ws.split();
    let writer = async {
        let mut rng = Rng(mix(u64::from(id)));
        let mut seq = 0u64;
        // The first message at a random point of the first interval spreads the load.
        let mut next = Instant::now() + Duration::from_millis(rng.between(0, ctx.interval.1));
        loop {
            tokio::select! {
                _ = sleep_until(next) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            tx.send(ctx.pattern.data(KIND_CLIENT_DATA, id, seq))
                .await
                .context("send")?;
            ctx.c2b.sent.fetch_add(1, Ordering::Relaxed);
            seq += 1;
            next = Instant::now() + ctx.interval(&mut rng);
        }
        tx.send(encode(KIND_CLIENT_END, id, seq, &[], false))
            .await
            .context("send END")?;
        anyhow::Ok(seq)
    };
    let reader = async {
        let (mut own, mut echo) = (SeqCheck::default(), SeqCheck::default());
        loop {
            let m = match timeout(STALL, rx.next()).await {
                Err(_) => bail!("nothing from the backend for {STALL:?}"),
                Ok(None) => bail!("the connection ended before the backend's END"),
                Ok(Some(Err(e))) => bail!("receive: {e}"),
                Ok(Some(Ok(Message::Close(f)))) => {
                    bail!("closed before the backend's END: {f:?}")
                }
                Ok(Some(Ok(m @ (Message::Binary(_) | Message::Text(_))))) => m,
                Ok(Some(Ok(_))) => continue,
            };
            let d = match decode(&m) {
                Ok(d) if d.tunnel == id => d,
                Ok(d) => {
                    ctx.b2c.corrupt.fetch_add(1, Ordering::Relaxed);
                    ctx.note(format!(
                        "tunnel {id}: client got a message of tunnel {}",
                        d.tunnel
                    ));
                    continue;
                }
                Err(e) => {
                    ctx.b2c.corrupt.fetch_add(1, Ordering::Relaxed);
                    ctx.note(format!("tunnel {id}: client got a bad message: {e}"));
                    continue;
                }
            };
            let (check, stream) = match d.kind {
                KIND_BACKEND_DATA => (&mut own, &ctx.b2c),
                KIND_CLIENT_DATA => (&mut echo, &ctx.echo),
                KIND_BACKEND_END => return anyhow::Ok((own, echo, d.seq)),
                k => {
                    ctx.b2c.corrupt.fetch_add(1, Ordering::Relaxed);
                    ctx.note(format!("tunnel {id}: client got kind {k}"));
                    continue;
                }
            };
            if d.payload() != ctx.pattern.payload(d.kind, id, d.seq) || d.text != (d.seq % 8 == 7) {
                stream.corrupt.fetch_add(1, Ordering::Relaxed);
                ctx.note(format!(
                    "tunnel {id}: kind {} message {} has the wrong content",
                    d.kind, d.seq
                ));
                continue;
            }
            stream.seen(check.accept(d.seq));
        }
    };
    let (sent, (own, echo, backend_sent)) = tokio::try_join!(writer, reader)?;
    let lost = |s: &Stream, total: u64, c: &SeqCheck| {
        s.lost
            .fetch_add(total.saturating_sub(c.received), Ordering::Relaxed);
        if c.received > total {
            s.corrupt.fetch_add(c.received - total, Ordering::Relaxed);
        }
    };
    lost(&ctx.b2c, backend_sent, &own);
    lost(&ctx.echo, sent, &echo);

    // Close 1000 and expect it back, then the end of the stream.
    let mut ws = rx.reunite(tx).map_err(|_| anyhow!("reunite"))?;
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "soak done".into(),
    };
    let answer = timeout(CLOSE_WAIT, async {
        ws.close(Some(frame)).await?;
        let mut answer = None;
        while let Some(m) = ws.next().await {
            match m? {
                Message::Close(f) => answer = Some(f.map(|f| u16::from(f.code))),
                Message::Binary(_) | Message::Text(_) => bail!("data after the backend's END"),
                _ => {}
            }
        }
        anyhow::Ok(answer)
    })
    .await;
    match answer {
        Ok(Ok(Some(Some(1000)))) => Ok(()),
        Ok(Ok(other)) => {
            ctx.bad_close.fetch_add(1, Ordering::Relaxed);
            bail!("closing: expected Close 1000 back, got {other:?}")
        }
        Ok(Err(e)) => {
            ctx.bad_close.fetch_add(1, Ordering::Relaxed);
            bail!("closing: {e:#}")
        }
        Err(_) => {
            ctx.bad_close.fetch_add(1, Ordering::Relaxed);
            bail!("closing: not done within {CLOSE_WAIT:?}")
        }
    }
}

// --- the proxy --------------------------------------------------------------------
