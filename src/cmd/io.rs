//! What the command-line modes read and print: one request from a file or standard input, and indented JSON.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::Path;

use serde::Serialize;

use crate::contract::EvaluateRequest;

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
