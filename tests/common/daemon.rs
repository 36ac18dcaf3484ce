//! A real `cavra-runtime --serve` on a temporary socket. Readiness and reloads are observed through the
//! service-manager notification protocol: the test owns `NOTIFY_SOCKET` and waits for `READY=1`, as systemd does.

use std::fs::{self, File};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cavra_runtime_client::Client;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

pub struct Daemon {
    child: Child,
    pub dir: TempDir,
    pub socket: PathBuf,
    notify: UnixDatagram,
    log: PathBuf,
}

impl Daemon {
    /// Starts a daemon on `<tempdir>/cavra.sock` with extra `args`, and waits until it reports READY=1.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with(args, &[])
    }

    /// As [`Daemon::start`], with extra environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let daemon = Self::launch(tempfile::tempdir().expect("temp dir"), &[], args, env);
        daemon.wait_notification("READY=1");
        daemon
    }

    /// Starts a daemon without waiting for readiness (for start-up failures).
    pub fn spawn(dir: TempDir, args: &[&str]) -> Daemon {
        Self::launch(dir, &[], args, &[])
    }

    /// Runs `wrapper... cavra-runtime --serve --socket <dir>/cavra.sock args...`; the wrapper must exec the
    /// daemon (so its pid is the daemon's), e.g. `unshare -m sh -c '...; exec "$0" "$@"'`.
    pub fn launch(dir: TempDir, wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let socket = dir.path().join("cavra.sock");
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("notify timeout");
        let log = dir.path().join("daemon.log");
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(super::binary());
                command
            }
            None => Command::new(super::binary()),
        };
        let child = command
            .arg("--serve")
            .arg("--socket")
            .arg(&socket)
            .args(["--log-target", "stderr"])
            .args(args)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("JOURNAL_STREAM")
            .env_remove("CAVRA_RUNTIME_SOCKET")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn cavra-runtime --serve");
        Daemon {
            child,
            dir,
            socket,
            notify,
            log,
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.socket).with_timeout(Duration::from_secs(10))
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a notification datagram containing `needle` (all its lines are returned).
    pub fn wait_notification(&self, needle: &str) -> String {
        let mut buffer = [0u8; 4096];
        loop {
            match self.notify.recv(&mut buffer) {
                Ok(length) => {
                    let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
                    if message.lines().any(|line| line == needle || line.starts_with(needle)) {
                        return message;
                    }
                }
                // A signal to the test process (a child exiting) is no reason to stop waiting.
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => panic!("no {needle} notification ({error}); daemon log:\n{}", self.log()),
            }
        }
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("signal the daemon");
    }

    /// Waits for the daemon to exit (panics after `limit`).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "daemon did not exit; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon's log contains `needle` (the daemon writes its log in batches, a few milliseconds
    /// behind); the log then. Panics after ten seconds.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in the daemon log:\n{log}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
