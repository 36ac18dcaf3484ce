//! A drop-in for the Go daemon's users: `--daemon` gets every answer from a server that answers and closes as soon as
//! it has decoded one JSON object (the Go daemon's way), and the command lines of the Go daemon's documentation work
//! unchanged.

mod common;

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::users::Background;
use serde_json::Value;

/// Reads one JSON object and nothing after it, as Go's `json.Decoder` stops at the object's end: the newline that
/// follows is left unread. Returns the object's bytes.
fn read_object(stream: &mut UnixStream) -> Vec<u8> {
    let mut object = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).unwrap_or(0) == 1 {
        object.push(byte[0]);
        match (in_string, escaped, byte[0]) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'{') => depth += 1,
            (false, _, b'}') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    object
}

/// A server that behaves as the Go daemon does: per connection, decode one object, answer it with its target as
/// the reason, close at once. Counts the connections it answered.
fn go_like_server(socket: &Path) -> Arc<AtomicUsize> {
    let listener = UnixListener::bind(socket).unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let request: Value = serde_json::from_slice(&read_object(&mut stream)).unwrap_or_default();
            let answer = serde_json::json!({
                "decision_id": "dec_000000000001", "action_type": request["action_type"], "rule_id": "runtime.default.allow",
                "decision": "allow", "severity": "low", "reason": request["target"],
            });
            if stream.write_all(format!("{answer}\n").as_bytes()).is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    answered
}

#[test]
fn the_daemon_mode_gets_every_answer_from_a_server_that_closes_once_it_has_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("go.sock");
    let answered = go_like_server(&socket);
    for index in 0..300 {
        let target = format!("src/module_{index}.rs");
        let request = serde_json::json!({"action_type": "read_file", "target": target});
        let output = common::run(
            &["--daemon", "--socket", socket.to_str().unwrap()],
            &format!("{request}\n"),
        );
        assert!(
            output.status.success(),
            "request {index}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(answer["reason"], target.as_str(), "request {index}");
        assert_eq!(answer["decision"], "allow");
    }
    assert_eq!(answered.load(Ordering::SeqCst), 300);
}

/// The race the Go daemon loses clients to (it closes once it has the object, before a separate newline arrives) is
/// too rare to catch by repetition, so the system calls are counted: the request, newline included, leaves in one.
#[test]
fn the_daemon_mode_sends_its_request_in_one_system_call() {
    if !common::skip::require_programs(&["strace"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("go.sock");
    let answered = go_like_server(&socket);
    let trace = dir.path().join("trace");
    let request = r#"{"action_type":"read_file","target":"src/lib.rs"}"#;
    let output = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-s",
            "65536",
            "-e",
            "trace=write,writev,sendto,sendmsg",
            "-o",
        ])
        .arg(&trace)
        .arg(common::binary())
        .args(["--daemon", "--socket", socket.to_str().unwrap()])
        .env_remove("CAVRA_RUNTIME_SOCKET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{request}\n").as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(answered.load(Ordering::SeqCst), 1);
    let trace = fs::read_to_string(&trace).unwrap();
    // strace writes the bytes as a C string: quotes escaped, the newline as \n.
    let printed = |line: &str| ["write(1,", "write(2,"].iter().any(|call| line.contains(call));
    let sends: Vec<&str> = trace
        .lines()
        .filter(|line| line.contains("action_type") && !printed(line))
        .collect();
    assert_eq!(
        sends.len(),
        1,
        "the request left in {} system calls:\n{trace}",
        sends.len()
    );
    assert!(
        sends[0].contains(r#"\"target\":\"src/lib.rs\"}\n""#),
        "the newline left with the object: {}",
        sends[0]
    );
}

/// The Go daemon's documented command lines (its "Go Daemon Transport" page), with `go run ./cmd/cavra-runtime`
/// replaced by the installed binary, run from the Go module's directory as that page says (`cd go/cavra-runtime`).
const SERVE: &str = "cavra-runtime --serve --socket .cavra/cavra-runtime.sock --policy testdata/compiled_policy.json";
const NC: &str = r#"printf '{"action_type":"read_file","target":"config/prod.secret"}\n' \
  | nc -U .cavra/cavra-runtime.sock"#;
const ASK: &str = r#"printf '{"action_type":"execute_command","target":"terraform plan","requested_operation":"terraform plan"}\n' \
  | cavra-runtime --daemon --socket .cavra/cavra-runtime.sock"#;
const START: &str =
    "cavra-runtime --lifecycle start --socket .cavra/cavra-runtime.sock --policy testdata/compiled_policy.json";
const STATUS: &str = "cavra-runtime --lifecycle status --socket .cavra/cavra-runtime.sock";
const STOP: &str = "cavra-runtime --lifecycle stop --socket .cavra/cavra-runtime.sock";
const SERVE_WITH_EVIDENCE: &str =
    "cavra-runtime --serve --socket .cavra/cavra-runtime.sock --evidence-log .cavra/go-daemon/evidence.jsonl";
const START_WITH_EVIDENCE: &str = "cavra-runtime --lifecycle start \\
  --socket .cavra/cavra-runtime.sock \\
  --evidence-log .cavra/go-daemon/release-governance-evidence.jsonl";
const ASK_TYPED: &str = "cavra-runtime --daemon \\
  --socket .cavra/cavra-runtime.sock \\
  --input ../../examples/go-runtime/typed-release-governance/approved-promotion.json";

/// The Go repository's layout around `go/cavra-runtime`, with this project's compiled policy and example request
/// where the Go page expects its own.
struct GoCheckout {
    dir: tempfile::TempDir,
}

impl GoCheckout {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("go/cavra-runtime");
        let examples = dir.path().join("examples/go-runtime/typed-release-governance");
        fs::create_dir_all(module.join("testdata")).unwrap();
        fs::create_dir_all(&examples).unwrap();
        fs::copy(
            common::testdata("policies/compiled-fixture.json"),
            module.join("testdata/compiled_policy.json"),
        )
        .unwrap();
        let repository = Path::new(env!("CARGO_MANIFEST_DIR"));
        fs::copy(
            repository.join("examples/typed-release-governance/approved-promotion.json"),
            examples.join("approved-promotion.json"),
        )
        .unwrap();
        Self { dir }
    }

    fn module(&self) -> std::path::PathBuf {
        self.dir.path().join("go/cavra-runtime")
    }

    fn shell(&self, line: &str) -> Command {
        let bin_dir = Path::new(common::binary()).parent().unwrap();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new("sh");
        command
            .args(["-e", "-c", line])
            .current_dir(self.module())
            .env("PATH", path)
            .env_remove("JOURNAL_STREAM")
            .env_remove("CAVRA_RUNTIME_SOCKET")
            .stdin(Stdio::null());
        command
    }

    /// Runs `line` to its end; panics with its output unless it succeeded.
    fn run(&self, line: &str) -> Output {
        let output = self.shell(line).output().unwrap();
        assert!(
            output.status.success(),
            "{line}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Starts `line` (a foreground daemon, run in its own terminal on the Go page) and waits until it answers.
    fn background(&self, line: &str) -> Background {
        let daemon = Background::spawn(self.shell(&format!("exec {line}")));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.shell(STATUS).output().unwrap().status.code() != Some(0) {
            assert!(Instant::now() < deadline, "{line} did not start answering");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }
}

impl Drop for GoCheckout {
    /// No daemon outlives a failed test.
    fn drop(&mut self) {
        let _ = self.shell(STOP).output();
    }
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn the_go_daemon_documented_command_lines_work_unchanged() {
    if !common::skip::require_programs(&["nc"]) {
        return;
    }
    let checkout = GoCheckout::new();

    // Start the daemon; send a contract-shaped request; use the client mode.
    let mut serving = checkout.background(SERVE);
    let answer = json(&checkout.run(NC));
    assert_eq!(
        (&answer["decision"], &answer["policy_pack"]),
        (&Value::from("block"), &Value::from("cavra-rs-compiled-fixture")),
        "{answer}"
    );
    let answer = json(&checkout.run(ASK));
    assert_eq!(
        (&answer["decision"], &answer["rule_id"]),
        (
            &Value::from("require_approval"),
            &Value::from("commands.default.require_approval")
        ),
        "the fixture allows no terraform command: {answer}"
    );
    let status = json(&checkout.run(STATUS));
    assert_eq!(
        (&status["running"], &status["process_running"], &status["pid"]),
        (&Value::from(true), &Value::from(true), &Value::from(serving.id())),
        "a daemon started with plain --serve: {status}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serving.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(serving.0.wait().unwrap().success());

    // Manage the daemon lifecycle.
    let started = json(&checkout.run(START));
    assert_eq!(started["running"], true, "{started}");
    let status = json(&checkout.run(STATUS));
    assert_eq!(status["message"], "daemon is running", "{status}");
    assert_eq!(json(&checkout.run(STOP))["message"], "daemon stopped");

    // Write daemon evidence records.
    let mut serving = checkout.background(SERVE_WITH_EVIDENCE);
    let answer = json(&checkout.run(ASK));
    let evidence_ref = answer["evidence_refs"]
        .as_array()
        .and_then(|refs| refs.last())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    assert!(evidence_ref.starts_with("go-daemon-evidence://"), "{answer}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serving.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(serving.0.wait().unwrap().success());
    let log = fs::read_to_string(checkout.module().join(".cavra/go-daemon/evidence.jsonl")).unwrap();
    assert!(
        log.contains(evidence_ref.trim_start_matches("go-daemon-evidence://")),
        "{log}"
    );

    // Evaluate a typed release-governance request.
    checkout.run(START_WITH_EVIDENCE);
    let answer = json(&checkout.run(ASK_TYPED));
    assert_eq!(
        (&answer["decision"], &answer["rule_id"]),
        (
            &Value::from("allow"),
            &Value::from("release_governance.approval.approved")
        ),
        "{answer}"
    );
    assert_eq!(json(&checkout.run(STOP))["message"], "daemon stopped");
    let log = checkout
        .module()
        .join(".cavra/go-daemon/release-governance-evidence.jsonl");
    assert_eq!(
        fs::read_to_string(log).unwrap().lines().count(),
        1,
        "the decision, and no probe"
    );
}
