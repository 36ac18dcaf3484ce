//! Verifying several files as one chain: a log and the files rotation left behind, put in order by their link
//! records (never by name), with every file checked on its own and every link checked against the end of the file
//! it names. A segment that is missing (a rotated file deleted, or records cut off the end of one) shows as a link
//! that no file in the set ends with.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::journal::{CrossCheck, JournalReport};
use super::record::{Chain, EvidenceRecord, Link, SCHEMA_VERSION};
use super::verify::scan_file;
use super::{EvidenceError, VerifyReport, VerifyingKeys};

/// The report for a set of files: the reference report's fields for the set as a whole, and each file's report in
/// chain order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetReport {
    /// The directory, or the files, given.
    pub path: String,
    pub valid: bool,
    pub records: u64,
    pub signed_records: u64,
    /// The set's own problems (missing segments, forks, a second chain), then each file's, prefixed by its path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// How many separate pieces of chain the files form: 1 when nothing is missing.
    pub segments: usize,
    pub files: Vec<FileReport>,
    /// Files in the directory that hold no evidence records (compressed ones among them), not verified.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalReport>,
}

/// One file of a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    pub path: String,
    pub valid: bool,
    pub records: u64,
    pub signed_records: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_sequence: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sequence: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A file, verified, with where its chain starts and ends.
struct Piece {
    report: VerifyReport,
    first: Option<i64>,
    last: Option<Chain>,
}

/// The regular files of `dir` that hold evidence records (their first line is a record), and those that do not.
/// Torn tails set aside at start (`.torn-`) are fragments of a record, not logs, and are left out silently.
pub fn files_in(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), EvidenceError> {
    let read_error = |source| EvidenceError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_error)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    paths.sort();
    let (mut logs, mut ignored) = (Vec::new(), Vec::new());
    for path in paths {
        if !path.is_file() || path.to_string_lossy().contains(".torn-") {
            continue;
        }
        if starts_with_a_record(&path)? {
            logs.push(path);
        } else {
            ignored.push(path);
        }
    }
    Ok((logs, ignored))
}

/// Whether the first line of `path` is an evidence record (empty files count: a log just created).
fn starts_with_a_record(path: &Path) -> Result<bool, EvidenceError> {
    let file = File::open(path).map_err(|source| EvidenceError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut first = Vec::new();
    BufReader::new(file)
        .take(1 << 20)
        .read_until(b'\n', &mut first)
        .map_err(|source| EvidenceError::Read {
            path: path.to_owned(),
            source,
        })?;
    if first.is_empty() {
        return Ok(true);
    }
    Ok(serde_json::from_slice::<EvidenceRecord>(&first).is_ok_and(|record| record.schema_version == SCHEMA_VERSION))
}

/// Verifies `paths` as one chain, in the order their links give; `journal`, when given, sees every record.
pub fn verify_set(
    name: &str,
    paths: &[PathBuf],
    ignored: &[PathBuf],
    keys: &VerifyingKeys,
    mut journal: Option<CrossCheck>,
) -> Result<SetReport, EvidenceError> {
    let mut pieces = Vec::new();
    for path in paths {
        let verifier = scan_file(path, keys, |sequence, hash| {
            if let Some(journal) = journal.as_mut() {
                journal.record(sequence, hash);
            }
        })?;
        let first = verifier.first_sequence();
        let last = verifier.last().cloned();
        pieces.push(Piece {
            report: verifier.finish(),
            first,
            last,
        });
    }
    let (order, mut errors, segments) = order(&pieces);
    let mut report = SetReport {
        path: name.to_owned(),
        valid: true,
        records: 0,
        signed_records: 0,
        errors: Vec::new(),
        segments,
        files: Vec::new(),
        ignored: ignored.iter().map(|path| path.display().to_string()).collect(),
        journal: None,
    };
    for index in order {
        let Piece {
            report: file,
            first,
            last,
        } = &pieces[index];
        report.records += file.records;
        report.signed_records += file.signed_records;
        errors.extend(file.errors.iter().map(|error| format!("{}: {error}", file.path)));
        report.files.push(FileReport {
            path: file.path.clone(),
            valid: file.valid,
            records: file.records,
            signed_records: file.signed_records,
            first_sequence: *first,
            last_sequence: last.as_ref().map(|last| last.sequence),
            link: file.link.clone(),
            errors: file.errors.clone(),
        });
    }
    if let Some(journal) = journal {
        let (journal, journal_errors) = journal.finish();
        errors.extend(journal_errors.into_iter().map(|error| format!("journal: {error}")));
        report.journal = Some(journal);
    }
    report.valid = errors.is_empty();
    report.errors = errors;
    Ok(report)
}

/// The pieces in chain order, the set's own errors, and how many separate segments they form.
fn order(pieces: &[Piece]) -> (Vec<usize>, Vec<String>, usize) {
    let mut errors = Vec::new();
    let path = |index: usize| pieces[index].report.path.as_str();
    // Which piece ends where: a link names the end of the piece before it.
    let mut ends: HashMap<(i64, &str), usize> = HashMap::new();
    for (index, piece) in pieces.iter().enumerate() {
        if let Some(last) = &piece.last {
            ends.insert((last.sequence, last.record_hash.as_str()), index);
        }
    }
    let predecessor = |index: usize| {
        let link = pieces[index].report.link.as_ref()?;
        ends.get(&(link.previous_sequence, link.previous_record_hash.as_str()))
            .copied()
    };
    let mut successors: Vec<Vec<usize>> = vec![Vec::new(); pieces.len()];
    let mut heads = Vec::new();
    for index in 0..pieces.len() {
        match predecessor(index) {
            Some(before) if before != index => successors[before].push(index),
            _ => heads.push(index),
        }
    }
    heads.sort_by_key(|&index| pieces[index].first.unwrap_or(i64::MAX));
    let mut order = Vec::new();
    for &head in &heads {
        let mut stack = vec![head];
        while let Some(at) = stack.pop() {
            order.push(at);
            let next = &successors[at];
            if next.len() > 1 {
                let names: Vec<&str> = next.iter().map(|&index| path(index)).collect();
                errors.push(format!(
                    "{} all continue {}: the chain forks",
                    names.join(" and "),
                    path(at)
                ));
            }
            stack.extend(next.iter().rev());
        }
    }
    // A cycle of links has no head; it cannot happen with real hashes, but must not lose files.
    for index in 0..pieces.len() {
        if !order.contains(&index) {
            errors.push(format!("{} links in a circle with other files", path(index)));
            order.push(index);
        }
    }
    // Each head after the first is a break in the chain: say what is missing before it.
    let mut previous_end: Option<i64> = None;
    for (position, &head) in heads.iter().enumerate() {
        let piece = &pieces[head];
        match &piece.report.link {
            Some(link) => {
                let from = previous_end.map_or(1, |end| end + 1);
                let missing = if from <= link.previous_sequence {
                    format!("; records {from} to {} are missing", link.previous_sequence)
                } else {
                    String::new()
                };
                errors.push(format!(
                    "a segment is missing before {}: it continues from record {} (hash {}), which no file given \
                     ends with{missing}",
                    piece.report.path, link.previous_sequence, link.previous_record_hash
                ));
            }
            None if piece.first.is_some_and(|first| first != 1) => errors.push(format!(
                "{} starts at record {} without a link record: it neither starts a chain nor says what it continues",
                piece.report.path,
                piece.first.unwrap_or_default()
            )),
            None if position > 0 => errors.push(format!(
                "{} starts another chain at record 1: the files hold more than one chain",
                piece.report.path
            )),
            None => {}
        }
        // The end of this head's run of files.
        let mut at = head;
        while let Some(&next) = successors[at].first() {
            at = next;
        }
        previous_end = pieces[at].last.as_ref().map(|last| last.sequence).or(previous_end);
    }
    (order, errors, heads.len())
}
