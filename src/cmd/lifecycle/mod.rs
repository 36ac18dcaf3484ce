//! `--lifecycle start|status|stop`: running the daemon by hand on hosts without a service manager.
//!
//! `start` daemonizes (before any async runtime or thread exists), and the daemon holds an exclusive lock on its
//! PID file for its whole life; the starting process waits until the daemon answers a health probe and prints its
//! status. `status` and `stop` trust the lock, never the bare number in the file, and act only on a holder that runs
//! this program, so they never mistake an unrelated process for the daemon. Probes use the health request, which
//! leaves no evidence record.
//!
//! The Go daemon's PID file has no lock. Such a file is still recognised when its pid is the process listening on
//! the socket, as the kernel reports it to the connecting side (peer credentials): that daemon is reported running
//! and `stop` stops it. A socket anyone listens on, and the PID file of a live daemon, are never removed.
//!
//! Every file here (PID file, log) is reached through a checked directory and never through a link
//! ([`crate::fsutil`]); `daemonize` only detaches (fork, setsid, fork), and the PID file, the output and the
//! privilege drop ([`privileges`]) are done here.

mod pidfile;
mod privileges;

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cavra_runtime_client::{Client, ClientError, Retry, Server, ServerCheck};
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::SFlag;
use nix::unistd::Pid;
use serde::Serialize;

use super::flags::{LifecycleAction, LifecycleArgs, ServeArgs};
use super::io::print_json;
use super::serve::{self, ServeError};
use crate::contract::Health;
use crate::fsutil::{self, FsError, SafeDir, Trust};
use crate::server::listener::socket_directory_mode;
use pidfile::{LockState, PidFile, PidFileError};
use privileges::{Identity, PrivilegeError};

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("daemon is already running (pid {pid}) on {}", socket.display())]
    AlreadyRunning { pid: i32, socket: PathBuf },
    #[error("a daemon not started by --lifecycle (no pid file {}) is already answering on {}", pid_path.display(), socket.display())]
    Unmanaged { socket: PathBuf, pid_path: PathBuf },
    #[error(
        "pid file {} names pid {}, but {} listens on {}; nothing was signalled or removed (stop that daemon the way \
         it was started, then remove the pid file if it is stale)",
        pid_path.display(),
        pid.map_or("none".to_owned(), |pid| pid.to_string()),
        listener.map_or("a process the kernel does not name".to_owned(), |pid| format!("pid {pid}")),
        socket.display()
    )]
    NotTheListener {
        pid_path: PathBuf,
        pid: Option<i32>,
        socket: PathBuf,
        listener: Option<i32>,
    },
    #[error(
        "pid file {} exists but holds no pid: another start may be under way; if none is, remove it",
        path.display()
    )]
    Starting { path: PathBuf },
    #[error(transparent)]
    PidFile(#[from] PidFileError),
    #[error("refusing the {what} {}: {source}", path.display())]
    Unsafe {
        what: &'static str,
        path: PathBuf,
        source: FsError,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error("cannot daemonize: {0}")]
    Daemonize(daemonize::Error),
    #[error("{reason}{log}")]
    StartFailed { reason: String, log: String },
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot write the status to standard output: {0}")]
    WriteOutput(io::Error),
}

/// What `status` reports, in the reference's shape plus the health probe's version and uptime.
#[derive(Debug, Serialize)]
pub struct Status {
    pub running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub socket_path: PathBuf,
    pub pid_path: PathBuf,
    pub process_running: bool,
    pub socket_responsive: bool,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    /// The health answer's status (ok, degraded, failing) and its reasons, when the daemon answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<serde_json::Value>,
}

/// The health answer as `status` reads it: the contract's fields and the reasons beside them.
#[derive(Debug, serde::Deserialize)]
struct HealthView {
    #[serde(flatten)]
    health: Health,
    #[serde(default)]
    reasons: Vec<serde_json::Value>,
}

/// Where the pieces live, from the flags.
struct Paths {
    socket: PathBuf,
    pid: PathBuf,
    log: Option<PathBuf>,
}

impl Paths {
    fn of(lifecycle: &LifecycleArgs, serve: &ServeArgs) -> Self {
        let socket = serve.socket.path();
        let pid = lifecycle.pid.clone().unwrap_or_else(|| {
            let mut path = socket.clone().into_os_string();
            path.push(".pid");
            path.into()
        });
        // Under the journal the daemon logs there itself; otherwise its output goes to a file beside the socket.
        let log = serve.logging.log_file.clone().or_else(|| {
            std::env::var_os("JOURNAL_STREAM")
                .is_none()
                .then(|| socket.with_extension("log"))
        });
        Self { socket, pid, log }
    }
}

/// `serve` is what a started daemon runs with; `status` and `stop` read only its socket.
pub fn run(action: LifecycleAction, lifecycle: &LifecycleArgs, serve: &ServeArgs) -> Result<ExitCode, LifecycleError> {
    let paths = Paths::of(lifecycle, serve);
    match action {
        LifecycleAction::Start => start(lifecycle, serve, &paths),
        LifecycleAction::Status => {
            let pid_file = PidFile::at(&paths.pid, None)?;
            let (status, code) = status(&paths, pid_file.as_ref(), lifecycle.lifecycle_timeout)?;
            print_json(&status).map_err(LifecycleError::WriteOutput)?;
            Ok(code)
        }
        LifecycleAction::Stop => stop(lifecycle, &paths),
    }
}

/// How long a probe made while starting or stopping may take.
const PROBE: Duration = Duration::from_millis(500);

/// A client for probes. Any server is heard: nothing it says is acted on, and whether it is the daemon is decided
/// by comparing its pid, as the kernel reports it, with the PID file's.
fn prober(socket: &Path, timeout: Duration) -> Client {
    Client::new(socket)
        .with_timeout(timeout)
        .with_retry(Retry::none())
        .expect_server(ServerCheck::Anyone)
}

/// The daemon's health and who answered (the kernel's record: its pid), when it is a cavra-runtime daemon that
/// answers health probes.
fn probe(socket: &Path) -> Option<(Health, Server)> {
    prober(socket, PROBE).health_and_server().ok()
}

/// What is at the socket.
#[derive(Debug, Default)]
struct AtSocket {
    /// Who listens, as the kernel recorded it, when a connection could be made.
    listener: Option<Server>,
    /// Its health, when it answered the health probe with it, and the reasons for a status other than ok.
    health: Option<Health>,
    reasons: Vec<serde_json::Value>,
    /// Whether it answered the probe at all: with its health, with a refusal, or with a decision (the Go daemon,
    /// which has no health probe, evaluates the probe as a request).
    answers: bool,
}

impl AtSocket {
    /// Who listens, without asking anything: enough to tell which process a PID file names, and nothing a daemon
    /// would record.
    fn listening(socket: &Path) -> Self {
        Self {
            listener: prober(socket, PROBE).listener().ok(),
            ..Self::default()
        }
    }

    /// Who listens, and whether it answers the health probe.
    fn look(socket: &Path, timeout: Duration) -> Self {
        let client = prober(socket, timeout);
        let Ok(listener) = client.listener() else {
            return Self::default();
        };
        let (view, answers) = match client.health_as::<HealthView>() {
            Ok((view, _)) => (Some(view), true),
            Err(ClientError::NoHealth { .. } | ClientError::Refused { .. }) => (None, true),
            Err(_) => (None, false),
        };
        let (health, reasons) = match view {
            Some(view) => (Some(view.health), view.reasons),
            None => (None, Vec::new()),
        };
        Self {
            listener: Some(listener),
            health,
            reasons,
            answers,
        }
    }

    fn listener_pid(&self) -> Option<i32> {
        self.listener.and_then(|server| server.pid)
    }
}

/// Whether nothing listens on `socket`: a socket file is there, and connecting to it is refused.
fn nobody_listens(socket: &Path) -> bool {
    match prober(socket, PROBE).listener() {
        Err(ClientError::Connect { source, .. }) => source.kind() == io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// The daemon the PID file names, as far as can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// No PID file.
    NoFile,
    /// A daemon of this program holding the file's lock.
    Locked(i32),
    /// A file nobody holds (the Go daemon locks none) whose pid is the live process listening on the socket.
    Unlocked(i32),
    /// A file naming no daemon: its process is gone, or is not the one listening on the socket.
    Stale(Option<i32>),
}

fn named(pid_file: Option<&PidFile>, at: &AtSocket) -> Result<Named, LifecycleError> {
    let Some(pid_file) = pid_file else {
        return Ok(Named::NoFile);
    };
    Ok(match pid_file.lock_state()? {
        LockState::Absent => Named::NoFile,
        LockState::Held => match pid_file.daemon()? {
            Some(pid) => Named::Locked(pid),
            None => Named::Stale(pid_file.read_pid()),
        },
        LockState::Stale => match pid_file.read_pid() {
            Some(pid) if at.listener_pid() == Some(pid) && running(pid) => Named::Unlocked(pid),
            pid => Named::Stale(pid),
        },
    })
}

/// Whether process `pid` exists and has not exited (a zombie waiting to be reaped has).
fn running(pid: i32) -> bool {
    let exists = matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(nix::errno::Errno::EPERM));
    #[cfg(target_os = "linux")]
    let exists = exists
        && fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
            .unwrap_or(true);
    exists
}

/// The status and its LSB exit code: 0 running, 1 PID file left by a dead daemon, 3 not running, 4 a live daemon
/// process whose socket does not answer. `pid` and `process_running` are about one process: the daemon the PID file
/// names, or else the one listening on the socket.
fn status(paths: &Paths, pid_file: Option<&PidFile>, timeout: Duration) -> Result<(Status, ExitCode), LifecycleError> {
    let at = AtSocket::look(&paths.socket, timeout);
    let named = named(pid_file, &at)?;
    Ok(report(paths, named, &at))
}

/// The status of what `named` and `at` found.
fn report(paths: &Paths, named: Named, at: &AtSocket) -> (Status, ExitCode) {
    let (pid, process_running) = match named {
        Named::Locked(pid) | Named::Unlocked(pid) => (Some(pid), true),
        // A daemon not started by --lifecycle (plain --serve, socket activation): the one at the socket. Its own
        // pid when it says (under socket activation the listener is the service manager).
        Named::NoFile | Named::Stale(_) if at.listener.is_some() => (
            at.health.as_ref().map(|health| health.pid as i32).or(at.listener_pid()),
            true,
        ),
        Named::Stale(pid) => (pid, false),
        Named::NoFile => (None, false),
    };
    let running = at.answers && process_running;
    let (message, code) = match (running, process_running, named) {
        (true, _, Named::Stale(Some(stale))) => (
            format!(
                "daemon is running; pid file {} is stale (pid {stale} is not the daemon)",
                paths.pid.display()
            ),
            0,
        ),
        (true, _, _) => ("daemon is running".to_owned(), 0),
        (false, true, _) => ("daemon process is running but its socket does not answer".to_owned(), 4),
        (false, false, Named::Stale(_)) => ("daemon pid file exists but process is not running".to_owned(), 1),
        (false, false, _) => ("daemon is not running".to_owned(), 3),
    };
    let status = Status {
        running,
        pid,
        socket_path: paths.socket.clone(),
        pid_path: paths.pid.clone(),
        process_running,
        socket_responsive: at.answers,
        message,
        version: at.health.as_ref().map(|h| h.version.clone()),
        uptime_seconds: at.health.as_ref().map(|h| h.uptime_seconds),
        health: at.health.as_ref().map(|h| h.status.clone()),
        reasons: at.reasons.clone(),
    };
    (status, ExitCode::from(code))
}

/// Mode of a PID file's or log's directory that `start` creates.
const DIR_MODE: u32 = 0o750;

fn start(lifecycle: &LifecycleArgs, serve: &ServeArgs, paths: &Paths) -> Result<ExitCode, LifecycleError> {
    let identity = Identity::for_start(lifecycle.user.as_deref(), lifecycle.group.as_deref())?;
    // The socket's directory first, with the mode its socket implies: the PID file and log usually live there too.
    SafeDir::of_file(
        &paths.socket,
        Some(socket_directory_mode(serve.socket.socket_mode)),
        &Trust::effective_user(),
    )
    .map_err(|source| LifecycleError::Unsafe {
        what: "socket",
        path: paths.socket.clone(),
        source,
    })?;
    let pid_file = PidFile::at(&paths.pid, Some(fsutil::mode(DIR_MODE)))?.expect("created when missing");
    let at = AtSocket::listening(&paths.socket);
    match named(Some(&pid_file), &at)? {
        Named::Locked(pid) | Named::Unlocked(pid) => {
            return Err(LifecycleError::AlreadyRunning {
                pid,
                socket: paths.socket.clone(),
            });
        }
        Named::Stale(pid) if at.listener.is_some() => {
            return Err(LifecycleError::NotTheListener {
                pid_path: paths.pid.clone(),
                pid,
                socket: paths.socket.clone(),
                listener: at.listener_pid(),
            });
        }
        Named::Stale(None) => {
            return Err(LifecycleError::Starting {
                path: paths.pid.clone(),
            });
        }
        Named::Stale(Some(dead)) => {
            // Never signalled: whatever runs under that number now is not the daemon.
            eprintln!(
                "cavra-runtime: removing stale pid file {} (pid {dead} does not hold it and does not listen on {})",
                paths.pid.display(),
                paths.socket.display()
            );
            pid_file.remove()?;
        }
        Named::NoFile if at.listener.is_some() => {
            return Err(LifecycleError::Unmanaged {
                socket: paths.socket.clone(),
                pid_path: paths.pid.clone(),
            });
        }
        Named::NoFile => {}
    }
    let log = paths.log.as_deref().map(open_log).transpose()?;
    let working_directory = std::env::current_dir().map_err(io_error("read", Path::new(".")))?;
    // Created before detaching, so a refusal is reported here; the daemon locks it and writes its pid.
    let created = pid_file.create()?;
    // Only the detaching: fork, setsid, fork. Sound only while this process has one thread, which it has here (no
    // runtime, logger or client thread exists before this point). No `privileged_action` (RUSTSEC-2025-0069).
    match daemonize::Daemonize::new()
        .working_directory(working_directory)
        .execute()
    {
        daemonize::Outcome::Parent(Ok(_)) => {
            // The daemon holds its own copies; the lock and the log belong to it.
            drop(created);
            drop(log);
            wait_ready(lifecycle.lifecycle_timeout, paths, &pid_file)
        }
        daemonize::Outcome::Parent(Err(error)) => {
            let _ = pid_file.remove();
            Err(LifecycleError::Daemonize(error))
        }
        daemonize::Outcome::Child(Ok(_)) => run_daemon(serve, &pid_file, created, log, identity.as_ref()),
        daemonize::Outcome::Child(Err(error)) => {
            eprintln!("cavra-runtime: cannot daemonize: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The log file, appended to and created 0640 in its checked directory, never through a link.
fn open_log(path: &Path) -> Result<File, LifecycleError> {
    let unsafe_log = |source| LifecycleError::Unsafe {
        what: "log file",
        path: path.to_owned(),
        source,
    };
    let (dir, name) =
        SafeDir::of_file(path, Some(fsutil::mode(DIR_MODE)), &Trust::effective_user()).map_err(unsafe_log)?;
    dir.open_file(&name, OFlag::O_WRONLY | OFlag::O_APPEND, Some(fsutil::mode(0o640)))
        .map_err(unsafe_log)
}

/// The detached daemon: output to the log, the PID file locked with its pid in it, root given up if asked, then
/// serve. An error ends it; its message goes to the log, and the waiting `start` shows it.
fn run_daemon(
    serve: &ServeArgs,
    pid_file: &PidFile,
    created: File,
    log: Option<File>,
    identity: Option<&Identity>,
) -> Result<ExitCode, LifecycleError> {
    if let Some(log) = log {
        nix::unistd::dup2_stdout(&log)
            .and_then(|()| nix::unistd::dup2_stderr(&log))
            .map_err(|errno| io_error("write to the log", Path::new("standard output"))(errno.into()))?;
    }
    // Blocking: only a probe's momentary lock can be in the way of a file this start created.
    let mut locked = Flock::lock(created, FlockArg::LockExclusive)
        .map_err(|(_, errno)| io_error("lock", pid_file.path())(errno.into()))?;
    writeln!(locked, "{}", std::process::id())
        .and_then(|()| locked.sync_data())
        .map_err(io_error("write", pid_file.path()))?;
    if let Some(identity) = identity {
        identity.assume()?;
    }
    serve::run(serve)?;
    // A clean exit takes its PID file along (the lock is still ours). After a failure the file stays, with no
    // holder, which is how the waiting `start` learns the daemon died; it cleans up.
    let _ = pid_file.remove();
    drop(locked);
    Ok(ExitCode::SUCCESS)
}

/// Waits until the daemon answers a health probe as the holder of the PID file; on failure, stops what started and
/// says why, with the daemon's last log lines.
fn wait_ready(limit: Duration, paths: &Paths, pid_file: &PidFile) -> Result<ExitCode, LifecycleError> {
    let deadline = Instant::now() + limit;
    let mut daemon = None;
    let failure = loop {
        // A look at the lock that fails says nothing about the daemon (`None`): only a look that works may end the
        // wait early.
        let lock = pid_file.lock_state().ok();
        if lock == Some(LockState::Held) && daemon.is_none() {
            // The holder once it has written its own pid: a probe's momentary lock is not the daemon.
            daemon = pid_file
                .holder()
                .ok()
                .flatten()
                .filter(|pid| pid_file.read_pid() == Some(*pid));
        }
        if let Some((_, server)) = probe(&paths.socket)
            && daemon.is_some()
            && server.pid == daemon
        {
            let (status, _) = status(paths, Some(pid_file), PROBE)?;
            print_json(&status).map_err(LifecycleError::WriteOutput)?;
            return Ok(ExitCode::SUCCESS);
        }
        // The pid is written after the lock is taken, so a written pid without a holder is a daemon that died.
        let died = match (daemon, lock) {
            (_, None) => false,
            (Some(_), Some(lock)) => lock != LockState::Held,
            (None, Some(lock)) => lock == LockState::Stale && matches!(pid_file.abandoned_pid(), Ok(Some(_))),
        };
        if died {
            break "daemon exited during start-up".to_owned();
        }
        if Instant::now() >= deadline {
            break format!(
                "daemon did not become ready before {}",
                humantime::format_duration(limit)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if let Ok(Some(pid)) = pid_file.daemon() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        wait_released(pid_file, Duration::from_secs(2));
    }
    let _ = pid_file.remove();
    remove_dead_socket(&paths.socket);
    Err(LifecycleError::StartFailed {
        reason: failure,
        log: paths.log.as_deref().map(last_lines).unwrap_or_default(),
    })
}

/// The end of the daemon's log, to show why it did not start.
fn last_lines(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    if tail.is_empty() {
        format!(" (its log {} is empty)", log.display())
    } else {
        format!("; last lines of {}:\n{tail}", log.display())
    }
}

fn stop(lifecycle: &LifecycleArgs, paths: &Paths) -> Result<ExitCode, LifecycleError> {
    let pid_file = PidFile::at(&paths.pid, None)?;
    let at = AtSocket::listening(&paths.socket);
    let limit = lifecycle.lifecycle_timeout;
    let message = match (named(pid_file.as_ref(), &at)?, &pid_file) {
        (Named::Locked(pid), Some(pid_file)) => {
            // Only a holder running this program is signalled (`named` checked it).
            let message = terminate(pid, limit, || {
                pid_file.lock_state().unwrap_or(LockState::Absent) != LockState::Held
            });
            let _ = pid_file.remove();
            remove_dead_socket(&paths.socket);
            message
        }
        (Named::Unlocked(pid), Some(pid_file)) => {
            // The process listening on the socket, named by its PID file: the Go daemon's way.
            let message = terminate(pid, limit, || !running(pid));
            if !running(pid) {
                pid_file.remove()?;
            }
            remove_dead_socket(&paths.socket);
            message
        }
        (Named::Stale(pid), _) if at.listener.is_some() => {
            return Err(LifecycleError::NotTheListener {
                pid_path: paths.pid.clone(),
                pid,
                socket: paths.socket.clone(),
                listener: at.listener_pid(),
            });
        }
        (Named::NoFile, _) if at.listener.is_some() => {
            return Err(LifecycleError::Unmanaged {
                socket: paths.socket.clone(),
                pid_path: paths.pid.clone(),
            });
        }
        (Named::Stale(_), Some(pid_file)) => {
            pid_file.remove()?;
            remove_dead_socket(&paths.socket);
            "daemon was not running; removed its stale pid file".to_owned()
        }
        _ => {
            remove_dead_socket(&paths.socket);
            "daemon is not running".to_owned()
        }
    };
    // What is there now; a PID file another user has meanwhile replaced with a link is no daemon's.
    let at = AtSocket::look(&paths.socket, PROBE);
    let now = named(pid_file.as_ref(), &at).unwrap_or(Named::Stale(None));
    let (mut status, _) = report(paths, now, &at);
    status.message = message;
    print_json(&status).map_err(LifecycleError::WriteOutput)?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM, then SIGKILL if the daemon has not `exited` after `limit`.
fn terminate(pid: i32, limit: Duration, exited: impl Fn() -> bool) -> String {
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    if wait_until(limit, &exited) {
        return "daemon stopped".to_owned();
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    wait_until(Duration::from_secs(5), &exited);
    format!(
        "daemon did not stop within {} of SIGTERM; killed",
        humantime::format_duration(limit)
    )
}

/// Waits for the lock to go (the process has exited); false if it is still held after `limit`.
fn wait_released(pid_file: &PidFile, limit: Duration) -> bool {
    wait_until(limit, || {
        pid_file.lock_state().unwrap_or(LockState::Absent) != LockState::Held
    })
}

/// Waits until `done`; false if it is not after `limit`.
fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes a socket file nobody listens on (a daemon killed before it could remove its own), in its checked
/// directory; never a socket a process listens on, whether or not it answers, and never anything else.
fn remove_dead_socket(socket: &Path) {
    let Ok((dir, name)) = SafeDir::of_file(socket, None, &Trust::effective_user()) else {
        return;
    };
    let is_socket = matches!(
        dir.entry(&name),
        Ok(Some(stat)) if stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFSOCK.bits()
    );
    if is_socket && nobody_listens(socket) {
        let _ = dir.remove(&name);
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LifecycleError {
    let path = path.to_owned();
    move |source| LifecycleError::Io { action, path, source }
}
