//! A client for cavra-runtime, the local policy daemon that AI coding agents and CI runners ask whether an action
//! may happen (and for the Go daemon it replaces).
//!
//! - [`wire`]: the request and answer types, the very ones the daemon uses.
//! - [`Client`] (blocking) and, with the `async` feature, `AsyncClient` (tokio): one deadline for the whole call
//!   (connect included), [`Retry`] with back-off for refusals worth retrying, and a check of who is answering
//!   ([`ServerCheck`]) before anything is sent.
//! - Decisions and refusals are told apart: `Ok` is always a decision of the policy; a daemon that could not or
//!   would not decide (overloaded, unauthorised peer, evidence log unwritable, ...) is
//!   [`ClientError::Refused`] with a [`RefusalKind`].
//! - [`find_socket`] finds the daemon as users expect (`--socket`, `$CAVRA_RUNTIME_SOCKET`, the user's own daemon,
//!   the system socket); a connection refused permission says which group the user lacks.
//! - With the `runner-auth` feature, `runner_auth::RunnerSigner` signs each request as a CI runner.
//!
//! ```
//! use std::time::Duration;
//! use cavra_runtime_client::{Client, ClientError, Decision, EvaluateRequest, Retry};
//!
//! /// Whether the agent may run `command`: only an explicit allow says yes.
//! fn may_run(client: &Client, command: &str) -> Result<bool, ClientError> {
//!     let request = EvaluateRequest {
//!         action_type: "execute_command".into(),
//!         target: command.into(),
//!         ..Default::default()
//!     };
//!     let answer = client.evaluate(&request)?;
//!     Ok(answer.decision == Decision::Allow)
//! }
//!
//! let client = Client::new("/nonexistent/cavra-runtime.sock")
//!     .with_timeout(Duration::from_millis(200))
//!     .with_retry(Retry::none());
//! // No daemon there: an error, never an allow.
//! let error = may_run(&client, "terraform apply").unwrap_err();
//! assert!(error.to_string().starts_with(
//!     "cannot connect to cavra-runtime at /nonexistent/cavra-runtime.sock: no such socket; start the daemon"
//! ));
//! ```
//!
//! The wire protocol, the daemon's refusals and their rule ids are described in the daemon's `docs/protocol.md`.

mod blocking;
pub mod discovery;
mod error;
mod retry;
mod server;
mod socket;
pub mod wire;

#[cfg(feature = "async")]
mod asynchronous;
#[cfg(feature = "runner-auth")]
pub mod runner_auth;

#[cfg(feature = "async")]
pub use asynchronous::AsyncClient;
pub use blocking::{Client, DEFAULT_TIMEOUT, Stream};
pub use discovery::{FoundSocket, SOCKET_ENV, SocketOrigin, find_socket, own_socket};
pub use error::{ClientError, Refusal, RefusalKind};
pub use retry::Retry;
pub use server::{
    LINUX_SYSTEM_SOCKET, LocationError, MACOS_SYSTEM_SOCKET, SERVICE_USER, SYSTEM_SOCKET, Server, ServerCheck,
    user_name,
};
pub use wire::{
    Decision, DecisionResponse, EvaluateRequest, Health, ReleaseGovernanceEvidence, RunnerAuthentication,
    RunnerIdentity, Severity,
};
