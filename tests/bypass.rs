//! The bypass corpus (testdata/bypass/*.toml): requests reworded to get `allow` for what a pack refuses, each with
//! the decision it must get, through a real daemon in stream mode. Also a real second user whose pinned pack
//! decides for it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use cavra_runtime::contract::{DecisionResponse, EvaluateRequest};
use cavra_runtime_client::Refusal;
use common::daemon::Daemon;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// One of the attacks listed in issue #17.
    #[serde(default)]
    issue: bool,
    /// Extra daemon flags; `{uid}` and `{gid}` are the test's own.
    #[serde(default)]
    daemon: Vec<String>,
    request: toml::Value,
    decision: String,
    rule_id: String,
    severity: Option<String>,
    reason: Option<String>,
    policy_pack: Option<String>,
    requested_policy_pack: Option<String>,
    target: Option<String>,
    normalized_target: Option<String>,
}

fn corpus(file: &str) -> Vec<Case> {
    let path = common::testdata(&format!("bypass/{file}"));
    let text = fs::read_to_string(&path).unwrap();
    toml::from_str::<Corpus>(&text)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .case
}

/// Runs every case of `file`, one daemon per distinct set of flags, all of a daemon's cases on one stream.
fn run(file: &str, expected_cases: usize, expected_issue_cases: usize) {
    let cases = corpus(file);
    assert_eq!(cases.len(), expected_cases, "{file}: case count");
    assert_eq!(
        cases.iter().filter(|case| case.issue).count(),
        expected_issue_cases,
        "{file}: cases from the issue"
    );
    let (uid, gid) = (nix::unistd::getuid().to_string(), nix::unistd::getgid().to_string());
    let mut by_daemon: BTreeMap<Vec<String>, Vec<&Case>> = BTreeMap::new();
    for case in &cases {
        let flags = case
            .daemon
            .iter()
            .map(|flag| flag.replace("{uid}", &uid).replace("{gid}", &gid))
            .collect();
        by_daemon.entry(flags).or_default().push(case);
    }
    let mut failures = Vec::new();
    for (flags, cases) in by_daemon {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let daemon = Daemon::start(&flags);
        let mut stream = daemon.client().stream().unwrap();
        let requests: Vec<EvaluateRequest> = cases
            .iter()
            .map(|case| {
                let json = serde_json::to_value(&case.request).unwrap();
                serde_json::from_value(json).unwrap_or_else(|error| panic!("{}: {error}", case.name))
            })
            .collect();
        let answers = stream.evaluate_all(&requests).unwrap();
        for (case, answer) in cases.iter().zip(answers) {
            // The answer as sent: some cases expect a daemon refusal.
            let answer = answer.unwrap_or_else(Refusal::into_response);
            if let Err(problem) = check(case, &answer) {
                failures.push(format!(
                    "{file}: {} (daemon {flags:?}): {problem}\n  got {answer:?}",
                    case.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn check(case: &Case, answer: &DecisionResponse) -> Result<(), String> {
    let want = |field: &str, expected: &str, got: &str| {
        if expected == got {
            Ok(())
        } else {
            Err(format!("{field}: expected {expected:?}, got {got:?}"))
        }
    };
    want("decision", &case.decision, answer.decision.as_str())?;
    want("rule_id", &case.rule_id, &answer.rule_id)?;
    let optional = [
        ("severity", &case.severity, answer.severity.as_str()),
        ("reason", &case.reason, answer.reason.as_str()),
        ("policy_pack", &case.policy_pack, answer.policy_pack.as_str()),
        ("target", &case.target, answer.target.as_str()),
    ];
    for (field, expected, got) in optional {
        if let Some(expected) = expected {
            want(field, expected, got)?;
        }
    }
    // Absent means the answer must carry none.
    want(
        "requested_policy_pack",
        case.requested_policy_pack.as_deref().unwrap_or(""),
        &answer.requested_policy_pack,
    )?;
    if case.normalized_target.is_some() {
        want(
            "normalized_target",
            case.normalized_target.as_deref().unwrap_or(""),
            &answer.normalized_target,
        )?;
    }
    Ok(())
}

#[test]
fn commands() {
    run("commands.toml", 49, 6);
}

#[test]
fn git_operations() {
    run("git.toml", 19, 6);
}

#[test]
fn files() {
    run("files.toml", 22, 5);
}

#[test]
fn packs() {
    run("packs.toml", 9, 2);
}

#[test]
fn release_governance() {
    run("release_governance.toml", 7, 2);
}

/// A real second user (nobody, through `setpriv`) is pinned to a pack by uid; root, asking the same daemon, is not.
#[test]
fn a_pin_follows_the_peer_the_kernel_reports() {
    if !common::skip::require_root("a second real user asks the daemon")
        || !common::skip::require_programs(&["setpriv"])
    {
        return;
    }
    let daemon = Daemon::start(&[
        "--socket-mode",
        "0666",
        "--pin-pack-for",
        "user:nobody=cavra-terraform-prod",
    ]);
    fs::set_permissions(daemon.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let socket = daemon.socket.to_str().unwrap();
    let request = r#"{"action_type":"execute_command","target":"tofu apply","policy_pack":"cavra-eu-ai-act"}"#;
    let ask = |setpriv: bool| -> Value {
        let mut command = if setpriv {
            let mut command = Command::new("setpriv");
            command
                .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--"])
                .arg(common::binary());
            command
        } else {
            Command::new(common::binary())
        };
        let mut child = command
            .args(["--daemon", "--socket", socket])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(request.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let nobody = ask(true);
    assert_eq!(nobody["rule_id"], "policy.pack.not_permitted", "{nobody}");
    assert_eq!(nobody["policy_pack"], "cavra-terraform-prod", "{nobody}");
    assert_eq!(nobody["requested_policy_pack"], "cavra-eu-ai-act", "{nobody}");
    let root = ask(false);
    assert_eq!(root["rule_id"], "commands.default.require_approval", "{root}");
    assert_eq!(root["policy_pack"], "cavra-eu-ai-act", "{root}");
    assert!(root.get("requested_policy_pack").is_none(), "{root}");
}

/// An unknown pinned pack or pin is a start-up error naming it.
#[test]
fn bad_pins_stop_the_daemon_at_start() {
    for (flags, message) in [
        (
            &["--pin-pack", "acme"][..],
            "--pin-pack acme names policy pack \"acme\", which is not loaded",
        ),
        (
            &["--pin-pack-for", "user:no-such-user-x=cavra-hipaa"][..],
            "--pin-pack-for \"user:no-such-user-x=cavra-hipaa\": no such user",
        ),
        (
            &["--workspace-root", "relative/root"][..],
            "--workspace-root \"relative/root\" is not an absolute path",
        ),
    ] {
        let mut daemon = Daemon::spawn(tempfile::tempdir().unwrap(), flags);
        let status = daemon.wait_exit(std::time::Duration::from_secs(10));
        assert!(!status.success(), "{flags:?}");
        let log = daemon.log();
        assert!(log.contains(message), "{flags:?}: {log}");
    }
}
