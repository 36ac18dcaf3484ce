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
    /// Files that hold no evidence records (empty ones, which rotation can leave, and in a directory, files of
    /// another kind, compressed archives among them): not part of the chain.
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

/// The regular files of `dir` that may hold evidence records (empty, or their first line is a record), and those
/// that do not. Torn tails set aside at start (`.torn-`) are fragments of a record, not logs, and are left out
/// silently.
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
    let mut ignored: Vec<String> = ignored.iter().map(|path| path.display().to_string()).collect();
    for path in paths {
        let verifier = scan_file(path, keys, |sequence, hash| {
            if let Some(journal) = journal.as_mut() {
                journal.record(sequence, hash);
            }
        })?;
        let first = verifier.first_sequence();
        let last = verifier.last().cloned();
        if verifier.records() == 0 {
            ignored.push(path.display().to_string());
            continue;
        }
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
        ignored,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::EvaluateRequest;

    /// Three files of one chain (2 records, then a link and 1 record, then a link and 1 record), written to `dir`.
    fn chain_of_three(dir: &Path) -> Vec<PathBuf> {
        let mut chain = Chain::default();
        let record = |chain: &mut Chain, out: &mut Vec<u8>, n: usize| {
            let response = serde_json::from_str(r#"{"decision":"allow","severity":"low"}"#).unwrap();
            let (line, _) = chain.append(EvaluateRequest::default().into(), response, format!("t{n}"), None);
            out.extend(line);
        };
        let mut files = Vec::new();
        for (index, count) in [2, 1, 1].into_iter().enumerate() {
            let mut bytes = Vec::new();
            if index > 0 {
                chain.seal_link("rotation", "t", None, &mut bytes);
            }
            for n in 0..count {
                record(&mut chain, &mut bytes, index * 10 + n);
            }
            let path = dir.join(format!("part-{index}"));
            std::fs::write(&path, bytes).unwrap();
            files.push(path);
        }
        files
    }

    fn check(paths: &[PathBuf]) -> SetReport {
        verify_set("set", paths, &[], &VerifyingKeys::default(), None).unwrap()
    }

    #[test]
    fn files_are_put_in_chain_order_and_empty_ones_are_left_aside() {
        let dir = tempfile::tempdir().unwrap();
        let files = chain_of_three(dir.path());
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let report = check(&[files[2].clone(), empty.clone(), files[0].clone(), files[1].clone()]);
        assert!(report.valid, "{report:?}");
        let order: Vec<&str> = report.files.iter().map(|file| file.path.as_str()).collect();
        let expected: Vec<String> = files.iter().map(|path| path.display().to_string()).collect();
        assert_eq!(order, expected);
        assert_eq!((report.records, report.segments), (6, 1));
        assert_eq!(report.ignored, [empty.display().to_string()]);
        assert_eq!(
            (report.files[1].first_sequence, report.files[1].last_sequence),
            (Some(3), Some(4))
        );
    }

    #[test]
    fn a_missing_first_file_a_second_chain_and_a_fork_are_each_reported() {
        let dir = tempfile::tempdir().unwrap();
        let files = chain_of_three(dir.path());
        let report = check(&files[1..]);
        assert_eq!(report.segments, 1);
        assert!(
            report.errors[0].ends_with("which no file given ends with; records 1 to 2 are missing"),
            "{:?}",
            report.errors
        );

        let other = tempfile::tempdir().unwrap();
        let second_chain = chain_of_three(other.path());
        let report = check(&[files[0].clone(), second_chain[0].clone()]);
        assert_eq!(report.segments, 2);
        assert!(report.errors[0].ends_with("starts another chain at record 1: the files hold more than one chain"));

        let copy = dir.path().join("copy-of-part-1");
        std::fs::copy(&files[1], &copy).unwrap();
        let report = check(&[files[0].clone(), files[1].clone(), copy.clone()]);
        assert!(
            report.errors[0].ends_with(&format!("all continue {}: the chain forks", files[0].display())),
            "{:?}",
            report.errors
        );
        assert_eq!(report.files.len(), 3, "no file is lost from the report");
    }
}
