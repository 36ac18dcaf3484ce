//! Daemon load benchmark: the real `cavra-runtime --serve` under concurrent clients, compared in the same run with a
//! trivial echo server on the same kind of socket. Run with `cargo bench --bench daemon_load`; it prints a markdown
//! summary at the end. It reports; it does not assert.
//!
//! - The echo server is this binary again (`daemon_load echo-server SOCKET`), a separate process on a tokio
//!   multi-thread runtime like the daemon's. In compatible mode it reads one line, writes it back and closes; after a
//!   `{"protocol":...}` first line it echoes lines on the same connection (every complete line read goes back in one
//!   write), so both servers are driven by exactly the same client code.
//! - Every run spawns a fresh server, warms up, measures, and stops it. Variants of one (mode, clients) cell run back
//!   to back, in a rotated order each repetition; each cell is repeated and the median reported. Ratios are the
//!   median of the per-repetition ratios (daemon and echo measured moments apart), which cancels most machine drift,
//!   shown with the lowest and highest of them, because on a shared machine the spread matters as much.
//! - Server CPU is utime+stime from /proc/PID/stat over the measurement window, divided by the requests answered in
//!   it (clock-tick resolution: 10 ms over the window).
//! - Every loop is bounded in time and count; the whole run takes about 6 minutes on a 2-core machine (8 with
//!   `CAVRA_LOAD_REPS=7`).
//!
//! `daemon_load drive compatible|stream CLIENTS SECONDS SOCKET PID` loads a server started by hand (under `perf`,
//! say) with the same clients and prints one line.
//!
//! Environment: `CAVRA_LOAD_SECONDS` (measurement window per run, default 1.2), `CAVRA_LOAD_REPS` (default 5);
//! `CAVRA_LOAD_EVIDENCE_ARGS` (more daemon flags for the evidence rows, split at white space: a signing key, say);
//! `CAVRA_LOAD_ROTATE_MS` (rename the evidence log every this many milliseconds during a run, as rotation does);
//! `CAVRA_LOAD_DAEMON` (the daemon binary to measure instead of this build's, to compare two builds).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant};

#[path = "../tests/common/measure.rs"]
mod measure;

use measure::{HEALTH, Stream, daemon_binary, daemon_command, median, median_duration};

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
    EvidenceBatch,
    EvidenceAlways,
}

impl Variant {
    const ALL: [Variant; 5] = [
        Variant::Echo,
        Variant::Daemon,
        Variant::DaemonQuiet,
        Variant::EvidenceBatch,
        Variant::EvidenceAlways,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::Echo => "echo",
            Variant::Daemon => "daemon",
            Variant::DaemonQuiet => "daemon RUST_LOG=warn",
            Variant::EvidenceBatch => "daemon evidence=batch",
            Variant::EvidenceAlways => "daemon evidence=always",
        }
    }
}

struct Settings {
    measure: Duration,
    sockets: PathBuf,
    evidence_dir: PathBuf,
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
        Variant::EvidenceBatch | Variant::EvidenceAlways => {
            let log = settings.evidence_dir.join(format!("evidence-{id}.jsonl"));
            let _ = std::fs::remove_file(&log);
            let mut command = daemon_command(&socket);
            let sync = if variant == Variant::EvidenceBatch {
                "batch"
            } else {
                "always"
            };
            command.arg("--evidence-log").arg(&log).args(["--evidence-sync", sync]);
            if let Ok(extra) = std::env::var("CAVRA_LOAD_EVIDENCE_ARGS") {
                command.args(extra.split_whitespace());
            }
            evidence_log = Some(log);
            command
        }
    };
    if variant == Variant::DaemonQuiet {
        command.env("RUST_LOG", "warn");
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
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_request: f64,
    errors: u64,
    /// The server's peak resident memory (VmHWM) when the run ended, in KiB.
    peak_rss_kib: u64,
}

fn measure(settings: &Settings, variant: Variant, mode: Mode, clients: usize, id: usize) -> Sample {
    let server = spawn(variant, settings, id);
    let every = std::env::var("CAVRA_LOAD_ROTATE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok());
    let rotation = every
        .zip(server.evidence_log.clone())
        .map(|(ms, log)| rotate(log, Duration::from_millis(ms)));
    let sample = drive(&server.socket, server.pid(), mode, clients, settings.measure);
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

/// Loads the server on `socket` (process `pid`) with `clients` clients: `WARMUP`, then `window` measured.
fn drive(socket: &Path, pid: u32, mode: Mode, clients: usize, window: Duration) -> Sample {
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
    let cpu_before = measure::cpu_ticks(pid);
    let started = Instant::now();
    phase.store(MEASURING, Ordering::Relaxed);
    thread::sleep(window);
    phase.store(STOPPING, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu_after = measure::cpu_ticks(pid);
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
        (Some(before), Some(after)) => after.saturating_sub(before) as f64 / measure::clock_ticks_per_second(),
        // The server's /proc entry could not be read: no figure rather than a wrong one.
        _ => f64::NAN,
    };
    Sample {
        rps: answered as f64 / elapsed.as_secs_f64(),
        p50_us: percentile_us(&mut latencies, 0.50),
        p99_us: percentile_us(&mut latencies, 0.99),
        cpu_us_per_request: if answered == 0 {
            f64::NAN
        } else {
            cpu_seconds * 1e6 / answered as f64
        },
        errors,
        peak_rss_kib: measure::status_kib(pid, "VmHWM").unwrap_or(0),
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
    let sample = drive(Path::new(socket), pid, mode, clients, Duration::from_secs_f64(seconds));
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

// ---------------------------------------------------------------------------------------------------------------
// Readiness and memory

fn readiness(settings: &Settings, first_id: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(READINESS_SPAWNS);
    for spawn_index in 0..READINESS_SPAWNS {
        let socket = settings.sockets.join(format!("s{}.sock", first_id + spawn_index));
        let started = Instant::now();
        let child = daemon_command(&socket).spawn().expect("spawn daemon");
        let ready = wait_ready(&socket, started + READY_TIMEOUT);
        let server = Server {
            child,
            socket,
            evidence_log: None,
        };
        match ready {
            Ok(at) => times.push(at - started),
            Err(last) => eprintln!("warning: readiness spawn {spawn_index} not ready within {READY_TIMEOUT:?}: {last}"),
        }
        server.stop();
    }
    times
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
    let nofile = measure::raise_open_file_limit(4096);
    let sockets = tempfile::Builder::new()
        .prefix("cavra-load")
        .tempdir()
        .expect("temp dir for sockets");
    let evidence_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("daemon_load");
    std::fs::create_dir_all(&evidence_dir).expect("evidence dir under target/");
    let settings = Settings {
        measure: Duration::from_secs_f64(seconds),
        sockets: sockets.path().to_owned(),
        evidence_dir: evidence_dir.clone(),
    };
    let load_before = measure::load_average();
    let disk = fdatasync_probe(&evidence_dir);
    let runs = reps * Mode::ALL.len() * CLIENTS.len() * Variant::ALL.len();
    println!("daemon_load: {}", daemon_binary().to_string_lossy());
    println!(
        "{} CPUs, load average {load_before}; {runs} runs of {WARMUP:?} warm-up + {seconds} s; pipeline depth {DEPTH}; \
         open-file limit {nofile}; evidence logs in {} (fdatasync {disk})",
        thread::available_parallelism().map_or(0, |n| n.get()),
        evidence_dir.display()
    );

    let mut id = 0;
    let mut next_id = || {
        id += 1;
        id
    };
    let ready = readiness(&settings, 100_000);
    let memory = memory(&settings, next_id());
    println!(
        "readiness: median {}, max {} (of {})",
        fmt_duration(median_duration(&ready).unwrap_or_default()),
        fmt_duration(ready.iter().max().copied().unwrap_or_default()),
        ready.len()
    );
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
        for mode in Mode::ALL {
            for clients in CLIENTS {
                for offset in 0..Variant::ALL.len() {
                    let variant = Variant::ALL[(offset + rep) % Variant::ALL.len()];
                    let sample = measure(&settings, variant, mode, clients, next_id());
                    done += 1;
                    println!(
                        "[{done:>3}/{runs}] rep {} {:<10} {:>2} clients  {:<23} {:>9} req/s  p50 {:>9}  p99 {:>9}  \
                         cpu {:>6.2} µs/req  errors {}",
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
        ready,
        memory,
        reps,
        seconds,
        context: format!(
            "{} CPUs; load average {load_before} before, {} after; fdatasync of a 1.5 KB append under `target/`: {disk}",
            thread::available_parallelism().map_or(0, |n| n.get()),
            measure::load_average()
        ),
    };
    println!();
    println!("{}", report.markdown());
    println!("daemon_load finished in {:.0} s", begun.elapsed().as_secs_f64());
}

struct Report {
    samples: BTreeMap<Key, Vec<Sample>>,
    ready: Vec<Duration>,
    memory: Memory,
    reps: usize,
    seconds: f64,
    /// The machine's state around the run, which the figures depend on.
    context: String,
}

impl Report {
    fn median_of(&self, key: Key, metric: impl Fn(&Sample) -> f64) -> f64 {
        median(self.samples.get(&key).into_iter().flatten().map(metric).collect())
    }

    /// `of`'s requests/s divided by `to`'s in the same repetition, over the repetitions.
    fn ratio(&self, mode: Mode, clients: usize, of: Variant, to: Variant) -> Ratio {
        let (Some(of), Some(to)) = (
            self.samples.get(&(mode, clients, of)),
            self.samples.get(&(mode, clients, to)),
        ) else {
            return Ratio::from_repetitions(Vec::new());
        };
        Ratio::from_repetitions(of.iter().zip(to).map(|(a, b)| a.rps / b.rps).collect())
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
             Median of {reps} repetitions of {} s each; every run spawns a fresh server. Stream-mode clients hold one \
             connection each and wait for each answer before sending the next request; pipelined clients keep \
             {DEPTH} requests outstanding on their connection. Latency is per request, client side (compatible \
             mode includes connect). Server CPU is utime+stime of the server process per request answered. The \
             daemon logs at its default level (info, a line per decision) to stderr, redirected to /dev/null; \
             `RUST_LOG=warn` is shown for comparison. \"vs echo\" is the median of per-repetition ratios (lowest and \
             highest in brackets) to the trivial echo server (per-connection echo in compatible mode, persistent \
             line echo in stream mode).\n\n\
             Machine: {}.\n",
            self.seconds, self.context
        );
        let _ = writeln!(
            out,
            "| mode | clients | server | req/s | p50 | p99 | server CPU/req | vs echo |\n|---|---:|---|---:|---:|---:|---:|---:|"
        );
        for mode in Mode::ALL {
            for clients in CLIENTS {
                for variant in [Variant::Echo, Variant::Daemon, Variant::DaemonQuiet] {
                    let key = (mode, clients, variant);
                    let versus = if variant == Variant::Echo {
                        "—".to_owned()
                    } else {
                        self.ratio(mode, clients, variant, Variant::Echo).to_string()
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {clients} | {} | {} | {} | {} | {:.2} µs | {versus} |",
                        mode.name(),
                        variant.name(),
                        fmt_rate(self.median_of(key, |s| s.rps)),
                        fmt_us(self.median_of(key, |s| s.p50_us)),
                        fmt_us(self.median_of(key, |s| s.p99_us)),
                        self.median_of(key, |s| s.cpu_us_per_request),
                    );
                }
            }
        }

        let _ = writeln!(
            out,
            "\nEvidence log on the real disk (ext4 under `target/`), default logging; \"vs off\" is the median of \
             per-repetition ratios (lowest and highest in brackets) to the daemon without an evidence log.\n"
        );
        let _ = writeln!(
            out,
            "| mode | clients | evidence | req/s | p99 | server CPU/req | vs off |\n|---|---:|---|---:|---:|---:|---:|"
        );
        for mode in Mode::ALL {
            for clients in CLIENTS {
                for (variant, label) in [
                    (Variant::Daemon, "off"),
                    (Variant::EvidenceBatch, "batch"),
                    (Variant::EvidenceAlways, "always"),
                ] {
                    let key = (mode, clients, variant);
                    let versus = if variant == Variant::Daemon {
                        "—".to_owned()
                    } else {
                        self.ratio(mode, clients, variant, Variant::Daemon).to_string()
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {clients} | {label} | {} | {} | {:.2} µs | {versus} |",
                        mode.name(),
                        fmt_rate(self.median_of(key, |s| s.rps)),
                        fmt_us(self.median_of(key, |s| s.p99_us)),
                        self.median_of(key, |s| s.cpu_us_per_request),
                    );
                }
            }
        }

        let peak = self.median_of((Mode::Pipelined, 64, Variant::Daemon), |s| s.peak_rss_kib as f64);
        let ready_median = median_duration(&self.ready).unwrap_or_default();
        let ready_max = self.ready.iter().max().copied().unwrap_or_default();
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
        let _ = writeln!(out, "| peak RSS, pipelined, 64 clients | {} |", fmt_kib(peak as u64));
        let _ = writeln!(
            out,
            "| spawn to first health answer ({} spawns) | median {}, max {} |",
            self.ready.len(),
            fmt_duration(ready_median),
            fmt_duration(ready_max)
        );

        let _ = writeln!(out, "\n| target | measured | result |\n|---|---:|---|");
        let mut target = |name: String, measured: String, pass: bool| {
            let verdict = if pass { "PASS" } else { "MISS" };
            let _ = writeln!(out, "| {name} | {measured} | {verdict} |");
        };
        for clients in [8, 64] {
            let ratio = self.ratio(Mode::Compatible, clients, Variant::Daemon, Variant::Echo);
            target(
                format!("compatible mode ≥ 85% of per-connection echo req/s, {clients} clients"),
                ratio.to_string(),
                ratio.median >= 0.85,
            );
        }
        for mode in [Mode::Stream, Mode::Pipelined] {
            for clients in [8, 64] {
                let ratio = self.ratio(mode, clients, Variant::Daemon, Variant::Echo);
                target(
                    format!("{} mode ≥ 60% of persistent echo req/s, {clients} clients", mode.name()),
                    ratio.to_string(),
                    ratio.median >= 0.60,
                );
            }
        }
        for clients in CLIENTS {
            let cpu = self.median_of((Mode::Pipelined, clients, Variant::Daemon), |s| s.cpu_us_per_request);
            target(
                format!("≤ 8 µs server CPU per decision, pipelined, {clients} clients"),
                format!("{cpu:.2} µs"),
                cpu <= 8.0,
            );
        }
        target(
            "RSS ≤ 8 MiB idle".to_owned(),
            fmt_kib(self.memory.idle_kib),
            self.memory.idle_kib <= 8 * 1024,
        );
        target(
            format!("RSS ≤ 64 MiB with {IDLE_CONNECTIONS} idle stream connections"),
            format!(
                "{} ({} open)",
                fmt_kib(self.memory.with_connections_kib),
                self.memory.connections_opened
            ),
            self.memory.connections_opened == IDLE_CONNECTIONS && self.memory.with_connections_kib <= 64 * 1024,
        );
        target(
            "ready ≤ 5 ms after spawn (median of spawns)".to_owned(),
            format!("{} (max {})", fmt_duration(ready_median), fmt_duration(ready_max)),
            !self.ready.is_empty() && ready_median <= Duration::from_millis(5),
        );
        for mode in Mode::ALL {
            let ratio = self.ratio(mode, 64, Variant::EvidenceBatch, Variant::Daemon);
            target(
                format!("evidence batch ≥ 60% of evidence off, {} mode, 64 clients", mode.name()),
                ratio.to_string(),
                ratio.median >= 0.60,
            );
        }
        let errors = self.errors();
        let _ = writeln!(
            out,
            "\n{errors} failed or refused requests across all runs{}.",
            if errors == 0 { "" } else { " (see the warnings above)" }
        );
        out
    }
}

/// Median and maximum of 50 fdatasyncs after 1.5 KB appends in `dir`: how fast the disk the evidence log is on
/// makes a record durable, now.
fn fdatasync_probe(dir: &Path) -> String {
    let path = dir.join("fdatasync-probe");
    let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&path) else {
        return "?".to_owned();
    };
    let record = [b'x'; 1500];
    let mut times = Vec::with_capacity(50);
    let deadline = Instant::now() + Duration::from_secs(5);
    while times.len() < 50 && Instant::now() < deadline {
        let started = Instant::now();
        if file.write_all(&record).and_then(|()| file.sync_data()).is_err() {
            break;
        }
        times.push(started.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    format!(
        "median {}, max {}",
        fmt_duration(median_duration(&times).unwrap_or_default()),
        fmt_duration(times.iter().max().copied().unwrap_or_default())
    )
}

fn fmt_rate(rps: f64) -> String {
    if rps >= 10_000.0 {
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

/// A ratio between two variants measured moments apart, over the repetitions: the median, and the lowest and
/// highest, because on a shared machine the spread says as much as the median.
struct Ratio {
    median: f64,
    low: f64,
    high: f64,
}

impl Ratio {
    fn from_repetitions(ratios: Vec<f64>) -> Ratio {
        // `f64::min` and `max` pass over NaN, as `median` leaves it out.
        let low = ratios.iter().copied().fold(f64::NAN, f64::min);
        let high = ratios.iter().copied().fold(f64::NAN, f64::max);
        Ratio {
            median: median(ratios),
            low,
            high,
        }
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.median.is_nan() {
            return f.write_str("—");
        }
        let percent = |ratio: f64| (ratio * 100.0).round();
        write!(
            f,
            "{:.0}% ({:.0}–{:.0})",
            percent(self.median),
            percent(self.low),
            percent(self.high)
        )
    }
}

fn fmt_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
