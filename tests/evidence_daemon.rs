//! Evidence through the real daemon: every answered decision is on disk first, the log fails closed when the disk
//! refuses writes and resumes with its chain intact, and crashes leave nothing acknowledged unrecorded.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cavra_runtime::client::Client;
use cavra_runtime::contract::{DecisionResponse, EvaluateRequest};
use common::daemon::Daemon;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const KEY: &str = "evidence-test-key";

fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("evidence.key");
    fs::write(&path, format!("{KEY}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn request(index: usize) -> EvaluateRequest {
    let target = if index % 2 == 0 { ".env" } else { "src/main.rs" };
    serde_json::from_value(json!({"action_type": "read_file", "target": target, "session_id": format!("s-{index}")}))
        .unwrap()
}

/// The `go-daemon-evidence://` id a response carries.
fn record_id(response: &DecisionResponse) -> String {
    assert_eq!(response.evidence_refs.len(), 2, "{response:?}");
    assert!(response.evidence_refs[0].starts_with(&format!("evidence://{}/", response.session_id)));
    response.evidence_refs[1]
        .strip_prefix("go-daemon-evidence://")
        .unwrap_or_else(|| panic!("no evidence ref in {response:?}"))
        .to_owned()
}

fn records(log: &Path) -> Vec<Value> {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn verify(log: &Path, key: Option<&Path>) -> (i32, Value) {
    let mut args = vec![
        "--verify-evidence".to_owned(),
        "--evidence-log".to_owned(),
        log.display().to_string(),
    ];
    if let Some(key) = key {
        args.extend(["--evidence-signing-key-file".into(), key.display().to_string()]);
        args.extend(["--evidence-signing-key-id".into(), "test-key".into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = common::run(&args, "");
    (
        output.status.code().unwrap(),
        serde_json::from_slice(&output.stdout).unwrap(),
    )
}

fn prlimit_fsize(pid: i32, limit: &str) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}")])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success());
}

#[test]
fn every_answered_decision_is_in_the_signed_log_in_one_gapless_chain() {
    let scratch = tempfile::tempdir().unwrap();
    let key = key_file(scratch.path());
    let log = scratch.path().join("evidence/log.jsonl");
    let daemon = Daemon::start(&[
        "--evidence-log",
        log.to_str().unwrap(),
        "--evidence-signing-key-file",
        key.to_str().unwrap(),
        "--evidence-signing-key-id",
        "test-key",
    ]);
    let answered = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let client = daemon.client();
            let answered = Arc::clone(&answered);
            scope.spawn(move || {
                for index in 0..25 {
                    let response = client.evaluate(&request(thread * 100 + index)).unwrap();
                    answered.lock().unwrap().push(response);
                }
            });
        }
        let client = daemon.client();
        let answered = Arc::clone(&answered);
        scope.spawn(move || {
            let requests: Vec<_> = (1000..1200).map(request).collect();
            let responses = client.stream().unwrap().evaluate_all(&requests).unwrap();
            answered.lock().unwrap().extend(responses);
        });
    });
    daemon.client().health().unwrap();

    let answered = answered.lock().unwrap();
    assert_eq!(answered.len(), 400);
    let answered_ids: BTreeSet<String> = answered.iter().map(record_id).collect();
    let records = records(&log);
    assert_eq!(records.len(), 400, "one record per decision, none for the health probe");
    let logged_ids: BTreeSet<String> = records
        .iter()
        .map(|r| r["record_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(answered_ids, logged_ids);
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record["sequence"], index as u64 + 1);
        assert_eq!(record["signature"]["key_id"], "test-key");
    }
    let (code, report) = verify(&log, Some(&key));
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (report["records"].as_u64(), report["signed_records"].as_u64()),
        (Some(400), Some(400))
    );
}

#[test]
fn a_full_disk_fails_decisions_closed_and_recording_resumes_with_the_chain_intact() {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("log.jsonl");
    let daemon = Daemon::start(&["--evidence-log", log.to_str().unwrap()]);
    let client = daemon.client();
    record_id(&client.evaluate(&request(1)).unwrap());
    let size = fs::metadata(&log).unwrap().len();

    prlimit_fsize(daemon.pid(), &format!("{size}:unlimited"));
    for index in 2..5 {
        let refused = client.evaluate(&request(index)).unwrap();
        assert_eq!(refused.rule_id, "daemon.evidence.unavailable");
        assert_eq!(refused.decision.as_str(), "block");
        assert_eq!(refused.severity.as_str(), "critical");
        assert_eq!(refused.session_id, format!("s-{index}"));
        assert!(refused.reason.contains("File too large"), "{}", refused.reason);
        assert!(refused.evidence_refs.is_empty());
    }
    assert_eq!(
        fs::metadata(&log).unwrap().len(),
        size,
        "no partial record is left behind"
    );
    assert_eq!(
        daemon.log().matches("ERROR").count(),
        1,
        "logged once per episode:\n{}",
        daemon.log()
    );

    prlimit_fsize(daemon.pid(), "unlimited:unlimited");
    let resumed = client.evaluate(&request(5)).unwrap();
    let id = record_id(&resumed);
    let records = records(&log);
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["record_id"], id.as_str());
    assert_eq!(records[1]["sequence"], 2);
    assert_eq!(verify(&log, None).0, 0);
}

#[test]
fn a_torn_last_record_is_moved_aside_and_the_chain_continues() {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("log.jsonl");
    let log_arg = log.to_str().unwrap();
    let mut daemon = Daemon::start(&["--evidence-log", log_arg]);
    for index in 0..3 {
        record_id(&daemon.client().evaluate(&request(index)).unwrap());
    }
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)).code(), Some(0));

    let torn = br#"{"schema_version":"cavra.go-daemon.evidence.v1","product":"CAV"#;
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(torn)
        .unwrap();
    let daemon = Daemon::start(&["--evidence-log", log_arg]);
    let aside: Vec<PathBuf> = fs::read_dir(scratch.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains("log.jsonl.torn-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(fs::read(&aside[0]).unwrap(), torn);
    assert!(daemon.log().contains("moved aside"), "{}", daemon.log());
    record_id(&daemon.client().evaluate(&request(9)).unwrap());
    assert_eq!(records(&log).last().unwrap()["sequence"], 4);
    assert_eq!(verify(&log, None).0, 0);
}

#[test]
fn a_log_that_does_not_verify_is_refused_unless_recovery_is_asked_for() {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("log.jsonl");
    let fixture = fs::read_to_string(common::testdata("evidence/tampered-byte.jsonl")).unwrap();
    fs::write(&log, &fixture).unwrap();
    let socket = scratch.path().join("s.sock");
    let args = [
        "--serve",
        "--log-target",
        "stderr",
        "--socket",
        socket.to_str().unwrap(),
    ];
    let mut refused = args.to_vec();
    refused.extend(["--evidence-log", log.to_str().unwrap()]);
    let output = common::run(&refused, "");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not verify: record 2 hash mismatch"), "{stderr}");
    assert!(stderr.contains("--evidence-recover"), "{stderr}");
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        fixture,
        "the operator's log is untouched"
    );

    let daemon = Daemon::start(&["--evidence-log", log.to_str().unwrap(), "--evidence-recover"]);
    record_id(&daemon.client().evaluate(&request(1)).unwrap());
    assert_eq!(records(&log)[0]["sequence"], 1);
    let set_aside = fs::read_dir(scratch.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.to_string_lossy().contains("log.jsonl.unverified-"))
        .expect("the unverified log is kept");
    assert_eq!(fs::read_to_string(set_aside).unwrap(), fixture);
}

#[test]
fn verify_evidence_reports_like_the_reference_and_exits_1_when_invalid() {
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("fixture.key");
    fs::write(&key, "fixture-evidence-key").unwrap();
    let fixture = common::testdata("evidence/signed-chain.jsonl");
    let run = |log: &Path, key: &Path, key_id: &str| {
        common::run(
            &[
                "--verify-evidence",
                "--evidence-log",
                log.to_str().unwrap(),
                "--evidence-signing-key-file",
                key.to_str().unwrap(),
                "--evidence-signing-key-id",
                key_id,
            ],
            "",
        )
    };
    let output = run(&fixture, &key, "fixture-2026");
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        report,
        json!({"path": fixture.display().to_string(), "valid": true, "records": 5, "signed_records": 5})
    );
    assert!(
        text.starts_with("{\n  \"path\": "),
        "indented like the reference: {text}"
    );

    let output = run(&common::testdata("evidence/tampered-byte.jsonl"), &key, "fixture-2026");
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["errors"], json!(["record 2 hash mismatch"]));

    let output = run(&fixture, &key, "another-id");
    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["errors"][0], "record 1 signature key_id mismatch");

    let output = common::run(&["--verify-evidence"], "");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "cavra-runtime: --evidence-log is required with --verify-evidence\n"
    );
}

#[test]
fn after_kill_9_every_acknowledged_decision_is_in_the_log() {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("log.jsonl");
    let log_arg = log.to_str().unwrap();
    let daemon = Daemon::start(&["--evidence-log", log_arg, "--evidence-sync", "always"]);
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let socket = daemon.socket.clone();
    let load: Vec<_> = (0..4)
        .map(|thread| {
            let acknowledged = Arc::clone(&acknowledged);
            let client = Client::new(&socket).with_timeout(Duration::from_secs(5));
            std::thread::spawn(move || {
                for index in 0.. {
                    match client.evaluate(&request(thread * 100_000 + index)) {
                        Ok(response) => acknowledged.lock().unwrap().push(record_id(&response)),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 200 {
        std::thread::yield_now();
    }
    daemon.signal(Signal::SIGKILL);
    for thread in load {
        thread.join().unwrap();
    }
    drop(daemon);

    let restarted = Daemon::start(&["--evidence-log", log_arg]);
    record_id(&restarted.client().evaluate(&request(0)).unwrap());
    let logged: BTreeSet<String> = records(&log)
        .iter()
        .map(|record| record["record_id"].as_str().unwrap().to_owned())
        .collect();
    let acknowledged = acknowledged.lock().unwrap();
    let missing: Vec<_> = acknowledged.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged decisions missing from the log",
        missing.len()
    );
    assert_eq!(verify(&log, None).0, 0);
}
