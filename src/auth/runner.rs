//! CI runner authentication: a request carries `runner_auth` with the runner's identity and either an HMAC-SHA256
//! signature or a provider's OIDC token. Messages are the reference's, word for word where the reference has them,
//! so existing runner tooling recognises them.
//!
//! HMAC signatures come in two versions:
//!
//! - **v2** (the default, and what the client crate's [`RunnerSigner`] signs): the signature covers the identity, a
//!   digest of the request it authenticates, when it was made and a random nonce. The daemon accepts it only within
//!   a freshness window around its own clock, and only once ([`super::replay`]). The payloads and the request digest
//!   are defined once, in `cavra_runtime_client::runner_auth`, for signers and this check alike.
//! - **v1** (the reference's): the signature covers the identity alone, so anyone who has seen it once can attach it
//!   to any request, forever. Accepted only with `--runner-auth-accept-v1`, for runners being migrated.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cavra_runtime_client::runner_auth::{
    self, IdentityError, request_sha256, signing_payload, signing_payload_v2, unix_now,
};
pub use cavra_runtime_client::runner_auth::{HMAC_ALGORITHM, OIDC_ALGORITHM, RunnerSigner, canonical_request};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use super::oidc::{OidcError, OidcVerifier};
use super::replay::{Refusal, ReplayCache};
use super::secret::Secret;
use crate::contract::{EvaluateRequest, RunnerAuthentication, RunnerIdentity};

/// A nonce is hex of 16 to 64 random bytes.
const NONCE_HEX_DIGITS: std::ops::RangeInclusive<usize> = 32..=128;
/// The most v2 nonces remembered at once: about 16 MB at most, and at the default 60 s window room for 2,000
/// runner requests a second. Past it, new credentials are refused until older ones expire.
pub const REPLAY_CACHE_CAPACITY: usize = 1 << 17;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunnerAuthError {
    #[error("runner_auth is required")]
    Missing,
    #[error("runner_auth algorithm must be HMAC-SHA256 or OIDC-JWT")]
    Algorithm,
    #[error("runner HMAC authentication is not configured")]
    HmacNotConfigured,
    #[error("runner_auth key_id mismatch: {0}")]
    KeyId(String),
    #[error("runner_auth signature is required")]
    SignatureMissing,
    #[error("runner_auth signature is invalid")]
    SignatureInvalid,
    #[error("runner_auth identity requires provider and repository")]
    Identity,
    #[error("runner_auth identity fields must not contain line breaks")]
    LineBreak,
    #[error(
        "runner_auth is a v1 signature (identity only, replayable): sign v2 (request digest, issued_at, nonce), or \
         start the daemon with --runner-auth-accept-v1 while runners migrate"
    )]
    V1NotAccepted,
    #[error("runner_auth v2 needs both issued_at and nonce")]
    V2Incomplete,
    #[error("runner_auth nonce must be 32 to 128 lower-case hex digits (16 to 64 random bytes)")]
    Nonce,
    #[error("runner_auth is stale: issued {age} s ago, beyond the {window} s window (--runner-auth-window)")]
    Stale { age: i64, window: i64 },
    #[error(
        "runner_auth is issued {ahead} s in the future, beyond the {window} s window (--runner-auth-window): \
         check the runner's clock"
    )]
    Future { ahead: i64, window: i64 },
    #[error("runner_auth was replayed: its nonce was already used within the {window} s window")]
    Replayed { window: i64 },
    #[error(
        "runner_auth cannot be checked for replay: {capacity} credentials were accepted within the window; retry \
         shortly"
    )]
    ReplayCacheFull { capacity: usize },
    #[error("runner OIDC authentication is not configured")]
    OidcNotConfigured,
    #[error("runner_auth OIDC token is required")]
    TokenMissing,
    #[error(transparent)]
    Oidc(#[from] OidcError),
}

impl From<IdentityError> for RunnerAuthError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::LineBreak => RunnerAuthError::LineBreak,
            _ => RunnerAuthError::Identity,
        }
    }
}

fn mac(key: &Secret, payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes keys of any length");
    mac.update(payload.as_bytes());
    mac
}

/// Lower-case hex HMAC-SHA256 of the identity's v1 payload.
pub fn sign_v1(key: &Secret, identity: &RunnerIdentity) -> String {
    runner_auth::sign_v1(key.expose(), identity)
}

/// Lower-case hex HMAC-SHA256 of the v2 payload for `request` (its `runner_auth`, if any, is not covered).
pub fn sign_v2(
    key: &Secret,
    identity: &RunnerIdentity,
    request: &EvaluateRequest,
    issued_at: i64,
    nonce: &str,
) -> String {
    runner_auth::sign_v2(key.expose(), identity, request, issued_at, nonce)
}

/// How the daemon checks HMAC-signed runners.
#[derive(Debug)]
pub struct HmacRunners {
    pub key: Secret,
    /// The key id runners must present (empty: any).
    pub key_id: String,
    /// Also accept the reference's identity-only (v1) signatures.
    pub accept_v1: bool,
    /// How far a v2 credential's `issued_at` may be from the daemon's clock, either way.
    pub window: Duration,
}

#[derive(Debug)]
struct HmacCheck {
    runners: HmacRunners,
    window: i64,
    replay: Mutex<ReplayCache>,
}

/// What the daemon accepts from runners; with neither HMAC nor OIDC configured, it asks for nothing.
#[derive(Debug)]
pub struct RunnerAuthenticator {
    hmac: Option<HmacCheck>,
    oidc: Option<Arc<OidcVerifier>>,
}

/// The outcome of checking a request with what is at hand.
pub enum Check {
    Done(Result<(), RunnerAuthError>),
    /// The OIDC key set has to be fetched first (not loaded yet, or the token names a key it lacks).
    NeedsKeys(Arc<OidcVerifier>),
}

impl RunnerAuthenticator {
    pub fn new(hmac: Option<HmacRunners>, oidc: Option<OidcVerifier>) -> Option<Self> {
        let hmac = hmac.map(|runners| HmacCheck {
            window: i64::try_from(runners.window.as_secs()).unwrap_or(i64::MAX),
            runners,
            replay: Mutex::new(ReplayCache::new(REPLAY_CACHE_CAPACITY)),
        });
        (hmac.is_some() || oidc.is_some()).then(|| Self {
            hmac,
            oidc: oidc.map(Arc::new),
        })
    }

    pub fn oidc(&self) -> Option<&Arc<OidcVerifier>> {
        self.oidc.as_ref()
    }

    /// Whether identity-only (v1) HMAC signatures are accepted.
    pub fn accepts_v1(&self) -> bool {
        self.hmac.as_ref().is_some_and(|hmac| hmac.runners.accept_v1)
    }

    /// Checks the request's `runner_auth` with the keys already at hand; may ask for the OIDC key set to be fetched
    /// first.
    pub fn check(&self, request: &EvaluateRequest) -> Check {
        self.check_with(request, true, unix_now())
    }

    /// Checks the request's `runner_auth` with the keys at hand, after any fetch: a missing key is now a failure.
    pub fn check_now(&self, request: &EvaluateRequest) -> Result<(), RunnerAuthError> {
        match self.check_with(request, false, unix_now()) {
            Check::Done(result) => result,
            Check::NeedsKeys(_) => unreachable!("no fetch is offered when refreshing is not allowed"),
        }
    }

    fn check_with(&self, request: &EvaluateRequest, may_fetch: bool, now: i64) -> Check {
        let Some(auth) = &request.runner_auth else {
            return Check::Done(Err(RunnerAuthError::Missing));
        };
        if let Err(error) = reject_line_breaks(&auth.identity) {
            return Check::Done(Err(error));
        }
        match auth.algorithm.as_str() {
            HMAC_ALGORITHM => Check::Done(self.check_hmac(auth, request, now)),
            OIDC_ALGORITHM => self.check_oidc(auth, may_fetch),
            _ => Check::Done(Err(RunnerAuthError::Algorithm)),
        }
    }

    fn check_hmac(
        &self,
        auth: &RunnerAuthentication,
        request: &EvaluateRequest,
        now: i64,
    ) -> Result<(), RunnerAuthError> {
        let hmac = self.hmac.as_ref().ok_or(RunnerAuthError::HmacNotConfigured)?;
        let runners = &hmac.runners;
        if !runners.key_id.is_empty() && auth.key_id != runners.key_id {
            return Err(RunnerAuthError::KeyId(auth.key_id.clone()));
        }
        let signature = auth.signature.trim();
        if signature.is_empty() {
            return Err(RunnerAuthError::SignatureMissing);
        }
        let presented = hex::decode(signature.to_ascii_lowercase()).map_err(|_| RunnerAuthError::SignatureInvalid)?;
        let v2 = auth.issued_at != 0 || !auth.nonce.is_empty();
        if !v2 {
            if !runners.accept_v1 {
                return Err(RunnerAuthError::V1NotAccepted);
            }
            // Constant-time comparison inside the MAC.
            mac(&runners.key, &signing_payload(&auth.identity))
                .verify_slice(&presented)
                .map_err(|_| RunnerAuthError::SignatureInvalid)?;
            return require_identity(&auth.identity);
        }
        if auth.issued_at == 0 || auth.nonce.is_empty() {
            return Err(RunnerAuthError::V2Incomplete);
        }
        let nonce_ok = NONCE_HEX_DIGITS.contains(&auth.nonce.len())
            && auth.nonce.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
        if !nonce_ok {
            return Err(RunnerAuthError::Nonce);
        }
        let payload = signing_payload_v2(&auth.identity, &request_sha256(request), auth.issued_at, &auth.nonce);
        mac(&runners.key, &payload)
            .verify_slice(&presented)
            .map_err(|_| RunnerAuthError::SignatureInvalid)?;
        // Only a genuine credential is worth judging by its age, and worth remembering.
        let window = hmac.window;
        let age = now.saturating_sub(auth.issued_at);
        if age > window {
            return Err(RunnerAuthError::Stale { age, window });
        }
        if -age > window {
            return Err(RunnerAuthError::Future { ahead: -age, window });
        }
        require_identity(&auth.identity)?;
        hmac.replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(&auth.nonce, auth.issued_at.saturating_add(window), now)
            .map_err(|refusal| match refusal {
                Refusal::Replayed => RunnerAuthError::Replayed { window },
                Refusal::Full { capacity } => RunnerAuthError::ReplayCacheFull { capacity },
            })
    }

    fn check_oidc(&self, auth: &RunnerAuthentication, may_fetch: bool) -> Check {
        let Some(verifier) = &self.oidc else {
            return Check::Done(Err(RunnerAuthError::OidcNotConfigured));
        };
        let token = auth.signature.trim();
        if token.is_empty() {
            return Check::Done(Err(RunnerAuthError::TokenMissing));
        }
        if let Err(error) = require_identity(&auth.identity) {
            return Check::Done(Err(error));
        }
        match verifier.verify(token, &auth.identity) {
            Err(OidcError::KeyNotFound(_) | OidcError::NoKeySet(_)) if may_fetch && verifier.may_refresh() => {
                Check::NeedsKeys(Arc::clone(verifier))
            }
            result => Check::Done(result.map_err(RunnerAuthError::from)),
        }
    }
}

fn require_identity(identity: &RunnerIdentity) -> Result<(), RunnerAuthError> {
    Ok(runner_auth::require_identity(identity)?)
}

/// Refuses an identity with a line break before its signature is looked at: the payload is one line per field, so
/// a line break could make two identities sign alike.
pub fn reject_line_breaks(identity: &RunnerIdentity) -> Result<(), RunnerAuthError> {
    Ok(runner_auth::reject_line_breaks(identity)?)
}

#[cfg(test)]
mod tests {
    use sha2::Digest as _;

    use super::*;

    const NOW: i64 = 1_800_000_000;
    const NONCE: &str = "00112233445566778899aabbccddeeff";

    fn identity() -> RunnerIdentity {
        RunnerIdentity {
            provider: "github-actions".into(),
            repository: "acme/payments".into(),
            workflow: "release".into(),
            run_id: "77".into(),
            run_attempt: "1".into(),
            git_ref: "refs/heads/main".into(),
            sha: "abc123".into(),
            actor: "release-bot".into(),
            job: "promote".into(),
            runner_name: "ubuntu-latest".into(),
        }
    }

    fn secret(key: &str) -> Secret {
        Secret::new(key.as_bytes().to_vec())
    }

    fn request() -> EvaluateRequest {
        serde_json::from_str(
            r#"{"action_type":"release_governance_record","target":"production",
                "release_governance":{"metadata_kind":"rollout-promotion-execution","approval_state":"approved"},
                "record":{"z":1,"a":[true,null]}}"#,
        )
        .unwrap()
    }

    /// `request` with a v2 credential issued at `issued_at` with `nonce`, signed with `key`.
    fn signed_v2(
        key: &str,
        key_id: &str,
        mut request: EvaluateRequest,
        issued_at: i64,
        nonce: &str,
    ) -> EvaluateRequest {
        request.runner_auth = Some(RunnerAuthentication {
            signature: sign_v2(&secret(key), &identity(), &request, issued_at, nonce),
            identity: identity(),
            algorithm: HMAC_ALGORITHM.into(),
            key_id: key_id.into(),
            issued_at,
            nonce: nonce.into(),
        });
        request
    }

    fn signed_v1(key: &str, key_id: &str) -> EvaluateRequest {
        EvaluateRequest {
            runner_auth: Some(RunnerAuthentication {
                identity: identity(),
                algorithm: HMAC_ALGORITHM.into(),
                key_id: key_id.into(),
                signature: sign_v1(&secret(key), &identity()),
                ..Default::default()
            }),
            ..request()
        }
    }

    fn authenticator(key_id: &str, accept_v1: bool) -> RunnerAuthenticator {
        let runners = HmacRunners {
            key: secret("runner-secret"),
            key_id: key_id.into(),
            accept_v1,
            window: Duration::from_secs(60),
        };
        RunnerAuthenticator::new(Some(runners), None).unwrap()
    }

    fn outcome_at(authenticator: &RunnerAuthenticator, request: &EvaluateRequest, now: i64) -> Result<(), String> {
        match authenticator.check_with(request, true, now) {
            Check::Done(result) => result.map_err(|error| error.to_string()),
            Check::NeedsKeys(_) => panic!("HMAC never needs keys fetched"),
        }
    }

    fn outcome(authenticator: &RunnerAuthenticator, request: &EvaluateRequest) -> Result<(), String> {
        outcome_at(authenticator, request, NOW)
    }

    #[test]
    fn the_request_digest_covers_the_request_without_its_credential_and_unknown_fields() {
        let plain = request();
        let canonical = String::from_utf8(canonical_request(&plain)).unwrap();
        assert_eq!(
            canonical,
            r#"{"action_type":"release_governance_record","target":"production","release_governance":{"metadata_kind":"rollout-promotion-execution","approval_state":"approved"},"record":{"a":[true,null],"z":1}}"#
        );
        assert_eq!(
            request_sha256(&plain),
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let with_auth = signed_v2("k", "", plain.clone(), NOW, NONCE);
        assert_eq!(request_sha256(&with_auth), request_sha256(&plain));
        let with_unknown: EvaluateRequest =
            serde_json::from_str(&canonical.replacen('{', r#"{"future":1,"#, 1)).unwrap();
        assert_eq!(request_sha256(&with_unknown), request_sha256(&plain));
        let mut other = plain.clone();
        other.target = "staging".into();
        assert_ne!(request_sha256(&other), request_sha256(&plain));
    }

    #[test]
    fn a_v2_credential_passes_once_for_its_own_request_within_the_window() {
        let authenticator = authenticator("k1", false);
        let signed = signed_v2("runner-secret", "k1", request(), NOW - 59, NONCE);
        assert_eq!(outcome(&authenticator, &signed), Ok(()));
        assert_eq!(
            outcome(&authenticator, &signed),
            Err("runner_auth was replayed: its nonce was already used within the 60 s window".into())
        );
        // Upper-case signatures are the same signature (as v1 accepts them).
        let mut upper = signed_v2("runner-secret", "k1", request(), NOW, &"ab".repeat(16));
        let auth = upper.runner_auth.as_mut().unwrap();
        auth.signature = auth.signature.to_uppercase();
        assert_eq!(outcome(&authenticator, &upper), Ok(()));
    }

    #[test]
    fn a_v2_credential_moved_to_another_request_is_invalid() {
        let authenticator = authenticator("", false);
        let genuine = signed_v2("runner-secret", "", request(), NOW, NONCE);
        let mut forged = request();
        forged.target = "production-eu".into();
        forged.runner_auth = genuine.runner_auth.clone();
        assert_eq!(
            outcome(&authenticator, &forged),
            Err("runner_auth signature is invalid".into())
        );
        // Changing the time or nonce it was signed with breaks it too; the genuine one still passes afterwards.
        for change in [
            |auth: &mut RunnerAuthentication| auth.issued_at += 1,
            |auth: &mut RunnerAuthentication| auth.nonce = "ff".repeat(16),
        ] {
            let mut changed = genuine.clone();
            change(changed.runner_auth.as_mut().unwrap());
            assert_eq!(
                outcome(&authenticator, &changed),
                Err("runner_auth signature is invalid".into())
            );
        }
        assert_eq!(outcome(&authenticator, &genuine), Ok(()));
    }

    #[test]
    fn stale_and_future_credentials_are_refused_saying_which() {
        let authenticator = authenticator("", false);
        let stale = signed_v2("runner-secret", "", request(), NOW - 61, NONCE);
        assert_eq!(
            outcome(&authenticator, &stale),
            Err("runner_auth is stale: issued 61 s ago, beyond the 60 s window (--runner-auth-window)".into())
        );
        let future = signed_v2("runner-secret", "", request(), NOW + 61, NONCE);
        assert_eq!(
            outcome(&authenticator, &future),
            Err(
                "runner_auth is issued 61 s in the future, beyond the 60 s window (--runner-auth-window): \
                 check the runner's clock"
                    .into()
            )
        );
        // Neither was remembered: within its window the same nonce is still good once.
        assert_eq!(outcome_at(&authenticator, &stale, NOW - 1), Ok(()));
        // After the window, a replay is refused as stale, not let through because the nonce was forgotten.
        assert_eq!(
            outcome_at(&authenticator, &stale, NOW + 100),
            Err("runner_auth is stale: issued 161 s ago, beyond the 60 s window (--runner-auth-window)".into())
        );
    }

    #[test]
    fn v1_signatures_need_the_flag() {
        let v1 = signed_v1("runner-secret", "k1");
        assert_eq!(
            outcome(&authenticator("k1", false), &v1),
            Err(RunnerAuthError::V1NotAccepted.to_string())
        );
        let migrating = authenticator("k1", true);
        assert!(migrating.accepts_v1());
        assert_eq!(outcome(&migrating, &v1), Ok(()));
        // Still checked: a v1 signature with the wrong key, or attached to another identity, is invalid.
        assert_eq!(
            outcome(&migrating, &signed_v1("wrong-secret", "k1")),
            Err("runner_auth signature is invalid".into())
        );
        // A v2 signature with its v2 fields stripped is not a v1 signature.
        let mut stripped = signed_v2("runner-secret", "k1", request(), NOW, NONCE);
        let auth = stripped.runner_auth.as_mut().unwrap();
        auth.issued_at = 0;
        auth.nonce.clear();
        assert_eq!(
            outcome(&migrating, &stripped),
            Err("runner_auth signature is invalid".into())
        );
    }

    #[test]
    fn each_failure_has_its_message() {
        let good = signed_v2("runner-secret", "k1", request(), NOW, NONCE);
        let with = |change: fn(&mut RunnerAuthentication)| {
            let mut request = good.clone();
            change(request.runner_auth.as_mut().unwrap());
            request
        };
        let cases = [
            (
                EvaluateRequest {
                    runner_auth: None,
                    ..request()
                },
                "runner_auth is required",
            ),
            (
                with(|auth| auth.algorithm = "none".into()),
                "runner_auth algorithm must be HMAC-SHA256 or OIDC-JWT",
            ),
            (
                with(|auth| auth.key_id = "k2".into()),
                "runner_auth key_id mismatch: k2",
            ),
            (
                with(|auth| auth.signature = " ".into()),
                "runner_auth signature is required",
            ),
            (
                with(|auth| auth.identity.repository = "attacker/repo".into()),
                "runner_auth signature is invalid",
            ),
            (
                with(|auth| auth.nonce.clear()),
                "runner_auth v2 needs both issued_at and nonce",
            ),
            (
                with(|auth| auth.issued_at = 0),
                "runner_auth v2 needs both issued_at and nonce",
            ),
            (
                with(|auth| auth.nonce = "0123".into()),
                "runner_auth nonce must be 32 to 128 lower-case hex digits (16 to 64 random bytes)",
            ),
            (
                with(|auth| auth.nonce = NONCE.to_uppercase()),
                "runner_auth nonce must be 32 to 128 lower-case hex digits (16 to 64 random bytes)",
            ),
            (
                with(|auth| auth.algorithm = OIDC_ALGORITHM.into()),
                "runner OIDC authentication is not configured",
            ),
        ];
        for (request, message) in cases {
            assert_eq!(outcome(&authenticator("k1", false), &request), Err(message.to_owned()));
        }
        assert_eq!(
            outcome(
                &authenticator("k1", false),
                &signed_v2("wrong", "k1", request(), NOW, NONCE)
            ),
            Err("runner_auth signature is invalid".into())
        );
    }

    #[test]
    fn identity_needs_provider_and_repository_even_when_signed() {
        let key = secret("runner-secret");
        let bare = RunnerIdentity {
            provider: "github-actions".into(),
            ..Default::default()
        };
        let mut request = request();
        request.runner_auth = Some(RunnerAuthentication {
            signature: sign_v2(&key, &bare, &request, NOW, NONCE),
            identity: bare.clone(),
            algorithm: HMAC_ALGORITHM.into(),
            issued_at: NOW,
            nonce: NONCE.into(),
            ..Default::default()
        });
        assert_eq!(
            outcome(&authenticator("", false), &request),
            Err(RunnerAuthError::Identity.to_string())
        );
        assert_eq!(
            RunnerAuthError::from(RunnerSigner::new(key.expose().to_vec(), String::new(), bare).unwrap_err()),
            RunnerAuthError::Identity
        );
    }

    #[test]
    fn identities_with_line_breaks_are_refused_because_they_could_collide() {
        let one = RunnerIdentity {
            provider: "p\nrepository=r".into(),
            ..Default::default()
        };
        let other = RunnerIdentity {
            provider: "p".into(),
            repository: "r\nrepository=".into(),
            ..Default::default()
        };
        assert_eq!(
            signing_payload(&one),
            signing_payload(&other),
            "the payload alone cannot tell them apart"
        );
        let key = secret("runner-secret");
        let mut request = request();
        request.runner_auth = Some(RunnerAuthentication {
            signature: sign_v2(&key, &other, &request, NOW, NONCE),
            identity: other.clone(),
            algorithm: HMAC_ALGORITHM.into(),
            issued_at: NOW,
            nonce: NONCE.into(),
            ..Default::default()
        });
        assert_eq!(
            outcome(&authenticator("", false), &request),
            Err(RunnerAuthError::LineBreak.to_string())
        );
        assert_eq!(
            RunnerAuthError::from(RunnerSigner::new(key.expose().to_vec(), String::new(), other).unwrap_err()),
            RunnerAuthError::LineBreak
        );
    }

    #[test]
    fn the_signer_makes_fresh_credentials_the_daemon_accepts() {
        let signer = RunnerSigner::new(b"runner-secret".to_vec(), "k1".into(), identity()).unwrap();
        let authenticator = authenticator("k1", false);
        let mut first = request();
        signer.sign(&mut first);
        let mut second = request();
        signer.sign(&mut second);
        let (a, b) = (
            first.runner_auth.as_ref().unwrap(),
            second.runner_auth.as_ref().unwrap(),
        );
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(a.nonce.len(), 32);
        assert!((a.issued_at - unix_now()).abs() <= 1);
        assert_eq!(authenticator.check_now(&first), Ok(()));
        assert_eq!(authenticator.check_now(&second), Ok(()));
    }

    #[test]
    fn nothing_configured_means_no_authenticator() {
        assert!(RunnerAuthenticator::new(None, None).is_none());
    }
}
