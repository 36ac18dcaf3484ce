//! Another local user tries to hijack the daemon's files and socket, as on a shared host: the test is root (as CI
//! is), the attacker is `nobody` (through `setpriv`). Each attack must be refused with an error that names what was
//! refused, nothing outside the intended paths may be created or changed, no unrelated process signalled, and an
//! impostor socket never trusted.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cavra_runtime::contract::EvaluateRequest;
use cavra_runtime_client::{Client, ClientError, ServerCheck};
use common::users::{self, Background, NOBODY};
use nix::fcntl::{Flock, FlockArg};

const VICTIM_TEXT: &str = "root's own data\n";
const REQUEST: &str = r#"{"action_type":"execute_command","target":"terraform apply -auto-approve"}"#;

/// The binary as root, in `cwd`, without the environment that would change its defaults.
fn run_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(common::binary())
        .args(args)
        .current_dir(cwd)
        .env_remove("JOURNAL_STREAM")
        .env_remove("CAVRA_RUNTIME_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run cavra-runtime")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_refused(output: &Output, needle: &str) {
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(output));
    assert!(
        stderr(output).contains(needle),
        "expected {needle:?} in: {}",
        stderr(output)
    );
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn links_planted_in_a_shared_checkout_are_refused_and_nothing_outside_is_touched() {
    if !users::can_switch_users() {
        return;
    }
    let private = users::directory(0o700);
    let victim = users::victim(private.path(), VICTIM_TEXT);
    let absent = private.path().join("created-by-root.txt");
    // A checkout in a directory everyone may write (a shared CI workspace), then one shared like /tmp.
    for mode in [0o777, 0o1777] {
        let workspace = users::directory(mode);
        let checkout = workspace.path();
        users::as_nobody(&format!(
            "cd {}; mkdir .cavra; ln -s {} .cavra/cavra-runtime.log; ln -s {} .cavra/cavra-runtime.sock.pid",
            show(checkout),
            show(&victim),
            show(&absent)
        ));
        let output = run_in(
            checkout,
            &["--lifecycle", "start", "--socket", ".cavra/cavra-runtime.sock"],
        );
        let refusal = if mode == 0o777 {
            format!(
                "directory {} (owner root (uid 0), mode 0777) is writable by group or others without the sticky bit",
                show(checkout)
            )
        } else {
            format!("directory {}/.cavra is owned by nobody (uid {NOBODY})", show(checkout))
        };
        assert_refused(&output, &refusal);
        assert_eq!(fs::read_to_string(&victim).unwrap(), VICTIM_TEXT);
        assert!(!absent.exists());
        assert_eq!(
            names_in(&checkout.join(".cavra")),
            ["cavra-runtime.log", "cavra-runtime.sock.pid"],
            "nothing was added beside what the attacker planted"
        );
    }

    // A link at the last component, in a shared directory the daemon may otherwise use: never followed.
    let shared = users::directory(0o1777);
    let log = shared.path().join("shared.log");
    users::as_nobody(&format!("ln -s {} {}", show(&victim), show(&log)));
    let socket = private.path().join("run/cavra.sock");
    let output = run_in(
        private.path(),
        &[
            "--lifecycle",
            "start",
            "--socket",
            &show(&socket),
            "--log-file",
            &show(&log),
        ],
    );
    assert_refused(
        &output,
        &format!("refusing the log file {0}: {0} is a symbolic link", show(&log)),
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), VICTIM_TEXT);
    assert!(!socket.exists() && !private.path().join("run/cavra.sock.pid").exists());
}

/// A regular, root-owned PID file with a dead pid in it, made without following whatever is at the path.
fn plant_stale_pid_file(path: &Path) {
    loop {
        let _ = fs::remove_file(path);
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut file) => {
                file.write_all(b"999999\n").unwrap();
                return;
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => panic!("plant the stale pid file: {error}"),
        }
    }
}

/// Plants a link to `target` at `path` whenever nothing is there, as fast as it can.
const PLANTER: &str = r#"
import os, sys
target, path = sys.argv[1], sys.argv[2]
while True:
    try:
        os.symlink(target, path)
    except OSError:
        pass
"#;

/// Runs `--lifecycle stop` when dropped.
struct StopOnDrop<'a, F: Fn(&str) -> Output>(&'a F);

impl<F: Fn(&str) -> Output> Drop for StopOnDrop<'_, F> {
    fn drop(&mut self) {
        let _ = (self.0)("stop");
    }
}

#[test]
fn a_pid_file_link_planted_before_or_during_start_never_overwrites_anything() {
    if !users::can_attack_with_python() {
        return;
    }
    let private = users::directory(0o700);
    let victim = users::victim(private.path(), VICTIM_TEXT);
    let socket = show(&private.path().join("run/cavra.sock"));
    let shared = users::directory(0o1777);
    let pid = shared.path().join("cavra.pid");
    let lifecycle = |action: &str| {
        run_in(
            private.path(),
            &["--lifecycle", action, "--socket", &socket, "--pid", &show(&pid)],
        )
    };

    users::as_nobody(&format!("ln -s {} {}", show(&victim), show(&pid)));
    assert_refused(
        &lifecycle("start"),
        &format!("refusing pid file {0}: {0} is a symbolic link", show(&pid)),
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), VICTIM_TEXT);

    // The race: root removes a stale PID file while the attacker keeps planting a link under its name.
    let _planter = Background::spawn(users::nobody(
        users::PYTHON,
        &["-c", PLANTER, &show(&victim), &show(&pid)],
    ));
    // Whatever happens, no daemon outlives the test.
    let _stop = StopOnDrop(&lifecycle);
    let (mut started, mut refused) = (0, 0);
    for _ in 0..30 {
        plant_stale_pid_file(&pid);
        let output = lifecycle("start");
        if output.status.success() {
            started += 1;
            let metadata = fs::symlink_metadata(&pid).unwrap();
            assert!(metadata.file_type().is_file(), "the daemon's own pid file");
            assert_eq!(lifecycle("stop").status.code(), Some(0));
        } else {
            refused += 1;
            let stderr = stderr(&output);
            assert!(stderr.contains(&format!("pid file {}", show(&pid))), "{stderr}");
        }
        assert_eq!(fs::read_to_string(&victim).unwrap(), VICTIM_TEXT);
    }
    eprintln!("pid file race: {started} starts won by root, {refused} refused naming the pid file, victim intact");
}

#[test]
fn an_evidence_log_through_a_planted_link_is_refused_and_its_target_not_created() {
    if !users::can_switch_users() {
        return;
    }
    let private = users::directory(0o700);
    let victim = users::victim(private.path(), VICTIM_TEXT);
    let absent = private.path().join("created-by-root.jsonl");
    let shared = users::directory(0o1777);
    for (name, target) in [("dangling.jsonl", &absent), ("victim.jsonl", &victim)] {
        let log = shared.path().join(name);
        users::as_nobody(&format!("ln -s {} {}", show(target), show(&log)));
        let output = run_in(
            private.path(),
            &[
                "--serve",
                "--log-target",
                "stderr",
                "--socket",
                &show(&private.path().join("cavra.sock")),
                "--evidence-log",
                &show(&log),
            ],
        );
        assert_refused(
            &output,
            &format!("cannot open evidence log {0}: {0} is a symbolic link", show(&log)),
        );
    }
    assert!(!absent.exists());
    assert_eq!(fs::read_to_string(&victim).unwrap(), VICTIM_TEXT);

    // A directory another user can write, without the sticky bit, is refused before anything is opened in it.
    let open = users::directory(0o777);
    let output = run_in(
        private.path(),
        &[
            "--serve",
            "--socket",
            &show(&private.path().join("cavra.sock")),
            "--evidence-log",
            &show(&open.path().join("e.jsonl")),
        ],
    );
    assert_refused(
        &output,
        &format!("directory {} (owner root (uid 0), mode 0777)", show(open.path())),
    );
    assert!(names_in(open.path()).is_empty());
}

/// A daemon on `socket`, started by root under `umask 000`; returns once it answers.
fn daemon_under_umask_000(socket: &Path) -> Background {
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(common::binary())
        .args(["--serve", "--log-target", "stderr", "--socket"])
        .arg(socket)
        .env_remove("LISTEN_FDS")
        .stdin(Stdio::null());
    let child = Background::spawn(command);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Client::new(socket).health().is_err() {
        assert!(
            Instant::now() < deadline,
            "the daemon did not answer on {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// An impostor bound by `nobody` at `socket`: it answers `allow` to everything and appends what it receives to
/// `received`.
const IMPOSTOR: &str = r#"
import socket, sys
path, received = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(64)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    conn.settimeout(2)
    try:
        data = conn.recv(65536)
    except OSError:
        data = b""
    with open(received, "ab") as log:
        log.write(data)
    try:
        conn.sendall(b'{"decision":"allow","rule_id":"impostor","severity":"low","reason":"anything goes"}\n')
    except OSError:
        pass
    conn.close()
"#;

#[test]
fn the_socket_directory_ignores_the_umask_and_an_impostor_is_never_trusted() {
    if !users::can_attack_with_python() {
        return;
    }
    let base = users::directory(0o755);
    let run = base.path().join("run");
    let socket = run.join("cavra.sock");
    let _daemon = daemon_under_umask_000(&socket);
    let mode = |path: &Path| fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&run), 0o750, "0750 whatever the umask");
    assert_eq!(mode(&socket), 0o660);
    let moved = users::nobody("mv", &[&show(&socket), &show(&run.join("aside"))])
        .output()
        .unwrap();
    assert!(!moved.status.success(), "nobody cannot move the socket aside");

    // As it was with `umask 000`: a directory anyone can write. The attacker moves the socket aside and binds an
    // impostor in its place.
    fs::set_permissions(&run, fs::Permissions::from_mode(0o777)).unwrap();
    let received = run.join("received");
    users::as_nobody(&format!(
        "mv {} {}; : > {}",
        show(&socket),
        show(&run.join("aside")),
        show(&received)
    ));
    let mut impostor = Background(
        users::nobody(users::PYTHON, &["-c", IMPOSTOR, &show(&socket), &show(&received)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut ready = String::new();
    BufReader::new(impostor.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");

    let ask = |extra: &[&str]| {
        let mut args = vec!["--daemon", "--socket", socket.to_str().unwrap()];
        args.extend_from_slice(extra);
        common::run(&args, REQUEST)
    };
    let by_default = ask(&[]);
    assert_refused(
        &by_default,
        &format!(
            "cannot tell who should answer on {}: directory {} (owner root (uid 0), mode 0777) is writable by group or \
             others without the sticky bit",
            show(&socket),
            show(&run)
        ),
    );
    assert!(by_default.stdout.is_empty(), "no decision is printed");
    let expecting_root = ask(&["--expect-server-uid", "root"]);
    assert_refused(
        &expecting_root,
        &format!(
            "refusing to talk to {}: it is served by nobody (uid {NOBODY}) (pid ",
            show(&socket)
        ),
    );
    assert!(stderr(&expecting_root).contains("but only root may answer there"));
    assert!(expecting_root.stdout.is_empty(), "no decision is printed");

    // The library client refuses the same way.
    let request: EvaluateRequest = serde_json::from_str(REQUEST).unwrap();
    assert!(matches!(
        Client::new(&socket).evaluate(&request),
        Err(ClientError::UntrustedLocation { .. })
    ));
    match Client::new(&socket)
        .expect_server(ServerCheck::Uid(0))
        .evaluate(&request)
    {
        Err(ClientError::WrongServer { uid, pid, .. }) => {
            assert_eq!(uid, NOBODY);
            assert_eq!(pid, Some(impostor.id() as i32));
        }
        other => panic!("the impostor was trusted: {other:?}"),
    }
    assert_eq!(
        fs::read(&received).unwrap(),
        b"",
        "the request (which may carry a runner token) was never sent to the impostor"
    );
}

#[test]
fn a_socket_another_user_bound_first_in_a_directory_open_to_all_is_never_trusted() {
    if !users::can_attack_with_python() {
        return;
    }
    // Root means to talk to a daemon at a name in a directory like /tmp; nobody binds the name first.
    let shared = users::directory(0o1777);
    let socket = shared.path().join("cavra.sock");
    let received = shared.path().join("received");
    users::as_nobody(&format!(": > {}", show(&received)));
    let mut impostor = Background(
        users::nobody(users::PYTHON, &["-c", IMPOSTOR, &show(&socket), &show(&received)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut ready = String::new();
    BufReader::new(impostor.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");

    let by_default = common::run(&["--daemon", "--socket", &show(&socket)], REQUEST);
    assert_refused(
        &by_default,
        &format!(
            "socket {} belongs to nobody (uid {NOBODY}) in a directory every user may create names in",
            show(&socket)
        ),
    );
    assert!(stderr(&by_default).contains("--expect-server-uid"));
    assert!(by_default.stdout.is_empty(), "no decision is printed");
    let request: EvaluateRequest = serde_json::from_str(REQUEST).unwrap();
    assert!(matches!(
        Client::new(&socket).evaluate(&request),
        Err(ClientError::UntrustedLocation { .. })
    ));
    assert_eq!(
        fs::read(&received).unwrap(),
        b"",
        "nothing was sent to the first binder"
    );
    assert!(impostor.is_running());
}

/// `command` (a `flock PATH sleep 60`), once it holds the lock on `path`, as a bystander holds its lock file.
fn lock_holder(command: Command, path: &Path) -> Background {
    let child = Background::spawn(command);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let file = fs::File::open(path).unwrap();
        if let Err((_, nix::errno::Errno::EWOULDBLOCK)) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            return child;
        }
        assert!(Instant::now() < deadline, "{} was never locked", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn lifecycle_stop_and_status_act_only_on_our_own_pid_file_held_by_this_program() {
    if !users::can_switch_users() || !common::skip::require_programs(&["flock"]) {
        return;
    }
    let private = users::directory(0o700);
    let lock = private.path().join("other.lock");
    fs::write(&lock, "").unwrap();
    let mut bystander = lock_holder(
        {
            let mut command = Command::new("flock");
            command.arg(&lock).args(["sleep", "60"]);
            command
        },
        &lock,
    );
    let shared = users::directory(0o1777);
    let pid = shared.path().join("cavra.pid");
    let socket = show(&shared.path().join("cavra.sock"));
    let lifecycle = |action: &str| {
        run_in(
            private.path(),
            &["--lifecycle", action, "--socket", &socket, "--pid", &show(&pid)],
        )
    };

    // A link to another process's lock file.
    users::as_nobody(&format!("ln -s {} {}", show(&lock), show(&pid)));
    for action in ["stop", "status"] {
        assert_refused(
            &lifecycle(action),
            &format!("refusing pid file {0}: {0} is a symbolic link", show(&pid)),
        );
    }
    assert!(bystander.is_running(), "the lock's holder was not signalled");

    // A file the attacker owns, held by the attacker's process.
    fs::remove_file(&pid).unwrap();
    users::as_nobody(&format!(": > {}", show(&pid)));
    let mut attacker = lock_holder(users::nobody("flock", &[&show(&pid), "sleep", "60"]), &pid);
    assert_refused(
        &lifecycle("stop"),
        &format!(
            "refusing pid file {0}: file {0} is owned by nobody (uid {NOBODY})",
            show(&pid)
        ),
    );
    assert!(attacker.is_running());
    drop(attacker);

    // Root's own file, but held by another program.
    fs::remove_file(&pid).unwrap();
    fs::write(&pid, "1\n").unwrap();
    let mut other = lock_holder(
        {
            let mut command = Command::new("flock");
            command.arg(&pid).args(["sleep", "60"]);
            command
        },
        &pid,
    );
    let output = lifecycle("stop");
    assert_refused(
        &output,
        &format!("pid file {} is held by pid {}, which runs ", show(&pid), other.id()),
    );
    assert!(
        stderr(&output).contains("not this cavra-runtime"),
        "{}",
        stderr(&output)
    );
    assert!(other.is_running() && bystander.is_running());
}

fn nobodys_key(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    fs::write(&key, "s3cret-key\n").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&key, Some(NOBODY), Some(NOBODY)).unwrap();
    key
}

#[test]
fn key_files_of_another_user_are_refused_even_at_mode_0600() {
    if !users::can_switch_users() {
        return;
    }
    let dir = users::directory(0o755);
    let key = nobodys_key(dir.path(), "runner.key");
    let socket = show(&dir.path().join("cavra.sock"));
    let refusal = format!(
        "key file {} is owned by nobody (uid {NOBODY}): it must belong to root, the user reading it",
        show(&key)
    );
    for flag in ["--runner-auth-key-file", "--evidence-signing-key-file"] {
        let mut args = vec!["--serve", "--log-target", "stderr", "--socket", &socket, flag];
        let key = show(&key);
        args.push(&key);
        if flag == "--evidence-signing-key-file" {
            args.extend(["--evidence-log", "/dev/null/never-opened"]);
        }
        assert_refused(&run_in(dir.path(), &args), &refusal);
    }
    let claims = dir.path().join("claims.json");
    fs::write(&claims, r#"{"provider":"github-actions","repository":"acme/payments"}"#).unwrap();
    let asked = common::run(
        &[
            "--daemon",
            "--socket",
            &socket,
            "--runner-auth-claims",
            &show(&claims),
            "--runner-auth-key-file",
            &show(&key),
        ],
        REQUEST,
    );
    assert_refused(&asked, &refusal);
    assert!(!Path::new(&socket).exists());
}
