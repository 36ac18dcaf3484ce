//! Steps taken as another local user, as an attacker on a shared host would: `nobody` (uid and gid 65534, no
//! supplementary groups), through `setpriv`. The test process itself is root, as CI is.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const NOBODY: u32 = 65534;

/// The system's Python, which `nobody` can run (a root-only install such as pyenv's is not reachable to it).
pub const PYTHON: &str = "/usr/bin/python3";

/// True when the test can act as root and as `nobody`; otherwise skips the calling test (a failure under CI).
pub fn can_switch_users() -> bool {
    super::skip::require_root("attacks as another user need root to switch to it")
        && super::skip::require_programs(&["setpriv"])
}

/// As [`can_switch_users`], with the system Python for attack programs.
pub fn can_attack_with_python() -> bool {
    can_switch_users() && super::skip::require_file(Path::new(PYTHON))
}

/// `program args...` as `nobody`.
pub fn nobody(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", program])
        .args(args)
        .stdin(Stdio::null());
    command
}

/// A group no account has (not in /etc/group): the daemon admits it with `--allow-group`, and [`member`] runs
/// processes in it, so tests need not create one on the host.
pub const MEMBER_GROUP: u32 = 47_321;
/// A second member of [`MEMBER_GROUP`], a bystander beside the attacker `nobody`.
pub const BYSTANDER: u32 = 65_533;

/// `program args...` as a non-root member of [`MEMBER_GROUP`], as a user added to group cavra is: uid and primary
/// gid `uid`, and MEMBER_GROUP as its one supplementary group.
pub fn member(uid: u32, program: &str, args: &[&str]) -> Command {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg(format!("--groups={MEMBER_GROUP}"))
        .args(["--", program])
        .args(args)
        .stdin(Stdio::null());
    command
}

/// Runs the shell `script` as `nobody` and returns what happened; panics with its output if it failed.
pub fn as_nobody(script: &str) -> Output {
    let output = nobody("sh", &["-ec", script]).output().expect("run setpriv");
    assert!(
        output.status.success(),
        "as nobody: {script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A fresh directory under the system's temporary directory with `mode` (root-owned; the temporary directory's
/// own sticky bit keeps other users from replacing it).
pub fn directory(mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(mode)).expect("chmod the temp dir");
    dir
}

/// A root-owned file only root can reach (in a 0700 directory), with `text`: what an attacker would like root to
/// overwrite.
pub fn victim(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("victim.txt");
    fs::write(&path, text).expect("write the victim");
    path
}

/// A process started for a test (an attacker's helper, a bystander), killed when the test ends, even by a panic.
pub struct Background(pub std::process::Child);

impl Background {
    /// Starts `command` with its output discarded, so it cannot hold the test harness's pipes.
    pub fn spawn(mut command: Command) -> Self {
        Self(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a background process"),
        )
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
