//! Counters kept apart per thread and summed when read. An atomic add to a counter every core updates moves the
//! counter's cache line from core to core on every request; with one copy per thread (up to one per CPU) each core
//! mostly adds to a line it already holds, and a scrape, which is rare, pays for adding the copies up.
//!
//! A thread takes the next shard the first time it counts anything and keeps it; threads beyond the shard count share
//! shards (still correct: the adds stay atomic, they only contend again).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Words of one cache-line-aligned block: 128 bytes, since adjacent-line prefetching pairs 64-byte lines.
pub(crate) const LINE_WORDS: usize = 16;

/// A block of counters that shares no cache line with any other.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Line(pub(crate) [AtomicU64; LINE_WORDS]);

const _: () = assert!(std::mem::size_of::<Line>() == 128);

impl Line {
    pub(crate) fn new() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// How many copies every sharded counter keeps: the CPUs this process may run on, rounded up to a power of two (at
/// most 64), decided once so that every counter agrees.
pub(crate) fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |cpus| cpus.get())
            .min(64)
            .next_power_of_two()
    })
}

/// The shard the calling thread counts in.
pub(crate) fn current() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|shard| *shard & (count() - 1))
}

/// One counter, a copy per shard.
#[derive(Debug)]
pub struct Counter {
    shards: Box<[Line]>,
}

impl Default for Counter {
    fn default() -> Self {
        Self {
            shards: (0..count()).map(|_| Line::new()).collect(),
        }
    }
}

impl Counter {
    pub fn add(&self, value: u64) {
        self.shards[current()].0[0].fetch_add(value, Ordering::Relaxed);
    }

    /// The total of every thread's adds so far.
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|line| line.0[0].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_shard_and_every_shard_is_in_range() {
        let mine = current();
        assert_eq!(current(), mine, "a thread's shard changed");
        let others: Vec<usize> = (0..2 * count())
            .flat_map(|_| std::thread::spawn(|| [current(), current()]).join().unwrap())
            .collect();
        assert!(others.iter().all(|&shard| shard < count()), "{others:?}");
        assert!(others.chunks(2).all(|pair| pair[0] == pair[1]), "{others:?}");
    }

    #[test]
    fn a_counter_sums_every_threads_adds() {
        let counter = Counter::default();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counter.add(1);
                    }
                });
            }
        });
        counter.add(5);
        assert_eq!(counter.get(), 8005);
    }
}
