//! The decision engine: one request in, one decision out, with no I/O.
//!
//! Each action kind has its own module; this one picks the pack, dispatches on `action_type` and stamps the
//! decision with the metadata auditors trace it by (decision id, correlation id, timestamp, evidence reference).

pub mod command;
pub mod file;
pub mod git;
pub mod mcp;
pub mod release_governance;

use crate::contract::{Decision, DecisionResponse, EvaluateRequest, Severity, now_timestamp, random_id};
use crate::policy::PolicySet;

pub const RELEASE_GOVERNANCE_ACTION: &str = "release_governance_record";

/// What a rule concluded, before metadata is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub severity: Severity,
    pub rule_id: &'static str,
    pub reason: String,
    /// Empty for allow decisions.
    pub approver_group: &'static str,
    pub action_type: String,
    pub target: String,
    pub requested_operation: String,
}

pub fn evaluate(policies: &PolicySet, request: &EvaluateRequest) -> DecisionResponse {
    let pack_id = if request.policy_pack.is_empty() {
        policies.default_pack()
    } else {
        request.policy_pack.as_str()
    };
    let verdict = decide(policies, pack_id, request);
    stamp(verdict, request, pack_id)
}

fn decide(policies: &PolicySet, pack_id: &str, request: &EvaluateRequest) -> Verdict {
    let requested = first_non_empty(&[&request.operation, &request.requested_operation, &request.capability]);
    // Never fall back to another pack: a request for a pack this runtime does not have is refused.
    let Some(policy) = policies.pack(pack_id) else {
        return Verdict {
            decision: Decision::Block,
            severity: Severity::High,
            rule_id: "policy.pack.unknown",
            reason: format!("Policy pack '{pack_id}' is not loaded by this runtime; the request is refused."),
            approver_group: "",
            action_type: request.action_type.clone(),
            target: request.target.clone(),
            requested_operation: requested.to_owned(),
        };
    };
    let typed_record = request
        .release_governance
        .as_ref()
        .and_then(release_governance::typed_record);
    let record = typed_record.as_ref().or(request.record.as_ref());
    let action_type = match request.action_type.as_str() {
        "" if record.is_some() => RELEASE_GOVERNANCE_ACTION,
        other => other,
    };
    match action_type {
        "read_file" => file::evaluate(policy, file::Access::Read, &request.target),
        "write_file" => file::evaluate(policy, file::Access::Write, &request.target),
        "execute_command" => command::evaluate(policy, &request.target),
        "git_operation" => git::evaluate(
            first_non_empty(&[&request.operation, &request.requested_operation]),
            &request.target,
        ),
        "mcp_tool_call" => {
            let call = mcp::McpCall::new(
                &request.server,
                &request.tool,
                &request.capability,
                &request.target,
                first_non_empty(&[&request.operation, &request.requested_operation]),
            );
            match policies.registry() {
                Some(registry) => mcp::evaluate_registry(registry, &call),
                None => mcp::evaluate_policy(policy, &call),
            }
        }
        RELEASE_GOVERNANCE_ACTION => release_governance::evaluate(record, action_type, &request.target, requested),
        _ => Verdict {
            decision: Decision::RequireApproval,
            severity: Severity::Medium,
            rule_id: "runtime.default.require_approval",
            reason: "Unknown action type; review required.".to_owned(),
            approver_group: "Repository Owners",
            action_type: request.action_type.clone(),
            target: request.target.clone(),
            requested_operation: requested.to_owned(),
        },
    }
}

fn first_non_empty<'a>(values: &[&'a String]) -> &'a str {
    values
        .iter()
        .find(|value| !value.is_empty())
        .map_or("", |value| value.as_str())
}

fn stamp(verdict: Verdict, request: &EvaluateRequest, pack_id: &str) -> DecisionResponse {
    let or = |value: &str, fallback: &str| if value.is_empty() { fallback } else { value }.to_owned();
    let session_id = or(&request.session_id, "local");
    let decision_id = random_id("dec_");
    let evidence_refs = vec![format!("evidence://{session_id}/{decision_id}")];
    DecisionResponse {
        decision_id,
        session_id,
        agent_id: or(&request.agent_id, "unknown-agent"),
        actor: or(&request.actor, "ai-agent"),
        action_type: verdict.action_type,
        target: verdict.target,
        requested_operation: verdict.requested_operation,
        policy_pack: pack_id.to_owned(),
        policy_id: pack_id.to_owned(),
        rule_id: verdict.rule_id.to_owned(),
        decision: verdict.decision,
        severity: verdict.severity,
        reason: verdict.reason,
        evidence_refs,
        approver_group: verdict.approver_group.to_owned(),
        timestamp: now_timestamp(),
        correlation_id: random_id("corr_"),
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::policy::PolicyConfig;

    fn policies() -> PolicySet {
        PolicySet::load(&PolicyConfig::default()).unwrap()
    }

    fn request(json: &str) -> EvaluateRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn metadata_defaults_and_formats() {
        let response = evaluate(
            &policies(),
            &request(r#"{"action_type":"execute_command","target":"pytest"}"#),
        );
        assert_eq!(response.session_id, "local");
        assert_eq!(response.agent_id, "unknown-agent");
        assert_eq!(response.actor, "ai-agent");
        assert_eq!(response.policy_pack, "cavra-ai-agent-baseline");
        assert_eq!(response.policy_id, "cavra-ai-agent-baseline");
        let hex = |id: &str, prefix: &str| {
            id.strip_prefix(prefix).is_some_and(|rest| {
                rest.len() == 12 && rest.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            })
        };
        assert!(hex(&response.decision_id, "dec_"), "{}", response.decision_id);
        assert!(hex(&response.correlation_id, "corr_"), "{}", response.correlation_id);
        assert_eq!(
            response.evidence_refs,
            [format!("evidence://local/{}", response.decision_id)]
        );
        let parsed =
            OffsetDateTime::parse(&response.timestamp, &time::format_description::well_known::Rfc3339).unwrap();
        assert!(response.timestamp.ends_with('Z'), "{}", response.timestamp);
        assert!((OffsetDateTime::now_utc() - parsed).whole_seconds().abs() < 60);
        assert!(!response.timestamp.contains(".") || !response.timestamp.ends_with("0Z"));
    }

    #[test]
    fn ids_differ_between_decisions() {
        let policies = policies();
        let one = evaluate(&policies, &request(r#"{"action_type":"read_file","target":"a"}"#));
        let two = evaluate(&policies, &request(r#"{"action_type":"read_file","target":"a"}"#));
        assert_ne!(one.decision_id, two.decision_id);
        assert_ne!(one.correlation_id, two.correlation_id);
    }

    #[test]
    fn unknown_pack_is_refused_and_named() {
        let response = evaluate(
            &policies(),
            &request(r#"{"action_type":"read_file","target":"README.md","policy_pack":"no-such-pack"}"#),
        );
        assert_eq!(response.decision, Decision::Block);
        assert_eq!(response.rule_id, "policy.pack.unknown");
        assert_eq!(response.severity, Severity::High);
        assert!(response.reason.contains("'no-such-pack'"), "{}", response.reason);
        assert_eq!(response.policy_pack, "no-such-pack");
        assert_eq!(response.approver_group, "");
    }

    #[test]
    fn unknown_action_needs_repository_owners() {
        let response = evaluate(
            &policies(),
            &request(r#"{"action_type":"launch_rocket","target":"moon","capability":"propulsion"}"#),
        );
        assert_eq!(response.decision, Decision::RequireApproval);
        assert_eq!(response.rule_id, "runtime.default.require_approval");
        assert_eq!(response.reason, "Unknown action type; review required.");
        assert_eq!(response.approver_group, "Repository Owners");
        assert_eq!(response.action_type, "launch_rocket");
        assert_eq!(response.requested_operation, "propulsion");
    }

    #[test]
    fn git_operation_prefers_operation_over_requested_operation() {
        let response = evaluate(
            &policies(),
            &request(
                r#"{"action_type":"git_operation","target":"origin/main","operation":"push","requested_operation":"fetch"}"#,
            ),
        );
        assert_eq!(response.rule_id, "git.protected_branch.block_direct_push");
        let response = evaluate(
            &policies(),
            &request(r#"{"action_type":"git_operation","target":"origin/main","requested_operation":"push"}"#),
        );
        assert_eq!(response.rule_id, "git.protected_branch.block_direct_push");
    }

    #[test]
    fn mcp_target_supplies_server_and_tool() {
        let response = evaluate(
            &policies(),
            &request(
                r#"{"action_type":"mcp_tool_call","target":"github:read_file","policy_pack":"cavra-agentic-delivery"}"#,
            ),
        );
        assert_eq!(response.decision, Decision::Allow);
        assert_eq!(response.target, "github:read_file");
    }

    #[test]
    fn a_record_without_action_type_is_release_governance() {
        let response = evaluate(
            &policies(),
            &request(
                r#"{"release_governance":{"metadata_kind":"release-connector-delivery","failed_delivery_count":1}}"#,
            ),
        );
        assert_eq!(response.action_type, "release_governance_record");
        assert_eq!(response.rule_id, "release_governance.delivery.failed");
        assert_eq!(response.target, "release-connector-delivery");
    }

    #[test]
    fn typed_evidence_wins_over_the_legacy_record() {
        let response = evaluate(
            &policies(),
            &request(
                r#"{"action_type":"release_governance_record",
                    "release_governance":{"metadata_kind":"rollout-promotion-execution","approval_state":"approved","approval_id":"a"},
                    "record":{"metadata_kind":"rollout-promotion-execution"}}"#,
            ),
        );
        assert_eq!(response.rule_id, "release_governance.approval.approved");
        assert_eq!(response.approver_group, "");
    }
}
