//! Daemon load benchmark: the real `cavra-runtime --serve` under concurrent clients, compared in the same run with a
//! trivial echo server on the same kind of socket. Run with `cargo bench --bench daemon_load`; it prints a markdown
//! summary at the end. It reports; it does not assert.
//!
//! - The echo server is this binary again (`daemon_load echo-server SOCKET`), a separate process on a tokio
//!   multi-thread runtime like the daemon's. In compatible mode it reads one line, writes it back and closes; after a
//!   `{"protocol":...}` first line it echoes lines on the same connection (every complete line read goes back in one
//!   write), so both servers are driven by exactly the same client code.
//! - Every run spawns a fresh server, warms up, measures, and stops it. Variants of one (mode, clients) cell run back
//!   to back, in a rotated order each repetition; each cell is repeated and the median reported. Comparisons (ratios
//!   of requests/s, differences of CPU per request) are taken within a repetition, between servers measured moments
//!   apart, which cancels most machine drift; the median of them is shown with the lowest and highest, because on a
//!   shared machine the spread matters as much.
//! - Server CPU is the run time of every thread of the server process over the measurement window (from
//!   /proc/PID/task/*/schedstat, in nanoseconds), divided by the requests answered in it. Per-process accounting holds
//!   on a busy machine far better than throughput does: it is what the server spent, whoever else ran.
//! - Rows: the echo server; the daemon logging a line per decision to stderr (its default), with `RUST_LOG=warn` (no
//!   line per decision), and to the journal (`--log-target journald`: one datagram per decision, sent to a socket this
//!   benchmark drains, mounted at the journal's path in a private mount namespace; root only, else left out); and
//!   with an evidence log (`batch`, `batch` with HMAC signing, `always`).
//! - Readiness (spawn to first health answer) is measured without evidence, with a new evidence log each start, and
//!   with an existing log of 1,100 records (HMAC, then Ed25519), whose tail the daemon checks at start.
//! - Every loop is bounded in time and count; the whole run takes about 9 minutes on a 2-core machine.
//!
//! `daemon_load drive compatible|stream|pipelined CLIENTS SECONDS SOCKET PID` loads a server started by hand (under
//! `perf`, say) with the same clients and prints one line.
//!
//! Environment:
//! - `CAVRA_LOAD_SECONDS` (measurement window per run, default 1.2), `CAVRA_LOAD_REPS` (default 5).
//! - `CAVRA_LOAD_SERVER_CPUS`, `CAVRA_LOAD_CLIENT_CPUS`: CPU lists (`0-1`, `2-9`) the servers (daemon and echo) and
//!   the load generator are confined to (`sched_setaffinity`, as `taskset -c` does), so that they do not share CPUs.
//! - `CAVRA_LOAD_MODES` (`compatible,stream,pipelined`), `CAVRA_LOAD_CLIENTS` (`1,8,64`), `CAVRA_LOAD_VARIANTS`
//!   (`echo,daemon,warn,journald,batch,hmac,always`): run only these, for a quicker look; the report's tables then
//!   show what was measured.
//! - `CAVRA_LOAD_DAEMON`: the daemon binary to measure instead of this build's (an earlier build, for a before and
//!   after with the same measurement).
//! - `CAVRA_LOAD_EVIDENCE_ARGS`: more daemon flags for the `batch` and `always` rows, split at white space (an Ed25519
//!   key, say); `CAVRA_LOAD_ROTATE_MS`: rename the evidence log every this many milliseconds during a run, as rotation
//!   does.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

#[path = "../tests/common/measure.rs"]
mod measure;

use measure::{CpuSet, HEALTH, Stream, daemon_args, daemon_command, median, median_duration};

const CLIENTS: [usize; 3] = [1, 8, 64];
/// Requests each pipelining stream-mode client keeps outstanding on its connection.
const DEPTH: usize = 16;
const WARMUP: Duration = Duration::from_millis(300);
/// Hard bounds on one client in one run, whatever the clock says.
const MAX_REQUESTS_PER_CLIENT: u64 = 5_000_000;
const MAX_LATENCIES_PER_CLIENT: usize = 2_000_000;
/// Bounds every blocking read and write, so a stuck server fails a run instead of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const READINESS_SPAWNS: usize = 20;
/// Records in the existing logs readiness is measured with: more than the daemon checks at start (1,000).
const EXISTING_RECORDS: usize = 1100;
const IDLE_CONNECTIONS: usize = 1000;

/// What clients send, in rotation; realistic requests of each kind the engine decides.
const REQUESTS: [&str; 5] = [
    r#"{"session_id":"bench","agent_id":"daemon-load","action_type":"execute_command","target":"terraform plan"}"#,
    r#"{"session_id":"bench","agent_id":"daemon-load","action_type":"read_file","target":"src/app/config/settings.yaml"}"#,
    r#"{"session_id":"bench","agent_id":"daemon-load","action_type":"write_file","target":"config/../.env"}"#,
    r#"{"session_id":"bench","agent_id":"daemon-load","action_type":"git_operation","target":"origin/main","operation":"push"}"#,
    r#"{"session_id":"bench","agent_id":"daemon-load","action_type":"mcp_tool_call","target":"github:create_pull_request"}"#,
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("echo-server") => echo_server(Path::new(args.get(1).expect("usage: daemon_load echo-server SOCKET"))),
        Some("drive") => drive_command(&args[1..]),
        // Anything else (cargo passes `--bench`) runs the benchmark.
        _ => run_benchmark(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration of one run

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    /// A connection per request.
    Compatible,
    /// One persistent stream-mode connection per client; a client waits for each answer before its next request.
    Stream,
    /// As `Stream`, with `DEPTH` requests outstanding per client.
    Pipelined,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Compatible, Mode::Stream, Mode::Pipelined];

    fn name(self) -> &'static str {
        match self {
            Mode::Compatible => "compatible",
            Mode::Stream => "stream",
            Mode::Pipelined => "pipelined",
        }
    }

    fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Variant {
    Echo,
    /// Default logging (info, every decision logged) to stderr, which goes to /dev/null.
    Daemon,
    /// RUST_LOG=warn: no per-decision log line.
    DaemonQuiet,
    /// `--log-target journald`: a datagram per decision to the journal's socket (here, a sink; see [`JournalSink`]).
    DaemonJournal,
    EvidenceBatch,
    /// `batch`, every record signed with HMAC-SHA256.
    EvidenceBatchHmac,
    EvidenceAlways,
}

impl Variant {
    const ALL: [Variant; 7] = [
        Variant::Echo,
        Variant::Daemon,
        Variant::DaemonQuiet,
        Variant::DaemonJournal,
        Variant::EvidenceBatch,
        Variant::EvidenceBatchHmac,
        Variant::EvidenceAlways,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::Echo => "echo",
            Variant::Daemon => "daemon",
            Variant::DaemonQuiet => "daemon RUST_LOG=warn",
            Variant::DaemonJournal => "daemon journald",
            Variant::EvidenceBatch => "daemon evidence=batch",
            Variant::EvidenceBatchHmac => "daemon evidence=batch+hmac",
            Variant::EvidenceAlways => "daemon evidence=always",
        }
    }

    /// The name `CAVRA_LOAD_VARIANTS` knows it by.
    fn short(self) -> &'static str {
        match self {
            Variant::Echo => "echo",
            Variant::Daemon => "daemon",
            Variant::DaemonQuiet => "warn",
            Variant::DaemonJournal => "journald",
            Variant::EvidenceBatch => "batch",
            Variant::EvidenceBatchHmac => "hmac",
            Variant::EvidenceAlways => "always",
        }
    }

    fn evidence_sync(self) -> Option<&'static str> {
        match self {
            Variant::EvidenceBatch | Variant::EvidenceBatchHmac => Some("batch"),
            Variant::EvidenceAlways => Some("always"),
            _ => None,
        }
    }
}

struct Settings {
    measure: Duration,
    sockets: PathBuf,
    evidence_dir: PathBuf,
    /// The CPUs servers run on, when confined.
    server_cpus: Option<CpuSet>,
    /// The HMAC key of the `batch+hmac` rows.
    hmac_key: PathBuf,
    /// Where the journald rows' daemons send their events, when those rows run.
    journal: Option<JournalSink>,
}

// ---------------------------------------------------------------------------------------------------------------
// Servers

struct Server {
    child: Child,
    socket: PathBuf,
    evidence_log: Option<PathBuf>,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `STOP_TIMEOUT`. Removes the evidence log.
    fn stop(mut self) -> Option<ExitStatus> {
        let status = measure::terminate(&mut self.child, STOP_TIMEOUT);
        if status.is_none() {
            eprintln!(
                "warning: server {} did not stop within {STOP_TIMEOUT:?}; killed it",
                self.pid()
            );
        }
        let _ = std::fs::remove_file(&self.socket);
        if let Some(log) = &self.evidence_log {
            let _ = std::fs::remove_file(log);
        }
        status
    }
}

/// `cavra-runtime --serve` with `args`, in a private mount namespace where the journal's socket is `sink`: `unshare`
/// and `sh` exec in turn, so the process measured is the daemon itself.
fn journald_command(sink: &Path, args: Vec<OsString>) -> Command {
    const SCRIPT: &str = "mount -t tmpfs -o mode=755 tmpfs /run && mkdir -p /run/systemd/journal && \
                          : > /run/systemd/journal/socket && mount --bind \"$0\" /run/systemd/journal/socket && \
                          exec \"$@\"";
    let mut command = Command::new("unshare");
    command
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", SCRIPT])
        .arg(sink)
        .arg(measure::daemon_binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn spawn(variant: Variant, settings: &Settings, id: usize) -> Server {
    let socket = settings.sockets.join(format!("s{id}.sock"));
    let mut evidence_log = None;
    let mut command = match variant {
        Variant::Echo => {
            let mut command = Command::new(std::env::current_exe().expect("own executable"));
            command
                .arg("echo-server")
                .arg(&socket)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            command
        }
        Variant::Daemon | Variant::DaemonQuiet => daemon_command(&socket),
        Variant::DaemonJournal => {
            let sink = settings.journal.as_ref().expect("journald rows run only with a sink");
            journald_command(&sink.path, daemon_args(&socket, "journald"))
        }
        Variant::EvidenceBatch | Variant::EvidenceBatchHmac | Variant::EvidenceAlways => {
            let log = settings.evidence_dir.join(format!("evidence-{id}.jsonl"));
            let _ = std::fs::remove_file(&log);
            let mut command = daemon_command(&socket);
            let sync = variant.evidence_sync().expect("an evidence row");
            command.arg("--evidence-log").arg(&log).args(["--evidence-sync", sync]);
            if variant == Variant::EvidenceBatchHmac {
                command.arg("--evidence-signing-key-file").arg(&settings.hmac_key);
            } else if let Ok(extra) = std::env::var("CAVRA_LOAD_EVIDENCE_ARGS") {
                command.args(extra.split_whitespace());
            }
            evidence_log = Some(log);
            command
        }
    };
    if variant == Variant::DaemonQuiet {
        command.env("RUST_LOG", "warn");
    }
    if let Some(cpus) = settings.server_cpus {
        measure::confine_command(&mut command, cpus);
    }
    let child = command.spawn().expect("spawn server");
    let server = Server {
        child,
        socket,
        evidence_log,
    };
    if let Err(last) = wait_ready(&server.socket, Instant::now() + READY_TIMEOUT) {
        panic!(
            "{} did not answer on {} within {READY_TIMEOUT:?}: {last}",
            variant.name(),
            server.socket.display()
        );
    }
    server
}

/// Probes every 100 µs (readiness is timed to that) until a health request is answered; the time it was answered.
fn wait_ready(socket: &Path, deadline: Instant) -> Result<Instant, String> {
    measure::wait_ready(socket, deadline, Duration::from_micros(100), |answer| {
        // The echo server answers with the request itself; the daemon with its health.
        answer.starts_with(HEALTH.as_bytes()) || contains(answer, b"\"status\":\"ok\"")
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Echo server

fn echo_server(socket: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::bind(socket).expect("bind echo socket");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(echo_connection(stream));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
}

async fn echo_connection(mut stream: tokio::net::UnixStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = Vec::with_capacity(8 * 1024);
    // The first line decides: a protocol line makes the connection persistent, anything else is answered and closed.
    let first_end = loop {
        if let Some(newline) = buf.iter().position(|&byte| byte == b'\n') {
            break newline + 1;
        }
        if buf.len() > 1 << 20 {
            return;
        }
        buf.reserve(8 * 1024);
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    };
    if !buf.starts_with(b"{\"protocol\"") {
        let _ = stream.write_all(&buf[..first_end]).await;
        let _ = stream.shutdown().await;
        return;
    }
    // Persistent: every complete line goes back, in one write per read.
    let mut start = 0;
    loop {
        if let Some(last) = buf[start..].iter().rposition(|&byte| byte == b'\n') {
            let end = start + last + 1;
            if stream.write_all(&buf[..end]).await.is_err() {
                return;
            }
            buf.drain(..end);
        }
        start = buf.len();
        if buf.len() > 1 << 20 {
            return;
        }
        buf.reserve(8 * 1024);
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Journal sink

/// A datagram socket standing in for journald's (`/run/systemd/journal/socket`): a thread takes every datagram and
/// counts the decision events among them, so the journald rows measure what sending costs the daemon, and show
/// that every decision was sent. journald's own CPU (parsing and storing each entry) is not counted.
struct JournalSink {
    path: PathBuf,
    decisions: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl JournalSink {
    /// A sink at `path`, if this machine can run the journald rows: root (for the mount namespace) with `unshare`.
    fn start(path: PathBuf) -> Result<JournalSink, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root: the journald rows need a private mount namespace".to_owned());
        }
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).map_err(|error| format!("bind {}: {error}", path.display()))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|error| error.to_string())?;
        let decisions = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopping) = (Arc::clone(&decisions), Arc::clone(&stop));
        let thread = thread::Builder::new()
            .name("journal-sink".into())
            .spawn(move || {
                let mut datagram = vec![0u8; 256 * 1024];
                while !stopping.load(Ordering::Relaxed) {
                    // journald's native protocol: `NAME=value` or, as tracing-journald writes every string,
                    // `NAME`, a newline, the value's length and the value.
                    if let Ok(len) = socket.recv(&mut datagram)
                        && (contains(&datagram[..len], b"\nDECISION\n") || contains(&datagram[..len], b"\nDECISION="))
                    {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .map_err(|error| error.to_string())?;
        Ok(JournalSink {
            path,
            decisions,
            stop,
            thread: Some(thread),
        })
    }

    fn decisions(&self) -> u64 {
        self.decisions.load(Ordering::Relaxed)
    }
}

impl Drop for JournalSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Load generation

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPING: u8 = 2;

#[derive(Default)]
struct ClientStats {
    answered: u64,
    errors: u64,
    latencies_ns: Vec<u32>,
}

impl ClientStats {
    /// Counts an answer that arrived in `phase`, `sent` ago.
    fn answer(&mut self, phase: u8, sent: Instant, now: Instant, answer: &[u8], check: bool) {
        if phase != MEASURING {
            return;
        }
        if !answer.ends_with(b"\n") || (check && is_refusal(answer)) {
            self.errors += 1;
            return;
        }
        self.answered += 1;
        if self.latencies_ns.len() < MAX_LATENCIES_PER_CLIENT {
            let nanos = now.duration_since(sent).as_nanos();
            self.latencies_ns.push(u32::try_from(nanos).unwrap_or(u32::MAX));
        }
    }
}

/// A daemon refusal (overloaded, evidence unavailable, invalid request...) is an error, not a decision.
fn is_refusal(answer: &[u8]) -> bool {
    !answer.starts_with(b"{") || contains(answer, b"\"rule_id\":\"daemon.")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn request_lines() -> Vec<Vec<u8>> {
    REQUESTS
        .iter()
        .map(|request| {
            let mut line = request.as_bytes().to_vec();
            line.push(b'\n');
            line
        })
        .collect()
}

/// One request per connection, back to back, until told to stop.
fn compatible_client(socket: &Path, phase: &AtomicU8, index: usize) -> ClientStats {
    let requests = request_lines();
    let mut stats = ClientStats::default();
    let mut buf = vec![0u8; 64 * 1024];
    for sequence in 0..MAX_REQUESTS_PER_CLIENT {
        if phase.load(Ordering::Relaxed) == STOPPING {
            break;
        }
        let request = &requests[(index + sequence as usize) % requests.len()];
        let sent = Instant::now();
        let answered = (|| -> io::Result<usize> {
            let mut stream = UnixStream::connect(socket)?;
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            stream.write_all(request)?;
            let mut len = 0;
            loop {
                let read = stream.read(&mut buf[len..])?;
                if read == 0 {
                    return Ok(len);
                }
                len += read;
                if buf[len - 1] == b'\n' || len == buf.len() {
                    return Ok(len);
                }
            }
        })();
        let now = Instant::now();
        let current = phase.load(Ordering::Relaxed);
        match answered {
            Ok(len) => stats.answer(current, sent, now, &buf[..len], sequence % 16 == 0),
            Err(_) if current == MEASURING => stats.errors += 1,
            Err(_) => {}
        }
    }
    stats
}

/// One persistent stream-mode connection keeping `depth` requests outstanding: each answer read lets one more
/// request go, and the requests released by one read go out in one write.
fn stream_client(socket: &Path, phase: &AtomicU8, index: usize, depth: usize) -> ClientStats {
    let mut stats = ClientStats::default();
    if let Err(error) = stream_client_inner(socket, phase, index, depth, &mut stats) {
        if phase.load(Ordering::Relaxed) != STOPPING {
            eprintln!("warning: stream client {index}: {error}");
        }
        stats.errors += 1;
    }
    stats
}

fn stream_client_inner(
    socket: &Path,
    phase: &AtomicU8,
    index: usize,
    depth: usize,
    stats: &mut ClientStats,
) -> io::Result<()> {
    let requests = request_lines();
    let mut stream = Stream::open(socket, IO_TIMEOUT)?;
    let mut line = Vec::with_capacity(4096);

    let mut outstanding: VecDeque<Instant> = VecDeque::with_capacity(depth);
    let mut out = Vec::with_capacity(depth * 256);
    let mut sequence = index;
    let mut sent: u64 = 0;
    let queue = |out: &mut Vec<u8>, sequence: &mut usize| {
        out.extend_from_slice(&requests[*sequence % requests.len()]);
        *sequence += 1;
    };
    for _ in 0..depth {
        queue(&mut out, &mut sequence);
    }
    let now = Instant::now();
    outstanding.extend(std::iter::repeat_n(now, depth));
    sent += depth as u64;
    stream.send(&out)?;
    out.clear();
    let mut queued = 0;
    while let Some(sent_at) = outstanding.pop_front() {
        stream.read_line(&mut line)?;
        let now = Instant::now();
        let current = phase.load(Ordering::Relaxed);
        stats.answer(current, sent_at, now, &line, sent.is_multiple_of(32));
        if current != STOPPING && sent < MAX_REQUESTS_PER_CLIENT {
            queue(&mut out, &mut sequence);
            queued += 1;
            sent += 1;
        }
        // Send what the answers read so far released once no complete answer is left in the buffer.
        if queued > 0 && !stream.has_buffered_line() {
            let now = Instant::now();
            outstanding.extend(std::iter::repeat_n(now, queued));
            stream.send(&out)?;
            out.clear();
            queued = 0;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Measurement

#[derive(Debug, Clone, Copy)]
struct Sample {
    rps: f64,
    p10_us: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
    cpu_us_per_request: f64,
    errors: u64,
    /// The server's peak resident memory (VmHWM) when the run ended, in KiB.
    peak_rss_kib: u64,
    /// Decision events the journal sink received per decision answered (journald rows only; otherwise NaN).
    journal_events_per_decision: f64,
}

fn measure(settings: &Settings, variant: Variant, mode: Mode, clients: usize, id: usize) -> Sample {
    let server = spawn(variant, settings, id);
    let every = std::env::var("CAVRA_LOAD_ROTATE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok());
    let rotation = every
        .zip(server.evidence_log.clone())
        .map(|(ms, log)| rotate(log, Duration::from_millis(ms)));
    let journal = settings.journal.as_ref().filter(|_| variant == Variant::DaemonJournal);
    let sample = drive(&server.socket, server.pid(), mode, clients, settings.measure, journal);
    if let Some((stop, rotator)) = rotation {
        stop.store(true, Ordering::Relaxed);
        for rotated in rotator.join().expect("rotation thread") {
            let _ = std::fs::remove_file(rotated);
        }
    }
    if let Some(status) = server.stop()
        && !status.success()
        && variant != Variant::Echo
    {
        eprintln!("warning: {} exited with {status}", variant.name());
    }
    sample
}

/// Renames `log` every `every` until told to stop, without a signal (the daemon notices before its next group and
/// starts a linked file); returns the names it gave.
fn rotate(log: PathBuf, every: Duration) -> (Arc<AtomicBool>, thread::JoinHandle<Vec<PathBuf>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let rotator = thread::spawn(move || {
        let mut rotated = Vec::new();
        while !stopping.load(Ordering::Relaxed) {
            thread::sleep(every);
            let to = log.with_extension(format!("rotated-{}", rotated.len()));
            if std::fs::rename(&log, &to).is_ok() {
                rotated.push(to);
            }
        }
        rotated
    });
    (stop, rotator)
}

/// The server's CPU time: to the nanosecond over its live threads, else in clock ticks over all of them.
fn server_cpu_seconds(pid: u32) -> Option<f64> {
    measure::cpu_time(pid)
        .map(|time| time.as_secs_f64())
        .or_else(|| measure::cpu_ticks(pid).map(|ticks| ticks as f64 / measure::clock_ticks_per_second()))
}

/// Loads the server on `socket` (process `pid`) with `clients` clients: `WARMUP`, then `window` measured. With a
/// `journal` sink, counts the decision events it received in the window.
fn drive(
    socket: &Path,
    pid: u32,
    mode: Mode,
    clients: usize,
    window: Duration,
    journal: Option<&JournalSink>,
) -> Sample {
    let phase = Arc::new(AtomicU8::new(WARMING));
    let workers: Vec<_> = (0..clients)
        .map(|index| {
            let phase = Arc::clone(&phase);
            let socket = socket.to_owned();
            thread::Builder::new()
                .name(format!("client-{index}"))
                .stack_size(256 * 1024)
                .spawn(move || match mode {
                    Mode::Compatible => compatible_client(&socket, &phase, index),
                    Mode::Stream => stream_client(&socket, &phase, index, 1),
                    Mode::Pipelined => stream_client(&socket, &phase, index, DEPTH),
                })
                .expect("spawn client thread")
        })
        .collect();
    thread::sleep(WARMUP);
    let cpu_before = server_cpu_seconds(pid);
    let events_before = journal.map(JournalSink::decisions);
    let started = Instant::now();
    phase.store(MEASURING, Ordering::Relaxed);
    thread::sleep(window);
    phase.store(STOPPING, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu_after = server_cpu_seconds(pid);
    let events = journal
        .zip(events_before)
        .map(|(sink, before)| sink.decisions() - before);
    let mut answered = 0;
    let mut errors = 0;
    let mut latencies = Vec::new();
    for worker in workers {
        let stats = worker.join().expect("client thread");
        answered += stats.answered;
        errors += stats.errors;
        latencies.extend(stats.latencies_ns);
    }
    let cpu_seconds = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => after - before,
        // The server's /proc entry could not be read: no figure rather than a wrong one.
        _ => f64::NAN,
    };
    Sample {
        rps: answered as f64 / elapsed.as_secs_f64(),
        p10_us: percentile_us(&mut latencies, 0.10),
        p50_us: percentile_us(&mut latencies, 0.50),
        p90_us: percentile_us(&mut latencies, 0.90),
        p99_us: percentile_us(&mut latencies, 0.99),
        max_us: percentile_us(&mut latencies, 1.0),
        cpu_us_per_request: if answered == 0 {
            f64::NAN
        } else {
            cpu_seconds * 1e6 / answered as f64
        },
        errors,
        peak_rss_kib: measure::status_kib(pid, "VmHWM").unwrap_or(0),
        journal_events_per_decision: events.map_or(f64::NAN, |events| events as f64 / answered as f64),
    }
}

/// `daemon_load drive compatible|stream CLIENTS SECONDS SOCKET PID`: loads a server started by hand (under a
/// profiler, say) and prints one line; at most 60 s.
fn drive_command(args: &[String]) {
    let usage = "usage: daemon_load drive compatible|stream|pipelined CLIENTS SECONDS SOCKET PID";
    let [mode, clients, seconds, socket, pid] = args else {
        panic!("{usage}");
    };
    let mode = Mode::parse(mode).expect(usage);
    let clients: usize = clients.parse().ok().filter(|c| (1..=1000).contains(c)).expect(usage);
    let seconds: f64 = seconds.parse().ok().filter(|s| (0.1..=60.0).contains(s)).expect(usage);
    let pid: u32 = pid.parse().expect(usage);
    if let Some(cpus) = cpu_set_from_env("CAVRA_LOAD_CLIENT_CPUS") {
        measure::confine(&cpus).expect("confine the load generator");
    }
    let sample = drive(
        Path::new(socket),
        pid,
        mode,
        clients,
        Duration::from_secs_f64(seconds),
        None,
    );
    println!(
        "{} {clients} clients: {:.0} req/s  p50 {}  p99 {}  server cpu {:.2} µs/req  errors {}",
        mode.name(),
        sample.rps,
        fmt_us(sample.p50_us),
        fmt_us(sample.p99_us),
        sample.cpu_us_per_request,
        sample.errors
    );
}

/// A latency percentile in µs, from nanoseconds; NaN when nothing was answered.
fn percentile_us(latencies_ns: &mut [u32], quantile: f64) -> f64 {
    measure::percentile(latencies_ns, quantile).map_or(f64::NAN, |nanos| f64::from(nanos) / 1e3)
}

/// The CPU set an environment variable names; a set that cannot be used stops the benchmark.
fn cpu_set_from_env(name: &str) -> Option<CpuSet> {
    let text = std::env::var(name).ok().filter(|text| !text.trim().is_empty())?;
    match measure::parse_cpu_list(&text) {
        Ok(set) => Some(set),
        Err(error) => panic!("{name}: {error}"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Readiness and memory

/// Spawn-to-ready times of one kind of start.
struct Readiness {
    label: &'static str,
    times: Vec<Duration>,
}

impl Readiness {
    fn median(&self) -> Duration {
        median_duration(&self.times).unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.times.iter().max().copied().unwrap_or_default()
    }

    fn over_5_ms(&self) -> usize {
        self.times
            .iter()
            .filter(|time| **time > Duration::from_millis(5))
            .count()
    }
}

/// What a readiness spawn adds to the daemon's command line.
enum StartWith<'a> {
    Nothing,
    /// A new evidence log (`batch`) at each start.
    NewLog,
    /// This existing log (`batch`), with these flags (its key).
    ExistingLog(&'a Path, &'a [OsString]),
}

/// Spawns the daemon `READINESS_SPAWNS` times and times each from spawn to its first health answer.
fn readiness(settings: &Settings, first_id: usize, label: &'static str, with: &StartWith<'_>) -> Readiness {
    let mut times = Vec::with_capacity(READINESS_SPAWNS);
    for spawn_index in 0..READINESS_SPAWNS {
        let id = first_id + spawn_index;
        let socket = settings.sockets.join(format!("s{id}.sock"));
        let mut command = daemon_command(&socket);
        let mut evidence_log = None;
        match with {
            StartWith::Nothing => {}
            StartWith::NewLog => {
                let log = settings.evidence_dir.join(format!("ready-{id}.jsonl"));
                let _ = std::fs::remove_file(&log);
                command
                    .arg("--evidence-log")
                    .arg(&log)
                    .args(["--evidence-sync", "batch"]);
                evidence_log = Some(log);
            }
            StartWith::ExistingLog(log, flags) => {
                command
                    .arg("--evidence-log")
                    .arg(log)
                    .args(["--evidence-sync", "batch"])
                    .args(*flags);
            }
        }
        if let Some(cpus) = settings.server_cpus {
            measure::confine_command(&mut command, cpus);
        }
        let started = Instant::now();
        let child = command.spawn().expect("spawn daemon");
        let ready = wait_ready(&socket, started + READY_TIMEOUT);
        let server = Server {
            child,
            socket,
            evidence_log,
        };
        match ready {
            Ok(at) => times.push(at - started),
            Err(last) => eprintln!("warning: {label}: spawn {spawn_index} not ready within {READY_TIMEOUT:?}: {last}"),
        }
        server.stop();
    }
    let mut sorted = times.clone();
    sorted.sort();
    println!(
        "readiness, {label}: median {}, max {}; all {}",
        fmt_duration(median_duration(&times).unwrap_or_default()),
        fmt_duration(sorted.last().copied().unwrap_or_default()),
        sorted
            .iter()
            .map(|time| fmt_duration(*time))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Readiness { label, times }
}

/// A log of `EXISTING_RECORDS` records written by the daemon with `flags` (its key), for readiness with an existing
/// log; `None` (and a warning) if it could not be made.
fn existing_log(settings: &Settings, id: usize, name: &str, flags: &[OsString]) -> Option<PathBuf> {
    let log = settings.evidence_dir.join(name);
    let _ = std::fs::remove_file(&log);
    let socket = settings.sockets.join(format!("s{id}.sock"));
    let mut command = daemon_command(&socket);
    command
        .arg("--evidence-log")
        .arg(&log)
        .args(["--evidence-sync", "none"])
        .args(flags);
    let server = Server {
        child: command.spawn().expect("spawn daemon"),
        socket,
        evidence_log: None,
    };
    let written = wait_ready(&server.socket, Instant::now() + READY_TIMEOUT)
        .map_err(|last| format!("not ready: {last}"))
        .and_then(|_| {
            let mut stream = Stream::open(&server.socket, IO_TIMEOUT).map_err(|error| error.to_string())?;
            let requests = request_lines();
            let mut answer = Vec::new();
            for chunk in 0..EXISTING_RECORDS / 100 {
                let batch: Vec<u8> = (0..100)
                    .flat_map(|i| requests[(chunk + i) % requests.len()].clone())
                    .collect();
                stream.send(&batch).map_err(|error| error.to_string())?;
                for _ in 0..100 {
                    stream.read_line(&mut answer).map_err(|error| error.to_string())?;
                }
            }
            Ok(())
        });
    server.stop();
    let lines = std::fs::read(&log).map_or(0, |bytes| bytes.iter().filter(|&&byte| byte == b'\n').count());
    match written {
        Ok(()) if lines == EXISTING_RECORDS => Some(log),
        Ok(()) => {
            eprintln!("warning: {name} holds {lines} records, not {EXISTING_RECORDS}");
            None
        }
        Err(error) => {
            eprintln!("warning: cannot write {name}: {error}");
            None
        }
    }
}

/// Writes `bytes` to a new file only its owner may read, as the daemon wants key files.
fn write_key(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

struct Memory {
    idle_kib: u64,
    connections_opened: usize,
    with_connections_kib: u64,
    after_one_request_each_kib: u64,
}

fn memory(settings: &Settings, id: usize) -> Memory {
    let server = spawn(Variant::Daemon, settings, id);
    let pid = server.pid();
    thread::sleep(Duration::from_millis(200));
    let idle_kib = measure::status_kib(pid, "VmRSS").unwrap_or(0);

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut connections = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        if Instant::now() > deadline {
            break;
        }
        match Stream::open(&server.socket, Duration::from_secs(2)) {
            Ok(stream) => connections.push(stream),
            Err(error) => {
                eprintln!("warning: stream connection {} refused: {error}", connections.len());
                break;
            }
        }
    }
    thread::sleep(Duration::from_millis(300));
    let with_connections_kib = measure::status_kib(pid, "VmRSS").unwrap_or(0);

    let request = &request_lines()[0];
    let mut answer = Vec::with_capacity(4096);
    for stream in &mut connections {
        if Instant::now() > deadline || stream.send(request).is_err() {
            break;
        }
        let _ = stream.read_line(&mut answer);
    }
    thread::sleep(Duration::from_millis(300));
    let after_one_request_each_kib = measure::status_kib(pid, "VmRSS").unwrap_or(0);
    let opened = connections.len();
    drop(connections);
    server.stop();
    Memory {
        idle_kib,
        connections_opened: opened,
        with_connections_kib,
        after_one_request_each_kib,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The run and its report

type Key = (Mode, usize, Variant);

/// The items of `all` an environment variable selects by name (comma-separated); all of them when it is unset.
fn selected<T: Copy>(variable: &str, all: &[T], name: impl Fn(T) -> String) -> Vec<T> {
    let Ok(text) = std::env::var(variable) else {
        return all.to_vec();
    };
    let wanted: Vec<&str> = text.split(',').map(str::trim).filter(|word| !word.is_empty()).collect();
    for word in &wanted {
        assert!(
            all.iter().any(|&item| name(item) == *word),
            "{variable}: unknown {word:?}; known: {}",
            all.iter().map(|&item| name(item)).collect::<Vec<_>>().join(",")
        );
    }
    all.iter()
        .copied()
        .filter(|&item| wanted.contains(&name(item).as_str()))
        .collect()
}

fn run_benchmark() {
    let begun = Instant::now();
    let seconds = std::env::var("CAVRA_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| (0.1..=10.0).contains(s))
        .unwrap_or(1.2);
    let reps = std::env::var("CAVRA_LOAD_REPS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|r| (1..=9).contains(r))
        .unwrap_or(5);
    let modes = selected("CAVRA_LOAD_MODES", &Mode::ALL, |mode| mode.name().to_owned());
    let client_counts = selected("CAVRA_LOAD_CLIENTS", &CLIENTS, |clients| clients.to_string());
    let mut variants = selected("CAVRA_LOAD_VARIANTS", &Variant::ALL, |variant| {
        variant.short().to_owned()
    });

    // Confined before any thread starts, so every client thread inherits the set. Servers get theirs from before
    // they execute; with only the clients confined, servers keep every CPU this process had.
    let machine_cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let all_cpus = measure::own_cpus();
    let client_cpus = cpu_set_from_env("CAVRA_LOAD_CLIENT_CPUS");
    let server_cpus = cpu_set_from_env("CAVRA_LOAD_SERVER_CPUS").or(client_cpus.and(all_cpus));
    if let Some(cpus) = &client_cpus {
        measure::confine(cpus).expect("confine the load generator to CAVRA_LOAD_CLIENT_CPUS");
    }
    let cpu_sets = match (&server_cpus, &client_cpus) {
        (None, None) => "servers and clients share every CPU".to_owned(),
        (servers, clients) => format!(
            "servers on CPUs {}, clients on CPUs {}",
            servers.as_ref().map_or("(all)".to_owned(), measure::cpu_list),
            clients.as_ref().map_or("(all)".to_owned(), measure::cpu_list)
        ),
    };

    let nofile = measure::raise_open_file_limit(4096);
    let sockets = tempfile::Builder::new()
        .prefix("cavra-load")
        .tempdir()
        .expect("temp dir for sockets");
    let evidence_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("daemon_load");
    std::fs::create_dir_all(&evidence_dir).expect("evidence dir under target/");
    let hmac_key = sockets.path().join("hmac.key");
    write_key(&hmac_key, hex::encode(rand::random::<[u8; 32]>()).as_bytes());
    let ed25519_key = sockets.path().join("ed25519.der");
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .expect("generate an Ed25519 key");
    write_key(&ed25519_key, pkcs8.as_ref());
    let journal = if variants.contains(&Variant::DaemonJournal) {
        let usable = Command::new("unshare")
            .arg("--help")
            .stdout(Stdio::null())
            .status()
            .map_err(|error| format!("unshare: {error}"))
            .and_then(|_| JournalSink::start(sockets.path().join("journal.sock")));
        match usable {
            Ok(sink) => Some(sink),
            Err(error) => {
                println!("journald rows left out: {error}");
                variants.retain(|&variant| variant != Variant::DaemonJournal);
                None
            }
        }
    } else {
        None
    };
    let settings = Settings {
        measure: Duration::from_secs_f64(seconds),
        sockets: sockets.path().to_owned(),
        evidence_dir: evidence_dir.clone(),
        server_cpus,
        hmac_key: hmac_key.clone(),
        journal,
    };
    let load_before = measure::load_average();
    let disk = fdatasync_probe(&evidence_dir);
    let runs = reps * modes.len() * client_counts.len() * variants.len();
    println!("daemon_load: {}", measure::daemon_binary().display());
    println!(
        "{machine_cpus} CPUs ({cpu_sets}), load average {load_before}; {runs} runs of {WARMUP:?} warm-up + {seconds} \
         s; pipeline depth {DEPTH}; open-file limit {nofile}; evidence logs in {} (fdatasync {disk})",
        evidence_dir.display()
    );

    let mut id = 0;
    let mut next_id = |count: usize| {
        id += count;
        id
    };
    let hmac_flags = [OsString::from("--evidence-signing-key-file"), hmac_key.into()];
    let ed25519_flags = [OsString::from("--evidence-ed25519-key-file"), ed25519_key.into()];
    let mut ready = vec![
        readiness(
            &settings,
            next_id(READINESS_SPAWNS),
            "no evidence log",
            &StartWith::Nothing,
        ),
        readiness(
            &settings,
            next_id(READINESS_SPAWNS),
            "evidence `batch`, a new log each start",
            &StartWith::NewLog,
        ),
    ];
    for (label, name, flags) in [
        (
            "evidence `batch`, HMAC, an existing log of 1,100 records",
            "existing-hmac.jsonl",
            &hmac_flags,
        ),
        (
            "evidence `batch`, Ed25519, an existing log of 1,100 records",
            "existing-ed25519.jsonl",
            &ed25519_flags,
        ),
    ] {
        if let Some(log) = existing_log(&settings, next_id(1), name, flags) {
            let with = StartWith::ExistingLog(&log, flags);
            ready.push(readiness(&settings, next_id(READINESS_SPAWNS), label, &with));
            let _ = std::fs::remove_file(&log);
        }
    }
    let memory = memory(&settings, next_id(1));
    println!(
        "memory: idle {}, {} stream connections {}, after one request each {}",
        fmt_kib(memory.idle_kib),
        memory.connections_opened,
        fmt_kib(memory.with_connections_kib),
        fmt_kib(memory.after_one_request_each_kib)
    );

    let mut samples: BTreeMap<Key, Vec<Sample>> = BTreeMap::new();
    let mut done = 0;
    for rep in 0..reps {
        for &mode in &modes {
            for &clients in &client_counts {
                for offset in 0..variants.len() {
                    let variant = variants[(offset + rep) % variants.len()];
                    let sample = measure(&settings, variant, mode, clients, next_id(1));
                    done += 1;
                    let journal = if sample.journal_events_per_decision.is_nan() {
                        String::new()
                    } else {
                        format!("  journal {:.2} events/decision", sample.journal_events_per_decision)
                    };
                    println!(
                        "[{done:>3}/{runs}] rep {} {:<10} {:>2} clients  {:<26} {:>9} req/s  p50 {:>9}  p99 {:>9}  \
                         cpu {:>6.2} µs/req  errors {}{journal}",
                        rep + 1,
                        mode.name(),
                        clients,
                        variant.name(),
                        format!("{:.0}", sample.rps),
                        fmt_us(sample.p50_us),
                        fmt_us(sample.p99_us),
                        sample.cpu_us_per_request,
                        sample.errors
                    );
                    samples.entry((mode, clients, variant)).or_default().push(sample);
                }
            }
        }
    }
    let _ = std::fs::remove_dir(&evidence_dir);
    let report = Report {
        samples,
        modes,
        client_counts,
        ready,
        memory,
        reps,
        seconds,
        fdatasync_median_us: disk.median.as_secs_f64() * 1e6,
        context: format!(
            "{machine_cpus} CPUs, {cpu_sets}; load average {load_before} before, {} after; fdatasync of a 1.5 KB \
             append under `target/`: {disk}",
            measure::load_average()
        ),
    };
    println!();
    println!("{}", report.markdown());
    println!("daemon_load finished in {:.0} s", begun.elapsed().as_secs_f64());
}

struct Report {
    samples: BTreeMap<Key, Vec<Sample>>,
    modes: Vec<Mode>,
    client_counts: Vec<usize>,
    ready: Vec<Readiness>,
    memory: Memory,
    reps: usize,
    seconds: f64,
    fdatasync_median_us: f64,
    /// The machine's state around the run, which the figures depend on.
    context: String,
}

impl Report {
    fn measured(&self, key: Key) -> bool {
        self.samples.contains_key(&key)
    }

    /// `metric` over the repetitions of `key`.
    fn spread(&self, key: Key, metric: impl Fn(&Sample) -> f64) -> Spread {
        Spread::of(self.samples.get(&key).into_iter().flatten().map(metric).collect())
    }

    fn median_of(&self, key: Key, metric: impl Fn(&Sample) -> f64) -> f64 {
        self.spread(key, metric).median
    }

    /// `compare(of, to)` within each repetition, over the repetitions.
    fn paired(&self, of: Key, to: Key, compare: impl Fn(&Sample, &Sample) -> f64) -> Spread {
        let (Some(of), Some(to)) = (self.samples.get(&of), self.samples.get(&to)) else {
            return Spread::of(Vec::new());
        };
        Spread::of(of.iter().zip(to).map(|(a, b)| compare(a, b)).collect())
    }

    /// `of`'s requests/s divided by `to`'s in the same repetition.
    fn ratio(&self, mode: Mode, clients: usize, of: Variant, to: Variant) -> Spread {
        self.paired((mode, clients, of), (mode, clients, to), |a, b| a.rps / b.rps)
    }

    /// `of`'s CPU per request less `to`'s in the same repetition, in µs.
    fn cpu_difference(&self, mode: Mode, clients: usize, of: Variant, to: Variant) -> Spread {
        self.paired((mode, clients, of), (mode, clients, to), |a, b| {
            a.cpu_us_per_request - b.cpu_us_per_request
        })
    }

    fn cpu(&self, mode: Mode, clients: usize, variant: Variant) -> Spread {
        self.spread((mode, clients, variant), |s| s.cpu_us_per_request)
    }

    fn cells(&self) -> impl Iterator<Item = (Mode, usize)> + '_ {
        self.modes
            .iter()
            .flat_map(|&mode| self.client_counts.iter().map(move |&clients| (mode, clients)))
    }

    fn errors(&self) -> u64 {
        self.samples.values().flatten().map(|sample| sample.errors).sum()
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let reps = self.reps;
        let _ = writeln!(
            out,
            "### Daemon under load (`cargo bench --bench daemon_load`)\n\n\
             {reps} repetitions of {} s each; every run spawns a fresh server. Stream-mode clients hold one \
             connection each and wait for each answer before sending the next request; pipelined clients keep \
             {DEPTH} requests outstanding on their connection. Latency is per request, client side (compatible \
             mode includes connect). Server CPU is the run time of the server's threads per request answered. \
             Figures are the median over the repetitions, with the lowest and highest in brackets; comparisons \
             (ratios, differences) are taken within each repetition first. The daemon logs at its default level \
             (info, a line per decision) to stderr, redirected to /dev/null, unless the row says otherwise.\n\n\
             Machine: {}.\n",
            self.seconds, self.context
        );
        self.side_by_side(&mut out);
        self.logging(&mut out);
        self.evidence(&mut out);
        self.durable_latency(&mut out);
        self.resources(&mut out);
        self.targets(&mut out);
        let errors = self.errors();
        let _ = writeln!(
            out,
            "\n{errors} failed or refused requests across all runs{}.",
            if errors == 0 { "" } else { " (see the warnings above)" }
        );
        out
    }

    fn side_by_side(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "CPU per request, daemon and echo server side by side (per-connection echo in compatible mode, \
             persistent line echo in stream mode):\n\n\
             | mode | clients | echo req/s | daemon req/s | daemon vs echo | echo CPU/request | daemon CPU/decision | \
             daemon − echo | daemon p50 | daemon p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (mode, clients) in self.cells() {
            let (echo, daemon) = ((mode, clients, Variant::Echo), (mode, clients, Variant::Daemon));
            if !self.measured(echo) && !self.measured(daemon) {
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {clients} | {} | {} | {} | {} | {} | {} | {} | {} |",
                mode.name(),
                fmt_rate(self.median_of(echo, |s| s.rps)),
                fmt_rate(self.median_of(daemon, |s| s.rps)),
                self.ratio(mode, clients, Variant::Daemon, Variant::Echo).percent(),
                self.cpu(mode, clients, Variant::Echo).micros(),
                self.cpu(mode, clients, Variant::Daemon).micros(),
                self.cpu_difference(mode, clients, Variant::Daemon, Variant::Echo)
                    .micros(),
                fmt_us(self.median_of(daemon, |s| s.p50_us)),
                fmt_us(self.median_of(daemon, |s| s.p99_us)),
            );
        }
    }

    fn logging(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nThe log event per decision: server CPU per decision with no event (`RUST_LOG=warn`), a line to stderr \
             (batched by a writer thread), and a datagram to the journal (`--log-target journald`, one `sendmsg` per \
             decision); the journal's own CPU is not counted.\n\n\
             | mode | clients | no event | stderr | stderr − none | journald | journald − none | journal events per \
             decision | vs echo: none, stderr, journald |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (mode, clients) in self.cells() {
            if !self.measured((mode, clients, Variant::DaemonQuiet)) {
                continue;
            }
            let ratios = [Variant::DaemonQuiet, Variant::Daemon, Variant::DaemonJournal]
                .map(|variant| self.ratio(mode, clients, variant, Variant::Echo).percent_median());
            let events = self.median_of((mode, clients, Variant::DaemonJournal), |s| {
                s.journal_events_per_decision
            });
            let _ = writeln!(
                out,
                "| {} | {clients} | {} | {} | {} | {} | {} | {} | {} |",
                mode.name(),
                self.cpu(mode, clients, Variant::DaemonQuiet).micros(),
                self.cpu(mode, clients, Variant::Daemon).micros(),
                self.cpu_difference(mode, clients, Variant::Daemon, Variant::DaemonQuiet)
                    .micros(),
                self.cpu(mode, clients, Variant::DaemonJournal).micros(),
                self.cpu_difference(mode, clients, Variant::DaemonJournal, Variant::DaemonQuiet)
                    .micros(),
                if events.is_nan() {
                    "—".to_owned()
                } else {
                    format!("{events:.2}")
                },
                ratios.join(", "),
            );
        }
    }

    fn evidence(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nEvidence log on the real disk (ext4 under `target/`), default logging: CPU per decision more than the \
             same repetition without evidence, and throughput as a share of it.\n\n\
             | mode | clients | off: CPU | `batch` − off | `batch`+HMAC − off | `always` − off | `batch` req/s (vs \
             off) | `batch`+HMAC req/s (vs off) | `batch` p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (mode, clients) in self.cells() {
            if !self.measured((mode, clients, Variant::Daemon)) {
                continue;
            }
            let rate = |variant: Variant| {
                let key = (mode, clients, variant);
                if !self.measured(key) {
                    return "—".to_owned();
                }
                format!(
                    "{} ({})",
                    fmt_rate(self.median_of(key, |s| s.rps)),
                    self.ratio(mode, clients, variant, Variant::Daemon).percent()
                )
            };
            let _ = writeln!(
                out,
                "| {} | {clients} | {} | {} | {} | {} | {} | {} | {} |",
                mode.name(),
                self.cpu(mode, clients, Variant::Daemon).micros(),
                self.cpu_difference(mode, clients, Variant::EvidenceBatch, Variant::Daemon)
                    .micros(),
                self.cpu_difference(mode, clients, Variant::EvidenceBatchHmac, Variant::Daemon)
                    .micros(),
                self.cpu_difference(mode, clients, Variant::EvidenceAlways, Variant::Daemon)
                    .micros(),
                rate(Variant::EvidenceBatch),
                rate(Variant::EvidenceBatchHmac),
                fmt_us(self.median_of((mode, clients, Variant::EvidenceBatch), |s| s.p99_us)),
            );
        }
    }

    /// The latency distribution of one compatible client: what a lone caller waits for a durable answer.
    fn durable_latency(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\nLatency of a lone compatible-mode client (connect, request, durable answer), against one fdatasync \
             (median {}) plus the decision without evidence:\n\n\
             | evidence | p10 | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|",
            fmt_us(self.fdatasync_median_us)
        );
        for (variant, label) in [
            (Variant::Daemon, "off"),
            (Variant::EvidenceBatch, "`batch`"),
            (Variant::EvidenceBatchHmac, "`batch`, HMAC"),
            (Variant::EvidenceAlways, "`always`"),
        ] {
            let key = (Mode::Compatible, 1, variant);
            if !self.measured(key) {
                continue;
            }
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} |",
                fmt_us(self.median_of(key, |s| s.p10_us)),
                fmt_us(self.median_of(key, |s| s.p50_us)),
                fmt_us(self.median_of(key, |s| s.p90_us)),
                fmt_us(self.median_of(key, |s| s.p99_us)),
                fmt_us(self.median_of(key, |s| s.max_us)),
            );
        }
    }

    fn resources(&self, out: &mut String) {
        let peak = self.median_of((Mode::Pipelined, 64, Variant::Daemon), |s| s.peak_rss_kib as f64);
        let _ = writeln!(out, "\n| resource | measured |\n|---|---:|");
        let _ = writeln!(out, "| RSS idle after start | {} |", fmt_kib(self.memory.idle_kib));
        let _ = writeln!(
            out,
            "| RSS with {} idle stream connections | {} |",
            self.memory.connections_opened,
            fmt_kib(self.memory.with_connections_kib)
        );
        let _ = writeln!(
            out,
            "| RSS after one request on each of them | {} |",
            fmt_kib(self.memory.after_one_request_each_kib)
        );
        if !peak.is_nan() {
            let _ = writeln!(out, "| peak RSS, pipelined, 64 clients | {} |", fmt_kib(peak as u64));
        }
        for ready in &self.ready {
            let _ = writeln!(
                out,
                "| spawn to first health answer, {} ({} spawns) | median {}, max {}, {} over 5 ms |",
                ready.label,
                ready.times.len(),
                fmt_duration(ready.median()),
                fmt_duration(ready.max()),
                ready.over_5_ms()
            );
        }
    }

    fn targets(&self, out: &mut String) {
        let _ = writeln!(out, "\n| target | measured | result |\n|---|---:|---|");
        let mut target = |name: String, measured: String, pass: Option<bool>| {
            let verdict = match pass {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "not measured",
            };
            let _ = writeln!(out, "| {name} | {measured} | {verdict} |");
        };
        let known = |value: f64, pass: bool| (!value.is_nan()).then_some(pass);
        for mode in [Mode::Compatible, Mode::Stream] {
            for clients in [8, 64] {
                let difference = self.cpu_difference(mode, clients, Variant::Daemon, Variant::Echo);
                target(
                    format!(
                        "{} mode, {clients} clients: daemon CPU per decision ≤ echo + 2 µs",
                        mode.name()
                    ),
                    difference.micros(),
                    known(difference.median, difference.median <= 2.0),
                );
            }
        }
        for mode in Mode::ALL {
            for clients in [8, 64] {
                let difference = self.cpu_difference(mode, clients, Variant::EvidenceBatchHmac, Variant::Daemon);
                target(
                    format!(
                        "{} mode, {clients} clients: evidence `batch`+HMAC ≤ off + 3 µs CPU per decision",
                        mode.name()
                    ),
                    difference.micros(),
                    known(difference.median, difference.median <= 3.0),
                );
            }
        }
        let ratio = self.ratio(Mode::Stream, 64, Variant::EvidenceBatchHmac, Variant::Daemon);
        target(
            "stream mode, 64 clients: evidence `batch`+HMAC ≥ 70% of evidence off's decisions/s (meaningful only \
             with servers and clients on CPUs of their own)"
                .to_owned(),
            ratio.percent(),
            known(ratio.median, ratio.median >= 0.70),
        );
        let decision = self.median_of((Mode::Compatible, 1, Variant::Daemon), |s| s.p50_us);
        let bound = 1.5 * (self.fdatasync_median_us + decision);
        for variant in [Variant::EvidenceBatch, Variant::EvidenceBatchHmac] {
            let durable = self.median_of((Mode::Compatible, 1, variant), |s| s.p50_us);
            target(
                format!(
                    "p50 of a lone compatible client, {}, ≤ 1.5 × (fdatasync + decision) = {}",
                    variant.name(),
                    fmt_us(bound)
                ),
                fmt_us(durable),
                (!durable.is_nan() && !bound.is_nan()).then_some(durable <= bound),
            );
        }
        for ready in &self.ready {
            target(
                format!("ready ≤ 5 ms after spawn, every start: {}", ready.label),
                format!(
                    "max {} (median {})",
                    fmt_duration(ready.max()),
                    fmt_duration(ready.median())
                ),
                (!ready.times.is_empty()).then_some(ready.over_5_ms() == 0),
            );
        }
        target(
            "RSS ≤ 8 MiB idle".to_owned(),
            fmt_kib(self.memory.idle_kib),
            Some(self.memory.idle_kib <= 8 * 1024),
        );
        target(
            format!("RSS ≤ 64 MiB with {IDLE_CONNECTIONS} idle stream connections"),
            format!(
                "{} ({} open)",
                fmt_kib(self.memory.with_connections_kib),
                self.memory.connections_opened
            ),
            Some(self.memory.connections_opened == IDLE_CONNECTIONS && self.memory.with_connections_kib <= 64 * 1024),
        );
        for clients in [8, 64] {
            let ratio = self.ratio(Mode::Compatible, clients, Variant::Daemon, Variant::Echo);
            target(
                format!("compatible mode ≥ 85% of per-connection echo req/s, {clients} clients"),
                ratio.percent(),
                known(ratio.median, ratio.median >= 0.85),
            );
            let ratio = self.ratio(Mode::Stream, clients, Variant::Daemon, Variant::Echo);
            target(
                format!("stream mode ≥ 60% of persistent echo req/s, {clients} clients"),
                ratio.percent(),
                known(ratio.median, ratio.median >= 0.60),
            );
        }
        for clients in [1, 8, 64] {
            let cpu = self.cpu(Mode::Pipelined, clients, Variant::Daemon);
            target(
                format!("≤ 8 µs server CPU per decision, pipelined, {clients} clients"),
                cpu.micros(),
                known(cpu.median, cpu.median <= 8.0),
            );
        }
    }
}

/// How fast the disk the evidence log is on makes a record durable, now.
struct Disk {
    median: Duration,
    max: Duration,
}

impl std::fmt::Display for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {}, max {}",
            fmt_duration(self.median),
            fmt_duration(self.max)
        )
    }
}

/// Median and maximum of 50 fdatasyncs after 1.5 KB appends in `dir`.
fn fdatasync_probe(dir: &Path) -> Disk {
    let path = dir.join("fdatasync-probe");
    let mut times = Vec::with_capacity(50);
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let record = [b'x'; 1500];
        let deadline = Instant::now() + Duration::from_secs(5);
        while times.len() < 50 && Instant::now() < deadline {
            let started = Instant::now();
            if file.write_all(&record).and_then(|()| file.sync_data()).is_err() {
                break;
            }
            times.push(started.elapsed());
        }
    }
    let _ = std::fs::remove_file(&path);
    Disk {
        median: median_duration(&times).unwrap_or_default(),
        max: times.iter().max().copied().unwrap_or_default(),
    }
}

fn fmt_rate(rps: f64) -> String {
    if rps.is_nan() {
        "—".to_owned()
    } else if rps >= 10_000.0 {
        format!("{:.1}k", rps / 1000.0)
    } else {
        format!("{rps:.0}")
    }
}

fn fmt_us(us: f64) -> String {
    if us.is_nan() {
        "—".to_owned()
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn fmt_duration(duration: Duration) -> String {
    fmt_us(duration.as_secs_f64() * 1e6)
}

/// A figure over the repetitions: the median, and the lowest and highest, because on a shared machine the spread
/// says as much as the median.
struct Spread {
    median: f64,
    low: f64,
    high: f64,
}

impl Spread {
    fn of(values: Vec<f64>) -> Spread {
        // `f64::min` and `max` pass over NaN, as `median` leaves it out.
        let low = values.iter().copied().fold(f64::NAN, f64::min);
        let high = values.iter().copied().fold(f64::NAN, f64::max);
        Spread {
            median: median(values),
            low,
            high,
        }
    }

    /// A ratio as `91% (82–100)`.
    fn percent(&self) -> String {
        if self.median.is_nan() {
            return "—".to_owned();
        }
        let percent = |ratio: f64| (ratio * 100.0).round();
        format!(
            "{:.0}% ({:.0}–{:.0})",
            percent(self.median),
            percent(self.low),
            percent(self.high)
        )
    }

    /// A ratio's median alone, as `91%`.
    fn percent_median(&self) -> String {
        if self.median.is_nan() {
            "—".to_owned()
        } else {
            format!("{:.0}%", self.median * 100.0)
        }
    }

    /// Microseconds as `8.61 µs (8.20 to 9.40)`.
    fn micros(&self) -> String {
        if self.median.is_nan() {
            "—".to_owned()
        } else {
            format!("{:.2} µs ({:.2} to {:.2})", self.median, self.low, self.high)
        }
    }
}

fn fmt_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
