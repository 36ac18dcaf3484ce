//! Properties of the engine over generated requests, from the built-in packs' own patterns (each `*` replaced by
//! generated text):
//!
//! - joining any allowed command with any blocked one by any shell operator, or nesting the blocked one in `$( )`,
//!   backticks, `<( )`, a group or `bash -c`, is never allowed, and is blocked whenever the blocked command alone is;
//! - spellings of one path (`./`, `//`, `x/../`, a trailing `/`, and case where paths fold case) decide alike.

use cavra_runtime::contract::{Decision, DecisionResponse, EvaluateRequest};
use cavra_runtime::engine::{self, Context, PathCase};
use cavra_runtime::policy::{PolicyConfig, PolicySet};
use proptest::prelude::*;
use std::sync::OnceLock;

fn policies() -> &'static PolicySet {
    static POLICIES: OnceLock<PolicySet> = OnceLock::new();
    POLICIES.get_or_init(|| PolicySet::load(&PolicyConfig::default()).unwrap())
}

/// Every (pack, command allow pattern, command block pattern) of the built-in packs.
fn command_patterns() -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    for policy in policies().packs() {
        for allow in &policy.command_allow {
            for block in &policy.command_block {
                all.push((policy.id.clone(), allow.as_str().to_owned(), block.as_str().to_owned()));
            }
        }
    }
    all
}

/// Every (pack, block_read pattern) of the built-in packs.
fn read_patterns() -> Vec<(String, String)> {
    policies()
        .packs()
        .flat_map(|policy| {
            policy
                .block_read
                .iter()
                .chain(&policy.block_write)
                .map(|pattern| (policy.id.clone(), pattern.as_str().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn decide(pack: &str, action_type: &str, target: &str, case: PathCase) -> DecisionResponse {
    let request = EvaluateRequest {
        action_type: action_type.to_owned(),
        target: target.to_owned(),
        policy_pack: pack.to_owned(),
        ..EvaluateRequest::default()
    };
    let context = Context {
        path_case: case,
        ..Context::default()
    };
    engine::evaluate(policies(), &request, &context).unwrap()
}

/// A pattern with each `*` replaced by one of `fills` (cycled).
fn fill(pattern: &str, fills: &[String]) -> String {
    let mut out = String::new();
    for (index, piece) in pattern.split('*').enumerate() {
        if index > 0 {
            out.push_str(&fills[(index - 1) % fills.len()]);
        }
        out.push_str(piece);
    }
    out
}

/// Text a `*` may stand for in a command without changing how the shell reads it. No `=`: after a `|` (as in
/// `curl *|*sh*`), `a=sh` would be an assignment, and then nothing runs `sh`.
fn safe_text() -> impl Strategy<Value = String> {
    "[a-z0-9._/-]{0,6}( [a-z0-9._-]{1,6})?"
}

fn joined() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "{a}; {b}",
        "{a} && {b}",
        "{a} || {b}",
        "{a} | {b}",
        "{a} |& {b}",
        "{a} & {b}",
        "{a}\n{b}",
        "{a};{b}",
        "{b}; {a}",
        "{b} && {a}",
        "{a} $({b})",
        "{a} `{b}`",
        "{a} <({b})",
        "{a} \"$({b})\"",
        "{a}; ({b})",
        "{a}; {{ {b}; }}",
        "{a}; bash -c '{b}'",
        "{a} && sh -c \"{b}\"",
        "{a}; sudo {b}",
        "{a}; env X=1 {b}",
        "{a}; nohup {b} &",
        "{a} | xargs {b}",
        "bash -c '{a} && {b}'",
        "{a}; eval '{b}'",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn an_allowed_command_never_carries_a_blocked_one(
        patterns in prop::sample::select(command_patterns()),
        fills in prop::collection::vec(safe_text(), 1..4),
        shape in joined(),
    ) {
        let (pack, allow, block) = patterns;
        let allowed = fill(&allow, &fills);
        let blocked = fill(&block, &fills);
        // Text the shell would read differently inside single or double quotes is left to the other shapes.
        prop_assume!(!blocked.contains(['\'', '"', '`', '$', '\\']));
        let line = shape.replace("{a}", &allowed).replace("{b}", &blocked).replace("{{", "{").replace("}}", "}");
        let alone = decide(&pack, "execute_command", &blocked, PathCase::Sensitive);
        let both = decide(&pack, "execute_command", &line, PathCase::Sensitive);
        prop_assert_ne!(&both.decision, &Decision::Allow, "{:?} in {}: {:?}", line, pack, both);
        if alone.decision == Decision::Block {
            prop_assert_eq!(&both.decision, &Decision::Block, "{:?} in {}: {:?}", line, pack, both);
        }
    }

    #[test]
    fn spellings_of_one_path_decide_alike(
        patterns in prop::sample::select(read_patterns()),
        fills in prop::collection::vec("[a-z0-9_.-]{1,6}(/[a-z0-9_-]{1,6})?", 1..4),
        prefix in prop::sample::select(vec!["", "d/", "d/e/"]),
        insensitive in any::<bool>(),
    ) {
        let (pack, pattern) = patterns;
        let base = fill(&pattern.replace("**/", "*/"), &fills);
        let base = format!("{prefix}{base}").trim_start_matches("*/").to_owned();
        prop_assume!(!base.split('/').any(|segment| segment == ".." || segment == "." || segment.is_empty()));
        let case = if insensitive { PathCase::Insensitive } else { PathCase::Sensitive };
        let mut spellings = vec![
            format!("./{base}"),
            base.replace('/', "//"),
            format!("x/../{base}"),
            format!("{base}/"),
            format!("./x/./../{base}"),
        ];
        if insensitive {
            spellings.push(base.to_uppercase());
        }
        for action_type in ["read_file", "write_file"] {
            let expected = decide(&pack, action_type, &base, case);
            for spelling in &spellings {
                let got = decide(&pack, action_type, spelling, case);
                prop_assert_eq!(
                    (&got.decision, &got.rule_id),
                    (&expected.decision, &expected.rule_id),
                    "{} {:?} vs {:?} in {} ({:?})", action_type, spelling, base, pack, case
                );
            }
        }
    }
}
