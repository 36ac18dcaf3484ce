//! Health tells the truth: each degraded or failing state driven for real (a full evidence file system, a reload
//! that fails, the connection limit nearly reached) shows in the health answer, in `--lifecycle status`, in the
//! service manager's STATUS= line and in the metrics, and clears when its cause does. (The runner OIDC key set that
//! cannot be fetched is in tests/runner_auth.rs, beside its helpers.)

mod common;

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

fn health(daemon: &Daemon) -> Value {
    daemon.client().health_as::<Value>().unwrap().0
}

/// The health answer's status and its reasons' codes.
fn summary(health: &Value) -> (String, Vec<String>) {
    (
        health["status"].as_str().unwrap().to_owned(),
        health["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|reason| reason["code"].as_str().unwrap().to_owned())
            .collect(),
    )
}

/// Waits (10 s at most) until the health answer's summary is `expected`; the answer then.
fn wait_health(daemon: &Daemon, expected: (&str, &[&str])) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = health(daemon);
        let (status, codes) = summary(&answer);
        if status == expected.0 && codes == expected.1 {
            return answer;
        }
        assert!(Instant::now() < deadline, "health never became {expected:?}: {answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metrics(daemon: &Daemon) -> String {
    let output = Command::new(common::binary())
        .args(["--metrics", "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn lifecycle_status(socket: &Path) -> Value {
    let output = Command::new(common::binary())
        .args(["--lifecycle", "status", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "--lifecycle status ({error}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn write_pack(dir: &Path, blocked: &str) {
    fs::create_dir_all(dir.join("site")).unwrap();
    fs::write(
        dir.join("site/policy.yaml"),
        format!("metadata:\n  id: site\nfilesystem:\n  block_read:\n    - \"{blocked}\"\n"),
    )
    .unwrap();
}

#[test]
fn a_failed_reload_degrades_health_everywhere_until_a_reload_works() {
    let packs = tempfile::tempdir().unwrap();
    write_pack(packs.path(), "secret.txt");
    let daemon = Daemon::start(&["--policy-dir", packs.path().to_str().unwrap(), "--default-pack", "site"]);
    assert_eq!(summary(&health(&daemon)), ("ok".to_owned(), vec![]));

    fs::write(packs.path().join("site/policy.yaml"), "metadata: [unterminated\n").unwrap();
    daemon.signal(Signal::SIGHUP);
    let status = daemon.wait_notification("STATUS=degraded");
    assert!(
        status.contains("STATUS=degraded: reload.failed: reload failed, previous policy still in force since "),
        "{status}"
    );
    let answer = wait_health(&daemon, ("degraded", &["reload.failed"]));
    let message = answer["reasons"][0]["message"].as_str().unwrap();
    assert!(message.contains("site/policy.yaml"), "{message}");
    assert_eq!(answer["reasons"][0]["status"], "degraded");
    assert_eq!(answer["last_reload"]["result"], "failure");
    let text = metrics(&daemon);
    for line in [
        "cavra_health_status{status=\"degraded\"} 1",
        "cavra_health_status{status=\"ok\"} 0",
        "cavra_health_reason{code=\"reload.failed\",status=\"degraded\"} 1",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    let status = lifecycle_status(&daemon.socket);
    assert_eq!(status["health"], "degraded", "{status}");
    assert_eq!(status["reasons"][0]["code"], "reload.failed", "{status}");

    write_pack(packs.path(), "notes.txt");
    daemon.signal(Signal::SIGHUP);
    daemon.wait_notification("STATUS=serving ");
    wait_health(&daemon, ("ok", &[]));
    assert!(metrics(&daemon).contains("cavra_health_status{status=\"ok\"} 1"));
    assert_eq!(lifecycle_status(&daemon.socket)["health"], "ok");
}

#[test]
fn connections_near_the_limit_degrade_health_until_they_close() {
    let daemon = Daemon::start(&["--max-connections", "10", "--request-timeout", "30s"]);
    // Nine idle connections (no request yet) and the probe's own: 10 of 10.
    let held: Vec<UnixStream> = (0..9).map(|_| UnixStream::connect(&daemon.socket).unwrap()).collect();
    let answer = wait_health(&daemon, ("degraded", &["connections.near_limit"]));
    assert!(
        answer["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("of the 10 connections --max-connections allows are open"),
        "{answer}"
    );
    daemon.wait_notification("STATUS=degraded: connections.near_limit: ");
    drop(held);
    wait_health(&daemon, ("ok", &[]));
    daemon.wait_notification("STATUS=serving ");
}

/// A real full file system: a 512 KiB tmpfs for the evidence log, in a private mount namespace around the daemon,
/// filled up and emptied again. Needs root (CI runs as root).
#[test]
fn a_full_evidence_file_system_is_degraded_then_failing_and_clears() {
    if !common::skip::require_root("the evidence file system is a tmpfs mounted for the daemon")
        || !common::skip::require_programs(&["unshare", "nsenter"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("evidence");
    fs::create_dir(&mount).unwrap();
    let log = mount.join("log.jsonl");
    let script = format!(
        "mount -t tmpfs -o size=512k cavra-health {} && exec \"$0\" \"$@\"",
        mount.display()
    );
    let daemon = Daemon::launch(
        dir,
        &["unshare", "--mount", "--propagation", "private", "sh", "-c", &script],
        &["--evidence-log", log.to_str().unwrap(), "--evidence-min-free", "50%"],
        &[],
    );
    daemon.wait_notification("READY=1");
    let in_namespace = |command: &str| {
        Command::new("nsenter")
            .args(["--target", &daemon.pid().to_string(), "--mount", "sh", "-c", command])
            .status()
            .unwrap()
            .success()
    };
    let ask = |index: usize| {
        daemon
            .client()
            .evaluate_raw(
                &serde_json::from_value(
                    json!({"action_type": "read_file", "target": ".env", "session_id": format!("s{index}")}),
                )
                .unwrap(),
            )
            .unwrap()
    };
    assert_eq!(ask(0).rule_id, "filesystem.read.block");
    assert_eq!(summary(&health(&daemon)).0, "ok");

    // Full: below --evidence-min-free at once, and the next record that needs a new page fails.
    let filler: PathBuf = mount.join("filler");
    in_namespace(&format!(
        "dd if=/dev/zero of={} bs=4k 2>/dev/null; true",
        filler.display()
    ));
    let refused = (1..300)
        .map(ask)
        .find(|answer| answer.rule_id == "daemon.evidence.unavailable")
        .expect("a full file system refuses a record");
    assert_eq!(refused.decision.as_str(), "block");
    let answer = wait_health(&daemon, ("failing", &["evidence.unavailable", "evidence.low_space"]));
    assert_eq!(answer["reasons"][0]["status"], "failing");
    assert!(
        answer["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{answer}"
    );
    daemon.wait_notification("STATUS=failing: evidence.unavailable: ");
    let text = metrics(&daemon);
    assert!(text.contains("cavra_health_status{status=\"failing\"} 1"), "{text}");
    assert!(
        text.contains("cavra_health_reason{code=\"evidence.unavailable\",status=\"failing\"} 1"),
        "{text}"
    );
    assert_eq!(lifecycle_status(&daemon.socket)["health"], "failing");

    // Room again: the next decision is recorded, and health clears once the free space is looked at again.
    assert!(in_namespace(&format!("rm {}", filler.display())));
    assert_eq!(ask(1000).rule_id, "filesystem.read.block");
    wait_health(&daemon, ("ok", &[]));
    daemon.wait_notification("STATUS=serving ");
}
