//! Fuzzing harnesses for cavra-runtime.
//!
//! One function per cargo-fuzz target (`fuzz/fuzz_targets/<name>.rs` only calls it). The same file is compiled into
//! `tests/fuzz_regressions.rs` with `#[path]`, so a saved input replays through exactly the code the fuzzer ran.
//! It uses only the public API and the main crate's own dependencies (serde_json, tokio, nix).
//!
//! Errors for bad input are expected; what a harness rejects (with a panic, which libFuzzer reports as a crash) is a
//! panic inside cavra-runtime, a hang, or a broken invariant: an answer line that is not JSON, answers out of order
//! or missing, a pattern that does not block the literal it names, an evidence record the verifier rejects.

use std::fs;
use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use cavra_runtime::auth::oidc::{JwksSource, OidcVerifier};
use cavra_runtime::auth::runner::{HMAC_ALGORITHM, OIDC_ALGORITHM, reject_line_breaks, sign_v2};
use cavra_runtime::auth::{HmacRunners, RunnerAuthError, RunnerAuthenticator, Secret};
use cavra_runtime::contract::{Decision, DecisionResponse, EvaluateRequest, HEALTH_ACTION, Health, STREAM_PROTOCOL};
use cavra_runtime::engine::command::shell;
use cavra_runtime::engine::{self, Context, PathCase, file::normalize_path};
use cavra_runtime::evidence::{
    EvidenceConfig, EvidenceError, EvidenceLog, SigningKey, SyncMode, VerifyingKeys, verify_file,
};
use cavra_runtime::policy::{Pattern, PolicyConfig, PolicySet, PolicySource};
use cavra_runtime::server::{self, Limits, Service};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::runtime::Runtime;

/// The request cap of the in-process server: small, so that inputs of a few KiB reach the too-large paths.
pub const MAX_REQUEST_BYTES: usize = 2048;

/// A line starting with this opens the next pack of a `policy_yaml` input; the rest of the line names its directory.
pub const PACK_HEADER: &[u8] = b"#> ";

/// The evidence fixtures' key (testdata/evidence/README.md), so signed seed streams verify all the way through.
const EVIDENCE_KEY: &[u8] = b"fixture-evidence-key";
const EVIDENCE_KEY_ID: &str = "fixture-2026";

/// Longer than this for one exchange with the in-process server is a hang.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(15);

/// At most this many pattern checks per loaded policy input, so a huge list cannot make one input slow.
const PATTERN_CHECKS: usize = 256;

// ---------------------------------------------------------------------------------------------------------------
// request_decode

/// Decodes a request as the server does, then runs everything a decoded request reaches without a socket: the
/// engine against the built-in packs (with and without the MCP trust registry), runner authentication, and an
/// evidence record that must verify.
pub fn request_decode(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<EvaluateRequest>(data) else {
        return;
    };
    if !record_has_float(&request) {
        // Floats parse to the nearest double only approximately unless serde_json's float_roundtrip is on, so a
        // request carrying one may legitimately differ after a round trip.
        let encoded = serde_json::to_vec(&request).expect("a decoded request serialises");
        let again: EvaluateRequest = serde_json::from_slice(&encoded).expect("a serialised request decodes again");
        assert_eq!(
            again,
            request,
            "request changed in a JSON round trip: {}",
            String::from_utf8_lossy(&encoded)
        );
    }
    let context = decode_context();
    if let Err(invalid) = engine::evaluate(&context.built_in, &request, &Context::default()) {
        // Only a file target with a control character or a bad workspace root is refused undecided.
        let control = request.target.chars().any(char::is_control)
            && matches!(request.action_type.as_str(), "read_file" | "write_file");
        assert!(
            control || (invalid.field == "workspace_root" && !request.workspace_root.is_empty()),
            "refused as invalid: {invalid} ({request:?})"
        );
        return;
    }
    for policies in [&context.built_in, &context.with_registry] {
        let response = decide(policies, &request);
        check_decision(policies, &request, &response);
    }
    check_runner_auth(&context.runners, &request);
    check_evidence_record(context, &request);
}

struct DecodeContext {
    built_in: PolicySet,
    with_registry: PolicySet,
    runners: RunnerAuthenticator,
    runtime: &'static Runtime,
    scratch: PathBuf,
    /// One evidence log at a time: the regression test may call in from several threads.
    evidence: Mutex<()>,
}

fn decode_context() -> &'static DecodeContext {
    static CONTEXT: OnceLock<DecodeContext> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        let scratch = scratch("request_decode");
        let registry = scratch.join("mcp-trust.json");
        fs::write(&registry, include_str!("../../testdata/registry/mcp-trust.json")).expect("write the registry");
        let with_registry = PolicySet::load(&PolicyConfig {
            registry: Some(registry),
            ..PolicyConfig::default()
        })
        .expect("built-in packs load with the fixture registry");
        // OIDC without a loadable key set: every token must fail cleanly, never panic or wait for a fetch.
        let oidc = OidcVerifier::new(
            "https://token.actions.githubusercontent.com".to_owned(),
            "cavra-fuzz".to_owned(),
            JwksSource::File(scratch.join("no-such-jwks.json")),
        );
        let hmac = HmacRunners {
            key: runner_key(),
            key_id: String::new(),
            accept_v1: false,
            window: Duration::from_secs(60),
        };
        let runners = RunnerAuthenticator::new(Some(hmac), Some(oidc)).expect("an authenticator with HMAC and OIDC");
        DecodeContext {
            built_in: built_in(),
            with_registry,
            runners,
            runtime: runtime(),
            scratch,
            evidence: Mutex::new(()),
        }
    })
}

fn runner_key() -> Secret {
    Secret::new(b"fuzz-runner-key".to_vec())
}

fn evidence_key() -> SigningKey {
    SigningKey::new(EVIDENCE_KEY.to_vec(), EVIDENCE_KEY_ID)
}

fn record_has_float(request: &EvaluateRequest) -> bool {
    fn has_float(value: &Value) -> bool {
        match value {
            Value::Number(number) => number.is_f64(),
            Value::Array(items) => items.iter().any(has_float),
            Value::Object(map) => map.values().any(has_float),
            _ => false,
        }
    }
    request.record.as_ref().is_some_and(|map| map.values().any(has_float))
}

/// What every decision must satisfy, whatever the request.
fn check_decision(policies: &PolicySet, request: &EvaluateRequest, response: &DecisionResponse) {
    let or = |value: &str, fallback: &str| if value.is_empty() { fallback } else { value }.to_owned();
    let pack = or(&request.policy_pack, policies.default_pack());
    assert_eq!(response.session_id, or(&request.session_id, "local"));
    assert_eq!(response.agent_id, or(&request.agent_id, "unknown-agent"));
    assert_eq!(response.actor, or(&request.actor, "ai-agent"));
    assert_eq!(response.policy_pack, pack);
    assert_eq!(response.policy_id, pack);
    if policies.pack(&pack).is_none() {
        assert_eq!(
            (&response.decision, response.rule_id.as_str()),
            (&Decision::Block, "policy.pack.unknown"),
            "a request for an unloaded pack must be refused"
        );
    }
    check_decision_shape(response);
    let encoded = serde_json::to_vec(response).expect("a decision serialises");
    let again: DecisionResponse = serde_json::from_slice(&encoded).expect("a serialised decision decodes");
    assert_eq!(&again, response, "decision changed in a JSON round trip");
}

/// Checks that hold for any decision, including one read back from the socket.
fn check_decision_shape(response: &DecisionResponse) {
    assert!(response.decision_id.starts_with("dec_"), "{response:?}");
    assert!(response.correlation_id.starts_with("corr_"), "{response:?}");
    assert!(
        !response.timestamp.is_empty() && !response.rule_id.is_empty(),
        "{response:?}"
    );
    match &response.decision {
        Decision::Allow => assert!(
            response.approver_group.is_empty(),
            "an allow names no approver: {response:?}"
        ),
        Decision::RequireApproval => assert!(
            !response.approver_group.is_empty(),
            "a required approval names its approver group: {response:?}"
        ),
        Decision::Block => {}
        other => panic!("the daemon decided {other}, which it never does: {response:?}"),
    }
}

fn check_runner_auth(runners: &RunnerAuthenticator, request: &EvaluateRequest) {
    // Must answer without panicking; `check_now` promises never to ask for a fetch.
    let _ = runners.check_now(request);
    let Some(auth) = &request.runner_auth else {
        return;
    };
    // A correct, fresh v2 credential for this request, over any identity, is accepted exactly when the identity
    // names provider and repository and has no line break. Each gets a nonce of its own: the daemon remembers them.
    static NONCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nonce = format!("{:032x}", NONCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let mut signed = request.clone();
    let mut credential = auth.clone();
    credential.algorithm = HMAC_ALGORITHM.to_owned();
    credential.signature = sign_v2(&runner_key(), &auth.identity, request, issued_at, &nonce);
    credential.issued_at = issued_at;
    credential.nonce = nonce;
    signed.runner_auth = Some(credential);
    let acceptable = !auth.identity.provider.is_empty()
        && !auth.identity.repository.is_empty()
        && reject_line_breaks(&auth.identity).is_ok();
    match runners.check_now(&signed) {
        // A long fuzzing run can accept more credentials within a window than the daemon remembers.
        Err(RunnerAuthError::ReplayCacheFull { .. }) => {}
        outcome => assert_eq!(
            outcome.is_ok(),
            acceptable,
            "a correctly signed identity: {:?}: {outcome:?}",
            auth.identity
        ),
    }
}

fn check_evidence_record(context: &DecodeContext, request: &EvaluateRequest) {
    let _one_log = context.evidence.lock().unwrap_or_else(PoisonError::into_inner);
    let path = context.scratch.join("evidence.jsonl");
    let _ = fs::remove_file(&path);
    let response = decide(&context.built_in, request);
    let (log, report) = EvidenceLog::open(evidence_config(&path, false)).expect("a new evidence log opens");
    assert_eq!(report.records, 0);
    let recorded = context.runtime.block_on(log.record(request.clone(), response));
    log.close();
    let recorded = recorded.expect("a decision is recorded").response;
    assert!(
        recorded
            .evidence_refs
            .iter()
            .any(|r| r.starts_with("go-daemon-evidence://")),
        "{recorded:?}"
    );
    let verified = verify_file(&path, &VerifyingKeys::of(&evidence_key())).expect("the log reads back");
    assert!(
        verified.valid && verified.records == 1 && verified.signed_records == 1,
        "a record the writer made does not verify: {verified:?}"
    );
    if let Some(auth) = &request.runner_auth {
        let text = fs::read_to_string(&path).expect("the log is UTF-8");
        let stored: Value = serde_json::from_str(text.trim_end()).expect("the record is JSON");
        let stored = &stored["request"]["runner_auth"]["signature"];
        if auth.algorithm == OIDC_ALGORITHM {
            assert_eq!(stored, "<redacted-oidc-jwt>", "an OIDC token was stored unredacted");
        } else if !auth.signature.is_empty() {
            assert_eq!(stored, "<redacted-hmac>", "a runner signature was stored unredacted");
        }
    }
}

fn evidence_config(path: &Path, recover: bool) -> EvidenceConfig {
    EvidenceConfig {
        path: path.to_owned(),
        sync: SyncMode::None,
        signing: Some(evidence_key()),
        verifying: VerifyingKeys::default(),
        recover,
        record_lines: false,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// server_compat, server_stream

/// The input is one connection to the real server, in compatible mode: whatever the first JSON value is (a
/// request, the stream handshake, garbage), then the rest of the input.
pub fn server_compat(data: &[u8]) {
    let server = server();
    let _one_at_a_time = server.lock.lock().unwrap_or_else(PoisonError::into_inner);
    let exchange = server.exchange(data);
    let lines = answer_lines(&exchange.output);
    match expected_compat(data) {
        Some(Compat::Stream { rest }) => {
            check_greeting(lines.first().copied());
            check_stream_answers(server, &lines[1..], &stream_frames(rest));
        }
        Some(Compat::One(frame)) => check_stream_answers(server, &lines, &[frame]),
        None => {
            // The first value is not a valid JSON container, so no handshake: one answer, or none for blank input.
            let expected = usize::from(data.len() > MAX_REQUEST_BYTES || !is_blank(data));
            assert_eq!(lines.len(), expected, "answers to {data:?}: {lines:?}");
            for line in lines {
                let value = json_object(line);
                assert!(value.get("protocol").is_none(), "greeting without a handshake: {value}");
            }
        }
    }
    server.check_health();
}

/// The input is what a client sends after the `cavra.ndjson.v1` handshake: newline-delimited requests.
pub fn server_stream(data: &[u8]) {
    let server = server();
    let _one_at_a_time = server.lock.lock().unwrap_or_else(PoisonError::into_inner);
    let mut input = format!("{{\"protocol\":\"{STREAM_PROTOCOL}\"}}\n").into_bytes();
    input.extend_from_slice(data);
    let exchange = server.exchange(&input);
    if let Err(error) = &exchange.written {
        panic!("the server stopped reading a stream-mode connection early: {error}");
    }
    let lines = answer_lines(&exchange.output);
    check_greeting(lines.first().copied());
    let mut rest = b"\n".to_vec();
    rest.extend_from_slice(data);
    check_stream_answers(server, &lines[1..], &stream_frames(&rest));
    server.check_health();
}

struct Server {
    runtime: &'static Runtime,
    address: SocketAddr,
    default_pack: String,
    lock: Mutex<()>,
}

struct Exchange {
    output: Vec<u8>,
    written: io::Result<()>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        ignore_sigpipe();
        let runtime = runtime();
        // An abstract socket: nothing on disk to clean up, and a fresh name per process.
        let name = format!("cavra-fuzz-{}-{:p}", std::process::id(), &SERVER);
        let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract socket name");
        let listener = std::os::unix::net::UnixListener::bind_addr(&address).expect("bind the fuzz socket");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let policies = built_in();
        let default_pack = policies.default_pack().to_owned();
        let limits = Limits {
            max_request_bytes: MAX_REQUEST_BYTES,
            max_connections: 64,
            max_connections_per_uid: 64,
            max_buffered_bytes: 1 << 20,
            request_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(1),
            // Every input must reach the decision path, however fast the fuzzer sends them.
            decisions_per_uid: None,
            evidence_bytes_per_uid: None,
        };
        let service = Arc::new(Service::new(policies, limits));
        let _context = runtime.enter();
        let listener = tokio::net::UnixListener::from_std(listener).expect("register the listener");
        runtime.spawn(server::run(listener, std::future::pending(), service));
        Server {
            runtime,
            address,
            default_pack,
            lock: Mutex::new(()),
        }
    })
}

impl Server {
    /// Sends `input` on a new connection, half-closes it and reads the answer to the end, writing and reading at
    /// once so that a stream of answers can never fill the socket while the input is still going out.
    fn exchange(&self, input: &[u8]) -> Exchange {
        let stream = std::os::unix::net::UnixStream::connect_addr(&self.address).expect("connect to the fuzz socket");
        stream.set_nonblocking(true).expect("non-blocking stream");
        self.runtime.block_on(async {
            let stream = tokio::net::UnixStream::from_std(stream).expect("register the stream");
            let (mut reader, mut writer) = stream.into_split();
            let write = async {
                writer.write_all(input).await?;
                writer.shutdown().await
            };
            let read = async {
                let mut output = Vec::new();
                reader.read_to_end(&mut output).await.map(|_| output)
            };
            let (written, output) = tokio::time::timeout(EXCHANGE_LIMIT, async { tokio::join!(write, read) })
                .await
                .unwrap_or_else(|_| panic!("no complete answer within {EXCHANGE_LIMIT:?}: the server hangs"));
            Exchange {
                output: output.expect("read the answer"),
                written,
            }
        })
    }

    /// The server must still answer after whatever the last input did to it.
    fn check_health(&self) {
        let exchange = self.exchange(format!("{{\"action_type\":\"{HEALTH_ACTION}\"}}").as_bytes());
        let lines = answer_lines(&exchange.output);
        assert_eq!(lines.len(), 1, "health answer: {lines:?}");
        let health: Health = serde_json::from_slice(lines[0]).expect("a health answer");
        assert_eq!(health.status, "ok");
        assert_eq!(health.default_pack, self.default_pack);
    }
}

/// What the server makes of a stream-mode line, by the framing rules: newline-delimited, blank lines skipped, a
/// line over the cap answered as too large.
#[derive(Debug)]
enum Frame<'a> {
    Line(&'a [u8]),
    TooLarge,
}

enum Compat<'a> {
    /// The first value was the handshake; the rest of the input is a stream.
    Stream {
        rest: &'a [u8],
    },
    One(Frame<'a>),
}

/// The frames of a stream-mode connection's input (everything after the handshake value).
fn stream_frames(rest: &[u8]) -> Vec<Frame<'_>> {
    rest.split(|&byte| byte == b'\n')
        .filter_map(|line| {
            if line.len() > MAX_REQUEST_BYTES {
                Some(Frame::TooLarge)
            } else if is_blank(line) {
                None
            } else {
                Some(Frame::Line(line))
            }
        })
        .collect()
}

/// When the input starts with a valid JSON object or array, its end is where the server's bracket scanner must
/// find the first request's end too.
fn expected_compat(data: &[u8]) -> Option<Compat<'_>> {
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let first = values.next()?.ok()?;
    if !(first.is_object() || first.is_array()) {
        return None;
    }
    let end = values.byte_offset();
    if end > MAX_REQUEST_BYTES {
        return Some(Compat::One(Frame::TooLarge));
    }
    let value = &data[..end];
    // The server's test: the literal key, then the parsed value.
    let handshake = value.windows(10).any(|window| window == b"\"protocol\"")
        && first.get("protocol").and_then(Value::as_str) == Some(STREAM_PROTOCOL);
    Some(if handshake {
        Compat::Stream { rest: &data[end..] }
    } else {
        Compat::One(Frame::Line(value))
    })
}

fn check_greeting(line: Option<&[u8]>) {
    let greeting = json_object(line.expect("a greeting after the handshake"));
    assert_eq!(greeting["protocol"], STREAM_PROTOCOL, "{greeting}");
}

/// One answer per frame, in order, each the right kind of answer to its frame.
fn check_stream_answers(server: &Server, lines: &[&[u8]], frames: &[Frame]) {
    assert_eq!(
        lines.len(),
        frames.len(),
        "one answer per request: frames {frames:?}, answers {:?}",
        lines
            .iter()
            .map(|line| String::from_utf8_lossy(line))
            .collect::<Vec<_>>()
    );
    for (line, frame) in lines.iter().zip(frames) {
        let value = json_object(line);
        let rule = value.get("rule_id").and_then(Value::as_str).unwrap_or_default();
        match frame {
            Frame::TooLarge => assert_eq!(rule, "daemon.request.too_large", "{value}"),
            Frame::Line(bytes) => match serde_json::from_slice::<EvaluateRequest>(bytes) {
                Err(_) => assert_eq!(rule, "daemon.request.invalid", "{value}"),
                Ok(request) if request.action_type == HEALTH_ACTION => {
                    let health: Health = serde_json::from_value(value).expect("a health answer");
                    assert_eq!(health.status, "ok");
                }
                Ok(request) => {
                    let response: DecisionResponse = serde_json::from_value(value).expect("a decision");
                    check_decision_shape(&response);
                    let or = |value: &str, fallback: &str| if value.is_empty() { fallback } else { value }.to_owned();
                    assert_eq!(
                        response.session_id,
                        or(&request.session_id, "local"),
                        "answer out of order?"
                    );
                    assert_eq!(response.policy_pack, or(&request.policy_pack, &server.default_pack));
                    assert!(
                        !response.rule_id.starts_with("daemon."),
                        "a valid request was refused: {response:?}"
                    );
                }
            },
        }
    }
}

/// The answer split into lines; every answer ends with a newline.
fn answer_lines(output: &[u8]) -> Vec<&[u8]> {
    if output.is_empty() {
        return Vec::new();
    }
    assert_eq!(output.last(), Some(&b'\n'), "answer not newline-terminated: {output:?}");
    output[..output.len() - 1].split(|&byte| byte == b'\n').collect()
}

fn json_object(line: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(line) {
        Ok(value @ Value::Object(_)) => value,
        other => panic!(
            "answer line is not a JSON object ({other:?}): {:?}",
            String::from_utf8_lossy(line)
        ),
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// libFuzzer's own `main` leaves SIGPIPE at its default, which would kill the process when the server writes to a
/// connection the other side has closed (a Rust `main` ignores it).
fn ignore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN installs no handler code; nothing else in the process relies on SIGPIPE's default.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }.expect("ignore SIGPIPE");
}

// ---------------------------------------------------------------------------------------------------------------
// policy_compiled, policy_yaml

/// The input is a compiled policy file (`--policy`).
pub fn policy_compiled(data: &[u8]) {
    let dir = fresh_dir("policy_compiled");
    let path = dir.join("policy.json");
    fs::write(&path, data).expect("write the policy file");
    let config = PolicyConfig {
        source: PolicySource::CompiledFile(path),
        default_pack: None,
        registry: None,
    };
    if let Ok(policies) = PolicySet::load(&config) {
        check_policies(&policies);
    }
}

/// The input is a policy directory (`--policy-dir`): packs separated by `#> <name>` lines, each written to
/// `<name>/policy.yaml` (text before the first header goes to `fuzz/policy.yaml`). The first pack is the default.
pub fn policy_yaml(data: &[u8]) {
    let dir = fresh_dir("policy_yaml");
    let packs = split_packs(data);
    for (name, text) in &packs {
        let pack_dir = dir.join(name);
        fs::create_dir_all(&pack_dir).expect("create the pack directory");
        fs::write(pack_dir.join("policy.yaml"), text).expect("write the pack");
    }
    let config = PolicyConfig {
        source: PolicySource::Directory(dir),
        default_pack: packs.first().map(|(name, _)| name.clone()),
        registry: None,
    };
    if let Ok(policies) = PolicySet::load(&config) {
        check_policies(&policies);
    }
}

/// At most 16 packs with distinct, file-system-safe names; later duplicates are dropped.
fn split_packs(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut packs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut current: Option<(String, Vec<u8>)> = None;
    for line in data.split_inclusive(|&byte| byte == b'\n') {
        if let Some(header) = line.strip_prefix(PACK_HEADER) {
            packs.extend(current.take());
            current = Some((pack_name(header), Vec::new()));
            continue;
        }
        current
            .get_or_insert_with(|| ("fuzz".to_owned(), Vec::new()))
            .1
            .extend_from_slice(line);
    }
    packs.extend(current);
    let mut seen = std::collections::BTreeSet::new();
    packs.retain(|(name, _)| seen.insert(name.clone()));
    packs.truncate(16);
    packs
}

fn pack_name(header: &[u8]) -> String {
    let name: String = String::from_utf8_lossy(header)
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    if name.is_empty() || name.chars().all(|c| c == '.') {
        "pack".to_owned()
    } else {
        name
    }
}

/// Whatever loaded must decide as it says: every pattern matches the literal it names, and the engine blocks (or
/// holds for approval) the literal of every block (or approval) pattern, and trusts exactly the servers listed.
fn check_policies(policies: &PolicySet) {
    let mut budget = PATTERN_CHECKS;
    for policy in policies.packs() {
        let pack = policy.id.as_str();
        let groups: [(&[Pattern], Kind); 5] = [
            (&policy.block_read, Kind::BlockRead),
            (&policy.block_write, Kind::BlockWrite),
            (&policy.require_approval_write, Kind::ApproveWrite),
            (&policy.command_block, Kind::BlockCommand),
            (&policy.command_allow, Kind::AllowCommand),
        ];
        for (patterns, kind) in groups {
            for pattern in patterns {
                if budget == 0 {
                    return;
                }
                budget -= 1;
                check_pattern(policies, pack, pattern, kind);
            }
        }
        for (servers, blocked) in [
            (&policy.mcp_blocked_servers, true),
            (&policy.mcp_allowed_servers, false),
        ] {
            for server in servers {
                if budget == 0 {
                    return;
                }
                budget -= 1;
                let request = EvaluateRequest {
                    action_type: "mcp_tool_call".to_owned(),
                    server: server.clone(),
                    tool: "read_file".to_owned(),
                    policy_pack: pack.to_owned(),
                    ..EvaluateRequest::default()
                };
                let response = decide(policies, &request);
                check_decision(policies, &request, &response);
                let listed_blocked = policy.mcp_blocked_servers.contains(server);
                let expected = if blocked || listed_blocked {
                    Decision::Block
                } else {
                    Decision::Allow
                };
                assert_eq!(
                    response.decision, expected,
                    "MCP server {server:?} in pack {pack:?}: {response:?}"
                );
            }
        }
    }
}

/// A path pattern's literal the engine compares as it is: normalised, relative, no control characters.
fn plain_path(literal: &str) -> bool {
    normalize_path(literal) == literal && !literal.starts_with("..") && !literal.chars().any(char::is_control)
}

/// A command literal that the shell reads as one static simple command with exactly these words.
fn one_plain_command(literal: &str) -> bool {
    let line = shell::parse(literal);
    match line.commands.as_slice() {
        [command] => {
            line.unreadable.is_none()
                && !command.dynamic
                && !command.glob
                && !command.brace
                && command.assignments.is_empty()
                && command.redirects.is_empty()
                && command.words.join(" ") == literal
        }
        _ => false,
    }
}

/// The engine's decision with no operator settings; panics on a request it refuses as invalid.
fn decide(policies: &PolicySet, request: &EvaluateRequest) -> DecisionResponse {
    engine::evaluate(policies, request, &Context::default()).expect("a valid request")
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    BlockRead,
    BlockWrite,
    ApproveWrite,
    BlockCommand,
    AllowCommand,
}

fn check_pattern(policies: &PolicySet, pack: &str, pattern: &Pattern, kind: Kind) {
    let source = pattern.as_str();
    let literal = source.replace('*', "");
    assert!(pattern.matches(&literal), "{source:?} does not match {literal:?}");
    let stretched = source.replace('*', "a/b c");
    assert!(pattern.matches(&stretched), "{source:?} does not match {stretched:?}");
    let (action_type, applies) = match kind {
        Kind::BlockRead => ("read_file", plain_path(&literal)),
        Kind::BlockWrite | Kind::ApproveWrite => ("write_file", plain_path(&literal)),
        Kind::BlockCommand => ("execute_command", literal.trim() == literal),
        Kind::AllowCommand => (
            "execute_command",
            literal.trim() == literal && one_plain_command(&literal),
        ),
    };
    let request = EvaluateRequest {
        action_type: action_type.to_owned(),
        target: literal.clone(),
        policy_pack: pack.to_owned(),
        ..EvaluateRequest::default()
    };
    let response = decide(policies, &request);
    check_decision(policies, &request, &response);
    if !applies {
        // The engine normalises paths and trims commands first; the literal is not what it compares.
        return;
    }
    let decided = &response.decision;
    let fine = match kind {
        Kind::BlockRead | Kind::BlockWrite | Kind::BlockCommand => *decided == Decision::Block,
        Kind::ApproveWrite => *decided != Decision::Allow,
        // A command both allowed and blocked is blocked; a git push may still need approval by the git rules.
        Kind::AllowCommand => response.rule_id != "commands.default.require_approval",
    };
    assert!(
        fine,
        "{kind:?} pattern {source:?} in pack {pack:?}: {literal:?} got {response:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// decision_invariants

/// The first byte picks a built-in pack (and a blocked command of it); the rest is a command line, a path and git
/// push arguments at once. What must hold, whatever the text:
///
/// - a blocked command on a line of its own blocks the line, whatever follows it;
/// - an allowed line followed by a blocked command on the next line is blocked, and (when it has no comment to
///   swallow it) joined to one by `;`, `&&`, `||`, `|` or nested in `$( )` is never allowed;
/// - a relative path that stays in the workspace decides as its `./`, `x/../` and `//` spellings do (and as its
///   upper-case spelling where paths fold case);
/// - a push with the arguments to `origin/main` is blocked.
pub fn decision_invariants(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let policies = built_in_ref();
    let packs: Vec<&str> = policies.packs().map(|policy| policy.id.as_str()).collect();
    let pack = packs[usize::from(selector) % packs.len()];
    let policy = policies.pack(pack).expect("a listed pack");
    let decide = |action_type: &str, target: &str, case: PathCase| {
        let request = EvaluateRequest {
            action_type: action_type.to_owned(),
            target: target.to_owned(),
            policy_pack: pack.to_owned(),
            ..EvaluateRequest::default()
        };
        let context = Context {
            path_case: case,
            ..Context::default()
        };
        engine::evaluate(policies, &request, &context)
    };
    let command =
        |line: &str| decide("execute_command", line, PathCase::Sensitive).expect("commands are never invalid");

    let line = command(&text);
    check_decision_shape(&line);
    if let Some(pattern) = policy
        .command_block
        .get(usize::from(selector) / packs.len() % policy.command_block.len().max(1))
    {
        let blocked = pattern.as_str().replace('*', "x");
        if command(&blocked).decision == Decision::Block {
            let first = command(&format!("{blocked}\n{text}"));
            assert_eq!(first.decision, Decision::Block, "{blocked:?} then {text:?}: {first:?}");
            if line.decision == Decision::Allow {
                let after = command(&format!("{text}\n{blocked}"));
                assert_eq!(after.decision, Decision::Block, "{text:?} then {blocked:?}: {after:?}");
                // On the same line, a comment in the text would swallow the blocked command: bash would not run it.
                let shapes: &[&str] = if text.contains('#') {
                    &[]
                } else {
                    &["{a}; {b}", "{a} && {b}", "{a} || {b}", "{a} | {b}", "{a} $({b})"]
                };
                for shape in shapes {
                    let joined = shape.replace("{a}", &text).replace("{b}", &blocked);
                    let got = command(&joined);
                    assert_ne!(got.decision, Decision::Allow, "{joined:?} in {pack}: {got:?}");
                }
            }
        }
    }

    let relative = !text.starts_with('/') && !text.chars().any(char::is_control);
    if relative && !normalize_path(&text).starts_with("..") {
        for (action_type, case) in [
            ("read_file", PathCase::Sensitive),
            ("write_file", PathCase::Insensitive),
        ] {
            let plain = decide(action_type, &text, case).expect("a path without control characters is valid");
            let mut spellings = vec![format!("./{text}"), format!("x/../{text}"), text.replace('/', "//")];
            if case == PathCase::Insensitive && text.is_ascii() {
                spellings.push(text.to_ascii_uppercase());
            }
            for spelling in spellings {
                let got = decide(action_type, &spelling, case).expect("a spelling of a valid path is valid");
                assert_eq!(
                    (&got.decision, &got.rule_id),
                    (&plain.decision, &plain.rule_id),
                    "{action_type} {spelling:?} vs {text:?} in {pack} ({case:?})"
                );
            }
        }
    }

    let push = EvaluateRequest {
        action_type: "git_operation".to_owned(),
        target: "origin/main".to_owned(),
        operation: format!("push {text}"),
        ..EvaluateRequest::default()
    };
    let pushed = engine::evaluate(policies, &push, &Context::default()).expect("git requests are never invalid");
    assert_eq!(
        pushed.decision,
        Decision::Block,
        "push {text:?} to origin/main: {pushed:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// evidence_verify

/// The input is an evidence log: verified without and with the key, then taken over as the daemon does at start-up
/// (torn tail set aside, chain continued, or with recovery the whole log set aside) and appended to.
pub fn evidence_verify(data: &[u8]) {
    let dir = fresh_dir("evidence_verify");
    let path = dir.join("evidence.jsonl");
    fs::write(&path, data).expect("write the log");
    let key = evidence_key();
    let unkeyed = verify_file(&path, &VerifyingKeys::default()).expect("a readable log verifies to a report");
    let keyed = verify_file(&path, &VerifyingKeys::of(&key)).expect("a readable log verifies to a report");
    let lines = non_blank_lines(data);
    for report in [&unkeyed, &keyed] {
        assert_eq!(report.valid, report.errors.is_empty(), "{report:?}");
        assert_eq!(report.records, lines, "every non-blank line is one record: {report:?}");
        assert!(report.signed_records <= report.records, "{report:?}");
        serde_json::to_string(report).expect("a report serialises");
    }
    assert_eq!(unkeyed.signed_records, keyed.signed_records);
    if unkeyed.valid {
        assert_eq!(unkeyed.signed_records, 0, "signed records verified without a key");
        // With a key every record must be signed, so the unsigned ones make it fail.
        assert!(!keyed.valid, "unsigned records verified with a key: {keyed:?}");
    }

    // What open must conclude. It reads only complete lines, and only the last TAIL_LINES of them when the log is
    // longer (src/evidence/open.rs: the whole log is --verify-evidence's job), anchoring the chain on the first
    // record there. So it must open every log whose complete lines verify (an empty one too), may open one that
    // does not verify only when the problem can lie before that window, and must always continue the chain.
    let complete = data.iter().rposition(|&byte| byte == b'\n').map_or(0, |at| at + 1);
    let prefix_ok = {
        let prefix = dir.join("complete-lines.jsonl");
        fs::write(&prefix, &data[..complete]).expect("write the complete lines");
        let report = verify_file(&prefix, &VerifyingKeys::of(&key)).expect("the complete lines read back");
        fs::remove_file(&prefix).expect("remove the complete lines");
        report.valid || report.records == 0
    };
    let complete_lines = data[..complete].iter().filter(|&&byte| byte == b'\n').count();
    let runtime = runtime();
    match EvidenceLog::open(evidence_config(&path, false)) {
        Ok((log, report)) => {
            assert!(
                prefix_ok || complete_lines > TAIL_LINES,
                "a log of {complete_lines} lines that does not verify was opened: {report:?}"
            );
            assert_eq!(report.torn.is_some(), complete < data.len(), "{report:?}");
            if let Some(torn) = &report.torn {
                assert_eq!(fs::read(torn).expect("the torn tail was kept"), &data[complete..]);
            }
            append_and_verify(runtime, log, &path, prefix_ok.then_some(report.records));
        }
        Err(EvidenceError::Broken { first_error, .. }) => {
            assert!(
                !prefix_ok,
                "a log whose complete lines verify was refused: {first_error}"
            );
            let (log, report) = EvidenceLog::open(evidence_config(&path, true)).expect("recovery opens the log");
            let aside = report.set_aside.as_deref().expect("recovery sets the log aside");
            assert_eq!(fs::read(aside).expect("the log was kept aside"), data);
            // The new log holds at most its link to the old one's last record.
            assert!(report.records <= 1, "{report:?}");
            append_and_verify(runtime, log, &path, Some(report.records));
        }
        Err(other) => panic!("opening a readable log failed: {other}"),
    }
}

/// How many complete lines opening an evidence log checks at most (`TAIL_RECORDS` in src/evidence/open.rs).
const TAIL_LINES: usize = 1000;

/// Records one decision. When the log verified before (`records` is how many records it had), the whole log must
/// verify after, one record longer; otherwise the new record must at least continue the record before it.
fn append_and_verify(runtime: &Runtime, log: EvidenceLog, path: &Path, records: Option<u64>) {
    let request = EvaluateRequest {
        action_type: "read_file".to_owned(),
        target: ".env".to_owned(),
        ..EvaluateRequest::default()
    };
    let response = decide(built_in_ref(), &request);
    let recorded = runtime.block_on(log.record(request, response));
    log.close();
    recorded.expect("a decision is recorded after opening");
    let report = verify_file(path, &VerifyingKeys::of(&evidence_key())).expect("the log reads back");
    if let Some(records) = records {
        assert!(report.valid, "the continued log does not verify: {report:?}");
        assert_eq!(report.records, records + 1, "{report:?}");
        return;
    }
    let text = fs::read(path).expect("the log reads back");
    let mut lines = text
        .split(|&byte| byte == b'\n')
        .map(String::from_utf8_lossy)
        .filter(|line| !line.trim().is_empty())
        .rev();
    let mut record = || -> Value {
        let line = lines.next().expect("a record");
        serde_json::from_str(line.trim()).expect("a record is JSON")
    };
    let (appended, previous) = (record(), record());
    let sequence = |record: &Value| record.get("sequence").and_then(Value::as_i64).unwrap_or(0);
    let hash = |record: &Value, field: &str| record.get(field).and_then(Value::as_str).unwrap_or("").to_owned();
    assert_eq!(
        (Some(sequence(&appended)), hash(&appended, "previous_hash")),
        (sequence(&previous).checked_add(1), hash(&previous, "record_hash")),
        "the appended record does not continue the one before it: {report:?}"
    );
}

/// Lines the verifier counts as records: non-blank after lossy UTF-8 decoding and trimming.
fn non_blank_lines(data: &[u8]) -> u64 {
    let count = data
        .split(|&byte| byte == b'\n')
        .filter(|line| !String::from_utf8_lossy(line).trim().is_empty())
        .count();
    u64::try_from(count).expect("a line count fits in u64")
}

// ---------------------------------------------------------------------------------------------------------------
// shared

fn built_in() -> PolicySet {
    PolicySet::load(&PolicyConfig::default()).expect("the built-in packs load")
}

fn built_in_ref() -> &'static PolicySet {
    static POLICIES: OnceLock<PolicySet> = OnceLock::new();
    POLICIES.get_or_init(built_in)
}

/// One single-threaded runtime for the whole process: the server's tasks run while a harness waits on it, so each
/// input is handled the same way every time.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// This process's scratch directory for `target`, on tmpfs when there is one; removed when the process exits.
fn scratch(target: &str) -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let parent = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let base = parent.join(format!("cavra-fuzz-{}", std::process::id()));
        // SAFETY: registers a plain `extern "C"` function that only removes this process's own directory.
        unsafe { nix::libc::atexit(remove_scratch) };
        base
    });
    let dir = base.join(target);
    fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

extern "C" fn remove_scratch() {
    let parent = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let _ = fs::remove_dir_all(parent.join(format!("cavra-fuzz-{}", std::process::id())));
}

/// An empty directory for one input of `target`.
fn fresh_dir(target: &str) -> PathBuf {
    let dir = scratch(target).join("input");
    match fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => panic!("cannot clear {}: {error}", dir.display()),
    }
    fs::create_dir_all(&dir).expect("create the input directory");
    dir
}
