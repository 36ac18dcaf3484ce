//! `git_operation`: a direct push to a protected branch is blocked; other git operations pass.

use super::Verdict;
use crate::contract::{Decision, Severity};

/// `operation` is the request's `operation`, else its `requested_operation`.
pub fn evaluate(operation: &str, target: &str) -> Verdict {
    // The reference tests the branch by suffix, so `origin/domain` counts as protected too: it errs towards blocking.
    let protected = target.ends_with("main") || target.ends_with("master");
    let (decision, severity, rule_id, reason) = if operation == "push" && protected {
        (
            Decision::Block,
            Severity::High,
            "git.protected_branch.block_direct_push",
            "Direct push to protected branch is prohibited.",
        )
    } else {
        (
            Decision::Allow,
            Severity::Low,
            "git.allow",
            "Git operation is allowed by policy.",
        )
    };
    Verdict {
        decision,
        severity,
        rule_id,
        reason: reason.to_owned(),
        approver_group: "",
        action_type: "git_operation".to_owned(),
        target: if target.is_empty() { operation } else { target }.to_owned(),
        requested_operation: operation.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_to_main_or_master_blocks() {
        for target in ["origin/main", "master", "refs/heads/main"] {
            let verdict = evaluate("push", target);
            assert_eq!(verdict.decision, Decision::Block, "{target}");
            assert_eq!(verdict.rule_id, "git.protected_branch.block_direct_push");
            assert_eq!(verdict.severity, Severity::High);
            assert_eq!(verdict.reason, "Direct push to protected branch is prohibited.");
        }
    }

    #[test]
    fn other_operations_and_branches_are_allowed() {
        let fetch = evaluate("fetch", "origin/main");
        assert_eq!((fetch.decision, fetch.rule_id), (Decision::Allow, "git.allow"));
        assert_eq!(fetch.reason, "Git operation is allowed by policy.");
        let feature = evaluate("push", "origin/feature-x");
        assert_eq!(feature.decision, Decision::Allow);
    }

    #[test]
    fn empty_target_reports_the_operation() {
        let verdict = evaluate("push", "");
        assert_eq!((verdict.decision, verdict.target.as_str()), (Decision::Allow, "push"));
    }
}
