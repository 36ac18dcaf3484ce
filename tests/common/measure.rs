//! Measuring a running daemon, shared by the load benchmark (`benches/daemon_load.rs`, which includes this file by
//! path) and the soak (`tests/soak.rs`): percentiles, readings from /proc, the open-file limit, raw line exchanges
//! on the socket, waiting for readiness, and the daemon's command line. One implementation of each, so the two
//! report figures measured the same way.
#![allow(dead_code)] // each user uses its own subset

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read as _, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use nix::sched::{sched_getaffinity, sched_setaffinity};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, SysconfVar, sysconf};

/// The daemon measured: the binary cargo built for this profile (only `--release` gives figures that mean anything).
pub const DAEMON: &str = env!("CARGO_BIN_EXE_cavra-runtime");

/// The health probe: the daemon answers it without a decision or an evidence record.
pub const HEALTH: &str = r#"{"action_type":"cavra.health"}"#;
/// The first line of a stream-mode connection.
pub const PROTOCOL: &str = r#"{"protocol":"cavra.ndjson.v1"}"#;
/// The longest answer line read: a server that sends more without a newline is broken, not slow.
const MAX_LINE: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------------------------
// Percentiles and medians

/// The nearest-rank `quantile` (0 to 1) of `values`, which may be in any order (they are reordered); `None` when
/// there are none. Linear time, so a run's millions of latencies need no sort.
pub fn percentile(values: &mut [u32], quantile: f64) -> Option<u32> {
    if values.is_empty() {
        return None;
    }
    let rank = ((values.len() - 1) as f64 * quantile).round() as usize;
    let (_, value, _) = values.select_nth_unstable(rank);
    Some(*value)
}

/// The median, the mean of the two middle values when their number is even. NaN (a run that measured nothing) is
/// left out; NaN when nothing is left.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|value| !value.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// [`median`] of durations; `None` when there are none.
pub fn median_duration(values: &[Duration]) -> Option<Duration> {
    (!values.is_empty()).then(|| Duration::from_secs_f64(median(values.iter().map(Duration::as_secs_f64).collect())))
}

// ---------------------------------------------------------------------------------------------------------------
// Readings from /proc

/// utime + stime of every thread of `pid`, alive or exited, in clock ticks ([`clock_ticks_per_second`]).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces, so fields are counted after its closing one: state is
    // field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(field(14)? + field(15)?)
}

/// CPU time of every live thread of `pid`, to the nanosecond: the sum of each thread's run time in
/// /proc/PID/task/*/schedstat. Threads that exit are not counted, so this is for a window over which the process keeps
/// its threads (the daemon's runtime, writer and log threads live as long as it does); [`cpu_ticks`] counts exited
/// threads too, at a resolution of 10 ms.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let mut nanos: u64 = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let schedstat = fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        nanos += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(nanos))
}

/// The unit of [`cpu_ticks`]: `sysconf(_SC_CLK_TCK)`, 100 on Linux unless the kernel says otherwise.
pub fn clock_ticks_per_second() -> f64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

/// A field of /proc/PID/status counted in kB (`VmRSS`, `VmHWM`...), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many descriptors `pid` has open: a leak shows as a count that only grows.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The 1-minute load average: other work on the machine shows up in every figure.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// Raises this process's soft open-file limit to at least `wanted` where the hard limit allows, so that it, and the
/// servers it spawns (they inherit it), can hold many connections. The soft limit in force afterwards; 0 if it cannot
/// be read.
pub fn raise_open_file_limit(wanted: u64) -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft >= wanted {
        return soft;
    }
    let raised = wanted.min(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok() {
        raised
    } else {
        soft
    }
}

// ---------------------------------------------------------------------------------------------------------------
// CPU sets: confining servers and load generator to CPUs of their own

#[cfg(target_os = "linux")]
pub use nix::sched::CpuSet;

#[cfg(target_os = "linux")]
/// CPU numbers written as `taskset -c` and /sys write them (`0-1`, `2,4-7`), checked against the CPUs this
/// process may use; an error names the part that is wrong.
pub fn parse_cpu_list(text: &str) -> Result<CpuSet, String> {
    let usable = sched_getaffinity(Pid::from_raw(0)).map_err(|errno| format!("sched_getaffinity: {errno}"))?;
    let mut set = CpuSet::new();
    let mut any = false;
    for part in text.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let number = |n: &str| {
            n.trim()
                .parse::<usize>()
                .map_err(|_| format!("{text:?}: {n:?} is not a CPU number"))
        };
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (number(first)?, number(last)?),
            None => (number(part)?, number(part)?),
        };
        if first > last {
            return Err(format!("{text:?}: {part:?} is an empty range"));
        }
        for cpu in first..=last {
            if !usable.is_set(cpu).unwrap_or(false) {
                return Err(format!("{text:?}: CPU {cpu} is not one this process may use"));
            }
            set.set(cpu).map_err(|errno| format!("{text:?}: CPU {cpu}: {errno}"))?;
            any = true;
        }
    }
    if !any {
        return Err(format!("{text:?} names no CPU"));
    }
    Ok(set)
}

#[cfg(target_os = "linux")]
/// The CPUs in `set`, as [`parse_cpu_list`] reads them.
pub fn cpu_list(set: &CpuSet) -> String {
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect();
    let mut ranges: Vec<String> = Vec::new();
    let mut index = 0;
    while index < cpus.len() {
        let start = index;
        while index + 1 < cpus.len() && cpus[index + 1] == cpus[index] + 1 {
            index += 1;
        }
        ranges.push(if start == index {
            cpus[start].to_string()
        } else {
            format!("{}-{}", cpus[start], cpus[index])
        });
        index += 1;
    }
    ranges.join(",")
}

#[cfg(target_os = "linux")]
/// The CPUs this process may run on now.
pub fn own_cpus() -> Option<CpuSet> {
    sched_getaffinity(Pid::from_raw(0)).ok()
}

#[cfg(target_os = "linux")]
/// Confines the calling thread to `set`; threads and processes it starts afterwards inherit it.
pub fn confine(set: &CpuSet) -> io::Result<()> {
    sched_setaffinity(Pid::from_raw(0), set).map_err(io::Error::from)
}

#[cfg(target_os = "linux")]
/// Makes `command`'s process run on `set` only, from before it executes (so every thread it ever starts does).
pub fn confine_command(command: &mut Command, set: CpuSet) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure makes one system call (async-signal-safe) on a value copied in beforehand.
    unsafe {
        command.pre_exec(move || sched_setaffinity(Pid::from_raw(0), &set).map_err(io::Error::from));
    }
}

/// CPU sets are Linux's (`sched_setaffinity`); elsewhere there is no value of this type, so no code can confine
/// anything, and asking for a set is an error.
#[cfg(not(target_os = "linux"))]
#[derive(Debug, Clone, Copy)]
pub enum CpuSet {}

#[cfg(not(target_os = "linux"))]
pub fn parse_cpu_list(text: &str) -> Result<CpuSet, String> {
    Err(format!(
        "{text:?}: confining to CPU sets needs Linux (sched_setaffinity)"
    ))
}

#[cfg(not(target_os = "linux"))]
pub fn cpu_list(set: &CpuSet) -> String {
    match *set {}
}

#[cfg(not(target_os = "linux"))]
pub fn own_cpus() -> Option<CpuSet> {
    None
}

#[cfg(not(target_os = "linux"))]
pub fn confine(set: &CpuSet) -> io::Result<()> {
    match *set {}
}

#[cfg(not(target_os = "linux"))]
pub fn confine_command(_command: &mut Command, set: CpuSet) {
    match set {}
}

// ---------------------------------------------------------------------------------------------------------------
// Raw exchanges on the socket: the bytes on the wire, not the client library, so the wire is what is measured

/// Connects to `socket` with `timeout` on every read and write, so that a stuck server fails the caller instead of
/// hanging it.
pub fn connect(socket: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// Reads one answer line into `line` (cleared first), its newline included. A line cut short by the server closing,
/// or longer than 1 MiB, is an error: only a whole line is an answer.
pub fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<()> {
    line.clear();
    reader.take(MAX_LINE).read_until(b'\n', line)?;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a whole answer line",
        ));
    }
    Ok(())
}

/// One compatible-mode exchange (a connection per request): connect, send `request` and its newline in one write,
/// read the answer line.
pub fn exchange(socket: &Path, request: &str, timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = connect(socket, timeout)?;
    let mut bytes = Vec::with_capacity(request.len() + 1);
    bytes.extend_from_slice(request.as_bytes());
    bytes.push(b'\n');
    stream.write_all(&bytes)?;
    let mut answer = Vec::new();
    read_line(&mut BufReader::new(stream), &mut answer)?;
    Ok(answer)
}

/// A stream-mode connection: many request lines on one connection, answered in order. One descriptor each, so a
/// thousand of them fit under a default open-file limit.
pub struct Stream {
    reader: BufReader<UnixStream>,
}

impl Stream {
    /// Connects, asks for stream mode and checks the greeting.
    pub fn open(socket: &Path, timeout: Duration) -> io::Result<Stream> {
        // 64 KiB: a pipelining client reads many answers per system call.
        let mut stream = Stream {
            reader: BufReader::with_capacity(64 * 1024, connect(socket, timeout)?),
        };
        stream.send(format!("{PROTOCOL}\n").as_bytes())?;
        let mut greeting = Vec::new();
        stream.read_line(&mut greeting)?;
        if !greeting.windows(15).any(|window| window == b"cavra.ndjson.v1") {
            return Err(io::Error::other(format!(
                "no stream-mode greeting: {}",
                String::from_utf8_lossy(&greeting)
            )));
        }
        Ok(stream)
    }

    /// Sends `bytes`, whole request lines, in one write.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        Write::write_all(&mut self.reader.get_ref(), bytes)
    }

    /// Reads the next answer line, as [`read_line`].
    pub fn read_line(&mut self, line: &mut Vec<u8>) -> io::Result<()> {
        read_line(&mut self.reader, line)
    }

    /// Whether a whole answer is already buffered, so that reading it costs no system call.
    pub fn has_buffered_line(&self) -> bool {
        self.reader.buffer().contains(&b'\n')
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Spawning, readiness and stopping

/// `cavra-runtime --serve --socket SOCKET --log-target stderr` in a clean environment, so that no `CAVRA_*`
/// setting, `RUST_LOG`, `NOTIFY_SOCKET` or `LISTEN_FDS` of the caller changes what is measured. No standard input or
/// output; standard error goes nowhere unless the caller redirects it.
pub fn daemon_command(socket: &Path) -> Command {
    let mut command = Command::new(daemon_binary());
    command
        .env_clear()
        .args(daemon_args(socket, "stderr"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// The daemon binary measured: [`DAEMON`], or the one `CAVRA_LOAD_DAEMON` names (an earlier build, to compare
/// before and after a change with the same measurement).
pub fn daemon_binary() -> std::path::PathBuf {
    std::env::var_os("CAVRA_LOAD_DAEMON").map_or_else(|| DAEMON.into(), Into::into)
}

/// The arguments of [`daemon_command`], logging to `log_target` (`stderr`, `journald`).
pub fn daemon_args(socket: &Path, log_target: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["--serve", "--log-target", log_target, "--socket"]
        .into_iter()
        .map(OsString::from)
        .collect();
    args.push(socket.into());
    // Every client and idle connection of a measurement is this process's uid: its limits are lifted.
    args.extend(["--max-connections-per-uid", "4096"].map(OsString::from));
    args.extend(["--max-decisions-per-second-per-uid", "0"].map(OsString::from));
    args.extend(["--max-evidence-bytes-per-second-per-uid", "0"].map(OsString::from));
    // A line per decision, as the figures in docs/performance.md were measured.
    args.extend(["--log-decisions", "all"].map(OsString::from));
    args
}

/// Sends health probes to `socket`, one every `poll`, until `ready` accepts an answer or `deadline` passes. The
/// moment the accepted answer arrived (spawn-to-ready is timed from it), or what was seen last.
pub fn wait_ready(
    socket: &Path,
    deadline: Instant,
    poll: Duration,
    ready: impl Fn(&[u8]) -> bool,
) -> Result<Instant, String> {
    let mut last = "no attempt".to_owned();
    while Instant::now() < deadline {
        // A probe may take what is left of the deadline, no more.
        let left = deadline.saturating_duration_since(Instant::now());
        match exchange(socket, HEALTH, left.max(Duration::from_millis(1))) {
            Ok(answer) if ready(&answer) => return Ok(Instant::now()),
            Ok(answer) => last = format!("answered {}", String::from_utf8_lossy(&answer).trim_end()),
            Err(error) => last = error.to_string(),
        }
        thread::sleep(poll);
    }
    Err(last)
}

/// Stops `child` with SIGTERM, and with SIGKILL if it has not exited within `limit`. Its exit status; `None` when it
/// had to be killed.
pub fn terminate(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
