//! Taking over an evidence log: at startup, lock it, put a torn last record aside, and verify the chain so that new
//! records continue it; later, when the path no longer names the file being written (rotation, deletion), open
//! what is there now and start it with a link record, so the chain goes on across files.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use time::OffsetDateTime;

use super::record::{Chain, EvidenceRecord, Link};
use super::verify::{Signatures, Verifier, is_blank};
use super::{EvidenceConfig, EvidenceError, SyncMode, VerifyingKeys};
use crate::fsutil::{FsError, SafeDir, Trust, mode};

/// Modes of what opening creates: decisions are not for every local user to read.
const DIR_MODE: u32 = 0o750;
const FILE_MODE: u32 = 0o640;

/// What opening found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Records in the log that the new ones continue (0 for a new or recovered log).
    pub records: u64,
    /// Where an incomplete last line (a crash mid-write) was moved; the log was cut back to its last complete line.
    pub torn: Option<PathBuf>,
    /// Where a log that could not be continued was moved: with `recover`, one that did not verify; on a reopen, a
    /// file someone else put at the path.
    pub set_aside: Option<PathBuf>,
    /// The link record the new file starts with, when it continues a chain from another file.
    pub link: Option<Link>,
}

/// An evidence log ready for appending.
pub(crate) struct Opened {
    pub(crate) file: Flock<File>,
    pub(crate) chain: Chain,
    /// The file's length: nobody but the writer changes it.
    pub(crate) len: u64,
    pub(crate) report: OpenReport,
    /// The directory holding the file, when its entry for the file may not be durable yet (the file may be new):
    /// the writer syncs it before acknowledging the first record it writes there. Syncing it here instead would make
    /// every start wait for the disk, which, busy with other writes, held starts up for tens to hundreds of
    /// milliseconds.
    pub(crate) unsynced_dir: Option<SafeDir>,
    /// The link record this file starts with, as written (without its newline), when it was just written.
    pub(crate) link_line: Option<Vec<u8>>,
}

/// The keys the existing records' signatures are checked with: those of the signing key and any others given.
/// Without a signing key, signatures are not checked (hashes and the chain still are).
fn tail_keys(config: &EvidenceConfig) -> Option<VerifyingKeys> {
    config.signing.as_ref().map(|key| config.verifying.clone().with(key))
}

/// Opens the log at startup.
pub(crate) fn open(config: &EvidenceConfig) -> Result<Opened, EvidenceError> {
    let path = config.path.as_path();
    let (dir, name, file) = locked_at(path)?;
    let now = OffsetDateTime::now_utc();
    let keys = tail_keys(config);
    let signatures = keys.as_ref().map_or(Signatures::Ignore, Signatures::Check);
    let mut verifier = Verifier::new(path, signatures);
    let (complete_len, torn) = scan(&file, path, &mut verifier)?;

    if let Some(first_error) = verifier.first_error() {
        if !config.recover {
            return Err(EvidenceError::Broken {
                path: path.to_owned(),
                first_error: first_error.to_owned(),
            });
        }
        // The whole file, torn tail included, stays as it was for whoever investigates.
        let aside = set_aside(&dir, &name, path, "unverified", now)?;
        tracing::warn!(
            path = %path.display(),
            aside = %aside.display(),
            error = first_error,
            "evidence log does not verify; set it aside and started a new file that links to its last record"
        );
        let last = verifier.last().cloned().unwrap_or_default();
        drop(file);
        let mut opened = fresh(config, &last, "recovered")?;
        opened.report.set_aside = Some(aside);
        return Ok(opened);
    }

    let torn = match torn {
        Some(bytes) => {
            let aside = move_torn_tail(&file, &dir, path, complete_len, &bytes, now)?;
            tracing::warn!(
                path = %path.display(),
                aside = %aside.display(),
                bytes = bytes.len(),
                "evidence log ended in an incomplete record; moved it aside"
            );
            Some(aside)
        }
        None => None,
    };
    Ok(Opened {
        link_line: None,
        file,
        chain: verifier.chain(),
        len: complete_len,
        report: OpenReport {
            records: verifier.records(),
            torn,
            set_aside: None,
            link: None,
        },
        unsynced_dir: Some(dir),
    })
}

/// Opens the path anew after the file that held `chain` stopped being there (`reason`: rotation, deleted,
/// modified). A file that already ends with the chain's last record (the same log, put back) is continued; any
/// other non-empty file is not this daemon's and is set aside; otherwise the new file starts with a link record.
pub(crate) fn reopen(config: &EvidenceConfig, chain: &Chain, reason: &str) -> Result<Opened, EvidenceError> {
    let path = config.path.as_path();
    let (dir, name, file) = locked_at(path)?;
    let len = file
        .metadata()
        .map_err(|source| EvidenceError::Read {
            path: path.to_owned(),
            source,
        })?
        .len();
    if len == 0 {
        return link(config, dir, file, chain, reason);
    }
    let keys = tail_keys(config);
    let mut verifier = Verifier::new(path, keys.as_ref().map_or(Signatures::Ignore, Signatures::Check));
    let (complete_len, torn) = scan(&file, path, &mut verifier)?;
    if verifier.first_error().is_none() && torn.is_none() && verifier.chain() == *chain {
        return Ok(Opened {
            link_line: None,
            file,
            chain: chain.clone(),
            len: complete_len,
            report: OpenReport {
                records: verifier.records(),
                torn: None,
                set_aside: None,
                link: None,
            },
            unsynced_dir: Some(dir),
        });
    }
    drop(file);
    let aside = set_aside(&dir, &name, path, "replaced", OffsetDateTime::now_utc())?;
    tracing::warn!(
        path = %path.display(),
        aside = %aside.display(),
        "another file was put at the evidence log's path; set it aside and continued the chain in a new file"
    );
    let mut opened = fresh(config, chain, reason)?;
    opened.report.set_aside = Some(aside);
    Ok(opened)
}

/// A new, empty log at the path, started with a link to `chain` (when it has a record).
fn fresh(config: &EvidenceConfig, chain: &Chain, reason: &str) -> Result<Opened, EvidenceError> {
    let (dir, _, file) = locked_at(&config.path)?;
    link(config, dir, file, chain, reason)
}

/// Writes the link record to `chain` at the start of the empty `file` in `dir`, durably (per the sync mode: the file's
/// entry in `dir` too).
fn link(
    config: &EvidenceConfig,
    dir: SafeDir,
    file: Flock<File>,
    chain: &Chain,
    reason: &str,
) -> Result<Opened, EvidenceError> {
    let mut chain = chain.clone();
    // Only a record that could have been written links: a log set aside by recovery can hold anything. Without a
    // link, the new file starts a chain of its own.
    let linkable = chain.sequence > 0 && chain.sequence < i64::MAX && !chain.record_hash.is_empty();
    if !linkable {
        chain = Chain::default();
    }
    let mut report = OpenReport {
        records: 0,
        torn: None,
        set_aside: None,
        link: None,
    };
    let mut len = 0;
    let mut unsynced_dir = Some(dir);
    let mut link_line = None;
    if linkable {
        let previous = chain.clone();
        let mut line = Vec::new();
        let timestamp = crate::contract::timestamp(OffsetDateTime::now_utc());
        chain.seal_link(reason, &timestamp, config.signing.as_ref(), &mut line);
        (&*file)
            .write_all(&line)
            .and_then(|()| match config.sync {
                SyncMode::None => Ok(()),
                SyncMode::Always | SyncMode::Batch => file.sync_data(),
            })
            .map_err(|source| EvidenceError::Open {
                path: config.path.clone(),
                source,
            })?;
        if config.sync != SyncMode::None
            && let Some(dir) = unsynced_dir.take()
        {
            dir.sync().map_err(|error| unsafe_path(&config.path, error))?;
        }
        len = line.len() as u64;
        report.records = 1;
        link_line = Some(line[..line.len() - 1].to_vec());
        report.link = Some(Link {
            previous_sequence: previous.sequence,
            previous_record_hash: previous.record_hash,
            reason: reason.to_owned(),
        });
    }
    Ok(Opened {
        file,
        chain,
        len,
        report,
        unsynced_dir,
        link_line,
    })
}

/// The log's directory (checked, created if missing: see [`crate::fsutil`]), its name there, and the log opened
/// (created if missing) and locked.
fn locked_at(path: &Path) -> Result<(SafeDir, std::ffi::OsString, Flock<File>), EvidenceError> {
    let (dir, name) = SafeDir::of_file(path, Some(mode(DIR_MODE)), &Trust::effective_user())
        .map_err(|error| unsafe_path(path, error))?;
    let file = open_locked(&dir, &name, path)?;
    Ok((dir, name, file))
}

/// Opens (creating it) and exclusively locks the log, so that no second daemon or one-shot run appends to it and
/// forks the chain. Never through a link: see [`crate::fsutil`]. A new file's directory entry is made durable before
/// anything written to it is acknowledged (see [`Opened::unsynced_dir`]).
fn open_locked(dir: &SafeDir, name: &OsStr, path: &Path) -> Result<Flock<File>, EvidenceError> {
    let file = dir
        .open_file(name, OFlag::O_RDWR | OFlag::O_APPEND, Some(mode(FILE_MODE)))
        .map_err(|error| unsafe_path(path, error))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(file) => Ok(file),
        Err((_, Errno::EWOULDBLOCK)) => Err(EvidenceError::Locked { path: path.to_owned() }),
        Err((_, errno)) => Err(EvidenceError::Open {
            path: path.to_owned(),
            source: errno.into(),
        }),
    }
}

/// What the file system refused, as an evidence error: an operating-system error keeps the log's own message.
fn unsafe_path(path: &Path, error: FsError) -> EvidenceError {
    match error {
        FsError::Io { source, .. } => EvidenceError::Open {
            path: path.to_owned(),
            source,
        },
        error => EvidenceError::Unsafe {
            path: path.to_owned(),
            source: error,
        },
    }
}

/// How many of the last records opening checks. The whole log is `--verify-evidence`'s job: checking it all at
/// every start made restarts take seconds per million records, past a service manager's start timeout.
pub(crate) const TAIL_RECORDS: u64 = 1000;

/// What scanning found: the length of the log's complete lines, and its torn last line if it has one.
type Scanned = (u64, Option<Vec<u8>>);

/// Reads the last [`TAIL_RECORDS`] complete lines through `verifier`, the first record among them anchoring the
/// chain; a log that short is read whole, and so is one whose tail holds no record at all (only blank lines), so
/// the chain is never restarted by mistake. Returns the length of the complete lines and the torn tail, if any.
fn scan(file: &File, path: &Path, verifier: &mut Verifier) -> Result<Scanned, EvidenceError> {
    let read_error = |source| EvidenceError::Read {
        path: path.to_owned(),
        source,
    };
    let start = tail_start(file, TAIL_RECORDS).map_err(read_error)?;
    let base = if start == 0 {
        0
    } else {
        link_base(file).map_err(read_error)?
    };
    match scan_from(file, path, verifier, start, base)? {
        Some(scanned) => Ok(scanned),
        // Blank lines leave the verifier untouched, so it can start over from the beginning.
        None => Ok(scan_from(file, path, verifier, 0, 0)?.expect("a scan from the start needs no anchor")),
    }
}

/// The sequence the file's chain continues from: that of the record its first line links to, or 0.
fn link_base(file: &File) -> io::Result<i64> {
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(0))?;
    let mut first = Vec::new();
    reader.read_until(b'\n', &mut first)?;
    Ok(serde_json::from_slice::<EvidenceRecord>(&first)
        .ok()
        .and_then(|record| record.link)
        .map_or(0, |link| link.previous_sequence))
}

/// Scans complete lines from `start`; `None` when `start` is not the beginning and no record was found to anchor on.
/// `base`: see [`Verifier::anchor`]. Lines are read and checked in batches of [`TAIL_RECORDS`], each batch examined
/// on every CPU (see [`Verifier::lines`]), so the check at start takes a fraction of its time on a host with many.
fn scan_from(
    file: &File,
    path: &Path,
    verifier: &mut Verifier,
    start: u64,
    base: i64,
) -> Result<Option<Scanned>, EvidenceError> {
    let read_error = |source| EvidenceError::Read {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(start)).map_err(read_error)?;
    let mut complete_len = start;
    let mut anchored = start == 0;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut line = Vec::new();
        let read = reader.read_until(b'\n', &mut line).map_err(read_error)?;
        let torn = read > 0 && line.last() != Some(&b'\n');
        if read > 0 && !torn {
            complete_len += read as u64;
            batch.push(line);
            if batch.len() == TAIL_RECORDS as usize {
                check_batch(verifier, &mut batch, &mut anchored, base);
            }
            continue;
        }
        check_batch(verifier, &mut batch, &mut anchored, base);
        return Ok(anchored.then_some((complete_len, torn.then_some(line))));
    }
}

/// Checks and empties `batch`, first anchoring the chain on its first record when it is not anchored yet.
fn check_batch(verifier: &mut Verifier, batch: &mut Vec<Vec<u8>>, anchored: &mut bool, base: i64) {
    if !*anchored && let Some(first) = batch.iter().find(|line| !is_blank(line)) {
        // A first line that is not a record cannot anchor; it is then checked, and reported, like any other.
        verifier.anchor(first, base);
        *anchored = true;
    }
    verifier.lines(batch);
    batch.clear();
}

/// Where the last `lines` newline-terminated lines begin (0 if the file has no more than that): just after the
/// newline before them, found by reading backwards from the end.
fn tail_start(file: &File, lines: u64) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let length = file.metadata()?.len();
    let mut reader = file;
    let mut end = length;
    let mut newlines = 0;
    let mut buffer = vec![0u8; CHUNK as usize];
    while end > 0 {
        let begin = end.saturating_sub(CHUNK);
        let chunk = &mut buffer[..(end - begin) as usize];
        reader.seek(SeekFrom::Start(begin))?;
        reader.read_exact(chunk)?;
        for (offset, byte) in chunk.iter().enumerate().rev() {
            // The newline ending the last line counts too: the line before the window ends at the (lines + 1)th.
            if *byte == b'\n' {
                newlines += 1;
                if newlines == lines + 1 {
                    return Ok(begin + offset as u64 + 1);
                }
            }
        }
        end = begin;
    }
    Ok(0)
}

/// Saves the torn bytes to `<log>.torn-<time>` (durably, a new file beside the log) before cutting them off the
/// log.
fn move_torn_tail(
    file: &File,
    dir: &SafeDir,
    path: &Path,
    complete_len: u64,
    bytes: &[u8],
    now: OffsetDateTime,
) -> Result<PathBuf, EvidenceError> {
    let mut attempt = 0;
    let (aside, created) = loop {
        let aside = aside_path(path, "torn", now, attempt);
        match dir.create_file(file_name(&aside), OFlag::O_WRONLY, mode(FILE_MODE)) {
            Err(error) if error.io_kind() == Some(io::ErrorKind::AlreadyExists) => attempt += 1,
            created => break (aside, created),
        }
    };
    let set_aside_error = |source| EvidenceError::SetAside {
        path: path.to_owned(),
        aside: aside.clone(),
        source,
    };
    let mut torn = created.map_err(|error| match error {
        FsError::Io { source, .. } => set_aside_error(source),
        error => unsafe_path(path, error),
    })?;
    torn.write_all(bytes)
        .and_then(|()| torn.sync_all())
        .map_err(set_aside_error)?;
    dir.sync().map_err(|error| unsafe_path(path, error))?;
    file.set_len(complete_len)
        .and_then(|()| file.sync_all())
        .map_err(set_aside_error)?;
    Ok(aside)
}

/// Renames the log to `<log>.unverified-<time>`, in its directory.
fn set_aside(
    dir: &SafeDir,
    name: &OsStr,
    path: &Path,
    kind: &str,
    now: OffsetDateTime,
) -> Result<PathBuf, EvidenceError> {
    let mut attempt = 0;
    let mut aside = aside_path(path, kind, now, attempt);
    // We hold the log's lock, so nobody else is setting it aside; only an earlier run's file can be in the way.
    while dir
        .entry(file_name(&aside))
        .map_err(|error| unsafe_path(path, error))?
        .is_some()
    {
        attempt += 1;
        aside = aside_path(path, kind, now, attempt);
    }
    dir.rename(name, file_name(&aside))
        .and_then(|()| dir.sync())
        .map_err(|error| match error {
            FsError::Io { source, .. } => EvidenceError::SetAside {
                path: path.to_owned(),
                aside: aside.clone(),
                source,
            },
            error => unsafe_path(path, error),
        })?;
    Ok(aside)
}

/// [`set_aside`] for the file at `path` now, reached through its checked directory (the writer's, when the file it
/// holds was modified under it).
pub(crate) fn set_aside_path(path: &Path, kind: &str, now: OffsetDateTime) -> Result<PathBuf, EvidenceError> {
    let (dir, name) =
        SafeDir::of_file(path, None, &Trust::effective_user()).map_err(|error| unsafe_path(path, error))?;
    set_aside(&dir, &name, path, kind, now)
}

/// The last component of an aside path, which lives in the log's directory.
fn file_name(aside: &Path) -> &OsStr {
    aside.file_name().expect("an aside path names a file")
}

/// `<log>.<kind>-20261125T173000Z`, then `.1`, `.2`, ... if that name is taken.
fn aside_path(path: &Path, kind: &str, now: OffsetDateTime, attempt: u32) -> PathBuf {
    let now = now.to_offset(time::UtcOffset::UTC);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        ".{kind}-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    ));
    if attempt > 0 {
        name.push(format!(".{attempt}"));
    }
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::evidence::test_support::{ED25519_TEST_KEY, allow, config, key, keys, records, request};
    use crate::evidence::{EvidenceLog, SigningKey, SyncMode, verify_file};

    /// Writes `n` records to a new log at `path`.
    async fn write(path: &Path, signing: Option<SigningKey>, n: usize) {
        let (log, _) = EvidenceLog::open(config(path, SyncMode::None, signing)).unwrap();
        for i in 0..n {
            log.record(request(&format!("s{i}")), allow()).await.unwrap();
        }
        log.close();
    }

    /// Paths in `dir` other than the log itself.
    fn asides(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.file_name().unwrap() != "evidence.jsonl")
            .collect();
        found.sort();
        found
    }

    #[tokio::test]
    async fn reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        write(&path, Some(key()), 2).await;
        let (log, report) = EvidenceLog::open(config(&path, SyncMode::Batch, Some(key()))).unwrap();
        assert_eq!(
            report,
            OpenReport {
                records: 2,
                torn: None,
                set_aside: None,
                link: None
            }
        );
        log.record(request("third"), allow()).await.unwrap();
        log.close();
        let stored = records(&path);
        assert_eq!(stored[2]["sequence"], 3);
        assert_eq!(stored[2]["previous_hash"], stored[1]["record_hash"]);
        let report = verify_file(&path, &keys(Some(&key()))).unwrap();
        assert!(report.valid && report.records == 3, "{report:?}");
    }

    #[tokio::test]
    async fn new_logs_and_directories_are_not_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/evidence.jsonl");
        write(&path, None, 1).await;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path) & !0o640, 0, "log mode {:o}", mode(&path));
        assert_eq!(mode(&dir.path().join("a/b")) & !0o750, 0);
        assert_eq!(mode(&dir.path().join("a")) & !0o750, 0);
    }

    #[tokio::test]
    async fn links_at_the_log_and_its_asides_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let target = dir.path().join("elsewhere.jsonl");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let error = EvidenceLog::open(config(&path, SyncMode::None, None)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "cannot open evidence log {0}: {0} is a symbolic link; cavra-runtime does not follow links to the \
                 files it writes or acts on",
                path.display()
            )
        );
        assert!(!target.exists(), "the link's target was not created");

        // A torn tail goes to a new file: a link planted under the first free name is skipped, not written through.
        std::fs::remove_file(&path).unwrap();
        write(&path, None, 1).await;
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(b"{\"torn");
        std::fs::write(&path, &text).unwrap();
        let now = OffsetDateTime::now_utc();
        for seconds in 0..3 {
            let planted = aside_path(&path, "torn", now + time::Duration::seconds(seconds), 0);
            std::os::unix::fs::symlink(&target, planted).unwrap();
        }
        let (log, report) = EvidenceLog::open(config(&path, SyncMode::None, None)).unwrap();
        log.close();
        let torn = report.torn.expect("a torn tail");
        assert!(!torn.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&torn).unwrap(), b"{\"torn");
        assert!(!target.exists());
    }

    #[tokio::test]
    async fn a_second_writer_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        let (log, _) = EvidenceLog::open(config(&path, SyncMode::None, None)).unwrap();
        let error = EvidenceLog::open(config(&path, SyncMode::None, None)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("evidence log {} is in use by another process", path.display())
        );
        log.close();
        drop(log);
        EvidenceLog::open(config(&path, SyncMode::None, None)).unwrap();
    }

    #[tokio::test]
    async fn a_torn_tail_is_moved_aside_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        write(&path, None, 2).await;
        let complete = std::fs::read(&path).unwrap();
        let torn = br#"{"schema_version":"cavra.go-daemon.evidence.v1","product":"CAV"#;
        std::fs::write(&path, [complete.as_slice(), torn].concat()).unwrap();

        let (log, report) = EvidenceLog::open(config(&path, SyncMode::Batch, None)).unwrap();
        let aside = report.torn.clone().expect("torn tail reported");
        assert_eq!(report.records, 2);
        assert_eq!(asides(dir.path()), vec![aside.clone()]);
        let name = aside.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("evidence.jsonl.torn-") && name.ends_with('Z') && name.len() == 36,
            "{name}"
        );
        assert_eq!(std::fs::read(&aside).unwrap(), torn);
        assert_eq!(std::fs::read(&path).unwrap(), complete);

        log.record(request("after"), allow()).await.unwrap();
        log.close();
        let report = verify_file(&path, &keys(None)).unwrap();
        assert!(report.valid && report.records == 3, "{report:?}");
    }

    #[tokio::test]
    async fn a_broken_chain_is_refused_untouched_and_recover_sets_it_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        write(&path, None, 3).await;
        let tampered = std::fs::read_to_string(&path).unwrap().replacen("s1", "s9", 1);
        let bytes = [tampered.as_bytes(), b"{\"torn"].concat();
        std::fs::write(&path, &bytes).unwrap();

        let error = EvidenceLog::open(config(&path, SyncMode::Batch, None)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "evidence log {} does not verify: record 2 hash mismatch; start with --evidence-recover to set it aside",
                path.display()
            )
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "a refused log is left as it was");
        assert!(asides(dir.path()).is_empty());

        let mut recovering = config(&path, SyncMode::Batch, None);
        recovering.recover = true;
        let (log, report) = EvidenceLog::open(recovering).unwrap();
        let aside = report.set_aside.clone().expect("set aside");
        // The new file starts with a link to the last record the old one held, tampered or not.
        let third: serde_json::Value = serde_json::from_str(tampered.lines().nth(2).unwrap()).unwrap();
        let last_hash = third["record_hash"].as_str().unwrap().to_owned();
        assert_eq!(
            (report.records, report.torn.as_ref(), report.link.clone()),
            (
                1,
                None,
                Some(Link {
                    previous_sequence: 3,
                    previous_record_hash: last_hash.clone(),
                    reason: "recovered".into()
                })
            )
        );
        assert_eq!(asides(dir.path()), vec![aside.clone()]);
        assert!(
            aside
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("evidence.jsonl.unverified-"),
            "{aside:?}"
        );
        assert_eq!(
            std::fs::read(&aside).unwrap(),
            bytes,
            "the whole log, torn tail included"
        );

        log.record(request("fresh"), allow()).await.unwrap();
        log.close();
        let stored = records(&path);
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0]["event_type"], "cavra.runtime.evidence.link");
        assert_eq!(stored[0]["link"]["previous_record_hash"], last_hash.as_str());
        assert_eq!(
            (stored[0]["sequence"].as_i64(), stored[1]["sequence"].as_i64()),
            (Some(4), Some(5))
        );
        let report = verify_file(&path, &keys(None)).unwrap();
        assert!(report.valid && report.records == 2, "{report:?}");
    }

    #[tokio::test]
    async fn recovery_links_only_to_a_record_that_could_have_been_written() {
        for last in [
            r#"{"sequence":-5,"record_hash":"h","response":{"decision":"allow","severity":"low"}}"#,
            "{}",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("evidence.jsonl");
            std::fs::write(&path, format!("{last}\n")).unwrap();
            let mut recovering = config(&path, SyncMode::None, None);
            recovering.recover = true;
            let (log, report) = EvidenceLog::open(recovering).unwrap();
            assert_eq!((report.records, report.link.as_ref()), (0, None), "{last}");
            log.record(request("fresh"), allow()).await.unwrap();
            log.close();
            assert_eq!(records(&path)[0]["sequence"], 1, "{last}: a chain of its own");
            assert!(verify_file(&path, &keys(None)).unwrap().valid);
        }
    }

    #[tokio::test]
    async fn with_a_key_an_unsigned_tail_is_refused_naming_the_first_unsigned_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        write(&path, Some(key()), 2).await;
        // Records appended without the key: what an attacker without it can add.
        let (log, _) = EvidenceLog::open(config(&path, SyncMode::None, None)).unwrap();
        log.record(request("forged"), allow()).await.unwrap();
        log.record(request("forged-2"), allow()).await.unwrap();
        log.close();
        let error = EvidenceLog::open(config(&path, SyncMode::None, Some(key()))).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "evidence log {} does not verify: record 3 is not signed: with a key given, every record must be \
                 signed; start with --evidence-recover to set it aside",
                path.display()
            )
        );
        // An Ed25519 key sees the HMAC-signed records as not its own, unless their key is given too.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        write(&path, Some(key()), 1).await;
        let ed = SigningKey::ed25519(ED25519_TEST_KEY.as_bytes(), None).unwrap();
        let error = EvidenceLog::open(config(&path, SyncMode::None, Some(ed.clone()))).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("record 1 is signed with HMAC-SHA256, but no HMAC key was given"),
            "{error}"
        );
        let mut changing = config(&path, SyncMode::None, Some(ed));
        changing.verifying = VerifyingKeys::of(&key());
        let (log, _) = EvidenceLog::open(changing).unwrap();
        log.record(request("after-the-change"), allow()).await.unwrap();
        log.close();
        let stored = records(&path);
        assert_eq!(stored[1]["signature"]["algorithm"], "Ed25519");
    }

    #[tokio::test]
    async fn signatures_are_checked_on_open_when_a_key_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        write(&path, Some(key()), 1).await;

        let other = SigningKey::new(b"another key".to_vec(), "unit-1");
        let error = EvidenceLog::open(config(&path, SyncMode::None, Some(other))).unwrap_err();
        assert!(
            matches!(&error, EvidenceError::Broken { first_error, .. } if first_error == "record 1 signature mismatch")
        );

        // Without a key the chain is continued: signatures cannot be checked, hashes still are.
        let (log, report) = EvidenceLog::open(config(&path, SyncMode::None, None)).unwrap();
        assert_eq!(report.records, 1);
        log.close();
    }

    /// Replaces the first occurrence of `session` in record `line` (1-based) of the log.
    fn tamper(path: &Path, line: usize, session: &str) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[line - 1] = lines[line - 1].replacen(session, &session.to_uppercase(), 1);
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[tokio::test]
    async fn opening_a_long_log_checks_its_tail_and_continues_it() {
        let total = TAIL_RECORDS as usize + 200;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        write(&path, None, total).await;

        let (log, report) = EvidenceLog::open(config(&path, SyncMode::None, None)).unwrap();
        assert_eq!(
            report.records, total as u64,
            "counted by the chain, not by the lines read"
        );
        log.record(request("next"), allow()).await.unwrap();
        log.close();
        assert_eq!(records(&path).last().unwrap()["sequence"], total as u64 + 1);
        assert!(verify_file(&path, &keys(None)).unwrap().valid);

        // Inside the window: refused, numbered by its place in the whole log.
        // Record n carries session s{n-1}.
        tamper(&path, total - 10, &format!("\"s{}\"", total - 11));
        let error = EvidenceLog::open(config(&path, SyncMode::None, None))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("record {} hash mismatch", total - 10)),
            "{error}"
        );

        // Before the window: opening does not read that far; the full verifier does.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        write(&path, None, total).await;
        tamper(&path, 5, "\"s4\"");
        let (log, _) = EvidenceLog::open(config(&path, SyncMode::None, None)).unwrap();
        log.close();
        assert_eq!(
            verify_file(&path, &keys(None)).unwrap().errors,
            ["record 5 hash mismatch"]
        );
    }

    #[tokio::test]
    async fn a_tail_of_blank_lines_does_not_restart_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.jsonl");
        write(&path, None, 3).await;
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&"\n".repeat(TAIL_RECORDS as usize + 5));
        std::fs::write(&path, text).unwrap();
        let (log, report) = EvidenceLog::open(config(&path, SyncMode::None, None)).unwrap();
        assert_eq!(report.records, 3);
        log.record(request("after-blanks"), allow()).await.unwrap();
        log.close();
        assert_eq!(records_in(&path).last().unwrap()["sequence"], 4);
        assert!(verify_file(&path, &keys(None)).unwrap().valid);
    }

    /// The records of a log that may contain blank lines.
    fn records_in(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn aside_names_carry_the_utc_time_and_a_counter_when_taken() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_973_400)
            .unwrap()
            .to_offset(time::UtcOffset::from_hms(-5, 0, 0).unwrap());
        let log = Path::new("/var/log/cavra/evidence.jsonl");
        assert_eq!(
            aside_path(log, "torn", at, 0),
            Path::new("/var/log/cavra/evidence.jsonl.torn-20261129T173000Z")
        );
        assert_eq!(
            aside_path(log, "unverified", at, 2),
            Path::new("/var/log/cavra/evidence.jsonl.unverified-20261129T173000Z.2")
        );
    }
}
