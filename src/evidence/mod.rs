//! Evidence log: a tamper-evident, hash-chained JSONL record of every decision the daemon answers.
//!
//! The format is the reference daemon's (`cavra.go-daemon.evidence.v1`) byte for byte, so a stream written here
//! verifies with the reference verifier and the other way round, as long as it uses only the reference's features
//! (HMAC signatures, one file). Extensions follow `docs/evidence.md`: Ed25519 signatures, and link records that
//! carry the chain from one file to the next (rotation, a deleted or replaced log), which [`set`] puts back in
//! order. One writer thread owns the file; callers are answered only once their record is durable, and a record
//! that cannot be written fails the decision closed. [`journal`] cross-checks a log against the decision events the
//! daemon logged to the journal, which see what a shortened log no longer shows.

mod encode;
pub mod journal;
mod key;
mod open;
mod record;
pub mod set;
pub mod shipped;
mod space;
mod stats;
#[cfg(test)]
mod test_support;
mod verify;
mod writer;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub use key::{ED25519_ALGORITHM, HMAC_SHA256, KeyError, PublicKey, SigningKey, VerifyingKeys, fingerprint};
pub use open::OpenReport;
pub use record::{Link, RecordPeer};
pub use space::{MinFree, Space};
pub use stats::{EvidenceSnapshot, EvidenceStats};
pub use verify::{VerifyReport, verify_file, verify_file_against};
pub use writer::{Draft, EvidenceLog, Recorded, Reopened};

/// When the writer makes appended records durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// One fdatasync per record.
    Always,
    /// Group commit: one fdatasync for everything queued when the writer wakes.
    #[default]
    Batch,
    /// Never sync; the OS flushes when it likes. For tests and throwaway logs.
    None,
}

/// How to open an evidence log.
#[derive(Debug, Clone)]
pub struct EvidenceConfig {
    pub path: PathBuf,
    pub sync: SyncMode,
    /// Signs every new record, and checks existing signatures on open: with a key, every record of the log's tail
    /// must be signed by it (or by one of `verifying`).
    pub signing: Option<SigningKey>,
    /// Other keys whose signatures the existing log may carry (the public key before a key change).
    pub verifying: VerifyingKeys,
    /// Set an existing log whose chain does not verify aside and start a new chain instead of refusing to open.
    pub recover: bool,
    /// Hand each record's line back with its answer ([`Recorded::line`]) and log each link record, so that the
    /// decision log can carry the records themselves (`--log-evidence-records`).
    pub record_lines: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("cannot open evidence log {}: {source}", .path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot open evidence log {}: {source}", .path.display())]
    Unsafe {
        path: PathBuf,
        source: crate::fsutil::FsError,
    },
    #[error("evidence log {} is in use by another process", .path.display())]
    Locked { path: PathBuf },
    #[error("cannot read evidence log {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "evidence log {} does not verify: {first_error}; start with --evidence-recover to set it aside",
        .path.display()
    )]
    Broken { path: PathBuf, first_error: String },
    #[error("cannot set evidence log {} aside to {}: {source}", .path.display(), .aside.display())]
    SetAside {
        path: PathBuf,
        aside: PathBuf,
        source: io::Error,
    },
    /// A write or sync failed; the record was not kept and the decision must fail closed.
    #[error("evidence log {} is unavailable: {source}", .path.display())]
    Unavailable { path: PathBuf, source: Arc<io::Error> },
    #[error("evidence log {} is closed", .path.display())]
    Closed { path: PathBuf },
}
