//! One evidence record: its reference wire shape, id, redaction, chain hash and signature; and the link record that
//! starts a file continuing the chain of an earlier one.

use std::io::Write as _;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::SigningKey;
use super::encode;
use crate::auth::Peer;
use crate::contract::{DecisionResponse, EvaluateRequest, ReleaseGovernanceEvidence, RunnerAuthentication, nullable};

pub(crate) const SCHEMA_VERSION: &str = "cavra.go-daemon.evidence.v1";
const PRODUCT: &str = "CAVRA";
const EVENT_TYPE: &str = "cavra.go_daemon.decision";
/// The event type of a link record (see [`Link`]).
pub(crate) const LINK_EVENT_TYPE: &str = "cavra.runtime.evidence.link";
const REF_PREFIX: &str = "go-daemon-evidence://";
const OIDC_ALGORITHM: &str = "OIDC-JWT";
const REDACTED_OIDC_TOKEN: &str = "<redacted-oidc-jwt>";
const REDACTED_HMAC: &str = "<redacted-hmac>";

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
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    tool_name: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    tool_use_id: String,
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
            tool_name: request.tool_name,
            tool_use_id: request.tool_use_id,
        }
    }
}

impl RecordRequest {
    /// A credential is never kept: an OIDC token is a bearer credential until it expires, and an HMAC signature
    /// (the reference's identity-only v1 signature in particular) could be attached to another request. Whatever
    /// else a signature claims to be is redacted as HMAC: its algorithm field is not covered by any signature.
    fn redacted(mut self) -> Self {
        if let Some(auth) = &mut self.runner_auth {
            if auth.algorithm == OIDC_ALGORITHM {
                auth.signature = REDACTED_OIDC_TOKEN.to_owned();
            } else if !auth.signature.is_empty() {
                auth.signature = REDACTED_HMAC.to_owned();
            }
        }
        self
    }

    fn is_redacted(&self) -> bool {
        self.runner_auth
            .as_ref()
            .is_some_and(|auth| auth.algorithm == OIDC_ALGORITHM || !auth.signature.is_empty())
    }
}

/// One line of the stream, fields in reference order. Parsing is as lenient as Go's: absent or `null` fields take
/// their empty value and unknown fields are dropped.
///
/// A decision record always has a request and a response (the verifier gives a decision record without a request
/// an empty one, as Go does); a link record has neither, and a `link` instead.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EvidenceRecord {
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) schema_version: String,
    #[serde(default, deserialize_with = "nullable")]
    product: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) event_type: String,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) request: Option<RecordRequest>,
    /// Who asked (an extension: absent in the reference's records and in records written without a peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) peer: Option<RecordPeer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) response: Option<DecisionResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) link: Option<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signature: Option<Signature>,
}

/// The process that asked, as the kernel reported it when it connected (`SO_PEERCRED`): set by the daemon, never
/// taken from the request. The pid is absent where the platform does not report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPeer {
    #[serde(default, deserialize_with = "nullable")]
    pub uid: u32,
    #[serde(default, deserialize_with = "nullable")]
    pub gid: u32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
}

impl From<&Peer> for RecordPeer {
    fn from(peer: &Peer) -> Self {
        RecordPeer {
            uid: peer.uid,
            gid: peer.gid,
            pid: peer.pid,
        }
    }
}

/// What the first record of a file that continues a chain says about the file before it: where that file's chain
/// ended, and why recording moved on. The link record itself continues the chain (its sequence is one more, its
/// `previous_hash` that record's hash), so a set of files is one chain; the link lets each file be checked on its
/// own and the set be put back in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    #[serde(default, deserialize_with = "nullable")]
    pub previous_sequence: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub previous_record_hash: String,
    /// `rotation` (the path names a new file, the old one lives on under another name), `deleted` (the old file is
    /// gone), `replaced` (another file was put at the path; it was set aside), `modified` (the old file was cut
    /// short or written to by someone else; set aside), `recovered` (--evidence-recover set a log that did not
    /// verify aside).
    #[serde(default, deserialize_with = "nullable")]
    pub reason: String,
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
    /// `,"peer":{…}` when the record names who asked; empty otherwise.
    peer: Range<usize>,
    /// References the response already carried (almost always none).
    refs: Vec<String>,
}

/// A sealed record's id, place in the chain and hash, and its response exactly as stored.
pub(crate) struct Sealed {
    pub(crate) record_id: String,
    pub(crate) sequence: i64,
    pub(crate) record_hash: String,
    pub(crate) response: Vec<u8>,
    /// The whole record as written, without its newline (only when asked for: see `EvidenceConfig::record_lines`).
    pub(crate) line: Option<Vec<u8>>,
}

impl Prepared {
    pub(crate) fn new(request: RecordRequest, response: &mut DecisionResponse, peer: Option<&RecordPeer>) -> Prepared {
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
        let peer_start = bytes.len();
        if let Some(peer) = peer {
            bytes.extend_from_slice(b",\"peer\":");
            encode::write(&mut bytes, peer);
        }
        let peer = peer_start..bytes.len();
        Prepared {
            bytes,
            response_len,
            id_at: quote_at + 1 + REF_PREFIX.len(),
            added,
            id_request,
            stored_request,
            peer,
            refs: response.evidence_refs.clone(),
        }
    }

    /// The bytes the record takes besides its head, hash and signature.
    pub(crate) fn encoded_len(&self) -> usize {
        self.response_len + self.stored_request.len() + self.peer.len()
    }
}

/// The most a decision record takes besides its request, peer and response (see [`Prepared::encoded_len`]): its
/// head with the largest sequence, both hashes, the longest timestamp, and a signature by `key`.
pub(crate) fn record_overhead(key: Option<&SigningKey>) -> usize {
    const LONGEST_TIMESTAMP: &str = "\"2026-05-18T12:00:00.123456789Z\"";
    let head = [
        r#"{"schema_version":""#,
        SCHEMA_VERSION,
        r#"","product":""#,
        PRODUCT,
        r#"","event_type":""#,
        EVENT_TYPE,
        r#"","record_id":""#,
        ID_PLACEHOLDER,
        r#"","sequence":"#,
        "-9223372036854775808",
        r#","previous_hash":""#,
        r#"","record_hash":""#,
        r#"","timestamp":"#,
        LONGEST_TIMESTAMP,
        r#","request":"#,
        r#","response":"#,
        "}\n",
    ]
    .iter()
    .map(|part| part.len())
    .sum::<usize>()
        + 2 * 64;
    let signature = key.map_or(0, |key| {
        let key_id = if key.key_id().is_empty() {
            0
        } else {
            r#","key_id":"#.len() + encode::to_vec(key.key_id()).len()
        };
        let value = key.sign(b"").len();
        r#","signature":{"algorithm":""#.len() + key.algorithm().len() + key_id + r#"","value":""#.len() + value + 2
    });
    head + signature
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
            peer,
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
        let peer = &bytes[peer];
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
        let body: [&[u8]; 8] = [
            b",\"timestamp\":",
            &timestamp,
            b",\"request\":",
            request,
            peer,
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
        let record_hash = encode::lower_hex(&hasher.finalize());

        for part in [r#","record_hash":""#, &record_hash, "\""] {
            out.extend_from_slice(part.as_bytes());
        }
        for part in body {
            out.extend_from_slice(part);
        }
        if let Some(key) = key {
            out.extend_from_slice(br#","signature":{"algorithm":""#);
            out.extend_from_slice(key.algorithm().as_bytes());
            out.push(b'"');
            if !key.key_id().is_empty() {
                out.extend_from_slice(br#","key_id":"#);
                out.extend_from_slice(&encode::to_vec(key.key_id()));
            }
            let value = key.sign(&signed_message(&self.record_hash, &record_hash));
            let _ = write!(out, r#","value":"{value}"}}"#);
        }
        out.extend_from_slice(b"}\n");
        self.sequence = sequence;
        self.record_hash.clone_from(&record_hash);
        bytes.truncate(response_len);
        bytes.drain(dropped);
        Sealed {
            record_id,
            sequence,
            record_hash,
            response: bytes,
            line: None,
        }
    }

    /// Appends to `out` a link record saying that this chain continues here after a file that ended with the
    /// chain's last record, and advances the chain past it. Only for a chain that has a record to link to.
    pub(crate) fn seal_link(&mut self, reason: &str, timestamp: &str, key: Option<&SigningKey>, out: &mut Vec<u8>) {
        debug_assert!(self.sequence > 0, "a link needs a record to link to");
        let link = Link {
            previous_sequence: self.sequence,
            previous_record_hash: self.record_hash.clone(),
            reason: reason.to_owned(),
        };
        let mut id_input = encode::to_vec(&link);
        id_input.push(b'\n');
        encode::write(&mut id_input, timestamp);
        id_input.push(b'\n');
        let mut record_id = hex::encode(Sha256::digest(&id_input));
        record_id.truncate(ID_PLACEHOLDER.len());
        let mut record = EvidenceRecord {
            schema_version: SCHEMA_VERSION.to_owned(),
            product: PRODUCT.to_owned(),
            event_type: LINK_EVENT_TYPE.to_owned(),
            record_id,
            sequence: self.sequence + 1,
            previous_hash: self.record_hash.clone(),
            record_hash: String::new(),
            timestamp: timestamp.to_owned(),
            request: None,
            peer: None,
            response: None,
            link: Some(link),
            signature: None,
        };
        let record_hash = record.unsealed_hash();
        record.signature = key.map(|key| Signature {
            algorithm: key.algorithm().to_owned(),
            key_id: key.key_id().to_owned(),
            value: key.sign(&signed_message(&self.record_hash, &record_hash)),
        });
        record.record_hash.clone_from(&record_hash);
        encode::write(out, &record);
        out.push(b'\n');
        self.sequence += 1;
        self.record_hash = record_hash;
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
        let prepared = Prepared::new(request, &mut response, None);
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
    encode::lower_hex(&hasher.finalize()[..ID_PLACEHOLDER.len() / 2])
}

/// What a record's signature covers, with either algorithm: the schema version, the previous hash and the record
/// hash, one per line.
pub(crate) fn signed_message(previous_hash: &str, record_hash: &str) -> Vec<u8> {
    [SCHEMA_VERSION, "\n", previous_hash, "\n", record_hash]
        .concat()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::RunnerIdentity;
    use crate::contract::timestamp;
    use crate::evidence::VerifyingKeys;

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn hmac_hex(key: &[u8], message: &str) -> String {
        use hmac::{Hmac, KeyInit as _, Mac as _};
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
            let prepared = Prepared::new(request.clone().into(), &mut response, None);
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
                ..Default::default()
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

        // HMAC runner signatures are credentials too (v1 ones replayable on any request): redacted, under any
        // algorithm name but OIDC's; the id still covers the signature as received.
        for algorithm in ["HMAC-SHA256", "hmac-sha256"] {
            let mut hmac_request = request.clone();
            let auth = hmac_request.runner_auth.as_mut().unwrap();
            auth.algorithm = algorithm.into();
            auth.signature = "0f".repeat(32);
            auth.issued_at = 1_800_000_000;
            auth.nonce = "ab".repeat(16);
            let (line, response) = Chain::default().append(hmac_request.clone().into(), allow(), ts.into(), None);
            let line = String::from_utf8(line).unwrap();
            assert!(!line.contains(&"0f".repeat(32)), "{line}");
            let stored = format!(
                r#""runner_auth":{{"identity":{{"provider":"github-actions"}},"algorithm":"{algorithm}","key_id":"kid","signature":"\u003credacted-hmac\u003e","issued_at":1800000000,"nonce":"{}"}}"#,
                "ab".repeat(16)
            );
            assert!(line.contains(&stored), "{line}");
            let original = String::from_utf8(encode::to_vec(&RecordRequest::from(hmac_request))).unwrap();
            let id_input = format!("{original}\n{{\"decision\":\"allow\",\"severity\":\"low\"}}\n\"{ts}\"\n");
            let id = &sha256_hex(id_input.as_bytes())[..24];
            assert_eq!(response.evidence_refs, vec![format!("go-daemon-evidence://{id}")]);
        }
        // Nothing to redact without a signature.
        let mut unsigned = request.clone();
        let auth = unsigned.runner_auth.as_mut().unwrap();
        auth.algorithm = "HMAC-SHA256".into();
        auth.signature.clear();
        let (line, _) = Chain::default().append(unsigned.into(), allow(), ts.into(), None);
        assert!(!String::from_utf8(line).unwrap().contains("redacted"));
    }

    #[test]
    fn extension_fields_are_stored_after_the_reference_fields() {
        let request: EvaluateRequest = serde_json::from_str(
            r#"{"action_type":"mcp_tool_call","target":"github:delete_repo","operation":"push","server":"github",
                "tool":"delete_repo","capability":"repo","record":{"metadata_kind":"x","n":1.1},
                "workspace_root":"/repo","runner_auth":{"identity":{"provider":"p"}},"tool_name":"mcp__github__delete_repo",
                "tool_use_id":"toolu_01"}"#,
        )
        .unwrap();
        let (line, _) = Chain::default().append(request.into(), allow(), "t".into(), None);
        let text = String::from_utf8(line.clone()).unwrap();
        assert!(
            text.contains(concat!(
                r#""request":{"action_type":"mcp_tool_call","target":"github:delete_repo","#,
                r#""runner_auth":{"identity":{"provider":"p"}},"operation":"push","server":"github","#,
                r#""tool":"delete_repo","capability":"repo","record":{"metadata_kind":"x","n":1.1},"#,
                r#""workspace_root":"/repo","tool_name":"mcp__github__delete_repo","tool_use_id":"toolu_01"}"#
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

    /// Who asked is stored after the request and before the response, hashed and signed with the rest; the verifier
    /// knows the field, so such a record is as written, and changing the peer breaks its hash.
    #[test]
    fn the_peer_is_stored_between_request_and_response_and_covered_by_the_hash() {
        let key = SigningKey::new(b"k".to_vec(), "id1");
        let request = EvaluateRequest {
            action_type: "read_file".into(),
            target: ".env".into(),
            ..Default::default()
        };
        let seal = |peer: &RecordPeer| {
            let mut response = allow();
            let prepared = Prepared::new(request.clone().into(), &mut response, Some(peer));
            let mut line = Vec::new();
            Chain::default().seal(prepared, "t", Some(&key), &mut line);
            String::from_utf8(line).unwrap()
        };
        let line = seal(&RecordPeer {
            uid: 1000,
            gid: 100,
            pid: Some(4242),
        });
        assert!(
            line.contains(concat!(
                r#""request":{"action_type":"read_file","target":".env"},"#,
                r#""peer":{"uid":1000,"gid":100,"pid":4242},"response":{"decision":"allow""#
            )),
            "{line}"
        );
        // Root is uid 0, which is written; a pid the platform did not report is not.
        let root = seal(&RecordPeer {
            uid: 0,
            gid: 0,
            pid: None,
        });
        assert!(root.contains(r#","peer":{"uid":0,"gid":0},"response":"#), "{root}");

        let dir = tempfile::tempdir().unwrap();
        let keys = VerifyingKeys::of(&key);
        let verify = |text: &str| {
            let path = dir.path().join("evidence.jsonl");
            std::fs::write(&path, text).unwrap();
            crate::evidence::verify_file(&path, &keys).unwrap()
        };
        for written in [&line, &root] {
            let report = verify(written);
            assert!(report.valid && report.signed_records == 1, "{report:?}");
        }
        let tampered = verify(&line.replace(r#""uid":1000"#, r#""uid":0"#));
        assert_eq!(tampered.errors, ["record 1 hash mismatch"]);
        let added = verify(&line.replace(r#""pid":4242"#, r#""pid":4242,"comm":"sh""#));
        assert!(
            added.errors.iter().any(|error| error.contains("is not as written")),
            "a field the verifier does not know is not covered by the hash: {added:?}"
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
            let hmac = request["runner_auth"]["algorithm"] == "HMAC-SHA256";
            let request: EvaluateRequest = serde_json::from_value(request).unwrap();
            let mut response = stored["response"].clone();
            let refs = response["evidence_refs"].as_array_mut().unwrap();
            assert!(refs.pop().unwrap().as_str().unwrap().starts_with(REF_PREFIX));
            let response: DecisionResponse = serde_json::from_value(response).unwrap();
            let timestamp = stored["timestamp"].as_str().unwrap().to_owned();

            let (line, _) = chain.append(request.clone().into(), response, timestamp, Some(&key));
            if !hmac {
                assert_eq!(String::from_utf8(line).unwrap(), expected);
                continue;
            }
            // The reference kept HMAC signatures; this writer redacts them. The rest of the record is the same, and
            // so is its id, which covers the request as received.
            let ours: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(ours["request"]["runner_auth"]["signature"], "<redacted-hmac>");
            for field in ["record_id", "sequence", "previous_hash", "timestamp", "response"] {
                assert_eq!(ours[field], stored[field], "{field}");
            }
            let without_signature = |mut record: serde_json::Value| {
                record["request"]["runner_auth"]["signature"] = serde_json::Value::Null;
                record["request"].clone()
            };
            assert_eq!(without_signature(ours), without_signature(stored));
            redacted += 1;
        }
        assert_eq!(
            (chain.sequence, redacted),
            (5, 2),
            "the fixture's last record is the HMAC one"
        );
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
        let keys = VerifyingKeys::of(&key);
        let message = signed_message("p", "h");
        let value = key.sign(&message);
        assert_eq!(value, hmac_hex(b"k", "cavra.go-daemon.evidence.v1\np\nh"));
        let problems = |value: &str, message: &[u8]| keys.problems("HMAC-SHA256", "", value, message);
        assert!(problems(&value, &message).is_empty());
        assert!(problems(&value.to_uppercase(), &message).is_empty());
        for (value, message) in [
            (value.as_str(), signed_message("p", "x")),
            (&value[..62], message.clone()),
            ("zz", message.clone()),
        ] {
            assert_eq!(problems(value, &message), ["signature mismatch"]);
        }
    }

    #[test]
    fn a_link_record_continues_the_chain_and_names_where_the_last_file_ended() {
        let key = SigningKey::new(b"k".to_vec(), "id1");
        let mut chain = Chain::default();
        let request = EvaluateRequest::default();
        chain.append(request.clone().into(), allow(), "t1".into(), Some(&key));
        let before = chain.clone();
        let mut line = Vec::new();
        chain.seal_link("rotation", "2026-05-18T12:00:00Z", Some(&key), &mut line);
        let text = String::from_utf8(line).unwrap();
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        let link_json = format!(
            r#"{{"previous_sequence":1,"previous_record_hash":"{}","reason":"rotation"}}"#,
            before.record_hash
        );
        let id = &sha256_hex(format!("{link_json}\n\"2026-05-18T12:00:00Z\"\n").as_bytes())[..24];
        let unsealed = format!(
            concat!(
                r#"{{"schema_version":"cavra.go-daemon.evidence.v1","product":"CAVRA","#,
                r#""event_type":"cavra.runtime.evidence.link","record_id":"{id}","sequence":2,"#,
                r#""previous_hash":"{previous}","timestamp":"2026-05-18T12:00:00Z","link":{link}}}"#
            ),
            id = id,
            previous = before.record_hash,
            link = link_json
        );
        let hash = sha256_hex(unsealed.as_bytes());
        let sig = hmac_hex(
            b"k",
            &format!("cavra.go-daemon.evidence.v1\n{}\n{hash}", before.record_hash),
        );
        let expected = unsealed
            .replace(r#","timestamp""#, &format!(r#","record_hash":"{hash}","timestamp""#))
            .strip_suffix('}')
            .unwrap()
            .to_owned()
            + &format!(r#","signature":{{"algorithm":"HMAC-SHA256","key_id":"id1","value":"{sig}"}}}}"#)
            + "\n";
        assert_eq!(text, expected);
        assert_eq!(record["link"]["previous_sequence"], 1);
        assert_eq!(
            chain,
            Chain {
                sequence: 2,
                record_hash: hash
            }
        );
        // The next decision follows the link record.
        let (next, _) = chain.append(request.into(), allow(), "t3".into(), None);
        let next: serde_json::Value = serde_json::from_slice(&next).unwrap();
        assert_eq!(next["sequence"], 3);
        assert_eq!(next["previous_hash"], record["record_hash"]);
    }

    #[test]
    fn ed25519_signatures_are_hex_over_the_same_message() {
        // RFC 8032's first test key (see key.rs).
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
        let key = SigningKey::ed25519(private.as_bytes(), Some("site-1")).unwrap();
        let (line, _) = Chain::default().append(EvaluateRequest::default().into(), allow(), "t".into(), Some(&key));
        let record: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(record["signature"]["algorithm"], "Ed25519");
        assert_eq!(record["signature"]["key_id"], "site-1");
        let value = record["signature"]["value"].as_str().unwrap();
        assert_eq!(value.len(), 128);
        let message = signed_message("", record["record_hash"].as_str().unwrap());
        let keys = VerifyingKeys::of(&key);
        assert!(keys.problems("Ed25519", "site-1", value, &message).is_empty());
    }
}
