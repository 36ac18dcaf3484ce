//! One user must not starve everyone else: a uid holding its connection limit, a flood of peers the allow-lists
//! refuse, and clients that send megabyte requests and never read the answers. The attacker is `nobody` (through
//! `setpriv`) where being another user matters; each test prints the figures it measured.

mod common;

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::users::{self, Background};
use serde_json::Value;

/// The resident memory the daemon may reach under attack (docs/robustness.md).
const MEMORY_BOUND_KIB: u64 = 64 * 1024;
/// Liveness, not performance: a probe stuck behind an attacker would wait for a timeout (seconds).
const PROBE_LIMIT: Duration = Duration::from_secs(1);

/// A daemon every local user can reach, so only its own limits decide.
fn open_daemon(args: &[&str]) -> Daemon {
    let mut all = vec!["--socket-mode", "0666"];
    all.extend_from_slice(args);
    let daemon = Daemon::start(&all);
    fs::set_permissions(daemon.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    daemon
}

/// Root asks for a decision on a fresh connection; the answer must be the decision, promptly.
fn probe(daemon: &Daemon) -> Duration {
    let started = Instant::now();
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(b"{\"action_type\":\"read_file\",\"target\":\".env\"}\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        answer["rule_id"], "filesystem.read.block",
        "root was not served: {answer}"
    );
    let elapsed = started.elapsed();
    assert!(elapsed < PROBE_LIMIT, "root waited {elapsed:?}");
    elapsed
}

/// A Python attack run as `nobody`, whose progress lines (JSON) the test reads.
struct Attack {
    _process: Background,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Attack {
    fn start(script: &str, args: &[&str]) -> Attack {
        let mut all = vec!["-c", script];
        all.extend_from_slice(args);
        let mut child = users::nobody(users::PYTHON, &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        Attack {
            _process: Background(child),
            lines: BufReader::new(stdout).lines(),
        }
    }

    fn next(&mut self) -> Value {
        let line = self.lines.next().expect("the attack reports").unwrap();
        serde_json::from_str(&line).unwrap_or_else(|error| panic!("attack report {line:?}: {error}"))
    }
}

/// Opens COUNT stream-mode connections, keeps those the daemon accepts, reports, then keeps each busy with a health
/// probe every half second for HOLD seconds (past the daemon's idle timeout), and reports how many are still open.
const HOLD_CONNECTIONS: &str = r#"
import json, resource, socket, sys, time
path, count, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held, refused, reasons, other = [], 0, set(), 0
for _ in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    f = s.makefile("rb")
    try:
        s.sendall(b'{"protocol":"cavra.ndjson.v1"}\n')
    except OSError:
        pass
    try:
        answer = json.loads(f.readline())
    except (OSError, ValueError):
        answer = {}
    if answer.get("protocol") == "cavra.ndjson.v1":
        held.append((s, f))
    else:
        if answer.get("rule_id") == "daemon.overloaded":
            refused += 1
            reasons.add(answer["reason"])
        else:
            other += 1
        s.close()
print(json.dumps({"held": len(held), "refused": refused, "other": other, "reasons": sorted(reasons)}), flush=True)
deadline = time.time() + hold
while time.time() < deadline:
    for s, f in held:
        s.sendall(b'{"action_type":"cavra.health"}\n')
    for s, f in held:
        if json.loads(f.readline()).get("status") != "ok":
            raise SystemExit("a held connection was not answered")
    time.sleep(0.5)
print(json.dumps({"open": len(held)}), flush=True)
"#;

#[test]
fn one_uid_at_its_connection_limit_does_not_keep_root_out() {
    if !users::can_attack_with_python() {
        return;
    }
    let daemon = open_daemon(&["--idle-timeout", "2s"]);
    let mut attack = Attack::start(HOLD_CONNECTIONS, &[daemon.socket.to_str().unwrap(), "1024", "4"]);
    let opened = attack.next();
    assert_eq!(opened["held"], 256, "the default --max-connections-per-uid: {opened}");
    assert_eq!(opened["refused"], 1024 - 256, "{opened}");
    assert_eq!(opened["other"], 0, "{opened}");
    let reasons = opened["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), 1, "{opened}");
    let reason = reasons[0].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "uid {} already has its maximum of 256 connections open",
            users::NOBODY
        )),
        "{reason}"
    );
    // Root is served while nobody holds its maximum, and still after the idle timeout has passed for everyone.
    let first = probe(&daemon);
    std::thread::sleep(Duration::from_millis(2500));
    let after_idle = probe(&daemon);
    let held = attack.next();
    assert_eq!(
        held["open"], 256,
        "nobody's connections stayed open past the idle timeout: {held}"
    );
    eprintln!(
        "nobody: 256 connections held, 768 refused (daemon.overloaded, --max-connections-per-uid); root answered in \
         {first:?}, and in {after_idle:?} after the idle timeout"
    );
}

/// Opens COUNT connections, each sending a request and keeping its end open; reports how each was answered, how
/// many the daemon closed within two seconds, and the time it took; then holds them all until its stdin closes.
const FLOOD: &str = r#"
import json, resource, select, socket, sys, time
path, count = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
started = time.time()
conns, rules = [], {}
for _ in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    f = s.makefile("rb")
    try:
        s.sendall(b'{"action_type":"read_file","target":".env"}\n')
    except OSError:
        pass
    try:
        rule = json.loads(f.readline()).get("rule_id", "none")
    except (OSError, ValueError):
        rule = "none"
    rules[rule] = rules.get(rule, 0) + 1
    conns.append((s, f))
closed = 0
for s, f in conns:
    s.settimeout(2)
    try:
        closed += f.read(1) == b""
    except OSError:
        closed += 1
print(json.dumps({"rules": rules, "closed": closed, "seconds": time.time() - started}), flush=True)
sys.stdin.read()
"#;

/// How many refusals of a peer the daemon's log accounts for: lines logged, plus those a summary says it left out.
fn refusals_logged(log: &str) -> (usize, u64) {
    let logged = log
        .matches("refused a peer that --allow-uid/--allow-group do not admit")
        .count();
    let summarized = log
        .lines()
        .filter_map(|line| {
            line.split("refused peers that --allow-uid/--allow-group do not admit: ")
                .nth(1)
        })
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    (logged, summarized)
}

#[test]
fn refused_peers_hold_no_slot_and_their_flood_is_logged_in_a_few_lines() {
    if !users::can_attack_with_python() {
        return;
    }
    const FLOOD_SIZE: u64 = 2000;
    let daemon = open_daemon(&["--allow-uid", "root", "--max-connections", "8"]);
    let mut child = users::nobody(users::PYTHON, &["-c", FLOOD, daemon.socket.to_str().unwrap(), "2000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let stdin = child.stdin.take().unwrap();
    let flood = Background(child);
    let report: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        report["rules"]["daemon.peer.unauthorized"], FLOOD_SIZE,
        "every refused peer was told why: {report}"
    );
    assert_eq!(report["closed"], FLOOD_SIZE, "and closed by the daemon: {report}");
    // All 2,000 are still open at nobody's end, and the daemon serves root with its 8 slots.
    let answered: Vec<Duration> = (0..8).map(|_| probe(&daemon)).collect();
    drop(stdin);
    drop(flood);

    let deadline = Instant::now() + Duration::from_secs(15);
    let (logged, summarized) = loop {
        let (logged, summarized) = refusals_logged(&daemon.log());
        if logged as u64 + summarized >= FLOOD_SIZE || Instant::now() > deadline {
            break (logged, summarized);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(logged as u64 + summarized, FLOOD_SIZE, "every refusal is accounted for");
    assert!(logged <= 4, "{logged} lines for one flood:\n{}", daemon.log());
    let warnings = daemon.log().lines().filter(|line| line.contains("WARN")).count();
    eprintln!(
        "flood of {FLOOD_SIZE} refused peers in {:.2} s: all answered daemon.peer.unauthorized and closed; root answered \
         with 8 slots (slowest {:?}); {logged} refusal lines and summaries of {summarized} more, {warnings} warning lines \
         in all",
        report["seconds"].as_f64().unwrap(),
        answered.iter().max().unwrap()
    );
}

fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn three_hundred_unread_megabyte_requests_stay_within_the_memory_bound() {
    const CLIENTS: usize = 300;
    // All from this test's uid: its connection limit is lifted so that the byte budget is what is tested, and
    // requests may be a megabyte (the default is 64 KiB) so that the budget has something to hold. The bulk is a field
    // the daemon does not read, so a request that is read is within every field's maximum.
    let daemon = Daemon::start(&["--max-connections-per-uid", "1024", "--max-request-bytes", "1048576"]);
    let idle = rss_kib(daemon.pid());
    let request = Arc::new(format!(
        "{{\"action_type\":\"read_file\",\"target\":\"a\",\"padding\":\"{}\"}}\n",
        "a".repeat(1_000_000)
    ));
    let done = Arc::new(AtomicBool::new(false));
    let all_connected = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (socket, request, done, all_connected) = (
                daemon.socket.clone(),
                Arc::clone(&request),
                Arc::clone(&done),
                Arc::clone(&all_connected),
            );
            std::thread::spawn(move || {
                let mut stream = UnixStream::connect(socket).unwrap();
                all_connected.wait();
                // Sent whole, or cut short when the daemon refuses and closes: either way, never read meanwhile.
                let _ = stream.write_all(request.as_bytes());
                while !done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let mut answer = Vec::new();
                stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let _ = stream.take(2 << 20).read_to_end(&mut answer);
                let line = answer.split(|byte| *byte == b'\n').next().unwrap_or_default().to_vec();
                serde_json::from_slice::<Value>(&line)
                    .ok()
                    .and_then(|answer| answer["rule_id"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "no complete answer".to_owned())
            })
        })
        .collect();
    all_connected.wait();
    // Longer than --request-timeout (10 s), so requests that waited for room have been refused by the end.
    let started = Instant::now();
    let (mut peak, mut probes, mut slowest) = (0, 0, Duration::ZERO);
    while started.elapsed() < Duration::from_secs(12) {
        peak = peak.max(rss_kib(daemon.pid()));
        slowest = slowest.max(probe(&daemon));
        probes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    done.store(true, Ordering::SeqCst);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for client in clients {
        *outcomes.entry(client.join().unwrap()).or_default() += 1;
    }
    eprintln!(
        "{CLIENTS} clients x 1 MB unread: daemon RSS {idle} KiB idle, peak {peak} KiB; {probes} root probes answered, \
         slowest {slowest:?}; outcomes {outcomes:?}"
    );
    assert!(
        peak <= MEMORY_BOUND_KIB,
        "daemon resident memory {peak} KiB exceeds {MEMORY_BOUND_KIB} KiB"
    );
    // Each was read only once the budget had room for it (eight at a time) and decided; one that found no room
    // before its deadline was refused unread (overloaded), or, read too slowly on a busy machine, timed out. Every
    // client got one of those answers.
    let answered = ["filesystem.read.allow", "daemon.overloaded", "daemon.request.timeout"];
    assert!(
        outcomes.keys().all(|rule| answered.contains(&rule.as_str())),
        "every client was answered: {outcomes:?}"
    );
}
