//! `--check`: read and check everything `--serve` would (flags, policies and registry, pins, limits, allow-lists,
//! runner authentication, evidence keys) without serving, so a configuration push can be tested before the daemon
//! is restarted or reloaded. Prints what would be served; any problem is the error `main` prints, with exit 1.

use std::io::{self, Write as _};

use super::flags::ServeArgs;
use super::serve::{self, ServeError};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("configuration check failed: {0}")]
    Invalid(#[from] ServeError),
    #[error("cannot write to standard output: {0}")]
    WriteOutput(io::Error),
}

pub fn run(args: &ServeArgs) -> Result<(), CheckError> {
    let configured = serve::configure(args)?;
    let policies = &configured.policies;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "configuration OK: {} ({} packs, default {}, {})",
        policies.source(),
        policies.packs().count(),
        policies.default_pack(),
        policies.digest()
    )
    .map_err(CheckError::WriteOutput)
}
