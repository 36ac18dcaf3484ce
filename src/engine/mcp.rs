//! `mcp_tool_call`: decided by the pack's trusted-server lists, or by the MCP trust registry when one is loaded.

use super::Verdict;
use crate::contract::{Decision, Severity};
use crate::policy::{Policy, TrustRegistry};

/// The call being judged, after `server:tool` in the target has filled an empty server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpCall<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    pub capability: &'a str,
    pub requested_operation: &'a str,
}

impl<'a> McpCall<'a> {
    /// `server` and `tool` come from the request's own fields; when `server` is empty, a target written
    /// `server:tool` names them instead.
    pub fn new(server: &'a str, tool: &'a str, capability: &'a str, target: &'a str, requested: &'a str) -> Self {
        let (server, tool) = match (server.is_empty(), target.split_once(':')) {
            (true, Some((server, target_tool))) => (server, if tool.is_empty() { target_tool } else { tool }),
            _ => (server, tool),
        };
        let requested_operation = [requested, capability, tool]
            .into_iter()
            .find(|value| !value.is_empty())
            .unwrap_or_default();
        Self {
            server,
            tool,
            capability,
            requested_operation,
        }
    }

    fn verdict(
        &self,
        decision: Decision,
        severity: Severity,
        rule_id: &'static str,
        reason: &str,
        approver_group: &'static str,
    ) -> Verdict {
        Verdict {
            decision,
            severity,
            rule_id,
            reason: reason.to_owned(),
            approver_group,
            action_type: "mcp_tool_call".to_owned(),
            target: format!("{}:{}", self.server, self.tool),
            requested_operation: self.requested_operation.to_owned(),
            normalized_target: None,
        }
    }
}

pub fn evaluate_policy(policy: &Policy, call: &McpCall) -> Verdict {
    let listed = |servers: &[String]| servers.iter().any(|server| server == call.server);
    if listed(&policy.mcp_blocked_servers) || (policy.mcp_block_unknown_servers && !listed(&policy.mcp_allowed_servers))
    {
        return call.verdict(
            Decision::Block,
            Severity::High,
            "mcp.server.trust.block_unknown",
            "Untrusted MCP server with filesystem/tool capability is not approved.",
            "",
        );
    }
    call.verdict(
        Decision::Allow,
        Severity::Low,
        "mcp.server.trust.allow",
        "MCP server is trusted for this tool call.",
        "",
    )
}

pub fn evaluate_registry(registry: &TrustRegistry, call: &McpCall) -> Verdict {
    let Some(record) = registry.find(call.server) else {
        return call.verdict(
            Decision::Block,
            Severity::High,
            "mcp.registry.unknown",
            "MCP server is not registered.",
            "",
        );
    };
    if record.trust_tier == "blocked" || record.approval_state == "denied" {
        return call.verdict(
            Decision::Block,
            Severity::High,
            "mcp.registry.blocked",
            "MCP server is blocked or denied in the trust registry.",
            "",
        );
    }
    if record.approval_state == "pending" || record.trust_tier == "unknown" || record.trust_tier == "experimental" {
        return call.verdict(
            Decision::RequireApproval,
            Severity::Medium,
            "mcp.registry.requires_approval",
            "MCP server requires trust approval before use.",
            "AI Governance",
        );
    }
    if !record.allowed_tools.is_empty() && !record.allowed_tools.iter().any(|tool| tool == call.tool) {
        return call.verdict(
            Decision::RequireApproval,
            Severity::Medium,
            "mcp.registry.tool_scope",
            "MCP tool is outside the server's approved tool scope.",
            "AI Governance",
        );
    }
    if !call.capability.is_empty()
        && !record.capabilities.is_empty()
        && !record
            .capabilities
            .iter()
            .any(|capability| capability == call.capability)
    {
        return call.verdict(
            Decision::RequireApproval,
            Severity::Medium,
            "mcp.registry.capability_scope",
            "MCP capability is outside the server's approved capability scope.",
            "AI Governance",
        );
    }
    call.verdict(
        Decision::Allow,
        Severity::Low,
        "mcp.registry.allow",
        "MCP server is approved in the trust registry.",
        "",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::McpServerRecord;

    use crate::policy::builtin as pack;

    fn call<'a>(server: &'a str, tool: &'a str, capability: &'a str) -> McpCall<'a> {
        McpCall::new(server, tool, capability, "", "")
    }

    #[test]
    fn target_names_server_and_tool_when_server_is_empty() {
        let call = McpCall::new("", "", "", "github:create_issue", "");
        assert_eq!((call.server, call.tool), ("github", "create_issue"));
        assert_eq!(call.requested_operation, "create_issue");
        let explicit = McpCall::new("jira", "search", "tickets", "github:create_issue", "");
        assert_eq!((explicit.server, explicit.tool), ("jira", "search"));
        assert_eq!(explicit.requested_operation, "tickets");
    }

    #[test]
    fn packs_without_mcp_lists_trust_no_server() {
        let verdict = evaluate_policy(&pack("cavra-ai-agent-baseline"), &call("github", "read_file", ""));
        assert_eq!(verdict.decision, Decision::Block);
        assert_eq!(verdict.rule_id, "mcp.server.trust.block_unknown");
        assert_eq!(
            verdict.reason,
            "Untrusted MCP server with filesystem/tool capability is not approved."
        );
        assert_eq!(verdict.target, "github:read_file");
    }

    #[test]
    fn allowed_server_passes_and_blocked_server_blocks() {
        let policy = pack("cavra-mcp-enterprise");
        let allowed = evaluate_policy(&policy, &call("jira-enterprise", "search", "tickets"));
        assert_eq!(
            (allowed.decision, allowed.rule_id),
            (Decision::Allow, "mcp.server.trust.allow")
        );
        assert_eq!(allowed.requested_operation, "tickets");
        let blocked = evaluate_policy(&policy, &call("personal-drive-mcp", "read_file", ""));
        assert_eq!(blocked.decision, Decision::Block);
    }

    #[test]
    fn block_unknown_servers_false_lets_unlisted_servers_through() {
        let mut policy = pack("cavra-mcp-enterprise");
        policy.mcp_block_unknown_servers = false;
        assert_eq!(
            evaluate_policy(&policy, &call("anything", "t", "")).decision,
            Decision::Allow
        );
        assert_eq!(
            evaluate_policy(&policy, &call("personal-drive-mcp", "t", "")).decision,
            Decision::Block,
            "an explicitly blocked server stays blocked"
        );
    }

    fn registry() -> TrustRegistry {
        let record = |id: &str, tier: &str, state: &str, capabilities: &[&str], tools: &[&str]| McpServerRecord {
            server_id: id.into(),
            name: format!("{id} display"),
            trust_tier: tier.into(),
            approval_state: state.into(),
            capabilities: capabilities.iter().map(|c| (*c).into()).collect(),
            allowed_tools: tools.iter().map(|t| (*t).into()).collect(),
        };
        TrustRegistry {
            mcp_servers: vec![
                record(
                    "good",
                    "approved",
                    "approved",
                    &["repository"],
                    &["create_pull_request"],
                ),
                record("lab", "experimental", "approved", &[], &[]),
                record("bad", "blocked", "approved", &[], &[]),
            ],
        }
    }

    #[test]
    fn registry_rules_in_order() {
        let registry = registry();
        let cases = [
            (call("ghost", "t", ""), Decision::Block, "mcp.registry.unknown", ""),
            (call("bad", "t", ""), Decision::Block, "mcp.registry.blocked", ""),
            (
                call("lab", "t", ""),
                Decision::RequireApproval,
                "mcp.registry.requires_approval",
                "AI Governance",
            ),
            (
                call("good", "delete_repository", "repository"),
                Decision::RequireApproval,
                "mcp.registry.tool_scope",
                "AI Governance",
            ),
            (
                call("good", "create_pull_request", "admin"),
                Decision::RequireApproval,
                "mcp.registry.capability_scope",
                "AI Governance",
            ),
            (
                call("good display", "create_pull_request", "repository"),
                Decision::Allow,
                "mcp.registry.allow",
                "",
            ),
        ];
        for (call, decision, rule_id, approver) in cases {
            let verdict = evaluate_registry(&registry, &call);
            assert_eq!(
                (verdict.decision, verdict.rule_id, verdict.approver_group),
                (decision, rule_id, approver),
                "{call:?}"
            );
        }
    }
}
