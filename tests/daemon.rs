//! The daemon over a real Unix socket: both protocol modes, health, bad input, bounds, signals and the socket file.

mod common;

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;
use std::time::{Duration, Instant};

use cavra_runtime::contract::{Decision, EvaluateRequest};
use common::daemon::Daemon;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

fn request(value: Value) -> EvaluateRequest {
    serde_json::from_value(value).unwrap()
}

/// Writes `bytes` on a fresh connection without closing it, and reads the answer to the end.
fn exchange_raw(daemon: &Daemon, bytes: &[u8]) -> Value {
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(bytes).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.ends_with('\n') && answer.matches('\n').count() == 1,
        "{answer:?}"
    );
    serde_json::from_str(&answer).unwrap()
}

#[test]
fn compatible_mode_answers_without_newline_or_eof_and_closes() {
    let daemon = Daemon::start(&[]);
    let answer = exchange_raw(&daemon, br#"{"action_type":"read_file","target":"config/prod.secret"}"#);
    assert_eq!(answer["decision"], "allow");
    let answer = exchange_raw(
        &daemon,
        b"{\"action_type\":\"execute_command\",\"target\":\"terraform apply\"}\n",
    );
    assert_eq!(answer["rule_id"], "commands.block");
    assert_eq!(answer["severity"], "critical");
    assert!(answer["decision_id"].as_str().unwrap().starts_with("dec_"));
}

#[test]
fn compatible_mode_input_after_the_request_never_resets_the_answer() {
    let daemon = Daemon::start(&[]);
    // Closing a Unix socket with unread input would turn the client's end of stream into ECONNRESET; the daemon
    // reads such input away first. `exchange_raw` reads to the end and fails on a reset.
    let trailing = b"{\"action_type\":\"read_file\",\"target\":\"a\"}\n{\"action_type\":\"read_file\"}\n";
    assert_eq!(exchange_raw(&daemon, trailing)["decision"], "allow");

    // The newline in a write of its own, after the answer may already be on its way.
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(br#"{"action_type":"read_file","target":"a"}"#)
        .unwrap();
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).unwrap();
    stream.write_all(b"\n").unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(rest.ends_with("}\n"), "{rest:?}");
}

#[test]
fn client_library_and_daemon_cli_agree() {
    let daemon = Daemon::start(&[]);
    let response = daemon
        .client()
        .evaluate(&request(
            json!({"session_id": "s-1", "agent_id": "codex", "action_type": "execute_command",
                                  "target": "terraform plan", "policy_pack": "cavra-ai-agent-baseline"}),
        ))
        .unwrap();
    assert_eq!(response.decision, Decision::Allow);
    assert_eq!(
        (response.session_id.as_str(), response.agent_id.as_str()),
        ("s-1", "codex")
    );

    let socket = daemon.socket.to_str().unwrap();
    let output = common::run(
        &["--daemon", "--socket", socket],
        r#"{"action_type":"read_file","target":".env"}"#,
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["rule_id"], "filesystem.read.block");
}

#[test]
fn exit_codes_map_decisions_for_ci_gates_in_both_client_modes() {
    let daemon = Daemon::start(&[]);
    let socket = daemon.socket.to_str().unwrap();
    for (request, code) in [
        (r#"{"action_type":"execute_command","target":"pytest"}"#, 0),
        (r#"{"action_type":"execute_command","target":"make deploy"}"#, 4),
        (r#"{"action_type":"read_file","target":".env"}"#, 3),
    ] {
        let output = common::run(&["--daemon", "--exit-code", "--socket", socket], request);
        assert_eq!(output.status.code(), Some(code), "--daemon {request}");
        let output = common::run(&["--exit-code"], request);
        assert_eq!(output.status.code(), Some(code), "one-shot {request}");
        assert!(output.stdout.starts_with(b"{"), "the decision is printed too");
    }
    // No usage error exits with a decision's status: clap's is 2, and a bad value from the environment is one.
    let usage = Command::new(common::binary())
        .args(["--daemon", "--exit-code", "--socket", socket])
        .env("CAVRA_CLIENT_TIMEOUT", "10")
        .output()
        .unwrap();
    assert_eq!(
        usage.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&usage.stderr)
    );
    assert!(String::from_utf8_lossy(&usage.stderr).contains("\"10\" is not a duration"));
    let flag_value = common::run(
        &[
            "--daemon",
            "--exit-code",
            "--socket",
            socket,
            "--input",
            "-pending.json",
        ],
        "",
    );
    assert_eq!(flag_value.status.code(), Some(2));
}

#[test]
fn daemon_cli_without_a_daemon_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let output = common::run(&["--daemon", "--socket", socket.to_str().unwrap()], "{}");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to cavra-runtime at {}", socket.display())),
        "{stderr}"
    );
    assert!(stderr.contains("--lifecycle start"), "{stderr}");
}

#[test]
fn stream_mode_answers_1000_pipelined_requests_in_order() {
    let daemon = Daemon::start(&[]);
    let mut stream = daemon.client().stream().unwrap();
    assert!(stream.server().starts_with("cavra-runtime "), "{}", stream.server());
    let requests: Vec<EvaluateRequest> = (0..1000)
        .map(|index| {
            let target = if index % 3 == 0 {
                format!("logs/{index}/../../.env")
            } else {
                format!("src/{index}.rs")
            };
            request(json!({"action_type": "read_file", "target": target, "session_id": format!("s-{index}")}))
        })
        .collect();
    let answers = stream.evaluate_all(&requests).unwrap();
    assert_eq!(answers.len(), 1000);
    for (index, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap();
        assert_eq!(answer.session_id, format!("s-{index}"));
        let expected = if index % 3 == 0 {
            Decision::Block
        } else {
            Decision::Allow
        };
        assert_eq!(answer.decision, expected, "request {index}");
    }
}

#[test]
fn health_reports_version_and_policy_without_evaluating() {
    let daemon = Daemon::start(&[]);
    let health = daemon.client().health().unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(health.pid, daemon.pid() as u32);
    assert_eq!(health.default_pack, "cavra-ai-agent-baseline");
    assert_eq!(health.packs, 20);
    assert!(health.policy_digest.starts_with("sha256:"));
    // The log is written in order: once a later decision is in it, the probe would be too.
    // (A block: allowed decisions are summarised, not logged one by one, by default.)
    let later = daemon
        .client()
        .evaluate(&request(json!({"action_type": "read_file", "target": ".env"})))
        .unwrap();
    let log = daemon.wait_log(&later.decision_id);
    assert!(!log.contains("cavra.health"), "a probe is not a decision:\n{log}");
}

#[test]
fn invalid_json_is_answered_with_its_position() {
    let daemon = Daemon::start(&[]);
    let answer = exchange_raw(&daemon, b"{\"action_type\": \"read_file\",\n \"target\": }\n");
    assert_eq!(answer["decision"], "block");
    assert_eq!(answer["rule_id"], "daemon.request.invalid");
    assert_eq!(answer["severity"], "high");
    let reason = answer["reason"].as_str().unwrap();
    assert!(reason.contains("line 2 column"), "{reason}");
    for garbage in [
        &b"\x00\x01\x02\n"[..],
        b"[1,2,3]",
        b"{\"target\": \"\xff\xfe\"}",
        b"42\n",
        b"{\"target\": 7}",
    ] {
        let answer = exchange_raw(&daemon, garbage);
        assert_eq!(answer["rule_id"], "daemon.request.invalid", "{garbage:?}");
    }
}

#[test]
fn oversized_request_is_refused_without_reading_it_all() {
    let daemon = Daemon::start(&["--max-request-bytes", "4096"]);
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut big = b"{\"target\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024));
    // The server answers and closes once the cap is passed; the rest of the write may fail, which is the point.
    let _ = stream.write_all(&big);
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["rule_id"], "daemon.request.too_large");
    assert!(
        answer["reason"].as_str().unwrap().contains("4096-byte limit"),
        "{answer}"
    );
}

#[test]
fn stream_mode_carries_on_after_bad_lines() {
    let daemon = Daemon::start(&["--max-request-bytes", "256"]);
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let long = format!("{{\"target\": \"{}\"}}", "x".repeat(1000));
    let input = format!(
        "{{\"protocol\":\"cavra.ndjson.v1\"}}\nnot json\n{long}\n{{\"action_type\":\"read_file\",\"target\":\".env\"}}\n"
    );
    stream.write_all(input.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut output = String::new();
    stream.read_to_string(&mut output).unwrap();
    let lines: Vec<Value> = output.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 4, "{output}");
    assert_eq!(lines[0]["protocol"], "cavra.ndjson.v1");
    assert_eq!(lines[1]["rule_id"], "daemon.request.invalid");
    assert_eq!(lines[2]["rule_id"], "daemon.request.too_large");
    assert_eq!(lines[3]["rule_id"], "filesystem.read.block");
}

#[test]
fn connections_past_the_limit_are_told_the_daemon_is_overloaded() {
    let daemon = Daemon::start(&["--max-connections", "2"]);
    let first = daemon.client().stream().unwrap();
    let second = daemon.client().stream().unwrap();
    let answer = exchange_raw(&daemon, br#"{"action_type":"read_file","target":"a"}"#);
    assert_eq!(answer["rule_id"], "daemon.overloaded");
    assert!(answer["reason"].as_str().unwrap().contains("maximum of 2 connections"));
    drop((first, second));
    // Once they close, service resumes; the slots free up as the server notices the closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = exchange_raw(&daemon, br#"{"action_type":"read_file","target":"a"}"#);
        if answer["rule_id"] == "filesystem.read.allow" {
            break;
        }
        assert!(Instant::now() < deadline, "service did not resume: {answer}");
        std::thread::yield_now();
    }
}

#[test]
fn a_slow_client_delays_nobody_and_times_out() {
    let daemon = Daemon::start(&["--request-timeout", "1500ms"]);
    let mut slow = UnixStream::connect(&daemon.socket).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    slow.write_all(b"{\"action_type\":").unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        let answer = exchange_raw(&daemon, br#"{"action_type":"read_file","target":"b"}"#);
        assert_eq!(answer["decision"], "allow");
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "others were held up behind the slow client"
    );
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["rule_id"], "daemon.request.timeout");
}

#[test]
fn a_request_sent_one_byte_at_a_time_is_answered() {
    let daemon = Daemon::start(&[]);
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for byte in br#"{"action_type":"read_file","target":"./.env"}"# {
        stream.write_all(&[*byte]).unwrap();
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (
            answer["decision"].as_str(),
            answer["target"].as_str(),
            answer["normalized_target"].as_str()
        ),
        (Some("block"), Some("./.env"), Some(".env"))
    );
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_0_and_removes_its_socket() {
    let mut daemon = Daemon::start(&[]);
    let mut in_flight = UnixStream::connect(&daemon.socket).unwrap();
    in_flight.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    in_flight.write_all(b"{\"action_type\":\"read_file\",").unwrap();
    // The connection is accepted once the daemon answers someone after it.
    daemon.client().health().unwrap();
    daemon.signal(Signal::SIGTERM);
    daemon.wait_notification("STOPPING=1");
    in_flight.write_all(b"\"target\":\".env\"}").unwrap();
    let mut answer = String::new();
    in_flight.read_to_string(&mut answer).unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["rule_id"], "filesystem.read.block");
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(!daemon.socket.exists(), "the socket it bound is removed");
    assert!(UnixStream::connect(&daemon.socket).is_err());
}

fn write_pack(dir: &std::path::Path, blocked: &str) {
    fs::create_dir_all(dir.join("acme")).unwrap();
    fs::write(
        dir.join("acme/policy.yaml"),
        format!("metadata:\n  id: acme\nfilesystem:\n  block_read: ['{blocked}']\n"),
    )
    .unwrap();
}

#[test]
fn sighup_reloads_a_good_policy_and_keeps_the_old_one_when_the_new_one_is_bad() {
    let packs = tempfile::tempdir().unwrap();
    write_pack(packs.path(), "first.txt");
    let dir = packs.path().to_str().unwrap();
    let daemon = Daemon::start(&["--policy-dir", dir, "--default-pack", "acme"]);
    let decide = |target: &str| {
        daemon
            .client()
            .evaluate(&request(json!({"action_type": "read_file", "target": target})))
            .unwrap()
            .decision
    };
    assert_eq!(decide("first.txt"), Decision::Block);
    let before = daemon.client().health().unwrap().policy_digest;

    write_pack(packs.path(), "second.txt");
    daemon.signal(Signal::SIGHUP);
    let reloading = daemon.wait_notification("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    daemon.wait_notification("READY=1");
    assert_eq!(decide("first.txt"), Decision::Allow);
    assert_eq!(decide("second.txt"), Decision::Block);
    let after = daemon.client().health().unwrap().policy_digest;
    assert_ne!(before, after);

    fs::write(packs.path().join("acme/policy.yaml"), "metadata: [unclosed\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_notification("RELOADING=1");
    let ready = daemon.wait_notification("READY=1");
    assert!(
        ready.contains("STATUS=degraded: reload.failed: reload failed, previous policy still in force since "),
        "{ready}"
    );
    assert_eq!(decide("second.txt"), Decision::Block);
    assert_eq!(daemon.client().health().unwrap().policy_digest, after);
    daemon.wait_log("policy reload failed");
}

/// Waits until the file at `path` contains `needle` (the log is written a few milliseconds behind); its text then.
fn wait_file(path: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `--log-file` (the launchd plist's CAVRA_LOG_FILE): the log and the rest of stderr go to the file, and after
/// rotation as newsyslog does it (rename, then a new empty file), or after the file is removed, the daemon writes to
/// a new file at the path, without a signal.
#[test]
fn the_log_file_follows_rotation_without_a_signal() {
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("cavra-runtime.log");
    let mut daemon = Daemon::start(&["--log-file", path.to_str().unwrap()]);
    // Blocks, which are logged one by one (allowed decisions are summarised by default).
    let decide = || {
        daemon
            .client()
            .evaluate(&request(json!({"action_type": "read_file", "target": ".env"})))
            .unwrap()
            .decision_id
    };
    let first = decide();
    wait_file(&path, &first);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640,
        "the daemon creates its log 0640"
    );

    fs::rename(&path, logs.path().join("cavra-runtime.log.0")).unwrap();
    fs::write(&path, "").unwrap();
    let second = decide();
    wait_file(&path, &second);
    fs::remove_file(&path).unwrap();
    let third = decide();
    let current = wait_file(&path, &third);
    let archived = fs::read_to_string(logs.path().join("cavra-runtime.log.0")).unwrap();
    assert!(archived.contains(&first) && !archived.contains(&second), "{archived}");
    assert!(!current.contains(&first) && !current.contains(&second), "{current}");

    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(10)).success());
    wait_file(&path, "stopped");
    assert_eq!(daemon.log(), "", "standard error itself points at the log file");
}

/// Another local user who can write the log's directory plants a symbolic link, then a FIFO, where the rotated log
/// was: the daemon (root) neither appends to the link's target nor hangs on the FIFO; it keeps writing the previous
/// file and says why. (Not sticky: Linux's protected_symlinks and protected_fifos would refuse for the daemon there.)
#[test]
fn another_user_cannot_redirect_or_stall_a_rotated_log() {
    if !common::skip::require_root("the attacker is another user") || !common::skip::require_programs(&["setpriv"]) {
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("cavra-runtime.log");
    // A directory anyone may replace files in is refused outright.
    fs::set_permissions(logs.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let output = common::run(
        &[
            "--serve",
            "--log-file",
            path.to_str().unwrap(),
            "--socket",
            "/nonexistent/s",
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is writable by group or others without the sticky bit"),
        "{stderr}"
    );
    // A shared directory with the sticky bit (like /tmp) is usable: others cannot touch the daemon's file, but they
    // can take the name while rotation has it free.
    fs::set_permissions(logs.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    fs::write(&victim, "root's file\n").unwrap();
    let daemon = Daemon::start(&["--log-file", path.to_str().unwrap()]);
    // Blocks, which are logged one by one (allowed decisions are summarised by default).
    let decide = || {
        daemon
            .client()
            .evaluate(&request(json!({"action_type": "read_file", "target": ".env"})))
            .unwrap()
            .decision_id
    };
    let as_nobody = |args: &[&str]| {
        let status = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "setpriv {args:?}");
    };
    let archive = logs.path().join("cavra-runtime.log.0");
    wait_file(&path, &decide());
    fs::rename(&path, &archive).unwrap();

    as_nobody(&["ln", "-s", victim.to_str().unwrap(), path.to_str().unwrap()]);
    let through_link = decide();
    let text = wait_file(&archive, &through_link);
    assert!(text.contains("is a symbolic link"), "{text}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "root's file\n");

    as_nobody(&["rm", path.to_str().unwrap()]);
    as_nobody(&["mkfifo", path.to_str().unwrap()]);
    let past_fifo = decide();
    let text = wait_file(&archive, &past_fifo);
    assert!(text.contains("is not a regular file"), "{text}");
}

#[test]
fn a_log_file_that_cannot_be_opened_stops_the_daemon_and_once_open_it_takes_stderr() {
    let output = common::run(
        &[
            "--serve",
            "--log-file",
            "/nonexistent/cavra-runtime.log",
            "--socket",
            "/nonexistent/s",
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot open the log file /nonexistent/cavra-runtime.log: cannot inspect /nonexistent: No such file or directory"),
        "{stderr}"
    );

    // Once it is open, standard error is the file: an error that stops the daemon later is written there.
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("cavra-runtime.log");
    let output = common::run(
        &[
            "--serve",
            "--log-file",
            path.to_str().unwrap(),
            "--policy",
            "/nonexistent/policy.json",
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    let log = fs::read_to_string(&path).unwrap();
    assert!(
        log.contains("cavra-runtime: cannot read /nonexistent/policy.json"),
        "{log}"
    );
}

#[test]
fn socket_mode_is_set_before_clients_can_connect() {
    let daemon = Daemon::start(&[]);
    let mode = fs::metadata(&daemon.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let strict = Daemon::start(&["--socket-mode", "0600"]);
    let mode = fs::metadata(&strict.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cavra.sock");
    drop(UnixListener::bind(&socket).unwrap());
    assert!(fs::symlink_metadata(&socket).unwrap().file_type().is_socket());
    let daemon = Daemon::spawn(dir, &[]);
    daemon.wait_notification("READY=1");
    assert_eq!(daemon.client().health().unwrap().status, "ok");
}

#[test]
fn a_live_daemon_on_the_path_is_not_displaced() {
    let first = Daemon::start(&[]);
    let socket = first.socket.to_str().unwrap();
    let output = common::run(&["--serve", "--log-target", "stderr", "--socket", socket], "");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another cavra-runtime is already answering on"),
        "{stderr}"
    );
    assert_eq!(
        first.client().health().unwrap().status,
        "ok",
        "the first daemon still serves"
    );
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cavra.sock");
    fs::write(&path, "precious").unwrap();
    let output = common::run(
        &["--serve", "--log-target", "stderr", "--socket", path.to_str().unwrap()],
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("exists and is not a socket"));
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious");
}

#[test]
fn a_bad_policy_stops_the_daemon_at_start() {
    let output = common::run(
        &[
            "--serve",
            "--log-target",
            "stderr",
            "--policy",
            "/nonexistent/policy.json",
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read /nonexistent/policy.json"));
}

/// The reference's documented usage: `printf '{...}\n' | nc -U SOCK` prints the decision and returns at once.
#[test]
fn netcat_gets_its_answer_and_returns() {
    if !common::skip::require_programs(&["nc"]) {
        return;
    }
    let daemon = Daemon::start(&[]);
    let started = Instant::now();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"printf '{"action_type":"read_file","target":"config/prod.secret"}\n' | nc -U "$0""#)
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "nc waited {:?}",
        started.elapsed()
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["rule_id"], "filesystem.read.allow");
}
