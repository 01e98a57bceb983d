//! One helper for the std mutexes that guard plain counters and small state.

use std::sync::{Mutex, MutexGuard};

/// Locks, ignoring poisoning: a poisoned lock only means another thread panicked
/// mid-update of plain values, which are still the best there are.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
