//! OIDC runner tokens: RS256 JWTs from a CI provider, checked against the provider's JWKS.
//!
//! The signature is verified before any claim is read for a decision, unlike the reference, which compared claims
//! first. Stricter than the reference, too: `exp` is required and every time claim must be a number (checked with a
//! small leeway for the issuer's clock); every identity field the runner states must be confirmed by a claim of the
//! token, not merely not contradicted; and only keys published for RS256 signatures are used. The key set comes from
//! a file or a URL; a fetch that fails is retried on a later request with growing back-off, and the last key set that
//! loaded stays in use meanwhile.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
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
/// Clock difference allowed with the issuer unless configured otherwise.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

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
    #[error("runner OIDC token requires a numeric exp claim")]
    ExpMissing,
    #[error("runner OIDC claim {0} must be a number of seconds")]
    NotNumeric(&'static str),
    #[error("runner OIDC token is issued in the future (iat)")]
    IssuedInFuture,
    #[error("runner OIDC token has no {claim} claim to confirm the runner identity's {field}")]
    Unconfirmed { field: &'static str, claim: &'static str },
    #[error("runner OIDC tokens from this issuer carry nothing that confirms the runner identity's {0}; leave it out")]
    Unconfirmable(&'static str),
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
    /// Since when loading the key set fails (the first failure after the last success); `None` after a success.
    failing_since: Option<SystemTime>,
}

#[derive(Debug)]
pub struct OidcVerifier {
    issuer: String,
    audience: String,
    /// Clock difference allowed with the issuer for exp, nbf and iat.
    leeway: Duration,
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
            leeway: DEFAULT_LEEWAY,
            source,
            state: Mutex::new(KeyState {
                keys: None,
                error: "not loaded yet".to_owned(),
                not_before: Instant::now(),
                backoff: FIRST_BACKOFF,
                failing_since: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
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
                state.failing_since = None;
                state.backoff = FIRST_BACKOFF;
                state.not_before = Instant::now() + REFRESH_INTERVAL;
            }
            Err(error) => {
                state.error = error.clone();
                state.failing_since.get_or_insert_with(SystemTime::now);
                state.not_before = Instant::now() + state.backoff;
                state.backoff = (state.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Whether the key set is stale: since when loading it has failed, the last error, and whether any key set is
    /// at hand (without one, every runner token is refused). `None` when the last load worked.
    pub fn staleness(&self) -> Option<(SystemTime, String, bool)> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .failing_since
            .map(|since| (since, state.error.clone(), state.keys.is_some()))
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
        // Unlike the reference, a token must expire: one without `exp` would be a credential for ever.
        let leeway = self.leeway.as_secs_f64();
        let exp = numeric_date(claims, "exp")?.ok_or(OidcError::ExpMissing)?;
        if now > exp + leeway {
            return Err(OidcError::Expired);
        }
        if numeric_date(claims, "nbf")?.is_some_and(|nbf| now + leeway < nbf) {
            return Err(OidcError::NotYetValid);
        }
        if numeric_date(claims, "iat")?.is_some_and(|iat| now + leeway < iat) {
            return Err(OidcError::IssuedInFuture);
        }
        let provider = provider_for(&self.issuer);
        if let Some(want) = provider
            && identity.provider != want
        {
            return Err(OidcError::Provider {
                got: identity.provider.clone(),
                want: want.to_owned(),
            });
        }
        // Everything the runner claims must be in the token, or it would be recorded as verified when it was not.
        let stated = &identity.fields()[2..];
        for &(field, value) in stated {
            if value.is_empty() {
                continue;
            }
            let claim = claim_for(provider, field).ok_or(OidcError::Unconfirmable(field))?;
            let Some(confirmed) = claim_text(claims, claim) else {
                return Err(OidcError::Unconfirmed { field, claim });
            };
            if !bool::from(confirmed.as_bytes().ct_eq(value.as_bytes())) {
                return Err(OidcError::Claim(field));
            }
        }
        // GitLab's ID tokens name the project in `project_path`; they have no `repository` claim.
        let same = |claim: &str| bool::from(claim.as_bytes().ct_eq(identity.repository.as_bytes()));
        match (text("repository"), provider) {
            ("", Some("gitlab-ci")) => match text("project_path") {
                "" => Err(OidcError::RepositoryClaim),
                project if same(project) => Ok(()),
                _ => Err(OidcError::Repository),
            },
            ("", _) => Err(OidcError::RepositoryClaim),
            (repository, _) if same(repository) => Ok(()),
            _ => Err(OidcError::Claim("repository")),
        }
    }
}

/// A NumericDate claim: absent is `None`; anything but a number is an error (the reference treated a string `exp`
/// as no expiry at all).
fn numeric_date(claims: &Value, name: &'static str) -> Result<Option<f64>, OidcError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => number.as_f64().map(Some).ok_or(OidcError::NotNumeric(name)),
        Some(_) => Err(OidcError::NotNumeric(name)),
    }
}

/// A claim as text: strings as they are, integers in decimal (some providers write ids as numbers).
fn claim_text(claims: &Value, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) if number.is_u64() || number.is_i64() => Some(number.to_string()),
        _ => None,
    }
}

/// The claim that confirms an identity field in tokens of `provider`; `None` when its tokens carry none.
fn claim_for(provider: Option<&str>, field: &'static str) -> Option<&'static str> {
    match (provider, field) {
        // GitHub Actions tokens name neither the job nor the runner.
        (Some("github-actions"), "job" | "runner_name") => None,
        // GitLab's ID tokens use names of their own, as the CI runner script fills the identity from CI_* variables.
        (Some("gitlab-ci"), "workflow") => Some("pipeline_source"),
        (Some("gitlab-ci"), "run_id") => Some("pipeline_id"),
        (Some("gitlab-ci"), "run_attempt") => Some("job_id"),
        (Some("gitlab-ci"), "actor") => Some("user_login"),
        (Some("gitlab-ci"), "job" | "runner_name") => None,
        // Otherwise the claim has the field's name.
        (_, field) => Some(field),
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

/// The certificate authorities a JWKS URL's certificate may come from: the system's store, as the system's own TLS
/// clients read it (`SSL_CERT_FILE` and `SSL_CERT_DIR` when set, else the distribution's bundle), so an internal
/// issuer whose CA the host trusts (GitHub Enterprise Server, GitLab) is trusted here too. On a system whose store
/// holds nothing usable, the Mozilla list built into this binary. Read once, at the first fetch.
fn root_certs() -> ureq::tls::RootCerts {
    static ROOTS: OnceLock<ureq::tls::RootCerts> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "reading the system's CA certificates");
            }
            if found.certs.is_empty() {
                tracing::warn!(
                    "no CA certificates in the system's store; JWKS URLs are checked against the built-in list"
                );
                return ureq::tls::RootCerts::WebPki;
            }
            ureq::tls::RootCerts::new_with_certs(
                &found
                    .certs
                    .iter()
                    .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
                    .collect::<Vec<_>>(),
            )
        })
        .clone()
}

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(false)
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(root_certs()).build())
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
    /// RFC 7517: what the key is for (`sig` or `enc`), the one algorithm it is for, what it may do.
    #[serde(rename = "use")]
    key_use: Option<String>,
    alg: Option<String>,
    key_ops: Option<Vec<String>>,
}

impl Jwk {
    /// Whether the key may verify RS256 signatures: an RSA key whose `use`, `alg` and `key_ops`, where present,
    /// allow it. A key published for encryption, or for another algorithm, must not be used to accept a token.
    fn verifies_rs256(&self) -> bool {
        self.kty == "RSA"
            && self.key_use.as_deref().is_none_or(|key_use| key_use == "sig")
            && self.alg.as_deref().is_none_or(|alg| alg == "RS256")
            && self
                .key_ops
                .as_ref()
                .is_none_or(|ops| ops.iter().any(|op| op == "verify"))
    }
}

/// The keys of a JWKS document that may verify RS256 tokens; the others are skipped.
fn parse_jwks(text: &[u8]) -> Result<Vec<RsaKey>, String> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|error| format!("JWKS is not valid JSON: {error}"))?;
    set.keys
        .into_iter()
        .filter(Jwk::verifies_rs256)
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
        // Without leeway, as the reference checks.
        let v = verifier().with_leeway(Duration::ZERO);
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
    fn times_must_be_numbers_exp_is_required_and_the_leeway_applies_to_each() {
        let v = verifier().with_leeway(Duration::from_secs(30));
        let check = |extra: Value, now: f64| {
            v.check_claims(&claims(extra), &identity(), now)
                .map_err(|e| e.to_string())
        };
        let mut no_exp = claims(json!({}));
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            v.check_claims(&no_exp, &identity(), 1500.0),
            Err(OidcError::ExpMissing),
            "a token without exp would never expire"
        );
        assert_eq!(
            check(json!({"exp": "2000"}), 1500.0),
            Err("runner OIDC claim exp must be a number of seconds".into())
        );
        assert_eq!(
            check(json!({"exp": null}), 1500.0),
            Err("runner OIDC claim exp must be a number of seconds".into())
        );
        assert_eq!(
            check(json!({"nbf": "1000"}), 1500.0),
            Err("runner OIDC claim nbf must be a number of seconds".into())
        );
        assert_eq!(
            check(json!({"iat": "1000"}), 1500.0),
            Err("runner OIDC claim iat must be a number of seconds".into())
        );
        // exp 2000, nbf 1000, leeway 30 s.
        assert_eq!(check(json!({}), 2030.0), Ok(()));
        assert_eq!(check(json!({}), 2030.5), Err("runner OIDC token is expired".into()));
        assert_eq!(check(json!({}), 970.0), Ok(()));
        assert_eq!(
            check(json!({}), 969.5),
            Err("runner OIDC token is not valid yet".into())
        );
        assert_eq!(check(json!({"iat": 1530}), 1500.0), Ok(()));
        assert_eq!(
            check(json!({"iat": 1531}), 1500.0),
            Err("runner OIDC token is issued in the future (iat)".into())
        );
    }

    #[test]
    fn every_identity_field_the_runner_states_must_be_in_the_token() {
        let v = verifier();
        let stating = |change: fn(&mut RunnerIdentity)| {
            let mut identity = identity();
            change(&mut identity);
            identity
        };
        // The token has no ref: a stated ref cannot be taken as verified.
        let with_ref = stating(|identity| identity.git_ref = "refs/heads/main".into());
        assert_eq!(
            v.check_claims(&claims(json!({})), &with_ref, 1500.0)
                .unwrap_err()
                .to_string(),
            "runner OIDC token has no ref claim to confirm the runner identity's ref"
        );
        assert_eq!(
            v.check_claims(&claims(json!({"ref": "refs/heads/main"})), &with_ref, 1500.0),
            Ok(())
        );
        assert_eq!(
            v.check_claims(&claims(json!({"ref": "refs/heads/dev"})), &with_ref, 1500.0),
            Err(OidcError::Claim("ref"))
        );
        // A numeric claim confirms the same number written as text.
        let with_run = stating(|identity| identity.run_id = "5".into());
        assert_eq!(v.check_claims(&claims(json!({})), &with_run, 1500.0), Ok(()));
        let with_other_run = stating(|identity| identity.run_id = "6".into());
        assert_eq!(
            v.check_claims(&claims(json!({})), &with_other_run, 1500.0),
            Err(OidcError::Claim("run_id"))
        );
        // GitHub tokens name no job: stating one is refused even when the token happens to carry the claim.
        let with_job = stating(|identity| identity.job = "promote".into());
        assert_eq!(
            v.check_claims(&claims(json!({"job": "promote"})), &with_job, 1500.0)
                .unwrap_err()
                .to_string(),
            "runner OIDC tokens from this issuer carry nothing that confirms the runner identity's job; leave it out"
        );
    }

    #[test]
    fn gitlab_identity_fields_are_confirmed_by_gitlab_claim_names() {
        let gitlab = OidcVerifier::new(
            "https://gitlab.com".into(),
            "cavra".into(),
            JwksSource::File("unused".into()),
        );
        let identity = RunnerIdentity {
            provider: "gitlab-ci".into(),
            repository: "acme/payments".into(),
            workflow: "push".into(),
            run_id: "455".into(),
            run_attempt: "1123".into(),
            git_ref: "main".into(),
            sha: "714a629c".into(),
            actor: "root".into(),
            ..Default::default()
        };
        let token = json!({"iss": "https://gitlab.com", "aud": "cavra", "exp": 100, "project_path": "acme/payments",
                           "pipeline_source": "push", "pipeline_id": "455", "job_id": "1123", "ref": "main",
                           "sha": "714a629c", "user_login": "root"});
        assert_eq!(gitlab.check_claims(&token, &identity, 0.0), Ok(()));
        let other_actor = RunnerIdentity {
            actor: "mallory".into(),
            ..identity
        };
        assert_eq!(
            gitlab.check_claims(&token, &other_actor, 0.0),
            Err(OidcError::Claim("actor"))
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
        let claims = |project_path: &str| json!({"iss": "https://gitlab.com", "aud": "cavra", "exp": 100, "project_path": project_path});
        assert_eq!(gitlab.check_claims(&claims("acme/payments"), &identity, 0.0), Ok(()));
        assert_eq!(
            gitlab.check_claims(&claims("acme/other"), &identity, 0.0),
            Err(OidcError::Repository)
        );
        // Other issuers still need the `repository` claim itself.
        let github_claims = json!({"iss": "https://token.actions.githubusercontent.com", "aud": "cavra", "exp": 100,
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
    fn jwks_keys_for_encryption_or_another_algorithm_are_not_used() {
        let keys = parse_jwks(
            br#"{"keys":[
                {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
                {"kty":"RSA","kid":"ps256","alg":"PS256","n":"AQAB","e":"AQAB"},
                {"kty":"RSA","kid":"wrap","key_ops":["wrapKey"],"n":"AQAB","e":"AQAB"},
                {"kty":"RSA","kid":"sig","use":"sig","alg":"RS256","key_ops":["verify"],"n":"AQAB","e":"AQAB"},
                {"kty":"RSA","kid":"plain","n":"AQAB","e":"AQAB"}]}"#,
        )
        .unwrap();
        let kids: Vec<&str> = keys.iter().map(|key| key.kid.as_str()).collect();
        assert_eq!(kids, ["sig", "plain"]);
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
