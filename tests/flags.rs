//! Flags at the process boundary: the reference's secret-bearing flags are refused saying what to use instead, a
//! flag the mode does not read is an error naming both, and a YAML pack given to --policy points at --policy-dir.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs the binary with `args` and no input, and expects it to refuse with exit 1 and a message on stderr only.
fn refused(args: &[&str]) -> String {
    let output = common::run(args, "");
    assert_eq!(output.status.code(), Some(1), "{args:?}: {}", stderr(&output));
    assert!(output.stdout.is_empty(), "{args:?}");
    stderr(&output)
}

#[test]
fn the_reference_secret_flags_are_refused_naming_the_file_flag_credential_and_variable() {
    let secret = "s3cr3t-value";
    for (flag, file_flag, credential, variable) in [
        (
            "--evidence-signing-key",
            "--evidence-signing-key-file FILE",
            "systemd credential evidence-signing-key",
            "CAVRA_DAEMON_EVIDENCE_HMAC_KEY",
        ),
        (
            "--runner-auth-key",
            "--runner-auth-key-file FILE",
            "systemd credential runner-auth-key",
            "CAVRA_RUNNER_AUTH_HMAC_KEY",
        ),
        (
            "--runner-auth-oidc-token",
            "--runner-auth-oidc-token-file FILE",
            "systemd credential runner-oidc-token",
            "CAVRA_RUNNER_AUTH_OIDC_TOKEN",
        ),
    ] {
        for mode in [&["--serve"][..], &["--daemon"], &["--lifecycle", "start"], &[]] {
            let joined = format!("{flag}={secret}");
            for secret_args in [vec![flag, secret], vec![joined.as_str()]] {
                let args: Vec<&str> = mode.iter().copied().chain(secret_args).collect();
                let message = refused(&args);
                assert!(
                    message.starts_with(&format!(
                        "cavra-runtime: {flag} is not accepted: a secret on the command line"
                    )),
                    "{args:?}: {message}"
                );
                for needle in [file_flag, credential, variable, "visible to every local user"] {
                    assert!(message.contains(needle), "{args:?} lacks {needle:?}: {message}");
                }
                assert!(!message.contains(secret), "the secret is never echoed: {message}");
                assert!(!message.contains("similar argument"), "{message}");
            }
        }
    }
    // The key id is not where the key goes, and the message says so.
    assert!(refused(&["--evidence-signing-key", "k"]).contains("--evidence-signing-key-id only names the key"));
}

#[test]
fn a_flag_the_mode_does_not_read_is_refused_naming_the_flag_and_the_mode() {
    for (args, expected) in [
        (
            &["--daemon", "--max-connections", "5"][..],
            "--max-connections is not used by --daemon: only --serve, --check and --lifecycle start read it; leave it out here",
        ),
        (
            &["--lifecycle", "status", "--policy", "p.json"],
            "--policy is not used by --lifecycle status: only --serve, --hook, --check, --lifecycle start and the \
             one-shot mode (no mode flag) read it",
        ),
        (
            &["--lifecycle", "stop", "--user", "nobody"],
            "--user is not used by --lifecycle stop: only --lifecycle start reads it",
        ),
        (
            &["--socket", "/tmp/x.sock"],
            "--socket is not used by the one-shot mode (no mode flag)",
        ),
        (
            &["--verify-evidence", "--evidence-log", "e.jsonl", "--allow-uid", "0"],
            "--allow-uid is not used by --verify-evidence",
        ),
        (
            &["--serve", "--runner-auth-claims", "claims.json"],
            "--runner-auth-claims is not used by --serve: only --daemon reads it",
        ),
    ] {
        let message = refused(args);
        assert!(
            message.starts_with(&format!("cavra-runtime: {expected}")),
            "{args:?}: {message}"
        );
    }
}

#[test]
fn serve_with_user_is_refused_pointing_at_what_drops_privileges() {
    let message = refused(&["--serve", "--user", "nobody", "--socket", "/nonexistent/cavra.sock"]);
    assert_eq!(
        message,
        "cavra-runtime: --user is not used by --serve: --serve never changes its user or group. Start it as the user \
         it should run as (systemd User=, launchd UserName, `runuser -u USER --`), or use --lifecycle start --user \
         USER, which gives up root for good\n"
    );
}

#[test]
fn daemon_with_an_evidence_log_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("client-evidence.jsonl");
    let message = refused(&["--daemon", "--evidence-log", log.to_str().unwrap()]);
    assert!(
        message.starts_with(
            "cavra-runtime: --evidence-log is not used by --daemon: the daemon records every decision in its own \
             evidence log"
        ),
        "{message}"
    );
    assert!(message.contains("would fork the log's hash chain"), "{message}");
    assert!(!log.exists());
}

#[test]
fn flags_set_only_in_the_environment_are_not_refused() {
    // A service's environment file sets the daemon's flags; a client run beside it must not fail on them.
    let output = std::process::Command::new(common::binary())
        .args(["--daemon", "--socket", "/nonexistent/cavra.sock"])
        .env("CAVRA_MAX_CONNECTIONS", "5")
        .env("CAVRA_EVIDENCE_LOG", "/nonexistent/evidence.jsonl")
        .env("CAVRA_POLICY_DIR", "/nonexistent/policies")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(!message.contains("is not used by"), "{message}");
    assert!(message.contains("invalid request JSON in standard input"), "{message}");
}

#[test]
fn a_yaml_pack_given_to_policy_points_at_policy_dir() {
    let dir = tempfile::tempdir().unwrap();
    let pack_dir = dir.path().join("packs/acme-agents");
    fs::create_dir_all(&pack_dir).unwrap();
    let pack = pack_dir.join("policy.yaml");
    fs::write(
        &pack,
        "metadata:\n  id: acme-agents\n  title: Acme\ncommands:\n  block:\n    - terraform apply*\n",
    )
    .unwrap();
    let message = refused(&["--policy", pack.to_str().unwrap()]);
    assert_eq!(
        message,
        format!(
            "cavra-runtime: {} is a YAML policy pack, not compiled policy JSON: --policy takes the JSON `cavra policy \
             compile` writes. Give YAML packs with --policy-dir {} (packs are <dir>/<id>/policy.yaml); they are \
             compiled at start, with their inherits\n",
            pack.display(),
            dir.path().join("packs").display()
        )
    );
    // The directory it names works.
    let decision = common::decide(
        &[
            "--policy-dir",
            dir.path().join("packs").to_str().unwrap(),
            "--default-pack",
            "acme-agents",
        ],
        &serde_json::json!({"action_type": "execute_command", "target": "terraform apply"}),
    );
    assert_eq!(decision["decision"], "block");

    // A pack file elsewhere: where to put it.
    let loose = dir.path().join("acme.yml");
    fs::copy(&pack, &loose).unwrap();
    let message = refused(&[
        "--serve",
        "--policy",
        loose.to_str().unwrap(),
        "--socket",
        "/nonexistent/c.sock",
    ]);
    assert!(
        message.contains("Give YAML packs with --policy-dir DIR, with this pack at DIR/<its metadata.id>/policy.yaml"),
        "{message}"
    );
    // Broken JSON is still reported as JSON.
    let broken = dir.path().join("broken.json");
    fs::write(&broken, "{\"metadata\": ").unwrap();
    let message = refused(&["--policy", broken.to_str().unwrap()]);
    assert!(message.contains("EOF while parsing"), "{message}");
    assert!(!message.contains("YAML"), "{message}");
    assert!(Path::new(&broken).exists());
}
