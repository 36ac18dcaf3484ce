//! System tests of the service-manager integration: each scenario script in `tests/system/` runs the freshly built
//! binary under a real, throwaway `systemd --user` manager and journald, inside a private mount namespace, against
//! the shipped units in `packaging/systemd/user/`. See `tests/system/lib/common.sh` for how a scenario is set up.
//!
//! They need root, `unshare` and systemd's binaries. Without them they skip loudly (see `tests/common/skip.rs`),
//! except under CI (`CI=true`), where a missing prerequisite fails the test instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use common::skip::{self, on_path};

/// Per-scenario limit; `timeout` signals the script's whole process group (manager, journald, daemon) when it hits.
const SCENARIO_TIMEOUT_SECONDS: &str = "120";

/// The scenarios measure time (watchdog intervals, readiness delays); running them one at a time keeps a loaded
/// machine from turning scheduling delays into failures. They would be safe in parallel otherwise: each has its own
/// mount namespace, cgroup, journald, manager and scratch directory.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const PROGRAMS: [&str; 4] = ["timeout", "unshare", "systemctl", "journalctl"];
const FILES: [&str; 3] = [
    "/lib/systemd/systemd",
    "/lib/systemd/systemd-journald",
    "/usr/bin/python3",
];

/// Why the scenarios cannot run here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("the systemd system tests need root (they mount, and create cgroups)".to_owned());
    }
    if let Some(program) = PROGRAMS.iter().find(|program| !on_path(program)) {
        return Some(format!("{program} is not installed"));
    }
    if let Some(file) = FILES.iter().find(|file| !Path::new(file).exists()) {
        return Some(format!("{file} is missing"));
    }
    match Command::new("unshare").args(["-m", "true"]).output() {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!(
            "`unshare -m` does not work here: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => Some(format!("cannot run unshare: {error}")),
    }
}

/// Runs `tests/system/<name>.sh` as `timeout N unshare -m bash <script> <binary>` and asserts it passes.
fn scenario(name: &str) {
    if let Some(why) = missing_prerequisite() {
        skip::skip(&why);
        return;
    }
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "system", &format!("{name}.sh")]
        .iter()
        .collect();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let output = Command::new("timeout")
        .args(["--kill-after=10", SCENARIO_TIMEOUT_SECONDS, "unshare", "-m", "bash"])
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_cavra-runtime"))
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with --nocapture, and by the test harness for a failing test.
    println!("{stdout}");
    eprintln!("{stderr}");
    let verdict = match output.status.code() {
        Some(0) => return eprintln!("{name}: passed in {:.1} s", took.as_secs_f64()),
        Some(124) => format!("timed out after {SCENARIO_TIMEOUT_SECONDS} s"),
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    };
    panic!(
        "system test {name} {verdict} after {:.1} s\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        took.as_secs_f64()
    );
}

#[test]
fn user_socket_activation_starts_the_daemon_on_the_first_request() {
    scenario("user-socket-activation");
}

#[test]
fn user_start_returns_only_once_the_daemon_is_ready() {
    scenario("user-notify-ready");
}

#[test]
fn user_watchdog_kills_a_frozen_daemon() {
    scenario("user-watchdog");
}

#[test]
fn user_reload_applies_a_new_policy_and_keeps_the_old_one_when_broken() {
    scenario("user-reload");
}

#[test]
fn user_stop_exits_cleanly_and_the_socket_reactivates() {
    scenario("user-stop");
}

#[test]
fn user_restart_under_load_answers_every_request() {
    scenario("user-restart-under-load");
}

#[test]
fn user_journald_decisions_are_found_by_field() {
    scenario("user-journald");
}
