//! `--lifecycle start|status|stop`: running the daemon by hand on hosts without a service manager.
//!
//! `start` daemonizes (before any async runtime or thread exists), and the daemon holds an exclusive lock on its
//! PID file for its whole life; the starting process waits until the daemon answers a health probe and prints its
//! status. `status` and `stop` trust the lock, never the bare number in the file, so they never mistake an
//! unrelated process for the daemon. Probes use the health request, which leaves no evidence record.

mod pidfile;

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
#[cfg(not(target_os = "macos"))]
use nix::unistd::initgroups;
use nix::unistd::{Group, Pid, User};
use serde::Serialize;

use super::flags::{LifecycleAction, LifecycleArgs, ServeArgs};
use super::io::print_json;
use super::serve::{self, ServeError};
use crate::client::Client;
use crate::contract::Health;
use pidfile::LockState;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("daemon is already running (pid {pid}) on {}", socket.display())]
    AlreadyRunning { pid: i32, socket: PathBuf },
    #[error("a daemon not started by --lifecycle (no pid file {}) is already answering on {}", pid_path.display(), socket.display())]
    Unmanaged { socket: PathBuf, pid_path: PathBuf },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("no such user {0:?}")]
    UnknownUser(String),
    #[error("no such group {0:?}")]
    UnknownGroup(String),
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
        let socket = serve.socket.socket.clone();
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
            let (status, code) = status(&paths);
            print_json(&status).map_err(LifecycleError::WriteOutput)?;
            Ok(code)
        }
        LifecycleAction::Stop => stop(lifecycle, &paths),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LifecycleError {
    let path = path.to_owned();
    move |source| LifecycleError::Io { action, path, source }
}

fn probe(socket: &Path) -> Option<Health> {
    Client::new(socket)
        .with_timeout(Duration::from_millis(500))
        .health()
        .ok()
}

/// The status and its LSB exit code: 0 running, 1 PID file left by a dead daemon, 3 not running, 4 a live daemon
/// process whose socket does not answer.
fn status(paths: &Paths) -> (Status, ExitCode) {
    let lock = pidfile::lock_state(&paths.pid).unwrap_or(LockState::Absent);
    let holder = pidfile::holder(&paths.pid).ok().flatten();
    let health = probe(&paths.socket);
    let process_running = lock == LockState::Held;
    let socket_responsive = health.is_some();
    let running = socket_responsive && (process_running || lock == LockState::Absent);
    let (message, code) = match (running, lock, process_running) {
        (true, _, _) => ("daemon is running", 0),
        (false, LockState::Stale, _) => ("daemon pid file exists but process is not running", 1),
        (false, _, true) => ("daemon process is running but its socket does not answer", 4),
        (false, _, false) => ("daemon is not running", 3),
    };
    let pid = holder
        .or_else(|| health.as_ref().map(|h| h.pid as i32))
        .or_else(|| pidfile::read_pid(&paths.pid));
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
    (status, ExitCode::from(code))
}

fn start(lifecycle: &LifecycleArgs, serve: &ServeArgs, paths: &Paths) -> Result<ExitCode, LifecycleError> {
    match pidfile::lock_state(&paths.pid).map_err(io_error("inspect", &paths.pid))? {
        LockState::Held => {
            let pid = pidfile::holder(&paths.pid).ok().flatten().unwrap_or_default();
            return Err(LifecycleError::AlreadyRunning {
                pid,
                socket: paths.socket.clone(),
            });
        }
        LockState::Stale => {
            // Never signalled: whatever runs under that number now is not the daemon.
            eprintln!(
                "cavra-runtime: removing stale pid file {} (pid {} does not hold it)",
                paths.pid.display(),
                pidfile::read_pid(&paths.pid).map_or("?".to_owned(), |pid| pid.to_string())
            );
            fs::remove_file(&paths.pid).map_err(io_error("remove", &paths.pid))?;
        }
        LockState::Absent => {}
    }
    if probe(&paths.socket).is_some() {
        return Err(LifecycleError::Unmanaged {
            socket: paths.socket.clone(),
            pid_path: paths.pid.clone(),
        });
    }
    for path in [Some(&paths.socket), Some(&paths.pid), paths.log.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_error("create", parent))?;
        }
    }
    let stdio = |path: &Option<PathBuf>| -> Result<daemonize::Stdio, LifecycleError> {
        match path {
            Some(path) => OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(path)
                .map(daemonize::Stdio::from)
                .map_err(io_error("open the log file", path)),
            None => Ok(daemonize::Stdio::devnull()),
        }
    };
    let working_directory = std::env::current_dir().map_err(io_error("read", Path::new(".")))?;
    let mut daemonize = daemonize::Daemonize::new()
        .pid_file(&paths.pid)
        .working_directory(working_directory)
        .stdout(stdio(&paths.log)?)
        .stderr(stdio(&paths.log)?);
    let identity = identity(lifecycle)?;
    if let Some((user, group)) = &identity {
        daemonize = daemonize.user(user.uid.as_raw()).group(group.gid.as_raw());
    }
    let daemonize = daemonize.privileged_action(move || drop_supplementary_groups(identity));
    match daemonize.execute() {
        daemonize::Outcome::Parent(Ok(_)) => wait_ready(lifecycle.lifecycle_timeout, paths),
        daemonize::Outcome::Parent(Err(error)) => Err(LifecycleError::Daemonize(error)),
        daemonize::Outcome::Child(Ok(child)) => {
            if let Err(error) = child.privileged_action_result {
                eprintln!("cavra-runtime: cannot set supplementary groups: {error}");
                return Ok(ExitCode::FAILURE);
            }
            serve::run(serve)?;
            // A clean exit takes its PID file along (the lock is still ours). After a failure the file stays, with
            // no holder, which is how the waiting `start` learns the daemon died; it cleans up.
            let _ = fs::remove_file(&paths.pid);
            Ok(ExitCode::SUCCESS)
        }
        daemonize::Outcome::Child(Err(error)) => {
            eprintln!("cavra-runtime: cannot daemonize: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The user and group `--user`/`--group` name, if any.
fn identity(lifecycle: &LifecycleArgs) -> Result<Option<(User, Group)>, LifecycleError> {
    let Some(name) = &lifecycle.user else {
        return Ok(None);
    };
    let user = User::from_name(name)
        .ok()
        .flatten()
        .ok_or_else(|| LifecycleError::UnknownUser(name.clone()))?;
    let group = match &lifecycle.group {
        Some(name) => Group::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| LifecycleError::UnknownGroup(name.clone()))?,
        None => Group::from_gid(user.gid)
            .ok()
            .flatten()
            .ok_or_else(|| LifecycleError::UnknownGroup(user.gid.to_string()))?,
    };
    Ok(Some((user, group)))
}

/// Runs as root just before the daemon drops to `--user`: without it, root's supplementary groups would survive the
/// drop (daemonize only calls setgid and setuid).
fn drop_supplementary_groups(identity: Option<(User, Group)>) -> nix::Result<()> {
    let Some((user, group)) = identity else {
        return Ok(());
    };
    let name = CString::new(user.name.clone()).map_err(|_| nix::errno::Errno::EINVAL)?;
    initgroups(&name, group.gid)
}

/// nix has no `initgroups` for Apple targets (it points to opendirectoryd instead); libc's is the one launchd calls
/// for a job's `InitGroups`: at most 16 groups in the credential, and opted in to directory-resolved membership.
#[cfg(target_os = "macos")]
fn initgroups(user: &std::ffi::CStr, group: nix::unistd::Gid) -> nix::Result<()> {
    let group = nix::libc::c_int::try_from(group.as_raw()).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: `user` is a NUL-terminated string that outlives the call.
    nix::errno::Errno::result(unsafe { nix::libc::initgroups(user.as_ptr(), group) }).map(drop)
}

/// Waits until the daemon answers a health probe as the holder of the PID file; on failure, stops what started and
/// says why, with the daemon's last log lines.
fn wait_ready(limit: Duration, paths: &Paths) -> Result<ExitCode, LifecycleError> {
    let deadline = Instant::now() + limit;
    let mut holder = None;
    let failure = loop {
        let lock = pidfile::lock_state(&paths.pid).unwrap_or(LockState::Absent);
        if lock == LockState::Held && holder.is_none() {
            holder = pidfile::holder(&paths.pid).ok().flatten();
        }
        if let Some(health) = probe(&paths.socket)
            && holder.is_some_and(|pid| pid == health.pid as i32)
        {
            let (status, _) = status(paths);
            print_json(&status).map_err(LifecycleError::WriteOutput)?;
            return Ok(ExitCode::SUCCESS);
        }
        // The pid is written after the lock is taken, so a written pid without a holder is a daemon that died.
        let died = match holder {
            Some(_) => lock != LockState::Held,
            None => lock == LockState::Stale && pidfile::read_pid(&paths.pid).is_some(),
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
    if let Some(pid) = pidfile::holder(&paths.pid).ok().flatten() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        wait_released(&paths.pid, Duration::from_secs(2));
    }
    let _ = fs::remove_file(&paths.pid);
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
    let lock = pidfile::lock_state(&paths.pid).map_err(io_error("inspect", &paths.pid))?;
    let message = match lock {
        LockState::Absent if probe(&paths.socket).is_some() => {
            return Err(LifecycleError::Unmanaged {
                socket: paths.socket.clone(),
                pid_path: paths.pid.clone(),
            });
        }
        LockState::Absent => {
            remove_dead_socket(&paths.socket);
            "daemon is not running".to_owned()
        }
        LockState::Stale => {
            fs::remove_file(&paths.pid).map_err(io_error("remove", &paths.pid))?;
            remove_dead_socket(&paths.socket);
            "daemon was not running; removed its stale pid file".to_owned()
        }
        LockState::Held => {
            let pid = pidfile::holder(&paths.pid)
                .map_err(io_error("inspect", &paths.pid))?
                .or_else(|| pidfile::read_pid(&paths.pid));
            let message = match pid {
                Some(pid) => terminate(pid, &paths.pid, lifecycle.lifecycle_timeout),
                None => "daemon holds its pid file but no pid could be found; nothing signalled".to_owned(),
            };
            let _ = fs::remove_file(&paths.pid);
            remove_dead_socket(&paths.socket);
            message
        }
    };
    let status = Status {
        running: false,
        pid: None,
        socket_path: paths.socket.clone(),
        pid_path: paths.pid.clone(),
        process_running: pidfile::lock_state(&paths.pid).unwrap_or(LockState::Absent) == LockState::Held,
        socket_responsive: probe(&paths.socket).is_some(),
        message,
        version: None,
        uptime_seconds: None,
    };
    print_json(&status).map_err(LifecycleError::WriteOutput)?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM, then SIGKILL if the daemon still holds its PID file after `limit`.
fn terminate(pid: i32, pid_path: &Path, limit: Duration) -> String {
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    if wait_released(pid_path, limit) {
        return "daemon stopped".to_owned();
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    wait_released(pid_path, Duration::from_secs(5));
    format!(
        "daemon did not stop within {} of SIGTERM; killed",
        humantime::format_duration(limit)
    )
}

/// Waits for the lock to go (the process has exited); false if it is still held after `limit`.
fn wait_released(pid_path: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if pidfile::lock_state(pid_path).unwrap_or(LockState::Absent) != LockState::Held {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes a socket file nobody answers on (a daemon killed before it could remove its own); never anything else.
fn remove_dead_socket(socket: &Path) {
    let is_socket = fs::symlink_metadata(socket).is_ok_and(|metadata| metadata.file_type().is_socket());
    if is_socket && probe(socket).is_none() {
        let _ = fs::remove_file(socket);
    }
}
