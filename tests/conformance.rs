//! Table-driven conformance: every fixture case in testdata/conformance/ runs through the real binary's one-shot
//! mode, and the decision, rule id, severity and approver group must be exactly as the fixture says.
//!
//! A case whose reference answer cavra-runtime deliberately overrides (docs/migration.md) says so: its `deviation`
//! names the migration row, `expect` keeps the reference's answer, and `override` gives ours. The test checks both
//! that the reference's answer is no longer given and that ours is.

mod common;

use std::fs;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
struct Suite {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    policy_file: Option<String>,
    registry_file: Option<String>,
    request: toml::Value,
    expect: Expect,
    /// The docs/migration.md row this case's reference answer is overridden by.
    deviation: Option<String>,
    /// Our answer where `deviation` is set.
    #[serde(rename = "override")]
    overridden: Option<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: String,
    rule_id: String,
    severity: String,
    /// Absent means the decision must carry none.
    approver_group: Option<String>,
    evidence_ref_prefix: Option<String>,
    target: Option<String>,
    normalized_target: Option<String>,
    requested_operation: Option<String>,
}

fn field<'a>(response: &'a Value, name: &str) -> &'a str {
    response.get(name).and_then(Value::as_str).unwrap_or("")
}

/// The migration rows every `deviation` must name (the first column of docs/migration.md's table).
fn migration_rows() -> Vec<String> {
    let text = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/migration.md")).unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|line| line.split(" |").next())
        .map(str::to_owned)
        .collect()
}

fn run_suite(file: &str, expected_cases: usize) {
    run_suite_with_deviations(file, expected_cases, 0);
}

fn run_suite_with_deviations(file: &str, expected_cases: usize, expected_deviations: usize) {
    let rows = migration_rows();
    let mut deviations = 0;
    let path = common::testdata(&format!("conformance/{file}"));
    let suite: Suite = toml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(suite.case.len(), expected_cases, "{file} case count");
    for case in suite.case {
        let mut args: Vec<String> = Vec::new();
        if let Some(policy) = &case.policy_file {
            args.extend(["--policy".into(), common::testdata(policy).display().to_string()]);
        }
        if let Some(registry) = &case.registry_file {
            args.extend(["--registry".into(), common::testdata(registry).display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let request = serde_json::to_value(&case.request).unwrap();
        let response = common::decide(&args, &request);
        let context = format!("{file}: {}: {response}", case.name);
        let expect = match (&case.deviation, &case.overridden) {
            (None, None) => &case.expect,
            (Some(row), Some(ours)) => {
                assert!(
                    rows.contains(row),
                    "{context}: deviation {row:?} is not a row of docs/migration.md"
                );
                let reference = (field(&response, "decision"), field(&response, "rule_id"));
                assert_ne!(
                    reference,
                    (case.expect.decision.as_str(), case.expect.rule_id.as_str()),
                    "{context}: the reference's answer is still given; drop the deviation"
                );
                deviations += 1;
                ours
            }
            _ => panic!("{context}: `deviation` and `override` go together"),
        };
        assert_eq!(field(&response, "decision"), expect.decision, "{context}");
        assert_eq!(field(&response, "rule_id"), expect.rule_id, "{context}");
        assert_eq!(field(&response, "severity"), expect.severity, "{context}");
        assert_eq!(
            field(&response, "approver_group"),
            expect.approver_group.as_deref().unwrap_or(""),
            "{context}"
        );
        if let Some(target) = &expect.target {
            assert_eq!(field(&response, "target"), target, "{context}");
        }
        assert_eq!(
            field(&response, "normalized_target"),
            expect.normalized_target.as_deref().unwrap_or(""),
            "{context}"
        );
        if let Some(operation) = &expect.requested_operation {
            assert_eq!(field(&response, "requested_operation"), operation, "{context}");
        }
        if let Some(prefix) = &expect.evidence_ref_prefix {
            assert!(!field(&response, "decision_id").is_empty(), "{context}");
            assert!(!field(&response, "timestamp").is_empty(), "{context}");
            assert!(field(&response, "correlation_id").starts_with("corr_"), "{context}");
            let first_ref = response["evidence_refs"][0].as_str().unwrap_or("");
            assert!(first_ref.starts_with(prefix), "{context}");
        }
        let pack = request
            .get("policy_pack")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty());
        let expected_pack = match (&case.policy_file, pack) {
            (_, Some(pack)) => pack,
            (Some(_), None) => "cavra-rs-compiled-fixture",
            (None, None) => "cavra-ai-agent-baseline",
        };
        assert_eq!(field(&response, "policy_pack"), expected_pack, "{context}");
        assert_eq!(field(&response, "policy_id"), expected_pack, "{context}");
    }
    assert_eq!(
        deviations, expected_deviations,
        "{file}: cases overriding the reference"
    );
}

#[test]
fn parity_cases() {
    run_suite("parity.toml", 23);
}

#[test]
fn release_governance_records() {
    run_suite("release-governance-records.toml", 13);
}

#[test]
fn release_governance_contracts() {
    run_suite("release-governance-contracts.toml", 7);
}

#[test]
fn compiled_policy_and_registry_cases() {
    run_suite("compiled-policy.toml", 6);
}

#[test]
fn fail_closed_cases() {
    run_suite("fail-closed.toml", 11);
}
