//! Cleanup work still in flight: upstream cancels and budget releases spawned when a job is dropped.
//!
//! Dropping a job's future (a caller giving up, Ctrl-C) starts work in the background — the adapter cancels
//! the provider job, the router releases the budget hold. A process that exits right after would kill that
//! work with its runtime. Each such task holds a [`CleanupToken`]; before exiting, a program waits until
//! [`pending`] reaches zero (with a bound of its own). No runtime needed: it is one counter.

use std::sync::atomic::{AtomicUsize, Ordering};

static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Marks one cleanup task as in flight until dropped.
#[derive(Debug)]
#[must_use = "the task counts as pending only while the token is alive"]
pub struct CleanupToken(());

/// Counts a cleanup task as in flight; move the token into the task.
pub fn begin() -> CleanupToken {
    PENDING.fetch_add(1, Ordering::SeqCst);
    CleanupToken(())
}

impl Drop for CleanupToken {
    fn drop(&mut self) {
        PENDING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Cleanup tasks in flight, process-wide.
pub fn pending() -> usize {
    PENDING.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_count_while_alive() {
        // Nothing else in this crate takes tokens, so the count is exact.
        let before = pending();
        let a = begin();
        let b = begin();
        assert_eq!(pending(), before + 2);
        drop(a);
        assert_eq!(pending(), before + 1);
        drop(b);
        assert_eq!(pending(), before);
    }
}
