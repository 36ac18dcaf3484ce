//! `release_governance_record`: promotion, rollback and endpoint-management evidence is judged by its approval
//! state, delivery outcome and alert signals.
//!
//! The record is either the typed `release_governance` object or the legacy free-form `record`; both are read
//! through the same map with the reference's lenient coercions (strings are trimmed, numbers truncate, and
//! `"yes"`/`"success"` count as true).
//!
//! Two deviations from the reference fail closed: kinds compare case-insensitively after trimming, with `_` read as
//! `-` (as states already do), so `Rollout-Promotion-Execution` is still an execution kind; and an approved record
//! that carries critical signals (critical or breached counts, failed verification or integrity, ...) is held for
//! review rather than allowed.

use serde_json::{Map, Value};

use super::Verdict;
use crate::contract::{Decision, ReleaseGovernanceEvidence, Severity};

const APPROVER: &str = "Release Governance";

/// Kinds that need an approval whatever their content.
const APPROVAL_REQUIRED_KINDS: &[&str] = &[
    "release-channel-promotion-request",
    "endpoint-reconciliation-automation",
    "endpoint-drift-remediation-request",
    "endpoint-drift-remediation-execution",
    "endpoint-remediation-handoff",
    "rollout-promotion-execution",
    "rollout-rollback-execution",
];

/// Kinds that change production: with no approval at all they are blocked, not merely held.
const EXECUTION_KINDS: &[&str] = &[
    "endpoint-drift-remediation-execution",
    "rollout-promotion-execution",
    "rollout-rollback-execution",
];

const DELIVERY_KINDS: &[&str] = &["endpoint-management-publication-delivery", "release-connector-delivery"];

const KNOWN_KINDS: &[&str] = &[
    "endpoint-inventory-ingestion",
    "endpoint-inventory-freshness-report",
    "managed-endpoint-reconciliation",
    "endpoint-management-export",
    "endpoint-management-publication-delivery",
    "endpoint-reconciliation-automation",
    "endpoint-drift-remediation-request",
    "endpoint-drift-remediation-execution",
    "endpoint-remediation-handoff",
    "endpoint-remediation-handoff-status",
    "endpoint-remediation-sla-report",
    "endpoint-remediation-sla-notification-plan",
    "endpoint-remediation-sla-notification-ack",
    "endpoint-remediation-sla-escalation-plan",
    "endpoint-remediation-sla-escalation-review",
    "endpoint-remediation-sla-escalation-recurrence-plan",
    "endpoint-remediation-sla-escalation-suppression-audit",
    "endpoint-remediation-sla-escalation-recurrence-retry-plan",
    "endpoint-remediation-sla-escalation-owner-digest",
    "endpoint-remediation-sla-escalation-suppression-trend",
    "endpoint-remediation-sla-escalation-recurrence-automation-run",
    "endpoint-remediation-sla-escalation-recurrence-automation-health-alert-plan",
    "endpoint-remediation-sla-escalation-recurrence-automation-health-alert-ack",
    "release-channel-promotion-request",
    "release-connector-delivery",
    "rollout-promotion-execution",
    "rollout-rollback-execution",
    "rollout-evidence-capture",
    "rollout-evidence-verification",
    "rollout-artifact-retrieval",
    "rollout-artifact-integrity",
    "rollout-promotion-audit-export",
    "rollout-rollback-audit-export",
];

/// Normalised status values, per field, that make a record critical.
const CRITICAL_STATES: &[(&str, &[&str])] = &[
    ("alert_level", &["critical", "blocked", "breached"]),
    ("drift_status", &["drifted", "non_compliant", "drift_detected"]),
    ("handoff_status", &["blocked", "failed"]),
    ("verification_status", &["failed", "blocked", "mismatch"]),
    ("integrity_status", &["failed", "mismatch", "tampered"]),
    ("audit_export_status", &["failed", "blocked"]),
];

/// Counters of which any positive value makes a record critical.
const CRITICAL_COUNTS: &[&str] = &[
    "blocked_count",
    "critical_count",
    "breached_count",
    "failed_delivery_count",
    "connector_delivery_failure_count",
    "failed_verification_count",
    "integrity_failure_count",
];

/// The typed evidence as a record: only the fields that carry a value, as the reference converts it; `None` when
/// every field is empty.
pub fn typed_record(evidence: &ReleaseGovernanceEvidence) -> Option<Map<String, Value>> {
    let Ok(Value::Object(record)) = serde_json::to_value(evidence) else {
        unreachable!("a struct of strings, integers and lists always serialises to an object")
    };
    (!record.is_empty()).then_some(record)
}

/// `requested` is the request's operation (already defaulted along `operation`, `requested_operation`,
/// `capability`); an empty one reads as `verify`.
pub fn evaluate(record: Option<&Map<String, Value>>, action_type: &str, target: &str, requested: &str) -> Verdict {
    let empty = Map::new();
    let record = record.unwrap_or(&empty);
    let metadata_kind = string_value(record, "metadata_kind");
    let target = [target, metadata_kind.as_str(), "release-governance-record"]
        .into_iter()
        .find(|value| !value.is_empty())
        .unwrap_or_default()
        .to_owned();
    let requested = if requested.is_empty() { "verify" } else { requested };
    let verdict = |decision: Decision, severity, rule_id, reason: String| Verdict {
        approver_group: if decision == Decision::Allow { "" } else { APPROVER },
        decision,
        severity,
        rule_id,
        reason,
        action_type: action_type.to_owned(),
        target: target.clone(),
        requested_operation: requested.to_owned(),
        normalized_target: None,
    };
    if record.is_empty() {
        return verdict(
            Decision::RequireApproval,
            Severity::Medium,
            "release_governance.record.missing",
            "Release governance record payload is missing.".to_owned(),
        );
    }

    let kind = if metadata_kind.is_empty() {
        target.as_str()
    } else {
        metadata_kind.as_str()
    };
    let approval = record.get("approval").and_then(Value::as_object);
    let state = match string_value(record, "approval_state") {
        state if !state.is_empty() => normalize_state(&state),
        _ => approval
            .map(|a| normalize_state(&string_value(a, "state")))
            .unwrap_or_default(),
    };
    let approval_id = match string_value(record, "approval_id") {
        id if !id.is_empty() => id,
        _ => approval.map(|a| string_value(a, "approval_id")).unwrap_or_default(),
    };
    let kind_key = normalize_kind(kind);
    let kind_key = kind_key.as_str();
    let requires_approval = int_value(record, "approval_required_count") > 0
        || !state.is_empty()
        || APPROVAL_REQUIRED_KINDS.contains(&kind_key);
    // A reason quotes the kind (which may be the target) and the state, but not at length: the record stores them.
    let kind = super::excerpt(kind);
    let shown_state = super::excerpt(&state);

    match state.as_str() {
        "approved" if approval_id.is_empty() => verdict(
            Decision::Block,
            Severity::Critical,
            "release_governance.approval.missing",
            format!("{kind} is approved but does not include an approval_id."),
        ),
        "approved" if critical_signal(record) => verdict(
            Decision::RequireApproval,
            Severity::High,
            "release_governance.signal.critical",
            format!("{kind} is approved but contains critical release governance signals."),
        ),
        "approved" => verdict(
            Decision::Allow,
            Severity::Low,
            "release_governance.approval.approved",
            format!("{kind} is backed by an approved release governance approval."),
        ),
        "pending" => verdict(
            Decision::RequireApproval,
            Severity::High,
            "release_governance.approval.pending",
            format!("{kind} is waiting for release governance approval."),
        ),
        "denied" | "rejected" | "expired" | "cancelled" | "canceled" => verdict(
            Decision::Block,
            Severity::Critical,
            "release_governance.approval.denied",
            format!("{kind} is bound to a non-approved approval state: {shown_state}."),
        ),
        "" if DELIVERY_KINDS.contains(&normalize_kind(&metadata_kind).as_str())
            && !bool_value(record, "delivery_success") =>
        {
            verdict(
                Decision::Block,
                Severity::High,
                "release_governance.delivery.failed",
                format!("{kind} includes failed release delivery evidence."),
            )
        }
        "" if critical_signal(record) => verdict(
            Decision::RequireApproval,
            Severity::High,
            "release_governance.signal.critical",
            format!("{kind} contains critical release governance signals."),
        ),
        "" if requires_approval && EXECUTION_KINDS.contains(&kind_key) => verdict(
            Decision::Block,
            Severity::Critical,
            "release_governance.approval.missing",
            format!("{kind} requires an approval record before execution."),
        ),
        "" if requires_approval => verdict(
            Decision::RequireApproval,
            Severity::High,
            "release_governance.approval.required",
            format!("{kind} requires an approval record before execution."),
        ),
        "" if KNOWN_KINDS.contains(&kind_key) => verdict(
            Decision::Allow,
            Severity::Low,
            "release_governance.record.verified",
            format!("{kind} is recognized release governance evidence with no blocking signal."),
        ),
        "" => verdict(
            Decision::Allow,
            Severity::Low,
            "release_governance.approval.not_required",
            format!("{kind} does not require release governance approval."),
        ),
        _ => verdict(
            Decision::RequireApproval,
            Severity::Medium,
            "release_governance.approval.unknown",
            format!("{kind} has an unknown approval state: {shown_state}."),
        ),
    }
}

fn critical_signal(record: &Map<String, Value>) -> bool {
    CRITICAL_STATES
        .iter()
        .any(|(field, states)| states.contains(&normalize_state(&string_value(record, field)).as_str()))
        || CRITICAL_COUNTS.iter().any(|field| int_value(record, field) > 0)
}

/// Kinds are listed lower-case with `-`; `Rollout_Promotion_Execution ` is the same kind.
fn normalize_kind(value: &str) -> String {
    value.trim().replace('_', "-").to_lowercase()
}

fn normalize_state(value: &str) -> String {
    value.trim().replace('-', "_").to_lowercase()
}

/// Strings are trimmed; other scalars are written out (`3.0` as `3`, `true` as `true`).
fn string_value(record: &Map<String, Value>, key: &str) -> String {
    match record.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.trim().to_owned(),
        Some(Value::Number(number)) => match number.as_f64() {
            Some(float) if float.fract() == 0.0 && float.abs() < 1e15 => format!("{float:.0}"),
            _ => number.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

/// Numbers truncate towards zero; anything else counts as 0.
fn int_value(record: &Map<String, Value>, key: &str) -> i64 {
    match record.get(key) {
        Some(Value::Number(number)) => number
            .as_i64()
            .or_else(|| number.as_f64().map(|float| float as i64))
            .unwrap_or(i64::MAX),
        _ => 0,
    }
}

fn bool_value(record: &Map<String, Value>, key: &str) -> bool {
    match record.get(key) {
        Some(Value::Bool(value)) => *value,
        Some(Value::String(text)) => matches!(normalize_state(text).as_str(), "true" | "yes" | "success" | "succeeded"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn judge(record: Value) -> Verdict {
        let Value::Object(map) = record else {
            panic!("object expected")
        };
        evaluate(Some(&map), "release_governance_record", "", "")
    }

    #[test]
    fn missing_record_needs_release_governance() {
        let verdict = evaluate(None, "release_governance_record", "", "publish");
        assert_eq!(verdict.decision, Decision::RequireApproval);
        assert_eq!(verdict.rule_id, "release_governance.record.missing");
        assert_eq!(verdict.severity, Severity::Medium);
        assert_eq!(verdict.approver_group, APPROVER);
        assert_eq!(verdict.reason, "Release governance record payload is missing.");
        assert_eq!(verdict.target, "release-governance-record");
        assert_eq!(verdict.requested_operation, "publish");
    }

    #[test]
    fn approval_states_decide_first() {
        let cases = [
            (
                json!({"metadata_kind": "rollout-promotion-execution", "approval_state": "Approved", "approval_id": "a1"}),
                Decision::Allow,
                "release_governance.approval.approved",
                "rollout-promotion-execution is backed by an approved release governance approval.",
            ),
            (
                json!({"metadata_kind": "x", "approval": {"state": "approved"}}),
                Decision::Block,
                "release_governance.approval.missing",
                "x is approved but does not include an approval_id.",
            ),
            (
                json!({"metadata_kind": "x", "approval_state": "pending", "blocked_count": 3}),
                Decision::RequireApproval,
                "release_governance.approval.pending",
                "x is waiting for release governance approval.",
            ),
            (
                json!({"metadata_kind": "x", "approval_state": " Cancelled "}),
                Decision::Block,
                "release_governance.approval.denied",
                "x is bound to a non-approved approval state: cancelled.",
            ),
            (
                json!({"metadata_kind": "x", "approval_state": "on-hold"}),
                Decision::RequireApproval,
                "release_governance.approval.unknown",
                "x has an unknown approval state: on_hold.",
            ),
        ];
        for (record, decision, rule_id, reason) in cases {
            let verdict = judge(record.clone());
            let expected_group = if decision == Decision::Allow { "" } else { APPROVER };
            assert_eq!(
                (verdict.decision, verdict.rule_id, verdict.reason.as_str()),
                (decision, rule_id, reason),
                "{record}"
            );
            assert_eq!(verdict.approver_group, expected_group);
        }
    }

    #[test]
    fn without_a_state_delivery_then_signals_then_approval_then_kind_decide() {
        let cases = [
            (
                json!({"metadata_kind": "release-connector-delivery", "delivery_success": "no"}),
                "release_governance.delivery.failed",
            ),
            (
                json!({"metadata_kind": "release-connector-delivery", "delivery_success": "Succeeded"}),
                "release_governance.record.verified",
            ),
            (
                json!({"metadata_kind": "managed-endpoint-reconciliation", "drift_status": "drift-detected"}),
                "release_governance.signal.critical",
            ),
            (
                json!({"metadata_kind": "rollout-rollback-audit-export", "audit_export_status": "FAILED"}),
                "release_governance.signal.critical",
            ),
            (
                json!({"metadata_kind": "rollout-artifact-integrity", "integrity_status": "tampered"}),
                "release_governance.signal.critical",
            ),
            (
                json!({"metadata_kind": "x", "integrity_failure_count": 1.9}),
                "release_governance.signal.critical",
            ),
            (
                json!({"metadata_kind": "x", "blocked_count": "5"}),
                "release_governance.approval.not_required",
            ),
            (
                json!({"metadata_kind": "x", "drifted_endpoint_count": 9}),
                "release_governance.approval.not_required",
            ),
            (
                json!({"metadata_kind": "rollout-rollback-execution"}),
                "release_governance.approval.missing",
            ),
            (
                json!({"metadata_kind": "release-channel-promotion-request"}),
                "release_governance.approval.required",
            ),
            (
                json!({"metadata_kind": "x", "approval_required_count": 2.0}),
                "release_governance.approval.required",
            ),
            (
                json!({"metadata_kind": "endpoint-inventory-ingestion"}),
                "release_governance.record.verified",
            ),
            (
                json!({"metadata_kind": "something-else"}),
                "release_governance.approval.not_required",
            ),
        ];
        for (record, rule_id) in cases {
            assert_eq!(judge(record.clone()).rule_id, rule_id, "{record}");
        }
    }

    #[test]
    fn reworded_kinds_and_approved_records_with_critical_signals_are_not_allowed() {
        for (record, decision, rule_id) in [
            (
                json!({"metadata_kind": "Rollout-Promotion-Execution"}),
                Decision::Block,
                "release_governance.approval.missing",
            ),
            (
                json!({"metadata_kind": " rollout_rollback_execution "}),
                Decision::Block,
                "release_governance.approval.missing",
            ),
            (
                json!({"metadata_kind": "RELEASE-CONNECTOR-DELIVERY"}),
                Decision::Block,
                "release_governance.delivery.failed",
            ),
            (
                json!({"metadata_kind": "rollout-promotion-execution", "approval_state": "approved",
                       "approval_id": "a", "critical_count": 5, "integrity_status": "tampered"}),
                Decision::RequireApproval,
                "release_governance.signal.critical",
            ),
            (
                json!({"metadata_kind": "x", "approval_state": "APPROVED", "approval_id": "a",
                       "verification_status": "Failed"}),
                Decision::RequireApproval,
                "release_governance.signal.critical",
            ),
            (
                json!({"metadata_kind": "x", "approval_state": "approved", "approval_id": "a", "breached_count": 1}),
                Decision::RequireApproval,
                "release_governance.signal.critical",
            ),
        ] {
            let verdict = judge(record.clone());
            assert_eq!((verdict.decision, verdict.rule_id), (decision, rule_id), "{record}");
        }
    }

    #[test]
    fn kind_falls_back_to_the_target() {
        let map = json!({"approval_required_count": 1}).as_object().unwrap().clone();
        let verdict = evaluate(
            Some(&map),
            "release_governance_record",
            "rollout-promotion-execution",
            "",
        );
        assert_eq!(verdict.rule_id, "release_governance.approval.missing");
        assert_eq!(
            verdict.reason,
            "rollout-promotion-execution requires an approval record before execution."
        );
        assert_eq!(verdict.requested_operation, "verify");
    }

    /// A long kind (the target, when the record names none) or state is kept whole in the target; the reason
    /// quotes only its start.
    #[test]
    fn reasons_quote_a_long_kind_or_state_as_an_excerpt() {
        let long = "k".repeat(4_000);
        let map = json!({"approval_state": "s".repeat(4_000)})
            .as_object()
            .unwrap()
            .clone();
        let verdict = evaluate(Some(&map), "release_governance_record", &long, "");
        assert_eq!(verdict.rule_id, "release_governance.approval.unknown");
        assert_eq!(verdict.target, long);
        let excerpt = |c: &str| format!("{}…", c.repeat(crate::engine::EXCERPT_BYTES));
        assert_eq!(
            verdict.reason,
            format!("{} has an unknown approval state: {}.", excerpt("k"), excerpt("s"))
        );
    }

    #[test]
    fn numbers_print_like_the_reference() {
        let map = json!({"a": 3.0, "b": 1.5, "c": true, "d": " x "})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(string_value(&map, "a"), "3");
        assert_eq!(string_value(&map, "b"), "1.5");
        assert_eq!(string_value(&map, "c"), "true");
        assert_eq!(string_value(&map, "d"), "x");
    }

    #[test]
    fn typed_record_keeps_only_set_fields() {
        assert_eq!(typed_record(&ReleaseGovernanceEvidence::default()), None);
        let record = typed_record(&ReleaseGovernanceEvidence {
            metadata_kind: "release-connector-delivery".into(),
            failed_delivery_count: 1,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            Value::Object(record),
            json!({"metadata_kind": "release-connector-delivery", "failed_delivery_count": 1})
        );
    }
}
