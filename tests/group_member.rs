//! What a member of a group the daemon admits can, and cannot, do to the host (issue 21). The daemon admits the
//! group `users::MEMBER_GROUP` (`--allow-group`) and root; the attacker is `nobody` with that group as a
//! supplementary group, a bystander another such member, both through `setpriv`. Each test prints the figures it measured (docs/robustness.md has them).
//!
//! - Records are bounded: a field past its maximum is refused, naming the field, and nothing is recorded; a record
//!   stores the target no more often than the reference's format does.
//! - One peer's evidence is held to its byte rate, and its decisions (and so its log lines) to its decision rate,
//!   while another member is answered.
//! - With `--log-decisions non-allow` (the default) allowed decisions are summarised, and the journal cross-check
//!   still anchors the chain with the summaries.
//! - Every record names the peer that asked.
//!
//! Keys from the environment are tested in tests/env_keys.rs, disk headroom in tests/evidence_daemon.rs, purge in
//! tests/packaging.rs and the system scenarios.

mod common;

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::users::{self, BYSTANDER, Background, MEMBER_GROUP, NOBODY};
use serde_json::{Value, json};

/// The evidence budget the byte-flood test sets (--max-evidence-bytes-per-second-per-uid,
/// --evidence-burst-bytes-per-uid): a quarter and an eighth of the defaults, so that even a flood slowed by a busy
/// machine outruns it.
const EVIDENCE_RATE: f64 = 256.0 * 1024.0;
const EVIDENCE_BURST: f64 = 1024.0 * 1024.0;
/// The defaults of --max-decisions-per-second-per-uid and --decision-burst-per-uid.
const DECISION_RATE: f64 = 100.0;
const DECISION_BURST: f64 = 1000.0;
/// The largest target a request may carry (docs/protocol.md).
const MAX_TARGET: usize = 8 * 1024;

/// A daemon that answers the member group and root, on a socket every local user can reach (so only the
/// allow-lists decide), recording evidence and logging JSON lines.
fn member_daemon(args: &[&str]) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("evidence.jsonl");
    let group = MEMBER_GROUP.to_string();
    let mut all = vec![
        "--socket-mode",
        "0666",
        "--allow-group",
        &group,
        "--allow-uid",
        "0",
        "--log-format",
        "json",
        "--evidence-log",
        log.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let daemon = Daemon::launch(dir, &[], &all, &[]);
    daemon.wait_notification("READY=1");
    fs::set_permissions(daemon.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    daemon
}

fn evidence_path(daemon: &Daemon) -> std::path::PathBuf {
    daemon.path("evidence.jsonl")
}

/// The evidence log's records, parsed, and each line's length (with its newline).
fn records(daemon: &Daemon) -> Vec<(Value, usize)> {
    fs::read_to_string(evidence_path(daemon))
        .unwrap_or_default()
        .lines()
        .map(|line| (serde_json::from_str(line).unwrap(), line.len() + 1))
        .collect()
}

/// The daemon's JSON log lines.
fn log_lines(daemon: &Daemon) -> Vec<Value> {
    daemon
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// One request on a new connection, as `uid` of the member group; the answer.
fn ask_as_member(daemon: &Daemon, uid: u32, request: &str) -> Value {
    let output = users::member(
        uid,
        users::PYTHON,
        &["-c", ASK, daemon.socket.to_str().unwrap(), request],
    )
    .output()
    .unwrap();
    assert!(
        output.status.success(),
        "as uid {uid}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Sends argv[2] on a new connection and prints the answer line.
const ASK: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
s.shutdown(socket.SHUT_WR)
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode())
"#;

/// Floods one stream-mode connection with argv[2] for argv[3] seconds, argv[4] requests at a time (few enough that
/// their answers fit the socket's buffers while it sends); prints the answers' rule ids with their counts and the
/// time taken.
const FLOOD: &str = r#"
import json, socket, sys, time
path, request, seconds = sys.argv[1], sys.argv[2].encode() + b"\n", float(sys.argv[3])
batch = int(sys.argv[4])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(path)
f = s.makefile("rb")
s.sendall(b'{"protocol":"cavra.ndjson.v1"}\n')
f.readline()
rules, answered = {}, 0
started = time.time()
while time.time() - started < seconds:
    s.sendall(request * batch)
    for _ in range(batch):
        rule = json.loads(f.readline()).get("rule_id", "none")
        rules[rule] = rules.get(rule, 0) + 1
        answered += 1
elapsed = time.time() - started
print(json.dumps({"answered": answered, "rules": rules, "seconds": elapsed}), flush=True)
"#;

/// Asks for argv[2] every 100 ms on a new connection until its stdin closes; prints each answer's rule id and how
/// long it took, one JSON line at the end.
const BYSTANDER_LOOP: &str = r#"
import json, select, socket, sys, time
path, request = sys.argv[1], sys.argv[2].encode() + b"\n"
answers = []
while not select.select([sys.stdin], [], [], 0.1)[0]:
    started = time.time()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(request)
    s.shutdown(socket.SHUT_WR)
    answer = json.loads(s.makefile("rb").readline())
    s.close()
    answers.append([answer.get("rule_id"), time.time() - started])
print(json.dumps(answers), flush=True)
"#;

/// A member asking now and then while a test runs; its answers, when stopped.
struct Bystander {
    process: Background,
    stdin: Option<std::process::ChildStdin>,
}

impl Bystander {
    fn start(daemon: &Daemon, request: &str) -> Bystander {
        let mut child = users::member(
            BYSTANDER,
            users::PYTHON,
            &["-c", BYSTANDER_LOOP, daemon.socket.to_str().unwrap(), request],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
        let stdin = child.stdin.take();
        Bystander {
            process: Background(child),
            stdin,
        }
    }

    /// Stops it; each answer's rule id and latency.
    fn stop(mut self) -> Vec<(String, Duration)> {
        drop(self.stdin.take());
        let mut out = String::new();
        self.process.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let answers: Vec<(Option<String>, f64)> = serde_json::from_str(out.trim()).unwrap();
        answers
            .into_iter()
            .map(|(rule, seconds)| (rule.unwrap_or_default(), Duration::from_secs_f64(seconds)))
            .collect()
    }
}

/// The bystander was answered every time, with a decision (not a refusal), promptly; the slowest answer.
fn served(answers: &[(String, Duration)], rule: &str) -> Duration {
    assert!(answers.len() >= 10, "the bystander asked only {} times", answers.len());
    for (got, _) in answers {
        assert_eq!(got, rule, "the bystander was not served: {answers:?}");
    }
    let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
    assert!(slowest < Duration::from_secs(2), "the bystander waited {slowest:?}");
    slowest
}

/// Runs FLOOD as `nobody` in the member group, 64 requests at a time; its report.
fn flood(daemon: &Daemon, request: &str, seconds: f64) -> Value {
    let seconds = seconds.to_string();
    let output = users::member(
        NOBODY,
        users::PYTHON,
        &["-c", FLOOD, daemon.socket.to_str().unwrap(), request, &seconds, "64"],
    )
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn uid_of(record: &Value) -> Option<u64> {
    record["peer"]["uid"].as_u64()
}

#[test]
fn fields_past_their_maximum_are_refused_by_name_and_a_record_stores_the_target_as_the_reference_does() {
    if !users::can_attack_with_python() {
        return;
    }
    let daemon = member_daemon(&[]);
    let oversized = [
        (
            json!({"action_type": "execute_command", "target": "x".repeat(MAX_TARGET + 1)}),
            "field `target` is 8193 bytes; at most 8192 are accepted",
        ),
        (
            json!({"action_type": "read_file", "target": "README.md",
                   "runner_auth": {"identity": {"provider": "p", "repository": "r".repeat(513)}}}),
            "field `runner_auth.identity.repository` is 513 bytes; at most 512 are accepted",
        ),
        (
            json!({"action_type": "release_governance_record",
                   "record": {"metadata_kind": "release-channel-promotion-request", "note": "n".repeat(20_000)}}),
            "field `record` is 20063 bytes; at most 16384 are accepted",
        ),
    ];
    for (request, said) in &oversized {
        let answer = ask_as_member(&daemon, NOBODY, &request.to_string());
        assert_eq!(
            (&answer["decision"], &answer["rule_id"]),
            (&json!("block"), &json!("daemon.request.too_large")),
            "{answer}"
        );
        let reason = answer["reason"].as_str().unwrap();
        assert!(reason.contains(said), "{reason}");
    }
    // The whole request is bounded too, before anything is parsed: 64 KiB by default.
    let huge = json!({"action_type": "read_file", "target": "a", "padding": "p".repeat(70_000)});
    let answer = ask_as_member(&daemon, NOBODY, &huge.to_string());
    assert_eq!(answer["rule_id"], "daemon.request.too_large", "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("65536-byte limit (--max-request-bytes)"),
        "{answer}"
    );
    assert!(records(&daemon).is_empty(), "a refused request is not recorded");
    let refusals = daemon.wait_log("refused a request with a field past its maximum");
    assert!(refusals.contains(r#""field":"target""#), "{refusals}");

    // A command at the maximum is decided and recorded. The reference's format stores it three times (the
    // request's target, the response's target and requested_operation); nothing else repeats it.
    let command = format!("pytest {}", "k".repeat(MAX_TARGET - "pytest ".len()));
    let request = json!({"action_type": "execute_command", "target": command});
    let answer = ask_as_member(&daemon, NOBODY, &request.to_string());
    assert_eq!(answer["rule_id"], "commands.allow", "{answer}");
    let stored = records(&daemon);
    assert_eq!(stored.len(), 1);
    let line = fs::read_to_string(evidence_path(&daemon)).unwrap();
    assert_eq!(line.matches(&command).count(), 3, "the command is stored three times");
    assert_eq!(
        line.matches(&command[..100]).count(),
        3,
        "and not quoted again, not even in part"
    );

    // Every field at its maximum (a request of about 60 KiB): the largest record a request can produce.
    let max = |n: usize| "m".repeat(n);
    let identity: serde_json::Map<String, Value> = [
        "provider",
        "repository",
        "workflow",
        "run_id",
        "run_attempt",
        "ref",
        "sha",
        "actor",
        "job",
        "runner_name",
    ]
    .into_iter()
    .map(|name| (name.to_owned(), Value::from(max(512))))
    .collect();
    let largest = json!({
        "session_id": max(256), "agent_id": max(256), "actor": max(256), "action_type": "execute_command",
        "target": format!("pytest {}", max(MAX_TARGET - 7)), "requested_operation": max(MAX_TARGET),
        "policy_pack": "cavra-ai-agent-baseline", "operation": max(1024), "server": max(256), "tool": max(256),
        "capability": max(256), "workspace_root": format!("/{}", max(4095)),
        "record": {"metadata_kind": "x", "note": max(16_000)},
        "runner_auth": {"identity": identity, "algorithm": "HMAC-SHA256", "key_id": max(256),
                        "signature": max(128), "nonce": max(128)},
    });
    let text = largest.to_string();
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    let answer = ask_as_member(&daemon, NOBODY, &text);
    assert_eq!(answer["rule_id"], "commands.allow", "{answer}");
    let (_, record_bytes) = records(&daemon).pop().unwrap();
    assert!(record_bytes < 96 * 1024, "{record_bytes} bytes");
    eprintln!(
        "an {MAX_TARGET}-byte command: a {}-byte record (the command 3 times); a {}-byte request with every field at \
         its maximum: a {record_bytes}-byte record",
        stored[0].1,
        text.len()
    );
}

#[test]
fn a_member_flooding_large_requests_is_held_to_its_evidence_byte_rate_while_another_is_served() {
    if !users::can_attack_with_python() {
        return;
    }
    const SECONDS: f64 = 8.0;
    let rate = (EVIDENCE_RATE as u64).to_string();
    let burst = (EVIDENCE_BURST as u64).to_string();
    let daemon = member_daemon(&[
        "--max-evidence-bytes-per-second-per-uid",
        &rate,
        "--evidence-burst-bytes-per-uid",
        &burst,
    ]);
    let command = format!("pytest {}", "k".repeat(MAX_TARGET - "pytest ".len()));
    let request = json!({"action_type": "execute_command", "target": command}).to_string();
    let bystander = Bystander::start(&daemon, r#"{"action_type":"read_file","target":".env"}"#);
    // The log's size, sampled while the flood runs (on this thread) until the flood reports.
    let socket = daemon.socket.clone();
    let flood_thread = std::thread::spawn({
        let request = request.clone();
        let daemon_socket = socket;
        move || {
            let output = users::member(
                NOBODY,
                users::PYTHON,
                // Each answer repeats the 8 KiB command twice.
                &[
                    "-c",
                    FLOOD,
                    daemon_socket.to_str().unwrap(),
                    &request,
                    &SECONDS.to_string(),
                    "4",
                ],
            )
            .output()
            .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            serde_json::from_slice::<Value>(&output.stdout).unwrap()
        }
    });
    let path = evidence_path(&daemon);
    let started = Instant::now();
    let mut samples = Vec::new();
    while !flood_thread.is_finished() {
        samples.push((started.elapsed(), fs::metadata(&path).map_or(0, |meta| meta.len())));
        std::thread::sleep(Duration::from_millis(250));
    }
    let report = flood_thread.join().unwrap();
    let slowest = served(&bystander.stop(), "filesystem.read.block");

    let seconds = report["seconds"].as_f64().unwrap();
    let stored = records(&daemon);
    let attacker: Vec<usize> = stored
        .iter()
        .filter(|(record, _)| uid_of(record) == Some(NOBODY.into()))
        .map(|(_, bytes)| *bytes)
        .collect();
    let written: usize = attacker.iter().sum();
    let largest = attacker.iter().max().copied().unwrap_or_default() as f64;
    let bound = EVIDENCE_RATE * seconds * 1.5 + EVIDENCE_BURST + largest;
    let limited = report["rules"]["daemon.rate_limited"].as_u64().unwrap_or_default();
    let allowed = report["rules"]["commands.allow"].as_u64().unwrap_or_default();
    // The sustained rate: the log's growth over the flood's second half, after the burst.
    let half = samples.len() / 2;
    let (t0, b0) = samples[half];
    let (t1, b1) = *samples.last().unwrap();
    let sustained = (b1 - b0) as f64 / (t1 - t0).as_secs_f64();
    eprintln!(
        "a member flooding {}-byte commands for {seconds:.1} s: {} answers ({allowed} decided and recorded, {limited} \
         daemon.rate_limited); {written} bytes of its evidence ({:.0} bytes/s overall, {sustained:.0} bytes/s over \
         the second half; bound {bound:.0}); the bystander was answered {} times, slowest {slowest:?}",
        request.len(),
        report["answered"],
        written as f64 / seconds,
        samples.len()
    );
    assert!(allowed > 0 && limited > 0, "{report}");
    assert_eq!(allowed as usize, attacker.len(), "every decided request has its record");
    assert!(
        (written as f64) <= bound,
        "{written} bytes of evidence in {seconds:.1} s"
    );
    assert!(
        sustained <= EVIDENCE_RATE * 1.5,
        "after its burst, the member wrote {sustained:.0} bytes/s"
    );
    let refusal_lines = log_lines(&daemon)
        .iter()
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|message| message.contains("--max-evidence-bytes-per-second-per-uid"))
        })
        .count();
    assert!(
        refusal_lines <= 2 + (seconds / 5.0).ceil() as usize,
        "{refusal_lines} lines about {limited} refusals"
    );
}

#[test]
fn a_member_flooding_blocks_is_held_to_its_decision_rate_and_the_log_to_a_line_per_decision() {
    if !users::can_attack_with_python() {
        return;
    }
    const SECONDS: f64 = 6.0;
    let daemon = member_daemon(&[]);
    let bystander = Bystander::start(&daemon, r#"{"action_type":"read_file","target":"README.md"}"#);
    let report = flood(&daemon, r#"{"action_type":"read_file","target":".env"}"#, SECONDS);
    let slowest = served(&bystander.stop(), "filesystem.read.allow");
    let seconds = report["seconds"].as_f64().unwrap();
    let blocked = report["rules"]["filesystem.read.block"].as_u64().unwrap_or_default();
    let limited = report["rules"]["daemon.rate_limited"].as_u64().unwrap_or_default();
    // Let the daemon's log catch up with the last answers (its writer batches lines).
    let nobody = u64::from(NOBODY);
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = log_lines(&daemon);
        let logged = lines
            .iter()
            .filter(|line| line["decision"] == "block" && line["peer_uid"] == nobody)
            .count() as u64;
        if logged >= blocked || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let decision_lines = lines
        .iter()
        .filter(|line| line["decision"] == "block" && line["peer_uid"] == nobody)
        .count();
    let bound = DECISION_RATE * seconds * 1.5 + DECISION_BURST;
    eprintln!(
        "a member flooding blocks on one stream connection for {seconds:.1} s: {} answers ({:.0}/s): {blocked} \
         decided ({:.0}/s, bound {bound:.0}), {limited} daemon.rate_limited; {decision_lines} decision lines logged \
         ({:.0}/s), {} log lines in all; the bystander's allows were answered, slowest {slowest:?}",
        report["answered"],
        report["answered"].as_f64().unwrap() / seconds,
        blocked as f64 / seconds,
        decision_lines as f64 / seconds,
        lines.len()
    );
    assert!(limited > 0, "{report}");
    assert!((blocked as f64) <= bound, "{blocked} blocks decided in {seconds:.1} s");
    assert_eq!(
        decision_lines as u64, blocked,
        "every block decided is logged, and nothing else is"
    );
    let rate_lines = lines
        .iter()
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|message| message.contains("--max-decisions-per-second-per-uid"))
        })
        .count();
    assert!(
        rate_lines <= 2 + (seconds / 5.0).ceil() as usize,
        "{rate_lines} lines about {limited} refusals"
    );
    // The bystander's allows are summarised, not logged one by one.
    assert!(
        !lines.iter().any(|line| line["decision"] == "allow"),
        "allowed decisions have no line of their own"
    );
}

/// With the default `--log-decisions non-allow`, a flood of allowed decisions adds a summary line per interval, and
/// the summaries anchor the chain: `--verify-evidence --journal` accepts the log, reports no allowed record as
/// missing, and still finds records cut off its end.
#[test]
fn allowed_decisions_are_summarised_and_the_summaries_anchor_the_chain_for_the_journal_cross_check() {
    if !users::can_attack_with_python() {
        return;
    }
    let mut daemon = member_daemon(&["--max-decisions-per-second-per-uid", "0"]);
    let report = flood(&daemon, r#"{"action_type":"read_file","target":"README.md"}"#, 6.0);
    let allowed = report["rules"]["filesystem.read.allow"].as_u64().unwrap();
    ask_as_member(&daemon, NOBODY, r#"{"action_type":"read_file","target":".env"}"#);
    // The last summary is logged at shutdown.
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(20)).success());
    let lines = log_lines(&daemon);
    let summaries: Vec<&Value> = lines.iter().filter(|line| line["summary"] == "allow").collect();
    let counted: u64 = summaries.iter().map(|line| line["allowed"].as_u64().unwrap()).sum();
    let decision_lines = lines.iter().filter(|line| line["decision"].is_string()).count();
    eprintln!(
        "{allowed} allowed decisions in {:.1} s: {} summary lines, {decision_lines} decision line (the one block), {} \
         log lines in all",
        report["seconds"].as_f64().unwrap(),
        summaries.len(),
        lines.len()
    );
    assert_eq!(counted, allowed, "the summaries count every allowed decision");
    assert!((2..=4).contains(&summaries.len()), "{} summaries", summaries.len());
    assert_eq!(decision_lines, 1, "only the block has a line of its own");
    let highest = summaries
        .iter()
        .map(|line| line["evidence_sequence"].as_i64().unwrap())
        .max();
    assert_eq!(
        highest,
        Some(allowed as i64),
        "the last summary anchors the last allowed record"
    );

    let verify = |log: &std::path::Path| {
        let output = common::run(
            &[
                "--verify-evidence",
                "--evidence-log",
                log.to_str().unwrap(),
                "--journal",
                daemon.path("daemon.log").to_str().unwrap(),
            ],
            "",
        );
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let whole = verify(&evidence_path(&daemon));
    assert_eq!(whole["valid"], true, "{whole}");
    assert_eq!(whole["journal"]["missing"], 0, "{whole}");
    assert_eq!(whole["journal"]["entries"], summaries.len() + 1, "{whole}");
    // Cut the block's record and the last allowed ones off the end: the summary saw them.
    let text = fs::read_to_string(evidence_path(&daemon)).unwrap();
    let kept: String = text.split_inclusive('\n').take(allowed as usize - 10).collect();
    let cut = daemon.path("cut.jsonl");
    fs::write(&cut, kept).unwrap();
    let short = verify(&cut);
    assert_eq!(short["valid"], false, "{short}");
    let errors = short["errors"].to_string();
    assert!(errors.contains("records were cut off its end"), "{errors}");
}

#[test]
fn every_record_names_the_member_that_asked_and_changing_it_breaks_the_chain() {
    if !users::can_attack_with_python() {
        return;
    }
    let daemon = member_daemon(&[]);
    let script = format!("import os\nprint(os.getpid(), flush=True)\n{ASK}");
    let output = users::member(
        NOBODY,
        users::PYTHON,
        &[
            "-c",
            &script,
            daemon.socket.to_str().unwrap(),
            // A peer of its own choosing in the request is not who asked: the record says who did.
            r#"{"action_type":"read_file","target":".env","peer":{"uid":0,"gid":0,"pid":1}}"#,
        ],
    )
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (pid, answer) = stdout.split_once('\n').unwrap();
    let answer: Value = serde_json::from_str(answer).unwrap();
    assert_eq!(answer["rule_id"], "filesystem.read.block");
    let mut root = UnixStream::connect(&daemon.socket).unwrap();
    root.write_all(b"{\"action_type\":\"read_file\",\"target\":\"README.md\"}\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(root).read_line(&mut line).unwrap();

    let stored = records(&daemon);
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored[0].0["peer"],
        json!({"uid": NOBODY, "gid": NOBODY, "pid": pid.trim().parse::<u32>().unwrap()})
    );
    assert!(
        stored[0].0["request"].get("peer").is_none(),
        "the request's own `peer` is not stored: {}",
        stored[0].0
    );
    assert_eq!(stored[1].0["peer"]["uid"], 0, "root too");
    let text = fs::read_to_string(evidence_path(&daemon)).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.contains(&format!(r#"}},"peer":{{"uid":{NOBODY},"gid":{NOBODY},"pid":"#))
            && first.contains(r#"},"response":{"#),
        "after the request, before the response: {first}"
    );
    let verify = |path: &std::path::Path| {
        let output = common::run(&["--verify-evidence", "--evidence-log", path.to_str().unwrap()], "");
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    assert_eq!(verify(&evidence_path(&daemon))["valid"], true);
    // Who asked cannot be changed afterwards: blaming root for nobody's request breaks the hash.
    let forged = daemon.path("forged.jsonl");
    fs::write(
        &forged,
        text.replacen(&format!(r#""peer":{{"uid":{NOBODY},"#), r#""peer":{"uid":0,"#, 1),
    )
    .unwrap();
    let report = verify(&forged);
    assert_eq!(report["valid"], false);
    assert_eq!(report["errors"][0], "record 1 hash mismatch", "{report}");
}
