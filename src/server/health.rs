//! The answer to a health probe (`{"action_type":"cavra.health"}`): the contract's fields, with `status` the worst
//! of the reasons found, and `reasons`, each with a stable code, the status it alone calls for and a message that
//! names what is wrong. With nothing wrong, `status` is `ok` and `reasons` is empty.
//!
//! To report something new, add a check that returns a [`Reason`]; a status worse than `degraded` (one where
//! decisions fail) goes after it in [`Status`], so that the worst reason still wins.

use serde::Serialize;

use crate::contract::{Health, ReloadOutcome};

/// How well the daemon does its job, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Deciding and recording as configured.
    Ok,
    /// Still deciding and recording, but something needs the operator before it stops doing so.
    Degraded,
    /// Decisions fail closed (or some clients are refused outright): the operator must act now.
    Failing,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Degraded => "degraded",
            Status::Failing => "failing",
        }
    }
}

/// One thing that keeps the daemon from `ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Stable, for monitoring to match on: `evidence.low_space`.
    pub code: &'static str,
    /// The status this reason calls for.
    pub status: Status,
    /// What is wrong, naming the path, figures and flag involved.
    pub message: String,
}

/// The health answer as sent.
#[derive(Debug, Clone, Serialize)]
pub struct HealthAnswer {
    #[serde(flatten)]
    pub health: Health,
    pub reasons: Vec<Reason>,
    /// How the last reload ended, once there was one (`--reload` waits for its generation to change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<ReloadOutcome>,
}

impl HealthAnswer {
    /// `health` with its status set from `reasons`: the worst of them, `ok` when there are none.
    pub fn new(mut health: Health, reasons: Vec<Reason>) -> Self {
        let status = reasons.iter().map(|reason| reason.status).max().unwrap_or(Status::Ok);
        health.status = status.as_str().to_owned();
        Self {
            health,
            reasons,
            last_reload: None,
        }
    }

    pub fn with_last_reload(mut self, last_reload: Option<ReloadOutcome>) -> Self {
        self.last_reload = last_reload;
        self
    }

    /// The service manager's status line: the serving line alone when all is well, else the status and each
    /// reason first, so `systemctl status` shows what is wrong.
    pub fn status_line(&self, serving: &str) -> String {
        if self.reasons.is_empty() {
            return serving.to_owned();
        }
        let reasons: Vec<String> = self
            .reasons
            .iter()
            .map(|reason| format!("{}: {}", reason.code, reason.message))
            .collect();
        format!("{}: {} | {serving}", self.health.status, reasons.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health {
            status: String::new(),
            version: "1".into(),
            uptime_seconds: 2,
            pid: 3,
            policy_source: "built-in".into(),
            default_pack: "p".into(),
            packs: 4,
            policy_digest: "sha256:x".into(),
        }
    }

    #[test]
    fn the_status_is_the_worst_reason_and_the_reasons_follow_the_contract_fields() {
        let ok = serde_json::to_value(HealthAnswer::new(health(), Vec::new())).unwrap();
        assert_eq!((&ok["status"], &ok["reasons"]), (&"ok".into(), &serde_json::json!([])));
        assert_eq!(
            ok["policy_digest"], "sha256:x",
            "the contract's fields stay at the top level"
        );

        let low = Reason {
            code: "evidence.low_space",
            status: Status::Degraded,
            message: "m".into(),
        };
        let degraded = serde_json::to_value(HealthAnswer::new(health(), vec![low])).unwrap();
        assert_eq!(degraded["status"], "degraded");
        assert_eq!(
            degraded["reasons"],
            serde_json::json!([{"code": "evidence.low_space", "status": "degraded", "message": "m"}])
        );
        // The client library's Health, which knows only the contract's fields, still reads the answer.
        let read: Health = serde_json::from_value(degraded).unwrap();
        assert_eq!(read.status, "degraded");
    }
}
