//! One evidence record: its reference wire shape, id, redaction, chain hash and signature.

use std::io::Write as _;
use std::ops::Range;

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
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

/// The request as stored: the reference contract's fields, in its order, then the extensions the client sent that
/// the reference could not carry (docs/evidence.md). Extensions are omitted when empty, so a request that uses only
/// the reference's fields is stored exactly as the reference stores it and verifies under its rules. The verifier
/// re-serialises what it parsed, so every field here is covered by the hash, and a field it does not know breaks it.
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

    // Extensions (evidence v2): every input the decision depended on.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    operation: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    server: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    tool: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    capability: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    workspace_root: String,
}

impl From<EvaluateRequest> for RecordRequest {
    fn from(request: EvaluateRequest) -> Self {
        RecordRequest {
            session_id: request.session_id,
            agent_id: request.agent_id,
            actor: request.actor,
            action_type: request.action_type,
            target: request.target,
            requested_operation: request.requested_operation,
            policy_pack: request.policy_pack,
            release_governance: request.release_governance,
            runner_auth: request.runner_auth,
            operation: request.operation,
            server: request.server,
            tool: request.tool,
            capability: request.capability,
            record: request.record,
            workspace_root: request.workspace_root,
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
///
/// Everything is in one buffer, which goes back to the caller holding the response as stored, so the writer thread
/// frees nothing the caller allocated.
pub(crate) struct Prepared {
    /// The response as stored, then the request as received, then the request as stored when redaction changed it;
    /// all Go JSON.
    bytes: Vec<u8>,
    /// The response's last evidence reference is this record's, with `ID_PLACEHOLDER` as the id digits at `id_at`.
    /// Without the bytes in `added` it is the response as decided, which the record id covers.
    response_len: usize,
    id_at: usize,
    added: Range<usize>,
    /// The request as received (which the record id covers) and as stored.
    id_request: Range<usize>,
    stored_request: Range<usize>,
    /// References the response already carried (almost always none).
    refs: Vec<String>,
}

/// A sealed record's id, and its response exactly as stored.
pub(crate) struct Sealed {
    pub(crate) record_id: String,
    pub(crate) response: Vec<u8>,
}

impl Prepared {
    pub(crate) fn new(request: RecordRequest, response: &mut DecisionResponse) -> Prepared {
        let mut bytes = Vec::with_capacity(2048);
        let first_ref = response.evidence_refs.is_empty();
        // Encoded once, with the placeholder reference in place, which is then put back as it was.
        response.evidence_refs.push(PLACEHOLDER_REF.to_owned());
        encode::write(&mut bytes, &*response);
        response.evidence_refs.pop();
        let response_len = bytes.len();
        // The placeholder is the array's last element: nowhere else can its closing quote be followed by `]`
        // unescaped. Searched from the end, near which the references are; comparing the first byte first avoids a
        // call per position.
        let quoted = PLACEHOLDER_REF_CLOSING.as_bytes();
        let quote_at = (0..=response_len - quoted.len())
            .rev()
            .find(|&at| bytes[at] == b'"' && bytes[at..].starts_with(quoted))
            .expect("the placeholder reference is in the encoded response");
        // Every response has a decision before its references, so a comma always precedes them.
        let added = if first_ref {
            let key = b",\"evidence_refs\":[";
            debug_assert_eq!(&bytes[quote_at - key.len()..quote_at], key);
            quote_at - key.len()..quote_at + quoted.len()
        } else {
            debug_assert_eq!(bytes[quote_at - 1], b',');
            quote_at - 1..quote_at + quoted.len() - 1
        };

        encode::write(&mut bytes, &request);
        let id_request = response_len..bytes.len();
        let redacted = request.redacted();
        let stored_request = if redacted.is_redacted() {
            encode::write(&mut bytes, &redacted);
            id_request.end..bytes.len()
        } else {
            id_request.clone()
        };
        Prepared {
            bytes,
            response_len,
            id_at: quote_at + 1 + REF_PREFIX.len(),
            added,
            id_request,
            stored_request,
            refs: response.evidence_refs.clone(),
        }
    }

    /// The bytes the record takes besides its head, hash and signature.
    pub(crate) fn encoded_len(&self) -> usize {
        self.response_len + self.stored_request.len()
    }
}

/// The reference a response carries for the record `record_id`.
pub(crate) fn reference(record_id: &str) -> String {
    format!("{REF_PREFIX}{record_id}")
}

/// `reference(ID_PLACEHOLDER)`, and as it ends an encoded `evidence_refs` array.
const PLACEHOLDER_REF: &str = "go-daemon-evidence://000000000000000000000000";
const PLACEHOLDER_REF_CLOSING: &str = "\"go-daemon-evidence://000000000000000000000000\"]";

impl Chain {
    /// Appends to `out` the record that follows this chain (one line, with its `\n`) and advances the chain.
    pub(crate) fn seal(
        &mut self,
        prepared: Prepared,
        timestamp: &str,
        key: Option<&SigningKey>,
        out: &mut Vec<u8>,
    ) -> Sealed {
        let Prepared {
            mut bytes,
            response_len,
            id_at,
            added,
            id_request,
            stored_request,
            refs,
        } = prepared;
        let mut quoted_timestamp = Vec::with_capacity(timestamp.len() + 2);
        encode::write(&mut quoted_timestamp, timestamp);
        let timestamp = quoted_timestamp;
        let decided = [&bytes[..added.start], &bytes[added.end..response_len]];
        let record_id = record_id(&bytes[id_request], decided, &timestamp);
        // As the reference does, the response keeps a reference it already had rather than adding it twice; the id
        // covers the references already present, so in practice this never happens.
        let dropped = if refs.contains(&reference(&record_id)) {
            added
        } else {
            bytes[id_at..id_at + ID_PLACEHOLDER.len()].copy_from_slice(record_id.as_bytes());
            response_len..response_len
        };
        let response = [&bytes[..dropped.start], &bytes[dropped.end..response_len]];
        let request = &bytes[stored_request];
        let sequence = self.sequence + 1;

        // The hash covers the record without `record_hash`, which goes between the head and the body.
        let start = out.len();
        for part in [
            r#"{"schema_version":""#,
            SCHEMA_VERSION,
            r#"","product":""#,
            PRODUCT,
            r#"","event_type":""#,
            EVENT_TYPE,
            r#"","record_id":""#,
            &record_id,
            r#"","sequence":"#,
            itoa::Buffer::new().format(sequence),
        ] {
            out.extend_from_slice(part.as_bytes());
        }
        if !self.record_hash.is_empty() {
            for part in [r#","previous_hash":""#, &self.record_hash, "\""] {
                out.extend_from_slice(part.as_bytes());
            }
        }
        let body: [&[u8]; 7] = [
            b",\"timestamp\":",
            &timestamp,
            b",\"request\":",
            request,
            b",\"response\":",
            response[0],
            response[1],
        ];
        let mut hasher = Sha256::new();
        hasher.update(&out[start..]);
        for part in body {
            hasher.update(part);
        }
        hasher.update(b"}");
        let record_hash = hex::encode(hasher.finalize());

        for part in [r#","record_hash":""#, &record_hash, "\""] {
            out.extend_from_slice(part.as_bytes());
        }
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
        bytes.truncate(response_len);
        bytes.drain(dropped);
        Sealed {
            record_id,
            response: bytes,
        }
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
        let sealed = self.seal(prepared, &timestamp, key, &mut line);
        let reference = reference(&sealed.record_id);
        if !response.evidence_refs.contains(&reference) {
            response.evidence_refs.push(reference);
        }
        (line, response)
    }
}

/// First 24 hex digits of SHA-256 over the unredacted request, the response before its evidence reference (given
/// in two pieces) and the timestamp, each as Go's `json.Encoder` writes it (with a trailing newline).
fn record_id(request: &[u8], response: [&[u8]; 2], timestamp: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(request);
    hasher.update(b"\n");
    hasher.update(response[0]);
    hasher.update(response[1]);
    hasher.update(b"\n");
    hasher.update(timestamp);
    hasher.update(b"\n");
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
        let (line, response) = chain.append(request.clone().into(), allow(), ts.into(), Some(&key));

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
        let (line2, _) = chain.append(request.clone().into(), allow(), ts2.into(), None);
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

    /// The writer hands back the response bytes it stored, to answer with: with the new reference as the only one
    /// and after references the response already had, and with the characters Go escapes.
    #[test]
    fn the_sealed_response_is_the_stored_one_byte_for_byte() {
        let request = EvaluateRequest {
            target: "a&b".into(),
            ..Default::default()
        };
        for refs in [vec![], vec!["evidence://x".to_owned(), "evidence://<y>".to_owned()]] {
            let mut response = allow();
            response.reason = "<why>".into();
            response.evidence_refs = refs.clone();
            let decided = encode::to_vec(&response);
            let prepared = Prepared::new(request.clone().into(), &mut response);
            assert_eq!(response.evidence_refs, refs, "preparing leaves the response as it was");
            let mut line = Vec::new();
            let sealed = Chain::default().seal(prepared, "t", None, &mut line);

            let record: serde_json::Value = serde_json::from_slice(&line).unwrap();
            let mut stored = response.clone();
            stored.evidence_refs.push(reference(&sealed.record_id));
            assert_eq!(record["response"], serde_json::to_value(&stored).unwrap());
            assert_eq!(sealed.response, encode::to_vec(&stored));
            let text = String::from_utf8(line).unwrap();
            let encoded = String::from_utf8(sealed.response).unwrap();
            assert!(text.ends_with(&format!(",\"response\":{encoded}}}\n")), "{text}");
            assert!(encoded.contains(r#""reason":"\u003cwhy\u003e""#), "{encoded}");
            // The id covers the response as decided, without the new reference.
            let mut id_input = encode::to_vec(&RecordRequest::from(request.clone()));
            for part in [b"\n".as_slice(), &decided, b"\n\"t\"\n"] {
                id_input.extend_from_slice(part);
            }
            assert_eq!(sealed.record_id, sha256_hex(&id_input)[..24]);
        }
    }

    #[test]
    fn the_placeholder_constants_spell_the_placeholder_reference() {
        assert_eq!(PLACEHOLDER_REF, reference(ID_PLACEHOLDER));
        assert_eq!(PLACEHOLDER_REF_CLOSING, format!("\"{PLACEHOLDER_REF}\"]"));
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
        let (line, response) = Chain::default().append(request.clone().into(), allow(), ts.into(), None);
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
        let (line, _) = Chain::default().append(hmac_request.into(), allow(), ts.into(), None);
        assert!(
            String::from_utf8(line)
                .unwrap()
                .contains(r#""signature":"header.claims.signature""#)
        );
    }

    #[test]
    fn extension_fields_are_stored_after_the_reference_fields() {
        let request: EvaluateRequest = serde_json::from_str(
            r#"{"action_type":"mcp_tool_call","target":"github:delete_repo","operation":"push","server":"github",
                "tool":"delete_repo","capability":"repo","record":{"metadata_kind":"x","n":1.1},
                "workspace_root":"/repo","runner_auth":{"identity":{"provider":"p"}}}"#,
        )
        .unwrap();
        let (line, _) = Chain::default().append(request.into(), allow(), "t".into(), None);
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(
            text.contains(concat!(
                r#""request":{"action_type":"mcp_tool_call","target":"github:delete_repo","#,
                r#""runner_auth":{"identity":{"provider":"p"}},"operation":"push","server":"github","#,
                r#""tool":"delete_repo","capability":"repo","record":{"metadata_kind":"x","n":1.1},"#,
                r#""workspace_root":"/repo"}"#
            )),
            "{text}"
        );
        // What the verifier re-serialises is what was hashed.
        let mut parsed: EvidenceRecord = serde_json::from_slice(&line).unwrap();
        let stored = std::mem::take(&mut parsed.record_hash);
        assert_eq!(parsed.unsealed_hash(), stored);
    }

    #[test]
    fn response_extensions_are_stored_and_hashed() {
        let mut response = allow();
        response.normalized_target = ".env".into();
        response.requested_policy_pack = "cavra-eu-ai-act".into();
        let (line, stored) = Chain::default().append(RecordRequest::default(), response, "t".into(), None);
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(
            text.contains(r#""evidence_refs":["go-daemon-evidence://"#)
                && text.contains(r#""normalized_target":".env","requested_policy_pack":"cavra-eu-ai-act"}"#),
            "{text}"
        );
        assert_eq!(stored.normalized_target, ".env");
        let mut parsed: EvidenceRecord = serde_json::from_slice(&line).unwrap();
        let hash = std::mem::take(&mut parsed.record_hash);
        assert_eq!(parsed.unsealed_hash(), hash);
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

            let (line, _) = chain.append(request.clone().into(), response, timestamp, Some(&key));
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
