//! Cross-checking an evidence log against the journal.
//!
//! Every decision's log event carries the sequence and hash of its evidence record (`EVIDENCE_SEQUENCE`,
//! `EVIDENCE_RECORD_HASH`); with `--log-decisions non-allow` (the default) allowed decisions have no event of their
//! own, and the summary event that counts them carries the anchors of the highest record among them, which serves
//! the same: every entry with both fields is an anchor, whatever else it says. The journal usually leaves the host (journal-remote, a log shipper), so it keeps those
//! anchors after the log itself could have been cut short: a record the journal saw but the log lacks is proof of a
//! removed record, which the hash chain alone cannot give for records cut off its end.
//!
//! Entries are read from `journalctl -o json` output (one JSON object per line), or from a journal directory through
//! `journalctl -D DIR -o json`. The daemon's own JSON log lines (`--log-format json`) carry the same anchors in
//! lower case and are read too.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;
use serde_json::Value;

const SEQUENCE_FIELD: &str = "EVIDENCE_SEQUENCE";
const HASH_FIELD: &str = "EVIDENCE_RECORD_HASH";
/// The record itself (`--log-evidence-records`), and where the entry came from.
const RECORD_FIELD: &str = "EVIDENCE_RECORD";
const MACHINE_FIELD: &str = "_MACHINE_ID";
const HOSTNAME_FIELD: &str = "_HOSTNAME";
/// At most this many lines describe missing or differing records; the counts are always complete.
const MAX_DETAILS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read journal export {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot run journalctl to read the journal directory {}: {source}", .path.display())]
    Journalctl { path: PathBuf, source: io::Error },
    #[error("journalctl -D {} failed ({status}): {stderr}", .path.display())]
    JournalctlFailed {
        path: PathBuf,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// One decision the journal saw: its evidence record's place in the chain and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub sequence: i64,
    pub record_hash: String,
}

/// A record shipped in the journal (`--log-evidence-records`): the line as the daemon wrote it, its place in the
/// chain, and the machine whose journal it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedRecord {
    pub machine_id: String,
    pub hostname: String,
    pub sequence: i64,
    pub record_hash: String,
    pub line: String,
}

type Entry = serde_json::Map<String, Value>;

/// The anchors in `journalctl -o json` output at `path` (a directory is read with `journalctl -D`). Lines that are
/// not JSON objects, and entries without both anchor fields (every other event), are skipped.
pub fn read(path: &Path) -> Result<Vec<Anchor>, JournalError> {
    read_entries(path, anchor)
}

/// The evidence records in `journalctl -o json` output at `path`, or in a journal directory (as collected by
/// systemd-journal-remote, say): every entry with a record and its anchors. Entries without a machine id (the
/// daemon's own JSON log lines) count as one machine, `unknown`.
pub fn read_records(path: &Path) -> Result<Vec<ShippedRecord>, JournalError> {
    read_entries(path, shipped)
}

fn read_entries<T>(path: &Path, parse: fn(&Entry) -> Option<T>) -> Result<Vec<T>, JournalError> {
    if path.is_dir() {
        return read_directory(path, parse);
    }
    let read_error = |source| JournalError::Read {
        path: path.to_owned(),
        source,
    };
    entries(BufReader::new(File::open(path).map_err(read_error)?), parse).map_err(read_error)
}

/// Runs `journalctl -D DIR -o json` for the daemon's entries and reads its output.
fn read_directory<T>(dir: &Path, parse: fn(&Entry) -> Option<T>) -> Result<Vec<T>, JournalError> {
    let mut child = Command::new("journalctl")
        .arg("--directory")
        .arg(dir)
        // --all: without it, journalctl writes fields over 4 KiB (a large evidence record) as null.
        .args([
            "--output=json",
            "--all",
            "--no-pager",
            "SYSLOG_IDENTIFIER=cavra-runtime",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| JournalError::Journalctl {
            path: dir.to_owned(),
            source,
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let read = entries(BufReader::new(stdout), parse);
    let output = child.wait_with_output().map_err(|source| JournalError::Journalctl {
        path: dir.to_owned(),
        source,
    })?;
    if !output.status.success() {
        return Err(JournalError::JournalctlFailed {
            path: dir.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    read.map_err(|source| JournalError::Journalctl {
        path: dir.to_owned(),
        source,
    })
}

#[cfg(test)]
fn anchors(reader: impl io::BufRead) -> io::Result<Vec<Anchor>> {
    entries(reader, anchor)
}

/// What `parse` makes of each JSON object line of `reader`; other lines are skipped.
fn entries<T>(reader: impl io::BufRead, parse: fn(&Entry) -> Option<T>) -> io::Result<Vec<T>> {
    let mut found = Vec::new();
    for line in reader.split(b'\n') {
        if let Ok(Value::Object(entry)) = serde_json::from_slice::<Value>(&line?)
            && let Some(item) = parse(&entry)
        {
            found.push(item);
        }
    }
    Ok(found)
}

/// A field of a journal entry (`journalctl -o json`: upper case) or of the daemon's JSON log (lower case).
fn field(entry: &Entry, name: &str) -> Option<String> {
    entry
        .get(name)
        .or_else(|| entry.get(&name.to_ascii_lowercase()))
        .and_then(text)
}

fn anchor(entry: &Entry) -> Option<Anchor> {
    let sequence = field(entry, SEQUENCE_FIELD)?.parse().ok()?;
    Some(Anchor {
        sequence,
        record_hash: field(entry, HASH_FIELD)?,
    })
}

fn shipped(entry: &Entry) -> Option<ShippedRecord> {
    let Anchor { sequence, record_hash } = anchor(entry)?;
    Some(ShippedRecord {
        machine_id: field(entry, MACHINE_FIELD).unwrap_or_else(|| "unknown".to_owned()),
        hostname: field(entry, HOSTNAME_FIELD).unwrap_or_default(),
        sequence,
        record_hash,
        line: field(entry, RECORD_FIELD)?,
    })
}

/// A field's value as text: journalctl writes strings, the daemon's JSON log numbers; a field that occurs twice in
/// an entry is an array, of which the first value counts.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Array(values) => values.first().and_then(text),
        _ => None,
    }
}

/// What the cross-check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalReport {
    /// Journal entries with an evidence anchor.
    pub entries: usize,
    /// The highest sequence the journal saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highest_sequence: Option<i64>,
    /// Records the journal saw that the log lacks.
    pub missing: u64,
    /// Records the log holds with another hash than the journal saw.
    pub mismatched: u64,
}

/// The journal's anchors, checked off as the log's records go by.
#[derive(Debug)]
pub struct CrossCheck {
    /// Sequence -> the hashes the journal saw for it (more than one only when chains were restarted).
    expected: BTreeMap<i64, Vec<Seen>>,
    entries: usize,
    /// The log's highest sequence.
    log_end: Option<i64>,
}

#[derive(Debug)]
struct Seen {
    record_hash: String,
    /// The log's hash for this sequence, once read.
    found: Option<String>,
}

impl CrossCheck {
    pub fn new(anchors: Vec<Anchor>) -> Self {
        let entries = anchors.len();
        let mut expected: BTreeMap<i64, Vec<Seen>> = BTreeMap::new();
        for anchor in anchors {
            let seen = expected.entry(anchor.sequence).or_default();
            if !seen.iter().any(|seen| seen.record_hash == anchor.record_hash) {
                seen.push(Seen {
                    record_hash: anchor.record_hash,
                    found: None,
                });
            }
        }
        CrossCheck {
            expected,
            entries,
            log_end: None,
        }
    }

    /// Notes a record of the log.
    pub fn record(&mut self, sequence: i64, record_hash: &str) {
        self.log_end = Some(self.log_end.map_or(sequence, |end| end.max(sequence)));
        if let Some(seen) = self.expected.get_mut(&sequence) {
            for seen in seen {
                seen.found = Some(record_hash.to_owned());
            }
        }
    }

    /// The report, and one error line per problem (at most [`MAX_DETAILS`] describing records, then a count).
    pub fn finish(self) -> (JournalReport, Vec<String>) {
        let mut errors = Vec::new();
        let mut missing = Vec::new();
        let mut mismatched = 0u64;
        for (&sequence, seen) in &self.expected {
            for seen in seen {
                match &seen.found {
                    None => missing.push(sequence),
                    Some(hash) if *hash == seen.record_hash => {}
                    Some(hash) => {
                        mismatched += 1;
                        if mismatched as usize <= MAX_DETAILS {
                            errors.push(format!(
                                "the journal saw record {sequence} with hash {}, but the log's record {sequence} has \
                                 hash {hash}",
                                seen.record_hash
                            ));
                        }
                    }
                }
            }
        }
        missing.dedup();
        let highest = self.expected.keys().next_back().copied();
        if let Some(highest) = highest.filter(|&highest| highest > self.log_end.unwrap_or(0)) {
            errors.insert(
                0,
                format!(
                    "the log ends at sequence {}, but the journal saw records up to {highest}: records were cut off \
                     its end",
                    self.log_end.unwrap_or(0)
                ),
            );
        }
        let ranges = ranges(&missing);
        for &(first, last) in ranges.iter().take(MAX_DETAILS) {
            errors.push(if first == last {
                format!("record {first} is in the journal but not in the log")
            } else {
                format!(
                    "records {first} to {last} ({}) are in the journal but not in the log",
                    last - first + 1
                )
            });
        }
        if ranges.len() > MAX_DETAILS {
            errors.push(format!(
                "and {} more ranges of missing records",
                ranges.len() - MAX_DETAILS
            ));
        }
        if mismatched as usize > MAX_DETAILS {
            errors.push(format!(
                "and {} more records with another hash",
                mismatched as usize - MAX_DETAILS
            ));
        }
        let report = JournalReport {
            entries: self.entries,
            highest_sequence: highest,
            missing: missing.len() as u64,
            mismatched,
        };
        (report, errors)
    }
}

/// Runs of consecutive numbers in the sorted `numbers`, as (first, last).
fn ranges(numbers: &[i64]) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for &number in numbers {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == number => *last = number,
            _ => ranges.push((number, number)),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(sequence: i64, hash: &str) -> Anchor {
        Anchor {
            sequence,
            record_hash: hash.to_owned(),
        }
    }

    #[test]
    fn journal_exports_and_json_logs_give_their_anchors() {
        let export = concat!(
            r#"{"MESSAGE":"decision","EVIDENCE_SEQUENCE":"7","EVIDENCE_RECORD_HASH":"h7","DECISION":"allow"}"#,
            "\n",
            r#"{"MESSAGE":"evidence log open"}"#,
            "\n",
            "not json\n",
            r#"{"message":"decision","evidence_sequence":8,"evidence_record_hash":"h8"}"#,
            "\n",
            r#"{"EVIDENCE_SEQUENCE":["9","9"],"EVIDENCE_RECORD_HASH":"h9"}"#,
            "\n",
            r#"{"EVIDENCE_SEQUENCE":"x","EVIDENCE_RECORD_HASH":"hx"}"#,
            "\n",
            // The summary of allowed decisions (--log-decisions non-allow) anchors the highest of them.
            r#"{"MESSAGE":"3 allowed decisions","SUMMARY":"allow","ALLOWED":"3","EVIDENCE_SEQUENCE":"12","EVIDENCE_RECORD_HASH":"h12"}"#,
            "\n",
            r#"{"message":"3 allowed decisions","summary":"allow","allowed":3}"#,
        );
        assert_eq!(
            anchors(export.as_bytes()).unwrap(),
            [anchor(7, "h7"), anchor(8, "h8"), anchor(9, "h9"), anchor(12, "h12")]
        );
    }

    #[test]
    fn records_the_log_lacks_or_holds_otherwise_are_reported() {
        let journal = (1..=10).map(|n| anchor(n, &format!("h{n}"))).chain([anchor(4, "h4")]);
        let mut check = CrossCheck::new(journal.collect());
        // The log holds 1-3, 5 with another hash, and 6; 4 and 7-10 were removed.
        for (sequence, hash) in [(1, "h1"), (2, "h2"), (3, "h3"), (5, "forged"), (6, "h6")] {
            check.record(sequence, hash);
        }
        let (report, errors) = check.finish();
        assert_eq!(
            report,
            JournalReport {
                entries: 11,
                highest_sequence: Some(10),
                missing: 5,
                mismatched: 1
            }
        );
        assert_eq!(
            errors,
            [
                "the log ends at sequence 6, but the journal saw records up to 10: records were cut off its end",
                "the journal saw record 5 with hash h5, but the log's record 5 has hash forged",
                "record 4 is in the journal but not in the log",
                "records 7 to 10 (4) are in the journal but not in the log",
            ]
        );
    }

    #[test]
    fn a_log_holding_everything_the_journal_saw_passes() {
        let mut check = CrossCheck::new(vec![anchor(2, "h2"), anchor(3, "h3")]);
        for (sequence, hash) in [(1, "h1"), (2, "h2"), (3, "h3"), (4, "h4")] {
            check.record(sequence, hash);
        }
        let (report, errors) = check.finish();
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((report.missing, report.mismatched), (0, 0));
    }

    #[test]
    fn unreadable_exports_name_the_path() {
        let error = read(Path::new("/nonexistent/journal.json")).unwrap_err().to_string();
        assert!(
            error.starts_with("cannot read journal export /nonexistent/journal.json: "),
            "{error}"
        );
    }
}
