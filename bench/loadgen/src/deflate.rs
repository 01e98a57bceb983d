//! A compressed echo load, for what capture costs when it inflates: peers that
//! negotiate permessage-deflate without context takeover (each message compressed
//! on its own) or with it (one compressor per tunnel, so each message leans on the
//! ones before), written at the frame level since the other peers here do not
//! compress. The backend echoes
//! every frame as it came (RSV1 kept, unmasked); the client keeps a few messages in
//! flight on each tunnel, each a JSON text of about 200 bytes compressed with
//! flate2.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::procfs::{Meter, Window};

const EXTENSION: &str =
    "permessage-deflate; client_no_context_takeover; server_no_context_takeover";
const TAKEOVER: &str = "permessage-deflate";

const TEXT: &[u8] = br#"{"type":"quote","symbol":"ACME","bid":101.25,"ask":101.27,"size":300,"venue":"XNAS","ts":1733300000123,"seq":4242,"flags":["regular","odd-lot"],"note":"compressible payload for the capture benchmark"}"#;

/// The JSON message deflated by `z` as permessage-deflate sends it (the final
/// empty block's `00 00 ff ff` stripped).
fn deflate(z: &mut flate2::Compress) -> Vec<u8> {
    let mut out = Vec::with_capacity(TEXT.len() + 64);
    z.compress_vec(TEXT, &mut out, flate2::FlushCompress::Sync)
        .expect("deflate into a vector");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// What inflating the context-takeover stream costs alone, in this process: µs
/// per message over `messages` of them, as a capture that shows the text must
/// inflate each one, in `contexts` contexts of their own taken in turn (the
/// load's 100 tunnels have one per direction, each cold by its next message).
pub fn inflate_alone(messages: usize, contexts: usize) -> f64 {
    let mut z = flate2::Compress::new(flate2::Compression::default(), false);
    // Each context's stream is the same; only its state is its own.
    let per = messages.div_ceil(contexts);
    let stream: Vec<Vec<u8>> = (0..per).map(|_| deflate(&mut z)).collect();
    let mut ds: Vec<flate2::Decompress> = (0..contexts)
        .map(|_| flate2::Decompress::new(false))
        .collect();
    let mut out = vec![0u8; 8192];
    let start = std::time::Instant::now();
    for m in &stream {
        for d in &mut ds {
            for (input, flush) in [
                (&m[..], flate2::FlushDecompress::None),
                (&[0, 0, 0xff, 0xff][..], flate2::FlushDecompress::Sync),
            ] {
                let before = d.total_out();
                d.decompress(input, &mut out, flush)
                    .expect("the stream inflates");
                std::hint::black_box(&out[..(d.total_out() - before) as usize]);
            }
        }
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / (per * contexts) as f64;
    for d in &ds {
        assert_eq!(d.total_out(), (TEXT.len() * per) as u64, "inflated whole");
    }
    us
}

/// The message compressed on its own (no context takeover).
pub fn message() -> Vec<u8> {
    deflate(&mut flate2::Compress::new(
        flate2::Compression::default(),
        false,
    ))
}

/// The echo backend: answers the upgrade accepting permessage-deflate, then sends
/// every frame back as it came, unmasked.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(echo(tcp));
    }
}

async fn head(tcp: &mut TcpStream) -> Result<String> {
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n\r\n") {
        let b = tcp.read_u8().await?;
        buf.push(b);
        if buf.len() > 16 * 1024 {
            bail!("head too long");
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

async fn echo(mut tcp: TcpStream) -> Result<()> {
    let req = head(&mut tcp).await?;
    let key = req
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim().to_string())
        })
        .context("no key")?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    // Echoing the client's frames as they came keeps either way valid: the backend's
    // stream is the client's compressor's, message for message.
    let extension = if req.contains("no_context_takeover") {
        EXTENSION
    } else {
        TAKEOVER
    };
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: {extension}\r\n\r\n"
    );
    tcp.write_all(resp.as_bytes()).await?;
    let mut inbuf = Vec::with_capacity(64 * 1024);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        inbuf.extend_from_slice(&chunk[..n]);
        let mut p = 0;
        while let Some((hl, len, masked)) = frame_at(&inbuf[p..]) {
            let end = p + hl + len;
            if end > inbuf.len() {
                break;
            }
            let b0 = inbuf[p];
            header(&mut out, b0, len, None);
            let payload = &inbuf[p + hl..end];
            if masked {
                let key = &inbuf[p + hl - 4..p + hl];
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            } else {
                out.extend_from_slice(payload);
            }
            if b0 & 0x0f == 0x8 {
                tcp.write_all(&out).await?;
                return Ok(());
            }
            p = end;
        }
        inbuf.drain(..p);
        if !out.is_empty() {
            tcp.write_all(&out).await?;
            out.clear();
        }
    }
}

/// Header length, payload length and mask bit of the frame at the start of `b`,
/// once its header is complete.
fn frame_at(b: &[u8]) -> Option<(usize, usize, bool)> {
    if b.len() < 2 {
        return None;
    }
    let masked = b[1] & 0x80 != 0;
    let (ext, len) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (2, u16::from_be_bytes([b[2], b[3]]) as usize),
        127 if b.len() >= 10 => (8, u64::from_be_bytes(b[2..10].try_into().ok()?) as usize),
        126 | 127 => return None,
        n => (0, n as usize),
    };
    let hl = 2 + ext + if masked { 4 } else { 0 };
    (b.len() >= hl).then_some((hl, len, masked))
}

fn header(out: &mut Vec<u8>, b0: u8, len: usize, mask: Option<[u8; 4]>) {
    out.push(b0);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(bit | len as u8);
    } else if len <= 0xffff {
        out.push(bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
}

/// The result of a run: messages echoed in the measured window, and its CPU.
pub struct Run {
    pub messages: u64,
    pub window: Window,
}

/// `tunnels` clients through `proxy`, `in_flight` messages each, `warm` then
/// `measure`; `takeover`: with context takeover.
pub async fn load(
    proxy: SocketAddr,
    tunnels: usize,
    in_flight: usize,
    warm: Duration,
    measure: Duration,
    meter: &Meter,
    takeover: bool,
) -> Result<Run> {
    let payload = Arc::new(message());
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tunnels {
        let (payload, counting, stop, count) = (
            payload.clone(),
            counting.clone(),
            stop.clone(),
            count.clone(),
        );
        set.spawn(async move {
            let flow = Flow {
                counting: &counting,
                stop: &stop,
                count: &count,
            };
            client(proxy, in_flight, &payload, takeover, flow).await
        });
    }
    tokio::time::sleep(warm).await;
    counting.store(true, Ordering::Relaxed);
    let a = meter.sample();
    tokio::time::sleep(measure).await;
    let b = meter.sample();
    counting.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let messages = count.load(Ordering::Relaxed);
    set.abort_all();
    Ok(Run {
        messages,
        window: Window::between(a, b),
    })
}

/// What a client reports to and takes from the run.
struct Flow<'a> {
    counting: &'a AtomicBool,
    stop: &'a AtomicBool,
    count: &'a AtomicU64,
}

async fn client(
    proxy: SocketAddr,
    in_flight: usize,
    payload: &[u8],
    takeover: bool,
    flow: Flow<'_>,
) -> Result<()> {
    let mut tcp = TcpStream::connect(proxy).await?;
    tcp.set_nodelay(true)?;
    let extension = if takeover { TAKEOVER } else { EXTENSION };
    let req = format!(
        "GET /deflate HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {extension}\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await?;
    let resp = head(&mut tcp).await?;
    if !resp.starts_with("HTTP/1.1 101") || !resp.contains("permessage-deflate") {
        bail!("not upgraded with permessage-deflate: {resp}");
    }
    // A masked, compressed text frame (RSV1 set): the same one each time, or, with
    // context takeover, the next from this tunnel's own compressor.
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut z = flate2::Compress::new(flate2::Compression::default(), false);
    let mut next = |out: &mut Vec<u8>| {
        let fresh;
        let body = if takeover {
            fresh = deflate(&mut z);
            &fresh[..]
        } else {
            payload
        };
        header(out, 0x80 | 0x40 | 0x1, body.len(), Some(key));
        out.extend(body.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    };
    let mut burst = Vec::new();
    for _ in 0..in_flight {
        next(&mut burst);
    }
    tcp.write_all(&burst).await?;
    let mut inbuf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    while !flow.stop.load(Ordering::Relaxed) {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            bail!("the proxy closed");
        }
        inbuf.extend_from_slice(&chunk[..n]);
        let mut p = 0;
        let mut echoed = 0u64;
        while let Some((hl, len, _)) = frame_at(&inbuf[p..]) {
            if p + hl + len > inbuf.len() {
                break;
            }
            p += hl + len;
            echoed += 1;
            next(&mut out);
        }
        inbuf.drain(..p);
        if flow.counting.load(Ordering::Relaxed) {
            flow.count.fetch_add(echoed, Ordering::Relaxed);
        }
        if !out.is_empty() {
            tcp.write_all(&out).await?;
            out.clear();
        }
    }
    Ok(())
}
