//! `--daemon`: ask a running daemon about one request and print its decision. The socket is found as every client
//! finds it ([`find_socket`]): `--socket`, `$CAVRA_RUNTIME_SOCKET`, the user's own daemon, the system socket.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cavra_runtime_client::{Client, ClientError, Retry, find_socket};

use super::flags::{AuthArgs, ClientArgs, SocketArgs, UnknownServerUser};
use super::io::{InputError, print_json, read_request};
use crate::auth::oidc::OidcError;
use crate::auth::runner::{OIDC_ALGORITHM, reject_line_breaks};
use crate::auth::{RunnerAuthError, RunnerSigner, SecretError};
use crate::contract::{Decision, RunnerAuthentication, RunnerIdentity};

#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cannot read runner claims {}: {source}", path.display())]
    ReadClaims { path: PathBuf, source: io::Error },
    #[error("runner claims {} are not a runner identity: {source}", path.display())]
    InvalidClaims { path: PathBuf, source: serde_json::Error },
    #[error("runner auth identity requires provider and repository")]
    Identity,
    #[error("runner auth HMAC key is required")]
    NoKey,
    #[error(transparent)]
    Token(#[from] OidcError),
    #[error(transparent)]
    Claims(#[from] RunnerAuthError),
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The system socket could not be reached, after looking for the user's own daemon first.
    #[error("{error}; {looked}")]
    NotFound { error: ClientError, looked: String },
    #[error(transparent)]
    ServerUser(#[from] UnknownServerUser),
    #[error("cannot write the decision to standard output: {0}")]
    WriteOutput(io::Error),
}

/// `--exit-code` statuses: none of them is one a usage error (2, clap's) or another error (1) exits with.
pub const EXIT_BLOCK: u8 = 3;
pub const EXIT_REQUIRE_APPROVAL: u8 = 4;

/// The daemon the client modes (`--daemon`, `--hook`) ask at `socket` (found by [`find_socket`]), with the deadline
/// and server check their flags name. One attempt, as the reference's client made.
pub fn daemon_client(client: &ClientArgs, socket: &Path) -> Result<Client, UnknownServerUser> {
    Ok(Client::new(socket)
        .with_timeout(client.client_timeout)
        .with_retry(Retry::none())
        .expect_server(client.server_check()?))
}

/// The `--exit-code` status of a decision: only an explicit allow is 0; block, and any decision this version does
/// not know, is a block.
pub fn decision_status(decision: &Decision) -> ExitCode {
    match decision {
        Decision::Allow => ExitCode::SUCCESS,
        Decision::RequireApproval => ExitCode::from(EXIT_REQUIRE_APPROVAL),
        _ => ExitCode::from(EXIT_BLOCK),
    }
}

pub fn run(client: &ClientArgs, socket: &SocketArgs, auth: &AuthArgs) -> Result<ExitCode, AskError> {
    let mut request = read_request(&client.input)?;
    let found = find_socket(socket.socket.as_deref());
    // What the daemon answers, refusal or decision, is printed.
    let mut daemon = daemon_client(client, &found.path)?;
    if let Some(claims) = &auth.runner_auth_claims {
        match authenticate(auth, claims)? {
            Runner::Oidc(token) => request.runner_auth = Some(token),
            Runner::Hmac(signer) => daemon = daemon.with_runner_signer(signer),
        }
    }
    // A refusal prints as the reference printed it, a block (and exits as one with --exit-code).
    let response = daemon
        .evaluate_raw(&request)
        .map_err(|error| match (&error, found.looked_elsewhere()) {
            (ClientError::Connect { .. }, Some(looked)) => AskError::NotFound { error, looked },
            _ => AskError::Client(error),
        })?;
    print_json(&response).map_err(AskError::WriteOutput)?;
    Ok(if client.exit_code {
        decision_status(&response.decision)
    } else {
        ExitCode::SUCCESS
    })
}

/// How the request proves which runner sends it.
enum Runner {
    /// The provider's token, sent as it is.
    Oidc(RunnerAuthentication),
    /// An HMAC credential made for the request as it is sent (runner auth v2).
    Hmac(RunnerSigner),
}

/// The runner the identity in `claims` is: with the OIDC token when one is given, else HMAC-signed.
fn authenticate(auth: &AuthArgs, claims: &Path) -> Result<Runner, AskError> {
    let text = fs::read(claims).map_err(|source| AskError::ReadClaims {
        path: claims.to_owned(),
        source,
    })?;
    let identity: RunnerIdentity = serde_json::from_slice(&text).map_err(|source| AskError::InvalidClaims {
        path: claims.to_owned(),
        source,
    })?;
    if identity.provider.is_empty() || identity.repository.is_empty() {
        return Err(AskError::Identity);
    }
    reject_line_breaks(&identity)?;
    if let Some(token) = auth.oidc_token()? {
        let token = String::from_utf8_lossy(token.expose()).trim().to_owned();
        return Ok(Runner::Oidc(RunnerAuthentication {
            key_id: token_kid(&token)?,
            identity,
            algorithm: OIDC_ALGORITHM.to_owned(),
            signature: token,
            ..Default::default()
        }));
    }
    let key = auth.runner_key()?.ok_or(AskError::NoKey)?;
    Ok(Runner::Hmac(
        RunnerSigner::new(key.expose().to_vec(), auth.runner_auth_key_id.clone(), identity)
            .map_err(RunnerAuthError::from)?,
    ))
}

/// The `kid` of a compact JWT's header (empty if it has none), checking the token's shape as the daemon will.
fn token_kid(token: &str) -> Result<String, OidcError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, _, _] = parts.as_slice() else {
        return Err(OidcError::NotCompact);
    };
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|error| OidcError::HeaderEncoding(error.to_string()))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|error| OidcError::HeaderJson(error.to_string()))?;
    Ok(header
        .get("kid")
        .and_then(|kid| kid.as_str())
        .unwrap_or_default()
        .to_owned())
}
