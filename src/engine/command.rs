//! `execute_command`: blocked commands block, allowed commands pass, anything else waits for Repository Owners.

use super::Verdict;
use super::file::first_match;
use crate::contract::{Decision, Severity};
use crate::policy::Policy;

pub fn evaluate(policy: &Policy, command: &str) -> Verdict {
    let command = command.trim();
    let verdict = |decision, severity, rule_id, reason: String, approver_group| Verdict {
        decision,
        severity,
        rule_id,
        reason,
        approver_group,
        action_type: "execute_command".to_owned(),
        target: command.to_owned(),
        requested_operation: command.to_owned(),
    };
    if let Some(pattern) = first_match(&policy.command_block, command) {
        // The reference rates a block as critical when the command mutates (the words appear anywhere in it).
        let severity = if command.contains("apply") || command.contains("delete") {
            Severity::Critical
        } else {
            Severity::High
        };
        return verdict(
            Decision::Block,
            severity,
            "commands.block",
            format!("Matched blocked command policy: {pattern}"),
            "",
        );
    }
    if let Some(pattern) = first_match(&policy.command_allow, command) {
        return verdict(
            Decision::Allow,
            Severity::Low,
            "commands.allow",
            format!("Matched allowed command policy: {pattern}"),
            "",
        );
    }
    verdict(
        Decision::RequireApproval,
        Severity::Medium,
        "commands.default.require_approval",
        "No allow rule matched; review required.".to_owned(),
        "Repository Owners",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::builtin as pack;

    #[test]
    fn blocked_command_severity_depends_on_mutating_words() {
        let policy = pack("cavra-terraform-prod");
        let apply = evaluate(&policy, "  tofu apply -auto-approve ");
        assert_eq!((apply.decision, apply.severity), (Decision::Block, Severity::Critical));
        assert_eq!(apply.target, "tofu apply -auto-approve");
        assert_eq!(apply.reason, "Matched blocked command policy: tofu apply*");
        let destroy = evaluate(&policy, "terraform destroy");
        assert_eq!((destroy.decision, destroy.severity), (Decision::Block, Severity::High));
    }

    #[test]
    fn allowed_command_quotes_the_first_sorted_pattern() {
        let verdict = evaluate(&pack("cavra-ai-agent-baseline"), "terraform plan -out x");
        assert_eq!(verdict.decision, Decision::Allow);
        assert_eq!(verdict.rule_id, "commands.allow");
        assert_eq!(verdict.reason, "Matched allowed command policy: terraform plan*");
        assert_eq!(verdict.requested_operation, "terraform plan -out x");
    }

    #[test]
    fn unmatched_command_needs_repository_owners() {
        let verdict = evaluate(&pack("cavra-ai-agent-baseline"), "rm -rf /tmp/x");
        assert_eq!(verdict.decision, Decision::RequireApproval);
        assert_eq!(verdict.rule_id, "commands.default.require_approval");
        assert_eq!(verdict.severity, Severity::Medium);
        assert_eq!(verdict.approver_group, "Repository Owners");
        assert_eq!(verdict.reason, "No allow rule matched; review required.");
    }

    #[test]
    fn an_allowed_prefix_cannot_smuggle_a_second_line() {
        let verdict = evaluate(&pack("cavra-ai-agent-baseline"), "pytest\nterraform apply");
        assert_eq!(verdict.decision, Decision::RequireApproval);
    }
}
