//! Metrics from the real daemon: decisions by decision, rule and pack, refusals, latency and evidence counters,
//! read with `--metrics` (standard output and an atomically written file for node_exporter's textfile collector)
//! and scraped over HTTP from a metrics socket passed in the way systemd passes it (`LISTEN_FDNAMES`).

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixListener;
use std::process::Command;

use common::daemon::Daemon;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde_json::json;

/// Samples of a Prometheus text exposition: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
            (
                series.to_owned(),
                value.parse().unwrap_or_else(|_| panic!("not a value: {line}")),
            )
        })
        .collect()
}

fn ask(daemon: &Daemon, request: serde_json::Value) -> serde_json::Value {
    let answer = daemon
        .client()
        .evaluate(&serde_json::from_value(request).unwrap())
        .unwrap();
    serde_json::to_value(answer).unwrap()
}

fn metrics_cli(daemon: &Daemon, extra: &[&str]) -> String {
    let output = Command::new(common::binary())
        .args(["--metrics", "--socket"])
        .arg(&daemon.socket)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "--metrics failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

const PACK: &str = "cavra-ai-agent-baseline";

#[test]
fn decisions_refusals_latency_and_evidence_are_counted() {
    let evidence = tempfile::tempdir().unwrap();
    let log = evidence.path().join("evidence.jsonl");
    let daemon = Daemon::start(&["--evidence-log", log.to_str().unwrap(), "--evidence-sync", "none"]);
    for _ in 0..3 {
        assert_eq!(
            ask(&daemon, json!({"action_type": "read_file", "target": ".env"}))["decision"],
            "block"
        );
    }
    assert_eq!(
        ask(&daemon, json!({"action_type": "read_file", "target": "src/main.rs"}))["decision"],
        "allow"
    );
    let unknown = ask(
        &daemon,
        json!({"action_type": "read_file", "target": "src/main.rs", "policy_pack": "no-such-pack-xyz"}),
    );
    // Not a request at all: refused by the daemon itself.
    let mut stream = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    stream.write_all(b"{not json}\n").unwrap();
    let mut invalid = String::new();
    stream.read_to_string(&mut invalid).unwrap();
    assert!(invalid.contains("daemon.request.invalid"), "{invalid}");

    let text = metrics_cli(&daemon, &[]);
    let found = samples(&text);
    let value = |series: &str| *found.get(series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    assert_eq!(
        value(&format!(
            r#"cavra_decisions_total{{decision="block",rule="filesystem.read.block",pack="{PACK}"}}"#
        )),
        3.0
    );
    assert_eq!(
        value(&format!(
            r#"cavra_decisions_total{{decision="allow",rule="filesystem.read.allow",pack="{PACK}"}}"#
        )),
        1.0
    );
    let unknown_rule = unknown["rule_id"].as_str().unwrap();
    assert_eq!(
        value(&format!(
            r#"cavra_decisions_total{{decision="{}",rule="{unknown_rule}",pack="unknown"}}"#,
            unknown["decision"].as_str().unwrap()
        )),
        1.0,
        "a pack that is not loaded is counted as unknown"
    );
    assert!(!text.contains("no-such-pack-xyz"), "{text}");
    assert_eq!(value(r#"cavra_refusals_total{kind="daemon.request.invalid"}"#), 1.0);
    // Five decisions and one refusal were timed.
    assert_eq!(value("cavra_request_duration_seconds_count"), 6.0);
    assert_eq!(value(r#"cavra_request_duration_seconds_bucket{le="+Inf"}"#), 6.0);
    assert!(value("cavra_request_duration_seconds_sum") > 0.0);
    assert_eq!(value("cavra_evidence_records_total"), 5.0);
    assert_eq!(
        value("cavra_evidence_group_size_count"),
        value("cavra_evidence_sync_duration_seconds_count")
    );
    assert_eq!(value("cavra_evidence_failed_records_total"), 0.0);
    let digest = daemon.client().health().unwrap().policy_digest;
    assert!(
        text.contains(&format!(r#"cavra_policy_info{{digest="{digest}","#)),
        "{text}"
    );
    // Seven connections were served: five decisions, the invalid request and this scrape. (The health probe
    // below comes after it.)
    assert_eq!(value("cavra_connections_accepted_total"), 7.0);

    // The textfile collector's file: written whole, the same families.
    let file = daemon.path("cavra-runtime.prom");
    metrics_cli(&daemon, &["--output", file.to_str().unwrap()]);
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(samples(&written).contains_key(r#"cavra_refusals_total{kind="daemon.request.invalid"}"#));
}

/// A copy of `fd` numbered 200 or more that survives exec (std opens every descriptor close-on-exec), so the
/// wrapper below can move it to 3 or 4 whatever number the original has.
fn inheritable(fd: &impl std::os::fd::AsFd) -> std::os::fd::OwnedFd {
    let copy = fcntl(fd, FcntlArg::F_DUPFD(200)).unwrap();
    // SAFETY: F_DUPFD returned a new descriptor that nothing else owns.
    let copy = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(copy) };
    fcntl(&copy, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
    copy
}

#[test]
fn a_passed_metrics_socket_answers_scrapes_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let unix = UnixListener::bind(dir.path().join("cavra.sock")).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = tcp.local_addr().unwrap();
    let (unix_copy, tcp_copy) = (inheritable(&unix), inheritable(&tcp));
    // As systemd passes them: descriptors 3 and up, their names, and LISTEN_PID naming the daemon itself.
    let script = format!(
        "exec 3<&{u} 4<&{t} {u}<&- {t}<&-; LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=cavra-runtime:metrics exec \"$0\" \"$@\"",
        u = unix_copy.as_raw_fd(),
        t = tcp_copy.as_raw_fd()
    );
    let daemon = Daemon::launch(dir, &["bash", "-c", &script], &[], &[]);
    drop((unix, tcp, unix_copy, tcp_copy));
    daemon.wait_notification("READY=1");
    daemon.wait_log(&format!("serving metrics at http://{address}/metrics"));
    assert_eq!(
        ask(&daemon, json!({"action_type": "read_file", "target": ".env"}))["decision"],
        "block"
    );

    let mut scrape = TcpStream::connect(address).unwrap();
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    scrape.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    assert_eq!(
        samples(body)
            [&format!(r#"cavra_decisions_total{{decision="block",rule="filesystem.read.block",pack="{PACK}"}}"#)],
        1.0
    );
}

#[test]
fn rate_limited_refusals_are_counted() {
    // One decision a second after a first one, and a single record's worth of evidence at a time.
    let evidence = tempfile::tempdir().unwrap();
    let log = evidence.path().join("evidence.jsonl");
    let daemon = Daemon::start(&[
        "--max-decisions-per-second-per-uid",
        "1",
        "--decision-burst-per-uid",
        "1",
        "--evidence-log",
        log.to_str().unwrap(),
        "--evidence-sync",
        "none",
    ]);
    let rules: Vec<String> = (0..3)
        .map(|_| {
            // No retries: each refusal counted is one this test sees.
            let answer = daemon
                .client()
                .with_retry(cavra_runtime_client::Retry::none())
                .evaluate_raw(&serde_json::from_value(json!({"action_type": "read_file", "target": ".env"})).unwrap())
                .unwrap();
            answer.rule_id
        })
        .collect();
    let limited = rules.iter().filter(|rule| *rule == "daemon.rate_limited").count();
    assert!(limited >= 1, "{rules:?}");
    let text = metrics_cli(&daemon, &[]);
    assert_eq!(
        samples(&text)[r#"cavra_refusals_total{kind="daemon.rate_limited"}"#],
        limited as f64,
        "{text}"
    );
}
