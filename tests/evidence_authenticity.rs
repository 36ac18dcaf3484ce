//! Evidence that cannot be forged, cut short or lost unseen, tried as an attacker would, through the real daemon and
//! the real verifier: a signed log refuses unsigned records wherever they are; Ed25519-signed logs verify with the
//! public key alone; and the journal's anchors show records cut off the end of a log, which the chain cannot.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cavra_runtime::contract::{Decision, DecisionResponse, EvaluateRequest};
use cavra_runtime::evidence::{EvidenceConfig, EvidenceLog, SyncMode, VerifyingKeys};
use common::daemon::Daemon;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const KEY: &str = "authenticity-test-key";

fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("evidence.key");
    fs::write(&path, KEY).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A request the baseline pack blocks (even index: reading .env) or allows.
fn request(index: usize) -> EvaluateRequest {
    let target = if index.is_multiple_of(2) { ".env" } else { "src/main.rs" };
    serde_json::from_value(json!({"action_type": "read_file", "target": target, "session_id": format!("s-{index}")}))
        .unwrap()
}

fn records(log: &Path) -> Vec<Value> {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Runs `--verify-evidence --evidence-log LOG` with `args`; the exit code and the report.
fn verify(log: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--verify-evidence", "--evidence-log", log.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = common::run(&all, "");
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("no report ({error}): {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap(), report)
}

/// Starts a daemon on `log` with `args` and stops it after `decisions` decisions.
fn write_log(log: &Path, args: &[&str], decisions: usize) {
    let mut all = vec!["--evidence-log", log.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut daemon = Daemon::start(&all);
    for index in 0..decisions {
        daemon.client().evaluate(&request(index)).unwrap();
    }
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

/// A record's request and decision, as they were before recording (without the record's own reference).
fn decision_of(record: &Value) -> (EvaluateRequest, DecisionResponse) {
    let request = serde_json::from_value(record["request"].clone()).unwrap();
    let mut response: DecisionResponse = serde_json::from_value(record["response"].clone()).unwrap();
    response
        .evidence_refs
        .retain(|reference| !reference.starts_with("go-daemon-evidence://"));
    (request, response)
}

/// Appends `decisions` to the log at `path` as the evidence writer does, but without the key: what anyone who can
/// write the file, or run this binary on a copy of it, can do. Hashes and chain are right; signatures are missing.
fn forge(path: &Path, decisions: Vec<(EvaluateRequest, DecisionResponse)>) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let config = EvidenceConfig {
        path: path.to_owned(),
        sync: SyncMode::None,
        signing: None,
        verifying: VerifyingKeys::default(),
        recover: false,
        record_lines: false,
    };
    let (log, _) = EvidenceLog::open(config).unwrap();
    for (request, response) in decisions {
        runtime.block_on(log.record(request, response)).unwrap();
    }
    log.close();
}

/// The first `n` lines of `from`, written to `to`.
fn head(from: &Path, to: &Path, n: usize) {
    let text = fs::read_to_string(from).unwrap();
    fs::write(
        to,
        text.lines().take(n).map(|line| format!("{line}\n")).collect::<String>(),
    )
    .unwrap();
}

#[test]
fn with_the_key_a_signed_log_refuses_every_forgery_that_drops_signatures_and_the_daemon_will_not_continue_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let key_args = [
        "--evidence-signing-key-file",
        key.to_str().unwrap(),
        "--evidence-signing-key-id",
        "site-1",
    ];
    let genuine = dir.path().join("genuine.jsonl");
    write_log(&genuine, &key_args, 5);
    let original = records(&genuine);
    assert_eq!(original[1]["response"]["decision"], "allow");
    assert_eq!(original[2]["response"]["decision"], "block");
    assert_eq!(verify(&genuine, &key_args).0, 0);

    // 1. Record 3's block flipped to allow, and everything from there on re-hashed (so unsigned).
    let flipped = dir.path().join("flipped.jsonl");
    head(&genuine, &flipped, 2);
    let mut rest: Vec<_> = original[2..].iter().map(decision_of).collect();
    rest[0].1.decision = Decision::Allow;
    forge(&flipped, rest);
    // 2. A whole log forged without the key.
    let whole = dir.path().join("whole.jsonl");
    forge(&whole, original.iter().map(decision_of).collect());
    // 3. An unsigned record appended to the genuine log.
    let appended = dir.path().join("appended.jsonl");
    fs::copy(&genuine, &appended).unwrap();
    forge(&appended, vec![decision_of(&original[1])]);
    // 4. Record 3 removed, the rest re-hashed to close the gap.
    let removed = dir.path().join("removed.jsonl");
    head(&genuine, &removed, 2);
    forge(&removed, original[3..].iter().map(decision_of).collect());

    for (forged, first_bad) in [(&flipped, 3), (&whole, 1), (&appended, 6), (&removed, 3)] {
        let name = forged.file_name().unwrap().to_str().unwrap();
        let (code, report) = verify(forged, &key_args);
        let error = format!("record {first_bad} is not signed: with a key given, every record must be signed");
        assert_eq!((code, &report["errors"][0]), (1, &json!(error)), "{name}: {report}");
        // The chain itself is intact: only the missing signatures give the forgery away.
        let chain_errors: Vec<&Value> = report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|error| !error.as_str().unwrap().contains("is not signed"))
            .collect();
        assert!(chain_errors.is_empty(), "{name}: {report}");

        // A daemon with the key refuses to continue it, naming the first bad record, and leaves it as it was.
        let before = fs::read(forged).unwrap();
        let socket = dir.path().join("refused.sock");
        let mut args = vec![
            "--serve",
            "--log-target",
            "stderr",
            "--socket",
            socket.to_str().unwrap(),
        ];
        args.extend(["--evidence-log", forged.to_str().unwrap()]);
        args.extend(key_args);
        let output = common::run(&args, "");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("does not verify: {error}")),
            "{name}: {stderr}"
        );
        assert_eq!(fs::read(forged).unwrap(), before, "{name}");
    }
    // Without the key the reference's rules apply: the whole forged log is "valid", which is why keys matter.
    assert_eq!(verify(&whole, &[]).0, 0);
}

/// An Ed25519 key pair made with openssl as docs/operating.md says: the private key (0600) and the public key.
fn ed25519_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run = |args: &[&str]| {
        let status = Command::new("openssl").args(args).status().unwrap();
        assert!(status.success(), "openssl {args:?}");
    };
    run(&["genpkey", "-algorithm", "ed25519", "-out", private.to_str().unwrap()]);
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (private, public)
}

#[test]
fn ed25519_signed_logs_verify_with_the_public_key_alone() {
    if !common::skip::require_runnable("openssl", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = ed25519_keys(dir.path(), "site");
    let (_, other_public) = ed25519_keys(dir.path(), "other");
    let log = dir.path().join("evidence.jsonl");
    write_log(&log, &["--evidence-ed25519-key-file", private.to_str().unwrap()], 3);
    let stored = records(&log);
    let key_id = stored[0]["signature"]["key_id"].as_str().unwrap().to_owned();
    assert!(key_id.starts_with("ed25519-") && key_id.len() == 24, "{key_id}");
    for record in &stored {
        assert_eq!(record["signature"]["algorithm"], "Ed25519");
        assert_eq!(record["signature"]["value"].as_str().unwrap().len(), 128);
    }

    // Only the public key: no secret exists on the verifier's side.
    let (code, report) = verify(&log, &["--evidence-public-key", public.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (report["records"].as_u64(), report["signed_records"].as_u64()),
        (Some(3), Some(3))
    );
    let (code, report) = verify(&log, &["--evidence-public-key", other_public.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        report["errors"][0],
        format!("record 1 signature key_id \"{key_id}\" is not one of the public keys given")
    );
    // The other key under this key's id: the signatures do not verify.
    let (code, report) = verify(
        &log,
        &["--evidence-public-key", &format!("{key_id}={}", other_public.display())],
    );
    assert_eq!((code, &report["errors"][0]), (1, &json!("record 1 signature mismatch")));
    // Without any key, signed records cannot be checked (the reference's rule).
    assert_eq!(verify(&log, &[]).0, 1);

    // A named key id, from the systemd credential; a later daemon continues the log, and forgery still shows.
    let credentials = dir.path().join("credentials");
    fs::create_dir(&credentials).unwrap();
    fs::copy(&private, credentials.join("evidence-ed25519-key")).unwrap();
    fs::set_permissions(
        credentials.join("evidence-ed25519-key"),
        fs::Permissions::from_mode(0o400),
    )
    .unwrap();
    let named = dir.path().join("named.jsonl");
    let mut daemon = Daemon::start_with(
        &[
            "--evidence-log",
            named.to_str().unwrap(),
            "--evidence-signing-key-id",
            "site-2026",
        ],
        &[("CREDENTIALS_DIRECTORY", credentials.to_str().unwrap())],
    );
    daemon.client().evaluate(&request(1)).unwrap();
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
    assert_eq!(records(&named)[0]["signature"]["key_id"], "site-2026");
    let with_id = format!("site-2026={}", public.display());
    assert_eq!(verify(&named, &["--evidence-public-key", &with_id]).0, 0);
    forge(&named, vec![(request(3), decision_of(&records(&named)[0]).1)]);
    let (code, report) = verify(&named, &["--evidence-public-key", &with_id]);
    assert_eq!(
        (code, &report["errors"]),
        (
            1,
            &json!(["record 2 is not signed: with a key given, every record must be signed"])
        )
    );
}

#[test]
fn an_ed25519_key_that_others_can_read_or_that_is_not_ed25519_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let log = dir.path().join("evidence.jsonl");
    let start = |key: &Path| {
        common::run(
            &[
                "--serve",
                "--log-target",
                "stderr",
                "--socket",
                socket.to_str().unwrap(),
                "--evidence-log",
                log.to_str().unwrap(),
                "--evidence-ed25519-key-file",
                key.to_str().unwrap(),
            ],
            "",
        )
    };
    let open = dir.path().join("open.pem");
    fs::write(&open, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
    let output = start(&open);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("has mode 0644"));
    fs::set_permissions(&open, fs::Permissions::from_mode(0o600)).unwrap();
    let stderr = String::from_utf8_lossy(&start(&open).stderr).into_owned();
    assert!(
        stderr.starts_with(&format!(
            "cavra-runtime: evidence Ed25519 key {} is not an Ed25519 private key in PKCS#8",
            open.display()
        )),
        "{stderr}"
    );
    assert!(!log.exists(), "nothing was written by a daemon that could not start");
}

#[test]
fn the_journal_shows_records_cut_off_the_end_which_the_chain_alone_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let log = dir.path().join("evidence.jsonl");
    let key_args = ["--evidence-signing-key-file", key.to_str().unwrap()];
    // Every decision with a line of its own (by default allowed ones are summarised: tests/group_member.rs).
    let mut args = vec![
        "--evidence-log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "--log-decisions",
        "all",
    ];
    args.extend(key_args);
    let mut daemon = Daemon::start(&args);
    for index in 0..10 {
        daemon.client().evaluate(&request(index)).unwrap();
    }
    daemon.signal(Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
    // The daemon's log events name each record: the anchors a journal keeps.
    let events = daemon.log();
    let stored = records(&log);
    for record in &stored {
        let anchor = format!(
            r#""evidence_sequence":{},"evidence_record_hash":"{}""#,
            record["sequence"],
            record["record_hash"].as_str().unwrap()
        );
        assert!(events.contains(&anchor), "no {anchor} in:\n{events}");
    }
    let journal = daemon.path("daemon.log");
    let with_journal = [&key_args[..], &["--journal", journal.to_str().unwrap()]].concat();
    let (code, report) = verify(&log, &with_journal);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        report["journal"],
        json!({"entries": 10, "highest_sequence": 10, "missing": 0, "mismatched": 0})
    );

    // The last four records cut off: every record left is signed and chained, so the log alone verifies.
    head(&log, &log, 6);
    assert_eq!(verify(&log, &key_args).0, 0, "the chain alone cannot tell");
    let (code, report) = verify(&log, &with_journal);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        report["errors"],
        json!([
            "journal: the log ends at sequence 6, but the journal saw records up to 10: records were cut off its end",
            "journal: records 7 to 10 (4) are in the journal but not in the log"
        ])
    );
    assert_eq!(report["journal"]["missing"], 4);

    // A record in the middle replaced by another (re-hashed, unsigned): the journal names the hash it saw.
    head(&log, &log, 3);
    forge(&log, vec![(request(99), decision_of(&stored[3]).1)]);
    let (_, report) = verify(&log, &with_journal);
    assert!(
        report["errors"].as_array().unwrap().contains(&json!(format!(
            "journal: the journal saw record 4 with hash {}, but the log's record 4 has hash {}",
            stored[3]["record_hash"].as_str().unwrap(),
            records(&log)[3]["record_hash"].as_str().unwrap()
        ))),
        "{report}"
    );
}
