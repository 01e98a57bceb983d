//! Relay buffers that belong to no tunnel. A tunnel borrows a buffer only while it
//! holds bytes read but not yet written; an idle tunnel holds none, which is what
//! keeps memory per idle tunnel small. Buffers are kept per worker thread, so taking
//! and returning one never contends.
//!
//! Two sizes: relay buffers, and TLS buffers ([`super::tlsio`]'s ciphertext), a
//! little larger so that a whole relay buffer, encrypted, fits one.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Size of one relay buffer: large enough for big messages to move in few syscalls.
pub const BUF_SIZE: usize = 32 * 1024;
/// Size of one TLS buffer: a relay buffer's worth of plaintext plus the framing of
/// the records it makes (a TLS record carries at most 16 KiB).
pub const TLS_BUF_SIZE: usize = BUF_SIZE + 1024;
/// Buffers kept per thread and size; extra returned ones are freed.
const KEEP: usize = 64;

type FreeList = RefCell<Vec<Box<[u8]>>>;

thread_local! {
    static FREE: FreeList = const { RefCell::new(Vec::new()) };
    static FREE_TLS: FreeList = const { RefCell::new(Vec::new()) };
}

/// Takes a relay buffer from this thread's free list, or allocates one.
pub fn take() -> Box<[u8]> {
    take_from(&FREE, BUF_SIZE)
}

/// Returns a relay buffer for reuse (on whatever thread the task now runs).
pub fn give(buf: Box<[u8]>) {
    give_to(&FREE, buf, BUF_SIZE)
}

/// Takes a TLS buffer, as a `Vec` whose length is its whole size.
pub fn take_tls() -> Vec<u8> {
    take_from(&FREE_TLS, TLS_BUF_SIZE).into_vec()
}

/// Returns a TLS buffer; one that grew or shrank is freed instead.
pub fn give_tls(buf: Vec<u8>) {
    if buf.len() == TLS_BUF_SIZE && buf.capacity() == TLS_BUF_SIZE {
        give_to(&FREE_TLS, buf.into_boxed_slice(), TLS_BUF_SIZE)
    }
}

fn take_from(list: &'static LocalKey<FreeList>, size: usize) -> Box<[u8]> {
    list.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; size].into_boxed_slice())
}

fn give_to(list: &'static LocalKey<FreeList>, buf: Box<[u8]>, size: usize) {
    if buf.len() != size {
        return;
    }
    list.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(buf);
        }
    });
}
