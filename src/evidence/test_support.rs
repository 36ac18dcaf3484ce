//! Helpers shared by the evidence unit tests.

use std::path::Path;

use super::{EvidenceConfig, SigningKey, SyncMode, VerifyingKeys};
use crate::contract::{DecisionResponse, EvaluateRequest};

pub(crate) fn config(path: &Path, sync: SyncMode, signing: Option<SigningKey>) -> EvidenceConfig {
    EvidenceConfig {
        path: path.to_owned(),
        sync,
        signing,
        verifying: VerifyingKeys::default(),
        recover: false,
        record_lines: false,
    }
}

/// The keys that verify what `key` signs; none for `None`.
pub(crate) fn keys(key: Option<&SigningKey>) -> VerifyingKeys {
    key.map(VerifyingKeys::of).unwrap_or_default()
}

/// RFC 8032's first test key, as `openssl genpkey -algorithm ed25519` writes a key.
pub(crate) const ED25519_TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";

pub(crate) fn key() -> SigningKey {
    SigningKey::new(b"unit-test-evidence-key".to_vec(), "unit-1")
}

pub(crate) fn request(session_id: &str) -> EvaluateRequest {
    EvaluateRequest {
        session_id: session_id.to_owned(),
        action_type: "execute_command".into(),
        target: "terraform plan".into(),
        ..Default::default()
    }
}

pub(crate) fn allow() -> DecisionResponse {
    serde_json::from_str(r#"{"decision":"allow","severity":"low","evidence_refs":["evidence://s/d"]}"#).unwrap()
}

/// The log's records, parsed.
pub(crate) fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
