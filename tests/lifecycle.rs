//! `--lifecycle start|status|stop` against the real binary: the daemon runs in the background, holds its PID file
//! locked, and only the lock holder is ever signalled.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// A scratch directory with the socket at `<dir>/run/cavra.sock`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/cavra.sock")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("run/cavra.sock.pid")
    }

    fn lifecycle(&self, action: &str, extra: &[&str]) -> Output {
        let socket = self.socket();
        let mut args = vec!["--lifecycle", action, "--socket", socket.to_str().unwrap()];
        args.extend_from_slice(extra);
        Command::new(common::binary())
            .args(&args)
            .current_dir(self.dir.path())
            .env_remove("JOURNAL_STREAM")
            .env_remove("CAVRA_RUNTIME_SOCKET")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.lifecycle("stop", &["--lifecycle-timeout", "1s"]);
    }
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "not JSON ({error}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Running, not merely a zombie waiting for its adoptive parent to reap it.
fn alive(pid: i64) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Whether `pid` finishes exiting within a few seconds. A daemon releases its PID file lock as it closes its files
/// on the way out, a moment before it is a zombie.
fn exits(pid: i64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

#[test]
fn start_status_stop() {
    let scratch = Scratch::new();
    let started = scratch.lifecycle("start", &[]);
    assert_eq!(
        started.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let status = json(&started);
    assert_eq!(status["running"], true);
    assert_eq!(status["message"], "daemon is running");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let pid = status["pid"].as_i64().unwrap();
    assert!(alive(pid));
    assert_eq!(fs::read_to_string(scratch.pid_file()).unwrap().trim(), pid.to_string());

    let response = common::decide(
        &["--daemon", "--socket", scratch.socket().to_str().unwrap()],
        &serde_json::json!({"action_type": "read_file", "target": ".env"}),
    );
    assert_eq!(response["decision"], "block");

    let status = scratch.lifecycle("status", &[]);
    assert_eq!(status.status.code(), Some(0));
    let status = json(&status);
    assert_eq!(
        (
            status["running"].as_bool(),
            status["process_running"].as_bool(),
            status["socket_responsive"].as_bool()
        ),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(status["pid"], pid);
    assert!(status["uptime_seconds"].is_u64());

    let stopped = scratch.lifecycle("stop", &[]);
    assert_eq!(stopped.status.code(), Some(0));
    assert_eq!(json(&stopped)["message"], "daemon stopped");
    assert!(exits(pid));
    assert!(!scratch.pid_file().exists() && !scratch.socket().exists());

    let status = scratch.lifecycle("status", &[]);
    assert_eq!(status.status.code(), Some(3), "LSB: not running");
    assert_eq!(json(&status)["message"], "daemon is not running");
    let again = scratch.lifecycle("stop", &[]);
    assert_eq!(again.status.code(), Some(0), "stopping nothing is fine");
}

#[test]
fn a_second_start_is_refused_with_the_running_pid() {
    let scratch = Scratch::new();
    let pid = json(&scratch.lifecycle("start", &[]))["pid"].as_i64().unwrap();
    let second = scratch.lifecycle("start", &[]);
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("daemon is already running (pid {pid})")),
        "{stderr}"
    );
    assert!(alive(pid));
}

#[test]
fn a_stale_pid_file_of_a_dead_process_is_reported_and_replaced() {
    let scratch = Scratch::new();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    fs::create_dir_all(scratch.pid_file().parent().unwrap()).unwrap();
    fs::write(scratch.pid_file(), format!("{dead}\n")).unwrap();

    let status = scratch.lifecycle("status", &[]);
    assert_eq!(status.status.code(), Some(1), "LSB: dead with a pid file");
    assert_eq!(
        json(&status)["message"],
        "daemon pid file exists but process is not running"
    );

    let started = scratch.lifecycle("start", &[]);
    assert_eq!(
        started.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    assert!(String::from_utf8_lossy(&started.stderr).contains("removing stale pid file"));
    assert_ne!(json(&started)["pid"], dead);
}

#[test]
fn a_pid_file_naming_an_unrelated_live_process_never_gets_it_signalled() {
    let scratch = Scratch::new();
    let mut bystander = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = bystander.id();
    fs::create_dir_all(scratch.pid_file().parent().unwrap()).unwrap();
    fs::write(scratch.pid_file(), format!("{pid}\n")).unwrap();

    let status = scratch.lifecycle("status", &[]);
    assert_eq!(status.status.code(), Some(1));
    assert_eq!(json(&status)["process_running"], false);
    let stopped = scratch.lifecycle("stop", &[]);
    assert_eq!(stopped.status.code(), Some(0));
    assert_eq!(
        json(&stopped)["message"],
        "daemon was not running; removed its stale pid file"
    );
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander was not signalled"
    );
    assert!(!scratch.pid_file().exists());

    fs::write(scratch.pid_file(), format!("{pid}\n")).unwrap();
    let started = scratch.lifecycle("start", &[]);
    assert_eq!(
        started.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let stopped = scratch.lifecycle("stop", &[]);
    assert_eq!(json(&stopped)["message"], "daemon stopped");
    assert!(bystander.try_wait().unwrap().is_none(), "still not signalled");
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[test]
fn a_daemon_that_cannot_start_fails_the_start_and_shows_why() {
    let scratch = Scratch::new();
    let started = scratch.lifecycle("start", &["--policy", "/nonexistent/policy.json"]);
    assert_eq!(started.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&started.stderr);
    assert!(stderr.contains("daemon exited during start-up"), "{stderr}");
    assert!(stderr.contains("last lines of"), "{stderr}");
    assert!(
        stderr.contains("cannot read /nonexistent/policy.json"),
        "the daemon's own error: {stderr}"
    );
    assert!(!scratch.pid_file().exists(), "cleaned up");
    assert_eq!(scratch.lifecycle("status", &[]).status.code(), Some(3));
}

#[test]
fn a_daemon_that_ignores_sigterm_is_killed_after_the_timeout() {
    let scratch = Scratch::new();
    let pid = json(&scratch.lifecycle("start", &[]))["pid"].as_i64().unwrap();
    // A stopped process cannot act on SIGTERM; SIGKILL still ends it.
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
    let stopped = scratch.lifecycle("stop", &["--lifecycle-timeout", "300ms"]);
    assert_eq!(stopped.status.code(), Some(0));
    assert_eq!(
        json(&stopped)["message"],
        "daemon did not stop within 300ms of SIGTERM; killed"
    );
    assert!(exits(pid));
    assert!(!scratch.pid_file().exists() && !scratch.socket().exists());
}

#[test]
fn probes_leave_no_evidence_records() {
    let scratch = Scratch::new();
    let log = scratch.dir.path().join("evidence.jsonl");
    let started = scratch.lifecycle("start", &["--evidence-log", log.to_str().unwrap()]);
    assert_eq!(
        started.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    for _ in 0..3 {
        assert_eq!(scratch.lifecycle("status", &[]).status.code(), Some(0));
    }
    assert_eq!(scratch.lifecycle("stop", &[]).status.code(), Some(0));
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "",
        "no records from start, status or stop probes"
    );
}

fn groups(pid: i64) -> Vec<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("Groups:")).unwrap();
    line.split_whitespace().skip(1).map(str::to_owned).collect()
}

#[test]
fn user_drops_root_and_its_supplementary_groups() {
    if !common::skip::require_root("dropping to --user") || !common::skip::require_programs(&["setpriv"]) {
        return;
    }
    let scratch = Scratch::new();
    fs::create_dir_all(scratch.socket().parent().unwrap()).unwrap();
    let shared = |path: &Path| {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(0o1777)).unwrap();
    };
    shared(scratch.dir.path());
    shared(scratch.socket().parent().unwrap());
    let socket = scratch.socket();
    // Root with extra supplementary groups starts the daemon as nobody.
    let output = Command::new("setpriv")
        .args(["--groups", "4,27", "--"])
        .arg(common::binary())
        .args([
            "--lifecycle",
            "start",
            "--user",
            "nobody",
            "--socket",
            socket.to_str().unwrap(),
        ])
        .current_dir(scratch.dir.path())
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pid = json(&output)["pid"].as_i64().unwrap();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let uid_line = status.lines().find(|line| line.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|uid| uid == nobody.uid.to_string()),
        "{uid_line}"
    );
    let groups = groups(pid);
    assert!(
        !groups.iter().any(|g| g == "4" || g == "27" || g == "0"),
        "root's groups survived: {groups:?}"
    );
}

/// The usage lines the README shows for running by hand (taken from the seed) work exactly as written.
#[test]
fn readme_usage_lines_work_as_written() {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let block = readme
        .split("<!-- usage:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- usage:end -->").next())
        .expect("README marks its usage block");
    let script: String = block
        .lines()
        .filter(|line| !line.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
    for linked in ["testdata", "examples"] {
        std::os::unix::fs::symlink(repository.join(linked), dir.path().join(linked)).unwrap();
    }
    let bin_dir = Path::new(common::binary()).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("sh")
        .args(["-e", "-x", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("JOURNAL_STREAM")
        .env_remove("CAVRA_RUNTIME_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // A script that failed half-way may leave its daemon running; it must not outlive the test.
    let _ = Command::new(common::binary())
        .args(["--lifecycle", "stop", "--socket", ".cavra/cavra-runtime.sock"])
        .current_dir(dir.path())
        .env_remove("CAVRA_RUNTIME_SOCKET")
        .output();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"daemon stopped\""), "{stdout}");
    assert!(stdout.contains("\"release_governance.approval.approved\""), "{stdout}");
}
