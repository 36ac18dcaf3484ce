//! What the evidence writer has done, counted with atomics as it works and read at a scrape: records made durable,
//! the size of each group that shares one write and sync, how long writing and syncing a group took, and the groups
//! that failed (their decisions failed closed).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::metrics::{Histogram, HistogramSnapshot};

/// Records per group: powers of two up to the writer's usual largest bursts.
const GROUP_SIZES: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
/// Write and sync of one group, in nanoseconds: 50 µs to 5 s.
const SYNC_SECONDS: &[u64] = &[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
    5_000_000_000,
];

#[derive(Debug)]
pub struct EvidenceStats {
    records: AtomicU64,
    failed_groups: AtomicU64,
    failed_records: AtomicU64,
    switches: AtomicU64,
    group_size: Histogram,
    sync_seconds: Histogram,
    /// Since when, and why, records cannot be written (decisions fail closed); `None` while they can.
    failing: Mutex<Option<(SystemTime, String)>>,
}

/// The stats at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceSnapshot {
    /// Records made durable.
    pub records: u64,
    /// Groups whose write or sync failed, and the records in them (each a decision that failed closed).
    pub failed_groups: u64,
    pub failed_records: u64,
    /// Moves to a new file (rotation, a deleted or changed log).
    pub switches: u64,
    pub group_size: HistogramSnapshot,
    pub sync_seconds: HistogramSnapshot,
}

impl Default for EvidenceStats {
    fn default() -> Self {
        Self {
            records: AtomicU64::new(0),
            failed_groups: AtomicU64::new(0),
            failed_records: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            group_size: Histogram::plain(GROUP_SIZES),
            sync_seconds: Histogram::seconds(SYNC_SECONDS),
            failing: Mutex::new(None),
        }
    }
}

impl EvidenceStats {
    pub(super) fn written(&self, records: usize, took: std::time::Duration) {
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        self.group_size.observe(records as u64);
        self.sync_seconds.observe_duration(took);
    }

    pub(super) fn failed(&self, records: usize) {
        self.failed_groups.fetch_add(1, Ordering::Relaxed);
        self.failed_records.fetch_add(records as u64, Ordering::Relaxed);
    }

    /// Records stopped being written (the first failure of an episode), because of `error`.
    pub(super) fn failing(&self, error: String) {
        *self.failing.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((SystemTime::now(), error));
    }

    /// Records are written again.
    pub(super) fn recovered(&self) {
        *self.failing.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Since when, and why, records cannot be written; `None` while they can.
    pub fn failing_since(&self) -> Option<(SystemTime, String)> {
        self.failing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(super) fn switched(&self) {
        self.switches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> EvidenceSnapshot {
        EvidenceSnapshot {
            records: self.records.load(Ordering::Relaxed),
            failed_groups: self.failed_groups.load(Ordering::Relaxed),
            failed_records: self.failed_records.load(Ordering::Relaxed),
            switches: self.switches.load(Ordering::Relaxed),
            group_size: self.group_size.snapshot(),
            sync_seconds: self.sync_seconds.snapshot(),
        }
    }
}
