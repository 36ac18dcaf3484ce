//! The shipped examples, run for real: every typed request through a daemon against its README table, the CI runner
//! script end to end (HMAC and OIDC runner auth, signed and verified evidence), the pipeline templates parsed as YAML
//! with the keys each platform needs. The agent hooks' settings are tried in tests/hook.rs.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::daemon::Daemon;
use common::oidc::{self, AUDIENCE, SigningKey};
use serde_json::{Value, json};
use serde_norway::Value as Yaml;

const RUNNER: &str = "examples/ci-runners/cavra-release-governance-runner.sh";
const RUNNER_KEY: &str = "runner-hmac-secret-7f3a";
const EVIDENCE_KEY: &str = "evidence-hmac-secret-91c2";

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn typed(name: &str) -> String {
    repo("examples/typed-release-governance")
        .join(name)
        .display()
        .to_string()
}

/// A tool the test needs; absent, the test says so and passes, except under CI where it fails.
fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        common::skip::skip(&format!("{tool} is not installed"));
    }
    found
}

/// Running, not merely a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------------------------
// The typed examples and their README table.

struct Expected {
    file: String,
    decision: String,
    rule_id: String,
}

/// The table in examples/typed-release-governance/README.md, by its `request`, `decision` and `rule_id` columns.
fn readme_table() -> Vec<Expected> {
    let readme = fs::read_to_string(repo("examples/typed-release-governance/README.md")).unwrap();
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().trim_matches('`').to_owned())
            .collect()
    };
    let mut lines = readme.lines().skip_while(|line| !line.starts_with("| request |"));
    let header = cells(lines.next().expect("the README has a `| request |` table"));
    let column = |name: &str| header.iter().position(|cell| cell == name).unwrap();
    let (file, decision, rule_id) = (column("request"), column("decision"), column("rule_id"));
    lines
        .skip(1) // |---|
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let row = cells(line);
            Expected {
                file: row[file].clone(),
                decision: row[decision].clone(),
                rule_id: row[rule_id].clone(),
            }
        })
        .collect()
}

#[test]
fn every_typed_example_gets_the_decision_its_readme_table_states() {
    let table = readme_table();
    let files: BTreeSet<String> = fs::read_dir(repo("examples/typed-release-governance"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    let listed: BTreeSet<String> = table.iter().map(|row| row.file.clone()).collect();
    assert_eq!(listed, files, "the README table and the request files differ");
    let decisions: BTreeSet<&str> = table.iter().map(|row| row.decision.as_str()).collect();
    assert_eq!(decisions, BTreeSet::from(["allow", "block", "require_approval"]));

    let daemon = Daemon::start(&[]);
    for row in &table {
        let output = Command::new(common::binary())
            .args(["--daemon", "--exit-code", "--socket", daemon.socket.to_str().unwrap()])
            .args(["--input", &typed(&row.file)])
            .env_remove("CAVRA_RUNNER_AUTH_CLAIMS")
            .output()
            .unwrap();
        let answer: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|error| panic!("{}: {error}: {}", row.file, text(&output.stderr)));
        assert_eq!(
            (answer["decision"].as_str(), answer["rule_id"].as_str()),
            (Some(row.decision.as_str()), Some(row.rule_id.as_str())),
            "{}: {answer}",
            row.file
        );
        let code = match row.decision.as_str() {
            "allow" => 0,
            "require_approval" => 4,
            _ => 3,
        };
        assert_eq!(output.status.code(), Some(code), "{}", row.file);
        assert_eq!(answer["action_type"], "release_governance_record");
        assert!(!answer["reason"].as_str().unwrap().is_empty());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The CI runner script, end to end.

/// A CI job's workspace: the runner script runs in it with only the environment the test gives.
struct Job {
    workspace: tempfile::TempDir,
    env: Vec<(String, String)>,
}

struct Run {
    output: Output,
    stdout: String,
    stderr: String,
}

impl Job {
    /// HMAC runner auth and signed evidence, as a GitHub Actions job would set them, with the binary on PATH.
    fn github() -> Job {
        let mut job = Job::bare();
        job.set("CAVRA_RUNNER_AUTH_HMAC_KEY", RUNNER_KEY)
            .set("CAVRA_RUNNER_AUTH_KEY_ID", "ci-runner-2026")
            .set("CAVRA_DAEMON_EVIDENCE_HMAC_KEY", EVIDENCE_KEY)
            .set("CAVRA_DAEMON_EVIDENCE_KEY_ID", "evidence-2026")
            .set("GITHUB_ACTIONS", "true")
            .set("GITHUB_REPOSITORY", "acme/payments")
            .set("GITHUB_WORKFLOW", "release \"stable\" \\ gate\tv2")
            .set("GITHUB_RUN_ID", "9182736")
            .set("GITHUB_RUN_ATTEMPT", "2")
            .set("GITHUB_REF", "refs/heads/main")
            .set("GITHUB_SHA", "4f1c2e9d")
            .set("GITHUB_ACTOR", "release-bot")
            .set("GITHUB_JOB", "release-governance")
            .set("RUNNER_NAME", "GitHub Actions 12");
        job
    }

    /// The binary's directory first on PATH, and nothing else from the test's environment.
    fn bare() -> Job {
        let workspace = tempfile::tempdir().unwrap();
        let bin = Path::new(common::binary()).parent().unwrap().display().to_string();
        let path = format!(
            "{bin}:{}",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        let env = vec![
            ("PATH".to_owned(), path),
            ("HOME".to_owned(), workspace.path().display().to_string()),
            ("TMPDIR".to_owned(), workspace.path().display().to_string()),
        ];
        Job { workspace, env }
    }

    fn set(&mut self, name: &str, value: &str) -> &mut Job {
        self.env.retain(|(key, _)| key != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs the script as a fresh CI job would: the evidence directory of an earlier run is gone.
    fn run(&self, request: &str, extra: &[(&str, &str)]) -> Run {
        let _ = fs::remove_dir_all(self.evidence_dir());
        self.run_in_checkout(request, extra)
    }

    /// Runs the script on the workspace as it is.
    fn run_in_checkout(&self, request: &str, extra: &[(&str, &str)]) -> Run {
        let output = Command::new("sh")
            .arg(repo(RUNNER))
            .current_dir(self.workspace.path())
            .env_clear()
            .envs(self.env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .env("CAVRA_RELEASE_GOVERNANCE_REQUEST", typed(request))
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let run = Run {
            stdout: text(&output.stdout),
            stderr: text(&output.stderr),
            output,
        };
        self.assert_daemon_gone(&run);
        run
    }

    fn evidence_dir(&self) -> PathBuf {
        self.workspace.path().join(".cavra/go-daemon")
    }

    fn file(&self, name: &str) -> String {
        fs::read_to_string(self.evidence_dir().join(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
    }

    fn json(&self, name: &str) -> Value {
        serde_json::from_str(&self.file(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
    }

    /// The last record of the evidence log.
    fn last_record(&self) -> Value {
        let log = self.file("release-governance-evidence.jsonl");
        serde_json::from_str(log.lines().last().expect("an evidence record")).unwrap()
    }

    /// The verification report the script wrote says the log verifies, every record signed.
    fn assert_verified(&self) {
        let report = self.json("release-governance-evidence-verification.json");
        assert_eq!(report["valid"], true, "{report}");
        assert!(report["records"].as_u64().unwrap() >= 1, "{report}");
        assert_eq!(report["records"], report["signed_records"], "{report}");
    }

    /// The trap stopped the daemon: the pid the script reported is gone, the status command says not running, and
    /// the private directory it ran in is gone.
    fn assert_daemon_gone(&self, run: &Run) {
        let Some((socket, pid)) = run
            .stdout
            .split_once("daemon started on ")
            .and_then(|(_, rest)| rest.split_once(" (pid "))
            .and_then(|(socket, rest)| Some((socket, rest.split_once(')')?.0.parse::<u32>().ok()?)))
        else {
            return; // the script stopped before starting a daemon
        };
        assert!(
            !Path::new(socket).parent().unwrap().exists(),
            "{socket}'s directory is left behind"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while alive(pid) {
            assert!(std::time::Instant::now() < deadline, "daemon {pid} is still running");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let status = Command::new(common::binary())
            .args(["--lifecycle", "status", "--socket", socket])
            .current_dir(self.workspace.path())
            .env_remove("CAVRA_RUNTIME_SOCKET")
            .output()
            .unwrap();
        assert_eq!(status.status.code(), Some(3), "{}", text(&status.stdout));
    }

    /// No file the job leaves behind (the uploaded evidence directory included) holds `secret`.
    fn assert_nowhere(&self, secret: &str) {
        fn walk(dir: &Path, secret: &str) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, secret);
                } else if let Ok(bytes) = fs::read(&path) {
                    assert!(!text(&bytes).contains(secret), "{} holds a secret", path.display());
                }
            }
        }
        walk(self.workspace.path(), secret);
    }
}

impl Run {
    fn assert_passed(&self) {
        assert_eq!(
            self.output.status.code(),
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }

    fn assert_failed_with(&self, message: &str) {
        assert_ne!(self.output.status.code(), Some(0), "stdout:\n{}", self.stdout);
        assert!(
            self.stderr.contains(message),
            "stderr lacks {message:?}:\n{}",
            self.stderr
        );
    }
}

#[test]
fn runner_allows_an_approved_promotion_as_an_hmac_authenticated_github_runner() {
    let job = Job::github();
    let run = job.run(
        "approved-promotion.json",
        &[("CAVRA_EXPECTED_RULE_ID", "release_governance.approval.approved")],
    );
    run.assert_passed();
    assert!(
        run.stdout
            .contains("decision allow (release_governance.approval.approved)"),
        "{}",
        run.stdout
    );

    // The claims come from the GitHub variables, safely escaped.
    let claims = job.json("runner-auth-claims.json");
    assert_eq!(
        claims,
        json!({"provider": "github-actions", "repository": "acme/payments",
               "workflow": "release \"stable\" \\ gate\tv2", "run_id": "9182736", "run_attempt": "2",
               "ref": "refs/heads/main", "sha": "4f1c2e9d", "actor": "release-bot", "job": "release-governance",
               "runner_name": "GitHub Actions 12"})
    );
    // The daemon required runner auth and recorded the HMAC-signed identity with the decision.
    assert!(job.file("cavra-runtime.log").contains("runner authentication required"));
    let record = job.last_record();
    let auth = &record["request"]["runner_auth"];
    assert_eq!(auth["identity"], claims);
    assert_eq!(auth["algorithm"], "HMAC-SHA256");
    assert_eq!(auth["key_id"], "ci-runner-2026");
    // Signed v2 (for this request, once), and the signature is not kept in the uploaded evidence.
    assert_eq!(auth["signature"], "<redacted-hmac>", "{auth}");
    assert_eq!(auth["nonce"].as_str().map(str::len), Some(32), "{auth}");
    assert!(auth["issued_at"].as_i64().is_some(), "{auth}");
    assert_eq!(record["response"]["decision"], "allow");
    assert_eq!(record["signature"]["key_id"], "evidence-2026", "{record}");
    assert_eq!(job.json("release-governance-response.json")["decision"], "allow");
    job.assert_verified();
    job.assert_nowhere(RUNNER_KEY);
    job.assert_nowhere(EVIDENCE_KEY);
}

#[test]
fn runner_fails_the_job_on_a_block_with_the_daemons_reason_unless_blocking_is_allowed() {
    let job = Job::github();
    let expect_block = [
        ("CAVRA_EXPECTED_DECISION", "block"),
        ("CAVRA_EXPECTED_RULE_ID", "release_governance.delivery.failed"),
    ];
    let run = job.run("failed-connector-delivery.json", &expect_block);
    run.assert_failed_with(
        "CAVRA blocked the release governance request (release_governance.delivery.failed): \
         release-connector-delivery includes failed release delivery evidence.",
    );
    job.assert_verified();
    assert_eq!(job.last_record()["response"]["decision"], "block");

    let mut allowed = expect_block.to_vec();
    allowed.push(("CAVRA_ALLOW_BLOCKING_DECISION", "true"));
    let run = job.run("rollback-without-approval.json", &allowed[..1]);
    run.assert_failed_with("rollout-rollback-execution requires an approval record before execution.");
    let run = job.run("failed-connector-delivery.json", &allowed);
    run.assert_passed();
    assert!(run.stdout.contains("block allowed by CAVRA_ALLOW_BLOCKING_DECISION"));
    // Each run records its own decision in a log of its own, which verifies.
    job.assert_verified();
    assert_eq!(job.json("release-governance-evidence-verification.json")["records"], 1);
}

#[test]
fn runner_passes_an_expected_require_approval_as_a_local_runner_named_by_its_path() {
    let mut job = Job::bare();
    job.set("CAVRA_RUNTIME_PATH", common::binary())
        .set("PATH", "/usr/bin:/bin")
        .set("CAVRA_RUNNER_AUTH_HMAC_KEY", RUNNER_KEY)
        .set("CAVRA_DAEMON_EVIDENCE_HMAC_KEY", EVIDENCE_KEY)
        .set("CAVRA_RELEASE_GOVERNANCE_EVIDENCE_DIR", "out/evidence");
    let run = Command::new("sh")
        .arg(repo(RUNNER))
        .current_dir(job.workspace.path())
        .env_clear()
        .envs(job.env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
        .env(
            "CAVRA_RELEASE_GOVERNANCE_REQUEST",
            typed("critical-inventory-freshness.json"),
        )
        .env("CAVRA_EXPECTED_DECISION", "require_approval")
        .env("CAVRA_EXPECTED_RULE_ID", "release_governance.signal.critical")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let dir = job.workspace.path().join("out/evidence");
    let claims: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("runner-auth-claims.json")).unwrap()).unwrap();
    assert_eq!(
        (claims["provider"].as_str(), claims["repository"].as_str()),
        (Some("local"), Some("local"))
    );
    let report: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("release-governance-evidence-verification.json")).unwrap())
            .unwrap();
    assert_eq!(
        (report["valid"].as_bool(), report["signed_records"].as_u64()),
        (Some(true), Some(1))
    );
    job.assert_daemon_gone(&Run {
        stdout: text(&run.stdout),
        stderr: text(&run.stderr),
        output: run,
    });
}

#[test]
fn runner_fails_on_an_unexpected_decision_or_rule_and_on_missing_input() {
    let job = Job::github();
    job.run("pending-promotion.json", &[]).assert_failed_with(
        "unexpected CAVRA decision: require_approval != allow (release_governance.approval.pending: \
         rollout-promotion-execution is waiting for release governance approval.)",
    );
    job.run(
        "approved-promotion.json",
        &[("CAVRA_EXPECTED_RULE_ID", "release_governance.record.verified")],
    )
    .assert_failed_with(
        "unexpected CAVRA rule_id: release_governance.approval.approved != release_governance.record.verified",
    );
    job.assert_verified();
    // The client fails after the daemon started: the trap still stops it (Job::run checks).
    fs::write(job.workspace.path().join("broken.json"), "{\"action_type\": ").unwrap();
    job.run(
        "approved-promotion.json",
        &[("CAVRA_RELEASE_GOVERNANCE_REQUEST", "broken.json")],
    )
    .assert_failed_with("cavra-runtime --daemon failed (exit 1)");
    job.run("approved-promotion.json", &[("CAVRA_EXPECTED_DECISION", "maybe")])
        .assert_failed_with("CAVRA_EXPECTED_DECISION must be allow, require_approval or block");
    job.run("approved-promotion.json", &[("CAVRA_RELEASE_GOVERNANCE_REQUEST", "")])
        .assert_failed_with("CAVRA_RELEASE_GOVERNANCE_REQUEST is required");
}

#[test]
fn runner_refuses_evidence_it_did_not_write() {
    let job = Job::github();
    // What a pull request could commit: a log a keyless daemon wrote, with a forged runner identity, that verifies.
    let planted_dir = job.evidence_dir();
    fs::create_dir_all(&planted_dir).unwrap();
    let planted = planted_dir.join("release-governance-evidence.jsonl");
    {
        let forger = Daemon::start(&["--evidence-log", planted.to_str().unwrap(), "--evidence-sync", "none"]);
        let forged: cavra_runtime::contract::EvaluateRequest = serde_json::from_value(json!({
            "action_type": "release_governance_record",
            "release_governance": {"metadata_kind": "rollout-promotion-execution", "approval_state": "approved",
                                   "approval_id": "CAB-1"},
            "runner_auth": {"identity": {"provider": "github-actions", "repository": "acme/payments"},
                            "algorithm": "HMAC-SHA256", "signature": "00"}
        }))
        .unwrap();
        forger.client().evaluate(&forged).unwrap();
    }
    let check = Command::new(common::binary())
        .args(["--verify-evidence", "--evidence-log", planted.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(check.status.success(), "the planted log verifies on its own");
    let before = fs::read(&planted).unwrap();

    let run = job.run_in_checkout("approved-promotion.json", &[]);
    run.assert_failed_with("is not empty: the gate ships only evidence it wrote");
    assert!(!run.stdout.contains("daemon started"), "{}", run.stdout);
    assert_eq!(fs::read(&planted).unwrap(), before, "the planted log is left as it was");
    assert_eq!(
        fs::read_dir(&planted_dir).unwrap().count(),
        1,
        "nothing was added beside it"
    );

    // Nor through a link to a directory elsewhere.
    fs::remove_dir_all(&planted_dir).unwrap();
    let elsewhere = job.workspace.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &planted_dir).unwrap();
    job.run_in_checkout("approved-promotion.json", &[])
        .assert_failed_with("is a symbolic link");

    // A new directory gets the gate's own log: one record, this runner's.
    fs::remove_file(&planted_dir).unwrap();
    job.run("approved-promotion.json", &[]).assert_passed();
    job.assert_verified();
    assert_eq!(job.json("release-governance-evidence-verification.json")["records"], 1);
    assert_eq!(
        job.last_record()["request"]["runner_auth"]["identity"],
        job.json("runner-auth-claims.json")
    );
    assert_eq!(job.json("runner-authentication.json")["authenticated"], true);
}

#[test]
fn a_run_without_a_runner_credential_fails_unless_told_to_go_on_unauthenticated() {
    // A pull request from a fork: no secrets, no OIDC token.
    let mut job = Job::github();
    job.env.retain(|(name, _)| !name.ends_with("_HMAC_KEY"));
    job.set("GITHUB_EVENT_NAME", "pull_request");
    let run = job.run("approved-promotion.json", &[]);
    run.assert_failed_with("no runner credential: neither CAVRA_RUNNER_AUTH_HMAC_KEY");
    assert!(
        run.stderr.contains("set CAVRA_ALLOW_UNAUTHENTICATED_RUNNER=true"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("daemon started"), "{}", run.stdout);

    let run = job.run(
        "approved-promotion.json",
        &[("CAVRA_ALLOW_UNAUTHENTICATED_RUNNER", "true")],
    );
    run.assert_passed();
    assert!(run.stderr.contains("WARNING: UNAUTHENTICATED RUNNER"), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("::warning title=cavra-runtime::UNAUTHENTICATED RUNNER"),
        "{}",
        run.stdout
    );
    let marker = job.json("runner-authentication.json");
    assert_eq!(
        (&marker["authenticated"], &marker["method"]),
        (&json!(false), &json!("none"))
    );
    assert!(job.last_record()["request"].get("runner_auth").is_none());
    let report = job.json("release-governance-evidence-verification.json");
    assert_eq!(
        (&report["valid"], &report["records"]),
        (&json!(true), &json!(1)),
        "{report}"
    );
}

#[test]
fn runner_reads_request_files_whose_names_look_like_flags() {
    let job = Job::github();
    for name in ["-pending.json", "-", "--input=other.json"] {
        fs::copy(typed("pending-promotion.json"), job.workspace.path().join(name)).unwrap();
        let run = job.run(
            "approved-promotion.json",
            &[
                ("CAVRA_RELEASE_GOVERNANCE_REQUEST", name),
                ("CAVRA_EXPECTED_DECISION", "require_approval"),
                ("CAVRA_EXPECTED_RULE_ID", "release_governance.approval.pending"),
            ],
        );
        run.assert_passed();
        assert_eq!(
            job.last_record()["response"]["rule_id"],
            "release_governance.approval.pending"
        );
    }
}

/// A GitHub Actions job whose claims match common::oidc's tokens, with the JWKS to check them and no HMAC key.
fn oidc_job(dir: &Path, key: &SigningKey) -> Job {
    let mut job = Job::github();
    job.env
        .retain(|(name, _)| name != "CAVRA_RUNNER_AUTH_HMAC_KEY" && name != "CAVRA_RUNNER_AUTH_KEY_ID");
    job.set("GITHUB_WORKFLOW", "release").set("GITHUB_RUN_ID", "42").set(
        "CAVRA_RUNNER_OIDC_JWKS",
        oidc::write_jwks(dir, &[key]).to_str().unwrap(),
    );
    job
}

#[test]
fn runner_authenticates_with_an_oidc_token_file_and_the_default_github_issuer() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(dir.path(), "gh-key-1");
    let job = oidc_job(dir.path(), &key);
    let token = key.token("gh-key-1", &oidc::claims("acme/payments"));
    let token_file = dir.path().join("runner.jwt");
    fs::write(&token_file, &token).unwrap();
    fs::set_permissions(&token_file, fs::Permissions::from_mode(0o600)).unwrap();
    let token_env = [("CAVRA_RUNNER_AUTH_OIDC_TOKEN_FILE", token_file.to_str().unwrap())];

    let run = job.run("approved-promotion.json", &token_env);
    run.assert_passed();
    assert!(
        run.stdout.contains("with OIDC token from github-actions"),
        "{}",
        run.stdout
    );
    let auth = &job.last_record()["request"]["runner_auth"];
    assert_eq!(auth["algorithm"], "OIDC-JWT");
    // Only what the token confirms: GitHub's tokens name neither the job nor the runner.
    assert_eq!(
        auth["identity"],
        json!({"provider": "github-actions", "repository": "acme/payments", "workflow": "release", "run_id": "42",
               "run_attempt": "2", "ref": "refs/heads/main", "sha": "4f1c2e9d", "actor": "release-bot"})
    );
    job.assert_verified();
    job.assert_nowhere(&token);

    // A token for another repository: the daemon refuses the runner and the job fails saying why.
    let other = key.token("gh-key-1", &oidc::claims("acme/other"));
    fs::write(&token_file, &other).unwrap();
    job.run("approved-promotion.json", &token_env).assert_failed_with(
        "unexpected CAVRA decision: block != allow (runner_auth.invalid: runner authentication failed: runner OIDC claim repository mismatch)",
    );
}

/// A one-shot stand-in for GitHub's token endpoint: answers one request with `token` and returns what it was asked.
fn token_endpoint(token: String) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/idtoken?api-version=2.0", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while !request.windows(4).any(|window| window == b"\r\n\r\n") {
            let read = stream.read(&mut buffer).unwrap();
            assert!(read > 0, "the client hung up");
            request.extend_from_slice(&buffer[..read]);
        }
        let body = json!({"count": 2000, "value": token}).to_string();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        text(&request)
    });
    (url, handle)
}

#[test]
fn runner_fetches_a_github_oidc_token_itself() {
    if !have("openssl") || !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(dir.path(), "gh-key-2");
    let mut job = oidc_job(dir.path(), &key);
    let token = key.token("gh-key-2", &oidc::claims("acme/payments"));
    let (url, endpoint) = token_endpoint(token.clone());
    job.set("ACTIONS_ID_TOKEN_REQUEST_URL", &url)
        .set("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-token-5d1e");

    let run = job.run("approved-promotion.json", &[]);
    run.assert_passed();
    let request = endpoint.join().unwrap();
    assert!(
        request.starts_with(&format!("GET /idtoken?api-version=2.0&audience={AUDIENCE} ")),
        "{request}"
    );
    assert!(
        request
            .lines()
            .any(|line| line == "Authorization: Bearer request-token-5d1e\r"
                || line == "Authorization: Bearer request-token-5d1e"),
        "{request}"
    );
    assert_eq!(job.last_record()["request"]["runner_auth"]["algorithm"], "OIDC-JWT");
    job.assert_verified();
    job.assert_nowhere(&token);
    job.assert_nowhere("request-token-5d1e");
}

// ---------------------------------------------------------------------------------------------------------------
// Pipeline templates.

fn yaml(relative: &str) -> Yaml {
    serde_norway::from_str(&fs::read_to_string(repo(relative)).unwrap())
        .unwrap_or_else(|error| panic!("{relative} is not YAML: {error}"))
}

fn key<'a>(value: &'a Yaml, name: &str) -> &'a Yaml {
    value
        .get(name)
        .unwrap_or_else(|| panic!("no `{name}` in {}", serde_norway::to_string(value).unwrap()))
}

fn str_of<'a>(value: &'a Yaml, name: &str) -> &'a str {
    key(value, name)
        .as_str()
        .unwrap_or_else(|| panic!("`{name}` is not a string"))
}

/// The pipeline calls the runner script, which exists, sets only variables the script (or the binary) reads, and
/// passes no secret on a command line.
fn assert_runs_the_runner(commands: &[&str], variables: &[&str]) {
    assert!(
        commands.iter().any(|command| command.contains(RUNNER)),
        "no step runs {RUNNER}"
    );
    let script = fs::read_to_string(repo(RUNNER)).unwrap();
    for name in variables.iter().filter(|name| name.starts_with("CAVRA_")) {
        assert!(script.contains(name), "{name} is not read by the runner script");
    }
    for command in commands {
        for secret in ["HMAC_KEY", "secrets."] {
            assert!(!command.contains(secret), "a secret on a command line: {command}");
        }
    }
}

/// The steps whose `command_key` runs the runner script.
fn runner_steps<'a>(steps: &'a [Yaml], command_key: &'a str) -> impl Iterator<Item = &'a Yaml> {
    steps.iter().filter(move |step| {
        step.get(command_key)
            .and_then(Yaml::as_str)
            .is_some_and(|command| command.contains(RUNNER))
    })
}

fn names(mapping: &Yaml) -> Vec<&str> {
    mapping
        .as_mapping()
        .map(|mapping| mapping.keys().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn github_actions_template_is_a_workflow_with_oidc_and_an_evidence_artifact() {
    let workflow = yaml("examples/github-actions/cavra-release-governance.yml");
    assert!(key(&workflow, "on").is_mapping(), "`on` must list the triggers");
    // Pull requests run the base branch's workflow, not their own, with secrets.
    let triggers = names(key(&workflow, "on"));
    assert!(
        triggers.contains(&"pull_request_target") && !triggers.contains(&"pull_request"),
        "{triggers:?}"
    );
    assert_eq!(str_of(key(&workflow, "permissions"), "id-token"), "write");
    let jobs = key(&workflow, "jobs").as_mapping().expect("jobs is a mapping");
    assert!(!jobs.is_empty());
    for (_, job) in jobs {
        assert!(key(job, "runs-on").as_str().is_some());
        let steps = key(job, "steps").as_sequence().expect("steps is a list");
        for step in steps {
            let kinds = ["uses", "run"].iter().filter(|kind| step.get(**kind).is_some()).count();
            assert_eq!(kinds, 1, "a step needs exactly one of uses and run: {step:?}");
        }
        let gate = runner_steps(steps, "run").next().expect("a step runs the gate");
        let dir = str_of(key(gate, "env"), "CAVRA_RELEASE_GOVERNANCE_EVIDENCE_DIR");
        assert!(
            dir.starts_with("${{ runner.temp }}/"),
            "evidence outside the checkout: {dir}"
        );
        let upload = steps
            .iter()
            .find(|step| {
                step.get("uses")
                    .and_then(Yaml::as_str)
                    .is_some_and(|uses| uses.starts_with("actions/upload-artifact@"))
            })
            .expect("an upload-artifact step");
        assert_eq!(str_of(upload, "if"), "always()");
        assert_eq!(str_of(key(upload, "with"), "path").trim_end_matches('/'), dir);
        let commands: Vec<&str> = steps.iter().filter_map(|step| step.get("run")?.as_str()).collect();
        // Trusted code: the gate runs from the base branch's checkout; the change under review is only read.
        let checkouts: Vec<&Yaml> = steps
            .iter()
            .filter(|step| {
                step.get("uses")
                    .and_then(Yaml::as_str)
                    .is_some_and(|uses| uses.starts_with("actions/checkout@"))
            })
            .collect();
        assert_eq!(checkouts.len(), 2, "the gate's checkout and the change's");
        let (trusted, change) = (key(checkouts[0], "with"), key(checkouts[1], "with"));
        assert!(str_of(trusted, "ref").starts_with("${{ github.event.pull_request.base.sha"));
        assert!(trusted.get("path").is_none(), "the gate runs from the workspace root");
        let data = str_of(change, "path");
        for with in [trusted, change] {
            assert_eq!(key(with, "persist-credentials").as_bool(), Some(false));
        }
        assert!(str_of(key(job, "env"), "CAVRA_RELEASE_GOVERNANCE_REQUEST").starts_with(&format!("{data}/")));
        for step in steps {
            assert!(step.get("working-directory").is_none());
            if let Some(command) = step.get("run").and_then(Yaml::as_str) {
                assert!(
                    !command.contains(data),
                    "a step runs something from the change: {command}"
                );
            }
        }
        let mut variables = names(key(job, "env"));
        variables.extend(
            runner_steps(steps, "run")
                .filter_map(|step| step.get("env"))
                .flat_map(names),
        );
        assert_runs_the_runner(&commands, &variables);
    }
}

#[test]
fn gitlab_ci_template_is_a_job_with_id_tokens_and_evidence_artifacts() {
    let pipeline = yaml("examples/gitlab-ci/cavra-release-governance.gitlab-ci.yml");
    let stages: Vec<&str> = key(&pipeline, "stages")
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let jobs: Vec<&Yaml> = pipeline
        .as_mapping()
        .unwrap()
        .values()
        .filter(|value| value.get("script").is_some())
        .collect();
    assert!(!jobs.is_empty(), "no job has a script");
    let script = fs::read_to_string(repo(RUNNER)).unwrap();
    for job in jobs {
        assert!(stages.contains(&str_of(job, "stage")));
        let commands: Vec<&str> = key(job, "script")
            .as_sequence()
            .unwrap()
            .iter()
            .map(|line| line.as_str().expect("script lines are strings"))
            .collect();
        let tokens = key(job, "id_tokens").as_mapping().expect("id_tokens is a mapping");
        for (name, token) in tokens {
            let name = name.as_str().unwrap();
            assert!(
                script.contains(name),
                "the runner script does not read the id token {name}"
            );
            assert!(
                script.contains(&format!("audience:-{}", str_of(token, "aud"))),
                "the token's aud is not the default audience"
            );
        }
        let artifacts = key(job, "artifacts");
        assert_eq!(str_of(artifacts, "when"), "always");
        let dir = str_of(key(job, "variables"), "CAVRA_RELEASE_GOVERNANCE_EVIDENCE_DIR");
        let paths: Vec<&str> = key(artifacts, "paths")
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
        assert!(paths.iter().any(|path| path.trim_end_matches('/') == dir), "{paths:?}");
        assert_runs_the_runner(&commands, &names(key(job, "variables")));
    }
}

#[test]
fn azure_pipelines_template_has_trigger_pool_steps_and_publishes_the_evidence() {
    let pipeline = yaml("examples/azure-pipelines/cavra-release-governance.azure-pipelines.yml");
    key(&pipeline, "trigger");
    assert!(str_of(key(&pipeline, "pool"), "vmImage").starts_with("ubuntu"));
    let steps = key(&pipeline, "steps").as_sequence().expect("steps is a list");
    let step_kinds = ["task", "bash", "script", "checkout", "pwsh", "powershell"];
    for step in steps {
        let kinds = step_kinds.iter().filter(|kind| step.get(**kind).is_some()).count();
        assert_eq!(kinds, 1, "a step needs exactly one kind: {step:?}");
    }
    let publish = steps
        .iter()
        .find(|step| {
            step.get("task")
                .and_then(Yaml::as_str)
                .is_some_and(|task| task.starts_with("PublishPipelineArtifact@"))
        })
        .expect("a PublishPipelineArtifact step");
    assert_eq!(str_of(publish, "condition"), "always()");
    let dir = str_of(key(&pipeline, "variables"), "CAVRA_RELEASE_GOVERNANCE_EVIDENCE_DIR");
    assert!(
        dir.starts_with("$(Agent.TempDirectory)/"),
        "evidence outside the checkout: {dir}"
    );
    assert_eq!(str_of(key(publish, "inputs"), "targetPath"), dir);
    assert_eq!(
        key(&pipeline, "pr").as_str(),
        Some("none"),
        "only reviewed code runs with the secrets"
    );
    let commands: Vec<&str> = steps.iter().filter_map(|step| step.get("bash")?.as_str()).collect();
    let mut variables = names(key(&pipeline, "variables"));
    variables.extend(
        runner_steps(steps, "bash")
            .filter_map(|step| step.get("env"))
            .flat_map(names),
    );
    assert_runs_the_runner(&commands, &variables);
}

// ---------------------------------------------------------------------------------------------------------------

#[test]
fn the_runner_script_is_shellcheck_clean_and_executable() {
    let mode = fs::metadata(repo(RUNNER)).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "{RUNNER} is not executable");
    if !have("shellcheck") {
        return;
    }
    let output = Command::new("shellcheck")
        .args(["-x", RUNNER])
        .current_dir(repo(""))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stdout));
}
