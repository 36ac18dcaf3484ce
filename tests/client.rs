//! The client crate (`cavra_runtime_client`) against the real daemon: each daemon refusal arrives as a typed
//! error, never as a decision; overloaded is retried until there is room; an answer the daemon sends before it has
//! read the whole request is kept; the async client and the runner signer work end to end.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use cavra_runtime_client::runner_auth::RunnerSigner;
use cavra_runtime_client::{
    AsyncClient, Client, ClientError, Decision, EvaluateRequest, RefusalKind, Retry, RunnerIdentity,
};
use common::daemon::Daemon;

fn request(target: &str) -> EvaluateRequest {
    EvaluateRequest {
        action_type: "read_file".into(),
        target: target.into(),
        session_id: "client-test".into(),
        ..Default::default()
    }
}

#[test]
fn decisions_are_ok_and_a_block_is_a_decision() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let allowed = client.evaluate(&request("src/main.rs")).unwrap();
    assert_eq!(allowed.decision, Decision::Allow);
    let blocked = client.evaluate(&request(".env")).unwrap();
    assert_eq!(blocked.decision, Decision::Block);
    assert_eq!(blocked.rule_id, "filesystem.read.block");
    assert_eq!(client.health().unwrap().status, "ok");
}

#[test]
fn a_peer_the_daemon_does_not_admit_is_a_refusal_asked_once() {
    // Root is not special: a daemon that admits only uid 4242 refuses this test.
    let daemon = Daemon::start(&["--allow-uid", "4242"]);
    let error = daemon.client().evaluate(&request("src/main.rs")).unwrap_err();
    let refusal = error.refusal().unwrap_or_else(|| panic!("{error}"));
    assert_eq!(refusal.kind(), RefusalKind::PeerUnauthorized);
    assert!(!refusal.is_retryable());
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "cavra-runtime at {} refused the request (daemon.peer.unauthorized: this user may not use the daemon): \
             Peer uid ",
            daemon.socket.display()
        )),
        "{text}"
    );
    // The health probe is refused the same way.
    let error = daemon.client().health().unwrap_err();
    assert_eq!(
        error.refusal().map(|refusal| refusal.kind()),
        Some(RefusalKind::PeerUnauthorized),
        "{error}"
    );
}

#[test]
fn a_request_over_the_limit_is_refused_and_the_answer_survives_the_unwritten_rest() {
    // The daemon answers after the first bytes over the limit and closes: the client cannot write the rest of its
    // 4 MiB request, and still has the answer.
    let daemon = Daemon::start(&["--max-request-bytes", "4096", "--max-buffered-bytes", "65536"]);
    let error = daemon.client().evaluate(&request(&"a".repeat(4 << 20))).unwrap_err();
    let refusal = error.refusal().unwrap_or_else(|| panic!("{error}"));
    assert_eq!(refusal.kind(), RefusalKind::RequestTooLarge);
    assert!(refusal.reason().contains("4096-byte limit"), "{}", refusal.reason());
    // The raw answer is what the `--daemon` command line prints.
    let raw = daemon.client().evaluate_raw(&request(&"a".repeat(4 << 20))).unwrap();
    assert_eq!(raw.rule_id, "daemon.request.too_large");
    assert_eq!(raw.decision, Decision::Block);
}

#[test]
fn overloaded_is_retried_until_there_is_room() {
    let daemon = Daemon::start(&["--max-connections", "1"]);
    let held = daemon.client().stream().unwrap();
    // While the one connection is held, a client that asks once is refused...
    let error = daemon
        .client()
        .with_retry(Retry::none())
        .evaluate(&request("src/main.rs"))
        .unwrap_err();
    assert_eq!(
        error.refusal().map(|refusal| refusal.kind()),
        Some(RefusalKind::Overloaded),
        "{error}"
    );
    assert!(error.is_retryable());
    // ...and one that retries gets its decision once the connection is released.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    let started = Instant::now();
    let decision = daemon
        .client()
        .with_retry(Retry::new(40, Duration::from_millis(25)).with_max_delay(Duration::from_millis(100)))
        .evaluate(&request("src/main.rs"))
        .unwrap();
    assert_eq!(decision.decision, Decision::Allow);
    release.join().unwrap();
    // The daemon refuses at once: an answer only after the release means the refusals before it were retried.
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

fn identity() -> RunnerIdentity {
    RunnerIdentity {
        provider: "github-actions".into(),
        repository: "acme/payments".into(),
        ..Default::default()
    }
}

#[test]
fn runner_authentication_failure_is_a_refusal_and_a_signed_request_is_decided() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("runner.key");
    fs::write(&key, "runner-secret").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let daemon = Daemon::start(&["--runner-auth-key-file", key.to_str().unwrap()]);
    let command = EvaluateRequest {
        action_type: "execute_command".into(),
        target: "terraform plan".into(),
        ..Default::default()
    };
    let error = daemon.client().evaluate(&command).unwrap_err();
    let refusal = error.refusal().unwrap_or_else(|| panic!("{error}"));
    assert_eq!(refusal.kind(), RefusalKind::RunnerAuthInvalid);
    assert_eq!(
        refusal.reason(),
        "runner authentication failed: runner_auth is required"
    );
    let signer = RunnerSigner::new(b"runner-secret".to_vec(), String::new(), identity()).unwrap();
    let signed = daemon
        .client()
        .with_runner_signer(signer.clone())
        .evaluate(&command)
        .unwrap();
    assert_eq!(signed.decision, Decision::Allow);
    // Each attempt is signed afresh: the same client twice is not a replay.
    let client = daemon.client().with_runner_signer(signer);
    client.evaluate(&command).unwrap();
    client.evaluate(&command).unwrap();
    let wrong = RunnerSigner::new(b"wrong".to_vec(), String::new(), identity()).unwrap();
    let error = daemon
        .client()
        .with_runner_signer(wrong)
        .evaluate(&command)
        .unwrap_err();
    assert!(
        error.to_string().contains("runner_auth signature is invalid"),
        "{error}"
    );
}

#[test]
fn the_async_client_asks_the_daemon_and_gets_its_refusals_typed() {
    let daemon = Daemon::start(&["--max-request-bytes", "4096", "--max-buffered-bytes", "65536"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = AsyncClient::new(&daemon.socket).with_timeout(Duration::from_secs(10));
        let blocked = client.evaluate(&request(".env")).await.unwrap();
        assert_eq!(blocked.rule_id, "filesystem.read.block");
        let (health, server) = client.health_and_server().await.unwrap();
        assert_eq!(health.pid, daemon.pid() as u32);
        assert_eq!(server.pid, Some(daemon.pid()));
        let error = client.evaluate(&request(&"a".repeat(1 << 20))).await.unwrap_err();
        assert_eq!(
            error.refusal().map(|refusal| refusal.kind()),
            Some(RefusalKind::RequestTooLarge),
            "{error}"
        );
    });
}

#[test]
fn a_stopped_daemon_is_a_connection_error_not_a_decision() {
    let mut daemon = Daemon::start(&[]);
    let client: Client = daemon.client().with_retry(Retry::none());
    client.health().unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait_exit(Duration::from_secs(10));
    let error = client.evaluate(&request("src/main.rs")).unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
    assert!(error.is_retryable(), "nothing was sent");
}

/// The client crate's example program (`client/examples/ask.rs`), built beside this test by `cargo test`.
fn ask_example() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent()?.parent()?.join("examples/ask");
    common::skip::require_file(&path).then_some(path)
}

#[test]
fn the_example_program_asks_the_daemon_and_exits_with_the_decision() {
    let Some(example) = ask_example() else {
        return;
    };
    let daemon = Daemon::start(&[]);
    let ask = |env: Option<&std::path::Path>, args: &[&str]| {
        let mut command = std::process::Command::new(&example);
        command.args(args).env_remove("XDG_RUNTIME_DIR");
        match env {
            Some(socket) => command.env("CAVRA_RUNTIME_SOCKET", socket),
            None => command.env_remove("CAVRA_RUNTIME_SOCKET"),
        };
        command.output().unwrap()
    };
    let socket = daemon.socket.to_str().unwrap();
    let allowed = ask(None, &["--socket", socket, "terraform", "plan"]);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    assert!(String::from_utf8_lossy(&allowed.stdout).starts_with("allow: "));
    // Found through the environment, as --daemon finds it.
    let blocked = ask(Some(&daemon.socket), &["terraform", "apply", "-auto-approve"]);
    assert_eq!(
        blocked.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&blocked.stderr)
    );
    assert!(
        String::from_utf8_lossy(&blocked.stdout).starts_with("block: Matched blocked command policy: terraform apply"),
        "{}",
        String::from_utf8_lossy(&blocked.stdout)
    );
    let refused = Daemon::start(&["--allow-uid", "4242"]);
    let output = ask(None, &["--socket", refused.socket.to_str().unwrap(), "ls"]);
    assert_eq!(output.status.code(), Some(4), "a refusal, not a decision");
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("refused: daemon.peer.unauthorized"));
}
