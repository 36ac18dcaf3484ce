//! Counter series told apart by two label values (a decision's pack and rule), found without a lock: an
//! open-addressing table whose slots are claimed once, by the first observation of their labels, and never freed.
//! Finding a series costs a hash of its labels, an atomic load and a string comparison; the first observation of a
//! new pair allocates its labels once. A full table counts the rest in an overflow series, so the number of series
//! stays bounded whatever clients send.
//!
//! The counts are kept per shard (see `shards`): each shard's array of every series' counters is allocated the first
//! time a thread of that shard counts, so an idle daemon holds none of them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::shards;

/// One shard's counters: a row of `N` per slot, and the overflow series' row last.
type Rows<const N: usize> = Box<[[AtomicU64; N]]>;

#[derive(Debug)]
pub struct SeriesTable<const N: usize> {
    /// Each slot's label values, set by the first observation of them.
    labels: Box<[OnceLock<[Box<str>; 2]>]>,
    /// Per shard, allocated when a thread of the shard first counts.
    counts: Box<[OnceLock<Rows<N>>]>,
}

/// The label values the overflow series is reported under.
pub const OVERFLOW: &str = "other";

impl<const N: usize> SeriesTable<N> {
    /// A table for up to `capacity` label pairs (rounded up to a power of two).
    pub fn new(capacity: usize) -> Self {
        Self {
            labels: (0..capacity.next_power_of_two()).map(|_| OnceLock::new()).collect(),
            counts: (0..shards::count()).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Where the series for these label values is, claiming a slot for them on their first observation: a number
    /// to keep (it never changes) and count with [`SeriesTable::add`].
    pub fn slot(&self, first: &str, second: &str) -> usize {
        let mask = self.labels.len() - 1;
        let start = hash(first, second) as usize & mask;
        for probe in 0..self.labels.len() {
            let at = (start + probe) & mask;
            let labels = self.labels[at].get_or_init(|| [Box::from(first), Box::from(second)]);
            if *labels[0] == *first && *labels[1] == *second {
                return at;
            }
        }
        self.labels.len()
    }

    /// Counts one at `index` of the series at `slot` (from [`SeriesTable::slot`]).
    pub fn add(&self, slot: usize, index: usize) {
        let rows = self.counts[shards::current()].get_or_init(|| {
            (0..=self.labels.len())
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect()
        });
        rows[slot.min(self.labels.len())][index].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts of the series at `row`, added up over the shards.
    fn counts(&self, row: usize) -> [u64; N] {
        let mut total = [0; N];
        for rows in self.counts.iter().filter_map(OnceLock::get) {
            for (sum, count) in total.iter_mut().zip(&rows[row]) {
                *sum += count.load(Ordering::Relaxed);
            }
        }
        total
    }

    /// Every series observed so far with its label values, and the overflow series when it has counted anything.
    pub fn snapshot(&self) -> Vec<([&str; 2], [u64; N])> {
        let mut found: Vec<([&str; 2], [u64; N])> = self
            .labels
            .iter()
            .enumerate()
            .filter_map(|(row, labels)| {
                let labels = labels.get()?;
                Some(([&*labels[0], &*labels[1]], self.counts(row)))
            })
            .collect();
        let overflow = self.counts(self.labels.len());
        if overflow.iter().any(|&count| count > 0) {
            found.push(([OVERFLOW, OVERFLOW], overflow));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }
}

/// FNV-1a over both values, with a separator no label contains.
fn hash(first: &str, second: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in first.bytes().chain([0xff]).chain(second.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_label_pair_has_its_own_series() {
        let table: SeriesTable<3> = SeriesTable::new(8);
        table.add(table.slot("pack-a", "rule.x"), 0);
        table.add(table.slot("pack-a", "rule.x"), 0);
        table.add(table.slot("pack-a", "rule.y"), 1);
        table.add(table.slot("pack-b", "rule.x"), 2);
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        table.add(table.slot("ab", "c"), 0);
        table.add(table.slot("a", "bc"), 1);
        assert_eq!(
            table.snapshot(),
            [
                (["a", "bc"], [0, 1, 0]),
                (["ab", "c"], [1, 0, 0]),
                (["pack-a", "rule.x"], [2, 0, 0]),
                (["pack-a", "rule.y"], [0, 1, 0]),
                (["pack-b", "rule.x"], [0, 0, 1]),
            ]
        );
    }

    #[test]
    fn a_full_table_counts_the_rest_in_the_overflow_series() {
        let table: SeriesTable<1> = SeriesTable::new(4);
        for rule in ["a", "b", "c", "d", "e", "f"] {
            table.add(table.slot("pack", rule), 0);
        }
        let snapshot = table.snapshot();
        assert_eq!(snapshot.len(), 5, "{snapshot:?}");
        assert!(snapshot.contains(&([OVERFLOW, OVERFLOW], [2])), "{snapshot:?}");
    }

    #[test]
    fn concurrent_first_observations_share_one_series() {
        let table: SeriesTable<1> = SeriesTable::new(64);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for round in 0..1000 {
                        table.add(table.slot("pack", &format!("rule.{}", round % 20)), 0);
                    }
                });
            }
        });
        let snapshot = table.snapshot();
        assert_eq!(snapshot.len(), 20);
        assert!(snapshot.iter().all(|(_, [count])| *count == 400), "{snapshot:?}");
    }
}
