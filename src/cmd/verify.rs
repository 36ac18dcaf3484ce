//! `--verify-evidence`: check an evidence log's hash chain (and signatures, given keys) and print the report. One
//! file gets the reference's report; several files, or a directory, are verified as one chain across rotations.
//! With `--journal`, the log is also cross-checked against the decisions the journal saw. With `--journal` and no
//! `--evidence-log`, the chains themselves are rebuilt from the records the journal carries
//! (`--log-evidence-records`) and verified, one per machine.

use std::io;
use std::process::ExitCode;

use super::flags::{EvidenceArgs, EvidenceKeyError};
use super::io::print_json;
use crate::evidence::journal::{self, CrossCheck, JournalError};
use crate::evidence::set::{files_in, verify_set};
use crate::evidence::shipped::verify_shipped;
use crate::evidence::{EvidenceError, verify_file, verify_file_against};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "--verify-evidence needs --evidence-log (a log, its rotated files or their directory), --journal (collected \
         journals holding the records), or both"
    )]
    NoLog,
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    #[error(transparent)]
    Key(#[from] EvidenceKeyError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot write the report to standard output: {0}")]
    WriteOutput(io::Error),
}

pub fn run(evidence: &EvidenceArgs) -> Result<ExitCode, VerifyError> {
    let keys = evidence.verifying_keys()?;
    if evidence.evidence_log.is_empty() {
        if evidence.journal.is_empty() {
            return Err(VerifyError::NoLog);
        }
        let mut records = Vec::new();
        for source in &evidence.journal {
            records.extend(journal::read_records(source)?);
        }
        let report = verify_shipped(records, &keys);
        print_json(&report).map_err(VerifyError::WriteOutput)?;
        return Ok(if report.valid {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let journal = match evidence.journal.as_slice() {
        [] => None,
        sources => {
            let mut anchors = Vec::new();
            for source in sources {
                anchors.extend(journal::read(source)?);
            }
            Some(CrossCheck::new(anchors))
        }
    };
    let valid = match evidence.evidence_log.as_slice() {
        [path] if !path.is_dir() => {
            let report = match journal {
                Some(journal) => verify_file_against(path, &keys, journal)?,
                None => verify_file(path, &keys)?,
            };
            print_json(&report).map_err(VerifyError::WriteOutput)?;
            report.valid
        }
        given => {
            let (mut files, mut ignored) = (Vec::new(), Vec::new());
            for path in given {
                if path.is_dir() {
                    let (logs, others) = files_in(path)?;
                    files.extend(logs);
                    ignored.extend(others);
                } else {
                    files.push(path.clone());
                }
            }
            let name = given
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let report = verify_set(&name, &files, &ignored, &keys, journal)?;
            print_json(&report).map_err(VerifyError::WriteOutput)?;
            report.valid
        }
    };
    Ok(if valid { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
