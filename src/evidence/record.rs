//! One evidence record: its reference wire shape, id, redaction, chain hash and signature.

use std::io::Write as _;

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::SigningKey;
use super::encode;
use crate::contract::{DecisionResponse, EvaluateRequest, ReleaseGovernanceEvidence, RunnerAuthentication, nullable};

pub(crate) const SCHEMA_VERSION: &str = "cavra.go-daemon.evidence.v1";
pub(crate) const SIGNATURE_ALGORITHM: &str = "HMAC-SHA256";
const PRODUCT: &str = "CAVRA";
const EVENT_TYPE: &str = "cavra.go_daemon.decision";
const REF_PREFIX: &str = "go-daemon-evidence://";
const OIDC_ALGORITHM: &str = "OIDC-JWT";
const REDACTED_OIDC_TOKEN: &str = "<redacted-oidc-jwt>";

/// The request as the reference contract knows it. Records store and hash only these fields: the reference
/// verifier re-serialises parsed records, so any extension field (`operation`, `server`, ...) would break the hash.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct RecordRequest {
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    session_id: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    agent_id: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    actor: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    action_type: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    target: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    requested_operation: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    policy_pack: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    release_governance: Option<ReleaseGovernanceEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runner_auth: Option<RunnerAuthentication>,
}

impl From<&EvaluateRequest> for RecordRequest {
    fn from(request: &EvaluateRequest) -> Self {
        RecordRequest {
            session_id: request.session_id.clone(),
            agent_id: request.agent_id.clone(),
            actor: request.actor.clone(),
            action_type: request.action_type.clone(),
            target: request.target.clone(),
            requested_operation: request.requested_operation.clone(),
            policy_pack: request.policy_pack.clone(),
            release_governance: request.release_governance.clone(),
            runner_auth: request.runner_auth.clone(),
        }
    }
}

impl RecordRequest {
    /// An OIDC token is a bearer credential until it expires: never keep it.
    fn redacted(mut self) -> Self {
        if let Some(auth) = &mut self.runner_auth
            && auth.algorithm == OIDC_ALGORITHM
        {
            auth.signature = REDACTED_OIDC_TOKEN.to_owned();
        }
        self
    }

    fn is_redacted(&self) -> bool {
        self.runner_auth
            .as_ref()
            .is_some_and(|auth| auth.algorithm == OIDC_ALGORITHM)
    }
}

/// One line of the stream, fields in reference order. Parsing is as lenient as Go's: absent or `null` fields take
/// their empty value and unknown fields are dropped.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EvidenceRecord {
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) schema_version: String,
    #[serde(default, deserialize_with = "nullable")]
    product: String,
    #[serde(default, deserialize_with = "nullable")]
    event_type: String,
    #[serde(default, deserialize_with = "nullable")]
    record_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) sequence: i64,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub(crate) previous_hash: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub(crate) record_hash: String,
    #[serde(default, deserialize_with = "nullable")]
    timestamp: String,
    #[serde(default, deserialize_with = "nullable")]
    request: RecordRequest,
    response: DecisionResponse,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signature: Option<Signature>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Signature {
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) algorithm: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub(crate) key_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) value: String,
}

impl EvidenceRecord {
    /// Lower-hex SHA-256 of the record serialised without `record_hash` and `signature`, which must not be set yet
    /// (the verifier takes them out first).
    pub(crate) fn unsealed_hash(&self) -> String {
        debug_assert!(self.record_hash.is_empty() && self.signature.is_none());
        hex::encode(Sha256::digest(encode::to_vec(self)))
    }
}

/// Where the stream ends: the last record's sequence (0 when empty) and hash.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Chain {
    pub(crate) sequence: i64,
    pub(crate) record_hash: String,
}

/// The id digits of the reference in a prepared response until the record id is known; same length as an id.
const ID_PLACEHOLDER: &str = "000000000000000000000000";

/// The parts of a record that do not depend on its place in the chain, encoded where the decision was made: the
/// single writer then only hashes and concatenates. The bytes are exactly what [`EvidenceRecord`] serialises to.
pub(crate) struct Prepared {
    /// Go JSON of the request as received and of the response before its reference: the record id covers these.
    id_request: Vec<u8>,
    id_response: Vec<u8>,
    /// Go JSON of the request as stored, when redaction changed it.
    stored_request: Option<Vec<u8>>,
    /// Go JSON of the response as stored, with a reference whose id digits at `id_at` are `ID_PLACEHOLDER`.
    stored_response: Vec<u8>,
    id_at: usize,
    /// References the response already carried (almost always none).
    refs: Vec<String>,
}

impl Prepared {
    pub(crate) fn new(request: RecordRequest, response: &mut DecisionResponse) -> Prepared {
        let id_request = encode::to_vec(&request);
        let redacted = request.redacted();
        let stored_request = redacted.is_redacted().then(|| encode::to_vec(&redacted));
        let id_response = encode::to_vec(&*response);
        // Encoded with the placeholder reference in place, then put back as it was.
        response.evidence_refs.push(format!("{REF_PREFIX}{ID_PLACEHOLDER}"));
        let stored_response = encode::to_vec(&*response);
        response.evidence_refs.pop();
        // The placeholder is the array's last element: nowhere else can its closing quote be followed by `]`
        // unescaped.
        let tail = format!("\"{REF_PREFIX}{ID_PLACEHOLDER}\"]");
        let id_at = stored_response
            .windows(tail.len())
            .rposition(|window| window == tail.as_bytes())
            .expect("the placeholder reference is in the encoded response")
            + 1
            + REF_PREFIX.len();
        Prepared {
            id_request,
            id_response,
            stored_request,
            stored_response,
            id_at,
            refs: response.evidence_refs.clone(),
        }
    }
}

/// The reference a response carries for the record `record_id`.
pub(crate) fn reference(record_id: &str) -> String {
    format!("{REF_PREFIX}{record_id}")
}

impl Chain {
    /// Appends to `out` the record that follows this chain (one line, with its `\n`) and advances the chain.
    /// Returns the record id.
    pub(crate) fn seal(
        &mut self,
        mut prepared: Prepared,
        timestamp: &str,
        key: Option<&SigningKey>,
        out: &mut Vec<u8>,
    ) -> String {
        let timestamp = encode::to_vec(timestamp);
        let record_id = record_id(&prepared.id_request, &prepared.id_response, &timestamp);
        // As the reference does; the id covers the refs already present, so in practice this one never is.
        let response = if prepared.refs.contains(&reference(&record_id)) {
            &prepared.id_response
        } else {
            let at = prepared.id_at;
            prepared.stored_response[at..at + ID_PLACEHOLDER.len()].copy_from_slice(record_id.as_bytes());
            &prepared.stored_response
        };
        let request = prepared.stored_request.as_ref().unwrap_or(&prepared.id_request);
        let sequence = self.sequence + 1;

        let mut head = Vec::with_capacity(256);
        let _ = write!(
            head,
            r#"{{"schema_version":"{SCHEMA_VERSION}","product":"{PRODUCT}","event_type":"{EVENT_TYPE}","record_id":"{record_id}","sequence":{sequence}"#
        );
        if !self.record_hash.is_empty() {
            let _ = write!(head, r#","previous_hash":"{}""#, self.record_hash);
        }
        let body: [&[u8]; 6] = [
            b",\"timestamp\":",
            &timestamp,
            b",\"request\":",
            request,
            b",\"response\":",
            response,
        ];
        let mut hasher = Sha256::new();
        hasher.update(&head);
        for part in body {
            hasher.update(part);
        }
        hasher.update(b"}");
        let record_hash = hex::encode(hasher.finalize());

        out.extend_from_slice(&head);
        let _ = write!(out, r#","record_hash":"{record_hash}""#);
        for part in body {
            out.extend_from_slice(part);
        }
        if let Some(key) = key {
            out.extend_from_slice(br#","signature":{"algorithm":""#);
            out.extend_from_slice(SIGNATURE_ALGORITHM.as_bytes());
            out.push(b'"');
            if !key.key_id().is_empty() {
                out.extend_from_slice(br#","key_id":"#);
                out.extend_from_slice(&encode::to_vec(key.key_id()));
            }
            let value = hex::encode(signature(key, &self.record_hash, &record_hash));
            let _ = write!(out, r#","value":"{value}"}}"#);
        }
        out.extend_from_slice(b"}\n");
        self.sequence = sequence;
        self.record_hash = record_hash;
        record_id
    }

    /// [`Chain::seal`] for one record, returning its line and the response as stored.
    #[cfg(test)]
    pub(crate) fn append(
        &mut self,
        request: RecordRequest,
        mut response: DecisionResponse,
        timestamp: String,
        key: Option<&SigningKey>,
    ) -> (Vec<u8>, DecisionResponse) {
        let prepared = Prepared::new(request, &mut response);
        let mut line = Vec::new();
        let record_id = self.seal(prepared, &timestamp, key, &mut line);
        let reference = reference(&record_id);
        if !response.evidence_refs.contains(&reference) {
            response.evidence_refs.push(reference);
        }
        (line, response)
    }
}

/// First 24 hex digits of SHA-256 over the unredacted request, the response before its evidence reference and the
/// timestamp, each as Go's `json.Encoder` writes it (with a trailing newline).
fn record_id(request: &[u8], response: &[u8], timestamp: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for part in [request, response, timestamp] {
        hasher.update(part);
        hasher.update(b"\n");
    }
    let mut id = hex::encode(hasher.finalize());
    id.truncate(ID_PLACEHOLDER.len());
    id
}

fn signer(key: &SigningKey, previous_hash: &str, record_hash: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC accepts keys of any length");
    for part in [SCHEMA_VERSION, "\n", previous_hash, "\n", record_hash] {
        mac.update(part.as_bytes());
    }
    mac
}

/// HMAC-SHA256 over the schema version, previous hash and record hash, one per line.
fn signature(key: &SigningKey, previous_hash: &str, record_hash: &str) -> Vec<u8> {
    signer(key, previous_hash, record_hash).finalize().into_bytes().to_vec()
}

/// Whether `value` (hex, any case, as the reference lower-cases it) is the signature; compared in constant time.
pub(crate) fn signature_matches(key: &SigningKey, previous_hash: &str, record_hash: &str, value: &str) -> bool {
    match hex::decode(value) {
        Ok(tag) => signer(key, previous_hash, record_hash).verify_slice(&tag).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::RunnerIdentity;
    use crate::contract::timestamp;

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn hmac_hex(key: &[u8], message: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn allow() -> DecisionResponse {
        serde_json::from_str(r#"{"decision":"allow","severity":"low"}"#).unwrap()
    }

    #[test]
    fn tiny_records_hash_and_sign_as_the_rules_say() {
        let key = SigningKey::new(b"k".to_vec(), "id1");
        let request = EvaluateRequest {
            action_type: "read_file".into(),
            target: "a<b".into(),
            ..Default::default()
        };
        let ts = "2026-05-18T12:00:00Z";
        let mut chain = Chain::default();
        let (line, response) = chain.append((&request).into(), allow(), ts.into(), Some(&key));

        let id_input = concat!(
            r#"{"action_type":"read_file","target":"a\u003cb"}"#,
            "\n",
            r#"{"decision":"allow","severity":"low"}"#,
            "\n",
            r#""2026-05-18T12:00:00Z""#,
            "\n"
        );
        let id = &sha256_hex(id_input.as_bytes())[..24];
        let stem = format!(
            concat!(
                r#"{{"schema_version":"cavra.go-daemon.evidence.v1","product":"CAVRA","#,
                r#""event_type":"cavra.go_daemon.decision","record_id":"{id}","sequence":1,"#
            ),
            id = id
        );
        let body = format!(
            concat!(
                r#""timestamp":"2026-05-18T12:00:00Z","request":{{"action_type":"read_file","target":"a\u003cb"}},"#,
                r#""response":{{"decision":"allow","severity":"low","evidence_refs":["go-daemon-evidence://{id}"]}}"#
            ),
            id = id
        );
        let hash = sha256_hex(format!("{stem}{body}}}").as_bytes());
        let sig = hmac_hex(b"k", &format!("cavra.go-daemon.evidence.v1\n\n{hash}"));
        let expected = format!(
            r#"{stem}"record_hash":"{hash}",{body},"signature":{{"algorithm":"HMAC-SHA256","key_id":"id1","value":"{sig}"}}}}"#
        ) + "\n";
        assert_eq!(String::from_utf8(line).unwrap(), expected);
        assert_eq!(response.evidence_refs, vec![format!("go-daemon-evidence://{id}")]);
        assert_eq!(
            chain,
            Chain {
                sequence: 1,
                record_hash: hash.clone()
            }
        );

        // The second record chains to the first; unsigned when there is no key.
        let ts2 = "2026-05-18T12:00:00.5Z";
        let (line2, _) = chain.append((&request).into(), allow(), ts2.into(), None);
        let id2_input = id_input.replace(ts, ts2);
        let id2 = &sha256_hex(id2_input.as_bytes())[..24];
        let unsealed2 = format!(
            concat!(
                r#"{{"schema_version":"cavra.go-daemon.evidence.v1","product":"CAVRA","#,
                r#""event_type":"cavra.go_daemon.decision","record_id":"{id2}","sequence":2,"previous_hash":"{hash}","#,
                r#""timestamp":"2026-05-18T12:00:00.5Z","request":{{"action_type":"read_file","target":"a\u003cb"}},"#,
                r#""response":{{"decision":"allow","severity":"low","evidence_refs":["go-daemon-evidence://{id2}"]}}}}"#
            ),
            id2 = id2,
            hash = hash
        );
        let hash2 = sha256_hex(unsealed2.as_bytes());
        let expected2 =
            unsealed2.replace(r#","timestamp""#, &format!(r#","record_hash":"{hash2}","timestamp""#)) + "\n";
        assert_eq!(String::from_utf8(line2).unwrap(), expected2);
        assert_eq!(
            chain,
            Chain {
                sequence: 2,
                record_hash: hash2
            }
        );
    }

    #[test]
    fn oidc_tokens_are_redacted_but_the_id_covers_the_original() {
        let request = EvaluateRequest {
            session_id: "s".into(),
            runner_auth: Some(RunnerAuthentication {
                identity: RunnerIdentity {
                    provider: "github-actions".into(),
                    ..Default::default()
                },
                algorithm: "OIDC-JWT".into(),
                key_id: "kid".into(),
                signature: "header.claims.signature".into(),
            }),
            ..Default::default()
        };
        let ts = "2026-05-18T12:00:00Z";
        let (line, response) = Chain::default().append((&request).into(), allow(), ts.into(), None);
        let line = String::from_utf8(line).unwrap();
        let original = r#"{"session_id":"s","runner_auth":{"identity":{"provider":"github-actions"},"algorithm":"OIDC-JWT","key_id":"kid","signature":"header.claims.signature"}}"#;
        assert!(
            line.contains(&original.replace("header.claims.signature", r"\u003credacted-oidc-jwt\u003e")),
            "{line}"
        );
        assert!(!line.contains("header.claims"), "{line}");
        let id_input = format!("{original}\n{{\"decision\":\"allow\",\"severity\":\"low\"}}\n\"{ts}\"\n");
        let id = &sha256_hex(id_input.as_bytes())[..24];
        assert_eq!(response.evidence_refs, vec![format!("go-daemon-evidence://{id}")]);

        // HMAC runner signatures are not credentials and are kept.
        let mut hmac_request = request.clone();
        hmac_request.runner_auth.as_mut().unwrap().algorithm = "HMAC-SHA256".into();
        let (line, _) = Chain::default().append((&hmac_request).into(), allow(), ts.into(), None);
        assert!(
            String::from_utf8(line)
                .unwrap()
                .contains(r#""signature":"header.claims.signature""#)
        );
    }

    #[test]
    fn extension_fields_are_not_stored() {
        let request: EvaluateRequest = serde_json::from_str(
            r#"{"action_type":"mcp_tool_call","target":"github:delete_repo","operation":"push","server":"github",
                "tool":"delete_repo","capability":"repo","record":{"metadata_kind":"x"}}"#,
        )
        .unwrap();
        let (line, _) = Chain::default().append((&request).into(), allow(), "t".into(), None);
        let record: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(
            record["request"],
            serde_json::json!({"action_type":"mcp_tool_call","target":"github:delete_repo"})
        );
    }

    /// The fixture was written by an independent implementation of the reference rules; rebuilding each record from
    /// its inputs must give the same bytes.
    #[test]
    fn records_match_the_independently_written_fixture_byte_for_byte() {
        // The OIDC token the fixture's redacted record was made from (see testdata/evidence/README.md).
        const OIDC_TOKEN: &str =
            "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3Qta2V5In0.eyJyZXBvc2l0b3J5IjoiSHV6ZWZhYWEyL2NhdnJhIn0.c2lnbmF0dXJl";
        let fixture = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/evidence/signed-chain.jsonl"
        ));
        let key = SigningKey::new(b"fixture-evidence-key".to_vec(), "fixture-2026");
        let mut chain = Chain::default();
        let mut redacted = 0;
        for expected in fixture.split_inclusive('\n') {
            let stored: serde_json::Value = serde_json::from_str(expected).unwrap();
            let mut request = stored["request"].clone();
            if request["runner_auth"]["algorithm"] == "OIDC-JWT" {
                assert_eq!(request["runner_auth"]["signature"], "<redacted-oidc-jwt>");
                request["runner_auth"]["signature"] = OIDC_TOKEN.into();
                redacted += 1;
            }
            let request: EvaluateRequest = serde_json::from_value(request).unwrap();
            let mut response = stored["response"].clone();
            let refs = response["evidence_refs"].as_array_mut().unwrap();
            assert!(refs.pop().unwrap().as_str().unwrap().starts_with(REF_PREFIX));
            let response: DecisionResponse = serde_json::from_value(response).unwrap();
            let timestamp = stored["timestamp"].as_str().unwrap().to_owned();

            let (line, _) = chain.append((&request).into(), response, timestamp, Some(&key));
            assert_eq!(String::from_utf8(line).unwrap(), expected);
        }
        assert_eq!((chain.sequence, redacted), (5, 1));
    }

    #[test]
    fn timestamps_are_rfc3339_nano_utc() {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(1_779_105_600_000_000_000).unwrap();
        assert_eq!(timestamp(at), "2026-05-18T12:00:00Z");
        assert_eq!(
            timestamp(at + time::Duration::nanoseconds(120_000_000)),
            "2026-05-18T12:00:00.12Z"
        );
        assert_eq!(
            timestamp(at + time::Duration::nanoseconds(7)),
            "2026-05-18T12:00:00.000000007Z"
        );
        let offset = (at + time::Duration::nanoseconds(1_500)).to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(timestamp(offset), "2026-05-18T12:00:00.0000015Z");
    }

    #[test]
    fn signatures_compare_case_insensitively_and_reject_garbage() {
        let key = SigningKey::new(b"k".to_vec(), "");
        let value = hex::encode(signature(&key, "p", "h"));
        assert_eq!(value, hmac_hex(b"k", "cavra.go-daemon.evidence.v1\np\nh"));
        assert!(signature_matches(&key, "p", "h", &value));
        assert!(signature_matches(&key, "p", "h", &value.to_uppercase()));
        assert!(!signature_matches(&key, "p", "x", &value));
        assert!(!signature_matches(&key, "p", "h", &value[..62]));
        assert!(!signature_matches(&key, "p", "h", "zz"));
    }
}
