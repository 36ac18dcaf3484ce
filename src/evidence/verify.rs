//! Verifying a stream as the reference verifier does: every record is parsed and re-serialised to recompute its
//! hash, the chain is followed, and signatures are checked when keys are given.
//!
//! Two deliberate differences from the reference: with a key given, every record must be signed (the reference
//! accepted unsigned records in a signed log, so stripping signatures from a forged tail made it verify); and a file
//! may begin with a link record (see [`Link`]), which anchors its chain where an earlier file's ended.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::Path;

use serde::Serialize;

use super::encode;
use super::journal::{CrossCheck, JournalReport};
use super::record::{Chain, EvidenceRecord, LINK_EVENT_TYPE, Link, SCHEMA_VERSION, signed_message};
use super::{EvidenceError, VerifyingKeys};

/// The reference verification report, `{"path","valid","records","signed_records","errors"}`, with `link` for a
/// file that continues an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub path: String,
    pub valid: bool,
    pub records: u64,
    pub signed_records: u64,
    /// Every problem found, in stream order; the first is usually the cause of the rest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Where the file before this one ended, when this one starts with a link record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
    /// The cross-check with the journal, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalReport>,
}

/// Verifies the stream at `path`. With no keys, records are checked as the reference does (unsigned ones pass; a
/// signed one is an error, as it cannot be checked); with keys, every record must carry a valid signature under one
/// of them. `Err` only when the file cannot be read; a bad stream is a report with `valid: false`.
pub fn verify_file(path: &Path, keys: &VerifyingKeys) -> Result<VerifyReport, EvidenceError> {
    Ok(scan_file(path, keys, |_, _| ())?.finish())
}

/// [`verify_file`], cross-checking the log against the journal: records the journal saw that the log lacks (or
/// holds with another hash) make the report invalid.
pub fn verify_file_against(
    path: &Path,
    keys: &VerifyingKeys,
    mut journal: CrossCheck,
) -> Result<VerifyReport, EvidenceError> {
    let mut report = scan_file(path, keys, |sequence, hash| journal.record(sequence, hash))?.finish();
    let (journal, errors) = journal.finish();
    report.valid &= errors.is_empty();
    report
        .errors
        .extend(errors.into_iter().map(|error| format!("journal: {error}")));
    report.journal = Some(journal);
    Ok(report)
}

/// Reads the whole file at `path` through a [`Verifier`]; `each` sees every record's sequence and hash as stored.
pub(crate) fn scan_file<'a>(
    path: &Path,
    keys: &'a VerifyingKeys,
    mut each: impl FnMut(i64, &str),
) -> Result<Verifier<'a>, EvidenceError> {
    let read_error = |source| EvidenceError::Read {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(read_error)?);
    let mut verifier = Verifier::new(path, Signatures::Check(keys));
    // Lines of any length: unlike the reference scanner, a record over 64 KiB is not an error.
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).map_err(read_error)? > 0 {
        if verifier.line(&line)
            && let Some(last) = verifier.last()
        {
            each(last.sequence, &last.record_hash);
        }
        line.clear();
    }
    Ok(verifier)
}

/// Which signature checks to make.
#[derive(Clone, Copy)]
pub(crate) enum Signatures<'a> {
    /// Chain and hashes only (opening a log without a configured key).
    Ignore,
    /// With these keys (none: as the reference, unsigned records pass).
    Check(&'a VerifyingKeys),
}

/// Whether a line holds no record: nothing but (Unicode) white space. Opening and verifying must agree on this.
pub(crate) fn is_blank(raw: &[u8]) -> bool {
    // A record starts with `{`: only a line of white space, or one that is not ASCII, needs a closer look.
    match raw.iter().find(|byte| !matches!(byte, b'\t'..=b'\r' | b' ')) {
        None => true,
        Some(byte) if byte.is_ascii() => false,
        Some(_) => String::from_utf8_lossy(raw).trim().is_empty(),
    }
}

/// What checking one line finds without knowing the lines before it: whether it is a record, and for a record its
/// hash, its form and its signature recomputed and checked. These are most of a line's cost (parsing,
/// re-serialising, hashing, a signature check), and need nothing but the line, so lines can be examined on several
/// CPUs at once; following the chain through them ([`Verifier::apply`]) then takes them in order.
enum Examined {
    Blank,
    NotJson(String),
    Record(Box<Facts>),
}

/// Only what following the chain needs: a line's parsed record is dropped where it was examined, so a batch holds
/// little and no thread frees another's allocations.
struct Facts {
    sequence: i64,
    previous_hash: String,
    /// The record's schema version when it is not this verifier's.
    other_schema: Option<String>,
    /// For a link record, or one that claims to be one.
    link: Option<LinkFacts>,
    /// A record that is not a link and has no response: reported as such, nothing more is checked.
    missing_response: bool,
    /// The line is exactly what the record re-serialises to.
    canonical: bool,
    stored_hash: String,
    /// The stored hash is the one recomputed over the record.
    hash_matches: bool,
    signature: SignatureFacts,
}

struct LinkFacts {
    link: Option<Link>,
    /// Its event type is the link records'.
    typed: bool,
    /// It carries a request or a response, which a link record may not.
    has_payload: bool,
}

#[derive(Default)]
struct SignatureFacts {
    signed: bool,
    /// What is wrong with the signature, or with its absence, each to follow "record N ".
    problems: Vec<String>,
}

fn examine(raw: &[u8], signatures: Signatures) -> Examined {
    if is_blank(raw) {
        return Examined::Blank;
    }
    // Go's decoder turns invalid UTF-8 into U+FFFD rather than failing; so does this. Checking for valid UTF-8
    // first is several times faster than the lossy conversion, which opening the log does a thousand times.
    let text = match std::str::from_utf8(raw) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(raw),
    };
    let line = text.trim();
    let mut record: EvidenceRecord = match serde_json::from_str(line) {
        Ok(record) => record,
        Err(error) => return Examined::NotJson(error.to_string()),
    };
    let link = (record.event_type == LINK_EVENT_TYPE || record.link.is_some()).then(|| LinkFacts {
        link: record.link.clone(),
        typed: record.event_type == LINK_EVENT_TYPE,
        has_payload: record.request.is_some() || record.response.is_some(),
    });
    let other_schema = (record.schema_version != SCHEMA_VERSION).then(|| record.schema_version.clone());
    if link.is_none() {
        if record.response.is_none() {
            // Reported as it stands (see `Verifier::apply`); nothing more is checked.
            return Examined::Record(Box::new(Facts {
                sequence: record.sequence,
                previous_hash: record.previous_hash,
                other_schema,
                link,
                missing_response: true,
                canonical: false,
                stored_hash: String::new(),
                hash_matches: false,
                signature: SignatureFacts::default(),
            }));
        }
        // As Go decodes an absent or null request, and writes it back.
        record.request.get_or_insert_default();
    }
    // The hash covers only the fields this verifier knows; a field it does not know would be dropped by the
    // re-serialisation and so not covered. A record must therefore be exactly what it re-serialises to.
    let canonical = encode::to_vec(&record) == line.as_bytes();
    let stored_hash = std::mem::take(&mut record.record_hash);
    let signature = record.signature.take();
    let hash_matches = stored_hash == record.unsealed_hash();
    let signature = match (signature, signatures) {
        (Some(_), Signatures::Ignore) => SignatureFacts {
            signed: true,
            problems: Vec::new(),
        },
        (Some(_), Signatures::Check(keys)) if keys.is_empty() => SignatureFacts {
            signed: true,
            problems: vec!["signature present but verification key was not provided".to_owned()],
        },
        (Some(signature), Signatures::Check(keys)) => {
            let message = signed_message(&record.previous_hash, &stored_hash);
            SignatureFacts {
                signed: true,
                problems: keys.problems(&signature.algorithm, &signature.key_id, &signature.value, &message),
            }
        }
        (None, Signatures::Check(keys)) if !keys.is_empty() => SignatureFacts {
            signed: false,
            problems: vec!["is not signed: with a key given, every record must be signed".to_owned()],
        },
        (None, _) => SignatureFacts::default(),
    };
    Examined::Record(Box::new(Facts {
        sequence: record.sequence,
        previous_hash: record.previous_hash,
        other_schema,
        link,
        missing_response: false,
        canonical,
        stored_hash,
        hash_matches,
        signature,
    }))
}

/// [`examine`] for every line, in order, the lines split in contiguous runs over the CPUs this process may use.
fn examine_all(raws: &[Vec<u8>], signatures: Signatures) -> Vec<Examined> {
    // Below this many lines a thread costs more than it saves.
    const LEAST_PER_THREAD: usize = 64;
    let threads = std::thread::available_parallelism()
        .map_or(1, |cpus| cpus.get())
        .min(raws.len() / LEAST_PER_THREAD);
    examine_on(raws, signatures, threads)
}

/// [`examine`] for every line, in order, on `threads` threads (this one included).
fn examine_on(raws: &[Vec<u8>], signatures: Signatures, threads: usize) -> Vec<Examined> {
    let threads = threads.clamp(1, raws.len().max(1));
    if threads == 1 {
        return raws.iter().map(|raw| examine(raw, signatures)).collect();
    }
    let run = raws.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let others: Vec<_> = raws[run..]
            .chunks(run)
            .map(|chunk| scope.spawn(move || chunk.iter().map(|raw| examine(raw, signatures)).collect::<Vec<_>>()))
            .collect();
        let mut examined: Vec<Examined> = raws[..run].iter().map(|raw| examine(raw, signatures)).collect();
        for other in others {
            examined.extend(other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        examined
    })
}

/// Follows a stream line by line.
pub(crate) struct Verifier<'a> {
    signatures: Signatures<'a>,
    report: VerifyReport,
    expected_sequence: i64,
    previous_hash: String,
    /// No record read yet: the first may be a link record, which anchors the chain.
    at_start: bool,
    /// The first and the last record read, as stored (whether they verified or not): what the files before and
    /// after this one in a set must match.
    first_sequence: Option<i64>,
    last: Option<Chain>,
    /// A stream that spans files (a chain rebuilt from the journal): link records may come anywhere, as long as each
    /// continues the chain exactly where it is.
    links_within: bool,
}

impl<'a> Verifier<'a> {
    /// Accepts link records after the start that continue the chain where it is (see `links_within`).
    pub(crate) fn spanning_files(mut self) -> Self {
        self.links_within = true;
        self
    }

    pub(crate) fn new(path: &Path, signatures: Signatures<'a>) -> Self {
        Verifier {
            signatures,
            report: VerifyReport {
                path: path.display().to_string(),
                valid: true,
                records: 0,
                signed_records: 0,
                errors: Vec::new(),
                link: None,
                journal: None,
            },
            expected_sequence: 1,
            previous_hash: String::new(),
            at_start: true,
            first_sequence: None,
            last: None,
            links_within: false,
        }
    }

    /// Starts the chain at the record in `raw` instead of at the start of the file, for checking the tail of a long
    /// log: that record's own place (sequence, previous hash) is taken as given, and everything from it on is
    /// checked. `base` is the sequence the file's chain continues from (0, or its link's previous sequence).
    /// Returns false if the line is not a record.
    pub(crate) fn anchor(&mut self, raw: &[u8], base: i64) -> bool {
        let Ok(record) = serde_json::from_slice::<EvidenceRecord>(raw) else {
            return false;
        };
        self.expected_sequence = record.sequence;
        self.previous_hash = record.previous_hash;
        self.at_start = false;
        // Records are numbered by their place in the whole file, as if it had been read from the start.
        self.report.records = u64::try_from(record.sequence.saturating_sub(1).saturating_sub(base)).unwrap_or_default();
        true
    }

    /// Checks one line (with or without its newline). Blank lines are skipped. Returns whether the line was a record
    /// (see [`Verifier::last`]), whatever its problems.
    pub(crate) fn line(&mut self, raw: &[u8]) -> bool {
        let examined = examine(raw, self.signatures);
        self.apply(examined)
    }

    /// Checks lines in order, as [`Verifier::line`] does one by one, examining them on every CPU first (see
    /// [`examine_all`]).
    pub(crate) fn lines(&mut self, raws: &[Vec<u8>]) {
        for examined in examine_all(raws, self.signatures) {
            self.apply(examined);
        }
    }

    /// Follows the chain through one examined line, reporting problems in the order the checks are made: the
    /// record's shape, its place in the chain, its hash, its signature.
    fn apply(&mut self, examined: Examined) -> bool {
        let facts = match examined {
            Examined::Blank => return false,
            Examined::NotJson(error) => {
                self.report.records += 1;
                self.at_start = false;
                // Skipped without advancing the chain, as the reference does.
                let n = self.report.records;
                self.fail(format!("record {n} is not valid JSON: {error}"));
                return false;
            }
            Examined::Record(facts) => facts,
        };
        self.report.records += 1;
        let n = self.report.records;
        let at_start = std::mem::replace(&mut self.at_start, false);
        let Facts {
            sequence,
            previous_hash,
            other_schema,
            link,
            missing_response,
            canonical,
            stored_hash,
            hash_matches,
            signature,
        } = *facts;
        if let Some(link) = &link {
            self.link(link, n, at_start);
        } else if missing_response {
            self.fail(format!("record {n} is not valid JSON: missing field `response`"));
            return false;
        }
        self.first_sequence.get_or_insert(sequence);
        if let Some(schema) = other_schema {
            self.fail(format!("record {n} schema mismatch: {schema}"));
        }
        if sequence != self.expected_sequence {
            self.fail(format!(
                "record {n} sequence mismatch: got {sequence} want {}",
                self.expected_sequence
            ));
        }
        if previous_hash != self.previous_hash {
            self.fail(format!("record {n} previous hash mismatch"));
        }
        if !hash_matches {
            self.fail(format!("record {n} hash mismatch"));
        } else if !canonical {
            self.fail(format!(
                "record {n} is not as written: it has fields, order or spacing the hash does not cover"
            ));
        }
        if signature.signed {
            self.report.signed_records += 1;
        }
        for problem in signature.problems {
            self.fail(format!("record {n} {problem}"));
        }
        self.last = Some(Chain {
            sequence,
            record_hash: stored_hash.clone(),
        });
        self.previous_hash = stored_hash;
        self.expected_sequence = self.expected_sequence.saturating_add(1);
        true
    }

    /// Checks a link record's shape and, for the first record of a file, anchors the chain where it says the file
    /// before ended.
    fn link(&mut self, facts: &LinkFacts, n: u64, at_start: bool) {
        let Some(link) = facts.link.as_ref().filter(|_| facts.typed) else {
            self.fail(format!(
                "record {n} is not a link record ({}) but carries a link, or the other way round",
                LINK_EVENT_TYPE
            ));
            return;
        };
        if facts.has_payload {
            self.fail(format!("record {n} is a link record with a request or a response"));
        }
        if !at_start && self.links_within {
            let (at, hash) = (self.expected_sequence - 1, self.previous_hash.clone());
            if link.previous_sequence != at || link.previous_record_hash != hash {
                self.fail(format!(
                    "record {n} links to record {} (hash {}), but the chain is at record {at} (hash {hash})",
                    link.previous_sequence, link.previous_record_hash
                ));
            }
            return;
        }
        if !at_start {
            self.fail(format!("record {n} is a link record, which may only start a file"));
            return;
        }
        if link.previous_sequence < 1 || link.previous_record_hash.is_empty() {
            self.fail(format!("record {n} is a link record that links to no record"));
        }
        self.expected_sequence = link.previous_sequence.saturating_add(1);
        self.previous_hash.clone_from(&link.previous_record_hash);
        self.report.link = Some(link.clone());
    }

    /// The first problem found so far.
    pub(crate) fn first_error(&self) -> Option<&str> {
        self.report.errors.first().map(String::as_str)
    }

    /// Where the stream verified so far ends, to continue it.
    pub(crate) fn chain(&self) -> Chain {
        Chain {
            sequence: self.expected_sequence - 1,
            record_hash: self.previous_hash.clone(),
        }
    }

    /// The last record read, as stored, whether it verified or not.
    pub(crate) fn last(&self) -> Option<&Chain> {
        self.last.as_ref()
    }

    /// The sequence of the first record read.
    pub(crate) fn first_sequence(&self) -> Option<i64> {
        self.first_sequence
    }

    pub(crate) fn records(&self) -> u64 {
        self.report.records
    }

    pub(crate) fn finish(mut self) -> VerifyReport {
        if self.report.records == 0 {
            self.fail("evidence stream is empty".to_owned());
        }
        self.report
    }

    fn fail(&mut self, error: String) {
        self.report.valid = false;
        self.report.errors.push(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::EvaluateRequest;
    use crate::evidence::SigningKey;

    fn stream(key: Option<&SigningKey>, records: usize) -> Vec<String> {
        let mut chain = Chain::default();
        (0..records)
            .map(|i| {
                let request = EvaluateRequest {
                    session_id: format!("s{i}"),
                    action_type: "read_file".into(),
                    ..Default::default()
                };
                let response = serde_json::from_str(r#"{"decision":"allow","severity":"low"}"#).unwrap();
                let (line, _) = chain.append(request.clone().into(), response, format!("2026-05-18T12:00:0{i}Z"), key);
                String::from_utf8(line).unwrap()
            })
            .collect()
    }

    fn verify(lines: &[String], key: Option<&SigningKey>) -> VerifyReport {
        let keys = key.map(VerifyingKeys::of).unwrap_or_default();
        let mut verifier = Verifier::new(Path::new("log.jsonl"), Signatures::Check(&keys));
        for line in lines {
            verifier.line(line.as_bytes());
        }
        verifier.finish()
    }

    #[test]
    fn lines_examined_on_several_threads_are_reported_as_one_by_one() {
        let key = SigningKey::new(b"secret".to_vec(), "kid");
        let mut lines = stream(Some(&key), 300);
        lines[5] = "{not json".to_owned();
        lines[40] = "   ".to_owned();
        lines[99] = lines[99].replace("\"s99\"", "\"sX9\"");
        lines[150] = lines[150].split(",\"signature\"").next().unwrap().to_owned() + "}";
        lines[200] = lines[200].replace("\"value\":\"", "\"value\":\"00");
        lines.swap(250, 251);
        lines[270] = lines[270].replacen('{', "{ ", 1);
        lines[280] = lines[280].replace("\"response\":", "\"answer\":");
        let expected = verify(&lines, Some(&key));
        assert!(expected.errors.len() >= 8, "{:?}", expected.errors);

        let keys = VerifyingKeys::of(&key);
        let raws: Vec<Vec<u8>> = lines.iter().map(|line| line.clone().into_bytes()).collect();
        for threads in [1, 2, 3, 7, 300, 1000] {
            let mut verifier = Verifier::new(Path::new("log.jsonl"), Signatures::Check(&keys));
            for examined in examine_on(&raws, Signatures::Check(&keys), threads) {
                verifier.apply(examined);
            }
            assert_eq!(verifier.finish(), expected, "on {threads} threads");
        }
        let mut verifier = Verifier::new(Path::new("log.jsonl"), Signatures::Check(&keys));
        verifier.lines(&raws);
        assert_eq!(verifier.finish(), expected, "Verifier::lines");
    }

    #[test]
    fn a_signed_stream_verifies_and_serialises_like_the_reference_report() {
        let key = SigningKey::new(b"secret".to_vec(), "kid");
        let report = verify(&stream(Some(&key), 3), Some(&key));
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"path":"log.jsonl","valid":true,"records":3,"signed_records":3}"#
        );
    }

    #[test]
    fn a_blank_line_is_unicode_white_space_and_nothing_else() {
        for blank in ["", "\n", "  \t\r\n", "\u{0b}\u{0c}", "\u{a0}\u{2028}\n", " \u{3000} "] {
            assert!(is_blank(blank.as_bytes()), "{blank:?}");
        }
        for line in ["{}", " {\"a\":1}\n", "\u{a0}{", "\u{1c}", "x"] {
            assert!(!is_blank(line.as_bytes()), "{line:?}");
        }
        // Not UTF-8: read as U+FFFD, which is not white space.
        assert!(!is_blank(b" \xff\n"));
    }

    #[test]
    fn empty_and_blank_streams_are_invalid() {
        let report = verify(&["\n".into(), "  \r\n".into()], None);
        assert_eq!(report.errors, vec!["evidence stream is empty"]);
        assert!(!report.valid);
    }

    #[test]
    fn signature_problems_are_reported_as_the_reference_does() {
        let key = SigningKey::new(b"secret".to_vec(), "kid");
        let lines = stream(Some(&key), 2);

        let unkeyed = verify(&lines, None);
        assert_eq!(
            unkeyed.errors,
            vec![
                "record 1 signature present but verification key was not provided",
                "record 2 signature present but verification key was not provided"
            ]
        );
        assert_eq!(unkeyed.signed_records, 2);

        let other_id = SigningKey::new(b"secret".to_vec(), "other");
        assert_eq!(
            verify(&lines[..1], Some(&other_id)).errors,
            vec!["record 1 signature key_id mismatch"]
        );
        let no_id = SigningKey::new(b"secret".to_vec(), "");
        assert!(verify(&lines, Some(&no_id)).valid);

        let wrong = SigningKey::new(b"wrong".to_vec(), "kid");
        assert_eq!(
            verify(&lines[..1], Some(&wrong)).errors,
            vec!["record 1 signature mismatch"]
        );

        let renamed = lines[0].replace(r#""algorithm":"HMAC-SHA256""#, r#""algorithm":"HMAC-SHA1""#);
        assert_eq!(
            verify(&[renamed], Some(&key)).errors,
            vec!["record 1 signature algorithm mismatch"]
        );

        let value_at = lines[0].find(r#""value":""#).unwrap() + r#""value":""#.len();
        let upper = format!("{}{}", &lines[0][..value_at], lines[0][value_at..].to_uppercase());
        assert!(
            verify(&[upper], Some(&key)).valid,
            "stored signatures are compared lower-cased"
        );
    }

    #[test]
    fn unsigned_records_pass_without_a_key_and_fail_with_one() {
        assert!(verify(&stream(None, 2), None).valid);
        let key = SigningKey::new(b"secret".to_vec(), "kid");
        let report = verify(&stream(None, 2), Some(&key));
        assert_eq!(
            report.errors,
            [
                "record 1 is not signed: with a key given, every record must be signed",
                "record 2 is not signed: with a key given, every record must be signed"
            ]
        );
        assert_eq!(report.signed_records, 0);
        // A signed log with an unsigned record at its end, or in its middle.
        let mut signed = stream(Some(&key), 3);
        let unsigned = stream(None, 4);
        signed.push(unsigned[3].clone());
        assert_eq!(
            verify(&signed, Some(&key)).errors,
            ["record 4 is not signed: with a key given, every record must be signed"]
        );
    }

    #[test]
    fn a_link_record_anchors_the_chain_of_the_file_it_starts() {
        let key = SigningKey::new(b"secret".to_vec(), "kid");
        let mut chain = Chain::default();
        let response = || serde_json::from_str(r#"{"decision":"allow","severity":"low"}"#).unwrap();
        let mut first = Vec::new();
        for i in 0..2 {
            let (line, _) = chain.append(
                EvaluateRequest::default().into(),
                response(),
                format!("t{i}"),
                Some(&key),
            );
            first.push(String::from_utf8(line).unwrap());
        }
        let ended = chain.clone();
        let mut link = Vec::new();
        chain.seal_link("rotation", "t", Some(&key), &mut link);
        let (next, _) = chain.append(EvaluateRequest::default().into(), response(), "t9".into(), Some(&key));
        let second = vec![String::from_utf8(link).unwrap(), String::from_utf8(next).unwrap()];

        let report = verify(&second, Some(&key));
        assert!(report.valid, "{report:?}");
        assert_eq!((report.records, report.signed_records), (2, 2));
        assert_eq!(
            report.link,
            Some(Link {
                previous_sequence: 2,
                previous_record_hash: ended.record_hash.clone(),
                reason: "rotation".into()
            })
        );
        assert!(serde_json::to_string(&report).unwrap().ends_with(&format!(
            r#","link":{{"previous_sequence":2,"previous_record_hash":"{}","reason":"rotation"}}}}"#,
            ended.record_hash
        )));
        // Anywhere but first, a link record is an error.
        let mut misplaced = first.clone();
        misplaced.push(second[0].clone());
        assert!(
            verify(&misplaced, Some(&key))
                .errors
                .contains(&"record 3 is a link record, which may only start a file".to_owned())
        );
        // A link whose sequence does not follow from what it links to.
        let forged = second[0].replacen(r#""previous_sequence":2"#, r#""previous_sequence":7"#, 1);
        let errors = verify(&[forged, second[1].clone()], Some(&key)).errors;
        assert_eq!(errors[0], "record 1 sequence mismatch: got 3 want 8", "{errors:?}");
    }

    #[test]
    fn invalid_json_is_skipped_without_advancing_the_chain() {
        let mut lines = stream(None, 2);
        lines.insert(1, "{not json\n".into());
        let report = verify(&lines, None);
        assert_eq!(report.records, 3);
        assert_eq!(report.errors.len(), 1, "{report:?}");
        assert!(
            report.errors[0].starts_with("record 2 is not valid JSON: key must be a string at line 1 column 2"),
            "{report:?}"
        );
    }

    #[test]
    fn schema_and_unknown_fields() {
        let lines = stream(None, 1);
        let other_schema = lines[0].replace("cavra.go-daemon.evidence.v1", "v0");
        assert_eq!(
            verify(&[other_schema], None).errors,
            vec!["record 1 schema mismatch: v0", "record 1 hash mismatch"]
        );
        // The reference verifier re-serialises what it understood, so an added field is dropped and the hash still
        // matches; here the record must be exactly what it re-serialises to.
        let extra = lines[0].replacen('{', r#"{"extra":1,"#, 1);
        assert_eq!(
            verify(&[extra], None).errors,
            vec!["record 1 is not as written: it has fields, order or spacing the hash does not cover"]
        );
        let spaced = lines[0].replacen(r#""product":"#, r#" "product": "#, 1);
        assert!(!verify(&[spaced], None).valid);
    }

    #[test]
    fn long_lines_are_fine() {
        let mut chain = Chain::default();
        let request = EvaluateRequest {
            target: "x".repeat(100 * 1024),
            ..Default::default()
        };
        let response = serde_json::from_str(r#"{"decision":"allow","severity":"low"}"#).unwrap();
        let (line, _) = chain.append(request.clone().into(), response, "t".into(), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.jsonl");
        std::fs::write(&path, &line).unwrap();
        let report = verify_file(&path, &VerifyingKeys::default()).unwrap();
        assert!(report.valid, "{report:?}");
    }

    #[test]
    fn unreadable_files_are_errors_naming_the_path() {
        let path = Path::new("/nonexistent/evidence.jsonl");
        let error = verify_file(path, &VerifyingKeys::default()).unwrap_err().to_string();
        assert!(
            error.starts_with("cannot read evidence log /nonexistent/evidence.jsonl: "),
            "{error}"
        );
    }
}
