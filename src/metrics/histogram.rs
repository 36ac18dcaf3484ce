//! A histogram with fixed bucket bounds: one atomic add for the bucket, one for the sum and one for the count per
//! observation, in the calling thread's shard (see `shards`); no lock, no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::shards::{self, LINE_WORDS, Line};

/// Observations in integer units (nanoseconds for durations, plain numbers for sizes), counted by the first bound
/// they do not exceed; the last bucket takes everything above the highest bound (`+Inf`).
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, ascending, in the observation's unit.
    bounds: &'static [u64],
    /// Per shard, `lines` lines holding a count per bound, one for `+Inf`, then the sum and the count.
    cells: Box<[Line]>,
    lines: usize,
    /// Divides bounds and sum when encoding: 1e9 turns nanoseconds into the seconds Prometheus expects.
    scale: f64,
}

/// A histogram's values at one moment, as Prometheus encodes them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, observations in this bucket alone), the last one `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// A histogram of durations, encoded in seconds; `bounds` in nanoseconds.
    pub fn seconds(bounds: &'static [u64]) -> Self {
        Self::new(bounds, 1e9)
    }

    /// A histogram of plain numbers (sizes, counts).
    pub fn plain(bounds: &'static [u64]) -> Self {
        Self::new(bounds, 1.0)
    }

    fn new(bounds: &'static [u64], scale: f64) -> Self {
        debug_assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]), "bounds must ascend");
        let lines = (bounds.len() + 3).div_ceil(LINE_WORDS);
        Self {
            bounds,
            cells: (0..lines * shards::count()).map(|_| Line::new()).collect(),
            lines,
            scale,
        }
    }

    /// Cell `index` of `shard`: buckets first, then the sum, then the count.
    fn cell(&self, shard: usize, index: usize) -> &AtomicU64 {
        &self.cells[shard * self.lines + index / LINE_WORDS].0[index % LINE_WORDS]
    }

    fn sum_index(&self) -> usize {
        self.bounds.len() + 1
    }

    fn count_index(&self) -> usize {
        self.bounds.len() + 2
    }

    /// Cell `index` added up over every shard.
    fn total(&self, index: usize) -> u64 {
        (0..shards::count())
            .map(|shard| self.cell(shard, index).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    pub fn observe(&self, value: u64) {
        // A handful of bounds: a linear scan beats a binary search here.
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(self.bounds.len());
        let shard = shards::current();
        self.cell(shard, bucket).fetch_add(1, Ordering::Relaxed);
        self.cell(shard, self.sum_index()).fetch_add(value, Ordering::Relaxed);
        self.cell(shard, self.count_index()).fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, duration: Duration) {
        self.observe(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The values now. Observations racing with the snapshot may be in the count and not yet in a bucket; the
    /// count is taken first so that it never exceeds the buckets' total by more than those.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let count = self.total(self.count_index());
        let sum = self.total(self.sum_index()) as f64 / self.scale;
        let buckets = self
            .bounds
            .iter()
            .map(|&bound| bound as f64 / self.scale)
            .chain([f64::INFINITY])
            .enumerate()
            .map(|(index, bound)| (bound, self.total(index)))
            .collect();
        HistogramSnapshot { buckets, sum, count }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_they_fit() {
        let histogram = Histogram::plain(&[1, 10, 100]);
        for value in [0, 1, 2, 10, 11, 100, 101, 5000] {
            histogram.observe(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets, [(1.0, 2), (10.0, 2), (100.0, 2), (f64::INFINITY, 2)]);
        assert_eq!((snapshot.sum, snapshot.count), (5225.0, 8));
    }

    #[test]
    fn observations_from_many_threads_are_all_counted() {
        let histogram = Histogram::plain(&[10]);
        std::thread::scope(|scope| {
            for thread in 0..6_u64 {
                let histogram = &histogram;
                scope.spawn(move || {
                    for _ in 0..500 {
                        histogram.observe(thread * 4);
                    }
                });
            }
        });
        let snapshot = histogram.snapshot();
        // 0, 4 and 8 fit the first bucket; 12, 16 and 20 do not.
        assert_eq!(snapshot.buckets, [(10.0, 1500), (f64::INFINITY, 1500)]);
        assert_eq!((snapshot.sum, snapshot.count), (30_000.0, 3000));
    }

    #[test]
    fn durations_are_encoded_in_seconds() {
        let histogram = Histogram::seconds(&[1_000_000, 1_000_000_000]);
        histogram.observe_duration(Duration::from_micros(500));
        histogram.observe_duration(Duration::from_millis(2));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets, [(0.001, 1), (1.0, 1), (f64::INFINITY, 0)]);
        assert!((snapshot.sum - 0.0025).abs() < 1e-12, "{}", snapshot.sum);
    }
}
