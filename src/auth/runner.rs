//! CI runner authentication: a request carries `runner_auth` with the runner's identity and either an HMAC-SHA256
//! signature over it or a provider's OIDC token. Messages are the reference's, word for word, so existing runner
//! tooling recognises them.

use std::sync::Arc;

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use super::oidc::{OidcError, OidcVerifier};
use super::secret::Secret;
use crate::contract::{RunnerAuthentication, RunnerIdentity};

pub const HMAC_ALGORITHM: &str = "HMAC-SHA256";
pub const OIDC_ALGORITHM: &str = "OIDC-JWT";
const PAYLOAD_VERSION: &str = "cavra.runner-auth.v1";

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
    #[error("runner OIDC authentication is not configured")]
    OidcNotConfigured,
    #[error("runner_auth OIDC token is required")]
    TokenMissing,
    #[error(transparent)]
    Oidc(#[from] OidcError),
}

/// The text a runner signs: the identity, one `name=value` line each, under a version line; no trailing newline.
pub fn signing_payload(identity: &RunnerIdentity) -> String {
    [
        PAYLOAD_VERSION.to_owned(),
        format!("provider={}", identity.provider),
        format!("repository={}", identity.repository),
        format!("workflow={}", identity.workflow),
        format!("run_id={}", identity.run_id),
        format!("run_attempt={}", identity.run_attempt),
        format!("ref={}", identity.git_ref),
        format!("sha={}", identity.sha),
        format!("actor={}", identity.actor),
        format!("job={}", identity.job),
        format!("runner_name={}", identity.runner_name),
    ]
    .join("\n")
}

fn mac(key: &Secret, identity: &RunnerIdentity) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes keys of any length");
    mac.update(signing_payload(identity).as_bytes());
    mac
}

/// Lower-case hex HMAC-SHA256 of the identity's signing payload.
pub fn sign(key: &Secret, identity: &RunnerIdentity) -> String {
    hex::encode(mac(key, identity).finalize().into_bytes())
}

/// What the daemon accepts from runners; with neither HMAC nor OIDC configured, it asks for nothing.
#[derive(Debug)]
pub struct RunnerAuthenticator {
    hmac: Option<(Secret, String)>,
    oidc: Option<Arc<OidcVerifier>>,
}

/// The outcome of checking a request with what is at hand.
pub enum Check {
    Done(Result<(), RunnerAuthError>),
    /// The OIDC key set has to be fetched first (not loaded yet, or the token names a key it lacks).
    NeedsKeys(Arc<OidcVerifier>),
}

impl RunnerAuthenticator {
    /// `hmac`: the shared key and the key id runners must present (empty: any).
    pub fn new(hmac: Option<(Secret, String)>, oidc: Option<OidcVerifier>) -> Option<Self> {
        (hmac.is_some() || oidc.is_some()).then(|| Self {
            hmac,
            oidc: oidc.map(Arc::new),
        })
    }

    pub fn oidc(&self) -> Option<&Arc<OidcVerifier>> {
        self.oidc.as_ref()
    }

    /// Checks `runner_auth` with the keys already at hand; may ask for the OIDC key set to be fetched first.
    pub fn check(&self, auth: Option<&RunnerAuthentication>) -> Check {
        self.check_with(auth, true)
    }

    /// Checks `runner_auth` with the keys at hand, after any fetch: a missing key is now a failure.
    pub fn check_now(&self, auth: Option<&RunnerAuthentication>) -> Result<(), RunnerAuthError> {
        match self.check_with(auth, false) {
            Check::Done(result) => result,
            Check::NeedsKeys(_) => unreachable!("no fetch is offered when refreshing is not allowed"),
        }
    }

    fn check_with(&self, auth: Option<&RunnerAuthentication>, may_fetch: bool) -> Check {
        let Some(auth) = auth else {
            return Check::Done(Err(RunnerAuthError::Missing));
        };
        if let Err(error) = reject_line_breaks(&auth.identity) {
            return Check::Done(Err(error));
        }
        match auth.algorithm.as_str() {
            HMAC_ALGORITHM => Check::Done(self.check_hmac(auth)),
            OIDC_ALGORITHM => self.check_oidc(auth, may_fetch),
            _ => Check::Done(Err(RunnerAuthError::Algorithm)),
        }
    }

    fn check_hmac(&self, auth: &RunnerAuthentication) -> Result<(), RunnerAuthError> {
        let (key, key_id) = self.hmac.as_ref().ok_or(RunnerAuthError::HmacNotConfigured)?;
        if !key_id.is_empty() && auth.key_id != *key_id {
            return Err(RunnerAuthError::KeyId(auth.key_id.clone()));
        }
        let signature = auth.signature.trim();
        if signature.is_empty() {
            return Err(RunnerAuthError::SignatureMissing);
        }
        let presented = hex::decode(signature.to_ascii_lowercase()).map_err(|_| RunnerAuthError::SignatureInvalid)?;
        // Constant-time comparison inside the MAC.
        mac(key, &auth.identity)
            .verify_slice(&presented)
            .map_err(|_| RunnerAuthError::SignatureInvalid)?;
        require_identity(&auth.identity)
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
    if identity.provider.is_empty() || identity.repository.is_empty() {
        return Err(RunnerAuthError::Identity);
    }
    Ok(())
}

/// The signing payload is one `name=value` line per field, so a value holding a line break could make two
/// identities sign alike (`provider="p\nrepository=r"` against `provider="p", repository="r"`); such an identity is
/// refused before its signature is looked at.
pub fn reject_line_breaks(identity: &RunnerIdentity) -> Result<(), RunnerAuthError> {
    let fields = [
        &identity.provider,
        &identity.repository,
        &identity.workflow,
        &identity.run_id,
        &identity.run_attempt,
        &identity.git_ref,
        &identity.sha,
        &identity.actor,
        &identity.job,
        &identity.runner_name,
    ];
    if fields.iter().any(|field| field.contains(['\n', '\r'])) {
        return Err(RunnerAuthError::LineBreak);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn signed(key: &str, key_id: &str) -> RunnerAuthentication {
        RunnerAuthentication {
            identity: identity(),
            algorithm: HMAC_ALGORITHM.into(),
            key_id: key_id.into(),
            signature: sign(&Secret::new(key.as_bytes().to_vec()), &identity()),
        }
    }

    fn authenticator(key_id: &str) -> RunnerAuthenticator {
        RunnerAuthenticator::new(Some((Secret::new(b"runner-secret".to_vec()), key_id.into())), None).unwrap()
    }

    fn outcome(
        authenticator: &RunnerAuthenticator,
        auth: Option<&RunnerAuthentication>,
    ) -> Result<(), RunnerAuthError> {
        match authenticator.check(auth) {
            Check::Done(result) => result,
            Check::NeedsKeys(_) => panic!("HMAC never needs keys fetched"),
        }
    }

    #[test]
    fn the_payload_is_the_reference_lines() {
        assert_eq!(
            signing_payload(&RunnerIdentity {
                provider: "p".into(),
                repository: "r".into(),
                ..Default::default()
            }),
            "cavra.runner-auth.v1\nprovider=p\nrepository=r\nworkflow=\nrun_id=\nrun_attempt=\nref=\nsha=\nactor=\njob=\nrunner_name="
        );
    }

    #[test]
    fn a_valid_signature_passes_in_either_case() {
        let auth = signed("runner-secret", "k1");
        assert_eq!(outcome(&authenticator("k1"), Some(&auth)), Ok(()));
        let upper = RunnerAuthentication {
            signature: auth.signature.to_uppercase(),
            ..auth
        };
        assert_eq!(outcome(&authenticator(""), Some(&upper)), Ok(()));
    }

    #[test]
    fn each_failure_has_the_reference_message() {
        let auth = signed("runner-secret", "k1");
        let tampered = RunnerAuthentication {
            identity: RunnerIdentity {
                repository: "attacker/repo".into(),
                ..identity()
            },
            ..auth.clone()
        };
        let cases = [
            (None, "runner_auth is required"),
            (
                Some(RunnerAuthentication {
                    algorithm: "none".into(),
                    ..auth.clone()
                }),
                "runner_auth algorithm must be HMAC-SHA256 or OIDC-JWT",
            ),
            (
                Some(RunnerAuthentication {
                    key_id: "k2".into(),
                    ..auth.clone()
                }),
                "runner_auth key_id mismatch: k2",
            ),
            (
                Some(RunnerAuthentication {
                    signature: " ".into(),
                    ..auth.clone()
                }),
                "runner_auth signature is required",
            ),
            (Some(tampered), "runner_auth signature is invalid"),
            (Some(signed("wrong-secret", "k1")), "runner_auth signature is invalid"),
            (
                Some(RunnerAuthentication {
                    algorithm: OIDC_ALGORITHM.into(),
                    ..auth.clone()
                }),
                "runner OIDC authentication is not configured",
            ),
        ];
        for (auth, message) in cases {
            let error = outcome(&authenticator("k1"), auth.as_ref()).unwrap_err();
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn identity_needs_provider_and_repository_even_when_signed() {
        let key = Secret::new(b"runner-secret".to_vec());
        let bare = RunnerIdentity {
            provider: "github-actions".into(),
            ..Default::default()
        };
        let auth = RunnerAuthentication {
            signature: sign(&key, &bare),
            identity: bare,
            algorithm: HMAC_ALGORITHM.into(),
            key_id: String::new(),
        };
        assert_eq!(outcome(&authenticator(""), Some(&auth)), Err(RunnerAuthError::Identity));
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
        let key = Secret::new(b"runner-secret".to_vec());
        let auth = RunnerAuthentication {
            signature: sign(&key, &other),
            identity: other,
            algorithm: HMAC_ALGORITHM.into(),
            key_id: String::new(),
        };
        assert_eq!(
            outcome(&authenticator(""), Some(&auth)),
            Err(RunnerAuthError::LineBreak)
        );
    }

    #[test]
    fn nothing_configured_means_no_authenticator() {
        assert!(RunnerAuthenticator::new(None, None).is_none());
    }
}
