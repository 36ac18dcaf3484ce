//! `--lifecycle start|status|stop`: running the daemon by hand on hosts without a service manager.
//!
//! `start` daemonizes (before any async runtime or thread exists), and the daemon holds an exclusive lock on its
//! PID file for its whole life; the starting process waits until the daemon answers a health probe and prints its
//! status. `status` and `stop` trust the lock, never the bare number in the file, and act only on a holder that runs
//! this program, so they never mistake an unrelated process for the daemon. Probes use the health request, which
//! leaves no evidence record.
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

use cavra_runtime_client::{Client, Retry, Server, ServerCheck};
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
            let (status, code) = status(&paths, pid_file.as_ref())?;
            print_json(&status).map_err(LifecycleError::WriteOutput)?;
            Ok(code)
        }
        LifecycleAction::Stop => stop(lifecycle, &paths),
    }
}

/// The daemon's health and who answered (the kernel's record: its pid). Any server is heard: nothing it says is
/// acted on, and whether it is the daemon is decided by comparing its pid with the PID file's holder.
fn probe(socket: &Path) -> Option<(Health, Server)> {
    Client::new(socket)
        .with_timeout(Duration::from_millis(500))
        .with_retry(Retry::none())
        .expect_server(ServerCheck::Anyone)
        .health_and_server()
        .ok()
}

fn lock_state(pid_file: Option<&PidFile>) -> Result<LockState, PidFileError> {
    pid_file.map_or(Ok(LockState::Absent), PidFile::lock_state)
}

/// The status and its LSB exit code: 0 running, 1 PID file left by a dead daemon, 3 not running, 4 a live daemon
/// process whose socket does not answer.
fn status(paths: &Paths, pid_file: Option<&PidFile>) -> Result<(Status, ExitCode), LifecycleError> {
    let lock = lock_state(pid_file)?;
    let daemon = match pid_file {
        Some(pid_file) if lock == LockState::Held => pid_file.daemon()?,
        _ => None,
    };
    let health = probe(&paths.socket).map(|(health, _)| health);
    let process_running = lock == LockState::Held;
    let socket_responsive = health.is_some();
    let running = socket_responsive && (process_running || lock == LockState::Absent);
    let (message, code) = match (running, lock, process_running) {
        (true, _, _) => ("daemon is running", 0),
        (false, LockState::Stale, _) => ("daemon pid file exists but process is not running", 1),
        (false, _, true) => ("daemon process is running but its socket does not answer", 4),
        (false, _, false) => ("daemon is not running", 3),
    };
    let pid = daemon
        .or_else(|| health.as_ref().map(|h| h.pid as i32))
        .or_else(|| pid_file.and_then(PidFile::read_pid));
    let status = Status {
        running,
        pid,
        socket_path: paths.socket.clone(),
        pid_path: paths.pid.clone(),
        process_running,
        socket_responsive,
        message: message.to_owned(),
        version: health.as_ref().map(|h| h.version.clone()),
        uptime_seconds: health.as_ref().map(|h| h.uptime_seconds),
    };
    Ok((status, ExitCode::from(code)))
}

/// Mode of a PID file's or log's directory that `start` creates.
const DIR_MODE: u32 = 0o750;

fn start(lifecycle: &LifecycleArgs, serve: &ServeArgs, paths: &Paths) -> Result<ExitCode, LifecycleError> {
    let identity = Identity::resolve(lifecycle.user.as_deref(), lifecycle.group.as_deref())?;
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
    match pid_file.lock_state()? {
        LockState::Held => {
            let pid = pid_file.daemon()?.unwrap_or_default();
            return Err(LifecycleError::AlreadyRunning {
                pid,
                socket: paths.socket.clone(),
            });
        }
        LockState::Stale => {
            // Never signalled: whatever runs under that number now is not the daemon.
            let Some(dead) = pid_file.read_pid() else {
                return Err(LifecycleError::Starting {
                    path: paths.pid.clone(),
                });
            };
            eprintln!(
                "cavra-runtime: removing stale pid file {} (pid {dead} does not hold it)",
                paths.pid.display(),
            );
            pid_file.remove()?;
        }
        LockState::Absent => {}
    }
    if probe(&paths.socket).is_some() {
        return Err(LifecycleError::Unmanaged {
            socket: paths.socket.clone(),
            pid_path: paths.pid.clone(),
        });
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
        let lock = pid_file.lock_state().unwrap_or(LockState::Absent);
        if lock == LockState::Held && daemon.is_none() {
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
            let (status, _) = status(paths, Some(pid_file))?;
            print_json(&status).map_err(LifecycleError::WriteOutput)?;
            return Ok(ExitCode::SUCCESS);
        }
        // The pid is written after the lock is taken, so a written pid without a holder is a daemon that died.
        let died = match daemon {
            Some(_) => lock != LockState::Held,
            None => lock == LockState::Stale && pid_file.read_pid().is_some(),
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
    let message = match (lock_state(pid_file.as_ref())?, &pid_file) {
        (LockState::Absent, _) if probe(&paths.socket).is_some() => {
            return Err(LifecycleError::Unmanaged {
                socket: paths.socket.clone(),
                pid_path: paths.pid.clone(),
            });
        }
        (LockState::Absent, _) | (_, None) => {
            remove_dead_socket(&paths.socket);
            "daemon is not running".to_owned()
        }
        (LockState::Stale, Some(pid_file)) => {
            pid_file.remove()?;
            remove_dead_socket(&paths.socket);
            "daemon was not running; removed its stale pid file".to_owned()
        }
        (LockState::Held, Some(pid_file)) => {
            // Only a holder running this program is signalled; anything else is an error naming the file.
            let message = match pid_file.daemon()? {
                Some(pid) => terminate(pid, pid_file, lifecycle.lifecycle_timeout),
                None => "the pid file's holder exited meanwhile; nothing signalled".to_owned(),
            };
            let _ = pid_file.remove();
            remove_dead_socket(&paths.socket);
            message
        }
    };
    let status = Status {
        running: false,
        pid: None,
        socket_path: paths.socket.clone(),
        pid_path: paths.pid.clone(),
        process_running: lock_state(pid_file.as_ref()).unwrap_or(LockState::Absent) == LockState::Held,
        socket_responsive: probe(&paths.socket).is_some(),
        message,
        version: None,
        uptime_seconds: None,
    };
    print_json(&status).map_err(LifecycleError::WriteOutput)?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM, then SIGKILL if the daemon still holds its PID file after `limit`.
fn terminate(pid: i32, pid_file: &PidFile, limit: Duration) -> String {
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    if wait_released(pid_file, limit) {
        return "daemon stopped".to_owned();
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    wait_released(pid_file, Duration::from_secs(5));
    format!(
        "daemon did not stop within {} of SIGTERM; killed",
        humantime::format_duration(limit)
    )
}

/// Waits for the lock to go (the process has exited); false if it is still held after `limit`.
fn wait_released(pid_file: &PidFile, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if pid_file.lock_state().unwrap_or(LockState::Absent) != LockState::Held {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes a socket file nobody answers on (a daemon killed before it could remove its own), in its checked
/// directory; never anything else.
fn remove_dead_socket(socket: &Path) {
    let Ok((dir, name)) = SafeDir::of_file(socket, None, &Trust::effective_user()) else {
        return;
    };
    let is_socket = matches!(
        dir.entry(&name),
        Ok(Some(stat)) if stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFSOCK.bits()
    );
    if is_socket && probe(socket).is_none() {
        let _ = dir.remove(&name);
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LifecycleError {
    let path = path.to_owned();
    move |source| LifecycleError::Io { action, path, source }
}
