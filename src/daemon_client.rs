//! `--daemon`: send one request to a running daemon and print its decision.

use std::io;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::client::{Client, ClientError};
use crate::contract::Decision;
use crate::oneshot::{InputError, print_json, read_request};

#[derive(Debug, thiserror::Error)]
pub enum DaemonClientError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot write the decision to standard output: {0}")]
    WriteOutput(io::Error),
}

pub fn run(cli: &Cli) -> Result<ExitCode, DaemonClientError> {
    let request = read_request(&cli.client.input)?;
    let client = Client::new(&cli.socket.socket).with_timeout(cli.client.client_timeout);
    let response = client.evaluate(&request)?;
    print_json(&response).map_err(DaemonClientError::WriteOutput)?;
    Ok(match (cli.client.exit_code, response.decision) {
        (false, _) | (true, Decision::Allow) => ExitCode::SUCCESS,
        (true, Decision::RequireApproval) => ExitCode::from(2),
        (true, Decision::Block) => ExitCode::from(3),
    })
}
