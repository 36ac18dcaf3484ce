//! Bounds on what clients together make the daemon hold: a connection limit per peer uid, and one budget of bytes
//! for requests and answers in transit (`--max-buffered-bytes`).
//!
//! What the budget counts, per connection: nothing for an input buffer within [`ALLOWANCE`]; for one that outgrows
//! it, room for the largest request (`--max-request-bytes`) at once, until that request has been read (taking room
//! bit by bit as buffers grow would let many half-read requests hold the whole budget with none able to finish); and,
//! beyond another [`ALLOWANCE`], the requests read and not yet answered plus the answers not yet written to the
//! socket. Input waits for room before it is read into memory (a request that gets none before its deadline is
//! answered `daemon.overloaded`); answers, which exist already, are counted whether or not they fit, and hold back
//! everyone's larger input until they are written. So small requests never wait, and memory stays within the budget
//! plus what the requests it admitted turn into.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio::time::Instant;

/// What a connection may hold outside the budget, once for input and once for requests and answers.
pub const ALLOWANCE: usize = 8 * 1024;

/// The daemon-wide byte budget.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    freed: Notify,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// Bytes counted now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` if they fit now.
    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            self.freed.notify_waiters();
        }
    }
}

/// What one connection holds against the budget, for one purpose; given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Held {
    pub fn new(budget: &Arc<Budget>) -> Self {
        Self {
            budget: Arc::clone(budget),
            bytes: 0,
        }
    }

    /// Counts `total` bytes (less the allowance), whether or not they fit: for what already exists.
    pub fn set(&mut self, total: usize) {
        let bytes = total.saturating_sub(ALLOWANCE);
        if bytes > self.bytes {
            self.budget.used.fetch_add(bytes - self.bytes, Ordering::AcqRel);
        } else {
            self.budget.give(self.bytes - bytes);
        }
        self.bytes = bytes;
    }

    /// Counts `total` bytes (less the allowance) once they fit, waiting until `deadline` for room; false if none
    /// came. Shrinking always fits.
    pub async fn reserve(&mut self, total: usize, deadline: Instant) -> bool {
        let bytes = total.saturating_sub(ALLOWANCE);
        if bytes <= self.bytes {
            self.set(total);
            return true;
        }
        let more = bytes - self.bytes;
        loop {
            // Registered before trying, so a release between the try and the wait is not missed.
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.budget.try_take(more) {
                self.bytes = bytes;
                return true;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return false;
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

/// Connections open per peer uid, against `--max-connections-per-uid`.
#[derive(Debug)]
pub struct UidSlots {
    max: usize,
    open: Mutex<HashMap<u32, usize>>,
}

impl UidSlots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more connection of `uid`, unless it has its maximum open.
    pub fn take(self: &Arc<Self>, uid: u32) -> Option<UidSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(uid).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(UidSlot {
            slots: Arc::clone(self),
            uid,
        })
    }
}

/// One open connection of a uid; the slot is free again when this drops.
#[derive(Debug)]
pub struct UidSlot {
    slots: Arc<UidSlots>,
    uid: u32,
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn input_waits_for_room_and_answers_are_counted_regardless() {
        let budget = Budget::new(100);
        let mut first = Held::new(&budget);
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(first.reserve(ALLOWANCE + 80, deadline).await);
        assert_eq!(budget.used(), 80);
        let mut second = Held::new(&budget);
        assert!(second.reserve(ALLOWANCE, deadline).await, "the allowance is free");
        assert!(
            !second.reserve(ALLOWANCE + 30, deadline).await,
            "no room before the deadline"
        );
        assert_eq!(budget.used(), 80);

        // Room made while waiting is taken.
        let waiting = tokio::spawn(async move {
            let taken = second
                .reserve(ALLOWANCE + 30, Instant::now() + Duration::from_secs(10))
                .await;
            (taken, second)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.set(ALLOWANCE + 10);
        let (taken, second) = waiting.await.unwrap();
        assert!(taken);
        assert_eq!(budget.used(), 40);

        // An answer is counted even past the limit; dropping gives everything back.
        let mut answer = Held::new(&budget);
        answer.set(ALLOWANCE + 500);
        assert_eq!(budget.used(), 540);
        drop((first, second, answer));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_uid_gets_at_most_its_slots_and_others_are_not_affected() {
        let slots = UidSlots::new(2);
        let a = slots.take(1000).unwrap();
        let _b = slots.take(1000).unwrap();
        assert!(slots.take(1000).is_none());
        let _root = slots.take(0).expect("another uid has its own slots");
        drop(a);
        assert!(slots.take(1000).is_some(), "a closed connection frees its slot");
    }
}
