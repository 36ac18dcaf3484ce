//! `read_file` and `write_file`: sensitive paths are blocked, approval-required paths wait for Platform Security.

use super::path::{self, Location, Outside, PathCase};
use super::{Verdict, excerpt};
use crate::contract::{Decision, Severity};
use crate::policy::{Pattern, Policy};

pub use super::path::normalize_path;

pub const WRITE_OUTSIDE_WORKSPACE: &str = "filesystem.write.outside_workspace";
pub const WRITE_UNKNOWN_WORKSPACE: &str = "filesystem.write.workspace_unknown";
const APPROVER: &str = "Platform Security";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// `root` is the workspace root in force (checked by [`path::workspace_root`]), if any.
pub fn evaluate(policy: &Policy, access: Access, target: &str, root: Option<&str>, case: PathCase) -> Verdict {
    let location = path::locate(target, root, case);
    let (action_type, operation, blocked, block_rule, allow_rule) = match access {
        Access::Read => (
            "read_file",
            "read",
            &policy.block_read,
            "filesystem.read.block",
            "filesystem.read.allow",
        ),
        Access::Write => (
            "write_file",
            "write",
            &policy.block_write,
            "filesystem.write.block",
            "filesystem.write.allow",
        ),
    };
    let normalized = location.normalized();
    let verdict = |decision, severity, rule_id, reason: String, approver_group| Verdict {
        decision,
        severity,
        rule_id,
        reason,
        approver_group,
        action_type: action_type.to_owned(),
        target: target.to_owned(),
        requested_operation: operation.to_owned(),
        normalized_target: (normalized != target).then(|| normalized.to_owned()),
    };
    let folded = case == PathCase::Insensitive;
    let candidates: Vec<String> = location
        .candidates()
        .into_iter()
        .map(|candidate| {
            if folded {
                candidate.to_lowercase()
            } else {
                candidate.to_owned()
            }
        })
        .collect();
    if let Some(pattern) = first_path_match(blocked, &candidates, folded) {
        return verdict(
            Decision::Block,
            Severity::High,
            block_rule,
            format!("Matched sensitive path policy: {pattern}"),
            "",
        );
    }
    if access == Access::Write {
        if let Some(pattern) = first_path_match(&policy.require_approval_write, &candidates, folded) {
            return verdict(
                Decision::RequireApproval,
                Severity::High,
                "filesystem.write.require_approval",
                format!("Matched approval-required path policy: {pattern}"),
                APPROVER,
            );
        }
        let outside = match &location {
            Location::Outside {
                why: Outside::Workspace,
                ..
            } => Some((
                WRITE_OUTSIDE_WORKSPACE,
                format!(
                    "Write target {} is outside the workspace root; review required.",
                    excerpt(normalized)
                ),
            )),
            Location::Outside {
                why: Outside::UnknownRoot,
                ..
            } => Some((
                WRITE_UNKNOWN_WORKSPACE,
                format!(
                    "Write target {} is absolute and no workspace root is known (request field \
                     workspace_root or --workspace-root); review required.",
                    excerpt(normalized)
                ),
            )),
            _ => None,
        };
        if let Some((rule_id, reason)) = outside {
            return verdict(Decision::RequireApproval, Severity::High, rule_id, reason, APPROVER);
        }
    }
    verdict(
        Decision::Allow,
        Severity::Low,
        allow_rule,
        "No sensitive path policy matched.".to_owned(),
        "",
    )
}

/// The first pattern (in the pack's order) that matches any candidate spelling of the path.
fn first_path_match<'p>(patterns: &'p [Pattern], candidates: &[String], folded: bool) -> Option<&'p Pattern> {
    patterns.iter().find(|pattern| {
        candidates
            .iter()
            .any(|candidate| pattern.matches_path(candidate, folded))
    })
}

pub(super) fn first_match<'p>(patterns: &'p [Pattern], value: &str) -> Option<&'p Pattern> {
    patterns.iter().find(|pattern| pattern.matches(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: PathCase = PathCase::Sensitive;

    fn baseline() -> Policy {
        crate::policy::builtin("cavra-ai-agent-baseline")
    }

    #[test]
    fn read_of_a_sensitive_path_blocks_and_quotes_the_pattern() {
        let verdict = evaluate(&baseline(), Access::Read, "./.env", None, S);
        assert_eq!(verdict.decision, Decision::Block);
        assert_eq!(verdict.rule_id, "filesystem.read.block");
        assert_eq!(verdict.severity, Severity::High);
        assert_eq!(verdict.reason, "Matched sensitive path policy: .env");
        assert_eq!(verdict.target, "./.env");
        assert_eq!(verdict.normalized_target.as_deref(), Some(".env"));
        assert_eq!(verdict.requested_operation, "read");
        assert_eq!(verdict.approver_group, "");
    }

    #[test]
    fn parent_segments_cannot_hide_a_sensitive_path() {
        let verdict = evaluate(&baseline(), Access::Read, "src/../.env", None, S);
        assert_eq!(verdict.decision, Decision::Block);
        assert_eq!(verdict.normalized_target.as_deref(), Some(".env"));
    }

    #[test]
    fn write_block_wins_over_approval_and_approval_names_platform_security() {
        let policy = baseline();
        let blocked = evaluate(&policy, Access::Write, ".github/workflows/ci.yml", None, S);
        assert_eq!(
            (blocked.decision, blocked.rule_id),
            (Decision::Block, "filesystem.write.block")
        );
        let approval = evaluate(&policy, Access::Write, "iam/admin.tf", None, S);
        assert_eq!(approval.decision, Decision::RequireApproval);
        assert_eq!(approval.rule_id, "filesystem.write.require_approval");
        assert_eq!(approval.severity, Severity::High);
        assert_eq!(approval.approver_group, "Platform Security");
        assert_eq!(approval.reason, "Matched approval-required path policy: iam/**");
    }

    #[test]
    fn approval_write_patterns_do_not_apply_to_reads() {
        let verdict = evaluate(&baseline(), Access::Read, "iam/admin.tf", None, S);
        assert_eq!(verdict.decision, Decision::Allow);
        assert_eq!(verdict.rule_id, "filesystem.read.allow");
        assert_eq!(verdict.reason, "No sensitive path policy matched.");
        assert_eq!(verdict.severity, Severity::Low);
    }

    #[test]
    fn files_at_the_root_and_absolute_paths_cannot_hide_from_patterns() {
        let policy = baseline();
        for (target, root) in [
            ("./id_rsa", None),
            ("x/../id_rsa", None),
            ("./terraform.tfstate", None),
            ("./kubeconfig", None),
            ("/repo/.env", None),
            ("/repo/.env", Some("/repo")),
            ("/home/me/.ssh/id_rsa", Some("/repo")),
            ("../.env", None),
            ("/repo/sub/.env", Some("/repo/sub")),
        ] {
            let verdict = evaluate(&policy, Access::Read, target, root, S);
            assert_eq!(verdict.decision, Decision::Block, "{target} {root:?}");
            assert_eq!(verdict.target, target);
        }
        let folded = evaluate(&policy, Access::Read, "./ID_RSA", None, PathCase::Insensitive);
        assert_eq!(folded.decision, Decision::Block);
        let kept = evaluate(&policy, Access::Read, "./ID_RSA", None, S);
        assert_eq!(kept.decision, Decision::Allow);
        // A workspace root the client chose cannot hide a pattern anchored at the real root.
        let hidden = evaluate(
            &policy,
            Access::Write,
            "/repo/.github/workflows/ci.yml",
            Some("/repo/.github"),
            S,
        );
        assert_eq!(hidden.decision, Decision::Block);
    }

    #[test]
    fn writes_outside_the_workspace_are_never_allowed() {
        let policy = baseline();
        let write = |target: &str, root: Option<&str>| {
            let verdict = evaluate(&policy, Access::Write, target, root, S);
            (verdict.decision, verdict.rule_id)
        };
        assert_eq!(
            write("/repo/src/a.rs", Some("/repo")),
            (Decision::Allow, "filesystem.write.allow")
        );
        assert_eq!(
            write("/tmp/a.rs", Some("/repo")),
            (Decision::RequireApproval, WRITE_OUTSIDE_WORKSPACE)
        );
        assert_eq!(
            write("../a.rs", None),
            (Decision::RequireApproval, WRITE_OUTSIDE_WORKSPACE)
        );
        assert_eq!(
            write("/repo/src/a.rs", None),
            (Decision::RequireApproval, WRITE_UNKNOWN_WORKSPACE)
        );
        let read = evaluate(&policy, Access::Read, "/tmp/a.rs", Some("/repo"), S);
        assert_eq!(read.decision, Decision::Allow);
    }
}
