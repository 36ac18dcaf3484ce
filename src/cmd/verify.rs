//! `--verify-evidence`: check an evidence log's hash chain (and signatures, given the key) and print the report.

use std::io;
use std::process::ExitCode;

use super::flags::EvidenceArgs;
use super::io::print_json;
use crate::auth::SecretError;
use crate::evidence::{EvidenceError, verify_file};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("--evidence-log is required with --verify-evidence")]
    NoLog,
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    #[error(transparent)]
    Key(#[from] SecretError),
    #[error("cannot write the report to standard output: {0}")]
    WriteOutput(io::Error),
}

pub fn run(evidence: &EvidenceArgs) -> Result<ExitCode, VerifyError> {
    let path = evidence.evidence_log.as_deref().ok_or(VerifyError::NoLog)?;
    let key = evidence.signing_key()?;
    let report = verify_file(path, key.as_ref())?;
    print_json(&report).map_err(VerifyError::WriteOutput)?;
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
