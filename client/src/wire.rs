//! The wire types: what a client sends (`EvaluateRequest`) and what the daemon answers (`DecisionResponse`,
//! `Health`), with their JSON. The daemon uses these very types, so a client and the daemon cannot disagree.
//!
//! Field names and their order follow the reference (Go) contract, so that existing clients, and evidence verifiers
//! that re-serialise records, see exactly the bytes they expect. Empty fields are omitted when serialising; `null` is
//! accepted wherever a value may be absent, as the reference decoder accepts it; unknown fields are ignored.
//!
//! [`Decision`] and [`Severity`] are open: a value a newer daemon sends that this version does not know reads as
//! `Unknown`, keeps its text, and is written back unchanged.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// One question to the policy engine: may this action happen?
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluateRequest {
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub session_id: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub agent_id: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub actor: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub action_type: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub requested_operation: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub policy_pack: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_governance: Option<ReleaseGovernanceEvidence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_auth: Option<RunnerAuthentication>,

    // Extensions the reference daemon's contract could not carry (its one-shot CLI could).
    /// Git operation (`push`, ...); takes precedence over `requested_operation`.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub operation: String,
    /// MCP server id; when empty, an MCP target written `server:tool` supplies it.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub server: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub tool: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub capability: String,
    /// Legacy, untyped release-governance record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Map<String, Value>>,
    /// The absolute workspace root relative file targets are judged against; absolute targets outside it are
    /// never allowed a write.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub workspace_root: String,
    /// The agent's name for the tool whose call this request asks about (`Bash`, `Write`, `mcp__github__search`),
    /// and the agent's id of that call: an auditor finds the call in the agent's transcript by them. Recorded, not
    /// decided on.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub tool_name: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub tool_use_id: String,
}

/// Typed release-governance evidence: the 26 fields of the reference contract, in its order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReleaseGovernanceEvidence {
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub metadata_kind: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub release_channel: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub release_version: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub approval_state: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub approval_id: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub approval_required_count: i32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_false")]
    pub delivery_success: bool,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub failed_providers: Vec<String>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub failed_delivery_count: i32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub connector_delivery_failure_count: i32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub alert_level: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub drift_status: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub handoff_status: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub blocked_count: i32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub critical_count: i32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub breached_count: i32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub drifted_endpoint_count: i32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub missing_target_count: i32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub evidence_refs: Vec<String>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub connector_delivery_source: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub verification_status: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub integrity_status: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub failed_verification_count: i32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub integrity_failure_count: i32,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub audit_export_status: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub rollback_reference_count: i32,
}

/// Proof that a CI runner is who it says it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunnerAuthentication {
    /// Always serialised, even when empty, as the reference does.
    #[serde(default, deserialize_with = "nullable")]
    pub identity: RunnerIdentity,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub algorithm: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub key_id: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub signature: String,

    // Extensions for runner auth v2 (docs/protocol.md; `runner_auth` signs them): when the signature was made, and a random value that
    // makes it single-use. Absent in the reference's (v1) credentials.
    /// Unix seconds.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero_i64")]
    pub issued_at: i64,
    /// Lower-case hex of at least 16 random bytes.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub nonce: String,
}

/// Who the CI runner claims to be.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerIdentity {
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub provider: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub repository: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub workflow: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub run_attempt: String,
    #[serde(
        default,
        rename = "ref",
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub git_ref: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub sha: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub actor: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub job: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub runner_name: String,
}

impl RunnerIdentity {
    /// Each field with its JSON name, in the order the runner signature covers them.
    pub fn fields(&self) -> [(&'static str, &str); 10] {
        [
            ("provider", &self.provider),
            ("repository", &self.repository),
            ("workflow", &self.workflow),
            ("run_id", &self.run_id),
            ("run_attempt", &self.run_attempt),
            ("ref", &self.git_ref),
            ("sha", &self.sha),
            ("actor", &self.actor),
            ("job", &self.job),
            ("runner_name", &self.runner_name),
        ]
    }
}

/// The answer to an [`EvaluateRequest`]. A caller that enforces should allow only on [`Decision::Allow`] and treat
/// anything else, `Unknown` included, as not allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Decision {
    Allow,
    Block,
    RequireApproval,
    /// A value this version does not know, as it was sent.
    Unknown(String),
}

impl Decision {
    pub fn as_str(&self) -> &str {
        match self {
            Decision::Allow => "allow",
            Decision::Block => "block",
            Decision::RequireApproval => "require_approval",
            Decision::Unknown(text) => text,
        }
    }

    /// Whether the action may happen: only an explicit allow says so.
    pub fn is_allow(&self) -> bool {
        *self == Decision::Allow
    }
}

impl From<&str> for Decision {
    fn from(text: &str) -> Self {
        match text {
            "allow" => Decision::Allow,
            "block" => Decision::Block,
            "require_approval" => Decision::RequireApproval,
            other => Decision::Unknown(other.to_owned()),
        }
    }
}

/// How much a decision matters, lowest first. `Unknown` sorts after every known value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
    /// A value this version does not know, as it was sent.
    Unknown(String),
}

impl Severity {
    pub fn as_str(&self) -> &str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
            Severity::Unknown(text) => text,
        }
    }
}

impl From<&str> for Severity {
    fn from(text: &str) -> Self {
        match text {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            other => Severity::Unknown(other.to_owned()),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Both enums are JSON strings: known ones by their name, unknown ones by the text they arrived with.
macro_rules! string_serde {
    ($type:ident, $expecting:literal) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Text;
                impl Visitor<'_> for Text {
                    type Value = $type;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$type, E> {
                        Ok($type::from(text))
                    }
                }
                deserializer.deserialize_str(Text)
            }
        }
    };
}

string_serde!(Decision, "a decision (a string such as \"allow\")");
string_serde!(Severity, "a severity (a string such as \"high\")");

/// A decision with the metadata an auditor needs to trace it. Field order is the reference wire order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionResponse {
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub decision_id: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub session_id: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub agent_id: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub actor: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub action_type: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub target: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub requested_operation: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub policy_pack: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub policy_id: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub rule_id: String,
    pub decision: Decision,
    pub severity: Severity,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub evidence_refs: Vec<String>,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub approver_group: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub timestamp: String,
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub correlation_id: String,

    // Extensions: empty (and so absent) for every request that uses only the reference's fields.
    /// The target as the engine read it (a normalised path), when it differs from `target` as sent.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub normalized_target: String,
    /// The pack the request named, when another pack decided it (a pack pinned by the operator).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub requested_policy_pack: String,
}

/// The answer to `{"action_type":"cavra.health"}`: no policy is evaluated and no evidence is recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub uptime_seconds: u64,
    pub pid: u32,
    pub policy_source: String,
    pub default_pack: String,
    pub packs: usize,
    pub policy_digest: String,
}

pub const HEALTH_ACTION: &str = "cavra.health";

/// How the daemon's last policy reload ended, in its health answer (`last_reload`): each reload (SIGHUP) gets the
/// next `generation`, so a client that triggered one can tell when it is done and whether it worked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    pub generation: u64,
    /// `success` or `failure`.
    pub result: String,
    /// When it ended.
    pub at: String,
    /// Why it failed (the previous policy stays in force).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The request for the daemon's metrics; answered with a [`MetricsAnswer`].
pub const METRICS_ACTION: &str = "cavra.metrics";

/// The daemon's metrics in the Prometheus text format, as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsAnswer {
    pub content_type: String,
    pub metrics: String,
}

/// The first line of a stream-mode connection, and the server's answer to it.
pub const STREAM_PROTOCOL: &str = "cavra.ndjson.v1";

/// Accepts `null` as the type's empty value.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

fn is_zero_i64(value: &i64) -> bool {
    *value == 0
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ignores_unknown_fields_and_accepts_null() {
        let request: EvaluateRequest = serde_json::from_str(
            r#"{"action_type":"read_file","target":null,"future_field":{"x":1},"runner_auth":{"identity":null}}"#,
        )
        .unwrap();
        assert_eq!(request.action_type, "read_file");
        assert_eq!(request.target, "");
        assert_eq!(request.runner_auth.unwrap().identity, RunnerIdentity::default());
    }

    #[test]
    fn request_rejects_wrong_types_with_position() {
        let error = serde_json::from_str::<EvaluateRequest>(r#"{"target": 5}"#).unwrap_err();
        assert!(error.to_string().contains("line 1 column"), "{error}");
    }

    #[test]
    fn release_governance_round_trips_all_26_fields_in_contract_order() {
        let names = [
            "metadata_kind",
            "release_channel",
            "release_version",
            "approval_state",
            "approval_id",
            "approval_required_count",
            "delivery_success",
            "failed_providers",
            "failed_delivery_count",
            "connector_delivery_failure_count",
            "alert_level",
            "drift_status",
            "handoff_status",
            "blocked_count",
            "critical_count",
            "breached_count",
            "drifted_endpoint_count",
            "missing_target_count",
            "evidence_refs",
            "connector_delivery_source",
            "verification_status",
            "integrity_status",
            "failed_verification_count",
            "integrity_failure_count",
            "audit_export_status",
            "rollback_reference_count",
        ];
        let mut object = Map::new();
        for (index, name) in names.iter().enumerate() {
            let value = match *name {
                "delivery_success" => Value::Bool(true),
                "failed_providers" | "evidence_refs" => Value::from(vec![format!("v{index}")]),
                n if n.ends_with("_count") => Value::from(index as i64 + 1),
                _ => Value::from(format!("v{index}")),
            };
            object.insert((*name).to_owned(), value);
        }
        let typed: ReleaseGovernanceEvidence = serde_json::from_value(Value::Object(object.clone())).unwrap();
        let written = serde_json::to_string(&typed).unwrap();
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&written)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        // serde_json's Map sorts keys unless preserve_order is on, so check order on the raw text instead.
        let mut last = 0;
        for name in names {
            let at = written
                .find(&format!("\"{name}\":"))
                .unwrap_or_else(|| panic!("{name} missing"));
            assert!(at >= last, "{name} out of order in {written}");
            last = at;
        }
        assert_eq!(keys.len(), 26);
        assert_eq!(serde_json::to_value(&typed).unwrap(), Value::Object(object));
    }

    #[test]
    fn empty_fields_are_omitted_and_identity_is_always_written() {
        let request = EvaluateRequest {
            action_type: "execute_command".into(),
            runner_auth: Some(RunnerAuthentication {
                algorithm: "HMAC-SHA256".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"action_type":"execute_command","runner_auth":{"identity":{},"algorithm":"HMAC-SHA256"}}"#
        );
    }

    #[test]
    fn runner_auth_v2_fields_follow_the_reference_four() {
        let auth: RunnerAuthentication = serde_json::from_str(
            r#"{"nonce":"ab","issued_at":1800000000,"signature":"s","algorithm":"HMAC-SHA256","identity":null}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&auth).unwrap(),
            r#"{"identity":{},"algorithm":"HMAC-SHA256","signature":"s","issued_at":1800000000,"nonce":"ab"}"#
        );
    }

    #[test]
    fn response_serialises_in_reference_order() {
        let response = DecisionResponse {
            decision_id: "dec_1".into(),
            session_id: "s".into(),
            agent_id: "a".into(),
            actor: "ai-agent".into(),
            action_type: "read_file".into(),
            target: ".env".into(),
            requested_operation: "read".into(),
            policy_pack: "p".into(),
            policy_id: "p".into(),
            rule_id: "filesystem.read.block".into(),
            decision: Decision::Block,
            severity: Severity::High,
            reason: "r".into(),
            evidence_refs: vec!["evidence://s/dec_1".into()],
            approver_group: String::new(),
            timestamp: "t".into(),
            correlation_id: "corr_1".into(),
            normalized_target: String::new(),
            requested_policy_pack: String::new(),
        };
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            concat!(
                r#"{"decision_id":"dec_1","session_id":"s","agent_id":"a","actor":"ai-agent","action_type":"read_file","#,
                r#""target":".env","requested_operation":"read","policy_pack":"p","policy_id":"p","#,
                r#""rule_id":"filesystem.read.block","decision":"block","severity":"high","reason":"r","#,
                r#""evidence_refs":["evidence://s/dec_1"],"timestamp":"t","correlation_id":"corr_1"}"#
            )
        );
    }

    #[test]
    fn known_decisions_and_severities_are_written_as_before() {
        for (decision, text) in [
            (Decision::Allow, "allow"),
            (Decision::Block, "block"),
            (Decision::RequireApproval, "require_approval"),
        ] {
            assert_eq!(serde_json::to_string(&decision).unwrap(), format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<Decision>(&format!("\"{text}\"")).unwrap(),
                decision
            );
        }
        for (severity, text) in [
            (Severity::Low, "low"),
            (Severity::Medium, "medium"),
            (Severity::High, "high"),
            (Severity::Critical, "critical"),
        ] {
            assert_eq!(serde_json::to_string(&severity).unwrap(), format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<Severity>(&format!("\"{text}\"")).unwrap(),
                severity
            );
        }
        // Escapes are the same string to JSON, and so the same value.
        assert_eq!(
            serde_json::from_str::<Decision>(r#""\u0061llow""#).unwrap(),
            Decision::Allow
        );
        assert!(Severity::Low < Severity::Medium && Severity::High < Severity::Critical);
    }

    #[test]
    fn unknown_decisions_and_severities_keep_their_text_and_round_trip() {
        let sent = r#"{"rule_id":"x.y","decision":"defer","severity":"catastrophic","reason":"later"}"#;
        let response: DecisionResponse = serde_json::from_str(sent).unwrap();
        assert_eq!(response.decision, Decision::Unknown("defer".into()));
        assert_eq!(response.severity, Severity::Unknown("catastrophic".into()));
        assert!(!response.decision.is_allow());
        assert_eq!(response.decision.to_string(), "defer");
        assert_eq!(serde_json::to_string(&response).unwrap(), sent);
        // Case matters, as it does to the reference: "Allow" is not an allow.
        assert_eq!(
            serde_json::from_str::<Decision>(r#""Allow""#).unwrap(),
            Decision::Unknown("Allow".into())
        );
        assert!(Severity::Critical < Severity::Unknown("catastrophic".into()));
    }

    #[test]
    fn a_decision_that_is_not_a_string_is_an_error_naming_what_was_expected() {
        let error = serde_json::from_str::<DecisionResponse>(r#"{"decision":1,"severity":"low"}"#).unwrap_err();
        assert!(
            error.to_string().contains("a decision (a string such as \"allow\")"),
            "{error}"
        );
        let error = serde_json::from_str::<DecisionResponse>(r#"{"decision":"allow"}"#).unwrap_err();
        assert!(error.to_string().contains("missing field `severity`"), "{error}");
    }
}
