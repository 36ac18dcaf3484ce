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

/// A stand-in for the Go daemon, as a separate process: it writes its pid to its PID file without locking it,
/// listens on the socket, answers each request with a decision (it has no health probe) and closes, and on SIGTERM
/// removes its socket and exits. It appends each request it decides to `<PID file>.requests`, as the Go daemon
/// records them as evidence. `silent` accepts connections and never answers.
const GO_DAEMON: &str = r#"
import json, os, signal, socket, sys
path, pid_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(os.path.dirname(path), exist_ok=True)
listener = socket.socket(socket.AF_UNIX)
listener.bind(path)
listener.listen(64)
def stop(*_):
    os.unlink(path)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
with open(pid_path + ".tmp", "w") as pid_file:
    pid_file.write(f"{os.getpid()}\n")
os.rename(pid_path + ".tmp", pid_path)
held = []
while True:
    connection, _ = listener.accept()
    if mode == "silent":
        held.append(connection)
        continue
    data = b""
    while True:
        chunk = connection.recv(4096)
        if not chunk:
            break
        data += chunk
        try:
            json.JSONDecoder().raw_decode(data.decode().lstrip())
            break
        except ValueError:
            continue
    if data.strip():
        with open(pid_path + ".requests", "ab") as requests:
            requests.write(data.strip() + b"\n")
        answer = {"decision": "allow", "rule_id": "runtime.default.allow", "severity": "low", "reason": "go"}
        connection.sendall(json.dumps(answer).encode() + b"\n")
    connection.close()
"#;

/// Starts the Go daemon's stand-in on the scratch socket and waits until its PID file names it.
fn go_daemon(scratch: &Scratch, mode: &str) -> common::users::Background {
    let mut command = Command::new(common::users::PYTHON);
    command.args([
        "-c",
        GO_DAEMON,
        scratch.socket().to_str().unwrap(),
        scratch.pid_file().to_str().unwrap(),
        mode,
    ]);
    let daemon = common::users::Background::spawn(command);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let written = || fs::read_to_string(scratch.pid_file()).ok();
    while written().as_deref().map(str::trim) != Some(daemon.id().to_string().as_str()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the Go daemon's stand-in did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    daemon
}

fn running_fields(status: &Value) -> (Option<bool>, Option<bool>, Option<bool>, Option<i64>) {
    (
        status["running"].as_bool(),
        status["process_running"].as_bool(),
        status["socket_responsive"].as_bool(),
        status["pid"].as_i64(),
    )
}

#[test]
fn a_daemon_whose_pid_file_has_no_lock_is_recognised_by_the_process_on_its_socket_and_stopped() {
    if !common::skip::require_file(Path::new(common::users::PYTHON)) {
        return;
    }
    let scratch = Scratch::new();
    let mut go = go_daemon(&scratch, "answering");
    let pid = i64::from(go.id());

    let status = scratch.lifecycle("status", &[]);
    assert_eq!(status.status.code(), Some(0), "LSB: running");
    let status = json(&status);
    assert_eq!(
        running_fields(&status),
        (Some(true), Some(true), Some(true), Some(pid)),
        "{status}"
    );
    assert_eq!(status["message"], "daemon is running");

    let start = scratch.lifecycle("start", &[]);
    assert_eq!(start.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&start.stderr);
    assert!(
        stderr.contains(&format!("daemon is already running (pid {pid})")),
        "{stderr}"
    );
    assert!(go.is_running() && scratch.pid_file().exists() && scratch.socket().exists());

    let stopped = scratch.lifecycle("stop", &[]);
    assert_eq!(
        stopped.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let stopped = json(&stopped);
    assert_eq!(stopped["message"], "daemon stopped");
    // Status asked it one health probe, which a Go daemon decides and records; start and stop asked nothing.
    let requests = fs::read_to_string(format!("{}.requests", scratch.pid_file().display())).unwrap();
    assert_eq!(requests, "{\"action_type\":\"cavra.health\"}\n");
    assert_eq!(
        running_fields(&stopped),
        (Some(false), Some(false), Some(false), None),
        "{stopped}"
    );
    let exit = go.0.wait().unwrap();
    assert!(exit.success(), "stopped by SIGTERM, its handler ran: {exit:?}");
    assert!(!scratch.pid_file().exists() && !scratch.socket().exists());
}

#[test]
fn a_socket_served_by_another_process_than_the_pid_file_names_is_never_removed() {
    if !common::skip::require_file(Path::new(common::users::PYTHON)) {
        return;
    }
    let scratch = Scratch::new();
    let mut go = go_daemon(&scratch, "answering");
    let mut bystander = common::users::Background::spawn({
        let mut sleep = Command::new("sleep");
        sleep.arg("30");
        sleep
    });
    fs::write(scratch.pid_file(), format!("{}\n", bystander.id())).unwrap();

    let status = scratch.lifecycle("status", &[]);
    assert_eq!(status.status.code(), Some(0));
    let status = json(&status);
    assert_eq!(
        running_fields(&status),
        (Some(true), Some(true), Some(true), Some(i64::from(go.id()))),
        "the process on the socket: {status}"
    );
    assert!(
        status["message"].as_str().unwrap().contains(&format!(
            "pid file {} is stale (pid {} is not the daemon)",
            scratch.pid_file().display(),
            bystander.id()
        )),
        "{status}"
    );

    for action in ["stop", "start"] {
        let output = scratch.lifecycle(action, &[]);
        assert_eq!(output.status.code(), Some(1), "{action}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "pid file {} names pid {}, but pid {} listens on {}; nothing was signalled or removed",
                scratch.pid_file().display(),
                bystander.id(),
                go.id(),
                scratch.socket().display()
            )),
            "{action}: {stderr}"
        );
        assert!(go.is_running() && bystander.is_running(), "{action}");
        assert!(scratch.pid_file().exists() && scratch.socket().exists(), "{action}");
    }
}

#[test]
fn a_live_daemon_whose_socket_does_not_answer_is_reported_consistently() {
    if !common::skip::require_file(Path::new(common::users::PYTHON)) {
        return;
    }
    let scratch = Scratch::new();
    let go = go_daemon(&scratch, "silent");
    let status = scratch.lifecycle("status", &["--lifecycle-timeout", "300ms"]);
    assert_eq!(status.status.code(), Some(4), "LSB: process up, service not answering");
    let status = json(&status);
    assert_eq!(
        running_fields(&status),
        (Some(false), Some(true), Some(false), Some(i64::from(go.id()))),
        "{status}"
    );
    assert_eq!(
        status["message"],
        "daemon process is running but its socket does not answer"
    );
}

#[test]
fn a_daemon_started_with_plain_serve_is_reported_as_the_process_it_is_and_left_alone() {
    let scratch = Scratch::new();
    fs::create_dir_all(scratch.socket().parent().unwrap()).unwrap();
    let mut serving = common::users::Background::spawn({
        let mut serve = Command::new(common::binary());
        serve
            .args(["--serve", "--log-target", "stderr", "--socket"])
            .arg(scratch.socket())
            .env_remove("JOURNAL_STREAM");
        serve
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let output = scratch.lifecycle("status", &[]);
        if output.status.code() == Some(0) {
            break json(&output);
        }
        assert!(std::time::Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        running_fields(&status),
        (Some(true), Some(true), Some(true), Some(i64::from(serving.id()))),
        "no live pid beside process_running false: {status}"
    );

    let stopped = scratch.lifecycle("stop", &[]);
    assert_eq!(stopped.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&stopped.stderr).contains("a daemon not started by --lifecycle"),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert!(serving.is_running() && scratch.socket().exists());
}

#[test]
fn a_start_as_another_user_by_a_user_who_is_not_root_fails_at_once_saying_why() {
    if !common::users::can_switch_users() {
        return;
    }
    let dir = common::users::directory(0o1777);
    let started = std::time::Instant::now();
    let output = common::users::nobody(
        common::binary(),
        &[
            "--lifecycle",
            "start",
            "--user",
            "root",
            "--socket",
            dir.path().join("run/cavra.sock").to_str().unwrap(),
        ],
    )
    .current_dir(dir.path())
    .output()
    .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "cavra-runtime: --user root: only root can start the daemon as another user, and this is nobody (uid \
         65534); run the start as root, or leave out --user (and --group) to run the daemon as yourself\n"
    );
    assert!(!dir.path().join("run").exists(), "nothing was created");
}
