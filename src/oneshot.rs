//! One-shot mode: read one request, print one decision. Also reads the request for `--daemon`.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::Path;

use serde::Serialize;

use crate::cli::Cli;
use crate::contract::EvaluateRequest;
use crate::engine;
use crate::policy::{PolicyError, PolicySet};

#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("cannot write the decision to standard output: {0}")]
    WriteOutput(io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read the request from {source_name}: {error}")]
    Read { source_name: String, error: io::Error },
    #[error("invalid request JSON in {source_name}: {error}")]
    Invalid {
        source_name: String,
        error: serde_json::Error,
    },
}

pub fn run(cli: &Cli) -> Result<(), OneShotError> {
    let policies = PolicySet::load(&cli.policy.config())?;
    let request = read_request(&cli.client.input)?;
    print_json(&engine::evaluate(&policies, &request)).map_err(OneShotError::WriteOutput)
}

/// Reads one request from a file, or from standard input for `-`.
pub fn read_request(input: &Path) -> Result<EvaluateRequest, InputError> {
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
        fs::read_to_string(input)
    };
    let text = text.map_err(|error| InputError::Read {
        source_name: source_name.clone(),
        error,
    })?;
    serde_json::from_str(&text).map_err(|error| InputError::Invalid { source_name, error })
}

/// Indented JSON and a newline on standard output.
pub fn print_json(value: &impl Serialize) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)
}
