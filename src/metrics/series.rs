//! Counter series told apart by two label values (a decision's pack and rule), found without a lock: an
//! open-addressing table whose slots are claimed once, by the first observation of their labels, and never freed.
//! Finding a series costs a hash of its labels, an atomic load and a string comparison; the first observation of a
//! new pair allocates its labels once. A full table counts the rest in an overflow series, so the number of series
//! stays bounded whatever clients send.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// `N` counters under one pair of label values.
#[derive(Debug)]
struct Series<const N: usize> {
    counts: [AtomicU64; N],
}

impl<const N: usize> Series<N> {
    fn new() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn add(&self, index: usize) {
        self.counts[index].fetch_add(1, Ordering::Relaxed);
    }

    fn counts(&self) -> [u64; N] {
        std::array::from_fn(|index| self.counts[index].load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
struct Slot<const N: usize> {
    labels: OnceLock<[Box<str>; 2]>,
    series: Series<N>,
}

#[derive(Debug)]
pub struct SeriesTable<const N: usize> {
    slots: Box<[Slot<N>]>,
    overflow: Series<N>,
}

/// The label values the overflow series is reported under.
pub const OVERFLOW: &str = "other";

impl<const N: usize> SeriesTable<N> {
    /// A table for up to `capacity` label pairs (rounded up to a power of two).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.next_power_of_two();
        Self {
            slots: (0..capacity)
                .map(|_| Slot {
                    labels: OnceLock::new(),
                    series: Series::new(),
                })
                .collect(),
            overflow: Series::new(),
        }
    }

    /// Where the series for these label values is, claiming a slot for them on their first observation: a number
    /// to keep (it never changes) and count with [`SeriesTable::add`].
    pub fn slot(&self, first: &str, second: &str) -> usize {
        let mask = self.slots.len() - 1;
        let start = hash(first, second) as usize & mask;
        for probe in 0..self.slots.len() {
            let at = (start + probe) & mask;
            let labels = self.slots[at]
                .labels
                .get_or_init(|| [Box::from(first), Box::from(second)]);
            if *labels[0] == *first && *labels[1] == *second {
                return at;
            }
        }
        self.slots.len()
    }

    /// Counts one at `index` of the series at `slot` (from [`SeriesTable::slot`]).
    pub fn add(&self, slot: usize, index: usize) {
        self.slots
            .get(slot)
            .map_or(&self.overflow, |slot| &slot.series)
            .add(index);
    }

    /// Every series observed so far with its label values, and the overflow series when it has counted anything.
    pub fn snapshot(&self) -> Vec<([&str; 2], [u64; N])> {
        let mut found: Vec<([&str; 2], [u64; N])> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let labels = slot.labels.get()?;
                Some(([&*labels[0], &*labels[1]], slot.series.counts()))
            })
            .collect();
        let overflow = self.overflow.counts();
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
