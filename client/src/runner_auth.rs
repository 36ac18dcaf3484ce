//! CI runner authentication with HMAC-SHA256 (feature `runner-auth`): the payloads both versions sign, and
//! [`RunnerSigner`], which gives each request a credential of its own. The daemon checks credentials with these same
//! functions.
//!
//! - **v2** (what [`RunnerSigner`] makes): the signature covers the identity, a digest of the request it
//!   authenticates, when it was made and a random nonce; the daemon accepts it only within a freshness window around
//!   its own clock, and only once. Payload, one `name=value` line each under the version line, no trailing newline:
//!   `cavra.runner-auth.v2`, the ten identity lines of v1, `request_sha256=<hex>`, `issued_at=<unix seconds>`,
//!   `nonce=<hex>`. The request digest is SHA-256 over [`canonical_request`].
//! - **v1** (the reference's): the signature covers the identity alone, so anyone who has seen it once can attach it
//!   to any request. The daemon accepts it only when told to, while runners migrate.
//!
//! ```
//! use cavra_runtime_client::runner_auth::RunnerSigner;
//! use cavra_runtime_client::{Client, EvaluateRequest, RunnerIdentity};
//!
//! let identity = RunnerIdentity {
//!     provider: "github-actions".into(),
//!     repository: "acme/payments".into(),
//!     ..Default::default()
//! };
//! let signer = RunnerSigner::new(b"the shared key".to_vec(), "k1".into(), identity)?;
//! let request = EvaluateRequest { action_type: "release_governance_record".into(), ..Default::default() };
//! let signed = signer.signed(&request);
//! assert_eq!(signed.runner_auth.as_ref().unwrap().nonce.len(), 32);
//! // Or let the client sign each request it sends:
//! let client = Client::new("/run/cavra/cavra-runtime.sock").with_runner_signer(signer);
//! # Ok::<(), cavra_runtime_client::runner_auth::IdentityError>(())
//! ```

use std::fmt;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::wire::{EvaluateRequest, RunnerAuthentication, RunnerIdentity};

pub const HMAC_ALGORITHM: &str = "HMAC-SHA256";
pub const OIDC_ALGORITHM: &str = "OIDC-JWT";
const PAYLOAD_V1: &str = "cavra.runner-auth.v1";
const PAYLOAD_V2: &str = "cavra.runner-auth.v2";
/// The random bytes in the nonces a signer makes.
const NONCE_BYTES: usize = 16;

/// An identity the daemon refuses whatever its signature. The texts are the reference's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// Provider or repository is empty.
    Incomplete,
    /// A field holds a line break.
    LineBreak,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentityError::Incomplete => "runner_auth identity requires provider and repository",
            IdentityError::LineBreak => "runner_auth identity fields must not contain line breaks",
        })
    }
}

impl std::error::Error for IdentityError {}

/// An identity needs its provider and repository.
pub fn require_identity(identity: &RunnerIdentity) -> Result<(), IdentityError> {
    if identity.provider.is_empty() || identity.repository.is_empty() {
        return Err(IdentityError::Incomplete);
    }
    Ok(())
}

/// The signing payload is one `name=value` line per field, so a value holding a line break could make two
/// identities sign alike (`provider="p\nrepository=r"` against `provider="p", repository="r"`); such an identity is
/// refused before its signature is looked at.
pub fn reject_line_breaks(identity: &RunnerIdentity) -> Result<(), IdentityError> {
    if identity.fields().iter().any(|(_, value)| value.contains(['\n', '\r'])) {
        return Err(IdentityError::LineBreak);
    }
    Ok(())
}

/// The version line and the identity lines both versions sign.
fn payload_start(version: &str, identity: &RunnerIdentity) -> String {
    let mut payload = version.to_owned();
    for (name, value) in identity.fields() {
        let _ = write!(payload, "\n{name}={value}");
    }
    payload
}

/// The reference's (v1) payload: the identity under its version line.
pub fn signing_payload(identity: &RunnerIdentity) -> String {
    payload_start(PAYLOAD_V1, identity)
}

/// The v2 payload: the identity, the request's digest, the issue time and the nonce.
pub fn signing_payload_v2(identity: &RunnerIdentity, request_sha256: &str, issued_at: i64, nonce: &str) -> String {
    let mut payload = payload_start(PAYLOAD_V2, identity);
    let _ = write!(
        payload,
        "\nrequest_sha256={request_sha256}\nissued_at={issued_at}\nnonce={nonce}"
    );
    payload
}

/// The bytes a v2 signature's request digest covers: the request without `runner_auth`, as compact JSON in the
/// contract's field order with empty fields left out (what `serde_json` writes for [`EvaluateRequest`]). Fields the
/// contract does not know are not part of it: the daemon never reads them either. The legacy `record` map is written
/// with its keys sorted.
pub fn canonical_request(request: &EvaluateRequest) -> Vec<u8> {
    let unauthenticated = EvaluateRequest {
        runner_auth: None,
        ..request.clone()
    };
    serde_json::to_vec(&unauthenticated).expect("a request serialises")
}

/// Lower-case hex SHA-256 of [`canonical_request`].
pub fn request_sha256(request: &EvaluateRequest) -> String {
    hex(&Sha256::digest(canonical_request(request)))
}

/// Lower-case hex HMAC-SHA256 of `payload` with `key`.
fn sign(key: &[u8], payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(payload.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Lower-case hex HMAC-SHA256 of the identity's v1 payload.
pub fn sign_v1(key: &[u8], identity: &RunnerIdentity) -> String {
    sign(key, &signing_payload(identity))
}

/// Lower-case hex HMAC-SHA256 of the v2 payload for `request` (its `runner_auth`, if any, is not covered).
pub fn sign_v2(
    key: &[u8],
    identity: &RunnerIdentity,
    request: &EvaluateRequest,
    issued_at: i64,
    nonce: &str,
) -> String {
    sign(
        key,
        &signing_payload_v2(identity, &request_sha256(request), issued_at, nonce),
    )
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// What a runner needs to authenticate requests with HMAC: each request gets a v2 credential of its own. The key is
/// wiped from memory when the signer is dropped, and never shown by `Debug`.
#[derive(Clone)]
pub struct RunnerSigner {
    key: Zeroizing<Vec<u8>>,
    key_id: String,
    identity: RunnerIdentity,
}

impl fmt::Debug for RunnerSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunnerSigner")
            .field("key", &"<redacted>")
            .field("key_id", &self.key_id)
            .field("identity", &self.identity)
            .finish()
    }
}

impl RunnerSigner {
    /// Refuses an identity the daemon would refuse: without provider and repository, or with a line break.
    pub fn new(key: Vec<u8>, key_id: String, identity: RunnerIdentity) -> Result<Self, IdentityError> {
        require_identity(&identity)?;
        reject_line_breaks(&identity)?;
        Ok(RunnerSigner {
            key: Zeroizing::new(key),
            key_id,
            identity,
        })
    }

    /// A fresh v2 `runner_auth` for `request`: issued now, with a new random nonce.
    pub fn authenticate(&self, request: &EvaluateRequest) -> RunnerAuthentication {
        let issued_at = unix_now();
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the operating system supplies random bytes");
        let nonce = hex(&nonce);
        RunnerAuthentication {
            signature: sign_v2(&self.key, &self.identity, request, issued_at, &nonce),
            identity: self.identity.clone(),
            algorithm: HMAC_ALGORITHM.to_owned(),
            key_id: self.key_id.clone(),
            issued_at,
            nonce,
        }
    }

    /// `request` with a fresh credential in its `runner_auth`.
    pub fn sign(&self, request: &mut EvaluateRequest) {
        request.runner_auth = Some(self.authenticate(request));
    }

    /// A copy of `request` with a fresh credential.
    pub fn signed(&self, request: &EvaluateRequest) -> EvaluateRequest {
        let mut signed = request.clone();
        self.sign(&mut signed);
        signed
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> RunnerIdentity {
        RunnerIdentity {
            provider: "p".into(),
            repository: "r".into(),
            ..Default::default()
        }
    }

    #[test]
    fn payloads_are_the_documented_lines() {
        assert_eq!(
            signing_payload(&identity()),
            "cavra.runner-auth.v1\nprovider=p\nrepository=r\nworkflow=\nrun_id=\nrun_attempt=\nref=\nsha=\nactor=\njob=\nrunner_name="
        );
        assert_eq!(
            signing_payload_v2(&identity(), "d1g35t", 1_800_000_000, "ab"),
            "cavra.runner-auth.v2\nprovider=p\nrepository=r\nworkflow=\nrun_id=\nrun_attempt=\nref=\nsha=\nactor=\njob=\n\
             runner_name=\nrequest_sha256=d1g35t\nissued_at=1800000000\nnonce=ab"
        );
    }

    #[test]
    fn signatures_are_hmac_sha256_in_lower_case_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let request = EvaluateRequest {
            action_type: "read_file".into(),
            ..Default::default()
        };
        assert_eq!(
            request_sha256(&request),
            hex(&Sha256::digest(br#"{"action_type":"read_file"}"#))
        );
    }

    #[test]
    fn a_signer_refuses_identities_the_daemon_refuses_and_makes_fresh_credentials() {
        let bare = RunnerIdentity {
            provider: "p".into(),
            ..Default::default()
        };
        assert_eq!(
            RunnerSigner::new(b"k".to_vec(), String::new(), bare)
                .unwrap_err()
                .to_string(),
            "runner_auth identity requires provider and repository"
        );
        let broken = RunnerIdentity {
            job: "a\nb".into(),
            ..identity()
        };
        assert_eq!(
            RunnerSigner::new(b"k".to_vec(), String::new(), broken).unwrap_err(),
            IdentityError::LineBreak
        );
        let signer = RunnerSigner::new(b"key".to_vec(), "k1".into(), identity()).unwrap();
        assert!(!format!("{signer:?}").contains("107, 101, 121"), "{signer:?}");
        let request = EvaluateRequest::default();
        let (one, two) = (signer.authenticate(&request), signer.authenticate(&request));
        assert_ne!(one.nonce, two.nonce);
        assert_eq!(one.nonce.len(), 32);
        assert!((one.issued_at - unix_now()).abs() <= 1);
        assert_eq!(one.key_id, "k1");
        assert_eq!(
            one.signature,
            sign_v2(b"key", &identity(), &request, one.issued_at, &one.nonce)
        );
    }
}
