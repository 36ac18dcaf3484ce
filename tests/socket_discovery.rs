//! How `--daemon` finds the daemon (`--socket`, `$CAVRA_RUNTIME_SOCKET`, the user's own daemon, the system socket)
//! and what it says when it cannot reach it: no such socket, permission denied (naming the group the user lacks),
//! or not answering, each with its own advice. The user's own daemon and the refusals are tried as a real other
//! user (`nobody`).

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt as _, chown};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cavra_runtime_client::SYSTEM_SOCKET;
use common::users::{self, Background, NOBODY};

const REQUEST: &str = r#"{"action_type":"read_file","target":".env"}"#;

/// `cavra-runtime --daemon args...` as `nobody` (or as this user), with only the environment given, the request
/// on standard input.
fn ask(as_nobody: bool, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut all = vec!["--daemon"];
    all.extend_from_slice(args);
    let mut command = if as_nobody {
        users::nobody(common::binary(), &all)
    } else {
        let mut command = Command::new(common::binary());
        command.args(&all);
        command
    };
    command
        .current_dir("/")
        .env_remove("CAVRA_RUNTIME_SOCKET")
        .env_remove("XDG_RUNTIME_DIR")
        .envs(env.iter().map(|(name, value)| (*name, *value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    use std::io::Write as _;
    let _ = child.stdin.take().unwrap().write_all(REQUEST.as_bytes());
    child.wait_with_output().unwrap()
}

fn decision(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn failure(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A runtime directory of `nobody`'s ($XDG_RUNTIME_DIR), inside a directory only root may change.
struct NobodysRuntimeDir {
    _parent: tempfile::TempDir,
    path: PathBuf,
}

impl NobodysRuntimeDir {
    fn new() -> Self {
        let parent = users::directory(0o755);
        let path = parent.path().join("xdg");
        fs::create_dir(&path).unwrap();
        chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
        Self { _parent: parent, path }
    }

    fn socket(&self) -> PathBuf {
        self.path.join("cavra/cavra-runtime.sock")
    }

    /// `nobody`'s own daemon, started as `nobody` with no --socket: it binds its default socket here.
    fn serve(&self) -> Background {
        let mut command = users::nobody(common::binary(), &["--serve", "--log-target", "stderr"]);
        command
            .current_dir("/")
            .env("XDG_RUNTIME_DIR", &self.path)
            .env_remove("CAVRA_RUNTIME_SOCKET")
            .env_remove("JOURNAL_STREAM");
        let daemon = Background::spawn(command);
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "nobody's daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }
}

#[test]
fn socket_then_environment_then_the_users_own_daemon_then_the_system_socket() {
    if !users::can_switch_users() {
        return;
    }
    let runtime = NobodysRuntimeDir::new();
    let xdg = [("XDG_RUNTIME_DIR", runtime.path.as_path())];
    let mut daemon = runtime.serve();

    // Nothing named: nobody's own daemon answers.
    let answer = decision(&ask(true, &[], &xdg));
    assert_eq!(answer["rule_id"], "filesystem.read.block");

    // The environment names another socket: that one is asked, the own daemon is not looked for.
    let elsewhere = Path::new("/nonexistent/env.sock");
    let message = failure(&ask(true, &[], &[xdg[0], ("CAVRA_RUNTIME_SOCKET", elsewhere)]));
    assert!(
        message.starts_with("cavra-runtime: cannot connect to cavra-runtime at /nonexistent/env.sock: no such socket"),
        "{message}"
    );

    // --socket wins over the environment.
    let own = runtime.socket();
    let answer = decision(&ask(
        true,
        &["--socket", own.to_str().unwrap()],
        &[xdg[0], ("CAVRA_RUNTIME_SOCKET", elsewhere)],
    ));
    assert_eq!(answer["rule_id"], "filesystem.read.block");

    // Once nobody listens on the own socket, the system socket is asked, and the message says where else it looked.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    assert!(own.exists(), "a killed daemon leaves its socket file");
    if Path::new(SYSTEM_SOCKET).exists() {
        common::skip::skip(&format!(
            "{SYSTEM_SOCKET} exists on this machine; the fallback's error differs"
        ));
        return;
    }
    let message = failure(&ask(true, &[], &xdg));
    assert_eq!(
        message,
        format!(
            "cavra-runtime: cannot connect to cavra-runtime at {SYSTEM_SOCKET}: no such socket; start the daemon \
             (`sudo systemctl start cavra-runtime.socket` for the system service, `cavra-runtime --lifecycle start \
             --socket {SYSTEM_SOCKET}` for your own), or name the socket it listens on with --socket or \
             $CAVRA_RUNTIME_SOCKET; no daemon of yours listens on {} either (and neither --socket nor \
             $CAVRA_RUNTIME_SOCKET names a socket)\n",
            own.display()
        )
    );
}

#[test]
fn no_such_socket_says_how_to_start_the_daemon_or_name_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    let message = failure(&ask(false, &["--socket", missing.to_str().unwrap()], &[]));
    assert!(
        message.starts_with(&format!(
            "cavra-runtime: cannot connect to cavra-runtime at {}: no such socket; start the daemon",
            missing.display()
        )),
        "{message}"
    );
    assert!(message.contains("systemctl start cavra-runtime.socket"), "{message}");
    assert!(message.contains("--socket or $CAVRA_RUNTIME_SOCKET"), "{message}");
}

#[test]
fn a_socket_nobody_listens_on_is_not_answering() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stale.sock");
    drop(UnixListener::bind(&socket).unwrap());
    let message = failure(&ask(false, &["--socket", socket.to_str().unwrap()], &[]));
    assert_eq!(
        message,
        format!(
            "cavra-runtime: cannot connect to cavra-runtime at {0}: not answering: the socket is there but no daemon \
             listens on it (it stopped or crashed); start it again (`sudo systemctl restart cavra-runtime.socket`, \
             or `cavra-runtime --lifecycle start --socket {0}`)\n",
            socket.display()
        )
    );
}

#[test]
fn a_daemon_that_accepts_and_never_answers_is_not_answering_within_the_client_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let held = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
    let started = Instant::now();
    let message = failure(&ask(
        false,
        &["--socket", socket.to_str().unwrap(), "--client-timeout", "300ms"],
        &[],
    ));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        message.starts_with(&format!(
            "cavra-runtime: no answer from cavra-runtime at {0} within 300ms: it is not answering (hung, or too \
             busy); check it with `cavra-runtime --lifecycle status --socket {0}`",
            socket.display()
        )),
        "{message}"
    );
    drop(held.join());
}

#[test]
fn permission_denied_names_the_group_the_user_is_not_in() {
    if !users::can_switch_users() {
        return;
    }
    // As the packaged service's: a directory and a socket of group root (for the test; `cavra` on a host),
    // which `nobody` is not in.
    let parent = users::directory(0o755);
    let dir = parent.path().join("cavra");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
    let socket = dir.join("cavra-runtime.sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o660)).unwrap();

    let advice = "ask an administrator to add you (`sudo usermod -aG root nobody`), then log in again\n";
    let message = failure(&ask(true, &["--socket", socket.to_str().unwrap()], &[]));
    assert_eq!(
        message,
        format!(
            "cavra-runtime: cannot connect to cavra-runtime at {}: permission denied (you are not in group root): \
             directory {} (owner root (uid 0), group root, mode 0750) admits members of group root, and you, nobody \
             (uid 65534), are not one; {advice}",
            socket.display(),
            dir.display()
        )
    );
    // The directory open to all, the socket to its group only.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let message = failure(&ask(true, &["--socket", socket.to_str().unwrap()], &[]));
    assert!(
        message.ends_with(&format!(
            "permission denied (you are not in group root): socket {} (owner root (uid 0), group root, mode 0660) \
             admits members of group root, and you, nobody (uid 65534), are not one; {advice}",
            socket.display()
        )),
        "{message}"
    );
    // Open to its owner only: no group would help.
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o600)).unwrap();
    let message = failure(&ask(true, &["--socket", socket.to_str().unwrap()], &[]));
    assert!(
        message.ends_with(&format!(
            "permission denied (only its owner may connect): socket {} (owner root (uid 0), group root, mode 0600) is \
             open to its owner only; ask root (uid 0) for access, or use a socket of your own\n",
            socket.display()
        )),
        "{message}"
    );
    assert!(
        !message.contains("start the daemon") && !message.contains("not answering"),
        "{message}"
    );
}
