//! The largest value each request field may have (docs/protocol.md, "Field limits"). A request is decided and
//! recorded as evidence whole, so a field's maximum bounds what one decision can make the daemon write: without
//! them, a megabyte target became two megabytes of evidence. A request with a field past its maximum is refused
//! (`daemon.request.too_large`, naming the field and its limit) before anything is decided or recorded.
//!
//! Lengths are bytes of UTF-8 text as decoded from the request's JSON.

use std::io;

use serde_json::{Map, Value};

use crate::contract::{EvaluateRequest, ReleaseGovernanceEvidence, RunnerAuthentication};

/// Session, agent and actor ids; MCP server, tool and capability names.
pub const MAX_ID: usize = 256;
pub const MAX_ACTION_TYPE: usize = 64;
/// A command line, a file path, a git target or an MCP `server:tool`.
pub const MAX_TARGET: usize = 8 * 1024;
/// Clients of the reference send the command line here too.
pub const MAX_REQUESTED_OPERATION: usize = 8 * 1024;
/// The git operation (`push --force origin main`).
pub const MAX_OPERATION: usize = 1024;
pub const MAX_POLICY_PACK: usize = 128;
/// Linux's PATH_MAX.
pub const MAX_WORKSPACE_ROOT: usize = 4096;
/// The legacy release-governance `record`, as compact JSON, and how deeply its objects and arrays may nest.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;
pub const MAX_RECORD_DEPTH: usize = 8;
/// Each string of typed release-governance evidence, and its lists (`failed_providers`, `evidence_refs`).
pub const MAX_RELEASE_STRING: usize = 256;
pub const MAX_RELEASE_LIST: usize = 32;
/// Each runner identity field (repository, workflow, ref, ...).
pub const MAX_IDENTITY_FIELD: usize = 512;
pub const MAX_ALGORITHM: usize = 32;
/// An OIDC token (a JWT) or an HMAC signature.
pub const MAX_SIGNATURE: usize = 8 * 1024;
pub const MAX_NONCE: usize = 128;

/// A field past its maximum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("request field `{field}` is {size} {unit}; at most {limit} are accepted")]
pub struct FieldTooLarge {
    /// The field's path in the request (`runner_auth.identity.repository`, `release_governance.evidence_refs`).
    pub field: String,
    pub size: usize,
    pub limit: usize,
    /// `bytes`, `entries` or `levels of nesting`.
    pub unit: &'static str,
}

/// The first field of `request` past its maximum, if any.
pub fn check(request: &EvaluateRequest) -> Result<(), FieldTooLarge> {
    for (field, value, limit) in [
        ("session_id", &request.session_id, MAX_ID),
        ("agent_id", &request.agent_id, MAX_ID),
        ("actor", &request.actor, MAX_ID),
        ("action_type", &request.action_type, MAX_ACTION_TYPE),
        ("target", &request.target, MAX_TARGET),
        (
            "requested_operation",
            &request.requested_operation,
            MAX_REQUESTED_OPERATION,
        ),
        ("policy_pack", &request.policy_pack, MAX_POLICY_PACK),
        ("operation", &request.operation, MAX_OPERATION),
        ("server", &request.server, MAX_ID),
        ("tool", &request.tool, MAX_ID),
        ("capability", &request.capability, MAX_ID),
        ("workspace_root", &request.workspace_root, MAX_WORKSPACE_ROOT),
    ] {
        text(field, value, limit)?;
    }
    if let Some(record) = &request.record {
        legacy_record(record)?;
    }
    if let Some(evidence) = &request.release_governance {
        release_governance(evidence)?;
    }
    if let Some(auth) = &request.runner_auth {
        runner_auth(auth)?;
    }
    Ok(())
}

fn text(field: &str, value: &str, limit: usize) -> Result<(), FieldTooLarge> {
    if value.len() > limit {
        return Err(FieldTooLarge {
            field: field.to_owned(),
            size: value.len(),
            limit,
            unit: "bytes",
        });
    }
    Ok(())
}

fn legacy_record(record: &Map<String, Value>) -> Result<(), FieldTooLarge> {
    let depth = 1 + record.values().map(depth).max().unwrap_or(0);
    if depth > MAX_RECORD_DEPTH {
        return Err(FieldTooLarge {
            field: "record".to_owned(),
            size: depth,
            limit: MAX_RECORD_DEPTH,
            unit: "levels of nesting",
        });
    }
    let mut counted = Counted(0);
    serde_json::to_writer(&mut counted, record).expect("a JSON map serialises");
    if counted.0 > MAX_RECORD_BYTES {
        return Err(FieldTooLarge {
            field: "record".to_owned(),
            size: counted.0,
            limit: MAX_RECORD_BYTES,
            unit: "bytes",
        });
    }
    Ok(())
}

/// Levels of objects and arrays in `value` (0 for a scalar).
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Counts the bytes written to it, and keeps none.
struct Counted(usize);

impl io::Write for Counted {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn release_governance(evidence: &ReleaseGovernanceEvidence) -> Result<(), FieldTooLarge> {
    for (field, value) in [
        ("metadata_kind", &evidence.metadata_kind),
        ("release_channel", &evidence.release_channel),
        ("release_version", &evidence.release_version),
        ("approval_state", &evidence.approval_state),
        ("approval_id", &evidence.approval_id),
        ("alert_level", &evidence.alert_level),
        ("drift_status", &evidence.drift_status),
        ("handoff_status", &evidence.handoff_status),
        ("connector_delivery_source", &evidence.connector_delivery_source),
        ("verification_status", &evidence.verification_status),
        ("integrity_status", &evidence.integrity_status),
        ("audit_export_status", &evidence.audit_export_status),
    ] {
        text(&format!("release_governance.{field}"), value, MAX_RELEASE_STRING)?;
    }
    for (field, list) in [
        ("failed_providers", &evidence.failed_providers),
        ("evidence_refs", &evidence.evidence_refs),
    ] {
        let field = format!("release_governance.{field}");
        if list.len() > MAX_RELEASE_LIST {
            return Err(FieldTooLarge {
                field,
                size: list.len(),
                limit: MAX_RELEASE_LIST,
                unit: "entries",
            });
        }
        for entry in list {
            text(&field, entry, MAX_RELEASE_STRING)?;
        }
    }
    Ok(())
}

fn runner_auth(auth: &RunnerAuthentication) -> Result<(), FieldTooLarge> {
    let identity = &auth.identity;
    for (field, value) in identity.fields() {
        text(&format!("runner_auth.identity.{field}"), value, MAX_IDENTITY_FIELD)?;
    }
    for (field, value, limit) in [
        ("algorithm", &auth.algorithm, MAX_ALGORITHM),
        ("key_id", &auth.key_id, MAX_ID),
        ("signature", &auth.signature, MAX_SIGNATURE),
        ("nonce", &auth.nonce, MAX_NONCE),
    ] {
        text(&format!("runner_auth.{field}"), value, limit)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &str) -> EvaluateRequest {
        serde_json::from_str(json).unwrap()
    }

    fn refused(json: &str) -> FieldTooLarge {
        check(&parsed(json)).unwrap_err()
    }

    #[test]
    fn fields_up_to_their_maximum_pass_and_one_byte_more_is_refused_by_name() {
        for (field, limit) in [
            ("session_id", MAX_ID),
            ("action_type", MAX_ACTION_TYPE),
            ("target", MAX_TARGET),
            ("requested_operation", MAX_REQUESTED_OPERATION),
            ("policy_pack", MAX_POLICY_PACK),
            ("operation", MAX_OPERATION),
            ("tool", MAX_ID),
            ("workspace_root", MAX_WORKSPACE_ROOT),
        ] {
            let at = format!(r#"{{"{field}":"{}"}}"#, "a".repeat(limit));
            assert_eq!(check(&parsed(&at)), Ok(()), "{field} at its maximum");
            let over = format!(r#"{{"{field}":"{}"}}"#, "a".repeat(limit + 1));
            assert_eq!(
                refused(&over),
                FieldTooLarge {
                    field: field.to_owned(),
                    size: limit + 1,
                    limit,
                    unit: "bytes"
                }
            );
        }
        // Bytes, not characters.
        let accented = format!(r#"{{"actor":"{}"}}"#, "é".repeat(MAX_ID / 2 + 1));
        assert_eq!(refused(&accented).size, MAX_ID + 2);
    }

    #[test]
    fn nested_fields_are_named_by_their_path() {
        let identity = format!(
            r#"{{"runner_auth":{{"identity":{{"provider":"p","ref":"{}"}}}}}}"#,
            "r".repeat(MAX_IDENTITY_FIELD + 1)
        );
        assert_eq!(refused(&identity).field, "runner_auth.identity.ref");
        let token = format!(
            r#"{{"runner_auth":{{"algorithm":"OIDC-JWT","signature":"{}"}}}}"#,
            "t".repeat(MAX_SIGNATURE + 1)
        );
        assert_eq!(refused(&token).field, "runner_auth.signature");
        let kind = format!(
            r#"{{"release_governance":{{"metadata_kind":"{}"}}}}"#,
            "k".repeat(MAX_RELEASE_STRING + 1)
        );
        assert_eq!(refused(&kind).field, "release_governance.metadata_kind");
        let refs: Vec<String> = (0..=MAX_RELEASE_LIST).map(|n| format!("ref-{n}")).collect();
        let many = serde_json::json!({"release_governance": {"evidence_refs": refs}}).to_string();
        let error = refused(&many);
        assert_eq!(
            (error.field.as_str(), error.size, error.limit, error.unit),
            (
                "release_governance.evidence_refs",
                MAX_RELEASE_LIST + 1,
                MAX_RELEASE_LIST,
                "entries"
            )
        );
        assert_eq!(
            error.to_string(),
            "request field `release_governance.evidence_refs` is 33 entries; at most 32 are accepted"
        );
    }

    #[test]
    fn the_legacy_record_is_bounded_in_size_and_depth() {
        let big = serde_json::json!({"record": {"metadata_kind": "x", "note": "n".repeat(MAX_RECORD_BYTES)}});
        let error = refused(&big.to_string());
        assert_eq!((error.field.as_str(), error.unit), ("record", "bytes"));
        assert!(error.size > MAX_RECORD_BYTES);

        let mut nested = serde_json::json!(1);
        for _ in 0..MAX_RECORD_DEPTH {
            nested = serde_json::json!([nested]);
        }
        let deep = serde_json::json!({"record": {"a": nested}});
        let error = refused(&deep.to_string());
        assert_eq!(
            (error.field.as_str(), error.size, error.unit),
            ("record", MAX_RECORD_DEPTH + 1, "levels of nesting")
        );
        let fits = serde_json::json!({"record": {"approval": {"state": "approved", "ids": [["a"]]}}});
        assert_eq!(check(&parsed(&fits.to_string())), Ok(()));
    }
}
