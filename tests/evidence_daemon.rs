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

use cavra_runtime::contract::{DecisionResponse, EvaluateRequest};
use cavra_runtime_client::{Client, RefusalKind};
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
    let target = if index.is_multiple_of(2) { ".env" } else { "src/main.rs" };
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

/// A client for a correctness test on a possibly busy machine: a slow answer is not what is being tested.
fn patient(daemon: &Daemon) -> Client {
    Client::new(&daemon.socket).with_timeout(Duration::from_secs(120))
}

#[test]
fn ten_thousand_concurrent_decisions_form_one_signed_gapless_chain() {
    let scratch = tempfile::tempdir().unwrap();
    let key = key_file(scratch.path());
    let log = scratch.path().join("evidence/log.jsonl");
    // One uid asks for all of them at once: its per-uid rates are lifted (tests/group_member.rs tests them).
    let daemon = Daemon::start(&[
        "--evidence-log",
        log.to_str().unwrap(),
        "--evidence-signing-key-file",
        key.to_str().unwrap(),
        "--evidence-signing-key-id",
        "test-key",
        "--max-decisions-per-second-per-uid",
        "0",
        "--max-evidence-bytes-per-second-per-uid",
        "0",
    ]);
    let answered = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let client = patient(&daemon);
            let answered = Arc::clone(&answered);
            scope.spawn(move || {
                for index in 0..250 {
                    let response = client.evaluate(&request(thread * 1000 + index)).unwrap();
                    answered.lock().unwrap().push(response);
                }
            });
        }
        for stream in 0..8 {
            let client = patient(&daemon);
            let answered = Arc::clone(&answered);
            scope.spawn(move || {
                let requests: Vec<_> = (0..1000).map(|index| request(100_000 * (stream + 1) + index)).collect();
                let responses = client.stream().unwrap().evaluate_all(&requests).unwrap();
                answered
                    .lock()
                    .unwrap()
                    .extend(responses.into_iter().map(Result::unwrap));
            });
        }
    });
    daemon.client().health().unwrap();

    let answered = answered.lock().unwrap();
    assert_eq!(answered.len(), 10_000);
    let answered_ids: BTreeSet<String> = answered.iter().map(record_id).collect();
    let records = records(&log);
    assert_eq!(
        records.len(),
        10_000,
        "one record per decision, none for the health probe"
    );
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
        (Some(10_000), Some(10_000))
    );
    let mode = fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "evidence log mode {mode:o} is wider than 0640");
}

#[test]
fn the_signing_key_comes_from_the_credentials_directory_or_the_reference_variable() {
    let credentials = tempfile::tempdir().unwrap();
    let credential = credentials.path().join("evidence-signing-key");
    fs::write(&credential, "from-credentials\n").unwrap();
    fs::set_permissions(&credential, fs::Permissions::from_mode(0o400)).unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    for (env, key) in [
        (
            ("CREDENTIALS_DIRECTORY", credentials.path().to_str().unwrap()),
            "from-credentials",
        ),
        (
            ("CAVRA_DAEMON_EVIDENCE_HMAC_KEY", "from-environment"),
            "from-environment",
        ),
    ] {
        let log = key_dir.path().join(format!("{}.jsonl", env.0));
        let daemon = Daemon::start_with(
            &["--evidence-log", log.to_str().unwrap()],
            &[env, ("CAVRA_DAEMON_EVIDENCE_KEY_ID", "env-id")],
        );
        record_id(&daemon.client().evaluate(&request(1)).unwrap());
        let key_path = key_dir.path().join("verify.key");
        fs::write(&key_path, key).unwrap();
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
        let output = common::run(
            &[
                "--verify-evidence",
                "--evidence-log",
                log.to_str().unwrap(),
                "--evidence-signing-key-file",
                key_path.to_str().unwrap(),
                "--evidence-signing-key-id",
                "env-id",
            ],
            "",
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(output.status.code(), Some(0), "{}: {report}", env.0);
        assert_eq!(report["signed_records"], 1, "{}", env.0);
    }
}

/// Runs `--verify-evidence` with `args`; the exit code and the report.
fn verify_with(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--verify-evidence"];
    all.extend_from_slice(args);
    let output = common::run(&all, "");
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("no report ({error}): {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap(), report)
}

/// Renames the log to `to` and signals the daemon, as logrotate does (`create`: an empty file at the path first).
fn rotate(daemon: &Daemon, log: &Path, to: &Path, create: bool) {
    fs::rename(log, to).unwrap();
    if create {
        fs::write(log, "").unwrap();
    }
    daemon.signal(Signal::SIGHUP);
    daemon.wait_notification("RELOADING=1");
    daemon.wait_notification("READY=1");
}

#[test]
fn rotated_files_form_one_chain_that_verifies_as_a_set_and_a_missing_file_is_reported() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("logs");
    let key = key_file(scratch.path());
    let log = dir.join("log.jsonl");
    let (oldest, middle) = (dir.join("log.jsonl.2"), dir.join("log.jsonl.1"));
    let daemon = Daemon::start(&[
        "--evidence-log",
        log.to_str().unwrap(),
        "--evidence-signing-key-file",
        key.to_str().unwrap(),
        "--evidence-signing-key-id",
        "test-key",
    ]);
    let mut answered = Vec::new();
    for index in 0..3 {
        answered.push(record_id(&daemon.client().evaluate(&request(index)).unwrap()));
    }
    rotate(&daemon, &log, &oldest, true);
    for index in 3..5 {
        answered.push(record_id(&daemon.client().evaluate(&request(index)).unwrap()));
    }
    // Without `create`: the daemon makes the file itself.
    rotate(&daemon, &log, &middle, false);
    answered.push(record_id(&daemon.client().evaluate(&request(5)).unwrap()));

    let (first, second, third) = (records(&oldest), records(&middle), records(&log));
    assert_eq!(
        (first.len(), second.len(), third.len()),
        (3, 3, 2),
        "decisions, and a link record to start each new file"
    );
    for (file, before) in [(&second, &first), (&third, &second)] {
        assert_eq!(file[0]["event_type"], "cavra.runtime.evidence.link");
        assert_eq!(file[0]["link"]["reason"], "rotation");
        assert_eq!(file[0]["link"]["previous_sequence"], before.last().unwrap()["sequence"]);
        assert_eq!(
            file[0]["link"]["previous_record_hash"],
            before.last().unwrap()["record_hash"]
        );
        assert_eq!(
            file[0]["signature"]["key_id"], "test-key",
            "link records are signed too"
        );
    }
    let logged: Vec<&str> = [&first, &second, &third]
        .iter()
        .flat_map(|file| file.iter())
        .filter(|record| record["event_type"] == "cavra.go_daemon.decision")
        .map(|record| record["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(logged, answered, "every decision in exactly one file, in order");
    let last_hash = first[2]["record_hash"].as_str().unwrap();
    daemon.wait_log(&format!("sequence 3 with record hash {last_hash}"));

    let key_args = [
        "--evidence-signing-key-file",
        key.to_str().unwrap(),
        "--evidence-signing-key-id",
        "test-key",
    ];
    // The directory, sorted by the links (here the names sort the other way round).
    let (code, report) = verify_with(&[&["--evidence-log", dir.to_str().unwrap()][..], &key_args].concat());
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (
            report["valid"].as_bool(),
            report["records"].as_u64(),
            report["signed_records"].as_u64(),
            report["segments"].as_u64()
        ),
        (Some(true), Some(8), Some(8), Some(1)),
        "{report}"
    );
    let order: Vec<&str> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            oldest.to_str().unwrap(),
            middle.to_str().unwrap(),
            log.to_str().unwrap()
        ]
    );
    // The same files named one by one, in any order.
    let (code, _) = verify_with(
        &[
            &[
                "--evidence-log",
                log.to_str().unwrap(),
                "--evidence-log",
                oldest.to_str().unwrap(),
                "--evidence-log",
                middle.to_str().unwrap(),
            ][..],
            &key_args,
        ]
        .concat(),
    );
    assert_eq!(code, 0);
    // One rotated file alone verifies as what it is: a file that continues an earlier one.
    let (code, alone) = verify_with(&[&["--evidence-log", middle.to_str().unwrap()][..], &key_args].concat());
    assert_eq!(code, 0, "{alone}");
    assert_eq!(alone["link"]["previous_sequence"], 3, "{alone}");

    // The middle file removed: the gap is reported, with the records it held.
    fs::remove_file(&middle).unwrap();
    let (code, report) = verify_with(&[&["--evidence-log", dir.to_str().unwrap()][..], &key_args].concat());
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["segments"], 2, "{report}");
    let expected = format!(
        "a segment is missing before {}: it continues from record 6 (hash {}), which no file given ends with; \
         records 4 to 6 are missing",
        log.display(),
        second[2]["record_hash"].as_str().unwrap()
    );
    assert_eq!(report["errors"], json!([expected]), "{report}");
}

#[test]
fn a_log_deleted_under_the_daemon_is_noticed_before_the_next_answer_which_goes_to_a_linked_new_file() {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("log.jsonl");
    let daemon = Daemon::start(&["--evidence-log", log.to_str().unwrap()]);
    for index in 0..3 {
        record_id(&daemon.client().evaluate(&request(index)).unwrap());
    }
    let deleted = records(&log);
    fs::remove_file(&log).unwrap();
    // No signal: the next decision finds the file gone, starts a new one and is answered from it.
    let id = record_id(&daemon.client().evaluate(&request(3)).unwrap());
    let new = records(&log);
    assert_eq!(new.len(), 2);
    assert_eq!(new[1]["record_id"], id.as_str());
    assert_eq!(
        new[0]["link"],
        json!({"previous_sequence": 3, "previous_record_hash": deleted[2]["record_hash"], "reason": "deleted"})
    );
    let warning = daemon.wait_log("evidence log reopened");
    assert!(
        warning.contains("WARN") && warning.contains("reason=\"deleted\""),
        "{warning}"
    );
    // On its own the new file verifies; as a set it shows the deleted file is missing.
    assert_eq!(verify(&log, None).0, 0);
    let (code, report) = verify_with(&["--evidence-log", scratch.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap()
            .ends_with("records 1 to 3 are missing"),
        "{report}"
    );
}

/// The bytes a client receives are the `response` its record stores, in both protocol modes, including the
/// characters Go escapes.
#[test]
fn the_answer_is_the_recorded_response_byte_for_byte() {
    use std::io::{BufRead as _, BufReader};
    use std::os::unix::net::UnixStream;

    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("log.jsonl");
    let daemon = Daemon::start(&["--evidence-log", log.to_str().unwrap()]);
    let request = json!({"action_type": "read_file", "target": "notes/<draft>&.env", "session_id": "s-<1>"});
    let exchange = |lines: &[String]| -> String {
        let mut stream = UnixStream::connect(&daemon.socket).unwrap();
        for line in lines {
            stream.write_all(format!("{line}\n").as_bytes()).unwrap();
        }
        let mut reader = BufReader::new(stream);
        let mut answer = String::new();
        for _ in lines {
            answer.clear();
            reader.read_line(&mut answer).unwrap();
        }
        answer
    };
    let compatible = exchange(&[request.to_string()]);
    let stream = exchange(&[json!({"protocol": "cavra.ndjson.v1"}).to_string(), request.to_string()]);

    let stored = fs::read_to_string(&log).unwrap();
    let stored: Vec<&str> = stored.lines().collect();
    assert_eq!(stored.len(), 2);
    for (answer, line) in [(&compatible, stored[0]), (&stream, stored[1])] {
        let answer = answer.strip_suffix('\n').expect("one whole answer line");
        assert!(answer.contains(r"\u003cdraft\u003e\u0026"), "{answer}");
        let suffix = if line.contains(r#","signature":"#) { "," } else { "}" };
        assert!(
            line.contains(&format!(r#","response":{answer}{suffix}"#)),
            "{line}\n{answer}"
        );
    }
}

/// Every input a decision read is in its record, hashed and signed: the log verifies, and changing an extension
/// field (or adding a field the verifier does not know) breaks it. A request with only the reference's fields is
/// stored with only those.
#[test]
fn extension_fields_are_recorded_and_covered_by_the_hash() {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("log.jsonl");
    let key = key_file(scratch.path());
    let daemon = Daemon::start(&[
        "--evidence-log",
        log.to_str().unwrap(),
        "--evidence-signing-key-file",
        key.to_str().unwrap(),
        "--evidence-signing-key-id",
        "test-key",
        "--pin-pack",
        "cavra-terraform-prod",
        "--on-other-pack",
        "decide-pinned",
    ]);
    let client = daemon.client();
    let extended: EvaluateRequest = serde_json::from_value(json!({
        "action_type": "write_file", "target": "/repo/./src/a.rs", "workspace_root": "/repo",
        "policy_pack": "cavra-eu-ai-act", "operation": "write", "capability": "fs",
        "record": {"note": "x", "ratio": 0.1, "big": 1e300}
    }))
    .unwrap();
    let answer = client.evaluate(&extended).unwrap();
    assert_eq!(answer.normalized_target, "/repo/src/a.rs");
    assert_eq!(
        (answer.policy_pack.as_str(), answer.requested_policy_pack.as_str()),
        ("cavra-terraform-prod", "cavra-eu-ai-act")
    );
    let plain: EvaluateRequest = serde_json::from_value(
        json!({"action_type": "read_file", "target": "README.md", "policy_pack": "cavra-terraform-prod"}),
    )
    .unwrap();
    client.evaluate(&plain).unwrap();

    let stored = records(&log);
    assert_eq!(
        stored[0]["request"],
        json!({"action_type": "write_file", "target": "/repo/./src/a.rs", "policy_pack": "cavra-eu-ai-act",
               "operation": "write", "capability": "fs", "record": {"big": 1e300, "note": "x", "ratio": 0.1},
               "workspace_root": "/repo"})
    );
    assert_eq!(stored[0]["response"]["requested_policy_pack"], "cavra-eu-ai-act");
    assert_eq!(stored[0]["response"]["normalized_target"], "/repo/src/a.rs");
    assert_eq!(
        stored[1]["request"],
        json!({"action_type": "read_file", "target": "README.md", "policy_pack": "cavra-terraform-prod"})
    );
    assert!(
        stored[1]["response"].get("normalized_target").is_none()
            && stored[1]["response"].get("requested_policy_pack").is_none()
    );
    let (code, report) = verify(&log, Some(&key));
    assert_eq!((code, &report["valid"]), (0, &json!(true)), "{report}");

    let text = fs::read_to_string(&log).unwrap();
    for (from, to) in [
        (r#""workspace_root":"/repo""#, r#""workspace_root":"/rep0""#),
        (
            r#""requested_policy_pack":"cavra-eu-ai-act""#,
            r#""requested_policy_pack":"cavra-hipaa""#,
        ),
        (r#""operation":"write""#, r#""operation":"write","tool":"x""#),
        (r#""capability":"fs""#, r#""capability":"fs","unknown_field":"x""#),
    ] {
        assert!(text.contains(from), "{from} not in {text}");
        let altered = scratch.path().join("altered.jsonl");
        fs::write(&altered, text.replacen(from, to, 1)).unwrap();
        let (code, report) = verify(&altered, Some(&key));
        assert_eq!(code, 1, "{to}: {report}");
        let errors = report["errors"].to_string();
        let expected = if to.contains("unknown_field") {
            "record 1 is not as written"
        } else {
            "record 1 hash mismatch"
        };
        assert!(errors.contains(expected), "{to}: {report}");
    }
}

/// A daemon whose evidence log is on a tmpfs of `size`, mounted in a private mount namespace around it (with
/// `args`), and the mount point and log path; `None`, said loudly, without root, unshare and nsenter.
fn on_tmpfs(size: &str, args: &[&str], what: &str) -> Option<(Daemon, PathBuf, PathBuf)> {
    let root = nix::unistd::geteuid().is_root();
    let tools = ["unshare", "nsenter"]
        .iter()
        .all(|tool| Command::new(tool).arg("--version").output().is_ok());
    if !root || !tools {
        common::skip::skip(&format!("{what} needs root, unshare and nsenter"));
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("evidence");
    fs::create_dir(&mount).unwrap();
    let log = mount.join("log.jsonl");
    let script = format!(
        "mount -t tmpfs -o size={size} cavra-test {} && exec \"$0\" \"$@\"",
        mount.display()
    );
    let mut all = vec!["--evidence-log", log.to_str().unwrap()];
    all.extend_from_slice(args);
    let daemon = Daemon::launch(
        dir,
        &["unshare", "--mount", "--propagation", "private", "sh", "-c", &script],
        &all,
        &[],
    );
    Some((daemon, mount, log))
}

/// A real full file system: a 256 KiB tmpfs, mounted in a private mount namespace around the daemon, filled up and
/// then emptied again. Needs root (CI runs as root).
#[test]
fn a_full_tmpfs_fails_decisions_closed_and_recording_resumes_when_space_returns() {
    let Some((daemon, mount, log)) = on_tmpfs("256k", &[], "the tmpfs disk-full test") else {
        return;
    };
    daemon.wait_notification("READY=1");
    let in_namespace = |command: &str| {
        let status = Command::new("nsenter")
            .args(["--target", &daemon.pid().to_string(), "--mount", "sh", "-c", command])
            .status()
            .unwrap();
        status.success()
    };
    let client = daemon.client();
    record_id(&client.evaluate(&request(1)).unwrap());

    let filler = mount.join("filler");
    // dd stops with "No space left on device" once the tmpfs is full, which is the point.
    in_namespace(&format!(
        "dd if=/dev/zero of={} bs=4k 2>/dev/null; true",
        filler.display()
    ));
    // Records still fit in the log's last, partly used page; the first one that needs a new page is refused.
    let mut acknowledged = 1;
    let refused = (2..200)
        .map(|index| client.evaluate_raw(&request(index)).unwrap())
        .find(|response| {
            let refused = response.rule_id == "daemon.evidence.unavailable";
            acknowledged += usize::from(!refused);
            refused
        })
        .expect("a full file system refuses a record");
    assert_eq!(refused.severity.as_str(), "critical");
    assert!(refused.reason.contains("No space left on device"), "{}", refused.reason);
    assert_eq!(
        client.evaluate_raw(&request(500)).unwrap().rule_id,
        "daemon.evidence.unavailable",
        "still full, still refused"
    );
    assert!(in_namespace(&format!("rm {}", filler.display())));
    let id = record_id(&client.evaluate(&request(501)).unwrap());

    // The tmpfs is visible only inside the daemon's namespace; /proc/<pid>/root looks through it.
    let seen = PathBuf::from(format!("/proc/{}/root{}", daemon.pid(), log.display()));
    let records = records(&seen);
    assert_eq!(records.len(), acknowledged + 1);
    let last = records.last().unwrap();
    assert_eq!(last["sequence"].as_u64(), Some(acknowledged as u64 + 1));
    assert_eq!(last["record_id"].as_str(), Some(id.as_str()));
    assert_eq!(verify(&seen, None).0, 0);
}

/// The health answer with its reasons (the client library's `Health` has only the contract's fields).
fn health(daemon: &Daemon) -> Value {
    let mut stream = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    stream.write_all(b"{\"action_type\":\"cavra.health\"}\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

/// Polls the health answer until its status is `status` (the free space is looked at every 5 s at most).
fn wait_for_health(daemon: &Daemon, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = health(daemon);
        if answer["status"] == status {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "never {status}: {answer}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Headroom: a 1 MiB tmpfs (in a private mount namespace around the daemon) with `--evidence-min-free 512K`. Filled
/// past the minimum, not to the brim, the daemon says `degraded` with the reason, still deciding and recording;
/// emptied again, `ok`. Needs root (CI runs as root).
#[test]
fn too_little_free_space_for_the_evidence_log_is_reported_as_degraded_before_the_disk_is_full() {
    let Some((daemon, mount, _log)) = on_tmpfs("1m", &["--evidence-min-free", "512K"], "the headroom test") else {
        return;
    };
    daemon.wait_notification("READY=1");
    let in_namespace = |command: &str| {
        let status = Command::new("nsenter")
            .args(["--target", &daemon.pid().to_string(), "--mount", "sh", "-c", command])
            .status()
            .unwrap();
        assert!(status.success(), "{command}");
    };
    let ok = health(&daemon);
    assert_eq!((&ok["status"], &ok["reasons"]), (&json!("ok"), &json!([])), "{ok}");

    // 768 KiB of the 1 MiB: about 256 KiB left, below the minimum, far from full.
    let filler = mount.join("filler");
    in_namespace(&format!(
        "dd if=/dev/zero of={} bs=4k count=192 2>/dev/null",
        filler.display()
    ));
    let degraded = wait_for_health(&daemon, "degraded");
    let reasons = degraded["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{degraded}");
    assert_eq!(
        (&reasons[0]["code"], &reasons[0]["status"]),
        (&json!("evidence.low_space"), &json!("degraded"))
    );
    let message = reasons[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("the evidence log's file system ({}) has ", mount.display()))
            && message.ends_with("below --evidence-min-free 524288 bytes"),
        "{message}"
    );
    assert!(
        degraded["policy_digest"].is_string(),
        "the contract's fields stay: {degraded}"
    );
    daemon.wait_log("the daemon reports itself degraded");
    // Degraded is a warning, not a refusal: decisions are still recorded and answered.
    record_id(&daemon.client().evaluate(&request(1)).unwrap());

    in_namespace(&format!("rm {}", filler.display()));
    wait_for_health(&daemon, "ok");
    daemon.wait_log("evidence log headroom is back");
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
        // Not a decision: the client reports the daemon's refusal as an error of its own kind.
        let error = client.evaluate(&request(index)).unwrap_err();
        let refusal = error.refusal().unwrap_or_else(|| panic!("{error}"));
        assert_eq!(refusal.kind(), RefusalKind::EvidenceUnavailable);
        assert!(!refusal.is_retryable(), "the request was evaluated");
        assert!(
            error.to_string().contains(
                "refused the request (daemon.evidence.unavailable: the decision could not be recorded as evidence)"
            ),
            "{error}"
        );
        let refused = refusal.response();
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

    prlimit_fsize(daemon.pid(), "unlimited:unlimited");
    let resumed = client.evaluate(&request(5)).unwrap();
    let id = record_id(&resumed);
    let daemon_log = daemon.wait_log("evidence log writable again");
    assert_eq!(
        daemon_log.matches("ERROR").count(),
        1,
        "logged once per episode:\n{daemon_log}"
    );
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
    daemon.wait_log("moved it aside");
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
    // The new file links to the set-aside log's last record, so the chain goes on (and shows where it broke).
    let fixture_last: Value = serde_json::from_str(fixture.lines().last().unwrap()).unwrap();
    let new = records(&log);
    assert_eq!(
        new[0]["link"],
        json!({"previous_sequence": 5, "previous_record_hash": fixture_last["record_hash"], "reason": "recovered"})
    );
    assert_eq!(
        (new[0]["sequence"].as_i64(), new[1]["sequence"].as_i64()),
        (Some(6), Some(7))
    );
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
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
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
        "cavra-runtime: --verify-evidence needs --evidence-log (a log, its rotated files or their directory), \
         --journal (collected journals holding the records), or both\n"
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

#[test]
fn with_log_evidence_records_the_log_carries_the_chain_link_records_included_and_verifies_from_it() {
    let scratch = tempfile::tempdir().unwrap();
    let key = key_file(scratch.path());
    let log = scratch.path().join("log.jsonl");
    let rotated = scratch.path().join("log.jsonl.1");
    let daemon = Daemon::start(&[
        "--evidence-log",
        log.to_str().unwrap(),
        "--evidence-signing-key-file",
        key.to_str().unwrap(),
        "--log-evidence-records",
        "--log-format",
        "json",
    ]);
    for index in 0..3 {
        daemon.client().evaluate(&request(index)).unwrap();
    }
    rotate(&daemon, &log, &rotated, false);
    daemon.client().evaluate(&request(3)).unwrap();
    let written: Vec<String> = [&rotated, &log]
        .iter()
        .flat_map(|file| {
            fs::read_to_string(file)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(written.len(), 5, "three decisions, a link record, a decision");
    // Each record is in the daemon's log (here JSON lines; under systemd, the journal's EVIDENCE_RECORD) as written.
    let logged = daemon.wait_log("\"evidence_sequence\":5");
    let shipped: Vec<String> = logged
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|event| event["evidence_record"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(shipped, written);

    let daemon_log = scratch.path().join("daemon-log.json");
    fs::write(&daemon_log, &logged).unwrap();
    let key_args = ["--evidence-signing-key-file", key.to_str().unwrap()];
    let (code, report) = verify_with(&[&["--journal", daemon_log.to_str().unwrap()][..], &key_args].concat());
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["machines"][0]["records"], 5, "{report}");
    assert_eq!(report["machines"][0]["signed_records"], 5, "{report}");

    // The link record's entry taken out: a gap at sequence 4, and the chain breaks there.
    let without_link: String = logged
        .lines()
        .filter(|line| !line.contains("\"evidence_sequence\":4,"))
        .map(|line| format!("{line}\n"))
        .collect();
    fs::write(&daemon_log, without_link).unwrap();
    let (code, report) = verify_with(&[&["--journal", daemon_log.to_str().unwrap()][..], &key_args].concat());
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        report["machines"][0]["gaps"],
        json!(["record 4 is not in the journal"]),
        "{report}"
    );
}
