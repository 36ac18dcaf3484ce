//! Who may ask: peer allow-lists with two real uids, runner HMAC credentials (v2: bound to their request, fresh and
//! single-use; the reference's v1 only with a flag), OIDC tokens checked against a real RSA key (JWKS file and a
//! JWKS URL that fails first), and key files that others could read.

mod common;

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cavra_runtime::auth::runner::sign_v2;
use cavra_runtime::auth::{RunnerSigner, Secret};
use cavra_runtime::contract::{EvaluateRequest, RunnerAuthentication, RunnerIdentity};
use common::daemon::Daemon;
use common::oidc::{self, AUDIENCE, GITHUB_ISSUER, SigningKey};
use serde_json::{Value, json};

const REQUEST: &str = r#"{"session_id":"ci-1","action_type":"execute_command","target":"terraform plan"}"#;

fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn claims_file(dir: &Path, repository: &str) -> PathBuf {
    let path = dir.join(format!("claims-{}.json", repository.replace('/', "_")));
    let identity = json!({"provider": "github-actions", "repository": repository, "workflow": "release",
                          "run_id": "42", "ref": "refs/heads/main", "actor": "release-bot"});
    fs::write(&path, identity.to_string()).unwrap();
    path
}

/// Runs `--daemon` against `daemon` with extra args and environment, returning the parsed answer.
fn ask(daemon: &Daemon, args: &[&str], env: &[(&str, &str)], request: &str) -> Value {
    let mut command = Command::new(common::binary());
    command
        .args(["--daemon", "--socket", daemon.socket.to_str().unwrap()])
        .args(args)
        .env_remove("CAVRA_RUNNER_AUTH_HMAC_KEY")
        .env_remove("CAVRA_RUNNER_AUTH_OIDC_TOKEN")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(request.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn refused_because(answer: &Value) -> &str {
    assert_eq!(answer["decision"], "block", "{answer}");
    assert_eq!(answer["rule_id"], "runner_auth.invalid", "{answer}");
    assert_eq!(answer["severity"], "critical", "{answer}");
    answer["reason"]
        .as_str()
        .unwrap()
        .strip_prefix("runner authentication failed: ")
        .unwrap()
}

fn unprivileged(binary_args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("setpriv")
        .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--"])
        .arg(common::binary())
        .args(binary_args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn can_switch_users() -> bool {
    common::skip::require_root("the two-uid tests switch users") && common::skip::require_programs(&["setpriv"])
}

/// A daemon whose socket an unprivileged user can reach, so only the allow-lists decide.
fn open_daemon(args: &[&str]) -> Daemon {
    let mut all = vec!["--socket-mode", "0666"];
    all.extend_from_slice(args);
    let daemon = Daemon::start(&all);
    fs::set_permissions(daemon.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    daemon
}

#[test]
fn allow_uid_admits_root_and_refuses_another_real_user() {
    if !can_switch_users() {
        return;
    }
    let daemon = open_daemon(&["--allow-uid", "root"]);
    let socket = daemon.socket.to_str().unwrap();
    let root = common::run(&["--daemon", "--socket", socket], REQUEST);
    assert!(root.status.success());
    assert_eq!(
        serde_json::from_slice::<Value>(&root.stdout).unwrap()["decision"],
        "allow"
    );

    let nobody = unprivileged(&["--daemon", "--socket", socket], REQUEST);
    assert!(nobody.status.success(), "{}", String::from_utf8_lossy(&nobody.stderr));
    let answer: Value = serde_json::from_slice(&nobody.stdout).unwrap();
    let uid = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    assert_eq!(answer["decision"], "block");
    assert_eq!(answer["rule_id"], "daemon.peer.unauthorized");
    assert_eq!(answer["severity"], "critical");
    assert!(
        answer["reason"].as_str().unwrap().contains(&format!("uid {uid}")),
        "{answer}"
    );
    let log = daemon.wait_log("refused a peer");
    assert!(log.contains(&format!("peer_uid={uid}")), "{log}");
}

#[test]
fn allow_group_admits_its_members_and_root_is_not_special() {
    if !can_switch_users() {
        return;
    }
    let daemon = open_daemon(&["--allow-group", "nogroup"]);
    let socket = daemon.socket.to_str().unwrap();
    let nobody = unprivileged(&["--daemon", "--socket", socket], REQUEST);
    let answer: Value = serde_json::from_slice(&nobody.stdout).unwrap();
    assert_eq!(answer["decision"], "allow", "{answer}");
    let root: Value = serde_json::from_slice(&common::run(&["--daemon", "--socket", socket], REQUEST).stdout).unwrap();
    assert_eq!(root["rule_id"], "daemon.peer.unauthorized");
}

#[test]
fn without_allow_lists_the_socket_mode_decides() {
    if !can_switch_users() {
        return;
    }
    let daemon = Daemon::start(&[]);
    fs::set_permissions(daemon.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = unprivileged(&["--daemon", "--socket", daemon.socket.to_str().unwrap()], REQUEST);
    assert_eq!(nobody.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&nobody.stderr);
    assert!(
        stderr.contains(&format!(
            "permission denied (you are not in group root): socket {} (owner root (uid 0), group root, mode 0660)",
            daemon.socket.display()
        )),
        "{stderr}"
    );
}

#[test]
fn hmac_signed_runners_pass_and_every_kind_of_bad_auth_is_refused_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(dir.path(), "runner.key", "runner-secret\n", 0o600);
    let wrong = secret_file(dir.path(), "wrong.key", "other-secret", 0o600);
    let log = dir.path().join("evidence.jsonl");
    let daemon = Daemon::start(&[
        "--runner-auth-key-file",
        key.to_str().unwrap(),
        "--runner-auth-key-id",
        "ci-2026",
        "--evidence-log",
        log.to_str().unwrap(),
    ]);
    let claims = claims_file(dir.path(), "acme/payments");
    let signed = |key: &Path, key_id: &str| {
        ask(
            &daemon,
            &[
                "--runner-auth-claims",
                claims.to_str().unwrap(),
                "--runner-auth-key-file",
                key.to_str().unwrap(),
                "--runner-auth-key-id",
                key_id,
            ],
            &[],
            REQUEST,
        )
    };
    let answer = signed(&key, "ci-2026");
    assert_eq!(
        (answer["decision"].as_str(), answer["rule_id"].as_str()),
        (Some("allow"), Some("commands.allow"))
    );

    assert_eq!(
        refused_because(&signed(&wrong, "ci-2026")),
        "runner_auth signature is invalid"
    );
    assert_eq!(
        refused_because(&signed(&key, "old-key")),
        "runner_auth key_id mismatch: old-key"
    );
    assert_eq!(
        refused_because(&ask(&daemon, &[], &[], REQUEST)),
        "runner_auth is required"
    );

    let records: Vec<Value> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let refusals = records
        .iter()
        .filter(|record| record["response"]["rule_id"] == "runner_auth.invalid")
        .count();
    assert_eq!(refusals, 3, "every refusal is in the evidence log");
    let last = &records.last().unwrap()["response"];
    assert_eq!(last["reason"], "runner authentication failed: runner_auth is required");
    assert!(
        last.get("decision_id").is_none() && last.get("timestamp").is_none(),
        "the reference shape: {last}"
    );
    // The allowed request's credential is v2, and no signature is kept where it could be copied from.
    let allowed = &records[0]["request"]["runner_auth"];
    assert_eq!(allowed["algorithm"], "HMAC-SHA256");
    assert_eq!(allowed["signature"], "<redacted-hmac>", "{allowed}");
    assert_eq!(allowed["nonce"].as_str().unwrap().len(), 32, "{allowed}");
    assert!(allowed["issued_at"].as_i64().unwrap() > 1_700_000_000, "{allowed}");
    for record in &records {
        let signature = &record["request"]["runner_auth"]["signature"];
        assert!(signature.is_null() || signature == "<redacted-hmac>", "{record}");
    }
}

/// The reference's identity-only (v1) signature, written out by hand.
fn v1_signature(identity: &Value, key: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let field = |name: &str| identity[name].as_str().unwrap_or_default().to_owned();
    let payload = format!(
        "cavra.runner-auth.v1\nprovider={}\nrepository={}\nworkflow={}\nrun_id={}\nrun_attempt={}\nref={}\nsha={}\n\
         actor={}\njob={}\nrunner_name={}",
        field("provider"),
        field("repository"),
        field("workflow"),
        field("run_id"),
        field("run_attempt"),
        field("ref"),
        field("sha"),
        field("actor"),
        field("job"),
        field("runner_name")
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The approved release promotion of the examples: what an attacker wants allowed.
fn promotion() -> EvaluateRequest {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/typed-release-governance/approved-promotion.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn identity() -> RunnerIdentity {
    RunnerIdentity {
        provider: "github-actions".into(),
        repository: "acme/payments".into(),
        workflow: "release".into(),
        ..Default::default()
    }
}

fn hmac_daemon(dir: &Path, extra: &[&str]) -> (Daemon, PathBuf) {
    let key = secret_file(dir, "runner.key", "runner-secret", 0o600);
    let log = dir.join("evidence.jsonl");
    let mut args = vec![
        "--runner-auth-key-file".to_owned(),
        key.display().to_string(),
        "--evidence-log".to_owned(),
        log.display().to_string(),
    ];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Daemon::start(&args), log)
}

/// The answer as sent, a refusal (`runner_auth.invalid`) as much as a decision.
fn send(daemon: &Daemon, request: &EvaluateRequest) -> Value {
    serde_json::to_value(daemon.client().evaluate_raw(request).unwrap()).unwrap()
}

#[test]
fn a_credential_from_the_evidence_log_or_a_captured_request_does_not_authorise_another_request() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, log) = hmac_daemon(dir.path(), &[]);
    let signer = RunnerSigner::new(b"runner-secret".to_vec(), String::new(), identity()).unwrap();
    let harmless: EvaluateRequest = serde_json::from_str(REQUEST).unwrap();
    let mut genuine = harmless.clone();
    signer.sign(&mut genuine);
    assert_eq!(send(&daemon, &genuine)["decision"], "allow");

    // The attack of the issue: runner_auth copied from an uploaded evidence record onto a forged promotion.
    let record: Value = serde_json::from_str(fs::read_to_string(&log).unwrap().lines().next().unwrap()).unwrap();
    let mut forged = promotion();
    forged.runner_auth = Some(serde_json::from_value(record["request"]["runner_auth"].clone()).unwrap());
    assert_eq!(forged.runner_auth.as_ref().unwrap().signature, "<redacted-hmac>");
    assert_eq!(
        refused_because(&send(&daemon, &forged)),
        "runner_auth signature is invalid"
    );

    // A credential captured on its way to the daemon covers its own request only...
    let mut captured = harmless.clone();
    signer.sign(&mut captured);
    forged.runner_auth = captured.runner_auth.clone();
    assert_eq!(
        refused_because(&send(&daemon, &forged)),
        "runner_auth signature is invalid"
    );
    // ...and only once.
    assert_eq!(send(&daemon, &captured)["decision"], "allow");
    assert_eq!(
        refused_because(&send(&daemon, &captured)),
        "runner_auth was replayed: its nonce was already used within the 60 s window"
    );
    // The genuine promotion, signed for itself, is allowed.
    let mut promotion = promotion();
    signer.sign(&mut promotion);
    let answer = send(&daemon, &promotion);
    assert_eq!(
        (answer["decision"].as_str(), answer["rule_id"].as_str()),
        (Some("allow"), Some("release_governance.approval.approved"))
    );
}

#[test]
fn replays_within_the_window_are_refused_and_after_it_the_credential_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _) = hmac_daemon(dir.path(), &["--runner-auth-window", "2s"]);
    let key = Secret::new(b"runner-secret".to_vec());
    let signed_at = |issued_at: i64, nonce: &str| {
        let mut request: EvaluateRequest = serde_json::from_str(REQUEST).unwrap();
        request.runner_auth = Some(RunnerAuthentication {
            signature: sign_v2(&key, &identity(), &request, issued_at, nonce),
            identity: identity(),
            algorithm: "HMAC-SHA256".into(),
            issued_at,
            nonce: nonce.into(),
            ..Default::default()
        });
        request
    };
    let now = oidc::now() as i64;
    let fresh = signed_at(now, &"1f".repeat(16));
    assert_eq!(send(&daemon, &fresh)["decision"], "allow");
    assert_eq!(
        refused_because(&send(&daemon, &fresh)),
        "runner_auth was replayed: its nonce was already used within the 2 s window"
    );
    assert_eq!(
        refused_because(&send(&daemon, &signed_at(now - 3600, &"2f".repeat(16)))),
        "runner_auth is stale: issued 3600 s ago, beyond the 2 s window (--runner-auth-window)"
    );
    let ahead = refused_because(&send(&daemon, &signed_at(now + 3600, &"3f".repeat(16)))).to_owned();
    assert!(
        ahead.starts_with("runner_auth is issued 3600 s in the future"),
        "{ahead}"
    );
    // Once the window has passed, the replayed credential is refused as stale: the daemon has forgotten its nonce
    // and does not need it.
    while oidc::now() as i64 <= now + 2 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stale = refused_because(&send(&daemon, &fresh)).to_owned();
    assert!(stale.starts_with("runner_auth is stale: issued "), "{stale}");
}

#[test]
fn v1_signatures_are_refused_unless_the_daemon_is_told_to_accept_them_and_warns() {
    let identity = json!({"provider": "github-actions", "repository": "acme/payments"});
    let v1 = |identity: &Value| {
        let auth = json!({"identity": identity, "algorithm": "HMAC-SHA256",
                          "signature": v1_signature(identity, b"runner-secret")});
        let request = json!({"action_type": "execute_command", "target": "terraform plan", "runner_auth": auth});
        serde_json::from_value::<EvaluateRequest>(request).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let (strict, _) = hmac_daemon(dir.path(), &[]);
    assert_eq!(
        refused_because(&send(&strict, &v1(&identity))),
        "runner_auth is a v1 signature (identity only, replayable): sign v2 (request digest, issued_at, nonce), or \
         start the daemon with --runner-auth-accept-v1 while runners migrate"
    );
    assert!(
        !strict.log().contains("runner signatures are accepted"),
        "{}",
        strict.log()
    );

    let dir = tempfile::tempdir().unwrap();
    let (migrating, _) = hmac_daemon(dir.path(), &["--runner-auth-accept-v1"]);
    let warning = migrating.wait_log("identity-only (v1) runner signatures are accepted");
    assert!(warning.contains("WARN"), "{warning}");
    assert_eq!(send(&migrating, &v1(&identity))["decision"], "allow");
    assert_eq!(
        send(&migrating, &v1(&identity))["decision"],
        "allow",
        "v1 is replayable: that is why it is off"
    );
    // A v1 signature made for one identity does not cover another.
    let mut tampered = v1(&identity);
    tampered.runner_auth.as_mut().unwrap().identity.repository = "attacker/repo".into();
    assert_eq!(
        refused_because(&send(&migrating, &tampered)),
        "runner_auth signature is invalid"
    );
    // v2 works beside it.
    let signer = RunnerSigner::new(b"runner-secret".to_vec(), String::new(), self::identity()).unwrap();
    let mut request: EvaluateRequest = serde_json::from_str(REQUEST).unwrap();
    signer.sign(&mut request);
    assert_eq!(send(&migrating, &request)["decision"], "allow");
}

#[test]
fn a_runner_key_file_others_can_read_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = secret_file(dir.path(), "runner.key", "runner-secret", 0o644);
    let socket = dir.path().join("s.sock");
    let output = common::run(
        &[
            "--serve",
            "--log-target",
            "stderr",
            "--socket",
            socket.to_str().unwrap(),
            "--runner-auth-key-file",
            key.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "cavra-runtime: key file {0} has mode 0644: it must not be readable by group or others (chmod 600 {0})\n",
            key.display()
        )
    );
}

struct OidcSetup {
    dir: tempfile::TempDir,
    key: SigningKey,
    other: SigningKey,
    claims: PathBuf,
}

/// Keys and claims for the OIDC tests; `None` (skipped loudly, or failing under CI) without the openssl tool.
fn oidc_setup() -> Option<OidcSetup> {
    if !common::skip::require_runnable("openssl", &["version"]) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(dir.path(), "test-key");
    let other = SigningKey::generate(dir.path(), "rogue-key");
    let claims = claims_file(dir.path(), "acme/payments");
    Some(OidcSetup {
        dir,
        key,
        other,
        claims,
    })
}

fn oidc_daemon_args<'a>(jwks: &'a str, flag: &'a str) -> Vec<&'a str> {
    vec![
        "--runner-oidc-issuer",
        GITHUB_ISSUER,
        "--runner-oidc-audience",
        AUDIENCE,
        flag,
        jwks,
    ]
}

fn with_token(daemon: &Daemon, setup: &OidcSetup, token: &str) -> Value {
    let file = secret_file(setup.dir.path(), "token.jwt", token, 0o600);
    ask(
        daemon,
        &[
            "--runner-auth-claims",
            setup.claims.to_str().unwrap(),
            "--runner-auth-oidc-token-file",
            file.to_str().unwrap(),
        ],
        &[],
        REQUEST,
    )
}

#[test]
fn oidc_tokens_are_checked_signature_first_then_every_claim() {
    let Some(setup) = oidc_setup() else { return };
    let jwks = oidc::write_jwks(setup.dir.path(), &[&setup.key]);
    let daemon = Daemon::start(&oidc_daemon_args(jwks.to_str().unwrap(), "--runner-oidc-jwks"));
    let now = oidc::now();
    let token = |change: Value| {
        let mut claims = oidc::claims("acme/payments");
        claims
            .as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        setup.key.token("test-key", &claims)
    };

    let without = |claim: &str| {
        let mut claims = oidc::claims("acme/payments");
        claims.as_object_mut().unwrap().remove(claim);
        setup.key.token("test-key", &claims)
    };

    let valid = with_token(&daemon, &setup, &token(json!({})));
    assert_eq!(valid["decision"], "allow", "{valid}");
    let cases = [
        (
            without("exp"),
            "runner OIDC token requires a numeric exp claim".to_owned(),
        ),
        (
            token(json!({"exp": (now + 3600).to_string()})),
            "runner OIDC claim exp must be a number of seconds".to_owned(),
        ),
        (
            token(json!({"iat": now + 3600})),
            "runner OIDC token is issued in the future (iat)".to_owned(),
        ),
        // The runner states a ref (claims_file): a token without one cannot confirm it.
        (
            without("ref"),
            "runner OIDC token has no ref claim to confirm the runner identity's ref".to_owned(),
        ),
        (
            token(json!({"ref": "refs/heads/attacker"})),
            "runner OIDC claim ref mismatch".to_owned(),
        ),
        // Past the default 60 s leeway either way.
        (
            token(json!({"exp": now - 70})),
            "runner OIDC token is expired".to_owned(),
        ),
        (
            token(json!({"nbf": now + 600})),
            "runner OIDC token is not valid yet".to_owned(),
        ),
        (
            token(json!({"aud": "someone-else"})),
            "runner OIDC audience mismatch".to_owned(),
        ),
        (
            token(json!({"iss": "https://evil.example"})),
            "runner OIDC issuer mismatch: \"https://evil.example\"".to_owned(),
        ),
        (
            token(json!({"repository": "attacker/repo"})),
            "runner OIDC claim repository mismatch".to_owned(),
        ),
        (
            setup.other.token("test-key", &oidc::claims("acme/payments")),
            "runner OIDC signature is invalid".to_owned(),
        ),
        (
            setup.other.token("rogue-key", &oidc::claims("acme/payments")),
            "runner OIDC signing key \"rogue-key\" was not found in JWKS".to_owned(),
        ),
    ];
    for (token, reason) in cases {
        assert_eq!(refused_because(&with_token(&daemon, &setup, &token)), reason);
    }
    // A forged token that claims everything right is refused on its signature, before any claim counts.
    let forged = setup.other.token("test-key", &json!({"iss": "https://evil.example"}));
    assert_eq!(
        refused_because(&with_token(&daemon, &setup, &forged)),
        "runner OIDC signature is invalid"
    );
}

#[test]
fn oidc_leeway_is_configurable_and_a_job_github_tokens_cannot_confirm_is_refused() {
    let Some(setup) = oidc_setup() else { return };
    let jwks = oidc::write_jwks(setup.dir.path(), &[&setup.key]);
    let mut args = oidc_daemon_args(jwks.to_str().unwrap(), "--runner-oidc-jwks");
    args.extend(["--runner-oidc-leeway", "0s"]);
    let daemon = Daemon::start(&args);
    let mut claims = oidc::claims("acme/payments");
    claims["exp"] = json!(oidc::now() - 5);
    let expired = setup.key.token("test-key", &claims);
    assert_eq!(
        refused_because(&with_token(&daemon, &setup, &expired)),
        "runner OIDC token is expired"
    );
    // GitHub's tokens name no job: a runner that states one is refused rather than recorded as verified.
    let with_job = setup.dir.path().join("claims-with-job.json");
    let mut identity: Value = serde_json::from_str(&fs::read_to_string(&setup.claims).unwrap()).unwrap();
    identity["job"] = json!("promote");
    fs::write(&with_job, identity.to_string()).unwrap();
    let token = secret_file(
        setup.dir.path(),
        "token.jwt",
        &setup.key.token("test-key", &oidc::claims("acme/payments")),
        0o600,
    );
    let answer = ask(
        &daemon,
        &[
            "--runner-auth-claims",
            with_job.to_str().unwrap(),
            "--runner-auth-oidc-token-file",
            token.to_str().unwrap(),
        ],
        &[],
        REQUEST,
    );
    assert_eq!(
        refused_because(&answer),
        "runner OIDC tokens from this issuer carry nothing that confirms the runner identity's job; leave it out"
    );
}

#[test]
fn jwks_keys_published_for_encryption_or_another_algorithm_do_not_verify_tokens() {
    let Some(setup) = oidc_setup() else { return };
    let mut jwk = setup.key.jwk.clone();
    jwk["use"] = json!("enc");
    let jwks = setup.dir.path().join("jwks-enc.json");
    fs::write(&jwks, json!({"keys": [jwk]}).to_string()).unwrap();
    let daemon = Daemon::start(&oidc_daemon_args(jwks.to_str().unwrap(), "--runner-oidc-jwks"));
    let token = setup.key.token("test-key", &oidc::claims("acme/payments"));
    assert_eq!(
        refused_because(&with_token(&daemon, &setup, &token)),
        "runner OIDC signing key \"test-key\" was not found in JWKS"
    );
}

#[test]
fn oidc_tokens_come_from_the_environment_too_and_are_redacted_in_evidence() {
    let Some(setup) = oidc_setup() else { return };
    let jwks = oidc::write_jwks(setup.dir.path(), &[&setup.key]);
    let log = setup.dir.path().join("evidence.jsonl");
    let mut args = oidc_daemon_args(jwks.to_str().unwrap(), "--runner-oidc-jwks");
    args.extend(["--evidence-log", log.to_str().unwrap()]);
    let daemon = Daemon::start(&args);
    let token = setup.key.token("test-key", &oidc::claims("acme/payments"));
    let answer = ask(
        &daemon,
        &["--runner-auth-claims", setup.claims.to_str().unwrap()],
        &[("CAVRA_RUNNER_AUTH_OIDC_TOKEN", &token)],
        REQUEST,
    );
    assert_eq!(answer["decision"], "allow", "{answer}");
    let text = fs::read_to_string(&log).unwrap();
    assert!(!text.contains(&token), "the token is not stored");
    let record: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(record["request"]["runner_auth"]["signature"], "<redacted-oidc-jwt>");
    assert_eq!(record["request"]["runner_auth"]["key_id"], "test-key");
}

/// Serves `jwks` over HTTP on loopback, answering 500 to the first `failures` requests.
fn jwks_server(jwks: Value, failures: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/.well-known/jwks", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let attempt = count.fetch_add(1, Ordering::SeqCst);
            let (status, body) = if attempt < failures {
                ("500 Internal Server Error", "{}".to_owned())
            } else {
                ("200 OK", jwks.to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    (url, served)
}

#[test]
fn a_jwks_url_that_fails_is_retried_on_later_requests_until_it_recovers() {
    let Some(setup) = oidc_setup() else { return };
    let (url, served) = jwks_server(oidc::jwks(&[&setup.key]), 2);
    let daemon = Daemon::start(&oidc_daemon_args(&url, "--runner-oidc-jwks-url"));
    daemon.wait_log("cannot fetch the runner OIDC key set yet");
    let token = setup.key.token("test-key", &oidc::claims("acme/payments"));

    let first = with_token(&daemon, &setup, &token);
    assert_eq!(
        refused_because(&first),
        "runner OIDC key set is unavailable: JWKS URL returned 500 Internal Server Error"
    );
    // Back-off spaces the retries; a request after it fetches again and succeeds. Bounded: the back-off after two
    // failures is 2 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = with_token(&daemon, &setup, &token);
        if answer["decision"] == "allow" {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {answer}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        served.load(Ordering::SeqCst),
        3,
        "start-up, one retry that failed, one that worked"
    );
}

#[test]
fn a_partial_oidc_setup_is_an_error_at_start_before_any_socket_exists() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/cavra.sock");
    let output = common::run(
        &[
            "--serve",
            "--log-target",
            "stderr",
            "--socket",
            socket.to_str().unwrap(),
            "--runner-oidc-issuer",
            GITHUB_ISSUER,
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing --runner-oidc-audience"));
    assert!(
        !socket.parent().unwrap().exists(),
        "nothing was created for a daemon that could not start"
    );
}

/// Runs `openssl` with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A private CA and a certificate it issued for 127.0.0.1: `ca.pem`, `server.pem`, `server.key` in `dir`.
fn private_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=cavra test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

/// A real HTTPS server (`openssl s_server -WWW`) serving the files of `dir` on 127.0.0.1; killed on drop.
struct HttpsServer {
    child: std::process::Child,
    url: String,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn https_server(dir: &Path, file: &str) -> HttpsServer {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-WWW",
            "-cert",
            "server.pem",
            "-key",
            "server.key",
            "-accept",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    HttpsServer {
        child,
        url: format!("https://127.0.0.1:{port}/{file}"),
    }
}

#[test]
fn a_jwks_url_over_https_is_trusted_through_the_system_ca_store() {
    let Some(setup) = oidc_setup() else { return };
    let dir = setup.dir.path();
    private_ca(dir);
    oidc::write_jwks(dir, &[&setup.key]);
    let server = https_server(dir, "jwks.json");
    let token = setup.key.token("test-key", &oidc::claims("acme/payments"));

    // The private CA is in the store the system's TLS clients read (SSL_CERT_FILE, as OpenSSL honours it).
    let trusted = Daemon::start_with(
        &oidc_daemon_args(&server.url, "--runner-oidc-jwks-url"),
        &[("SSL_CERT_FILE", dir.join("ca.pem").to_str().unwrap())],
    );
    trusted.wait_log("runner OIDC key set loaded");
    assert_eq!(with_token(&trusted, &setup, &token)["decision"], "allow");

    // Without it, the certificate is from an unknown issuer: no key set, runners refused.
    let empty = dir.join("empty-store");
    fs::create_dir(&empty).unwrap();
    let untrusted = Daemon::start_with(
        &oidc_daemon_args(&server.url, "--runner-oidc-jwks-url"),
        &[("SSL_CERT_DIR", empty.to_str().unwrap())],
    );
    let log = untrusted.wait_log("cannot fetch the runner OIDC key set yet");
    assert!(log.contains("UnknownIssuer") || log.contains("unknown issuer"), "{log}");
    assert_ne!(with_token(&untrusted, &setup, &token)["decision"], "allow");
}

#[test]
fn a_jwks_url_that_cannot_be_fetched_makes_health_failing_until_a_key_set_loads() {
    let Some(setup) = oidc_setup() else { return };
    let (url, _) = jwks_server(oidc::jwks(&[&setup.key]), 1);
    let daemon = Daemon::start(&oidc_daemon_args(&url, "--runner-oidc-jwks-url"));
    let (health, _) = daemon.client().health_as::<Value>().unwrap();
    assert_eq!(health["status"], "failing", "{health}");
    assert_eq!(health["reasons"][0]["code"], "jwks.stale", "{health}");
    let message = health["reasons"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("JWKS URL returned 500 Internal Server Error")
            && message.contains("every runner OIDC token is refused"),
        "{message}"
    );
    daemon.wait_notification("STATUS=failing: jwks.stale: ");

    // After the back-off, a runner's request fetches the key set again; it loads, and health clears.
    let token = setup.key.token("test-key", &oidc::claims("acme/payments"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while with_token(&daemon, &setup, &token)["decision"] != "allow" {
        assert!(Instant::now() < deadline, "the key set never loaded");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (health, _) = daemon.client().health_as::<Value>().unwrap();
    assert_eq!(
        (&health["status"], &health["reasons"]),
        (&json!("ok"), &json!([])),
        "{health}"
    );
    daemon.wait_notification("STATUS=serving ");
}
