//! Verifying a stream as the reference verifier does: every record is parsed and re-serialised to recompute its
//! hash, the chain is followed, and signatures are checked when a key is given.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::Path;

use serde::Serialize;

use super::encode;
use super::record::{Chain, EvidenceRecord, SCHEMA_VERSION, SIGNATURE_ALGORITHM, signature_matches};
use super::{EvidenceError, SigningKey};

/// The reference verification report: `{"path","valid","records","signed_records","errors"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub path: String,
    pub valid: bool,
    pub records: u64,
    pub signed_records: u64,
    /// Every problem found, in stream order; the first is usually the cause of the rest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Verifies the stream at `path`. A signature is checked against `key` and, when the key has a non-empty id, its
/// `key_id` too; signed records without a key are errors, unsigned records are accepted with or without one.
/// `Err` only when the file cannot be read; a bad stream is a report with `valid: false`.
pub fn verify_file(path: &Path, key: Option<&SigningKey>) -> Result<VerifyReport, EvidenceError> {
    let read_error = |source| EvidenceError::Read {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(read_error)?);
    let mut verifier = Verifier::new(path, Signatures::Check(key));
    // Lines of any length: unlike the reference scanner, a record over 64 KiB is not an error.
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).map_err(read_error)? > 0 {
        verifier.line(&line);
        line.clear();
    }
    Ok(verifier.finish())
}

/// Which signature checks to make.
#[derive(Clone, Copy)]
pub(crate) enum Signatures<'a> {
    /// Chain and hashes only (opening a log without a configured key).
    Ignore,
    /// As the reference verifier, with this key or none.
    Check(Option<&'a SigningKey>),
}

/// Whether a line holds no record: nothing but (Unicode) white space. Opening and verifying must agree on this.
pub(crate) fn is_blank(raw: &[u8]) -> bool {
    String::from_utf8_lossy(raw).trim().is_empty()
}

/// Follows a stream line by line.
pub(crate) struct Verifier<'a> {
    signatures: Signatures<'a>,
    report: VerifyReport,
    expected_sequence: i64,
    previous_hash: String,
}

impl<'a> Verifier<'a> {
    pub(crate) fn new(path: &Path, signatures: Signatures<'a>) -> Self {
        Verifier {
            signatures,
            report: VerifyReport {
                path: path.display().to_string(),
                valid: true,
                records: 0,
                signed_records: 0,
                errors: Vec::new(),
            },
            expected_sequence: 1,
            previous_hash: String::new(),
        }
    }

    /// Starts the chain at the record in `raw` instead of at sequence 1, for checking the tail of a long log:
    /// that record's own place (sequence, previous hash) is taken as given, and everything from it on is checked.
    /// Returns false if the line is not a record.
    pub(crate) fn anchor(&mut self, raw: &[u8]) -> bool {
        let Ok(record) = serde_json::from_slice::<EvidenceRecord>(raw) else {
            return false;
        };
        self.expected_sequence = record.sequence;
        self.previous_hash = record.previous_hash;
        // Records are numbered by their place in the whole log, as if it had been read from the start.
        self.report.records = u64::try_from(record.sequence.saturating_sub(1)).unwrap_or_default();
        true
    }

    /// Checks one line (with or without its newline). Blank lines are skipped.
    pub(crate) fn line(&mut self, raw: &[u8]) {
        if is_blank(raw) {
            return;
        }
        // Go's decoder turns invalid UTF-8 into U+FFFD rather than failing; so does this.
        let text = String::from_utf8_lossy(raw);
        let line = text.trim();
        self.report.records += 1;
        let n = self.report.records;
        let mut record: EvidenceRecord = match serde_json::from_str(line) {
            Ok(record) => record,
            Err(error) => {
                // Skipped without advancing the chain, as the reference does.
                self.fail(format!("record {n} is not valid JSON: {error}"));
                return;
            }
        };
        if record.schema_version != SCHEMA_VERSION {
            self.fail(format!("record {n} schema mismatch: {}", record.schema_version));
        }
        if record.sequence != self.expected_sequence {
            self.fail(format!(
                "record {n} sequence mismatch: got {} want {}",
                record.sequence, self.expected_sequence
            ));
        }
        if record.previous_hash != self.previous_hash {
            self.fail(format!("record {n} previous hash mismatch"));
        }
        // The hash covers only the fields this verifier knows; a field it does not know would be dropped by the
        // re-serialisation and so not covered. A record must therefore be exactly what it re-serialises to.
        let canonical = String::from_utf8(encode::to_vec(&record)).expect("JSON is UTF-8") == line;
        let stored_hash = std::mem::take(&mut record.record_hash);
        let signature = record.signature.take();
        if stored_hash != record.unsealed_hash() {
            self.fail(format!("record {n} hash mismatch"));
        } else if !canonical {
            self.fail(format!(
                "record {n} is not as written: it has fields, order or spacing the hash does not cover"
            ));
        }
        if let Some(signature) = signature {
            self.report.signed_records += 1;
            if let Signatures::Check(key) = self.signatures {
                if signature.algorithm != SIGNATURE_ALGORITHM {
                    self.fail(format!("record {n} signature algorithm mismatch"));
                }
                match key {
                    None => self.fail(format!(
                        "record {n} signature present but verification key was not provided"
                    )),
                    Some(key) => {
                        if !key.key_id().is_empty() && signature.key_id != key.key_id() {
                            self.fail(format!("record {n} signature key_id mismatch"));
                        }
                        if !signature_matches(key, &record.previous_hash, &stored_hash, &signature.value) {
                            self.fail(format!("record {n} signature mismatch"));
                        }
                    }
                }
            }
        }
        self.previous_hash = stored_hash;
        self.expected_sequence = self.expected_sequence.saturating_add(1);
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
        let mut verifier = Verifier::new(Path::new("log.jsonl"), Signatures::Check(key));
        for line in lines {
            verifier.line(line.as_bytes());
        }
        verifier.finish()
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
    fn unsigned_records_pass_with_a_key() {
        let key = SigningKey::new(b"secret".to_vec(), "kid");
        let report = verify(&stream(None, 2), Some(&key));
        assert!(report.valid, "{report:?}");
        assert_eq!(report.signed_records, 0);
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
        let report = verify_file(&path, None).unwrap();
        assert!(report.valid, "{report:?}");
    }

    #[test]
    fn unreadable_files_are_errors_naming_the_path() {
        let path = Path::new("/nonexistent/evidence.jsonl");
        let error = verify_file(path, None).unwrap_err().to_string();
        assert!(
            error.starts_with("cannot read evidence log /nonexistent/evidence.jsonl: "),
            "{error}"
        );
    }
}
