//! Keys taken from the environment (`CAVRA_RUNNER_AUTH_HMAC_KEY`, `CAVRA_DAEMON_EVIDENCE_HMAC_KEY`, the reference's
//! variables): the daemon warns about each at start and points to `LoadCredential=`; it refuses to start when the
//! packaged settings file, which systemd turns into that environment, sets one and users other than root can read
//! it. The settings file is put in place in a private mount namespace (a tmpfs over /etc/default), so the host's
//! /etc is never touched.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use common::daemon::Daemon;

const RUNNER_KEY: &str = "runner-key-in-the-environment";
const EVIDENCE_KEY: &str = "evidence-key-in-the-environment";

/// The daemon's warning line about `variable`, if it logged one.
fn warning<'a>(log: &'a str, variable: &str) -> Option<&'a str> {
    log.lines().find(|line| {
        line.contains("WARN") && line.contains(&format!("the key in {variable} comes from the environment"))
    })
}

#[test]
fn keys_from_the_environment_are_warned_about_at_start_and_a_key_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("evidence.jsonl");
    let daemon = Daemon::start_with(
        &["--evidence-log", log.to_str().unwrap()],
        &[
            ("CAVRA_DAEMON_EVIDENCE_HMAC_KEY", EVIDENCE_KEY),
            ("CAVRA_RUNNER_AUTH_HMAC_KEY", RUNNER_KEY),
        ],
    );
    // The daemon's log is written a few milliseconds behind; the second warning comes last.
    let text = daemon.wait_log("the key in CAVRA_RUNNER_AUTH_HMAC_KEY comes from the environment");
    for (variable, credential, flag) in [
        (
            "CAVRA_DAEMON_EVIDENCE_HMAC_KEY",
            "evidence-signing-key",
            "--evidence-signing-key-file",
        ),
        (
            "CAVRA_RUNNER_AUTH_HMAC_KEY",
            "runner-auth-key",
            "--runner-auth-key-file",
        ),
    ] {
        let warning = warning(&text, variable).unwrap_or_else(|| panic!("no warning about {variable}:\n{text}"));
        assert!(
            warning.contains(&format!("/etc/credstore/{credential}"))
                && warning.contains("LoadCredential=")
                && warning.contains(flag),
            "{warning}"
        );
    }
    assert!(
        !text.contains(RUNNER_KEY) && !text.contains(EVIDENCE_KEY),
        "the keys themselves are not logged:\n{text}"
    );
    // The keys are used all the same: runners must authenticate (this request names no runner) and evidence is
    // signed.
    let answer = daemon
        .client()
        .evaluate_raw(&serde_json::from_str(r#"{"action_type":"read_file","target":".env"}"#).unwrap())
        .unwrap();
    assert_eq!(answer.rule_id, "runner_auth.invalid", "{answer:?}");
    let record = fs::read_to_string(&log).unwrap();
    assert!(record.contains(r#""signature":{"algorithm":"HMAC-SHA256""#), "{record}");

    // A key given as a file is not warned about, even with the variable set.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("evidence.key");
    fs::write(&key, "evidence-key-in-a-file").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let log = dir.path().join("evidence.jsonl");
    let quiet = Daemon::start_with(
        &[
            "--evidence-log",
            log.to_str().unwrap(),
            "--evidence-signing-key-file",
            key.to_str().unwrap(),
        ],
        &[("CAVRA_DAEMON_EVIDENCE_HMAC_KEY", "unused")],
    );
    // Any warning would come before the line that says the daemon serves.
    let text = quiet.wait_log("serving built-in packs");
    assert!(warning(&text, "CAVRA_DAEMON_EVIDENCE_HMAC_KEY").is_none(), "{text}");
}

/// Starts the daemon with `settings` as /etc/default/cavra-runtime, mode `mode`, and the runner key in its
/// environment (as systemd would set it from that file).
fn with_settings_file(settings: &str, mode: u32) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("settings");
    fs::write(&source, settings).unwrap();
    fs::set_permissions(&source, fs::Permissions::from_mode(mode)).unwrap();
    let script = format!(
        "mount -t tmpfs cavra-test /etc/default && cp -p {} /etc/default/cavra-runtime && exec \"$0\" \"$@\"",
        source.display()
    );
    Daemon::launch(
        dir,
        &["unshare", "--mount", "--propagation", "private", "sh", "-c", &script],
        &[],
        &[("CAVRA_RUNNER_AUTH_HMAC_KEY", RUNNER_KEY)],
    )
}

#[test]
fn a_key_set_in_a_settings_file_others_can_read_stops_the_daemon_at_start() {
    if !common::skip::require_root("a tmpfs over /etc/default in a private mount namespace needs root")
        || !common::skip::require_programs(&["unshare"])
    {
        return;
    }
    let settings = format!("# keys\nCAVRA_RUNNER_AUTH_HMAC_KEY={RUNNER_KEY}\n");
    let mut exposed = with_settings_file(&settings, 0o644);
    let status = exposed.wait_exit(Duration::from_secs(10));
    let log = exposed.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(
            "CAVRA_RUNNER_AUTH_HMAC_KEY is set in /etc/default/cavra-runtime (mode 0644), which users other than root \
             can read: the key in it is not secret. Move it to /etc/credstore/runner-auth-key"
        ),
        "{log}"
    );
    assert!(!log.contains(RUNNER_KEY), "{log}");

    // Root-only, as the packages ship it: the daemon starts, and warns.
    let private = with_settings_file(&settings, 0o600);
    private.wait_notification("READY=1");
    private.wait_log("the key in CAVRA_RUNNER_AUTH_HMAC_KEY comes from the environment");
    // Readable by everyone, but the key is not set there: nothing to refuse.
    let elsewhere = with_settings_file("#CAVRA_RUNNER_AUTH_HMAC_KEY=\nCAVRA_MAX_CONNECTIONS=64\n", 0o644);
    elsewhere.wait_notification("READY=1");
}
