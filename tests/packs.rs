//! Built-in packs: every pack's first sorted pattern of every list decides as expected through the binary (the
//! reference's "all packs" test), inheritance compiles as the reference authority compiles it, and the reference's
//! own YAML packs and compiled fixture load and agree with ours.

mod common;

use std::fs;

use cavra_runtime::contract::{Decision, EvaluateRequest};
use cavra_runtime::engine;
use cavra_runtime::policy::{Pattern, PolicyConfig, PolicySet, PolicySource};
use serde_json::{Value, json};

fn built_in() -> PolicySet {
    PolicySet::load(&PolicyConfig::default()).unwrap()
}

/// A value the pattern matches: each star becomes one `x`.
fn sample(pattern: &Pattern) -> String {
    pattern.as_str().replace('*', "x")
}

fn check(pack: &str, request: Value, decision: &str, rule_id: &str, severity: &str, approver: &str) {
    let response = common::decide(&[], &request);
    let context = format!("pack {pack}: {request} -> {response}");
    assert_eq!(response["decision"], decision, "{context}");
    assert_eq!(response["rule_id"], rule_id, "{context}");
    assert_eq!(response["severity"], severity, "{context}");
    assert_eq!(response["approver_group"].as_str().unwrap_or(""), approver, "{context}");
    assert_eq!(response["policy_pack"], pack, "{context}");
    assert!(
        response["evidence_refs"][0]
            .as_str()
            .unwrap()
            .starts_with("evidence://"),
        "{context}"
    );
}

#[test]
fn first_sorted_pattern_of_every_list_decides_in_every_pack() {
    let policies = built_in();
    assert_eq!(policies.packs().count(), 20);
    for policy in policies.packs() {
        let pack = policy.id.as_str();
        if let Some(pattern) = policy.block_read.first() {
            let request = json!({"action_type": "read_file", "target": sample(pattern), "policy_pack": pack});
            check(pack, request, "block", "filesystem.read.block", "high", "");
        }
        if let Some(pattern) = policy.block_write.first() {
            let request = json!({"action_type": "write_file", "target": sample(pattern), "policy_pack": pack});
            check(pack, request, "block", "filesystem.write.block", "high", "");
        }
        if let Some(pattern) = policy.require_approval_write.first() {
            let request = json!({"action_type": "write_file", "target": sample(pattern), "policy_pack": pack});
            let rule = "filesystem.write.require_approval";
            check(pack, request, "require_approval", rule, "high", "Platform Security");
        }
        if let Some(pattern) = policy.command_block.first() {
            let command = sample(pattern);
            let severity = if command.contains("apply") || command.contains("delete") {
                "critical"
            } else {
                "high"
            };
            let request = json!({"action_type": "execute_command", "target": command, "policy_pack": pack});
            check(pack, request, "block", "commands.block", severity, "");
        }
        if let Some(pattern) = policy.command_allow.first() {
            let request = json!({"action_type": "execute_command", "target": sample(pattern), "policy_pack": pack});
            check(pack, request, "allow", "commands.allow", "low", "");
        }
        let mcp = |server: &str| {
            json!({"action_type": "mcp_tool_call", "server": server, "tool": "read_file",
                   "capability": "filesystem", "policy_pack": pack})
        };
        match policy.mcp_allowed_servers.first() {
            Some(server) => check(pack, mcp(server), "allow", "mcp.server.trust.allow", "low", ""),
            None => check(
                pack,
                mcp("unlisted-server"),
                "block",
                "mcp.server.trust.block_unknown",
                "high",
                "",
            ),
        }
        if let Some(server) = policy.mcp_blocked_servers.first() {
            check(pack, mcp(server), "block", "mcp.server.trust.block_unknown", "high", "");
        }
    }
}

fn strings(patterns: &[Pattern]) -> Vec<&str> {
    patterns.iter().map(Pattern::as_str).collect()
}

#[test]
fn agentic_delivery_compiles_with_both_parents_like_the_reference_authority() {
    let policies = built_in();
    let pack = policies.pack("cavra-agentic-delivery").unwrap();
    assert_eq!(
        strings(&pack.block_read),
        [
            "**/*.pem",
            "**/*.pfx",
            "**/*credential*",
            "**/*token*",
            "**/id_rsa",
            "**/kubeconfig",
            "**/secrets.*",
            "**/terraform.tfstate",
            "**/terraform.tfvars",
            ".env",
            ".env.*",
            ".github/dependabot.yml",
        ]
    );
    assert_eq!(
        strings(&pack.block_write),
        [
            "**/ClaudeCode/managed-settings*",
            "**/Cursor/hooks.json",
            "**/backend.tf",
            "**/claude-code/managed-settings*",
            "**/cursor/hooks.json",
            "**/main.tf",
            "**/providers.tf",
            ".claude/**",
            ".cursor/**",
            ".github/workflows/**",
        ]
    );
    assert_eq!(
        strings(&pack.require_approval_write),
        [
            ".github/CODEOWNERS",
            ".github/agents/**",
            ".github/dependabot.yml",
            ".github/workflows/**",
            "iam/**",
            "policies/**",
            "proto/**",
            "schemas/**",
            "security/**",
            "src/cavra/evidence.py",
            "src/cavra/policy_engine.py",
            "src/cavra/runtime.py",
        ]
    );
    assert_eq!(
        strings(&pack.command_block),
        [
            "aws iam create-access-key*",
            "az role assignment create*",
            "gcloud projects add-iam-policy-binding*",
            "gh api repos/* --method PATCH*",
            "gh api repos/*/branches/main/protection*",
            "gh pr merge*",
            "gh pr merge*--admin*",
            "gh repo edit*",
            "git push --force*",
            "git push origin main",
            "git push origin master",
            "kubectl delete*",
            "rm -rf .git",
            "security find-generic-password*",
            "terraform apply*",
        ]
    );
    assert_eq!(
        strings(&pack.command_allow),
        [
            "cavra evidence verify*",
            "cavra policy validate*",
            "gh pr create*",
            "gh pr view*",
            "git branch*",
            "git checkout -b agent/*",
            "git diff*",
            "git status*",
            "git switch -c agent/*",
            "npm test*",
            "pytest*",
            "python3 -m pytest*",
            "ruff*",
            "terraform fmt*",
            "terraform plan*",
            "terraform validate*",
        ]
    );
    assert_eq!(pack.mcp_allowed_servers, ["filesystem", "github"]);
    assert!(pack.mcp_block_unknown_servers);
}

#[test]
fn reference_yaml_packs_compile_to_the_built_in_packs() {
    let Some(reference) = common::reference_data() else {
        return;
    };
    let from_yaml = PolicySet::load(&PolicyConfig {
        source: PolicySource::Directory(reference.join("policies")),
        ..Default::default()
    })
    .unwrap();
    let built_in = built_in();
    let yaml_ids: Vec<_> = from_yaml.packs().map(|p| p.id.clone()).collect();
    let built_in_ids: Vec<_> = built_in.packs().map(|p| p.id.clone()).collect();
    assert_eq!(yaml_ids, built_in_ids);
    // The one difference (docs/migration.md): every built-in pack also blocks writes to the agents' own settings.
    for policy in built_in.packs() {
        let mut reference = from_yaml.pack(&policy.id).unwrap().clone();
        reference
            .block_write
            .extend(AGENT_SETTINGS.iter().map(|p| Pattern::new(p).unwrap()));
        reference.block_write.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        reference.block_write.dedup();
        assert_eq!(policy, &reference, "pack {}", policy.id);
    }
}

/// The write patterns every built-in pack adds to the reference's: the agents' settings and hook configuration.
const AGENT_SETTINGS: &[&str] = &[
    ".claude/**",
    ".cursor/**",
    "**/claude-code/managed-settings*",
    "**/ClaudeCode/managed-settings*",
    "**/cursor/hooks.json",
    "**/Cursor/hooks.json",
];

#[test]
fn every_built_in_pack_blocks_writes_to_the_agents_settings_and_hooks() {
    let policies = built_in();
    for policy in policies.packs() {
        let blocked: Vec<&str> = strings(&policy.block_write);
        for pattern in AGENT_SETTINGS {
            assert!(blocked.contains(pattern), "pack {} lacks {pattern}", policy.id);
        }
        // As the hook sends them: absolute, with the project as the workspace root.
        for target in [
            "/home/dev/project/.claude/settings.json",
            "/home/dev/project/.claude/settings.local.json",
            "/home/dev/.claude/settings.json",
            "/home/dev/project/.cursor/hooks.json",
            "/home/dev/.cursor/hooks/guard.sh",
            "/etc/claude-code/managed-settings.json",
            "/etc/claude-code/managed-settings.d/10-cavra.json",
            "/Library/Application Support/ClaudeCode/managed-settings.json",
            "/etc/cursor/hooks.json",
        ] {
            let request = json!({"action_type": "write_file", "target": target,
                                 "workspace_root": "/home/dev/project", "policy_pack": policy.id});
            let response = engine::evaluate(
                &policies,
                &serde_json::from_value(request).unwrap(),
                &engine::Context::default(),
            )
            .unwrap();
            assert_eq!(
                response.rule_id, "filesystem.write.block",
                "pack {}: {target}",
                policy.id
            );
        }
    }
}

#[test]
fn reference_compiled_fixture_loads_and_decides() {
    let Some(reference) = common::reference_data() else {
        return;
    };
    let policy = reference.join("go/cavra-runtime/testdata/compiled_policy.json");
    let policy = policy.to_str().unwrap();
    let cases = [
        (
            json!({"action_type": "read_file", "target": "config/prod.secret"}),
            "block",
            "filesystem.read.block",
        ),
        (
            json!({"action_type": "execute_command", "target": "custom scan --check"}),
            "allow",
            "commands.allow",
        ),
        (
            json!({"action_type": "mcp_tool_call", "server": "unknown-provider", "tool": "read_file"}),
            "block",
            "mcp.server.trust.block_unknown",
        ),
        (
            json!({"session_id": "compiled-approval", "action_type": "write_file", "target": "iam/admin-role.tf"}),
            "require_approval",
            "filesystem.write.require_approval",
        ),
    ];
    for (request, decision, rule_id) in cases {
        let response = common::decide(&["--policy", policy], &request);
        assert_eq!(response["decision"], decision, "{response}");
        assert_eq!(response["rule_id"], rule_id, "{response}");
        assert_eq!(response["policy_pack"], "cavra-go-compiled-fixture", "{response}");
    }
}

/// Guards the restated fixtures: the reference's own case files must decide the same way in-process.
#[test]
fn reference_case_files_decide_as_they_expect() {
    let Some(reference) = common::reference_data() else {
        return;
    };
    let testdata = reference.join("go/cavra-runtime/testdata");
    let plain = built_in();
    let with_registry = PolicySet::load(&PolicyConfig {
        registry: Some(testdata.join("mcp_registry.json")),
        ..Default::default()
    })
    .unwrap();
    let mut checked = 0;
    for file in [
        "parity_cases.json",
        "release_governance_records.json",
        "release_governance_contracts.json",
    ] {
        let cases: Vec<Value> = serde_json::from_str(&fs::read_to_string(testdata.join(file)).unwrap()).unwrap();
        for case in cases {
            let request: EvaluateRequest = serde_json::from_value(case["request"].clone()).unwrap();
            let policies = if case.get("registry").is_some() {
                &with_registry
            } else {
                &plain
            };
            let response = engine::evaluate(policies, &request, &engine::Context::default()).unwrap();
            let expected = &case["expected"];
            let context = format!("{file}: {}", case["name"]);
            assert_eq!(response.decision.as_str(), expected["decision"], "{context}");
            assert_eq!(response.rule_id, expected["rule_id"].as_str().unwrap(), "{context}");
            assert_eq!(response.severity.as_str(), expected["severity"], "{context}");
            assert_eq!(
                response.approver_group,
                expected["approver_group"].as_str().unwrap_or(""),
                "{context}"
            );
            if response.decision == Decision::Allow {
                assert!(response.approver_group.is_empty(), "{context}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 23 + 13 + 7);
}
