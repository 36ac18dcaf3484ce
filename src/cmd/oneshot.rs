//! One-shot mode: read one request, print one decision, without a daemon.

use std::io;
use std::process::ExitCode;

use super::ask::decision_status;
use super::flags::{ClientArgs, DecisionsError, PolicyArgs};
use super::io::{InputError, print_json, read_request};
use crate::auth::Peer;
use crate::contract::{DecisionResponse, EvaluateRequest};
use crate::engine::{self, InvalidRequest};
use crate::policy::{PolicyError, PolicySet};
use crate::server::Decisions;

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

/// Pins apply as they would to this process connecting to a daemon: its user and groups. With `--exit-code` the
/// status says the decision, as `--daemon`'s does.
pub fn run(policy: &PolicyArgs, client: &ClientArgs) -> Result<ExitCode, OneShotError> {
    let evaluator = Evaluator::load(policy)?;
    let request = read_request(&client.input)?;
    let response = evaluator.evaluate(&request).map_err(|error| OneShotError::Invalid {
        input: client.input.clone(),
        error,
    })?;
    print_json(&response).map_err(OneShotError::WriteOutput)?;
    Ok(if client.exit_code {
        decision_status(&response.decision)
    } else {
        ExitCode::SUCCESS
    })
}

/// The policy, pins and workspace root the flags name, to decide requests in this process.
pub struct Evaluator {
    policies: PolicySet,
    decisions: Decisions,
}

impl Evaluator {
    pub fn load(policy: &PolicyArgs) -> Result<Evaluator, OneShotError> {
        let policies = PolicySet::load(&policy.config())?;
        let decisions = policy.decisions(&policies)?;
        Ok(Evaluator { policies, decisions })
    }

    /// Decides `request` as the daemon would for this process's user.
    pub fn evaluate(&self, request: &EvaluateRequest) -> Result<DecisionResponse, InvalidRequest> {
        let context = self.decisions.context_for(&Peer::current());
        engine::evaluate(&self.policies, request, &context)
    }
}
