//! Bounds on what clients together make the daemon hold or do: a connection limit per peer uid, one budget of bytes
//! for requests and answers in transit (`--max-buffered-bytes`), and per-uid rates of decisions and of evidence bytes
//! (see [`UidRates`]).
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
use std::time::Duration;

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

/// A sustained rate and the burst allowed above it: a token bucket that holds at most `burst` tokens and gains
/// `per_second` a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u64,
    pub burst: u64,
}

/// One uid's bucket: tokens left (negative after a cost larger than what was left) as of `updated`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Above this many uids, the buckets that have refilled completely (idle uids) are forgotten.
const REMEMBERED_UIDS: usize = 1024;

/// Per-uid token buckets for one kind of cost (decisions, or evidence bytes). A uid may spend while its bucket is not
/// empty; a cost larger than what is left puts the bucket in debt, which the rate pays off before the next. So over
/// any period a uid spends at most `per_second` times its length, plus `burst`, plus one cost: large records are
/// never refused outright, and a flood is held to the rate.
#[derive(Debug)]
pub struct UidRates {
    rate: Rate,
    buckets: Mutex<HashMap<u32, Bucket>>,
}

/// A uid over its rate: how long until it may spend again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverRate {
    pub retry_after: Duration,
}

impl UidRates {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Spends `cost` from `uid`'s bucket as of `now`, unless it is empty.
    pub fn spend(&self, uid: u32, cost: u64, now: Instant) -> Result<(), OverRate> {
        let burst = self.rate.burst as f64;
        let per_second = self.rate.per_second as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= REMEMBERED_UIDS && !buckets.contains_key(&uid) {
            buckets.retain(|_, bucket| refilled(*bucket, per_second, burst, now) < burst);
        }
        let bucket = buckets.entry(uid).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.tokens = refilled(*bucket, per_second, burst, now);
        bucket.updated = now;
        if bucket.tokens <= 0.0 {
            // Until the bucket holds a token's worth again.
            let missing = 1.0 - bucket.tokens;
            return Err(OverRate {
                retry_after: Duration::from_secs_f64(missing / per_second.max(f64::MIN_POSITIVE)),
            });
        }
        bucket.tokens -= cost as f64;
        Ok(())
    }
}

fn refilled(bucket: Bucket, per_second: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(burst)
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

    #[test]
    fn a_uid_spends_its_burst_then_its_rate_and_others_are_not_affected() {
        let rates = UidRates::new(Rate {
            per_second: 10,
            burst: 5,
        });
        let start = Instant::now();
        assert!((0..5).all(|_| rates.spend(1000, 1, start).is_ok()), "the burst");
        let refused = rates.spend(1000, 1, start).unwrap_err();
        assert!(
            (refused.retry_after.as_secs_f64() - 0.1).abs() < 1e-9,
            "one token at 10 a second: {refused:?}"
        );
        assert!(rates.spend(0, 1, start).is_ok(), "another uid has its own bucket");
        // Half a second later, five more.
        let later = start + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| rates.spend(1000, 1, later).is_ok()).count(), 5);
        // A long pause refills no more than the burst.
        let much_later = later + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| rates.spend(1000, 1, much_later).is_ok()).count(), 5);
    }

    #[test]
    fn a_cost_larger_than_what_is_left_is_paid_off_before_the_next() {
        let rates = UidRates::new(Rate {
            per_second: 1000,
            burst: 1000,
        });
        let start = Instant::now();
        assert!(
            rates.spend(7, 5000, start).is_ok(),
            "a full bucket takes any single cost"
        );
        let refused = rates.spend(7, 1, start).unwrap_err();
        assert!(
            (refused.retry_after.as_secs_f64() - 4.001).abs() < 1e-9,
            "until the debt of 4000 is paid: {refused:?}"
        );
        assert!(rates.spend(7, 1, start + Duration::from_millis(4000)).is_err());
        assert!(rates.spend(7, 1, start + Duration::from_millis(4002)).is_ok());
    }

    #[test]
    fn idle_uids_are_forgotten_once_many_are_remembered() {
        let rates = UidRates::new(Rate {
            per_second: 1,
            burst: 2,
        });
        let start = Instant::now();
        for uid in 0..REMEMBERED_UIDS as u32 {
            rates.spend(uid, 1, start).unwrap();
        }
        // uid 0 is still refilling; the others refill by the time the next uid arrives, and are dropped.
        rates.spend(0, 1, start + Duration::from_millis(1500)).unwrap();
        rates.spend(u32::MAX, 1, start + Duration::from_secs(2)).unwrap();
        let buckets = rates.buckets.lock().unwrap();
        assert_eq!(buckets.len(), 2, "{:?}", buckets.keys().collect::<Vec<_>>());
    }
}
