//! The evidence log handle and its single writer thread.
//!
//! Every connection sends its record to one thread that owns the file, so records get one total order with no
//! sequence gaps. The writer takes everything queued when it wakes, writes it in one write, makes it durable, and
//! only then answers the callers. If the write or sync fails, it cuts the file back and answers every caller in the
//! batch with an error: a decision whose evidence was not kept must not be acted on.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;

use nix::fcntl::Flock;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::record::{Chain, Prepared, Sealed, reference};
use super::{EvidenceConfig, EvidenceError, OpenReport, SyncMode, open};
use crate::contract::{DecisionResponse, EvaluateRequest};
use crate::fsutil::{self, SafeDir, Trust};

/// A cheap handle to an open evidence log, shared by all connections.
#[derive(Clone)]
pub struct EvidenceLog {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// `None` once closed.
    jobs: Mutex<Option<mpsc::Sender<Message>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Job {
    record: Prepared,
    /// Answered once the record is durable.
    reply: oneshot::Sender<Result<Sealed, EvidenceError>>,
}

/// A decision whose record is durable.
#[derive(Debug)]
pub struct Recorded {
    /// The decision with the reference to its record among its `evidence_refs`.
    pub response: DecisionResponse,
    /// `response` exactly as the record stores it (compact Go JSON, no newline), to answer with as it is.
    pub encoded: Vec<u8>,
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
    /// The path names another file (rotation); recording continues there. The previous file's chain ends here.
    Switched {
        previous_sequence: i64,
        previous_hash: String,
        /// Records already in the new file (0 for a fresh one, whose chain starts at sequence 1).
        records: u64,
    },
}

impl EvidenceLog {
    /// Opens the log (see [`OpenReport`]) and starts its writer.
    pub fn open(config: EvidenceConfig) -> Result<(EvidenceLog, OpenReport), EvidenceError> {
        let opened = open::open(&config)?;
        let path = config.path.clone();
        let writer = Writer {
            // Recovery is the operator's one-off decision at start, never repeated by a later reopen.
            config: EvidenceConfig {
                recover: false,
                ..config
            },
            file: opened.file,
            chain: opened.chain,
            restore_len: None,
            failing: false,
            group: Vec::new(),
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
            path,
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
    /// The record is encoded here, on the caller's thread, so the one writer thread only chains and writes.
    pub fn record(
        &self,
        request: EvaluateRequest,
        mut response: DecisionResponse,
    ) -> impl Future<Output = Result<Recorded, EvidenceError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let record = Prepared::new(request.into(), &mut response);
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
            })
        }
    }

    /// Opens the log path again, after the records queued before this call: when rotation has put another file
    /// there (logrotate's `create`), recording moves to it, verifying and continuing whatever chain it holds.
    pub fn reopen(&self) -> impl Future<Output = Result<Reopened, EvidenceError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let submitted = self.submit(Message::Reopen(reply));
        let closed = self.closed();
        async move {
            submitted?;
            answer.await.map_err(|_| closed)?
        }
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

/// The largest group buffer the writer keeps for the next group.
const GROUP_BUFFER_KEPT: usize = 1 << 20;

struct Writer {
    config: EvidenceConfig,
    file: Flock<File>,
    /// The last durable record.
    chain: Chain,
    /// Set when cutting a failed batch off the file failed too: cut there before the next write.
    restore_len: Option<u64>,
    /// In a failure episode: logged once when it starts and once when it ends.
    failing: bool,
    /// The group being written, kept between groups so its allocation is reused.
    group: Vec<u8>,
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
        let path = &self.config.path;
        let identity = |metadata: std::fs::Metadata| (metadata.dev(), metadata.ino());
        let open_now = self
            .file
            .metadata()
            .map(identity)
            .map_err(|source| EvidenceError::Read {
                path: path.clone(),
                source,
            })?;
        // What the path names now, reached as opening reaches it and without following a link at the end.
        let at_path = SafeDir::of_file(path, None, &Trust::effective_user())
            .and_then(|(dir, name)| dir.entry(&name))
            .ok()
            .flatten()
            .map(|stat| fsutil::identity(&stat));
        if at_path == Some(open_now) {
            return Ok(Reopened::Unchanged);
        }
        let opened = open::open(&self.config)?;
        let previous = std::mem::replace(&mut self.chain, opened.chain);
        self.file = opened.file;
        self.restore_len = None;
        tracing::info!(
            path = %path.display(),
            previous_sequence = previous.sequence,
            previous_hash = %previous.record_hash,
            records = opened.report.records,
            "evidence log reopened after rotation; the previous file ends at sequence {} with record hash {}",
            previous.sequence,
            previous.record_hash,
        );
        Ok(Reopened::Switched {
            previous_sequence: previous.sequence,
            previous_hash: previous.record_hash,
            records: opened.report.records,
        })
    }

    /// Writes `jobs` as one group and answers them all.
    fn commit(&mut self, jobs: Vec<Job>) {
        let mut chain = self.chain.clone();
        let mut bytes = std::mem::take(&mut self.group);
        bytes.clear();
        bytes.reserve(jobs.iter().map(|job| job.record.encoded_len() + 512).sum());
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            let timestamp = crate::contract::timestamp(OffsetDateTime::now_utc());
            let sealed = chain.seal(job.record, &timestamp, self.config.signing.as_ref(), &mut bytes);
            answers.push((job.reply, sealed));
        }
        let persisted = self.persist(&bytes);
        // Kept unless a burst made it unusually large, so an idle daemon does not hold a burst's memory.
        if bytes.capacity() <= GROUP_BUFFER_KEPT {
            self.group = bytes;
        }
        // A caller that went away no longer needs its answer, so send results are ignored.
        match persisted {
            Ok(()) => {
                self.chain = chain;
                if self.failing {
                    self.failing = false;
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
                if !self.failing {
                    self.failing = true;
                    tracing::error!(
                        path = %self.config.path.display(),
                        %error,
                        "evidence log write failed; decisions fail closed until it recovers"
                    );
                }
                let error = Arc::new(error);
                for (reply, _) in answers {
                    let _ = reply.send(Err(EvidenceError::Unavailable {
                        path: self.config.path.clone(),
                        source: Arc::clone(&error),
                    }));
                }
            }
        }
    }

    /// Appends `bytes` and makes them durable per the sync mode. On failure, cuts the file back to where it was so
    /// no partial record stays and the next batch continues from the last durable record.
    fn persist(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(len) = self.restore_len {
            self.file.set_len(len)?;
            self.restore_len = None;
        }
        let len = self.file.metadata()?.len();
        let written = (&*self.file).write_all(bytes).and_then(|()| match self.config.sync {
            SyncMode::None => Ok(()),
            SyncMode::Always | SyncMode::Batch => self.file.sync_data(),
        });
        if written.is_err() && self.file.set_len(len).is_err() {
            self.restore_len = Some(len);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::evidence::test_support::{allow, config, key, records, request};
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
            let (session, Recorded { response, encoded }) = task.await.unwrap();
            assert_eq!(response.evidence_refs.len(), 2, "{response:?}");
            assert_eq!(response.evidence_refs[0], "evidence://s/d");
            let id = response.evidence_refs[1]
                .strip_prefix("go-daemon-evidence://")
                .unwrap()
                .to_owned();
            answered.insert(id, (session, response, encoded));
        }
        log.close();

        let stored = records(&path);
        let lines = std::fs::read_to_string(&path).unwrap();
        assert_eq!(stored.len(), N);
        for ((index, record), line) in stored.iter().enumerate().zip(lines.lines()) {
            assert_eq!(record["sequence"], index as u64 + 1);
            // Each caller got exactly the response stored under its own record, also byte for byte.
            let (session, response, encoded) = &answered[record["record_id"].as_str().unwrap()];
            assert_eq!(record["request"]["session_id"], session.as_str());
            assert_eq!(record["response"], serde_json::to_value(response).unwrap());
            let encoded = std::str::from_utf8(encoded).unwrap();
            assert!(
                line.contains(&format!(r#","response":{encoded},"signature":"#)),
                "{line}\n{encoded}"
            );
        }
        let report = verify_file(&path, Some(&key())).unwrap();
        assert!(report.valid, "{report:?}");
        assert_eq!((report.records, report.signed_records), (N as u64, N as u64));
    }

    #[tokio::test]
    async fn reopen_follows_rotation_to_a_new_chain_and_ignores_an_unrotated_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let rotated = dir.path().join("evidence.jsonl.1");
        let (log, _) = EvidenceLog::open(config(&path, SyncMode::Batch, Some(key()))).unwrap();
        log.record(request("a"), allow()).await.unwrap();
        log.record(request("b"), allow()).await.unwrap();
        assert_eq!(log.reopen().await.unwrap(), Reopened::Unchanged);

        std::fs::rename(&path, &rotated).unwrap();
        let last_hash = records(&rotated)[1]["record_hash"].as_str().unwrap().to_owned();
        let pending = log.record(request("c"), allow());
        let switched = log.reopen().await.unwrap();
        pending.await.unwrap();
        assert_eq!(
            switched,
            Reopened::Switched {
                previous_sequence: 3,
                previous_hash: records(&rotated)[2]["record_hash"].as_str().unwrap().to_owned(),
                records: 0,
            },
            "a record queued before the reopen still goes to the old file"
        );
        assert_ne!(records(&rotated)[2]["previous_hash"], serde_json::Value::Null);
        assert_eq!(records(&rotated)[2]["previous_hash"], last_hash.as_str());

        log.record(request("d"), allow()).await.unwrap();
        log.close();
        let fresh = records(&path);
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0]["sequence"], 1);
        assert!(fresh[0].get("previous_hash").is_none(), "a new file starts a new chain");
        for file in [&path, &rotated] {
            assert!(verify_file(file, Some(&key())).unwrap().valid);
        }
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
            let report = verify_file(&path, None).unwrap();
            assert!(report.valid && report.records == 3, "{sync:?}: {report:?}");
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
        let report = verify_file(&path, Some(&key())).unwrap();
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
