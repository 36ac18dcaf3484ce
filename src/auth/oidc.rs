//! OIDC runner tokens: RS256 JWTs from a CI provider, checked against the provider's JWKS.
//!
//! The signature is verified before any claim is read for a decision, unlike the reference, which compared claims
//! first. The key set comes from a file or a URL; a fetch that fails is retried on a later request with growing
//! back-off, and the last key set that loaded stays in use meanwhile.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq as _;

use crate::contract::RunnerIdentity;

/// The largest key set read from a URL.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// After a good fetch, a token naming an unknown key may trigger another fetch only this often.
const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("runner OIDC token must be a compact JWT")]
    NotCompact,
    #[error("runner OIDC header is not base64url: {0}")]
    HeaderEncoding(String),
    #[error("runner OIDC claims are not base64url: {0}")]
    ClaimsEncoding(String),
    #[error("runner OIDC signature is not base64url: {0}")]
    SignatureEncoding(String),
    #[error("runner OIDC header is not JSON: {0}")]
    HeaderJson(String),
    #[error("runner OIDC claims are not JSON: {0}")]
    ClaimsJson(String),
    #[error("runner OIDC alg {0:?} is not supported; expected RS256")]
    Algorithm(String),
    #[error("runner OIDC token requires kid header")]
    Kid,
    #[error("runner OIDC signing key {0:?} was not found in JWKS")]
    KeyNotFound(String),
    #[error("runner OIDC signature is invalid")]
    Signature,
    #[error("runner OIDC issuer mismatch: {0:?}")]
    Issuer(String),
    #[error("runner OIDC audience mismatch")]
    Audience,
    #[error("runner OIDC token is expired")]
    Expired,
    #[error("runner OIDC token is not valid yet")]
    NotYetValid,
    #[error("runner OIDC provider mismatch: got {got:?} want {want:?}")]
    Provider { got: String, want: String },
    #[error("runner OIDC claim {0} mismatch")]
    Claim(&'static str),
    #[error("runner OIDC token requires repository claim")]
    RepositoryClaim,
    #[error("runner OIDC repository claim does not match runner identity")]
    Repository,
    #[error("runner OIDC key set is unavailable: {0}")]
    NoKeySet(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// One RSA signing key from a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RsaKey {
    kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

#[derive(Debug)]
struct KeyState {
    keys: Option<Arc<Vec<RsaKey>>>,
    /// Why the last load failed, while no key set has loaded.
    error: String,
    /// No refresh before this.
    not_before: Instant,
    backoff: Duration,
}

#[derive(Debug)]
pub struct OidcVerifier {
    issuer: String,
    audience: String,
    source: JwksSource,
    state: Mutex<KeyState>,
    /// One fetch at a time; requests that need keys wait for it.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Deserialize)]
struct Header {
    #[serde(default)]
    alg: String,
    #[serde(default)]
    kid: String,
}

impl OidcVerifier {
    pub fn new(issuer: String, audience: String, source: JwksSource) -> Self {
        Self {
            issuer,
            audience,
            source,
            state: Mutex::new(KeyState {
                keys: None,
                error: "not loaded yet".to_owned(),
                not_before: Instant::now(),
                backoff: FIRST_BACKOFF,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub fn source(&self) -> &JwksSource {
        &self.source
    }

    /// Loads the key set now (blocking); on failure the error is kept and a later request retries.
    pub fn load_now(&self) -> Result<usize, String> {
        let loaded = load(&self.source);
        self.settle(&loaded);
        loaded.map(|keys| keys.len())
    }

    /// Fetches the key set again unless another request just did, or back-off says wait.
    pub async fn refresh(self: &Arc<Self>) {
        let _one_at_a_time = self.fetching.lock().await;
        if !self.may_refresh() {
            return;
        }
        let source = self.source.clone();
        let loaded = tokio::task::spawn_blocking(move || load(&source))
            .await
            .unwrap_or_else(|error| Err(format!("JWKS fetch task failed: {error}")));
        if let Err(error) = &loaded {
            tracing::warn!(source = ?self.source, %error, "cannot load the runner OIDC key set; keeping the last good one");
        }
        self.settle(&loaded);
    }

    fn settle(&self, loaded: &Result<Vec<RsaKey>, String>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match loaded {
            Ok(keys) => {
                state.keys = Some(Arc::new(keys.clone()));
                state.backoff = FIRST_BACKOFF;
                state.not_before = Instant::now() + REFRESH_INTERVAL;
            }
            Err(error) => {
                state.error = error.clone();
                state.not_before = Instant::now() + state.backoff;
                state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Whether a fetch is allowed now (back-off and rate limit have passed).
    pub fn may_refresh(&self) -> bool {
        Instant::now() >= self.state.lock().unwrap_or_else(PoisonError::into_inner).not_before
    }

    /// Verifies `token` for `identity` with the key set at hand.
    pub fn verify(&self, token: &str, identity: &RunnerIdentity) -> Result<(), OidcError> {
        let (keys, error) = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            (state.keys.clone(), state.error.clone())
        };
        let parts: Vec<&str> = token.split('.').collect();
        let [header_part, claims_part, signature_part] = parts.as_slice() else {
            return Err(OidcError::NotCompact);
        };
        let header = URL_SAFE_NO_PAD
            .decode(header_part)
            .map_err(|e| OidcError::HeaderEncoding(e.to_string()))?;
        let claims = URL_SAFE_NO_PAD
            .decode(claims_part)
            .map_err(|e| OidcError::ClaimsEncoding(e.to_string()))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_part)
            .map_err(|e| OidcError::SignatureEncoding(e.to_string()))?;
        let header: Header = serde_json::from_slice(&header).map_err(|e| OidcError::HeaderJson(e.to_string()))?;
        if header.alg != "RS256" {
            return Err(OidcError::Algorithm(header.alg));
        }
        if header.kid.is_empty() {
            return Err(OidcError::Kid);
        }
        let keys = keys.ok_or(OidcError::NoKeySet(error))?;
        let key = keys
            .iter()
            .find(|key| key.kid == header.kid)
            .ok_or_else(|| OidcError::KeyNotFound(header.kid.clone()))?;
        let signed = &token.as_bytes()[..header_part.len() + 1 + claims_part.len()];
        RsaPublicKeyComponents { n: &key.n, e: &key.e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, signed, &signature)
            .map_err(|_| OidcError::Signature)?;
        // Only now, with the signature good, are the claims worth reading.
        let claims: Value = serde_json::from_slice(&claims).map_err(|e| OidcError::ClaimsJson(e.to_string()))?;
        self.check_claims(&claims, identity, now())
    }

    fn check_claims(&self, claims: &Value, identity: &RunnerIdentity, now: f64) -> Result<(), OidcError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default();
        let issuer = text("iss");
        if issuer != self.issuer {
            return Err(OidcError::Issuer(issuer.to_owned()));
        }
        let audience_matches = match claims.get("aud") {
            Some(Value::String(audience)) => *audience == self.audience,
            Some(Value::Array(audiences)) => audiences.iter().any(|a| a.as_str() == Some(self.audience.as_str())),
            _ => false,
        };
        if !audience_matches {
            return Err(OidcError::Audience);
        }
        if claims.get("exp").and_then(Value::as_f64).is_some_and(|exp| now > exp) {
            return Err(OidcError::Expired);
        }
        if claims.get("nbf").and_then(Value::as_f64).is_some_and(|nbf| now < nbf) {
            return Err(OidcError::NotYetValid);
        }
        if let Some(want) = provider_for(&self.issuer)
            && identity.provider != want
        {
            return Err(OidcError::Provider {
                got: identity.provider.clone(),
                want: want.to_owned(),
            });
        }
        let claimed = [
            ("repository", &identity.repository),
            ("workflow", &identity.workflow),
            ("run_id", &identity.run_id),
            ("run_attempt", &identity.run_attempt),
            ("ref", &identity.git_ref),
            ("sha", &identity.sha),
            ("actor", &identity.actor),
            ("job", &identity.job),
            ("runner_name", &identity.runner_name),
        ];
        for (name, stated) in claimed {
            let claim = text(name);
            if !stated.is_empty() && !claim.is_empty() && !bool::from(claim.as_bytes().ct_eq(stated.as_bytes())) {
                return Err(OidcError::Claim(name));
            }
        }
        // GitLab's ID tokens name the project in `project_path`; they have no `repository` claim.
        let repository = match (text("repository"), provider_for(&self.issuer)) {
            ("", Some("gitlab-ci")) => text("project_path"),
            (repository, _) => repository,
        };
        match repository {
            "" => Err(OidcError::RepositoryClaim),
            repository if repository != identity.repository => Err(OidcError::Repository),
            _ => Ok(()),
        }
    }
}

/// The provider an issuer's tokens must come from; other issuers are not tied to one.
fn provider_for(issuer: &str) -> Option<&'static str> {
    if issuer == "https://token.actions.githubusercontent.com" {
        Some("github-actions")
    } else if issuer == "https://gitlab.com" || issuer.contains("gitlab") {
        Some("gitlab-ci")
    } else if issuer.contains("vstoken.dev.azure.com") {
        Some("azure-pipelines")
    } else {
        None
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

fn load(source: &JwksSource) -> Result<Vec<RsaKey>, String> {
    let text = match source {
        JwksSource::File(path) => {
            std::fs::read(path).map_err(|error| format!("cannot read JWKS file {}: {error}", path.display()))?
        }
        JwksSource::Url(url) => fetch(url)?,
    };
    parse_jwks(&text)
}

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|error| format!("cannot fetch JWKS URL {url}: {error}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!(
            "JWKS URL returned {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or_default()
        ));
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_vec()
        .map_err(|error| format!("cannot read JWKS URL {url}: {error}"))
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    #[serde(default)]
    kty: String,
    #[serde(default)]
    kid: String,
    #[serde(default)]
    n: String,
    #[serde(default)]
    e: String,
}

/// The RSA keys of a JWKS document; keys of other types are skipped.
fn parse_jwks(text: &[u8]) -> Result<Vec<RsaKey>, String> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|error| format!("JWKS is not valid JSON: {error}"))?;
    set.keys
        .into_iter()
        .filter(|key| key.kty == "RSA")
        .map(|key| {
            let n = URL_SAFE_NO_PAD
                .decode(&key.n)
                .map_err(|error| format!("JWKS modulus is not base64url: {error}"))?;
            let e = URL_SAFE_NO_PAD
                .decode(&key.e)
                .map_err(|error| format!("JWKS exponent is not base64url: {error}"))?;
            if e.is_empty() {
                return Err("JWKS exponent is empty".to_owned());
            }
            Ok(RsaKey { kid: key.kid, n, e })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verifier() -> OidcVerifier {
        OidcVerifier::new(
            "https://token.actions.githubusercontent.com".into(),
            "cavra".into(),
            JwksSource::Url("http://127.0.0.1:9/unused".into()),
        )
    }

    fn identity() -> RunnerIdentity {
        RunnerIdentity {
            provider: "github-actions".into(),
            repository: "acme/payments".into(),
            workflow: "release".into(),
            ..Default::default()
        }
    }

    fn claims(extra: Value) -> Value {
        let mut claims = json!({"iss": "https://token.actions.githubusercontent.com", "aud": ["other", "cavra"],
                                "exp": 2000.0, "nbf": 1000, "repository": "acme/payments", "workflow": "release",
                                "run_id": 5});
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    }

    #[test]
    fn claims_are_checked_in_order_with_reference_messages() {
        let v = verifier();
        let check = |extra: Value, identity: &RunnerIdentity, now: f64| {
            v.check_claims(&claims(extra), identity, now).map_err(|e| e.to_string())
        };
        assert_eq!(check(json!({}), &identity(), 1500.0), Ok(()));
        assert_eq!(
            check(json!({"iss": "https://evil"}), &identity(), 1500.0),
            Err("runner OIDC issuer mismatch: \"https://evil\"".into())
        );
        assert_eq!(
            check(json!({"aud": "else"}), &identity(), 1500.0),
            Err("runner OIDC audience mismatch".into())
        );
        assert_eq!(
            check(json!({}), &identity(), 2001.0),
            Err("runner OIDC token is expired".into())
        );
        assert_eq!(
            check(json!({}), &identity(), 999.0),
            Err("runner OIDC token is not valid yet".into())
        );
        let gitlab = RunnerIdentity {
            provider: "gitlab-ci".into(),
            ..identity()
        };
        assert_eq!(
            check(json!({}), &gitlab, 1500.0),
            Err("runner OIDC provider mismatch: got \"gitlab-ci\" want \"github-actions\"".into())
        );
        assert_eq!(
            check(json!({"workflow": "other"}), &identity(), 1500.0),
            Err("runner OIDC claim workflow mismatch".into())
        );
        assert_eq!(
            check(json!({"repository": null}), &identity(), 1500.0),
            Err("runner OIDC token requires repository claim".into())
        );
        let other_repository = RunnerIdentity {
            repository: "acme/other".into(),
            ..identity()
        };
        assert_eq!(
            check(json!({}), &other_repository, 1500.0),
            Err("runner OIDC claim repository mismatch".into())
        );
    }

    #[test]
    fn gitlab_tokens_name_the_repository_in_project_path() {
        let gitlab = OidcVerifier::new(
            "https://gitlab.com".into(),
            "cavra".into(),
            JwksSource::File("unused".into()),
        );
        let identity = RunnerIdentity {
            provider: "gitlab-ci".into(),
            repository: "acme/payments".into(),
            ..Default::default()
        };
        let claims =
            |project_path: &str| json!({"iss": "https://gitlab.com", "aud": "cavra", "project_path": project_path});
        assert_eq!(gitlab.check_claims(&claims("acme/payments"), &identity, 0.0), Ok(()));
        assert_eq!(
            gitlab.check_claims(&claims("acme/other"), &identity, 0.0),
            Err(OidcError::Repository)
        );
        // Other issuers still need the `repository` claim itself.
        let github_claims = json!({"iss": "https://token.actions.githubusercontent.com", "aud": "cavra",
                                   "project_path": "acme/payments"});
        let github_identity = RunnerIdentity {
            provider: "github-actions".into(),
            ..identity
        };
        assert_eq!(
            verifier().check_claims(&github_claims, &github_identity, 0.0),
            Err(OidcError::RepositoryClaim)
        );
    }

    #[test]
    fn malformed_tokens_are_rejected_before_any_key_is_needed() {
        let v = verifier();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"k"}"#);
        let no_kid = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let cases = [
            ("a.b", "runner OIDC token must be a compact JWT"),
            ("a=.b.c", "runner OIDC header is not base64url"),
            (
                &format!("{header}.e30.c2ln"),
                "runner OIDC alg \"HS256\" is not supported; expected RS256",
            ),
            (&format!("{no_kid}.e30.c2ln"), "runner OIDC token requires kid header"),
            ("e30.e30.c2ln", "runner OIDC alg \"\" is not supported; expected RS256"),
            ("e30.e30.c", "runner OIDC signature is not base64url"),
        ];
        for (token, message) in cases {
            let error = v.verify(token, &identity()).unwrap_err().to_string();
            assert!(error.starts_with(message), "{token}: {error}");
        }
        let good_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#);
        assert_eq!(
            v.verify(&format!("{good_header}.e30.c2ln"), &identity()),
            Err(OidcError::NoKeySet("not loaded yet".into()))
        );
    }

    #[test]
    fn jwks_documents_keep_rsa_keys_and_report_bad_numbers() {
        let keys =
            parse_jwks(br#"{"keys":[{"kty":"EC","kid":"x"},{"kty":"RSA","kid":"k","n":"AQAB","e":"AQAB"}]}"#).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid, "k");
        assert!(
            parse_jwks(br#"{"keys":[{"kty":"RSA","kid":"k","n":"A=","e":"AQAB"}]}"#)
                .unwrap_err()
                .starts_with("JWKS modulus is not base64url")
        );
        assert_eq!(
            parse_jwks(br#"{"keys":[{"kty":"RSA","kid":"k","n":"AQAB","e":""}]}"#).unwrap_err(),
            "JWKS exponent is empty"
        );
    }

    #[test]
    fn failed_loads_back_off_and_keep_the_last_good_key_set() {
        let v = verifier();
        v.settle(&Ok(vec![RsaKey {
            kid: "k".into(),
            n: vec![1],
            e: vec![1],
        }]));
        assert!(!v.may_refresh(), "a good fetch is not repeated at once");
        v.settle(&Err("JWKS URL returned 500 Internal Server Error".into()));
        let state = v.state.lock().unwrap();
        assert!(state.keys.is_some(), "the last good key set stays");
        assert_eq!(state.backoff, FIRST_BACKOFF * 2);
    }
}
