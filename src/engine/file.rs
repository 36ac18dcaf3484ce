//! `read_file` and `write_file`: sensitive paths are blocked, approval-required paths wait for Platform Security.

use super::Verdict;
use crate::contract::{Decision, Severity};
use crate::policy::{Pattern, Policy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

pub fn evaluate(policy: &Policy, access: Access, target: &str) -> Verdict {
    let target = normalize_path(target);
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
    let verdict = |decision, severity, rule_id, reason: String, approver_group| Verdict {
        decision,
        severity,
        rule_id,
        reason,
        approver_group,
        action_type: action_type.to_owned(),
        target: target.clone(),
        requested_operation: operation.to_owned(),
    };
    if let Some(pattern) = first_match(blocked, &target) {
        return verdict(
            Decision::Block,
            Severity::High,
            block_rule,
            format!("Matched sensitive path policy: {pattern}"),
            "",
        );
    }
    if access == Access::Write
        && let Some(pattern) = first_match(&policy.require_approval_write, &target)
    {
        return verdict(
            Decision::RequireApproval,
            Severity::High,
            "filesystem.write.require_approval",
            format!("Matched approval-required path policy: {pattern}"),
            "Platform Security",
        );
    }
    verdict(
        Decision::Allow,
        Severity::Low,
        allow_rule,
        "No sensitive path policy matched.".to_owned(),
        "",
    )
}

pub(super) fn first_match<'p>(patterns: &'p [Pattern], value: &str) -> Option<&'p Pattern> {
    patterns.iter().find(|pattern| pattern.matches(value))
}

/// Lexical normalisation, so that `./.env`, `a//b/`, and `src/../.env` cannot slip past a pattern: empty and `.`
/// segments go, `..` removes the segment before it, and an empty relative path is `.`. Symbolic links are not
/// followed: the daemon judges the path the agent names, not the file system.
pub fn normalize_path(target: &str) -> String {
    let absolute = target.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in target.split('/') {
        match segment {
            "" | "." => {}
            ".." => match segments.last() {
                Some(&last) if last != ".." => {
                    segments.pop();
                }
                // `/..` is `/`; a relative path may climb above its start.
                _ if absolute => {}
                _ => segments.push(".."),
            },
            other => segments.push(other),
        }
    }
    let joined = segments.join("/");
    if absolute {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline() -> Policy {
        crate::policy::builtin("cavra-ai-agent-baseline")
    }

    #[test]
    fn normalisation_resolves_dots_slashes_and_parents() {
        for (input, expected) in [
            ("./.env", ".env"),
            ("a//b", "a/b"),
            ("iam/", "iam"),
            ("src/../.env", ".env"),
            ("a/b/../../c", "c"),
            ("../x", "../x"),
            ("../../x/..", "../.."),
            ("/../etc/passwd", "/etc/passwd"),
            ("/", "/"),
            ("", "."),
            ("./", "."),
            ("config/prod.secret", "config/prod.secret"),
        ] {
            assert_eq!(normalize_path(input), expected, "{input}");
        }
    }

    #[test]
    fn read_of_a_sensitive_path_blocks_and_quotes_the_pattern() {
        let verdict = evaluate(&baseline(), Access::Read, "./.env");
        assert_eq!(verdict.decision, Decision::Block);
        assert_eq!(verdict.rule_id, "filesystem.read.block");
        assert_eq!(verdict.severity, Severity::High);
        assert_eq!(verdict.reason, "Matched sensitive path policy: .env");
        assert_eq!(verdict.target, ".env");
        assert_eq!(verdict.requested_operation, "read");
        assert_eq!(verdict.approver_group, "");
    }

    #[test]
    fn parent_segments_cannot_hide_a_sensitive_path() {
        let verdict = evaluate(&baseline(), Access::Read, "src/../.env");
        assert_eq!((verdict.decision, verdict.target.as_str()), (Decision::Block, ".env"));
    }

    #[test]
    fn write_block_wins_over_approval_and_approval_names_platform_security() {
        let policy = baseline();
        let blocked = evaluate(&policy, Access::Write, ".github/workflows/ci.yml");
        assert_eq!(
            (blocked.decision, blocked.rule_id),
            (Decision::Block, "filesystem.write.block")
        );
        let approval = evaluate(&policy, Access::Write, "iam/admin.tf");
        assert_eq!(approval.decision, Decision::RequireApproval);
        assert_eq!(approval.rule_id, "filesystem.write.require_approval");
        assert_eq!(approval.severity, Severity::High);
        assert_eq!(approval.approver_group, "Platform Security");
        assert_eq!(approval.reason, "Matched approval-required path policy: iam/**");
    }

    #[test]
    fn approval_write_patterns_do_not_apply_to_reads() {
        let verdict = evaluate(&baseline(), Access::Read, "iam/admin.tf");
        assert_eq!(verdict.decision, Decision::Allow);
        assert_eq!(verdict.rule_id, "filesystem.read.allow");
        assert_eq!(verdict.reason, "No sensitive path policy matched.");
        assert_eq!(verdict.severity, Severity::Low);
    }
}
