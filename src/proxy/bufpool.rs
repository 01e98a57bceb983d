//! Relay buffers that belong to no tunnel. A tunnel borrows a buffer only while it
//! holds bytes read but not yet written; an idle tunnel holds none, which is what
//! keeps memory per idle tunnel small. Buffers are kept per worker thread, so taking
//! and returning one never contends.

use std::cell::RefCell;

/// Size of one relay buffer: large enough for big messages to move in few syscalls.
pub const BUF_SIZE: usize = 32 * 1024;
/// Buffers kept per thread; extra returned ones are freed.
const KEEP: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// Takes a buffer from this thread's free list, or allocates one.
pub fn take() -> Box<[u8]> {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

/// Returns a buffer for reuse (on whatever thread the task now runs).
pub fn give(buf: Box<[u8]>) {
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEEP {
            f.push(buf);
        }
    });
}
