//! The evidence log handle and its single writer thread.
//!
//! Every connection sends its record to one thread that owns the file, so records get one total order with no
//! sequence gaps. The writer takes everything queued when it wakes, writes it in one write, makes it durable, and
//! only then answers the callers. If the write or sync fails, it cuts the file back and answers every caller in the
//! batch with an error: a decision whose evidence was not kept must not be acted on.
//!
//! Before each group the writer checks (one `stat` of the path, one `fstat` of the file it holds) that the path
//! still names its file and that the file is as long as it left it. If not (rotated, deleted, replaced, cut short
//! or appended to by someone else) it moves to the file the path names now, which it starts with a link record to
//! the chain's last record, and writes the group there: no decision is acknowledged from a file that is gone. A file
//! deleted while a group is being written fails that group closed; the next one goes to a new file.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;

use nix::fcntl::Flock;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::record::{Chain, Prepared, RecordPeer, Sealed, record_overhead, reference};
use super::{EvidenceConfig, EvidenceError, EvidenceStats, OpenReport, SyncMode, open};
use crate::auth::Peer;
use crate::contract::{DecisionResponse, EvaluateRequest};
use crate::fsutil::{FsError, SafeDir};

/// A cheap handle to an open evidence log, shared by all connections.
#[derive(Clone)]
pub struct EvidenceLog {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    stats: Arc<EvidenceStats>,
    /// What each record takes besides its request, peer and response, at most (see [`Draft::bytes`]).
    overhead: usize,
    /// `None` once closed.
    jobs: Mutex<Option<mpsc::Sender<Message>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Job {
    record: Prepared,
    /// Answered once the record is durable.
    reply: Reply,
}

type Reply = oneshot::Sender<Result<Sealed, EvidenceError>>;

/// A decision whose record is durable.
#[derive(Debug)]
pub struct Recorded {
    /// The decision with the reference to its record among its `evidence_refs`.
    pub response: DecisionResponse,
    /// `response` exactly as the record stores it (compact Go JSON, no newline), to answer with as it is.
    pub encoded: Vec<u8>,
    /// The record's place in the chain and its hash: logged with the decision, they anchor the chain outside the
    /// host.
    pub sequence: i64,
    pub record_hash: String,
    /// The record's line as written, without its newline, when the log was opened with `record_lines`.
    pub line: Option<Vec<u8>>,
}

/// A decision's record, encoded and not yet queued (see [`EvidenceLog::draft`]): its size is known before anything
/// is written, so the daemon can hold a peer to an evidence budget.
pub struct Draft {
    record: Prepared,
    response: DecisionResponse,
    overhead: usize,
}

impl Draft {
    /// The bytes the record will take in the log, at most: never less, and at most about a hundred more (a first
    /// record has no previous hash; sequence numbers and timestamps are usually shorter than the longest).
    pub fn bytes(&self) -> usize {
        self.record.encoded_len() + self.overhead
    }
}

/// What the writer thread is asked to do, in the order it was asked.
enum Message {
    Record(Job),
    Reopen(oneshot::Sender<Result<Reopened, EvidenceError>>),
}

/// What reopening the log path found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reopened {
    /// The path still names the open file: nothing changed.
    Unchanged,
    /// The path no longer names the file being written; recording continues in the file it names now, which
    /// starts with a link record to where the previous file's chain ends.
    Switched {
        previous_sequence: i64,
        previous_hash: String,
        /// Records in the new file: its link record (1), or those of the same log put back at the path.
        records: u64,
        /// Why the previous file ended: `rotation`, `deleted` or `modified` (see [`super::Link`]).
        reason: &'static str,
    },
}

impl EvidenceLog {
    /// Opens the log (see [`OpenReport`]) and starts its writer.
    pub fn open(config: EvidenceConfig) -> Result<(EvidenceLog, OpenReport), EvidenceError> {
        Self::open_syncing_with(config, system_sync())
    }

    /// [`EvidenceLog::open`], making writes durable with `sync`.
    fn open_syncing_with(config: EvidenceConfig, sync: SyncFn) -> Result<(EvidenceLog, OpenReport), EvidenceError> {
        let opened = open::open(&config)?;
        let path = config.path.clone();
        let stats = Arc::new(EvidenceStats::default());
        let overhead = record_overhead(config.signing.as_ref());
        let writer = Writer {
            stats: Arc::clone(&stats),
            // Recovery is the operator's one-off decision at start, never repeated by a later reopen.
            config: EvidenceConfig {
                recover: false,
                ..config
            },
            file: opened.file,
            chain: opened.chain,
            len: opened.len,
            dirty: false,
            failing: false,
            group: Vec::new(),
            unsynced_dir: opened.unsynced_dir,
            sync,
        };
        let (jobs, queue) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("evidence-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|source| EvidenceError::Open {
                path: path.clone(),
                source,
            })?;
        let shared = Shared {
            overhead,
            path,
            stats,
            jobs: Mutex::new(Some(jobs)),
            writer: Mutex::new(Some(thread)),
        };
        Ok((
            EvidenceLog {
                shared: Arc::new(shared),
            },
            opened.report,
        ))
    }

    /// Queues the record for this decision at once (so records keep the order of the calls) and returns a future
    /// that resolves with the response carrying its go-daemon-evidence ref once the record is durable per the sync
    /// mode. It never resolves Ok before that.
    ///
    /// The record names no peer; the daemon records through [`EvidenceLog::draft`] and
    /// [`EvidenceLog::record_draft`].
    pub fn record(
        &self,
        request: EvaluateRequest,
        response: DecisionResponse,
    ) -> impl Future<Output = Result<Recorded, EvidenceError>> + Send + 'static {
        self.record_draft(self.draft(request, response, None))
    }

    /// Encodes the record of `response` to `request`, naming `peer` as who asked, without queueing it. Done on the
    /// caller's thread, so the one writer thread only chains and writes.
    pub fn draft(&self, request: EvaluateRequest, mut response: DecisionResponse, peer: Option<&Peer>) -> Draft {
        let peer = peer.map(RecordPeer::from);
        let record = Prepared::new(request.into(), &mut response, peer.as_ref());
        Draft {
            record,
            response,
            overhead: self.shared.overhead,
        }
    }

    /// [`EvidenceLog::record`] for a record already encoded.
    pub fn record_draft(&self, draft: Draft) -> impl Future<Output = Result<Recorded, EvidenceError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let Draft {
            record, mut response, ..
        } = draft;
        let submitted = self.submit(Message::Record(Job { record, reply }));
        let closed = self.closed();
        async move {
            submitted?;
            // The writer dropping the reply means it is gone (closed or panicked): nothing was recorded.
            let sealed = answer.await.map_err(|_| closed)??;
            let reference = reference(&sealed.record_id);
            if !response.evidence_refs.contains(&reference) {
                response.evidence_refs.push(reference);
            }
            Ok(Recorded {
                response,
                encoded: sealed.response,
                sequence: sealed.sequence,
                record_hash: sealed.record_hash,
                line: sealed.line,
            })
        }
    }

    /// Looks at the log path again, after the records queued before this call: when rotation has put another file
    /// there (logrotate's `create`) or removed it, recording moves to the file the path names now, which starts with
    /// a link record. Each group of records checks this too; the signal makes it happen at once.
    pub fn reopen(&self) -> impl Future<Output = Result<Reopened, EvidenceError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let submitted = self.submit(Message::Reopen(reply));
        let closed = self.closed();
        async move {
            submitted?;
            answer.await.map_err(|_| closed)?
        }
    }

    /// The log's path.
    pub fn path(&self) -> &std::path::Path {
        &self.shared.path
    }

    /// What the writer has done so far (records, groups, sync times, failures).
    pub fn stats(&self) -> &EvidenceStats {
        &self.shared.stats
    }

    /// Stops accepting, writes and syncs everything queued, joins the writer. Idempotent.
    pub fn close(&self) {
        self.shared.close();
    }

    fn submit(&self, message: Message) -> Result<(), EvidenceError> {
        match &*lock(&self.shared.jobs) {
            Some(jobs) => jobs.send(message).map_err(|_| self.closed()),
            None => Err(self.closed()),
        }
    }

    fn closed(&self) -> EvidenceError {
        EvidenceError::Closed {
            path: self.shared.path.clone(),
        }
    }
}

impl std::fmt::Debug for EvidenceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceLog").field("path", &self.shared.path).finish()
    }
}

impl Shared {
    fn close(&self) {
        // Dropping the sender lets the writer drain the queue and stop.
        lock(&self.jobs).take();
        // Held while joining, so a concurrent close returns only once everything is written too.
        let mut writer = lock(&self.writer);
        if let Some(thread) = writer.take()
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "evidence writer panicked");
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a sync makes durable: the log's data, or the directory entry that names a new log.
enum SyncTarget<'a> {
    File(&'a File),
    Dir(&'a SafeDir),
}

/// How a target is made durable: `fdatasync` and `fsync`. Unit tests put a hook here to hold a sync or make it fail,
/// and so check that no answer precedes its record's sync.
type SyncFn = Arc<dyn Fn(SyncTarget<'_>) -> io::Result<()> + Send + Sync>;

fn system_sync() -> SyncFn {
    Arc::new(|target| match target {
        SyncTarget::File(file) => file.sync_data(),
        SyncTarget::Dir(dir) => dir.sync().map_err(|error| match error {
            FsError::Io { source, .. } => source,
            other => io::Error::other(other.to_string()),
        }),
    })
}

/// The largest group buffer the writer keeps for the next group.
const GROUP_BUFFER_KEPT: usize = 1 << 20;

struct Writer {
    config: EvidenceConfig,
    stats: Arc<EvidenceStats>,
    file: Flock<File>,
    /// The last durable record.
    chain: Chain,
    /// The file's length after the last durable record: anything else means someone else changed it.
    len: u64,
    /// Cutting a failed group off the file failed too: cut it before the next write.
    dirty: bool,
    /// In a failure episode: logged once when it starts and once when it ends.
    failing: bool,
    /// The group being written, kept between groups so its allocation is reused.
    group: Vec<u8>,
    /// The file's directory, until its entry for the file is durable (see `open::Opened::unsynced_dir`).
    unsynced_dir: Option<SafeDir>,
    sync: SyncFn,
}

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Message>) {
        // Ends once every sender is gone and the queue is drained.
        while let Ok(first) = queue.recv() {
            let mut batch = Vec::new();
            for message in std::iter::once(first).chain(queue.try_iter()) {
                match message {
                    Message::Record(job) => batch.push(job),
                    Message::Reopen(reply) => {
                        self.commit_all(std::mem::take(&mut batch));
                        let _ = reply.send(self.reopen());
                    }
                }
            }
            self.commit_all(batch);
        }
    }

    fn commit_all(&mut self, batch: Vec<Job>) {
        if batch.is_empty() {
            return;
        }
        if self.config.sync == SyncMode::Always {
            for job in batch {
                self.commit(vec![job]);
            }
        } else {
            self.commit(batch);
        }
    }

    fn reopen(&mut self) -> Result<Reopened, EvidenceError> {
        self.clean()?;
        match self.stale().map_err(|source| self.read_error(source))? {
            None => Ok(Reopened::Unchanged),
            Some(reason) => self.switch(reason),
        }
    }

    /// Cuts off what a failed write left, if cutting it off failed at the time.
    fn clean(&mut self) -> Result<(), EvidenceError> {
        if self.dirty {
            self.file.set_len(self.len).map_err(|source| self.unavailable(source))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Why the file being written can no longer be written to, if it cannot: it was deleted (or replaced, which
    /// deletes it), the path names another file or none (rotation: it lives on under another name), or its length
    /// is not what this writer left (cut short, or written to by someone else).
    fn stale(&self) -> io::Result<Option<&'static str>> {
        let open = self.file.metadata()?;
        if open.nlink() == 0 {
            return Ok(Some("deleted"));
        }
        // Not following a link: a link planted at the path is not the file being written, so the path is opened
        // anew, through its checked directory, which refuses the link.
        let same_file = match std::fs::symlink_metadata(&self.config.path) {
            Ok(named) => (named.dev(), named.ino()) == (open.dev(), open.ino()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => false,
            Err(error) => return Err(error),
        };
        Ok(if !same_file {
            Some("rotation")
        } else if open.len() != self.len {
            Some("modified")
        } else {
            None
        })
    }

    /// Moves recording to the file the path names now, started with a link record to the chain's last record.
    fn switch(&mut self, reason: &'static str) -> Result<Reopened, EvidenceError> {
        let path = self.config.path.clone();
        if reason == "modified" {
            // The path still names this file: keep it, as it is, for whoever investigates.
            let aside = open::set_aside_path(&path, "modified", OffsetDateTime::now_utc())?;
            tracing::error!(
                path = %path.display(),
                aside = %aside.display(),
                expected_bytes = self.len,
                "the evidence log was changed by someone else (cut short or appended to); set it aside"
            );
        }
        let opened = open::reopen(&self.config, &self.chain, reason)?;
        self.stats.switched();
        if let Some(line) = opened.link_line.as_deref().filter(|_| self.config.record_lines) {
            // The link is part of the chain: shipped like the decisions' records, so a chain rebuilt from the
            // journal has no hole where a file ended.
            tracing::info!(
                target: "cavra::evidence",
                evidence_sequence = opened.chain.sequence,
                evidence_record_hash = %opened.chain.record_hash,
                evidence_record = %String::from_utf8_lossy(line),
                "evidence link record",
            );
        }
        let previous = std::mem::replace(&mut self.chain, opened.chain);
        self.file = opened.file;
        self.len = opened.len;
        self.dirty = false;
        self.unsynced_dir = opened.unsynced_dir;
        let message = "evidence log reopened; the new file links to where the previous one ends";
        if reason == "rotation" {
            tracing::info!(path = %path.display(), reason, previous_sequence = previous.sequence,
                previous_hash = %previous.record_hash, "{message}: sequence {} with record hash {}",
                previous.sequence, previous.record_hash);
        } else {
            tracing::warn!(path = %path.display(), reason, previous_sequence = previous.sequence,
                previous_hash = %previous.record_hash, "{message}: sequence {} with record hash {}",
                previous.sequence, previous.record_hash);
        }
        Ok(Reopened::Switched {
            previous_sequence: previous.sequence,
            previous_hash: previous.record_hash,
            records: opened.report.records,
            reason,
        })
    }

    /// Writes `jobs` as one group and answers them all.
    fn commit(&mut self, jobs: Vec<Job>) {
        // Nothing is written, so nothing acknowledged, to a file the path no longer names.
        let followed = self.clean().and_then(|()| match self.stale() {
            Ok(None) => Ok(()),
            Ok(Some(reason)) => self.switch(reason).map(drop),
            Err(source) => Err(self.read_error(source)),
        });
        if let Err(error) = followed {
            self.stats.failed(jobs.len());
            return self.refuse(jobs.into_iter().map(|job| job.reply), &error);
        }
        let mut chain = self.chain.clone();
        let mut bytes = std::mem::take(&mut self.group);
        bytes.clear();
        // What a record adds to its encoded request and response (its head, hashes, timestamp and signature) is
        // under 1 KiB, so the group is written without growing its buffer.
        bytes.reserve(jobs.iter().map(|job| job.record.encoded_len() + 1024).sum());
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            let timestamp = crate::contract::timestamp(OffsetDateTime::now_utc());
            let start = bytes.len();
            let mut sealed = chain.seal(job.record, &timestamp, self.config.signing.as_ref(), &mut bytes);
            if self.config.record_lines {
                sealed.line = Some(bytes[start..bytes.len() - 1].to_vec());
            }
            answers.push((job.reply, sealed));
        }
        let started = std::time::Instant::now();
        let persisted = self.persist(&bytes);
        let took = started.elapsed();
        let written = bytes.len() as u64;
        // Kept unless a burst made it unusually large, so an idle daemon does not hold a burst's memory.
        if bytes.capacity() <= GROUP_BUFFER_KEPT {
            self.group = bytes;
        }
        // A caller that went away no longer needs its answer, so send results are ignored.
        match persisted {
            Ok(()) => {
                self.stats.written(answers.len(), took);
                self.chain = chain;
                self.len += written;
                if self.failing {
                    self.failing = false;
                    self.stats.recovered();
                    tracing::info!(
                        path = %self.config.path.display(),
                        sequence = self.chain.sequence,
                        "evidence log writable again; chain continues"
                    );
                }
                for (reply, sealed) in answers {
                    let _ = reply.send(Ok(sealed));
                }
            }
            Err(error) => {
                self.stats.failed(answers.len());
                let error = self.unavailable(error);
                self.refuse(answers.into_iter().map(|(reply, _)| reply), &error);
            }
        }
    }

    /// Answers every caller with `error`: their records were not kept.
    fn refuse(&mut self, replies: impl IntoIterator<Item = Reply>, error: &EvidenceError) {
        if !self.failing {
            self.failing = true;
            self.stats.failing(error.to_string());
            tracing::error!(
                path = %self.config.path.display(),
                %error,
                "evidence log write failed; decisions fail closed until it recovers"
            );
        }
        let source = match error {
            EvidenceError::Unavailable { source, .. } => Arc::clone(source),
            other => Arc::new(io::Error::other(other.to_string())),
        };
        for reply in replies {
            let _ = reply.send(Err(EvidenceError::Unavailable {
                path: self.config.path.clone(),
                source: Arc::clone(&source),
            }));
        }
    }

    /// Appends `bytes` and makes them durable per the sync mode. On failure, cuts the file back to where it was so
    /// no partial record stays and the next group continues from the last durable record.
    fn persist(&mut self, bytes: &[u8]) -> io::Result<()> {
        let written = (&*self.file)
            .write_all(bytes)
            .and_then(|()| match self.config.sync {
                SyncMode::None => Ok(()),
                SyncMode::Always | SyncMode::Batch => {
                    (self.sync)(SyncTarget::File(&self.file)).and_then(|()| self.sync_dir())
                }
            })
            .and_then(|()| {
                // Deleted while the group was written: its records would be acknowledged from a file that is gone.
                if self.file.metadata()?.nlink() == 0 {
                    return Err(io::Error::other(
                        "the log file was deleted while these records were written to it; the next records go to a new file",
                    ));
                }
                Ok(())
            });
        if written.is_err() && self.file.set_len(self.len).is_err() {
            self.dirty = true;
        }
        written
    }

    /// Makes the file's directory entry durable, once per file: a record is not durable in a file that a crash
    /// could unlink.
    fn sync_dir(&mut self) -> io::Result<()> {
        if let Some(dir) = &self.unsynced_dir {
            (self.sync)(SyncTarget::Dir(dir))?;
            self.unsynced_dir = None;
        }
        Ok(())
    }

    fn unavailable(&self, source: io::Error) -> EvidenceError {
        EvidenceError::Unavailable {
            path: self.config.path.clone(),
            source: Arc::new(source),
        }
    }

    fn read_error(&self, source: io::Error) -> EvidenceError {
        EvidenceError::Read {
            path: self.config.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write as _;
    use std::path::Path;
    use std::pin::Pin;
    use std::process::Command;
    use std::time::Duration;

    use super::*;
    use crate::evidence::test_support::{allow, config, key, keys, records, request};
    use crate::evidence::verify_file;

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn concurrent_records_get_one_gapless_order() {
        const N: usize = 300;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let (log, report) = EvidenceLog::open(config(&path, SyncMode::Batch, Some(key()))).unwrap();
        assert_eq!(report.records, 0);

        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    let session = format!("session-{i}");
                    let recorded = log.record(request(&session), allow()).await.unwrap();
                    (session, recorded)
                })
            })
            .collect();
        let mut answered = HashMap::new();
        for task in tasks {
            let (
                session,
                Recorded {
                    response,
                    encoded,
                    sequence,
                    record_hash,
                    line: _,
                },
            ) = task.await.unwrap();
            assert_eq!(response.evidence_refs.len(), 2, "{response:?}");
            assert_eq!(response.evidence_refs[0], "evidence://s/d");
            let id = response.evidence_refs[1]
                .strip_prefix("go-daemon-evidence://")
                .unwrap()
                .to_owned();
            answered.insert(id, (session, response, encoded, sequence, record_hash));
        }
        log.close();

        let stored = records(&path);
        let lines = std::fs::read_to_string(&path).unwrap();
        assert_eq!(stored.len(), N);
        for ((index, record), line) in stored.iter().enumerate().zip(lines.lines()) {
            assert_eq!(record["sequence"], index as u64 + 1);
            // Each caller got exactly the response stored under its own record, also byte for byte.
            let (session, response, encoded, sequence, record_hash) = &answered[record["record_id"].as_str().unwrap()];
            assert_eq!(record["request"]["session_id"], session.as_str());
            // The caller learns the record's place and hash, to log them.
            assert_eq!(record["sequence"], *sequence);
            assert_eq!(record["record_hash"], record_hash.as_str());
            assert_eq!(record["response"], serde_json::to_value(response).unwrap());
            let encoded = std::str::from_utf8(encoded).unwrap();
            assert!(
                line.contains(&format!(r#","response":{encoded},"signature":"#)),
                "{line}\n{encoded}"
            );
        }
        let report = verify_file(&path, &keys(Some(&key()))).unwrap();
        assert!(report.valid, "{report:?}");
        assert_eq!((report.records, report.signed_records), (N as u64, N as u64));
    }

    #[tokio::test]
    async fn rotation_is_followed_with_a_link_on_reopen_or_at_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let (log, _) = EvidenceLog::open(config(&path, SyncMode::Batch, Some(key()))).unwrap();
        log.record(request("a"), allow()).await.unwrap();
        log.record(request("b"), allow()).await.unwrap();
        assert_eq!(log.reopen().await.unwrap(), Reopened::Unchanged);

        // logrotate: rename, `create` an empty file, signal.
        let first = dir.path().join("evidence.jsonl.2");
        std::fs::rename(&path, &first).unwrap();
        std::fs::write(&path, "").unwrap();
        let last_hash = records(&first)[1]["record_hash"].as_str().unwrap().to_owned();
        assert_eq!(
            log.reopen().await.unwrap(),
            Reopened::Switched {
                previous_sequence: 2,
                previous_hash: last_hash.clone(),
                records: 1,
                reason: "rotation",
            }
        );
        // The link is written at once, before any decision.
        let linked = records(&path);
        assert_eq!(linked.len(), 1);
        assert_eq!(
            linked[0]["link"],
            serde_json::json!({"previous_sequence": 2, "previous_record_hash": last_hash, "reason": "rotation"})
        );
        assert_eq!(
            linked[0]["previous_hash"],
            last_hash.as_str(),
            "one chain across the files"
        );
        log.record(request("c"), allow()).await.unwrap();

        // Without the signal (or before it arrives), the next record notices by itself.
        let second = dir.path().join("evidence.jsonl.1");
        std::fs::rename(&path, &second).unwrap();
        log.record(request("d"), allow()).await.unwrap();
        log.close();

        let sequences = |file: &Path| -> Vec<i64> {
            records(file)
                .iter()
                .map(|record| record["sequence"].as_i64().unwrap())
                .collect()
        };
        assert_eq!(sequences(&first), [1, 2]);
        assert_eq!(sequences(&second), [3, 4]);
        assert_eq!(sequences(&path), [5, 6]);
        assert_eq!(
            records(&path)[0]["link"]["previous_record_hash"],
            records(&second)[1]["record_hash"]
        );
        for file in [&first, &second, &path] {
            let report = verify_file(file, &keys(Some(&key()))).unwrap();
            assert!(report.valid, "{report:?}");
        }
    }

    /// The paths in `dir` whose names contain `kind`.
    fn set_aside(dir: &Path, kind: &str) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().contains(kind))
            .collect()
    }

    #[tokio::test]
    async fn a_deleted_log_is_noticed_before_the_next_record_which_goes_to_a_linked_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let (log, _) = EvidenceLog::open(config(&path, SyncMode::Batch, Some(key()))).unwrap();
        let first = log.record(request("a"), allow()).await.unwrap();
        std::fs::remove_file(&path).unwrap();
        // No signal: the writer notices by itself, and the decision is not refused.
        let second = log.record(request("b"), allow()).await.unwrap();
        log.close();
        let stored = records(&path);
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0]["link"]["reason"], "deleted");
        assert_eq!(stored[0]["link"]["previous_sequence"], first.sequence);
        assert_eq!(stored[0]["link"]["previous_record_hash"], first.record_hash.as_str());
        assert_eq!(stored[1]["request"]["session_id"], "b");
        assert_eq!(
            (second.sequence, stored[1]["record_hash"].as_str()),
            (3, Some(second.record_hash.as_str()))
        );
        assert!(verify_file(&path, &keys(Some(&key()))).unwrap().valid);
    }

    #[tokio::test]
    async fn a_log_replaced_by_another_file_is_set_aside_and_the_chain_goes_on_in_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let (log, _) = EvidenceLog::open(config(&path, SyncMode::Batch, Some(key()))).unwrap();
        let first = log.record(request("a"), allow()).await.unwrap();
        // Someone puts a file of their own at the path (a forged log, an old copy), which deletes the daemon's.
        let foreign = dir.path().join("foreign.jsonl");
        std::fs::write(&foreign, "{\"forged\":true}\n").unwrap();
        std::fs::rename(&foreign, &path).unwrap();
        log.record(request("b"), allow()).await.unwrap();
        log.close();
        let aside = set_aside(dir.path(), ".replaced-");
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(std::fs::read_to_string(&aside[0]).unwrap(), "{\"forged\":true}\n");
        let stored = records(&path);
        assert_eq!(stored[0]["link"]["reason"], "deleted");
        assert_eq!(stored[0]["link"]["previous_record_hash"], first.record_hash.as_str());
        assert_eq!(stored[1]["request"]["session_id"], "b");
    }

    #[tokio::test]
    async fn a_log_cut_short_or_appended_to_is_set_aside_and_the_chain_goes_on_in_a_new_one() {
        for change in ["cut", "append"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("evidence.jsonl");
            let (log, _) = EvidenceLog::open(config(&path, SyncMode::Batch, Some(key()))).unwrap();
            log.record(request("a"), allow()).await.unwrap();
            let second = log.record(request("b"), allow()).await.unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            let changed = match change {
                "cut" => text.lines().next().unwrap().to_owned() + "\n",
                _ => text + "{\"forged\":true}\n",
            };
            // In place (same file), as `truncate` or `>>` would.
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .and_then(|mut file| file.write_all(changed.as_bytes()))
                .unwrap();
            log.record(request("c"), allow()).await.unwrap();
            log.close();
            let aside = set_aside(dir.path(), ".modified-");
            assert_eq!(aside.len(), 1, "{change}: {aside:?}");
            assert_eq!(
                std::fs::read_to_string(&aside[0]).unwrap(),
                changed,
                "{change}: kept as it was found"
            );
            let stored = records(&path);
            assert_eq!(stored[0]["link"]["reason"], "modified", "{change}");
            // The link names the record the daemon wrote last, which the changed file no longer ends with.
            assert_eq!(stored[0]["link"]["previous_sequence"], second.sequence, "{change}");
            assert_eq!(
                stored[0]["link"]["previous_record_hash"],
                second.record_hash.as_str(),
                "{change}"
            );
        }
    }

    #[tokio::test]
    async fn records_written_to_a_log_deleted_meanwhile_are_not_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let opened = open::open(&config(&path, SyncMode::Batch, None)).unwrap();
        let mut writer = Writer {
            config: config(&path, SyncMode::Batch, None),
            stats: Arc::default(),
            file: opened.file,
            chain: opened.chain,
            len: opened.len,
            dirty: false,
            failing: false,
            group: Vec::new(),
            unsynced_dir: opened.unsynced_dir,
            sync: system_sync(),
        };
        // Deleted after the check before the group and before the group's write completes: the write lands in a
        // file that is gone, so it must fail.
        std::fs::remove_file(&path).unwrap();
        let error = writer.persist(b"{}\n").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("was deleted while these records were written"),
            "{error}"
        );
        assert_eq!(writer.file.metadata().unwrap().len(), 0, "cut back");
        assert_eq!(
            writer.stale().unwrap(),
            Some("deleted"),
            "the next group goes to a new file"
        );
    }

    /// The writer's syncs, held until the test lets each go with the outcome it chooses.
    struct HeldSyncs {
        /// What each sync that begins makes durable: "file" or "dir".
        started: mpsc::Receiver<&'static str>,
        /// The outcome of the sync waiting; the real sync is made too when it is `Ok`.
        release: mpsc::Sender<io::Result<()>>,
    }

    impl HeldSyncs {
        fn begins(&self, target: &str) {
            let started = self.started.recv_timeout(Duration::from_secs(10));
            assert_eq!(started, Ok(target), "the next sync to begin");
        }

        fn none_begins(&self) {
            assert!(
                self.started.recv_timeout(Duration::from_millis(200)).is_err(),
                "a sync began"
            );
        }

        fn release(&self, outcome: io::Result<()>) {
            self.release.send(outcome).unwrap();
        }
    }

    fn held_syncs() -> (SyncFn, HeldSyncs) {
        let (started_tx, started) = mpsc::channel();
        let (release, outcomes) = mpsc::channel::<io::Result<()>>();
        let outcomes = Mutex::new(outcomes);
        let system = system_sync();
        let sync: SyncFn = Arc::new(move |target| {
            let kind = match target {
                SyncTarget::File(_) => "file",
                SyncTarget::Dir(_) => "dir",
            };
            let _ = started_tx.send(kind);
            // A test that has ended, or failed and is dropping the log, lets every sync go.
            lock(&outcomes)
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or(Ok(()))
                .and_then(|()| system(target))
        });
        (sync, HeldSyncs { started, release })
    }

    /// The answer, which must come within 10 s.
    async fn answered<T>(answer: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("no answer within 10 s")
    }

    /// Whether `answer` is still unresolved after a while.
    async fn unanswered<T>(answer: &mut Pin<Box<impl Future<Output = T>>>) -> bool {
        tokio::time::timeout(Duration::from_millis(150), answer.as_mut())
            .await
            .is_err()
    }

    fn sessions(path: &Path) -> Vec<String> {
        records(path)
            .iter()
            .map(|record| record["request"]["session_id"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    #[tokio::test]
    async fn no_answer_precedes_the_sync_of_its_record_nor_of_a_new_logs_directory_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let opened = open::open(&config(&path, SyncMode::Batch, None)).unwrap();
        // Opening leaves the directory to the writer, so a start does not wait for the disk.
        assert!(opened.unsynced_dir.is_some(), "opening synced the directory");
        drop(opened);
        std::fs::remove_file(&path).unwrap();

        let (sync, held) = held_syncs();
        let (log, _) = EvidenceLog::open_syncing_with(config(&path, SyncMode::Batch, Some(key())), sync).unwrap();
        let mut a = Box::pin(log.record(request("a"), allow()));
        held.begins("file");
        assert!(unanswered(&mut a).await, "answered before its sync returned");
        // b arrives during a's sync, which began before b existed: b waits for a sync of its own.
        let mut b = Box::pin(log.record(request("b"), allow()));
        held.release(Ok(()));
        // A new log's directory entry is made durable too, before its first record is answered.
        held.begins("dir");
        assert!(
            unanswered(&mut a).await,
            "answered before the directory entry was durable"
        );
        held.release(Ok(()));
        assert_eq!(answered(a).await.unwrap().sequence, 1);
        held.begins("file");
        assert_eq!(sessions(&path), ["a", "b"]);
        assert!(unanswered(&mut b).await, "b was answered before its sync returned");
        held.release(Ok(()));
        assert_eq!(answered(b).await.unwrap().sequence, 2);
        // The directory entry is durable from then on.
        held.none_begins();
        log.close();
        assert!(verify_file(&path, &keys(Some(&key()))).unwrap().valid);
    }

    #[tokio::test]
    async fn a_failed_sync_refuses_its_records_cuts_them_off_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let (sync, held) = held_syncs();
        let (log, _) = EvidenceLog::open_syncing_with(config(&path, SyncMode::Batch, Some(key())), sync).unwrap();
        let kept = log.record(request("kept"), allow());
        held.begins("file");
        held.release(Ok(()));
        held.begins("dir");
        held.release(Ok(()));
        let kept = answered(kept).await.unwrap();
        let durable = std::fs::read(&path).unwrap();

        let lost = log.record(request("lost"), allow());
        held.begins("file");
        assert_eq!(sessions(&path), ["kept", "lost"], "written before its sync");
        held.release(Err(io::Error::other("injected sync failure")));
        let error = answered(lost).await.unwrap_err();
        assert!(matches!(error, EvidenceError::Unavailable { .. }), "{error:?}");
        assert!(error.to_string().contains("injected sync failure"), "{error}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            durable,
            "cut back to the last durable record"
        );

        let next = log.record(request("next"), allow());
        held.begins("file");
        held.release(Ok(()));
        let next = answered(next).await.unwrap();
        assert_eq!(
            next.sequence,
            kept.sequence + 1,
            "the chain goes on from the last durable record"
        );
        log.close();
        assert_eq!(sessions(&path), ["kept", "next"]);
        assert!(verify_file(&path, &keys(Some(&key()))).unwrap().valid);
    }

    #[tokio::test]
    async fn every_sync_mode_writes_a_verifying_chain() {
        for sync in [SyncMode::Always, SyncMode::Batch, SyncMode::None] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("evidence.jsonl");
            let (log, _) = EvidenceLog::open(config(&path, sync, None)).unwrap();
            for i in 0..3 {
                log.record(request(&format!("s{i}")), allow()).await.unwrap();
            }
            log.close();
            let report = verify_file(&path, &keys(None)).unwrap();
            assert!(report.valid && report.records == 3, "{sync:?}: {report:?}");
        }
    }

    /// The size a draft announces (which the daemon charges to the peer's evidence budget) is never below what the
    /// record takes, and at most the overhead above it, signed with either kind of key or unsigned.
    #[tokio::test]
    async fn a_draft_knows_how_large_its_record_will_be_and_names_the_peer() {
        let peer = Peer {
            uid: 4_000_000_000,
            gid: 4_000_000_001,
            pid: Some(i32::MAX),
            groups: vec![1, 2, 3],
        };
        let ed25519 = crate::evidence::SigningKey::ed25519(
            crate::evidence::test_support::ED25519_TEST_KEY.as_bytes(),
            Some(&"k".repeat(64)),
        )
        .unwrap();
        for signing in [None, Some(key()), Some(ed25519)] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("evidence.jsonl");
            let (log, _) = EvidenceLog::open(config(&path, SyncMode::Batch, signing)).unwrap();
            for session in ["first", "second"] {
                let before = std::fs::metadata(&path).unwrap().len();
                let draft = log.draft(request(session), allow(), Some(&peer));
                let estimate = draft.bytes() as u64;
                log.record_draft(draft).await.unwrap();
                let written = std::fs::metadata(&path).unwrap().len() - before;
                assert!(
                    written <= estimate && estimate - written <= 128,
                    "{written} bytes written, {estimate} announced"
                );
            }
            log.close();
            let stored = records(&path);
            assert_eq!(
                stored[1]["peer"],
                serde_json::json!({"uid": 4_000_000_000u32, "gid": 4_000_000_001u32, "pid": i32::MAX}),
                "the supplementary groups are not recorded"
            );
        }
    }

    #[tokio::test]
    async fn close_is_idempotent_and_later_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let (log, _) = EvidenceLog::open(config(&path, SyncMode::Batch, None)).unwrap();
        let other = log.clone();
        log.record(request("s"), allow()).await.unwrap();
        log.close();
        other.close();
        let error = other.record(request("s"), allow()).await.unwrap_err();
        assert!(matches!(error, EvidenceError::Closed { .. }), "{error:?}");
        assert_eq!(error.to_string(), format!("evidence log {} is closed", path.display()));
        assert_eq!(records(&path).len(), 1);
    }

    const FSIZE_CHILD: &str = "CAVRA_EVIDENCE_FSIZE_CHILD";

    /// A real EFBIG from `RLIMIT_FSIZE`. The limit is process-wide, so the scenario runs in a child process: this
    /// test binary again, filtered to this test, which sees `FSIZE_CHILD` and plays the child's part.
    #[test]
    fn fails_closed_on_a_real_write_error_and_resumes_the_chain() {
        if let Ok(dir) = std::env::var(FSIZE_CHILD) {
            return fsize_child(Path::new(&dir));
        }
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "evidence::writer::tests::fails_closed_on_a_real_write_error_and_resumes_the_chain",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(FSIZE_CHILD, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "the child ran no test:\n{stdout}");

        let path = dir.path().join("evidence.jsonl");
        let report = verify_file(&path, &keys(Some(&key()))).unwrap();
        assert!(report.valid, "{report:?}");
        let sessions: Vec<_> = records(&path)
            .iter()
            .map(|r| r["request"]["session_id"].clone())
            .collect();
        assert_eq!(sessions, ["before-1", "before-2", "after"]);
    }

    fn fsize_child(dir: &Path) {
        use nix::sys::signal::{SigHandler, Signal, signal};
        // Without this, exceeding the limit kills the process; ignored, the write fails with EFBIG instead.
        // SAFETY: installs SIG_IGN, no handler code runs.
        unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) }.unwrap();
        let limit_file_size = |soft: &str| {
            let status = Command::new("prlimit")
                .arg(format!("--pid={}", std::process::id()))
                .arg(format!("--fsize={soft}:unlimited"))
                .status()
                .expect("run prlimit (util-linux)");
            assert!(status.success(), "prlimit --fsize={soft}");
        };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let path = dir.join("evidence.jsonl");
            let (log, _) = EvidenceLog::open(config(&path, SyncMode::Batch, Some(key()))).unwrap();
            log.record(request("before-1"), allow()).await.unwrap();
            log.record(request("before-2"), allow()).await.unwrap();
            let durable = std::fs::read(&path).unwrap();

            // Room for 100 more bytes: the next record is cut short mid-write.
            limit_file_size(&(durable.len() + 100).to_string());
            for attempt in 0..2 {
                let error = log.record(request("lost"), allow()).await.unwrap_err();
                assert!(matches!(error, EvidenceError::Unavailable { .. }), "{error:?}");
                let message = error.to_string();
                assert!(
                    message.starts_with(&format!("evidence log {} is unavailable: ", path.display()))
                        && message.contains("File too large"),
                    "{message}"
                );
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    durable,
                    "attempt {attempt} left bytes behind"
                );
            }

            limit_file_size("unlimited");
            let response = log.record(request("after"), allow()).await.unwrap().response;
            log.close();
            let stored = records(&path);
            assert_eq!(stored.len(), 3);
            assert_eq!(stored[2]["sequence"], 3);
            assert_eq!(stored[2]["previous_hash"], stored[1]["record_hash"]);
            assert_eq!(stored[2]["response"], serde_json::to_value(&response).unwrap());
        });
    }
}
