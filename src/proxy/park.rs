//! Where idle tunnels wait: a tunnel silent for `[timeouts] park_after` gives up its
//! relay task and its sockets' places in the event loop's reactor, and waits here as
//! one small entry whose two sockets sit in an epoll set of the loop's own. The first
//! of these resumes it (a new relay task, the sockets back in the reactor):
//!
//! - either socket readable (bytes, an end, an error);
//! - its deadline (an idle timeout, a ping) coming due;
//! - a wake: a close request, an injection or a hold ([`WakeSlot::wake`]).
//!
//! An idle tunnel then holds what it must (its shared state and these few hundred
//! bytes) instead of a task of about 1.6 KiB and two reactor registrations.
//!
//! One lot per event loop thread, made on first use with a task on that loop.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::sync::lock;

/// What waits in a lot.
pub trait Parked: Send + 'static {
    /// The sockets whose readiness resumes it.
    fn fds(&self) -> [RawFd; 2];
    /// When it must resume even if nothing comes.
    fn due(&self) -> Option<Instant>;
    /// Resumes it (on the lot's event loop).
    fn resume(self: Box<Self>);
}

/// Where a parked entry is told of wakes. Lives in what the rest of the proxy sees
/// of the entry (a tunnel's shared state).
#[derive(Default)]
pub struct WakeSlot(Mutex<Option<Ticket>>);

struct Ticket {
    inbox: Arc<Inbox>,
    key: u64,
}

impl WakeSlot {
    /// Resumes the entry if it is parked. Call after recording why (a close
    /// request, an injection): an entry that parks meanwhile looks at that after
    /// its ticket is in place, so no wake is lost between the two.
    pub fn wake(&self) {
        if let Some(t) = lock(&self.0).as_ref() {
            t.inbox.push(t.key);
        }
    }

    /// Whether the entry is parked now.
    pub fn is_parked(&self) -> bool {
        lock(&self.0).is_some()
    }

    /// Called by the entry as it resumes: whether it was parked (not when it could
    /// not be, and is resumed straight away).
    pub fn clear(&self) -> bool {
        lock(&self.0).take().is_some()
    }

    fn set(&self, ticket: Ticket) {
        *lock(&self.0) = Some(ticket);
    }
}

impl std::fmt::Debug for WakeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WakeSlot").field(&self.is_parked()).finish()
    }
}

/// Keys of entries woken, for the lot's task.
#[derive(Default)]
struct Inbox {
    keys: Mutex<Vec<u64>>,
    notify: Notify,
}

impl Inbox {
    fn push(&self, key: u64) {
        lock(&self.keys).push(key);
        self.notify.notify_one();
    }
}

/// One event loop's lot.
struct Lot {
    registry: Registry,
    entries: Mutex<Slab>,
    /// (due, key) of every entry with a deadline.
    timers: Mutex<BTreeSet<(Instant, u64)>>,
    /// An entry with an earlier deadline than any before came.
    timers_changed: Notify,
    inbox: Arc<Inbox>,
    /// Its task is gone (its runtime was dropped): the next park makes a new lot.
    dead: AtomicBool,
}

/// Entries by index; a key is the index and the slot's generation, so a late wake
/// for an entry that has left never resumes the one that took its place.
#[derive(Default)]
struct Slab {
    slots: Vec<(u32, Option<Box<dyn Parked>>)>,
    free: Vec<u32>,
}

impl Slab {
    fn insert(&mut self, entry: Box<dyn Parked>) -> u64 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push((0, None));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 parked")
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.1 = Some(entry);
        (u64::from(slot.0) << 32) | u64::from(index)
    }

    fn remove(&mut self, key: u64) -> Option<Box<dyn Parked>> {
        let (generation, index) = ((key >> 32) as u32, key as u32);
        let slot = self.slots.get_mut(index as usize)?;
        if slot.0 != generation || slot.1.is_none() {
            return None;
        }
        slot.0 = slot.0.wrapping_add(1);
        self.free.push(index);
        slot.1.take()
    }
}

thread_local! {
    static LOT: RefCell<Option<Arc<Lot>>> = const { RefCell::new(None) };
}

/// The calling event loop's lot, made (with its task) on first use.
fn current() -> io::Result<Arc<Lot>> {
    LOT.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some(lot) = cell.as_ref().filter(|l| !l.dead.load(Ordering::Acquire)) {
            return Ok(lot.clone());
        }
        let poll = Poll::new()?;
        let lot = Arc::new(Lot {
            registry: poll.registry().try_clone()?,
            entries: Mutex::default(),
            timers: Mutex::default(),
            timers_changed: Notify::new(),
            inbox: Arc::default(),
            dead: AtomicBool::new(false),
        });
        // Deprecated as unsound for a borrowed descriptor, which may be closed
        // while registered; this one is owned: it closes with the AsyncFd.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(poll, tokio::io::Interest::READABLE)?;
        tokio::spawn(run(lot.clone(), fd));
        *cell = Some(lot.clone());
        Ok(lot)
    })
}

/// Parks `entry` in this event loop's lot. `slot` is where wakes for it are
/// posted; `needs_relay` says whether something already waits for it (checked once
/// the slot holds its ticket, so a wake posted meanwhile is not lost). Gives the
/// entry back if it cannot be parked (its sockets could not join the lot's set).
pub fn park(
    entry: Box<dyn Parked>,
    slot: &WakeSlot,
    needs_relay: impl FnOnce() -> bool,
) -> Result<(), Box<dyn Parked>> {
    let Ok(lot) = current() else {
        return Err(entry);
    };
    let fds = entry.fds();
    let due = entry.due();
    let mut entries = lock(&lot.entries);
    let key = entries.insert(entry);
    let token = Token(key as usize);
    for (i, fd) in fds.iter().enumerate() {
        if lot
            .registry
            .register(&mut SourceFd(fd), token, Interest::READABLE)
            .is_err()
        {
            for fd in &fds[..i] {
                let _ = lot.registry.deregister(&mut SourceFd(fd));
            }
            return Err(entries.remove(key).expect("just parked"));
        }
    }
    drop(entries);
    if let Some(at) = due {
        let mut timers = lock(&lot.timers);
        let earliest = timers.first().is_none_or(|&(first, _)| at < first);
        timers.insert((at, key));
        drop(timers);
        if earliest {
            lot.timers_changed.notify_one();
        }
    }
    slot.set(Ticket {
        inbox: lot.inbox.clone(),
        key,
    });
    if needs_relay() {
        lot.inbox.push(key);
    }
    Ok(())
}

impl Lot {
    /// Takes the entry out (sockets out of the set, deadline forgotten) and
    /// resumes it; a key whose entry has already left is ignored.
    fn unpark(&self, key: u64) {
        let Some(entry) = lock(&self.entries).remove(key) else {
            return;
        };
        for fd in entry.fds() {
            let _ = self.registry.deregister(&mut SourceFd(&fd));
        }
        if let Some(at) = entry.due() {
            lock(&self.timers).remove(&(at, key));
        }
        entry.resume();
    }

    /// Takes out the keys whose deadline has come; returns when the next is due.
    fn due_now(&self, now: Instant, out: &mut Vec<u64>) -> Option<Instant> {
        let mut timers = lock(&self.timers);
        while let Some(&(at, key)) = timers.first() {
            if at > now {
                return Some(at);
            }
            timers.pop_first();
            out.push(key);
        }
        None
    }
}

/// Marks the lot dead and drops what waits in it (closing its sockets) when the
/// lot's task goes: its runtime is being dropped.
struct Reaper(Arc<Lot>);

impl Drop for Reaper {
    fn drop(&mut self) {
        self.0.dead.store(true, Ordering::Release);
        let slots = std::mem::take(&mut lock(&self.0.entries).slots);
        drop(slots);
    }
}

/// The lot's task: resumes entries as their sockets, deadlines and wakes say.
async fn run(lot: Arc<Lot>, mut fd: AsyncFd<Poll>) {
    let _reaper = Reaper(lot.clone());
    let mut events = Events::with_capacity(256);
    let mut keys = Vec::new();
    loop {
        let next = lot.due_now(Instant::now(), &mut keys);
        if keys.is_empty() {
            let far = Instant::now() + Duration::from_secs(86_400);
            let sleep = tokio::time::sleep_until(next.unwrap_or(far).into());
            tokio::select! {
                ready = fd.readable_mut() => {
                    let Ok(mut ready) = ready else { return };
                    loop {
                        if ready.get_inner_mut().poll(&mut events, Some(Duration::ZERO)).is_err() {
                            break;
                        }
                        keys.extend(events.iter().map(|e| e.token().0 as u64));
                        if events.iter().count() < events.capacity() {
                            break;
                        }
                    }
                    ready.clear_ready();
                }
                _ = lot.inbox.notify.notified() => {
                    keys.append(&mut lock(&lot.inbox.keys));
                }
                _ = lot.timers_changed.notified() => {}
                _ = sleep => {}
            }
        }
        // An entry woken twice at once (readable and due) is resumed once: the
        // second key finds it gone.
        for key in keys.drain(..) {
            lot.unpark(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    impl Parked for Nothing {
        fn fds(&self) -> [RawFd; 2] {
            [-1, -1]
        }
        fn due(&self) -> Option<Instant> {
            None
        }
        fn resume(self: Box<Self>) {}
    }

    /// A wake that comes late, for an entry that has left, never resumes the one
    /// that took its place.
    #[test]
    fn a_late_key_does_not_take_out_the_entry_that_reused_its_slot() {
        let mut slab = Slab::default();
        let first = slab.insert(Box::new(Nothing));
        assert!(slab.remove(first).is_some());
        let second = slab.insert(Box::new(Nothing));
        assert_eq!(second as u32, first as u32, "the slot is reused");
        assert_ne!(second, first);
        assert!(slab.remove(first).is_none());
        assert!(slab.remove(second).is_some());
        assert!(slab.remove(second).is_none(), "taken out once");
    }
}
