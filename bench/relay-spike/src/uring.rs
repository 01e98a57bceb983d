//! The io_uring engine: one ring on this thread. Each socket has one multishot
//! receive armed; the kernel picks a buffer from the provided buffer ring for each
//! arrival, so an idle tunnel holds no buffer. Each direction keeps a queue of
//! received buffers and one send in flight; a buffer goes back to the ring once sent.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::scan::Scanner;

const BGID: u16 = 7;
const ENTRIES: u16 = 2048;
const BUF: usize = 16 * 1024;

const ACCEPT: u64 = 0;
const CONNECT: u64 = 1;
const RECV: u64 = 2; // + direction
const SEND: u64 = 4; // + direction

/// The provided buffer ring: entries in a page-aligned mapping shared with the
/// kernel, buffers in one slab.
struct BufRing {
    entries: *mut types::BufRingEntry,
    tail: u16,
    slab: Vec<u8>,
}

impl BufRing {
    fn new(ring: &IoUring) -> io::Result<BufRing> {
        let len = ENTRIES as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut b = BufRing {
            entries: p.cast(),
            tail: 0,
            slab: vec![0u8; ENTRIES as usize * BUF],
        };
        // SAFETY: the mapping lives as long as the process (the spike never drops it).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(p as u64, ENTRIES, BGID, 0)?
        };
        for bid in 0..ENTRIES {
            b.give(bid);
        }
        b.publish();
        Ok(b)
    }

    fn give(&mut self, bid: u16) {
        let i = (self.tail & (ENTRIES - 1)) as usize;
        // SAFETY: i < ENTRIES, inside the mapping; the kernel does not read entries
        // past the published tail.
        let e = unsafe { &mut *self.entries.add(i) };
        e.set_addr(self.slab.as_ptr() as u64 + bid as u64 * BUF as u64);
        e.set_len(BUF as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail is a u16 inside the mapping, shared with the kernel.
        let t = unsafe { &*(types::BufRingEntry::tail(self.entries) as *const AtomicU16) };
        t.store(self.tail, Ordering::Release);
    }

    fn buf(&self, bid: u16, off: u32, len: u32) -> &[u8] {
        let s = bid as usize * BUF + off as usize;
        &self.slab[s..s + len as usize]
    }
}

/// Buffers one send may carry.
const IOV: usize = 16;

#[derive(Default)]
struct Dir {
    iov: Box<[libc::iovec; IOV]>,
    msg: Box<MsgHdr>,
    queue: VecDeque<(u16, u32, u32)>,
    sending: bool,
    eof: bool,
    shut: bool,
    scan: Scanner,
}

struct MsgHdr(libc::msghdr);

impl Default for MsgHdr {
    fn default() -> Self {
        // SAFETY: an all-zero msghdr is a valid empty one.
        MsgHdr(unsafe { std::mem::zeroed() })
    }
}

struct Conn {
    fds: [RawFd; 2], // client, server
    dirs: [Dir; 2],  // client->server, server->client
    inflight: u32,
    dead: bool,
    _addr: Box<libc::sockaddr_in>,
}

struct Engine {
    ring: IoUring,
    bufs: BufRing,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    starved: Vec<(usize, usize)>,
    listen: RawFd,
    backend: SocketAddr,
}

fn push(ring: &mut IoUring, e: squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every buffer an entry names (the slab, a connection's boxed
        // address) outlives the operation.
        if unsafe { ring.submission().push(&e) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

pub fn run(listener: TcpListener, backend: SocketAddr) -> io::Result<()> {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_coop_taskrun()
        .setup_defer_taskrun()
        .build(4096)?;
    let bufs = BufRing::new(&ring)?;
    let listen = listener.into_raw_fd();
    let mut en = Engine {
        ring,
        bufs,
        conns: Vec::new(),
        free: Vec::new(),
        starved: Vec::new(),
        listen,
        backend,
    };
    en.arm_accept()?;
    let mut done = Vec::with_capacity(1024);
    // Batching: wait for about half as many completions as the last turn brought,
    // but never longer than the timeout. With DEFER_TASKRUN the kernel wakes the
    // thread only once that many are ready.
    let batch: usize = std::env::var("SPIKE_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let wait_us: u32 = std::env::var("SPIKE_WAIT_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let ts = types::Timespec::new().nsec(wait_us * 1000);
    let mut last = 1usize;
    loop {
        let want = if batch == 0 {
            1
        } else {
            (last / 2).clamp(1, batch)
        };
        if want == 1 {
            en.ring.submit_and_wait(1)?;
        } else {
            let args = types::SubmitArgs::new().timespec(&ts);
            match en.ring.submitter().submit_with_args(want, &args) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) => return Err(e),
            }
        }
        done.extend(
            en.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        last = done.len();
        for (ud, res, flags) in done.drain(..) {
            en.complete(ud, res, flags)?;
        }
        en.bufs.publish();
        for (slot, d) in std::mem::take(&mut en.starved) {
            if en.conns[slot].as_ref().is_some_and(|c| !c.dead) {
                en.arm_recv(slot, d)?;
            }
        }
    }
}

impl Engine {
    fn arm_accept(&mut self) -> io::Result<()> {
        let e = opcode::AcceptMulti::new(types::Fd(self.listen))
            .build()
            .user_data(ACCEPT);
        push(&mut self.ring, e)
    }

    fn arm_recv(&mut self, slot: usize, d: usize) -> io::Result<()> {
        let c = self.conns[slot].as_mut().unwrap();
        c.inflight += 1;
        let e = opcode::RecvMulti::new(types::Fd(c.fds[d]), BGID)
            .build()
            .user_data((slot as u64) << 8 | (RECV + d as u64));
        push(&mut self.ring, e)
    }

    fn send_next(&mut self, slot: usize, d: usize) -> io::Result<()> {
        let c = self.conns[slot].as_mut().unwrap();
        let Some(&(bid, off, len)) = c.dirs[d].queue.front() else {
            c.dirs[d].sending = false;
            if c.dirs[d].eof && !c.dirs[d].shut {
                c.dirs[d].shut = true;
                // SAFETY: the fd is open until the connection is freed.
                unsafe { libc::shutdown(c.fds[1 - d], libc::SHUT_WR) };
            }
            return self.maybe_free(slot);
        };
        c.dirs[d].sending = true;
        c.inflight += 1;
        let fd = c.fds[1 - d];
        let dir = &mut c.dirs[d];
        let e = if dir.queue.len() == 1 {
            let p = self.bufs.buf(bid, off, len).as_ptr();
            opcode::Send::new(types::Fd(fd), p, len).build()
        } else {
            let mut n = 0;
            for &(bid, off, len) in dir.queue.iter().take(IOV) {
                let b = self.bufs.buf(bid, off, len);
                dir.iov[n] = libc::iovec {
                    iov_base: b.as_ptr() as *mut _,
                    iov_len: b.len(),
                };
                n += 1;
            }
            dir.msg.0.msg_iov = dir.iov.as_mut_ptr();
            dir.msg.0.msg_iovlen = n;
            opcode::SendMsg::new(types::Fd(fd), &dir.msg.0).build()
        };
        push(
            &mut self.ring,
            e.user_data((slot as u64) << 8 | (SEND + d as u64)),
        )
    }

    fn kill(&mut self, slot: usize) -> io::Result<()> {
        let c = self.conns[slot].as_mut().unwrap();
        if !c.dead {
            c.dead = true;
            for fd in c.fds {
                // SAFETY: open until freed; wakes the operations still in flight.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
        }
        self.maybe_free(slot)
    }

    fn maybe_free(&mut self, slot: usize) -> io::Result<()> {
        let c = self.conns[slot].as_ref().unwrap();
        let over = c.dead || (c.dirs[0].shut && c.dirs[1].shut);
        if !over || c.inflight > 0 {
            return Ok(());
        }
        let c = self.conns[slot].take().unwrap();
        for d in c.dirs {
            for (bid, _, _) in d.queue {
                self.bufs.give(bid);
            }
        }
        for fd in c.fds {
            // SAFETY: no operation names it any more.
            unsafe { libc::close(fd) };
        }
        self.free.push(slot);
        Ok(())
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32) -> io::Result<()> {
        let (slot, kind) = ((ud >> 8) as usize, ud & 0xff);
        match kind {
            ACCEPT => {
                if !cqueue::more(flags) {
                    self.arm_accept()?;
                }
                if res >= 0 {
                    self.open(res)?;
                }
                Ok(())
            }
            CONNECT => {
                self.conns[slot].as_mut().unwrap().inflight -= 1;
                if res < 0 {
                    return self.kill(slot);
                }
                self.arm_recv(slot, 0)?;
                self.arm_recv(slot, 1)
            }
            k if k == RECV || k == RECV + 1 => {
                let d = (k - RECV) as usize;
                let c = self.conns[slot].as_mut().unwrap();
                let more = cqueue::more(flags);
                if !more {
                    c.inflight -= 1;
                }
                if res > 0 {
                    let bid = cqueue::buffer_select(flags).expect("a provided buffer");
                    if c.dead {
                        self.bufs.give(bid);
                    } else {
                        c.dirs[d].scan.feed(self.bufs.buf(bid, 0, res as u32));
                        c.dirs[d].queue.push_back((bid, 0, res as u32));
                        let sending = c.dirs[d].sending;
                        if !more {
                            self.arm_recv(slot, d)?;
                        }
                        if !sending {
                            self.send_next(slot, d)?;
                        }
                        return Ok(());
                    }
                } else if res == 0 && !c.dead {
                    c.dirs[d].eof = true;
                    if !c.dirs[d].sending {
                        return self.send_next(slot, d);
                    }
                    return Ok(());
                } else if res == -libc::ENOBUFS && !c.dead {
                    self.starved.push((slot, d));
                    return Ok(());
                } else if !c.dead {
                    return self.kill(slot);
                }
                self.maybe_free(slot)
            }
            k if k == SEND || k == SEND + 1 => {
                let d = (k - SEND) as usize;
                let c = self.conns[slot].as_mut().unwrap();
                c.inflight -= 1;
                if res < 0 || c.dead {
                    return self.kill(slot);
                }
                let mut sent = res as u32;
                while sent > 0 {
                    let front = c.dirs[d].queue.front_mut().unwrap();
                    let n = sent.min(front.2);
                    front.1 += n;
                    front.2 -= n;
                    sent -= n;
                    if front.2 == 0 {
                        let bid = front.0;
                        c.dirs[d].queue.pop_front();
                        self.bufs.give(bid);
                    }
                }
                self.send_next(slot, d)
            }
            _ => unreachable!(),
        }
    }

    fn open(&mut self, client: RawFd) -> io::Result<()> {
        let SocketAddr::V4(b) = self.backend else {
            panic!("IPv4 backends only")
        };
        // SAFETY: plain socket calls on descriptors this function owns.
        let server = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        if server < 0 {
            unsafe { libc::close(client) };
            return Ok(());
        }
        let one: libc::c_int = 1;
        for fd in [client, server] {
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    4,
                )
            };
        }
        let addr = Box::new(libc::sockaddr_in {
            sin_family: libc::AF_INET as _,
            sin_port: b.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*b.ip()).to_be(),
            },
            sin_zero: [0; 8],
        });
        let ap = &*addr as *const libc::sockaddr_in;
        let conn = Conn {
            fds: [client, server],
            dirs: Default::default(),
            inflight: 1,
            dead: false,
            _addr: addr,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.conns[s] = Some(conn);
                s
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        let e = opcode::Connect::new(
            types::Fd(server),
            ap.cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
        .build()
        .user_data((slot as u64) << 8 | CONNECT);
        push(&mut self.ring, e)
    }
}
