//! `git_operation`, and `git push` inside an `execute_command`: a push that reaches a protected branch is blocked.
//!
//! The operation is read as git reads a command line: an optional leading `git` and its global options, the verb
//! (case-folded), then the push's options and refspecs. Where the push goes is decided from every refspec and from
//! the request's target: forced (`-f`, `--force`, `--force-with-lease`, `+ref`), deleting (`-d`, `--delete`,
//! `:ref`) and all-branch (`--all`, `--branches`, `--mirror`, `--prune`) pushes are recognised. Protected branches are
//! the reference's: any destination ending in `main` or `master` (so `origin/domain` counts too, erring towards
//! blocking), compared case-insensitively and without trailing slashes. A push whose destination cannot be told
//! (`git push`, `git push origin`, `git push origin HEAD`) needs approval.

use std::borrow::Cow;

use super::{Verdict, excerpt};
use crate::contract::{Decision, Severity};

pub const BLOCK_PUSH: &str = "git.protected_branch.block_direct_push";
pub const BLOCK_DELETE: &str = "git.protected_branch.block_delete";
pub const DESTINATION_UNKNOWN: &str = "git.push.destination_unknown";
const ALLOW: &str = "git.allow";
const PUSH_REASON: &str = "Direct push to protected branch is prohibited.";
const APPROVER: &str = "Repository Owners";

/// What the git rules conclude about one git command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Not a push: the git rules have nothing to say.
    NotPush,
    /// A push to branches that are not protected.
    Allowed,
    /// A push whose destination, or a command whose verb, cannot be told.
    Unknown(String),
    Blocked {
        rule_id: &'static str,
        severity: Severity,
        reason: String,
    },
}

/// `operation` is the request's `operation`, else its `requested_operation`.
pub fn evaluate(operation: &str, target: &str) -> Verdict {
    let words: Vec<&str> = operation.split_whitespace().collect();
    let check = check_words(&words, Some(target));
    let (decision, severity, rule_id, reason, approver_group) = match check {
        Check::NotPush | Check::Allowed => (
            Decision::Allow,
            Severity::Low,
            ALLOW,
            "Git operation is allowed by policy.".to_owned(),
            "",
        ),
        Check::Unknown(reason) => (
            Decision::RequireApproval,
            Severity::Medium,
            DESTINATION_UNKNOWN,
            reason,
            APPROVER,
        ),
        Check::Blocked {
            rule_id,
            severity,
            reason,
        } => (Decision::Block, severity, rule_id, reason, ""),
    };
    Verdict {
        decision,
        severity,
        rule_id,
        reason,
        approver_group,
        action_type: "git_operation".to_owned(),
        target: if target.is_empty() { operation } else { target }.to_owned(),
        requested_operation: operation.to_owned(),
        normalized_target: None,
    }
}

/// The git rules for a simple command whose first word runs git (`git`, `/usr/bin/git`, `GIT`).
pub fn check_command(words: &[Cow<'_, str>]) -> Check {
    let words: Vec<&str> = words.iter().map(|word| &**word).collect();
    check_words(&words, None)
}

/// Whether `word` names the git program.
pub fn is_git(word: &str) -> bool {
    let name = word.rsplit('/').next().unwrap_or(word);
    name.eq_ignore_ascii_case("git")
}

/// `words` may start with `git`; `target` is the request's target, which names a destination too.
fn check_words(words: &[&str], target: Option<&str>) -> Check {
    let words = match words.split_first() {
        Some((first, rest)) if is_git(first) => rest,
        _ => words,
    };
    let (verb_at, verb_hidden) = skip_global_options(words);
    let Some(verb) = words.get(verb_at) else {
        return Check::NotPush;
    };
    if verb_hidden {
        return Check::Unknown(format!(
            "The git command cannot be told: `-c alias.*`, `-c include.*` or `--exec-path` may turn `{}` into a \
             push; review required.",
            excerpt(verb)
        ));
    }
    if !matches!(verb.to_lowercase().as_str(), "push" | "send-pack" | "http-push") {
        return Check::NotPush;
    }
    let push = Push::read(&words[verb_at + 1..]);
    push.check(target.map(str::trim).filter(|target| !target.is_empty()))
}

/// Index of the verb after git's global options, and whether an option may change what the verb means.
fn skip_global_options(words: &[&str]) -> (usize, bool) {
    let mut hidden = false;
    let mut at = 0;
    while let Some(word) = words.get(at) {
        let config = |value: &str| {
            let key = value.split('=').next().unwrap_or_default().to_lowercase();
            key.starts_with("alias.") || key.starts_with("include")
        };
        match *word {
            "-c" | "--config-env" => {
                hidden |= words.get(at + 1).is_some_and(|value| config(value));
                at += 2;
            }
            "-C" | "--git-dir" | "--work-tree" | "--namespace" | "--super-prefix" | "--list-cmds" => at += 2,
            _ if word.starts_with("--config-env=") => {
                hidden |= config(&word["--config-env=".len()..]);
                at += 1;
            }
            _ if word.starts_with("--exec-path=") => {
                hidden = true;
                at += 1;
            }
            _ if word.starts_with("-c") && word.len() > 2 => {
                hidden |= config(&word[2..]);
                at += 1;
            }
            _ if word.starts_with('-') => at += 1,
            _ => break,
        }
    }
    (at, hidden)
}

/// A push as its options and operands describe it.
#[derive(Debug, Default)]
struct Push<'a> {
    force: bool,
    delete: bool,
    /// `--all`, `--branches`, `--mirror` or `--prune`: every branch, protected ones included.
    every_branch: Option<&'a str>,
    operands: Vec<&'a str>,
}

impl<'a> Push<'a> {
    fn read(args: &[&'a str]) -> Push<'a> {
        let mut push = Push::default();
        let mut at = 0;
        let mut options_end = false;
        while let Some(&word) = args.get(at) {
            at += 1;
            if options_end || !word.starts_with('-') || word == "-" {
                push.operands.push(word);
                continue;
            }
            if word == "--" {
                options_end = true;
                continue;
            }
            if let Some(long) = word.strip_prefix("--") {
                let name = long.split('=').next().unwrap_or_default();
                match name {
                    "force" | "force-with-lease" | "force-if-includes" => push.force = true,
                    "delete" => push.delete = true,
                    "all" | "branches" | "mirror" | "prune" => push.every_branch = Some(word),
                    "repo" if !long.contains('=') => {
                        if let Some(repository) = args.get(at) {
                            push.operands.insert(0, repository);
                            at += 1;
                        }
                    }
                    "receive-pack" | "exec" | "push-option" if !long.contains('=') => at += 1,
                    _ => {}
                }
                continue;
            }
            // A cluster of short options: `-fu`, `-o value`, `-ovalue`.
            for (position, letter) in word[1..].char_indices() {
                match letter {
                    'f' => push.force = true,
                    'd' => push.delete = true,
                    'o' => {
                        if position + 2 == word.len() {
                            at += 1;
                        }
                        break;
                    }
                    _ => {}
                }
            }
        }
        push
    }

    fn check(&self, target: Option<&str>) -> Check {
        if let Some(option) = self.every_branch {
            let rule_id = if option == "--prune" { BLOCK_DELETE } else { BLOCK_PUSH };
            return Check::Blocked {
                rule_id,
                severity: Severity::Critical,
                reason: format!("{PUSH_REASON} (`{option}` reaches every branch, protected ones included)"),
            };
        }
        // The first operand names the remote; the rest are refspecs. The target names a destination too.
        let refspecs = self.operands.iter().skip(1).copied().chain(target);
        let mut known = false;
        let mut unknown = None;
        for refspec in refspecs {
            let destination = Destination::of(refspec);
            let Some(name) = destination.name else {
                unknown.get_or_insert(refspec);
                continue;
            };
            known = true;
            if !is_protected(name) {
                continue;
            }
            let deleting = self.delete || destination.delete;
            let forced = self.force || destination.force;
            let (rule_id, severity, how) = match (deleting, forced) {
                (true, _) => (BLOCK_DELETE, Severity::Critical, "deletes"),
                (false, true) => (BLOCK_PUSH, Severity::Critical, "force-pushes to"),
                (false, false) => (BLOCK_PUSH, Severity::High, ""),
            };
            let reason = if how.is_empty() {
                PUSH_REASON.to_owned()
            } else {
                format!("{PUSH_REASON} (`{}` {how} a protected branch)", excerpt(refspec))
            };
            return Check::Blocked {
                rule_id,
                severity,
                reason,
            };
        }
        match (unknown, known) {
            (Some(refspec), _) => Check::Unknown(format!(
                "Push destination `{}` cannot be told from the request; review required.",
                excerpt(refspec)
            )),
            (None, false) => {
                Check::Unknown("Push names no destination branch (no refspec and no target); review required.".into())
            }
            (None, true) => Check::Allowed,
        }
    }
}

/// Where one refspec (or target) pushes to.
struct Destination<'a> {
    /// `None` when the name is not in the request (`HEAD`, `@`, an empty refspec).
    name: Option<&'a str>,
    force: bool,
    delete: bool,
}

impl<'a> Destination<'a> {
    fn of(refspec: &'a str) -> Destination<'a> {
        let (force, refspec) = match refspec.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, refspec),
        };
        let (source, destination) = match refspec.rsplit_once(':') {
            Some((source, destination)) => (source, destination),
            None => (refspec, refspec),
        };
        let delete = source.is_empty() && !destination.is_empty();
        let name = destination.trim();
        let current_branch = name.is_empty()
            || name.eq_ignore_ascii_case("head")
            || name == "@"
            || name.to_ascii_lowercase().starts_with("head~")
            || name.to_ascii_lowercase().starts_with("head^");
        Destination {
            name: (!current_branch).then_some(name),
            force,
            delete,
        }
    }
}

/// The reference's suffix test, case-folded and without trailing slashes; a wildcard may reach any branch.
fn is_protected(name: &str) -> bool {
    let name = name.trim().trim_end_matches('/').to_lowercase();
    name.ends_with("main") || name.ends_with("master") || name.contains('*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(operation: &str, target: &str) -> (Decision, &'static str) {
        let verdict = evaluate(operation, target);
        (verdict.decision, verdict.rule_id)
    }

    #[test]
    fn push_to_main_or_master_blocks() {
        for target in ["origin/main", "master", "refs/heads/main"] {
            let verdict = evaluate("push", target);
            assert_eq!(verdict.decision, Decision::Block, "{target}");
            assert_eq!(verdict.rule_id, BLOCK_PUSH);
            assert_eq!(verdict.severity, Severity::High);
            assert_eq!(verdict.reason, PUSH_REASON);
        }
    }

    #[test]
    fn other_operations_and_branches_are_allowed() {
        let fetch = evaluate("fetch", "origin/main");
        assert_eq!((fetch.decision, fetch.rule_id), (Decision::Allow, "git.allow"));
        assert_eq!(fetch.reason, "Git operation is allowed by policy.");
        assert_eq!(decide("push", "origin/feature-x"), (Decision::Allow, ALLOW));
        assert_eq!(decide("push --force", "origin/feature-x"), (Decision::Allow, ALLOW));
        assert_eq!(decide("", "origin/main"), (Decision::Allow, ALLOW));
    }

    #[test]
    fn reworded_pushes_to_protected_branches_block() {
        for (operation, target) in [
            ("push --force", "origin/main"),
            ("push -f", "origin/main"),
            ("push -fu", "origin/main"),
            ("push --force-with-lease=main", "origin/main"),
            ("Push", "origin/main"),
            ("PUSH", "origin/main"),
            ("git push", "origin/main"),
            ("git -C /repo push", "origin/main"),
            ("push", "refs/heads/main/"),
            ("push", "MAIN"),
            ("push", "origin/Master//"),
            ("push", "HEAD:main"),
            ("push", "+main"),
            ("push", " origin/main "),
            ("push origin HEAD:refs/heads/main", "origin/feature"),
            ("push origin feature:main", ""),
            ("push origin refs/heads/*:refs/heads/*", ""),
            ("send-pack", "main"),
        ] {
            assert_eq!(decide(operation, target).0, Decision::Block, "{operation:?} {target:?}");
        }
    }

    #[test]
    fn force_delete_and_every_branch_pushes_are_critical() {
        for (operation, target, rule_id) in [
            ("push --force", "origin/main", BLOCK_PUSH),
            ("push", "+main", BLOCK_PUSH),
            ("push --delete", "main", BLOCK_DELETE),
            ("push -d origin main", "", BLOCK_DELETE),
            ("push origin :main", "", BLOCK_DELETE),
            ("push --mirror", "", BLOCK_PUSH),
            ("push --all origin", "", BLOCK_PUSH),
            ("push --prune origin", "", BLOCK_DELETE),
        ] {
            let verdict = evaluate(operation, target);
            assert_eq!(
                (verdict.decision, verdict.rule_id, verdict.severity),
                (Decision::Block, rule_id, Severity::Critical),
                "{operation:?} {target:?}: {}",
                verdict.reason
            );
            assert!(verdict.reason.starts_with(PUSH_REASON), "{}", verdict.reason);
        }
    }

    #[test]
    fn a_push_with_no_known_destination_needs_approval() {
        for (operation, target) in [
            ("push", ""),
            ("git push", ""),
            ("push origin", ""),
            ("push origin HEAD", ""),
            ("push", "HEAD"),
            ("push origin @", ""),
        ] {
            let verdict = evaluate(operation, target);
            assert_eq!(
                (verdict.decision, verdict.rule_id),
                (Decision::RequireApproval, DESTINATION_UNKNOWN),
                "{operation:?} {target:?}"
            );
            assert_eq!(verdict.approver_group, APPROVER);
        }
    }

    #[test]
    fn an_alias_can_hide_a_push() {
        assert_eq!(
            decide("git -c alias.p=push p", "origin/main"),
            (Decision::RequireApproval, DESTINATION_UNKNOWN)
        );
        assert_eq!(
            decide("git --exec-path=/tmp/x status", ""),
            (Decision::RequireApproval, DESTINATION_UNKNOWN)
        );
        assert_eq!(decide("git -c user.name=x commit", ""), (Decision::Allow, ALLOW));
    }

    #[test]
    fn commands_are_checked_from_their_words() {
        let words = |line: &str| -> Vec<Cow<'static, str>> {
            line.split(' ').map(|word| Cow::Owned(word.to_owned())).collect()
        };
        assert!(matches!(
            check_command(&words("git push -f origin main")),
            Check::Blocked { .. }
        ));
        assert!(matches!(
            check_command(&words("/usr/bin/GIT push origin main")),
            Check::Blocked { .. }
        ));
        assert_eq!(check_command(&words("git push origin feature")), Check::Allowed);
        assert_eq!(check_command(&words("git status")), Check::NotPush);
        assert!(matches!(check_command(&words("git push")), Check::Unknown(_)));
    }

    #[test]
    fn empty_target_reports_the_operation() {
        let verdict = evaluate("fetch", "");
        assert_eq!((verdict.decision, verdict.target.as_str()), (Decision::Allow, "fetch"));
    }
}
