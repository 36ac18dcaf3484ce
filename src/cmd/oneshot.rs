//! One-shot mode: read one request, print one decision, without a daemon.

use std::io;

use super::flags::{ClientArgs, DecisionsError, PolicyArgs};
use super::io::{InputError, print_json, read_request};
use crate::auth::Peer;
use crate::engine::{self, InvalidRequest};
use crate::policy::{PolicyError, PolicySet};

#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("cannot write the decision to standard output: {0}")]
    WriteOutput(io::Error),
    #[error(transparent)]
    Decisions(#[from] DecisionsError),
    #[error("{}: {error}", .input.display())]
    Invalid {
        input: std::path::PathBuf,
        error: InvalidRequest,
    },
}

/// Pins apply as they would to this process connecting to a daemon: its user and groups.
pub fn run(policy: &PolicyArgs, client: &ClientArgs) -> Result<(), OneShotError> {
    let policies = PolicySet::load(&policy.config())?;
    let decisions = policy.decisions(&policies)?;
    let request = read_request(&client.input)?;
    let context = decisions.context_for(&Peer::current());
    let response = engine::evaluate(&policies, &request, &context).map_err(|error| OneShotError::Invalid {
        input: client.input.clone(),
        error,
    })?;
    print_json(&response).map_err(OneShotError::WriteOutput)
}
