//! `--reload`: have the running daemon reload its policy and wait for the outcome, so that `systemctl reload`
//! (the packaged units' `ExecReload=`) fails when the new policy does not load. The daemon gets SIGHUP; its health
//! answer then reports each reload's outcome under a new generation number.
//!
//! Which process gets the signal: under systemd, `$MAINPID` (the manager's word), which must be the pid the daemon
//! answering on the socket reports. Without it, the pid the daemon reports, only if that process belongs to the
//! user the kernel says is serving the socket. Never the socket's peer pid: for an activated socket that is the
//! service manager, which SIGHUP would make reload its own configuration.

use std::io::{self, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;

use super::flags::{ClientArgs, SocketArgs, UnknownServerUser};
use crate::contract::ReloadOutcome;
use cavra_runtime_client::{Client, ClientError, find_socket};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    ServerUser(#[from] UnknownServerUser),
    #[error("$MAINPID {0:?} is not a process id")]
    MainPid(String),
    #[error("the daemon on the socket is pid {reported}, but $MAINPID is {main_pid}; not signalling either")]
    NotMainPid { reported: u32, main_pid: i32 },
    #[error(
        "the daemon on the socket says it is pid {pid}, which does not belong to its user (uid {uid}); not signalling it"
    )]
    ForeignPid { pid: u32, uid: u32 },
    #[error("cannot send SIGHUP to the daemon (pid {pid}): {source}")]
    Signal { pid: i32, source: nix::Error },
    #[error("the daemon (pid {pid}) did not report the reload's outcome within {timeout:?} (--reload-timeout)")]
    TimedOut { pid: i32, timeout: Duration },
    #[error("the daemon serving the socket changed (pid {before} -> {after}) while reloading; check it")]
    Replaced { before: i32, after: i32 },
    #[error("cannot write to standard output: {0}")]
    WriteOutput(io::Error),
}

/// The part of the health answer a reload is judged by.
#[derive(Debug, Deserialize)]
struct ReloadView {
    pid: u32,
    #[serde(default)]
    last_reload: Option<ReloadOutcome>,
    #[serde(default)]
    policy_digest: String,
}

const POLL: Duration = Duration::from_millis(50);

pub fn run(client: &ClientArgs, socket: &SocketArgs) -> Result<ExitCode, ReloadError> {
    let daemon = Client::new(&find_socket(socket.socket.as_deref()).path)
        .with_timeout(client.client_timeout)
        .expect_server(client.server_check()?);
    let (before, server) = daemon.health_as::<ReloadView>()?;
    let pid = daemon_pid(before.pid, server.uid)?;
    let generation = before.last_reload.as_ref().map_or(0, |outcome| outcome.generation);
    kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|source| ReloadError::Signal { pid, source })?;
    let deadline = Instant::now() + client.reload_timeout;
    let outcome = loop {
        let (now, _) = daemon.health_as::<ReloadView>()?;
        if i64::from(now.pid) != i64::from(pid) {
            return Err(ReloadError::Replaced {
                before: pid,
                after: now.pid as i32,
            });
        }
        if let Some(outcome) = now.last_reload.filter(|outcome| outcome.generation > generation) {
            break (outcome, now.policy_digest);
        }
        if Instant::now() >= deadline {
            return Err(ReloadError::TimedOut {
                pid,
                timeout: client.reload_timeout,
            });
        }
        std::thread::sleep(POLL);
    };
    let (outcome, digest) = outcome;
    match outcome.error {
        None => {
            writeln!(io::stdout(), "reloaded (pid {pid}): policy {digest} in force")
                .map_err(ReloadError::WriteOutput)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(error) => {
            eprintln!("cavra-runtime: reload failed (pid {pid}): {error}; the previous policy {digest} stays in force");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The pid to signal: `$MAINPID` when the service manager gives it (and it is the daemon on the socket), else the
/// pid the daemon reports, if that process belongs to the socket's server user.
fn daemon_pid(reported: u32, server_uid: u32) -> Result<i32, ReloadError> {
    if let Some(main_pid) = std::env::var_os("MAINPID").filter(|value| !value.is_empty()) {
        let text = main_pid.to_string_lossy().into_owned();
        let main_pid: i32 = text.parse().map_err(|_| ReloadError::MainPid(text))?;
        if i64::from(main_pid) != i64::from(reported) {
            return Err(ReloadError::NotMainPid { reported, main_pid });
        }
        return Ok(main_pid);
    }
    let owner = nix::sys::stat::stat(format!("/proc/{reported}").as_str()).map(|stat| stat.st_uid);
    match owner {
        Ok(uid) if uid == server_uid => Ok(reported as i32),
        _ => Err(ReloadError::ForeignPid {
            pid: reported,
            uid: server_uid,
        }),
    }
}
