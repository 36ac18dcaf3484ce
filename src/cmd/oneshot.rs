//! One-shot mode: read one request, print one decision, without a daemon.

use std::io;

use super::flags::{ClientArgs, PolicyArgs};
use super::io::{InputError, print_json, read_request};
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

pub fn run(policy: &PolicyArgs, client: &ClientArgs) -> Result<(), OneShotError> {
    let policies = PolicySet::load(&policy.config())?;
    let request = read_request(&client.input)?;
    print_json(&engine::evaluate(&policies, &request)).map_err(OneShotError::WriteOutput)
}
