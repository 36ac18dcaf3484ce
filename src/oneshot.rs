//! One-shot mode: read one request, print one decision.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::cli::Cli;
use crate::contract::EvaluateRequest;
use crate::engine;
use crate::policy::{PolicyError, PolicySet};

#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("cannot read the request from {source_name}: {error}")]
    ReadInput { source_name: String, error: io::Error },
    #[error("invalid request JSON in {source_name}: {error}")]
    InvalidRequest {
        source_name: String,
        error: serde_json::Error,
    },
    #[error("cannot write the decision to standard output: {0}")]
    WriteOutput(io::Error),
}

pub fn run(cli: &Cli) -> Result<(), OneShotError> {
    let policies = PolicySet::load(&cli.policy.config())?;
    let (source_name, text) = read_input(&cli.input)?;
    let request: EvaluateRequest =
        serde_json::from_str(&text).map_err(|error| OneShotError::InvalidRequest { source_name, error })?;
    let response = engine::evaluate(&policies, &request);
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &response)
        .map_err(io::Error::from)
        .and_then(|()| writeln!(out))
        .map_err(OneShotError::WriteOutput)
}

fn read_input(input: &Path) -> Result<(String, String), OneShotError> {
    let stdin = input == Path::new("-");
    let source_name = if stdin {
        "standard input".to_owned()
    } else {
        input.display().to_string()
    };
    let text = if stdin {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text).map(|_| text)
    } else {
        fs::read_to_string(PathBuf::from(input))
    };
    text.map(|text| (source_name.clone(), text))
        .map_err(|error| OneShotError::ReadInput { source_name, error })
}
