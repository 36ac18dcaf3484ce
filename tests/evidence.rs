//! The evidence log through its public API: the reference-format fixtures in testdata/evidence verify (or fail) as
//! the reference verifier says, and the writer continues a reference-format stream.

use std::path::{Path, PathBuf};

use cavra_runtime::contract::{DecisionResponse, EvaluateRequest, RunnerAuthentication, RunnerIdentity};
use cavra_runtime::evidence::{
    EvidenceConfig, EvidenceError, EvidenceLog, SigningKey, SyncMode, VerifyReport, VerifyingKeys, verify_file,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/evidence")
        .join(name)
}

fn fixture_key() -> SigningKey {
    SigningKey::new(b"fixture-evidence-key".to_vec(), "fixture-2026")
}

fn errors(name: &str, key: Option<&SigningKey>) -> Vec<String> {
    let report = verify_file(&fixture(name), &keys(key)).unwrap();
    assert_eq!(report.valid, report.errors.is_empty(), "{report:?}");
    report.errors
}

fn config(path: &Path, signing: Option<SigningKey>) -> EvidenceConfig {
    EvidenceConfig {
        path: path.to_owned(),
        sync: SyncMode::Batch,
        signing,
        verifying: VerifyingKeys::default(),
        recover: false,
        record_lines: false,
    }
}

fn keys(key: Option<&SigningKey>) -> VerifyingKeys {
    key.map(VerifyingKeys::of).unwrap_or_default()
}

fn response() -> DecisionResponse {
    serde_json::from_str(r#"{"session_id":"session-1","decision":"allow","severity":"low"}"#).unwrap()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn the_fixture_verifies_with_its_key() {
    let path = fixture("signed-chain.jsonl");
    let report = verify_file(&path, &keys(Some(&fixture_key()))).unwrap();
    assert_eq!(
        report,
        VerifyReport {
            path: path.display().to_string(),
            valid: true,
            records: 5,
            signed_records: 5,
            errors: vec![],
            link: None,
            journal: None,
        }
    );
    assert_eq!(
        serde_json::to_string(&report).unwrap(),
        format!(
            r#"{{"path":"{}","valid":true,"records":5,"signed_records":5}}"#,
            path.display()
        )
    );
}

#[test]
fn the_fixture_key_file_with_a_newline_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("evidence.key");
    std::fs::write(&key_file, "fixture-evidence-key\n").unwrap();
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let secret = cavra_runtime::auth::Secret::from_file(&key_file).unwrap();
    let key = SigningKey::new(secret.expose().to_vec(), "fixture-2026");
    assert!(errors("signed-chain.jsonl", Some(&key)).is_empty());
}

#[test]
fn a_wrong_key_fails_every_signature() {
    let wrong = SigningKey::new(b"wrong-secret".to_vec(), "fixture-2026");
    let expected: Vec<String> = (1..=5).map(|n| format!("record {n} signature mismatch")).collect();
    assert_eq!(errors("signed-chain.jsonl", Some(&wrong)), expected);
    let report = verify_file(&fixture("signed-chain.jsonl"), &keys(Some(&wrong))).unwrap();
    assert_eq!(report.errors[0], "record 1 signature mismatch");
    assert!(!report.valid);
}

#[test]
fn a_wrong_key_id_or_no_key_is_reported() {
    let other_id = SigningKey::new(b"fixture-evidence-key".to_vec(), "fixture-2025");
    let expected: Vec<String> = (1..=5)
        .map(|n| format!("record {n} signature key_id mismatch"))
        .collect();
    assert_eq!(errors("signed-chain.jsonl", Some(&other_id)), expected);

    let expected: Vec<String> = (1..=5)
        .map(|n| format!("record {n} signature present but verification key was not provided"))
        .collect();
    assert_eq!(errors("signed-chain.jsonl", None), expected);
}

#[test]
fn a_changed_byte_breaks_that_records_hash() {
    assert_eq!(
        errors("tampered-byte.jsonl", Some(&fixture_key())),
        ["record 2 hash mismatch"]
    );
}

#[test]
fn a_dropped_line_breaks_the_sequence_and_the_chain() {
    assert_eq!(
        errors("dropped-line.jsonl", Some(&fixture_key())),
        [
            "record 3 sequence mismatch: got 4 want 3",
            "record 3 previous hash mismatch",
            "record 4 sequence mismatch: got 5 want 4",
        ]
    );
}

#[test]
fn swapped_lines_break_the_sequence_and_the_chain() {
    assert_eq!(
        errors("reordered.jsonl", Some(&fixture_key())),
        [
            "record 2 sequence mismatch: got 3 want 2",
            "record 2 previous hash mismatch",
            "record 3 sequence mismatch: got 2 want 3",
            "record 3 previous hash mismatch",
            "record 4 previous hash mismatch",
        ]
    );
}

#[tokio::test]
async fn the_writer_continues_a_reference_format_stream() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    std::fs::copy(fixture("signed-chain.jsonl"), &path).unwrap();
    let (log, report) = EvidenceLog::open(config(&path, Some(fixture_key()))).unwrap();
    assert_eq!((report.records, report.torn, report.set_aside), (5, None, None));
    log.record(EvaluateRequest::default(), response()).await.unwrap();
    log.close();

    let stored = lines(&path);
    assert_eq!(stored[5]["sequence"], 6);
    assert_eq!(stored[5]["previous_hash"], stored[4]["record_hash"]);
    let report = verify_file(&path, &keys(Some(&fixture_key()))).unwrap();
    assert!(
        report.valid && report.records == 6 && report.signed_records == 6,
        "{report:?}"
    );
}

/// Decision values are open (a newer daemon may add one): a record holding one this version does not know keeps its
/// text, so its hash and signature verify, and the log is continued.
#[tokio::test]
async fn a_record_with_a_decision_value_this_version_does_not_know_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    let (log, _) = EvidenceLog::open(config(&path, Some(fixture_key()))).unwrap();
    let unknown: DecisionResponse =
        serde_json::from_str(r#"{"session_id":"s","decision":"defer","severity":"catastrophic"}"#).unwrap();
    log.record(EvaluateRequest::default(), unknown).await.unwrap();
    log.close();
    let stored = lines(&path);
    assert_eq!(stored[0]["response"]["decision"], "defer");
    assert_eq!(stored[0]["response"]["severity"], "catastrophic");
    let report = verify_file(&path, &keys(Some(&fixture_key()))).unwrap();
    assert!(report.valid && report.signed_records == 1, "{report:?}");
    let (log, report) = EvidenceLog::open(config(&path, Some(fixture_key()))).unwrap();
    assert_eq!(report.records, 1);
    log.close();
}

#[test]
fn a_tampered_stream_is_not_continued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evidence.jsonl");
    std::fs::copy(fixture("tampered-byte.jsonl"), &path).unwrap();
    let error = EvidenceLog::open(config(&path, Some(fixture_key()))).unwrap_err();
    assert!(matches!(error, EvidenceError::Broken { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "evidence log {} does not verify: record 2 hash mismatch; start with --evidence-recover to set it aside",
            path.display()
        )
    );
}

/// The reference's own evidence test, through this API.
#[tokio::test]
async fn records_as_the_reference_evidence_test_expects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/evidence.jsonl");
    let key = || SigningKey::new(b"evidence-secret".to_vec(), "evidence-key-1");
    let (log, _) = EvidenceLog::open(config(&path, Some(key()))).unwrap();

    let request = EvaluateRequest {
        session_id: "session-1".into(),
        runner_auth: Some(RunnerAuthentication {
            identity: RunnerIdentity {
                provider: "github-actions".into(),
                repository: "Huzefaaa2/cavra".into(),
                ..Default::default()
            },
            algorithm: "OIDC-JWT".into(),
            key_id: "test-key".into(),
            signature: "header.claims.signature".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let first = log.record(request.clone(), response()).await.unwrap().response;
    assert_eq!(first.evidence_refs.len(), 1);
    assert!(first.evidence_refs[0].starts_with("go-daemon-evidence://"));
    log.record(request, response()).await.unwrap();
    log.close();

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("header.claims.signature"));
    assert!(text.contains(r#""signature":"\u003credacted-oidc-jwt\u003e""#));
    let stored = lines(&path);
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["schema_version"], "cavra.go-daemon.evidence.v1");
    assert_eq!(stored[0]["request"]["session_id"], "session-1");
    assert_eq!(stored[0]["request"]["runner_auth"]["signature"], "<redacted-oidc-jwt>");
    assert_eq!(
        stored[0]["response"]["evidence_refs"],
        serde_json::json!(first.evidence_refs)
    );
    assert_eq!(
        (stored[0]["sequence"].as_u64(), stored[1]["sequence"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(stored[0]["record_hash"].as_str().unwrap().len(), 64);
    assert_eq!(stored[1]["previous_hash"], stored[0]["record_hash"]);
    for record in &stored {
        assert_eq!(record["signature"]["algorithm"], "HMAC-SHA256");
        assert_eq!(record["signature"]["key_id"], "evidence-key-1");
        assert_eq!(record["signature"]["value"].as_str().unwrap().len(), 64);
    }

    let report = verify_file(&path, &keys(Some(&key()))).unwrap();
    assert!(
        report.valid && report.records == 2 && report.signed_records == 2,
        "{report:?}"
    );
    let wrong = SigningKey::new(b"wrong-secret".to_vec(), "");
    let report = verify_file(&path, &keys(Some(&wrong))).unwrap();
    assert!(!report.valid);
    assert_eq!(
        report.errors,
        ["record 1 signature mismatch", "record 2 signature mismatch"]
    );
}
