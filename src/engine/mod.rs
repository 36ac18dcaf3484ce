//! The decision engine: one request in, one decision out, with no I/O.
//!
//! Each action kind has its own module; this one checks the request, picks the pack (the operator's pin, else the
//! request's choice), dispatches on `action_type` and stamps the decision with the metadata auditors trace it by
//! (decision id, correlation id, timestamp, evidence reference, the pack asked for and the pack used).

pub mod command;
pub mod file;
pub mod git;
pub mod mcp;
pub mod path;
pub mod release_governance;

use std::borrow::Cow;
use std::fmt;

use crate::contract::{Decision, DecisionResponse, EvaluateRequest, Severity, now_timestamp, random_id};
use crate::policy::PolicySet;
pub use path::PathCase;

pub const PACK_NOT_PERMITTED: &str = "policy.pack.not_permitted";

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
    /// The target as the engine read it, when that differs from the target as sent.
    pub normalized_target: Option<String>,
}

/// What the operator decided for a request, which the request cannot change.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The pack pinned for the requester (`--pin-pack`, `--pin-pack-for`); `None` lets the request choose among
    /// the loaded packs.
    pub pinned_pack: Option<&'a str>,
    pub other_pack: OtherPack,
    /// `--workspace-root`, already checked with [`path::workspace_root`]; a request's own root must lie inside it.
    pub workspace_root: Option<&'a str>,
    pub path_case: PathCase,
}

/// What happens to a request that names a pack other than the one pinned for its requester (`--on-other-pack`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OtherPack {
    /// Blocked: `policy.pack.not_permitted`.
    #[default]
    Refuse,
    /// Decided under the pinned pack; the answer names the pack asked for.
    DecidePinned,
}

/// A request the engine will not decide: a field it cannot judge. The daemon answers `daemon.request.invalid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidRequest {}

pub fn evaluate(
    policies: &PolicySet,
    request: &EvaluateRequest,
    context: &Context<'_>,
) -> Result<DecisionResponse, InvalidRequest> {
    let root = workspace_root(request, context)?;
    if matches!(request.action_type.as_str(), "read_file" | "write_file")
        && request.target.chars().any(char::is_control)
    {
        return Err(InvalidRequest {
            field: "target",
            message: format!(
                "{:?} contains a control character or NUL; no file has that name",
                request.target
            ),
        });
    }
    let asked = request.policy_pack.as_str();
    let (pack_id, verdict) = match context.pinned_pack {
        Some(pinned) if !asked.is_empty() && asked != pinned && context.other_pack == OtherPack::Refuse => {
            (pinned, not_permitted(request, pinned))
        }
        Some(pinned) => (
            pinned,
            decide(policies, pinned, request, root.as_deref(), context.path_case),
        ),
        None if asked.is_empty() => {
            let default = policies.default_pack();
            (
                default,
                decide(policies, default, request, root.as_deref(), context.path_case),
            )
        }
        None => (
            asked,
            decide(policies, asked, request, root.as_deref(), context.path_case),
        ),
    };
    Ok(stamp(verdict, request, pack_id))
}

/// The workspace root in force: the request's (inside the operator's, if the operator set one), else the operator's.
fn workspace_root(request: &EvaluateRequest, context: &Context<'_>) -> Result<Option<String>, InvalidRequest> {
    if request.workspace_root.is_empty() {
        return Ok(context.workspace_root.map(str::to_owned));
    }
    let invalid = |message: String| InvalidRequest {
        field: "workspace_root",
        message,
    };
    let root = path::workspace_root(&request.workspace_root).map_err(|error| invalid(error.0))?;
    if let Some(operator) = context.workspace_root {
        let inside = operator == "/" || root == operator || root.starts_with(&format!("{operator}/"));
        if !inside {
            return Err(invalid(format!(
                "{root:?} is not inside the daemon's --workspace-root {operator:?}"
            )));
        }
    }
    Ok(Some(root))
}

fn not_permitted(request: &EvaluateRequest, pinned: &str) -> Verdict {
    Verdict {
        decision: Decision::Block,
        severity: Severity::High,
        rule_id: PACK_NOT_PERMITTED,
        reason: format!(
            "Policy pack '{}' was asked for, but this requester is pinned to policy pack '{pinned}'; the request is \
             refused.",
            request.policy_pack
        ),
        approver_group: "",
        action_type: request.action_type.clone(),
        target: request.target.clone(),
        requested_operation: first_non_empty(&[&request.operation, &request.requested_operation, &request.capability])
            .to_owned(),
        normalized_target: None,
    }
}

fn decide(
    policies: &PolicySet,
    pack_id: &str,
    request: &EvaluateRequest,
    root: Option<&str>,
    case: PathCase,
) -> Verdict {
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
            normalized_target: None,
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
        "read_file" => file::evaluate(policy, file::Access::Read, &request.target, root, case),
        "write_file" => file::evaluate(policy, file::Access::Write, &request.target, root, case),
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
            normalized_target: None,
        },
    }
}

/// The most of a request's own text a reason quotes (bytes).
pub const EXCERPT_BYTES: usize = 160;

/// `text` as a reason quotes it: whole up to [`EXCERPT_BYTES`], else its start and `…`. The request's fields keep
/// the whole text (the evidence record stores them); a reason only points into it, so a long target is not stored
/// again in the reason of every record.
pub fn excerpt(text: &str) -> Cow<'_, str> {
    if text.len() <= EXCERPT_BYTES {
        return text.into();
    }
    let mut end = EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
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
        normalized_target: verdict.normalized_target.unwrap_or_default(),
        requested_policy_pack: if request.policy_pack != pack_id {
            request.policy_pack.clone()
        } else {
            String::new()
        },
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

    fn decided(policies: &PolicySet, request: &EvaluateRequest) -> DecisionResponse {
        evaluate(policies, request, &Context::default()).unwrap()
    }

    fn request(json: &str) -> EvaluateRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn metadata_defaults_and_formats() {
        let response = decided(
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
        let one = decided(&policies, &request(r#"{"action_type":"read_file","target":"a"}"#));
        let two = decided(&policies, &request(r#"{"action_type":"read_file","target":"a"}"#));
        assert_ne!(one.decision_id, two.decision_id);
        assert_ne!(one.correlation_id, two.correlation_id);
    }

    #[test]
    fn excerpts_end_on_a_character_boundary() {
        assert_eq!(excerpt("short"), "short");
        let exact = "a".repeat(EXCERPT_BYTES);
        assert_eq!(excerpt(&exact), exact);
        // 'é' is two bytes: the cut falls inside the last one that would fit, which is left out whole.
        let accented = format!("a{}", "é".repeat(EXCERPT_BYTES));
        let cut = excerpt(&accented);
        assert!(cut.ends_with('…'), "{cut}");
        assert_eq!(cut.trim_end_matches('…').len(), EXCERPT_BYTES - 1);
    }

    /// A long command line is stored in the request's and the response's fields; its reason quotes only the start of
    /// the part it names.
    #[test]
    fn reasons_quote_long_commands_and_paths_as_excerpts() {
        let long = format!("pytest {}", "x".repeat(8_000));
        let line = format!("terraform fmt && {long}");
        let mut command = request(r#"{"action_type":"execute_command"}"#);
        command.target = line.clone();
        let response = decided(&policies(), &command);
        assert_eq!(response.rule_id, "commands.allow");
        assert_eq!(
            (response.target.len(), response.requested_operation.len()),
            (line.len(), line.len())
        );
        assert!(response.reason.len() < 3 * EXCERPT_BYTES, "{}", response.reason);
        assert!(
            response
                .reason
                .ends_with(&format!("pytest* (in: `{}…`)", &long[..EXCERPT_BYTES])),
            "{}",
            response.reason
        );

        let mut write = request(r#"{"action_type":"write_file","workspace_root":"/repo"}"#);
        write.target = format!("/elsewhere/{}", "d/".repeat(2_000));
        let response = decided(&policies(), &write);
        assert_eq!(response.rule_id, file::WRITE_OUTSIDE_WORKSPACE);
        assert!(response.reason.len() < 2 * EXCERPT_BYTES, "{}", response.reason);
    }

    #[test]
    fn unknown_pack_is_refused_and_named() {
        let response = decided(
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
        let response = decided(
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
        let response = decided(
            &policies(),
            &request(
                r#"{"action_type":"git_operation","target":"origin/main","operation":"push","requested_operation":"fetch"}"#,
            ),
        );
        assert_eq!(response.rule_id, "git.protected_branch.block_direct_push");
        let response = decided(
            &policies(),
            &request(r#"{"action_type":"git_operation","target":"origin/main","requested_operation":"push"}"#),
        );
        assert_eq!(response.rule_id, "git.protected_branch.block_direct_push");
    }

    #[test]
    fn mcp_target_supplies_server_and_tool() {
        let response = decided(
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
        let response = decided(
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
        let response = decided(
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
