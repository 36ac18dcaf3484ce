//! Soak: the real `cavra-runtime --serve` with evidence on, under steady mixed load for a long time, with policy
//! reloads (SIGHUP) and crashes (`kill -9` and a restart on the same socket and evidence log) along the way.
//! Afterwards every acknowledged decision must have its record in the log and the log must verify.
//!
//! One test, ignored by default because it takes minutes and wants the release daemon:
//!
//! ```sh
//! CAVRA_SOAK_MINUTES=30 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! Each check is an assertion that names what failed; the markdown report is written to standard error past the
//! harness's capture, so it is seen whether the run passes or fails (`--nocapture` also shows the progress lines).
//!
//! - Environment: `CAVRA_SOAK_MINUTES` (default 2, fractions allowed), `CAVRA_SOAK_RATE` (target requests per second
//!   over all clients, default 2000), `CAVRA_SOAK_KEEP=1` (keep the scratch directory even when every check passes;
//!   it is always kept when one fails).
//! - Schedule: with 10 minutes or more, SIGHUP every minute and `kill -9` plus restart every ten minutes; shorter
//!   runs scale down to a reload every 20 s and a kill every minute. A kill replaces the reload due at that moment.
//! - Load: four compatible-mode clients (one connection per request) rotate through every action kind, invalid JSON,
//!   an unknown pack, a second pack, and health probes; two stream-mode clients pipeline batches of 16 (with an
//!   occasional bad line) and reconnect every 500 batches. Each client is paced to its share of the rate.
//! - An answer is acknowledged when its whole line has been read. Every acknowledged decision's
//!   `go-daemon-evidence://<record_id>` is kept; requests that fail (the daemon is down) are not acknowledged and are
//!   sent again. A failure that does not overlap a restart fails the soak.
//! - Each request kind's first answer fixes its expected `(decision, rule_id)`; a later answer that differs fails
//!   the soak (the two targets whose decision depends on the pack phase are checked by the controller instead, which
//!   requires the new pack to be in force within 5 s of each SIGHUP and of each restart).
//! - The daemon's VmRSS, open descriptors and CPU time are sampled every 10 s.
//! - At the end the daemon is stopped with SIGTERM (it must exit 0), the log is checked with `--verify-evidence`,
//!   and every acknowledged record id is looked up in it. Torn last records moved aside at restarts are counted;
//!   none may hold an acknowledged decision.
//!
//! Everything is bounded: the run stops at its deadline, every socket operation has a timeout, a restart that does
//! not answer within 180 s fails the soak, and only Unix sockets inside a temporary directory are used. The
//! measuring helpers are shared with the load benchmark: `tests/common/measure.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

mod common;

use common::measure::{self, DAEMON, HEALTH, Stream};
const IO_TIMEOUT: Duration = Duration::from_secs(15);
const RESTART_LIMIT: Duration = Duration::from_secs(180);
const RELOAD_LIMIT: Duration = Duration::from_secs(5);
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const COMPAT_CLIENTS: usize = 4;
const STREAM_CLIENTS: usize = 2;
const STREAM_BATCH: usize = 16;
const BATCHES_PER_CONNECTION: u64 = 500;
/// Share of `--rate` given to the compatible-mode clients; the stream clients get the rest.
const COMPAT_SHARE: f64 = 0.6;
/// Hard bound on requests per client, whatever the clock says.
const MAX_REQUESTS_PER_CLIENT: u64 = 50_000_000;
/// Examples of each kind of problem kept for the report.
const EXAMPLES: usize = 5;
const PHASE_A: &str = "soak/phase-a/probe.txt";
const PHASE_B: &str = "soak/phase-b/probe.txt";

// ---------------------------------------------------------------------------------------------------------------
// Requests

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A decision; its answer must carry an evidence reference.
    Decision,
    /// A decision whose outcome depends on the pack phase (not checked for stability by the clients).
    PhaseDecision,
    /// Invalid JSON: answered `daemon.request.invalid`, without evidence.
    Invalid,
    Health,
}

struct Template {
    name: &'static str,
    kind: Kind,
    body: String,
}

fn templates() -> Vec<Template> {
    let decision = |name, value: Value| Template {
        name,
        kind: Kind::Decision,
        body: value.to_string(),
    };
    vec![
        decision(
            "read .env",
            json!({"action_type": "read_file", "target": "config/../.env"}),
        ),
        decision(
            "read source",
            json!({"action_type": "read_file", "target": "src/lib.rs"}),
        ),
        Template {
            name: "read phase-a",
            kind: Kind::PhaseDecision,
            body: json!({"action_type": "read_file", "target": PHASE_A}).to_string(),
        },
        decision(
            "write workflow",
            json!({"action_type": "write_file", "target": ".github/workflows/ci.yml"}),
        ),
        decision(
            "write policies",
            json!({"action_type": "write_file", "target": "policies/new.yaml"}),
        ),
        decision(
            "write source",
            json!({"action_type": "write_file", "target": "src/main.rs"}),
        ),
        decision(
            "cmd allowed",
            json!({"action_type": "execute_command", "target": "cargo test --all"}),
        ),
        decision(
            "cmd blocked",
            json!({"action_type": "execute_command", "target": "terraform apply -auto-approve"}),
        ),
        decision(
            "cmd other",
            json!({"action_type": "execute_command", "target": "make deploy"}),
        ),
        Template {
            name: "cmd phase-b",
            kind: Kind::PhaseDecision,
            body: json!({"action_type": "execute_command", "target": "phase-b-tool --run"}).to_string(),
        },
        decision(
            "git push main",
            json!({"action_type": "git_operation", "target": "origin/main", "operation": "push"}),
        ),
        decision(
            "git push branch",
            json!({"action_type": "git_operation", "target": "origin/feature", "requested_operation": "push"}),
        ),
        decision(
            "mcp allowed",
            json!({"action_type": "mcp_tool_call", "target": "github:create_pull_request"}),
        ),
        decision(
            "mcp blocked",
            json!({"action_type": "mcp_tool_call", "target": "evil:exfiltrate"}),
        ),
        decision(
            "mcp unknown",
            json!({"action_type": "mcp_tool_call", "server": "stranger", "tool": "x"}),
        ),
        decision(
            "release approved",
            json!({
                "action_type": "release_governance_record", "target": "production", "requested_operation": "verify",
                "release_governance": {
                    "metadata_kind": "rollout-promotion-execution", "release_channel": "stable",
                    "release_version": "v1.4.0", "approval_state": "approved", "approval_id": "apr_1",
                    "evidence_refs": ["evidence://releases/v1.4.0/promotion"]
                }
            }),
        ),
        decision(
            "release pending",
            json!({
                "action_type": "release_governance_record", "target": "production",
                "release_governance": {"metadata_kind": "rollout-promotion-execution", "approval_state": "pending"}
            }),
        ),
        decision(
            "base pack",
            json!({"action_type": "read_file", "target": PHASE_A, "policy_pack": "soak-base"}),
        ),
        decision(
            "unknown pack",
            json!({"action_type": "read_file", "target": "a", "policy_pack": "no-such-pack"}),
        ),
        decision("unknown action", json!({"action_type": "frobnicate", "target": "x"})),
        Template {
            name: "invalid json",
            kind: Kind::Invalid,
            // Malformed, not truncated: a truncated request in compatible mode waits for the rest until
            // --request-timeout, as the protocol says.
            body: r#"{"action_type":"read_file","target":}"#.to_owned(),
        },
        Template {
            name: "health",
            kind: Kind::Health,
            body: HEALTH.to_owned(),
        },
    ]
}

/// The second pack inherits the first and alternates what it blocks, so each reload changes two decisions.
fn write_packs(dir: &Path, phase: Phase) -> io::Result<()> {
    let base = "metadata:\n  id: soak-base\nfilesystem:\n  block_read: ['**/.env', '**/*.pem']\n  \
                block_write: ['.github/workflows/**']\n  require_approval_write: ['policies/**']\n\
                commands:\n  block: ['terraform apply*', 'kubectl delete*']\n  allow: ['cargo test*', 'terraform plan*']\n\
                mcp:\n  allowed_servers: [github]\n  blocked_servers: [evil]\n";
    let (read, command) = match phase {
        Phase::A => ("soak/phase-a/**", "phase-a-tool*"),
        Phase::B => ("soak/phase-b/**", "phase-b-tool*"),
    };
    let soak = format!(
        "metadata:\n  id: soak\n  inherits: [soak-base]\nfilesystem:\n  block_read: ['{read}']\n\
         commands:\n  block: ['{command}']\n"
    );
    for (id, text) in [("soak-base", base.to_owned()), ("soak", soak)] {
        fs::create_dir_all(dir.join(id))?;
        let staged = dir.join(format!("{id}.policy.yaml.new"));
        fs::write(&staged, text)?;
        fs::rename(&staged, dir.join(id).join("policy.yaml"))?;
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    A,
    B,
}

impl Phase {
    fn flip(self) -> Phase {
        match self {
            Phase::A => Phase::B,
            Phase::B => Phase::A,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// State shared between the controller and the clients

struct Shared {
    socket: PathBuf,
    stop: AtomicBool,
    /// Set from just before a kill until the restarted daemon answers.
    restarting: AtomicBool,
    /// Incremented at each kill and again when the restart answers.
    epoch: AtomicU64,
    acknowledged: AtomicU64,
    deadline: Instant,
}

impl Shared {
    /// A window marker: a failure is excused when a restart was in progress or happened while the request ran.
    fn window(&self) -> (bool, u64) {
        (
            self.restarting.load(Ordering::SeqCst),
            self.epoch.load(Ordering::SeqCst),
        )
    }

    fn excused(&self, started: (bool, u64)) -> bool {
        let now = self.window();
        started.0 || now.0 || started.1 != now.1
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst) && Instant::now() < self.deadline
    }
}

#[derive(Default)]
struct ClientReport {
    ids: Vec<u128>,
    latencies_us: Vec<u32>,
    requests: u64,
    invalid_answered: u64,
    health_ok: u64,
    excused_failures: u64,
    failures: Vec<String>,
    failure_count: u64,
    mismatches: Vec<String>,
    mismatch_count: u64,
    /// name -> (decision, rule_id) fixed by the first answer.
    expected: BTreeMap<&'static str, (String, String)>,
    reconnects: u64,
}

impl ClientReport {
    fn failure(&mut self, message: String) {
        self.failure_count += 1;
        if self.failures.len() < EXAMPLES {
            self.failures.push(message);
        }
    }

    fn mismatch(&mut self, message: String) {
        self.mismatch_count += 1;
        if self.mismatches.len() < EXAMPLES {
            self.mismatches.push(message);
        }
    }

    /// Checks one answer to `template`; records the evidence id of an acknowledged decision.
    fn answer(&mut self, template: &Template, line: &[u8], shared: &Shared) {
        let value: Value = match serde_json::from_slice(line) {
            Ok(value) => value,
            Err(error) => {
                let text = String::from_utf8_lossy(line);
                return self.mismatch(format!("{}: answer is not JSON ({error}): {text}", template.name));
            }
        };
        let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        match template.kind {
            Kind::Health => {
                if field("status") == "ok" {
                    self.health_ok += 1;
                } else {
                    self.mismatch(format!("health: {value}"));
                }
            }
            Kind::Invalid => {
                if field("rule_id") == "daemon.request.invalid" {
                    self.invalid_answered += 1;
                } else {
                    self.mismatch(format!("invalid json: {value}"));
                }
                // Not expected, but if a bad-input answer is ever recorded, its record must be in the log too.
                if let Some(id) = record_id(&value) {
                    self.ids.push(id);
                }
            }
            Kind::Decision | Kind::PhaseDecision => {
                let Some(id) = record_id(&value) else {
                    return self.mismatch(format!("{}: no evidence reference: {value}", template.name));
                };
                self.ids.push(id);
                shared.acknowledged.fetch_add(1, Ordering::Relaxed);
                if template.kind == Kind::Decision {
                    let seen = (field("decision"), field("rule_id"));
                    match self.expected.get(template.name) {
                        None => {
                            self.expected.insert(template.name, seen);
                        }
                        Some(expected) if *expected != seen => {
                            let message = format!("{}: expected {expected:?}, got {value}", template.name);
                            self.mismatch(message);
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
}

/// The 96-bit record id of a `go-daemon-evidence://<record_id>` reference.
fn record_id(answer: &Value) -> Option<u128> {
    answer
        .get("evidence_refs")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|reference| reference.strip_prefix("go-daemon-evidence://"))
        .and_then(parse_id)
}

fn parse_id(id: &str) -> Option<u128> {
    (id.len() == 24).then(|| u128::from_str_radix(id, 16).ok()).flatten()
}

/// Paces a client at `per_second`; after a stall it resumes at the pace rather than bursting to catch up.
struct Pacer {
    interval: Duration,
    next: Instant,
}

impl Pacer {
    fn new(per_second: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.1)),
            next: Instant::now(),
        }
    }

    fn wait(&mut self) {
        let now = Instant::now();
        if self.next > now {
            thread::sleep(self.next - now);
        } else if now - self.next > Duration::from_secs(1) {
            self.next = now;
        }
        self.next += self.interval;
    }
}

fn compat_client(shared: &Shared, templates: &[Template], offset: usize, per_second: f64) -> ClientReport {
    let mut report = ClientReport::default();
    let mut pacer = Pacer::new(per_second);
    let mut index = offset;
    while shared.running() && report.requests < MAX_REQUESTS_PER_CLIENT {
        pacer.wait();
        let template = &templates[index % templates.len()];
        let started = shared.window();
        let clock = Instant::now();
        report.requests += 1;
        match measure::exchange(&shared.socket, &template.body, IO_TIMEOUT) {
            Ok(line) => {
                let micros = clock.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                report.latencies_us.push(micros);
                report.answer(template, &line, shared);
                index += 1;
            }
            // Not acknowledged: the same request is sent again on the next turn.
            Err(_) if shared.excused(started) => {
                report.excused_failures += 1;
                thread::sleep(Duration::from_millis(50));
            }
            Err(error) => {
                let message = format!("{}: {error} after {:?}", template.name, clock.elapsed());
                report.failure(message);
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    report
}

fn stream_client(shared: &Shared, templates: &[Template], offset: usize, batches_per_second: f64) -> ClientReport {
    let mut report = ClientReport::default();
    let mut pacer = Pacer::new(batches_per_second);
    let mut connection: Option<Stream> = None;
    let mut batches_on_connection = 0;
    let mut index = offset;
    // Health probes are for compatible mode; everything else, including bad lines, goes down the stream.
    let batch_templates: Vec<&Template> = templates.iter().filter(|t| t.kind != Kind::Health).collect();
    while shared.running() && report.requests < MAX_REQUESTS_PER_CLIENT {
        pacer.wait();
        let started = shared.window();
        let clock = Instant::now();
        let result = (|| -> io::Result<()> {
            if connection.is_none() || batches_on_connection >= BATCHES_PER_CONNECTION {
                connection = Some(Stream::open(&shared.socket, IO_TIMEOUT)?);
                batches_on_connection = 0;
                report.reconnects += 1;
            }
            let link = connection.as_mut().expect("just opened");
            let batch: Vec<&Template> = (0..STREAM_BATCH)
                .map(|n| batch_templates[(index + n) % batch_templates.len()])
                .collect();
            let mut bytes = Vec::with_capacity(STREAM_BATCH * 256);
            for template in &batch {
                bytes.extend_from_slice(template.body.as_bytes());
                bytes.push(b'\n');
            }
            report.requests += STREAM_BATCH as u64;
            link.send(&bytes)?;
            // Each answer is acknowledged as soon as its line is read, even if the connection fails later.
            let mut line = Vec::new();
            for template in batch {
                link.read_line(&mut line)?;
                report.answer(template, &line, shared);
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                let micros = clock.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                report.latencies_us.push(micros);
                batches_on_connection += 1;
                index += STREAM_BATCH;
            }
            Err(error) => {
                connection = None;
                if shared.excused(started) {
                    report.excused_failures += 1;
                } else {
                    report.failure(format!("stream batch: {error} after {:?}", clock.elapsed()));
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    report
}

// ---------------------------------------------------------------------------------------------------------------
// The daemon

struct Daemon {
    child: Child,
    pid: u32,
}

impl Drop for Daemon {
    /// A soak that stops part-way, on a panic or a failed check, leaves no daemon behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Scratch {
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    packs: PathBuf,
    daemon_log: PathBuf,
}

fn spawn_daemon(scratch: &Scratch) -> io::Result<Daemon> {
    let stderr = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&scratch.daemon_log)?;
    let child = measure::daemon_command(&scratch.socket)
        .arg("--evidence-log")
        .arg(&scratch.log)
        .args(["--evidence-sync", "batch"])
        .arg("--policy-dir")
        .arg(&scratch.packs)
        .args(["--default-pack", "soak"])
        .env("RUST_LOG", "info,cavra::decision=warn")
        .stderr(stderr)
        .spawn()?;
    let pid = child.id();
    Ok(Daemon { child, pid })
}

/// Waits until the daemon with `pid` answers a health probe: the pid tells a restarted daemon from its predecessor.
fn wait_healthy(socket: &Path, pid: u32, limit: Duration) -> Result<(), String> {
    measure::wait_ready(socket, Instant::now() + limit, Duration::from_millis(20), |answer| {
        serde_json::from_slice::<Value>(answer).is_ok_and(|health| health["pid"].as_u64() == Some(u64::from(pid)))
    })
    .map(|_| ())
    .map_err(|last| format!("daemon pid {pid} did not answer within {limit:?}: {last}"))
}

/// The decisions on the two phase probes, each with its evidence id.
fn probe(socket: &Path) -> io::Result<Vec<(String, Option<u128>)>> {
    [PHASE_A, PHASE_B]
        .iter()
        .map(|target| {
            let line = measure::exchange(
                socket,
                &json!({"action_type": "read_file", "target": target}).to_string(),
                IO_TIMEOUT,
            )?;
            let value: Value = serde_json::from_slice(&line).map_err(io::Error::other)?;
            Ok((
                value["decision"].as_str().unwrap_or_default().to_owned(),
                record_id(&value),
            ))
        })
        .collect()
}

fn expected_probe(phase: Phase) -> [&'static str; 2] {
    match phase {
        Phase::A => ["block", "allow"],
        Phase::B => ["allow", "block"],
    }
}

/// Polls the probes until they show `phase` (up to `limit`); returns how long that took.
fn wait_phase(socket: &Path, phase: Phase, limit: Duration, ids: &mut Vec<u128>) -> Result<Duration, String> {
    let clock = Instant::now();
    let mut last = String::new();
    while clock.elapsed() < limit {
        match probe(socket) {
            Ok(answers) => {
                ids.extend(answers.iter().filter_map(|(_, id)| *id));
                let decisions: Vec<&str> = answers.iter().map(|(d, _)| d.as_str()).collect();
                if decisions == expected_probe(phase) {
                    return Ok(clock.elapsed());
                }
                last = format!("{decisions:?}");
            }
            Err(error) => last = error.to_string(),
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "phase {phase:?} not in force after {limit:?}; probes answered {last}"
    ))
}

#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kb: u64,
    fds: usize,
    cpu_ticks: u64,
    acknowledged: u64,
    generation: usize,
}

fn sample(pid: u32, at: Duration, acknowledged: u64, generation: usize) -> Option<Sample> {
    Some(Sample {
        at,
        rss_kb: measure::status_kib(pid, "VmRSS")?,
        fds: measure::open_fds(pid)?,
        cpu_ticks: measure::cpu_ticks(pid)?,
        acknowledged,
        generation,
    })
}

fn torn_files(scratch: &Scratch) -> Vec<(PathBuf, u64)> {
    let name = scratch
        .log
        .file_name()
        .expect("log name")
        .to_string_lossy()
        .into_owned();
    let mut found: Vec<(PathBuf, u64)> = fs::read_dir(&scratch.dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| {
                    entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{name}.torn-"))
                })
                .map(|entry| (entry.path(), entry.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

// ---------------------------------------------------------------------------------------------------------------
// The run

struct Config {
    minutes: f64,
    rate: f64,
    keep: bool,
}

impl Config {
    fn from_env() -> Config {
        Config {
            minutes: env_number("CAVRA_SOAK_MINUTES", 2.0),
            rate: env_number("CAVRA_SOAK_RATE", 2000.0),
            keep: std::env::var_os("CAVRA_SOAK_KEEP").is_some_and(|value| value == "1"),
        }
    }
}

/// The positive number in the environment variable `name`, `default` when it is unset. Anything else stops the soak:
/// a typo must not silently soak for some other length of time.
fn env_number(name: &str, default: f64) -> f64 {
    let Ok(text) = std::env::var(name) else {
        return default;
    };
    text.parse::<f64>()
        .ok()
        .filter(|number| *number > 0.0 && number.is_finite())
        .unwrap_or_else(|| panic!("{name}={text:?} is not a positive number"))
}

#[derive(Default)]
struct Events {
    reloads: usize,
    reload_latencies: Vec<Duration>,
    restarts: usize,
    restart_downtimes: Vec<Duration>,
    /// The daemon exited without being told to.
    crash: Option<String>,
    /// A restarted daemon that did not answer within `RESTART_LIMIT`.
    slow_restart: Option<String>,
    /// Reloads whose pack was not in force within `RELOAD_LIMIT`.
    slow_reloads: Vec<String>,
    /// Restarts after which the pack in force was not the current one.
    stale_restarts: Vec<String>,
    /// What went wrong with the final SIGTERM.
    stop: Option<String>,
    control_ids: Vec<u128>,
}

#[test]
#[ignore = "minutes of load on the release daemon: cargo test --release --test soak -- --ignored --nocapture"]
fn soak() {
    let config = Config::from_env();
    let duration = Duration::from_secs_f64(config.minutes * 60.0);
    let (reload_every, kill_every) = if config.minutes >= 10.0 {
        (Duration::from_secs(60), Duration::from_secs(600))
    } else {
        (Duration::from_secs(20), Duration::from_secs(60))
    };
    let temp = tempfile::Builder::new()
        .prefix("cavra-soak-")
        .tempdir()
        .expect("create a scratch directory");
    let dir = temp.path().to_path_buf();
    let scratch = Scratch {
        socket: dir.join("cavra.sock"),
        log: dir.join("evidence.jsonl"),
        packs: dir.join("packs"),
        daemon_log: dir.join("daemon.log"),
        dir: dir.clone(),
    };
    let load_before = measure::load_average();
    println!(
        "soak: {DAEMON}\nsoak: {:.1} min, target {:.0} requests/s, reload every {:?}, kill -9 every {:?}; scratch {}",
        config.minutes,
        config.rate,
        reload_every,
        kill_every,
        dir.display()
    );
    let mut phase = Phase::A;
    write_packs(&scratch.packs, phase).expect("write the packs");

    let mut daemon = spawn_daemon(&scratch).expect("spawn cavra-runtime --serve");
    if let Err(error) = wait_healthy(&scratch.socket, daemon.pid, Duration::from_secs(30)) {
        panic!(
            "{error}; daemon log:\n{}",
            fs::read_to_string(&scratch.daemon_log).unwrap_or_default()
        );
    }
    let mut events = Events::default();
    if let Err(error) = wait_phase(&scratch.socket, phase, RELOAD_LIMIT, &mut events.control_ids) {
        panic!("the first pack is not in force: {error}");
    }

    let start = Instant::now();
    let shared = Arc::new(Shared {
        socket: scratch.socket.clone(),
        stop: AtomicBool::new(false),
        restarting: AtomicBool::new(false),
        epoch: AtomicU64::new(0),
        acknowledged: AtomicU64::new(0),
        deadline: start + duration,
    });
    let templates = Arc::new(templates());
    let compat_rate = config.rate * COMPAT_SHARE / COMPAT_CLIENTS as f64;
    let batch_rate = config.rate * (1.0 - COMPAT_SHARE) / STREAM_CLIENTS as f64 / STREAM_BATCH as f64;
    let mut clients = Vec::new();
    for n in 0..COMPAT_CLIENTS {
        let (shared, templates) = (Arc::clone(&shared), Arc::clone(&templates));
        clients.push((
            "compatible",
            thread::spawn(move || compat_client(&shared, &templates, n * 5, compat_rate)),
        ));
    }
    for n in 0..STREAM_CLIENTS {
        let (shared, templates) = (Arc::clone(&shared), Arc::clone(&templates));
        clients.push((
            "stream",
            thread::spawn(move || stream_client(&shared, &templates, n * 7, batch_rate)),
        ));
    }

    // The controller: reloads, kills, samples and progress, on one clock.
    let mut generation = 0;
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut next_reload = reload_every;
    let mut next_kill = kill_every;
    let mut next_progress = Duration::from_secs(60);
    while start.elapsed() < duration {
        let now = start.elapsed();
        if let Ok(Some(status)) = daemon.child.try_wait() {
            events.crash = Some(format!(
                "daemon pid {} exited on its own at {now:?}: {status}",
                daemon.pid
            ));
            break;
        }
        if now >= next_sample {
            if let Some(sample) = sample(daemon.pid, now, shared.acknowledged.load(Ordering::Relaxed), generation) {
                samples.push(sample);
            }
            next_sample += SAMPLE_EVERY;
        }
        if now >= next_progress {
            let last = samples.last().copied();
            println!(
                "soak: {:>5.1} min  acknowledged {:>9}  rss {:>6} KiB  fds {:>4}  restarts {}  reloads {}",
                now.as_secs_f64() / 60.0,
                shared.acknowledged.load(Ordering::Relaxed),
                last.map_or(0, |s| s.rss_kb),
                last.map_or(0, |s| s.fds),
                events.restarts,
                events.reloads,
            );
            next_progress += Duration::from_secs(60);
        }
        if now >= next_kill {
            next_kill += kill_every;
            if next_reload <= now + Duration::from_secs(1) {
                next_reload += reload_every;
            }
            shared.restarting.store(true, Ordering::SeqCst);
            shared.epoch.fetch_add(1, Ordering::SeqCst);
            let killed = Instant::now();
            let _ = kill(Pid::from_raw(daemon.pid as i32), Signal::SIGKILL);
            let _ = daemon.child.wait();
            let torn_before = torn_files(&scratch).len();
            daemon = spawn_daemon(&scratch).expect("respawn cavra-runtime --serve");
            generation += 1;
            match wait_healthy(&scratch.socket, daemon.pid, RESTART_LIMIT) {
                Ok(_) => {
                    let downtime = killed.elapsed();
                    events.restarts += 1;
                    events.restart_downtimes.push(downtime);
                    shared.epoch.fetch_add(1, Ordering::SeqCst);
                    shared.restarting.store(false, Ordering::SeqCst);
                    let torn = torn_files(&scratch).len() - torn_before;
                    println!(
                        "soak: {:>5.1} min  kill -9 and restart: answering again after {downtime:.2?}{}",
                        now.as_secs_f64() / 60.0,
                        if torn > 0 {
                            format!(", {torn} torn record moved aside")
                        } else {
                            String::new()
                        }
                    );
                    if let Err(error) = wait_phase(&scratch.socket, phase, RELOAD_LIMIT, &mut events.control_ids) {
                        events
                            .stale_restarts
                            .push(format!("restart {}: {error}", events.restarts));
                    }
                }
                Err(error) => {
                    events.slow_restart = Some(format!("restart {}: {error}", events.restarts + 1));
                    break;
                }
            }
            continue;
        }
        if now >= next_reload {
            next_reload += reload_every;
            phase = phase.flip();
            write_packs(&scratch.packs, phase).expect("rewrite the packs");
            let _ = kill(Pid::from_raw(daemon.pid as i32), Signal::SIGHUP);
            events.reloads += 1;
            match wait_phase(&scratch.socket, phase, RELOAD_LIMIT, &mut events.control_ids) {
                Ok(latency) => events.reload_latencies.push(latency),
                Err(error) => events.slow_reloads.push(format!("reload {}: {error}", events.reloads)),
            }
            continue;
        }
        thread::sleep(Duration::from_millis(100));
    }

    // Wind down: stop the clients, then the daemon, cleanly.
    shared.stop.store(true, Ordering::SeqCst);
    let elapsed = start.elapsed();
    let mut reports = Vec::new();
    for (mode, handle) in clients {
        reports.push((mode, handle.join().expect("a client thread panicked")));
    }
    if let Some(sample) = sample(
        daemon.pid,
        start.elapsed(),
        shared.acknowledged.load(Ordering::Relaxed),
        generation,
    ) {
        samples.push(sample);
    }
    if events.crash.is_none() && events.slow_restart.is_none() {
        events.stop = match measure::terminate(&mut daemon.child, Duration::from_secs(30)) {
            Some(status) if status.success() => None,
            Some(status) => Some(format!("the daemon exited with {status}")),
            None => Some("the daemon did not exit within 30 s".to_owned()),
        };
    }
    drop(daemon);

    // Evidence: the verifier's report, then every acknowledged id looked up in the log.
    let verify_clock = Instant::now();
    let log = scratch.log.to_str().expect("a UTF-8 scratch path");
    let verify = common::run(&["--verify-evidence", "--evidence-log", log], "");
    let report: Value = serde_json::from_slice(&verify.stdout)
        .unwrap_or_else(|_| json!({"valid": false, "errors": [String::from_utf8_lossy(&verify.stderr).into_owned()]}));
    let verify_time = verify_clock.elapsed();
    let valid = verify.status.success() && report["valid"] == true;
    let (mut logged, log_bytes) = logged_ids(&scratch.log);
    logged.sort_unstable();
    let duplicates_in_log = logged.windows(2).filter(|pair| pair[0] == pair[1]).count();
    let mut acknowledged: Vec<u128> = reports.iter().flat_map(|(_, r)| r.ids.iter().copied()).collect();
    acknowledged.extend(&events.control_ids);
    let missing: Vec<u128> = acknowledged
        .iter()
        .copied()
        .filter(|id| logged.binary_search(id).is_err())
        .collect();
    acknowledged.sort_unstable();
    let duplicate_acks = acknowledged.windows(2).filter(|pair| pair[0] == pair[1]).count();
    let torn = torn_files(&scratch);
    // A decision is answered only once its record is durable, so the torn tail a kill -9 can leave must never hold
    // an acknowledged one.
    let torn_acknowledged: Vec<u128> = torn
        .iter()
        .filter_map(|(path, _)| line_record_id(&String::from_utf8_lossy(&fs::read(path).ok()?)))
        .filter(|id| acknowledged.binary_search(id).is_ok())
        .collect();

    // The summary.
    let sum = |f: fn(&ClientReport) -> u64| reports.iter().map(|(_, r)| f(r)).sum::<u64>();
    let mut compat_latencies: Vec<u32> = reports
        .iter()
        .filter(|(m, _)| *m == "compatible")
        .flat_map(|(_, r)| r.latencies_us.iter().copied())
        .collect();
    let mut batch_latencies: Vec<u32> = reports
        .iter()
        .filter(|(m, _)| *m == "stream")
        .flat_map(|(_, r)| r.latencies_us.iter().copied())
        .collect();
    let decisions = acknowledged.len() as u64;
    let failures = sum(|r| r.failure_count);
    let mismatches = sum(|r| r.mismatch_count);
    let examples = |pick: fn(&ClientReport) -> &Vec<String>| {
        let all: Vec<&str> = reports.iter().flat_map(|(_, r)| pick(r)).map(String::as_str).collect();
        all[..all.len().min(EXAMPLES)].join("; ")
    };
    let hex = |ids: &[u128]| {
        let shown: Vec<String> = ids.iter().take(EXAMPLES).map(|id| format!("{id:024x}")).collect();
        shown.join(", ")
    };
    let listed = |problems: &[String]| (!problems.is_empty()).then(|| problems.join("; "));
    // Each check: what must hold, and why it did not.
    let checks: Vec<(String, Option<String>)> = vec![
        ("the daemon ran until told to stop".to_owned(), events.crash.clone()),
        (
            format!("every restart after kill -9 answered within {RESTART_LIMIT:?}"),
            events.slow_restart.clone(),
        ),
        (
            format!("every reload (SIGHUP) put the new pack in force within {RELOAD_LIMIT:?}"),
            listed(&events.slow_reloads),
        ),
        (
            format!("the current pack was in force within {RELOAD_LIMIT:?} of every restart"),
            listed(&events.stale_restarts),
        ),
        (
            "SIGTERM at the end: exit status 0 within 30 s".to_owned(),
            events.stop.clone(),
        ),
        (
            "decisions were acknowledged".to_owned(),
            (decisions == 0).then(|| "none: the soak proved nothing".to_owned()),
        ),
        (
            "the evidence log verifies (`--verify-evidence`)".to_owned(),
            (!valid).then(|| report.to_string()),
        ),
        (
            "every acknowledged decision has its record in the log".to_owned(),
            (!missing.is_empty()).then(|| {
                format!(
                    "{} of {decisions} missing, e.g. record_id {}",
                    missing.len(),
                    hex(&missing)
                )
            }),
        ),
        (
            "no record id twice, in the log or among the acknowledged".to_owned(),
            (duplicates_in_log > 0 || duplicate_acks > 0)
                .then(|| format!("{duplicates_in_log} in the log, {duplicate_acks} acknowledged")),
        ),
        (
            "no torn tail holds an acknowledged decision".to_owned(),
            (!torn_acknowledged.is_empty()).then(|| format!("record_id {}", hex(&torn_acknowledged))),
        ),
        (
            "no request failed outside a restart window".to_owned(),
            (failures > 0).then(|| format!("{failures} failed, e.g. {}", examples(|r| &r.failures))),
        ),
        (
            "every answer was what its request should get".to_owned(),
            (mismatches > 0).then(|| format!("{mismatches} were not, e.g. {}", examples(|r| &r.mismatches))),
        ),
    ];
    let pass = checks.iter().all(|(_, failure)| failure.is_none());

    let mut out = String::new();
    let minutes = elapsed.as_secs_f64() / 60.0;
    let _ = writeln!(out, "\n## Soak result: {}\n", if pass { "PASS" } else { "FAIL" });
    let _ = writeln!(out, "| measure | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| duration | {minutes:.1} min (reload every {} s, kill -9 every {} min) |",
        reload_every.as_secs(),
        kill_every.as_secs() / 60
    );
    let _ = writeln!(
        out,
        "| load | {} compatible-mode clients + {} stream-mode clients (batches of {STREAM_BATCH}), target {:.0} requests/s |",
        COMPAT_CLIENTS, STREAM_CLIENTS, config.rate
    );
    let _ = writeln!(out, "| requests sent | {} |", sum(|r| r.requests));
    let _ = writeln!(out, "| decisions acknowledged | {decisions} |");
    let _ = writeln!(
        out,
        "| throughput | {:.0} decisions/s average |",
        decisions as f64 / elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| other answers | {} health probes ok, {} invalid-JSON requests answered `daemon.request.invalid` (no evidence by design) |",
        sum(|r| r.health_ok),
        sum(|r| r.invalid_answered)
    );
    let _ = writeln!(
        out,
        "| latency, compatible mode (connect to answer) | p50 {} · p99 {} · p99.9 {} · max {} |",
        percentile(&mut compat_latencies, 0.50),
        percentile(&mut compat_latencies, 0.99),
        percentile(&mut compat_latencies, 0.999),
        percentile(&mut compat_latencies, 1.0)
    );
    let _ = writeln!(
        out,
        "| latency, stream batch of {STREAM_BATCH} (first write to last answer) | p50 {} · p99 {} · max {} |",
        percentile(&mut batch_latencies, 0.50),
        percentile(&mut batch_latencies, 0.99),
        percentile(&mut batch_latencies, 1.0)
    );
    let _ = writeln!(
        out,
        "| restarts (kill -9) | {} · answering again after {} |",
        events.restarts,
        list_durations(&events.restart_downtimes)
    );
    let _ = writeln!(
        out,
        "| failed requests retried during restarts | {} (unacknowledged, sent again) |",
        sum(|r| r.excused_failures)
    );
    let _ = writeln!(
        out,
        "| reloads (SIGHUP) | {} · new pack in force after p50 {} · max {} |",
        events.reloads,
        measure::median_duration(&events.reload_latencies).map_or("-".to_owned(), |d| format!("{d:.0?}")),
        events
            .reload_latencies
            .iter()
            .max()
            .map_or("-".to_owned(), |d| format!("{d:.0?}"))
    );
    let _ = writeln!(
        out,
        "| evidence log | {} records, {:.2} GB, `--verify-evidence` {} in {verify_time:.1?} |",
        report["records"].as_u64().unwrap_or(logged.len() as u64),
        log_bytes as f64 / 1e9,
        if valid { "valid" } else { "INVALID" }
    );
    let _ = writeln!(
        out,
        "| records checked | {decisions} acknowledged ids looked up, {} missing |",
        missing.len()
    );
    let _ = writeln!(
        out,
        "| torn records moved aside | {} file(s){} |",
        torn.len(),
        if torn.is_empty() {
            String::new()
        } else {
            format!(
                " ({} bytes)",
                torn.iter()
                    .map(|(_, len)| len.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let rss: Vec<u64> = samples.iter().map(|s| s.rss_kb).collect();
    let fds: Vec<usize> = samples.iter().map(|s| s.fds).collect();
    let _ = writeln!(
        out,
        "| daemon RSS | min {:.1} MiB · max {:.1} MiB over {} samples |",
        rss.iter().min().copied().unwrap_or(0) as f64 / 1024.0,
        rss.iter().max().copied().unwrap_or(0) as f64 / 1024.0,
        samples.len()
    );
    let _ = writeln!(
        out,
        "| daemon open descriptors | min {} · max {} |",
        fds.iter().min().copied().unwrap_or(0),
        fds.iter().max().copied().unwrap_or(0)
    );
    let _ = writeln!(out, "| daemon CPU | {} |", cpu_summary(&samples));
    let _ = writeln!(
        out,
        "| machine | {} CPUs, load average {load_before} before, {} after |",
        thread::available_parallelism().map_or(0, |n| n.get()),
        measure::load_average()
    );
    let _ = writeln!(
        out,
        "\nRSS over time (MiB; `|` marks a restart):\n\n```text\n{}\n```",
        rss_series(&samples)
    );
    let _ = writeln!(out, "\n| check | result |\n|---|---|");
    for (check, failure) in &checks {
        let _ = writeln!(
            out,
            "| {check} | {} |",
            failure
                .as_deref()
                .map_or("PASS".to_owned(), |why| format!("FAIL: {why}"))
        );
    }
    if pass && !config.keep {
        drop(temp);
    } else {
        let kept = temp.keep();
        let _ = writeln!(
            out,
            "\nscratch directory kept: {} (daemon log: daemon.log)",
            kept.display()
        );
    }
    // Past the harness's capture, in one write: the report is the point of the run, passed or failed.
    let _ = io::stderr().write_all(out.as_bytes());
    for (check, failure) in &checks {
        assert!(
            failure.is_none(),
            "soak check failed: {check}: {}",
            failure.as_deref().unwrap_or_default()
        );
    }
}

/// Every record id in the log (taken from the raw line; `--verify-evidence` checks the records themselves).
fn logged_ids(log: &Path) -> (Vec<u128>, u64) {
    let Ok(file) = File::open(log) else {
        return (Vec::new(), 0);
    };
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut ids = Vec::new();
    for line in BufReader::with_capacity(1 << 20, file).lines() {
        let Ok(line) = line else { break };
        ids.extend(line_record_id(&line));
    }
    (ids, bytes)
}

/// The record id of one evidence log line, whole or torn.
fn line_record_id(line: &str) -> Option<u128> {
    line.split_once("\"record_id\":\"")
        .and_then(|(_, rest)| rest.get(..24))
        .and_then(parse_id)
}

/// A latency percentile in milliseconds, from microseconds.
fn percentile(latencies_us: &mut [u32], quantile: f64) -> String {
    let Some(micros) = measure::percentile(latencies_us, quantile) else {
        return "-".to_owned();
    };
    if micros >= 10_000 {
        format!("{:.0} ms", f64::from(micros) / 1000.0)
    } else {
        format!("{:.2} ms", f64::from(micros) / 1000.0)
    }
}

fn list_durations(values: &[Duration]) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    values
        .iter()
        .map(|d| format!("{:.2} s", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn cpu_summary(samples: &[Sample]) -> String {
    // CPU time restarts with each daemon, so it is summed per generation.
    let mut per_generation: BTreeMap<usize, (Sample, Sample)> = BTreeMap::new();
    for sample in samples {
        per_generation
            .entry(sample.generation)
            .and_modify(|(_, last)| *last = *sample)
            .or_insert((*sample, *sample));
    }
    let (mut ticks, mut wall, mut decisions) = (0u64, 0.0, 0u64);
    for (first, last) in per_generation.values() {
        ticks += last.cpu_ticks.saturating_sub(first.cpu_ticks);
        wall += (last.at - first.at).as_secs_f64();
        decisions += last.acknowledged.saturating_sub(first.acknowledged);
    }
    if wall <= 0.0 || decisions == 0 {
        return "-".to_owned();
    }
    let seconds = ticks as f64 / measure::clock_ticks_per_second();
    format!(
        "{:.0}% of one core on average, {:.0} µs per decision",
        100.0 * seconds / wall,
        1e6 * seconds / decisions as f64
    )
}

/// One value per minute (or per sample on short runs), with `|` before the first sample of a restarted daemon.
fn rss_series(samples: &[Sample]) -> String {
    let step = if samples.len() > 40 { 6 } else { 1 };
    let mut out = String::new();
    let mut generation = 0;
    for (n, sample) in samples.iter().enumerate() {
        let restarted = sample.generation != generation;
        if n % step != 0 && !restarted && n != samples.len() - 1 {
            continue;
        }
        if restarted {
            out.push_str("| ");
            generation = sample.generation;
        }
        let _ = write!(
            out,
            "{}m:{:.1} ",
            (sample.at.as_secs() + 30) / 60,
            sample.rss_kb as f64 / 1024.0
        );
    }
    out.trim_end().to_owned()
}
