//! The log's line per decision (`--log-decisions`): every decision, only those that are not allowed, or none.
//!
//! With `non-allow` (the default) blocks and approvals are logged one by one, as they happen, and allowed decisions
//! are counted and summarised in one line per interval. The summary names the highest evidence record among the
//! allowed decisions it counts (its sequence and hash, as each decision line does), so the journal still anchors the
//! head of the chain for `--verify-evidence --journal`. The evidence log keeps every decision whatever the mode.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::auth::Peer;
use crate::contract::{Decision, DecisionResponse};

/// Which decisions get a line of their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DecisionLogMode {
    /// Every decision.
    All,
    /// Blocks and approvals; allowed decisions in one summary line per interval.
    #[default]
    NonAllow,
    /// None: the evidence log is the record of decisions.
    None,
}

/// The decision lines, and the allowed decisions not yet summarised.
#[derive(Debug)]
pub struct DecisionLog {
    mode: DecisionLogMode,
    interval: Duration,
    allowed: Mutex<Allowed>,
}

/// Allowed decisions since the last summary.
#[derive(Debug)]
struct Allowed {
    count: u64,
    /// The highest evidence record among them: its sequence and hash.
    highest: Option<(i64, String)>,
    since: Instant,
}

impl DecisionLog {
    pub fn new(mode: DecisionLogMode, interval: Duration) -> Self {
        Self {
            mode,
            interval,
            allowed: Mutex::new(Allowed {
                count: 0,
                highest: None,
                since: Instant::now(),
            }),
        }
    }

    /// Logs `response` (recorded as `record`, its evidence sequence and hash, when there is an evidence log), or
    /// counts it for the next summary. A decision whose record line is given (`--log-evidence-records`) is logged
    /// whatever the mode: the journal carries the chain off the host, and a record left out would be a gap there.
    pub fn decided(
        &self,
        response: &DecisionResponse,
        peer: &Peer,
        record: Option<(i64, &str)>,
        line_of: Option<&str>,
    ) {
        if line_of.is_some() {
            return line(response, peer, record, line_of);
        }
        match self.mode {
            DecisionLogMode::None => {}
            DecisionLogMode::NonAllow if response.decision == Decision::Allow => {
                let mut allowed = self.allowed.lock().unwrap_or_else(PoisonError::into_inner);
                allowed.count += 1;
                if let Some((sequence, hash)) = record
                    && allowed.highest.as_ref().is_none_or(|(highest, _)| sequence > *highest)
                {
                    allowed.highest = Some((sequence, hash.to_owned()));
                }
            }
            DecisionLogMode::All | DecisionLogMode::NonAllow => line(response, peer, record, None),
        }
    }

    /// Logs the summary of allowed decisions once the interval since the last one has passed and there is
    /// something to say (or at once, with `now`, as at shutdown).
    pub fn summarize(&self, now: bool) {
        let mut allowed = self.allowed.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = allowed.since.elapsed();
        if allowed.count == 0 || (!now && elapsed < self.interval) {
            return;
        }
        let count = std::mem::take(&mut allowed.count);
        let highest = allowed.highest.take();
        allowed.since = Instant::now();
        drop(allowed);
        tracing::info!(
            target: "cavra::decision",
            summary = "allow",
            allowed = count,
            evidence_sequence = highest.as_ref().map(|(sequence, _)| *sequence),
            evidence_record_hash = highest.as_ref().map(|(_, hash)| hash.as_str()),
            "{count} allowed decisions in the last {} (--log-decisions non-allow: allowed decisions are summarised)",
            humantime::format_duration(Duration::from_secs(elapsed.as_secs().max(1)))
        );
    }
}

/// One event per decision. With an evidence log, the event names the decision's record (its sequence and hash):
/// the journal, which leaves the host, then anchors the chain, and shows records later removed from the log. With
/// `--log-evidence-records` it carries the record itself too (`evidence`), byte for byte, so the chain can be
/// rebuilt and verified from collected journals.
fn line(response: &DecisionResponse, peer: &Peer, record: Option<(i64, &str)>, evidence: Option<&str>) {
    tracing::info!(
        target: "cavra::decision",
        decision = response.decision.as_str(),
        rule_id = %response.rule_id,
        severity = response.severity.as_str(),
        policy_pack = %response.policy_pack,
        requested_policy_pack = %response.requested_policy_pack,
        action_type = %response.action_type,
        decision_id = %response.decision_id,
        peer_uid = peer.uid,
        peer_gid = peer.gid,
        peer_pid = peer.pid,
        evidence_sequence = record.map(|(sequence, _)| sequence),
        evidence_record_hash = record.map(|(_, hash)| hash),
        evidence_record = evidence,
        "decision",
    );
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use serde_json::Value;

    use super::*;
    use crate::contract::{Refusal, Severity};

    /// What the log said, as the JSON lines `--log-format json` writes.
    fn logged(mode: DecisionLogMode, act: impl FnOnce(&DecisionLog)) -> Vec<Value> {
        #[derive(Clone, Default)]
        struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
        impl io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || act(&DecisionLog::new(mode, Duration::from_secs(3600))));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    fn decision(decision: Decision) -> DecisionResponse {
        DecisionResponse {
            decision,
            ..DecisionResponse::refusal("rule", Severity::Low, String::new())
        }
    }

    fn peer() -> Peer {
        Peer {
            uid: 1000,
            gid: 1000,
            pid: Some(7),
            groups: Vec::new(),
        }
    }

    /// Allow, block, allow, approval, allow: records 1 to 5.
    fn five(log: &DecisionLog) {
        let decisions = [
            Decision::Allow,
            Decision::Block,
            Decision::Allow,
            Decision::RequireApproval,
            Decision::Allow,
        ];
        for (sequence, kind) in (1..).zip(decisions) {
            log.decided(
                &decision(kind),
                &peer(),
                Some((sequence, &format!("h{sequence}"))),
                None,
            );
        }
    }

    #[test]
    fn non_allow_logs_blocks_and_approvals_and_summarises_allows_with_the_highest_record() {
        let lines = logged(DecisionLogMode::NonAllow, |log| {
            five(log);
            log.summarize(false);
            log.summarize(true);
            log.summarize(true);
        });
        let field = |line: &Value, name: &str| line[name].clone();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(field(&lines[0], "decision"), "block");
        assert_eq!(field(&lines[0], "evidence_sequence"), 2);
        assert_eq!(field(&lines[1], "decision"), "require_approval");
        let summary = &lines[2];
        assert_eq!(field(summary, "summary"), "allow");
        assert_eq!(field(summary, "allowed"), 3);
        assert_eq!(
            (
                field(summary, "evidence_sequence"),
                field(summary, "evidence_record_hash")
            ),
            (Value::from(5), Value::from("h5")),
            "the summary anchors the highest allowed record"
        );
        assert!(
            summary.get("decision").is_none(),
            "a summary is not a decision: {summary}"
        );
    }

    #[test]
    fn all_logs_every_decision_and_none_logs_nothing() {
        let all = logged(DecisionLogMode::All, |log| {
            five(log);
            log.summarize(true);
        });
        let decisions: Vec<&str> = all.iter().map(|line| line["decision"].as_str().unwrap()).collect();
        assert_eq!(decisions, ["allow", "block", "allow", "require_approval", "allow"]);
        let none = logged(DecisionLogMode::None, |log| {
            five(log);
            log.summarize(true);
        });
        assert!(none.is_empty(), "{none:#?}");
    }
}
