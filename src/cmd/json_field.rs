//! `--json-field NAME`: print one field of a JSON object, so that scripts (the CI gate) read the daemon's answers,
//! status reports and token responses with a real JSON parser and no other tool.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::Path;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("cannot read {input}: {source}")]
    Read { input: String, source: io::Error },
    #[error("{input} is not JSON: {source}")]
    Invalid { input: String, source: serde_json::Error },
    #[error("{input} is not a JSON object")]
    NotAnObject { input: String },
    #[error("{input} has no field {name:?}")]
    Absent { input: String, name: String },
    #[error("cannot write to standard output: {0}")]
    Write(io::Error),
}

/// Prints field `name` of the object in `input` (`-` for standard input): a string as its text, `null` as nothing,
/// any other value as compact JSON; then a newline.
pub fn run(name: &str, input: &Path) -> Result<(), FieldError> {
    let stdin = input == Path::new("-");
    let described = if stdin {
        "standard input".to_owned()
    } else {
        input.display().to_string()
    };
    let bytes = if stdin {
        let mut bytes = Vec::new();
        io::stdin().read_to_end(&mut bytes).map(|_| bytes)
    } else {
        fs::read(input)
    }
    .map_err(|source| FieldError::Read {
        input: described.clone(),
        source,
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|source| FieldError::Invalid {
        input: described.clone(),
        source,
    })?;
    let Value::Object(object) = value else {
        return Err(FieldError::NotAnObject { input: described });
    };
    let field = object.get(name).ok_or_else(|| FieldError::Absent {
        input: described,
        name: name.to_owned(),
    })?;
    let text = match field {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    writeln!(io::stdout().lock(), "{text}").map_err(FieldError::Write)
}
