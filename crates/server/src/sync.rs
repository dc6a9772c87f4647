//! The server's one lock idiom. Its std mutexes guard plain collections and counters (streams
//! by user, rate buckets, connection counts, runs in flight), are held for a few instructions
//! and never across an `.await` (so a std mutex, not tokio's: no task ever waits on one while
//! suspended). Each is taken whatever panicked while holding it: every critical section leaves
//! its data consistent at each step (an insert, a removal, a count), so a panic elsewhere
//! cannot make the data wrong, and refusing the lock would turn one panicked task into a
//! node that refuses everyone.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, poisoned or not (see the module docs for why that is sound here).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
