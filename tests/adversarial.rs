//! Hostile input against the real daemon. For each attack: the attacking connection is answered with the right
//! `daemon.request.*` error or closed, everyone else keeps being served, and the daemon's resident memory stays
//! under MEMORY_BOUND.

mod common;

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use serde_json::Value;

/// The resident memory the daemon may reach under any of these attacks (docs/robustness.md).
const MEMORY_BOUND_KIB: u64 = 64 * 1024;
/// Liveness, not performance: a probe stuck behind an attacker would wait for a timeout (seconds).
const PROBE_LIMIT: Duration = Duration::from_secs(1);

fn rss_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn assert_memory_bounded(daemon: &Daemon, attack: &str) {
    let rss = rss_kib(daemon.pid());
    assert!(
        rss <= MEMORY_BOUND_KIB,
        "{attack}: daemon resident memory {rss} KiB exceeds {MEMORY_BOUND_KIB} KiB"
    );
}

/// Asks the daemon for a decision on a fresh connection and checks it came back promptly.
fn probe(daemon: &Daemon) -> Duration {
    let started = Instant::now();
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(br#"{"action_type":"read_file","target":".env"}"#)
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["rule_id"], "filesystem.read.block", "{answer}");
    let elapsed = started.elapsed();
    assert!(elapsed < PROBE_LIMIT, "a bystander waited {elapsed:?}");
    elapsed
}

/// Keeps probing from another thread while `attack` runs; returns how many probes were answered.
fn probing_while(daemon: &Daemon, attack: impl FnOnce()) -> usize {
    let done = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let prober = scope.spawn(|| {
            let mut answered = 0;
            while !done.load(Ordering::SeqCst) {
                probe(daemon);
                answered += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            answered
        });
        attack();
        done.store(true, Ordering::SeqCst);
        prober.join().unwrap()
    })
}

/// The first answer line on `stream` (after writing `bytes` and closing our side).
fn answer_to(daemon: &Daemon, bytes: &[u8]) -> Value {
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(bytes).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|error| panic!("not JSON ({error}): {line:?}"))
}

#[test]
fn deeply_nested_json_is_answered_invalid_without_recursing() {
    let daemon = Daemon::start(&[]);
    // Deep enough for any recursive parser, within the default --max-request-bytes (64 KiB).
    let open = "[".repeat(30_000);
    let closed = format!("{open}{}", "]".repeat(30_000));
    for input in [open.as_str(), closed.as_str()] {
        let answer = answer_to(&daemon, input.as_bytes());
        assert_eq!(answer["rule_id"], "daemon.request.invalid", "{answer}");
    }
    // Where the contract takes free-form JSON (the legacy record), depth is what stops it.
    let deep_record = format!("{{\"action_type\":\"release_governance_record\",\"record\":{{\"a\":{closed}}}}}");
    let answer = answer_to(&daemon, deep_record.as_bytes());
    assert_eq!(answer["rule_id"], "daemon.request.invalid", "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("recursion limit exceeded"),
        "{answer}"
    );
    let in_stream = format!(
        "{{\"protocol\":\"cavra.ndjson.v1\"}}\n{closed}\n{{\"action_type\":\"read_file\",\"target\":\".env\"}}\n"
    );
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.write_all(in_stream.as_bytes()).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut output = String::new();
    stream.read_to_string(&mut output).unwrap();
    let lines: Vec<Value> = output.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines[1]["rule_id"], "daemon.request.invalid");
    assert_eq!(
        lines[2]["rule_id"], "filesystem.read.block",
        "the connection carries on"
    );
    probe(&daemon);
    assert_memory_bounded(&daemon, "nested JSON");
}

#[test]
fn huge_numbers_invalid_utf8_and_nul_bytes_are_answered_invalid() {
    let daemon = Daemon::start(&[]);
    let invalid: [&[u8]; 5] = [
        br#"{"action_type":"release_governance_record","release_governance":{"blocked_count":1e400}}"#,
        br#"{"action_type":"release_governance_record","release_governance":{"blocked_count":99999999999999999999}}"#,
        b"{\"action_type\":\"read_file\",\"target\":\"\xff\xfe\xfd\"}",
        b"{\"action_type\":\"read_file\",\"target\":\"a\x00b\"}",
        b"\x00\x00\x00\x00",
    ];
    for input in invalid {
        let answer = answer_to(&daemon, input);
        assert_eq!(
            answer["rule_id"],
            "daemon.request.invalid",
            "{:?} -> {answer}",
            String::from_utf8_lossy(input)
        );
    }
    // A huge count in a legacy record is a number like any other: it counts as a critical signal.
    let answer = answer_to(
        &daemon,
        br#"{"action_type":"release_governance_record","record":{"metadata_kind":"x","blocked_count":1e308}}"#,
    );
    assert_eq!(answer["rule_id"], "release_governance.signal.critical", "{answer}");
    // An escaped NUL is valid JSON, but no file has that name: the path could read differently to the client.
    let escaped_nul = answer_to(&daemon, br#"{"action_type":"read_file","target":"a\u0000.env"}"#);
    assert_eq!(escaped_nul["rule_id"], "daemon.request.invalid", "{escaped_nul}");
    assert!(
        escaped_nul["reason"].as_str().unwrap().contains("field `target`"),
        "{escaped_nul}"
    );
    probe(&daemon);
}

/// 100 MiB without a newline, in both protocol modes: answered too large, never buffered.
#[test]
fn a_100_mib_request_without_a_newline_is_refused_and_never_buffered() {
    let daemon = Daemon::start(&[]);
    let chunk = vec![b'a'; 1024 * 1024];
    for handshake in [&b""[..], b"{\"protocol\":\"cavra.ndjson.v1\"}\n"] {
        let mut stream = UnixStream::connect(&daemon.socket).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let answered = probing_while(&daemon, || {
            stream.write_all(handshake).unwrap();
            stream.write_all(b"{\"target\":\"").unwrap();
            for _ in 0..100 {
                // The daemon may close the connection part-way: that is one of the allowed outcomes.
                if stream.write_all(&chunk).is_err() {
                    break;
                }
            }
            assert_memory_bounded(&daemon, "100 MiB request");
        });
        assert!(answered > 0, "bystanders were probed during the attack");
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => lines.push(serde_json::from_str::<Value>(&line).unwrap()),
            }
        }
        let refusal = lines
            .iter()
            .find(|line| line.get("rule_id").is_some())
            .expect("an answer before closing");
        assert_eq!(refusal["rule_id"], "daemon.request.too_large", "{lines:?}");
    }
    probe(&daemon);
}

#[test]
fn ten_thousand_idle_connections_do_not_stop_anyone_else() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard < 12_000 {
        common::skip::skip(&format!("the open-file hard limit ({hard}) is below 12,000"));
        return;
    }
    setrlimit(Resource::RLIMIT_NOFILE, 12_000, hard).unwrap();
    // All from this one uid, so its own limit is lifted too (tests/fairness.rs holds one uid to its limit).
    let daemon = Daemon::start(&["--max-connections", "11000", "--max-connections-per-uid", "11000"]);
    let before = rss_kib(daemon.pid());
    let idle: Vec<UnixStream> = (0..10_000)
        .map(|_| UnixStream::connect(&daemon.socket).unwrap())
        .collect();
    // Every idle connection has been accepted once a probe behind them all is answered.
    probe(&daemon);
    let during = rss_kib(daemon.pid());
    assert_memory_bounded(&daemon, "10,000 idle connections");
    eprintln!("10,000 idle connections: daemon RSS {before} KiB -> {during} KiB");
    for _ in 0..20 {
        probe(&daemon);
    }
    drop(idle);
    probe(&daemon);
}

#[test]
fn half_open_connections_are_answered_or_closed() {
    let daemon = Daemon::start(&[]);
    let answer = answer_to(&daemon, br#"{"action_type":"read_file","tar"#);
    assert_eq!(answer["rule_id"], "daemon.request.invalid", "{answer}");
    for _ in 0..100 {
        drop(UnixStream::connect(&daemon.socket).unwrap());
    }
    let mut vanished = UnixStream::connect(&daemon.socket).unwrap();
    vanished
        .write_all(br#"{"action_type":"read_file","target":"x"}"#)
        .unwrap();
    drop(vanished);
    probe(&daemon);
}

#[test]
fn a_client_that_never_reads_is_dropped_without_holding_anyone_up() {
    let daemon = Daemon::start(&["--request-timeout", "1s"]);
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    let request = b"{\"action_type\":\"execute_command\",\"target\":\"terraform plan\"}\n";
    let started = Instant::now();
    let answered = probing_while(&daemon, || {
        stream.write_all(b"{\"protocol\":\"cavra.ndjson.v1\"}\n").unwrap();
        // Far more answers than any socket buffer holds; the daemon must give up on this client, not on others.
        let closed = (0..1_000_000).any(|_| stream.write_all(request).is_err());
        assert!(closed, "the daemon never closed a connection that reads nothing");
        assert_memory_bounded(&daemon, "a client that reads nothing");
    });
    assert!(answered > 0);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "dropped only after {:?}",
        started.elapsed()
    );
    probe(&daemon);
}

#[test]
fn stream_requests_sent_one_byte_at_a_time_are_answered() {
    let daemon = Daemon::start(&[]);
    let mut stream = UnixStream::connect(&daemon.socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let input = b"{\"protocol\":\"cavra.ndjson.v1\"}\n{\"action_type\":\"read_file\",\"target\":\"./.env\"}\n";
    for byte in input {
        stream.write_all(&[*byte]).unwrap();
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let mut output = String::new();
    stream.read_to_string(&mut output).unwrap();
    let lines: Vec<Value> = output.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{output}");
    assert_eq!(lines[1]["target"], "./.env");
    assert_eq!(lines[1]["normalized_target"], ".env");
}
