//! Wire types shared by the daemon, its clients and the one-shot CLI. They are defined, with their JSON, in the
//! client crate (`cavra_runtime_client::wire`), so that the daemon and every client read and write the same types;
//! what only the daemon needs is here: the reference's ids and timestamps, and the one constructor of its refusals.

use std::fmt::Write as _;

use time::OffsetDateTime;

pub use cavra_runtime_client::wire::*;

/// The constructor of every daemon refusal (in scope, `DecisionResponse::refusal(...)` reads as it always has).
pub trait Refusal {
    /// A block no policy decided: the daemon refusing a request for a reason of its own (`daemon.*`), with the ids
    /// and timestamp that trace it. No pack was consulted, so it names none.
    fn refusal(rule_id: &str, severity: Severity, reason: String) -> Self;
}

impl Refusal for DecisionResponse {
    fn refusal(rule_id: &str, severity: Severity, reason: String) -> Self {
        DecisionResponse {
            decision_id: random_id("dec_"),
            session_id: String::new(),
            agent_id: String::new(),
            actor: String::new(),
            action_type: String::new(),
            target: String::new(),
            requested_operation: String::new(),
            policy_pack: String::new(),
            policy_id: String::new(),
            rule_id: rule_id.to_owned(),
            decision: Decision::Block,
            severity,
            reason,
            evidence_refs: Vec::new(),
            approver_group: String::new(),
            timestamp: now_timestamp(),
            correlation_id: random_id("corr_"),
            normalized_target: String::new(),
            requested_policy_pack: String::new(),
        }
    }
}

/// `prefix` + 12 lower-case hex digits from 6 random bytes: the reference's decision and correlation ids.
pub fn random_id(prefix: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 6] = rand::random();
    let mut id = String::with_capacity(prefix.len() + 12);
    id.push_str(prefix);
    for byte in bytes {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

/// Now, as the reference writes timestamps (see [`timestamp`]).
pub fn now_timestamp() -> String {
    timestamp(OffsetDateTime::now_utc())
}

/// A timestamp as the reference writes them (Go's `time.RFC3339Nano` in UTC): fractional seconds without trailing zeros, none when whole, and `Z`.
pub fn timestamp(now: OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    // One allocation: the evidence writer takes a timestamp for every record.
    let mut text = String::with_capacity(32);
    let _ = write!(
        text,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let mut fraction = now.nanosecond();
    if fraction != 0 {
        let mut digits = 9;
        while fraction.is_multiple_of(10) {
            fraction /= 10;
            digits -= 1;
        }
        let _ = write!(text, ".{fraction:0digits$}");
    }
    text.push('Z');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_blocks_with_ids_and_a_timestamp_and_name_no_pack() {
        let refusal = DecisionResponse::refusal("daemon.overloaded", Severity::High, "busy".into());
        assert_eq!(refusal.decision, Decision::Block);
        assert_eq!(refusal.rule_id, "daemon.overloaded");
        assert!(refusal.decision_id.starts_with("dec_") && refusal.decision_id.len() == 16);
        assert!(refusal.correlation_id.starts_with("corr_"));
        assert!(refusal.timestamp.ends_with('Z'));
        assert!(refusal.policy_pack.is_empty() && refusal.policy_id.is_empty());
    }
}
