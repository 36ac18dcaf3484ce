//! What can go wrong when asking the daemon, and the daemon's refusals, told apart from policy decisions.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::discovery::{SOCKET_ENV, refused_access};
use crate::server::{LocationError, user_name};
use crate::wire::{DecisionResponse, STREAM_PROTOCOL};

/// Why a request got no decision.
///
/// Every message names the socket; [`ClientError::Refused`] carries the daemon's own answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing is listening there, or the socket cannot be reached. Nothing was sent.
    Connect { path: PathBuf, source: io::Error },
    /// The daemon's queue of connections stayed full until the deadline. Nothing was sent.
    ConnectTimedOut { path: PathBuf, timeout: Duration },
    /// The deadline passed before the answer was complete. The request may have been decided.
    TimedOut { path: PathBuf, timeout: Duration },
    /// The connection failed while the request was sent or the answer read.
    Io { path: PathBuf, source: io::Error },
    /// The daemon closed the connection without answering (the Go daemon does so when it cannot decode a request).
    Closed { path: PathBuf },
    /// The answer is not the JSON expected.
    InvalidAnswer {
        path: PathBuf,
        error: serde_json::Error,
        answer: String,
    },
    /// A health probe was answered with a decision: the server has no health probe (the Go daemon has none).
    NoHealth { path: PathBuf, answer: String },
    /// The server does not speak stream mode.
    NoStreamMode { path: PathBuf, answer: String },
    /// The socket's location does not say who should answer there ([`crate::ServerCheck::Location`]).
    UntrustedLocation { path: PathBuf, source: LocationError },
    /// Someone other than the expected user answered. Nothing was sent.
    WrongServer {
        path: PathBuf,
        expected: String,
        uid: u32,
        pid: Option<i32>,
    },
    /// The daemon refused to decide: not a policy decision (see [`Refusal`]).
    Refused { path: PathBuf, refusal: Refusal },
}

impl ClientError {
    /// The daemon's refusal, if that is what this is.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            ClientError::Refused { refusal, .. } => Some(refusal),
            _ => None,
        }
    }

    /// Whether asking again may help and cannot decide the request twice: a refusal worth retrying
    /// ([`Refusal::is_retryable`]), or a connection that failed before anything was sent (no socket yet, nobody
    /// listening yet, a full queue). A timeout or a failure after the request was sent is not: the daemon may have
    /// decided it.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Refused { refusal, .. } => refusal.is_retryable(),
            ClientError::Connect { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused | io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { path, source } => {
                write!(f, "cannot connect to cavra-runtime at {}: ", path.display())?;
                match source.kind() {
                    io::ErrorKind::NotFound => write!(
                        f,
                        "no such socket; start the daemon (`sudo systemctl start cavra-runtime.socket` for the \
                         system service, `cavra-runtime --lifecycle start --socket {0}` for your own), or name the \
                         socket it listens on with --socket or ${SOCKET_ENV}",
                        path.display()
                    ),
                    io::ErrorKind::PermissionDenied => {
                        write!(f, "permission denied {}", refused_access(path))
                    }
                    io::ErrorKind::ConnectionRefused => write!(
                        f,
                        "not answering: the socket is there but no daemon listens on it (it stopped or crashed); \
                         start it again (`sudo systemctl restart cavra-runtime.socket`, or `cavra-runtime \
                         --lifecycle start --socket {0}`)",
                        path.display()
                    ),
                    _ => write!(f, "{source}"),
                }
            }
            ClientError::ConnectTimedOut { path, timeout } => write!(
                f,
                "cannot connect to cavra-runtime at {} within {timeout:?}: not answering: its queue of connections \
                 stayed full (it is overloaded, or not accepting); nothing was sent",
                path.display()
            ),
            ClientError::TimedOut { path, timeout } => write!(
                f,
                "no answer from cavra-runtime at {0} within {timeout:?}: it is not answering (hung, or too busy); \
                 check it with `cavra-runtime --lifecycle status --socket {0}` or `systemctl status cavra-runtime`",
                path.display()
            ),
            ClientError::Io { path, source } => {
                write!(f, "connection to cavra-runtime at {} failed: {source}", path.display())
            }
            ClientError::Closed { path } => write!(
                f,
                "cavra-runtime at {} closed the connection without answering",
                path.display()
            ),
            ClientError::InvalidAnswer { path, error, answer } => write!(
                f,
                "cavra-runtime at {} sent an answer that is not valid JSON ({error}): {answer}",
                path.display()
            ),
            ClientError::NoHealth { path, answer } => write!(
                f,
                "the server at {} answered the health probe with a decision, not its health (the Go daemon has no \
                 health probe): {answer}",
                path.display()
            ),
            ClientError::NoStreamMode { path, answer } => write!(
                f,
                "cavra-runtime at {} does not speak {STREAM_PROTOCOL}; it answered: {answer}",
                path.display()
            ),
            ClientError::UntrustedLocation { path, source } => write!(
                f,
                "cannot tell who should answer on {}: {source}; name the daemon's user with --expect-server-uid",
                path.display()
            ),
            ClientError::WrongServer {
                path,
                expected,
                uid,
                pid,
            } => write!(
                f,
                "refusing to talk to {}: it is served by {} (pid {}), but only {expected} may answer there \
                 (--expect-server-uid)",
                path.display(),
                user_name(*uid),
                pid.map_or("unknown".to_owned(), |pid| pid.to_string())
            ),
            ClientError::Refused { path, refusal } => write!(
                f,
                "cavra-runtime at {} refused the request ({}: {}): {}",
                path.display(),
                refusal.rule_id(),
                refusal.kind().describe(),
                refusal.reason()
            ),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect { source, .. } | ClientError::Io { source, .. } => Some(source),
            ClientError::InvalidAnswer { error, .. } => Some(error),
            ClientError::UntrustedLocation { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why the daemon refused to decide. Each is answered on the wire as a `block` (the reference's shape), but none is
/// the policy's judgement of the action: the daemon could not, or would not, evaluate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalKind {
    /// `daemon.overloaded`: too many connections, or too many bytes in transit. Worth retrying.
    Overloaded,
    /// `daemon.rate_limited`: this peer asked too often. Worth retrying.
    RateLimited,
    /// `daemon.request.too_large`: over the daemon's `--max-request-bytes`.
    RequestTooLarge,
    /// `daemon.request.timeout`: the request did not arrive in full within the daemon's `--request-timeout`.
    RequestTimeout,
    /// `daemon.request.invalid`: not a valid request.
    RequestInvalid,
    /// `daemon.peer.unauthorized`: this user may not use the daemon (`--allow-uid`, `--allow-group`).
    PeerUnauthorized,
    /// `daemon.evidence.unavailable`: evaluated, but withheld because its evidence record could not be written.
    EvidenceUnavailable,
    /// `runner_auth.invalid`: the request's runner credential was missing or wrong. The daemon records it as
    /// evidence, as the reference does, but no policy was asked.
    RunnerAuthInvalid,
    /// Another `daemon.*` rule id, from a newer daemon.
    Other,
}

impl RefusalKind {
    /// The refusal a rule id names; `None` for a decision of the policy.
    pub fn of(rule_id: &str) -> Option<RefusalKind> {
        Some(match rule_id {
            "daemon.overloaded" => RefusalKind::Overloaded,
            "daemon.rate_limited" => RefusalKind::RateLimited,
            "daemon.request.too_large" => RefusalKind::RequestTooLarge,
            "daemon.request.timeout" => RefusalKind::RequestTimeout,
            "daemon.request.invalid" => RefusalKind::RequestInvalid,
            "daemon.peer.unauthorized" => RefusalKind::PeerUnauthorized,
            "daemon.evidence.unavailable" => RefusalKind::EvidenceUnavailable,
            "runner_auth.invalid" => RefusalKind::RunnerAuthInvalid,
            other if other.starts_with("daemon.") => RefusalKind::Other,
            _ => return None,
        })
    }

    /// Whether asking again later may get a decision, and the refused request was not evaluated.
    pub fn is_retryable(self) -> bool {
        matches!(self, RefusalKind::Overloaded | RefusalKind::RateLimited)
    }

    /// For messages.
    pub fn describe(self) -> &'static str {
        match self {
            RefusalKind::Overloaded => "the daemon is overloaded",
            RefusalKind::RateLimited => "this peer is rate limited",
            RefusalKind::RequestTooLarge => "the request is too large",
            RefusalKind::RequestTimeout => "the request did not arrive in time",
            RefusalKind::RequestInvalid => "the request is invalid",
            RefusalKind::PeerUnauthorized => "this user may not use the daemon",
            RefusalKind::EvidenceUnavailable => "the decision could not be recorded as evidence",
            RefusalKind::RunnerAuthInvalid => "runner authentication failed",
            RefusalKind::Other => "a refusal this client does not know",
        }
    }
}

/// A daemon refusal, with the answer as the daemon sent it (for callers that print or record it).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    kind: RefusalKind,
    response: Box<DecisionResponse>,
}

impl Refusal {
    /// Tells a daemon refusal from a decision of the policy: `Ok` for a decision, `Err` for a refusal. A refusal is
    /// recognised by its rule id (`daemon.*`, `runner_auth.invalid`), whatever its decision field says.
    pub fn classify(response: DecisionResponse) -> Result<DecisionResponse, Refusal> {
        match RefusalKind::of(&response.rule_id) {
            Some(kind) => Err(Refusal {
                kind,
                response: Box::new(response),
            }),
            None => Ok(response),
        }
    }

    pub fn kind(&self) -> RefusalKind {
        self.kind
    }

    pub fn rule_id(&self) -> &str {
        &self.response.rule_id
    }

    pub fn reason(&self) -> &str {
        &self.response.reason
    }

    /// See [`RefusalKind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The answer as the daemon sent it.
    pub fn response(&self) -> &DecisionResponse {
        &self.response
    }

    pub fn into_response(self) -> DecisionResponse {
        *self.response
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.rule_id(), self.kind.describe(), self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Decision, Severity};

    fn answer(rule_id: &str) -> DecisionResponse {
        serde_json::from_value(serde_json::json!({
            "rule_id": rule_id, "decision": "block", "severity": "high", "reason": "because"
        }))
        .unwrap()
    }

    #[test]
    fn daemon_rule_ids_are_refusals_and_policy_rule_ids_are_decisions() {
        for (rule_id, kind, retryable) in [
            ("daemon.overloaded", RefusalKind::Overloaded, true),
            ("daemon.rate_limited", RefusalKind::RateLimited, true),
            ("daemon.request.too_large", RefusalKind::RequestTooLarge, false),
            ("daemon.request.timeout", RefusalKind::RequestTimeout, false),
            ("daemon.request.invalid", RefusalKind::RequestInvalid, false),
            ("daemon.peer.unauthorized", RefusalKind::PeerUnauthorized, false),
            ("daemon.evidence.unavailable", RefusalKind::EvidenceUnavailable, false),
            ("runner_auth.invalid", RefusalKind::RunnerAuthInvalid, false),
            ("daemon.something.new", RefusalKind::Other, false),
        ] {
            let refusal = Refusal::classify(answer(rule_id)).unwrap_err();
            assert_eq!(refusal.kind(), kind, "{rule_id}");
            assert_eq!(refusal.is_retryable(), retryable, "{rule_id}");
            assert_eq!(refusal.rule_id(), rule_id);
            assert_eq!(refusal.reason(), "because");
        }
        for rule_id in [
            "filesystem.read.block",
            "policy.pack.unknown",
            "runtime.default.require_approval",
            "daemonx",
        ] {
            let decision = Refusal::classify(answer(rule_id)).unwrap();
            assert_eq!(decision.decision, Decision::Block);
            assert_eq!(decision.severity, Severity::High);
        }
    }

    #[test]
    fn messages_name_the_socket_the_rule_and_the_reason() {
        let path = PathBuf::from("/run/x.sock");
        let refused = ClientError::Refused {
            path: path.clone(),
            refusal: Refusal::classify(answer("daemon.overloaded")).unwrap_err(),
        };
        assert_eq!(
            refused.to_string(),
            "cavra-runtime at /run/x.sock refused the request (daemon.overloaded: the daemon is overloaded): because"
        );
        assert!(refused.is_retryable());
        let connect = ClientError::ConnectTimedOut {
            path: path.clone(),
            timeout: Duration::from_millis(300),
        };
        assert!(
            connect
                .to_string()
                .contains("within 300ms: not answering: its queue of connections stayed full"),
            "{connect}"
        );
        for (kind, retryable) in [
            (io::ErrorKind::NotFound, true),
            (io::ErrorKind::ConnectionRefused, true),
            (io::ErrorKind::PermissionDenied, false),
        ] {
            let error = ClientError::Connect {
                path: path.clone(),
                source: io::Error::from(kind),
            };
            assert_eq!(error.is_retryable(), retryable, "{kind:?}");
        }
        let timed_out = ClientError::TimedOut {
            path,
            timeout: Duration::from_secs(1),
        };
        assert!(!timed_out.is_retryable(), "the request may have been decided");
        assert_eq!(
            timed_out.to_string(),
            "no answer from cavra-runtime at /run/x.sock within 1s: it is not answering (hung, or too busy); \
             check it with `cavra-runtime --lifecycle status --socket /run/x.sock` or `systemctl status \
             cavra-runtime`"
        );
    }
}
