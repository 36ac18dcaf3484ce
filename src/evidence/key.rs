//! The keys that sign evidence records, and the keys a verifier checks them with.
//!
//! HMAC-SHA256 is the reference's: whoever can verify a record can also forge one. Ed25519 separates the two: the
//! daemon signs with a private key, and verifiers need only its public key. Ed25519 keys are read in the formats
//! `openssl` writes: the private key as PKCS#8 (`openssl genpkey -algorithm ed25519`, PEM or DER), the public key as
//! SubjectPublicKeyInfo (`openssl pkey -pubout`, PEM or DER).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

pub const HMAC_SHA256: &str = "HMAC-SHA256";
pub const ED25519_ALGORITHM: &str = "Ed25519";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT
/// STRING { 32 bytes } }.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is an encrypted private key; write it unencrypted (openssl pkey -in KEY -out PLAIN), mode 0600")]
    Encrypted,
    #[error("is PEM without a {0} block")]
    PemLabel(&'static str),
    #[error("has a PEM body that is not base64: {0}")]
    PemBody(String),
    #[error("is not an Ed25519 private key in PKCS#8 (openssl genpkey -algorithm ed25519): {0}")]
    Private(String),
    #[error("is not an Ed25519 public key (SubjectPublicKeyInfo, as openssl pkey -pubout writes it)")]
    Public,
}

/// The key that signs new records, and its id (written into each signature).
#[derive(Clone)]
pub struct SigningKey {
    kind: Kind,
    key_id: String,
}

#[derive(Clone)]
enum Kind {
    /// Wiped on drop.
    Hmac(Zeroizing<Vec<u8>>),
    Ed25519(Arc<Ed25519KeyPair>),
}

impl SigningKey {
    /// An HMAC-SHA256 key, as the reference signs.
    pub fn new(key: Vec<u8>, key_id: impl Into<String>) -> Self {
        SigningKey {
            kind: Kind::Hmac(Zeroizing::new(key)),
            key_id: key_id.into(),
        }
    }

    /// An Ed25519 private key from PKCS#8 (PEM or DER). Without `key_id`, the id is the public key's
    /// [`fingerprint`], which is also what a verifier calls the public key unless told otherwise.
    pub fn ed25519(pkcs8: &[u8], key_id: Option<&str>) -> Result<Self, KeyError> {
        let der = Zeroizing::new(pem_or_der(pkcs8, "PRIVATE KEY")?);
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|error| KeyError::Private(error.to_string()))?;
        let key_id = match key_id {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => fingerprint(pair.public_key().as_ref()),
        };
        Ok(SigningKey {
            kind: Kind::Ed25519(Arc::new(pair)),
            key_id,
        })
    }

    /// Written into each signature; checked against signatures when verifying, unless empty (HMAC).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn algorithm(&self) -> &'static str {
        match self.kind {
            Kind::Hmac(_) => HMAC_SHA256,
            Kind::Ed25519(_) => ED25519_ALGORITHM,
        }
    }

    /// The public half of an Ed25519 key, under the same id; `None` for HMAC, which has none.
    pub fn public_key(&self) -> Option<PublicKey> {
        match &self.kind {
            Kind::Hmac(_) => None,
            Kind::Ed25519(pair) => Some(PublicKey {
                key: pair
                    .public_key()
                    .as_ref()
                    .try_into()
                    .expect("an Ed25519 public key is 32 bytes"),
                key_id: self.key_id.clone(),
            }),
        }
    }

    /// Lower-case hex signature over `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> String {
        match &self.kind {
            Kind::Hmac(key) => super::encode::lower_hex(&hmac(key, message).finalize().into_bytes()),
            Kind::Ed25519(pair) => super::encode::lower_hex(pair.sign(message).as_ref()),
        }
    }

    /// Whether `value` (hex, any case) is this HMAC key's signature over `message`, compared in constant time.
    /// Always false for an Ed25519 key: its signatures are checked with the public key.
    fn hmac_matches(&self, message: &[u8], value: &str) -> bool {
        match (&self.kind, hex::decode(value.to_ascii_lowercase())) {
            (Kind::Hmac(key), Ok(tag)) => hmac(key, message).verify_slice(&tag).is_ok(),
            _ => false,
        }
    }
}

fn hmac(key: &[u8], message: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    mac
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("SigningKey");
        debug
            .field("algorithm", &self.algorithm())
            .field("key_id", &self.key_id);
        match self.public_key() {
            Some(public) => debug.field("public_key", &hex::encode(public.key)),
            None => debug.field("key", &"<redacted>"),
        }
        .finish()
    }
}

/// An Ed25519 public key and the id signatures made with its private half carry.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: [u8; 32],
    key_id: String,
}

impl PublicKey {
    /// From SubjectPublicKeyInfo (PEM or DER). Without `key_id`, the id is the key's [`fingerprint`].
    pub fn from_spki(spki: &[u8], key_id: Option<&str>) -> Result<Self, KeyError> {
        let der = pem_or_der(spki, "PUBLIC KEY")?;
        let key: [u8; 32] = der
            .strip_prefix(&ED25519_SPKI_PREFIX[..])
            .and_then(|key| key.try_into().ok())
            .ok_or(KeyError::Public)?;
        let key_id = match key_id {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => fingerprint(&key),
        };
        Ok(PublicKey { key, key_id })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn verifies(&self, message: &[u8], value: &str) -> bool {
        match hex::decode(value.to_ascii_lowercase()) {
            Ok(signature) => UnparsedPublicKey::new(&ED25519, self.key)
                .verify(message, &signature)
                .is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("key_id", &self.key_id)
            .field("key", &hex::encode(self.key))
            .finish()
    }
}

/// The default id of an Ed25519 key: `ed25519-` and the first 16 hex digits of SHA-256 over its 32 bytes.
pub fn fingerprint(public_key: &[u8]) -> String {
    format!("ed25519-{}", &hex::encode(Sha256::digest(public_key))[..16])
}

/// The DER inside a PEM block labelled `label`, or the input itself when it is not PEM.
fn pem_or_der(input: &[u8], label: &'static str) -> Result<Vec<u8>, KeyError> {
    let text = String::from_utf8_lossy(input);
    if !text.trim_start().starts_with("-----BEGIN ") {
        return Ok(input.to_vec());
    }
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(KeyError::Encrypted);
    }
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(body, _)| body)
        .ok_or(KeyError::PemLabel(label))?;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD
        .decode(base64)
        .map_err(|error| KeyError::PemBody(error.to_string()))
}

/// What signed records are checked against. With no key at all, records are checked as the reference checks them
/// (unsigned ones pass, signed ones cannot be checked); with any key, every record must carry a valid signature under
/// one of them.
#[derive(Clone, Debug, Default)]
pub struct VerifyingKeys {
    /// An HMAC key (the reference's; its id, unless empty, must match).
    hmac: Option<SigningKey>,
    /// Ed25519 public keys, found by the `key_id` of each signature.
    public: Vec<PublicKey>,
}

impl VerifyingKeys {
    /// The keys that verify what `key` signs: the HMAC key itself, or the Ed25519 key's public half.
    pub fn of(key: &SigningKey) -> Self {
        VerifyingKeys::default().with(key)
    }

    /// Adds the keys that verify what `key` signs.
    pub fn with(mut self, key: &SigningKey) -> Self {
        match key.public_key() {
            Some(public) => self.public.push(public),
            None => self.hmac = Some(key.clone()),
        }
        self
    }

    pub fn with_public(mut self, key: PublicKey) -> Self {
        self.public.push(key);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.hmac.is_none() && self.public.is_empty()
    }

    /// What is wrong with a signature `(algorithm, key_id, value)` over `message` (nothing if it is good), as the
    /// ends of report lines that begin "record N ". HMAC signatures are checked as the reference checks them:
    /// algorithm, key id and value each on their own.
    pub(crate) fn problems(&self, algorithm: &str, key_id: &str, value: &str, message: &[u8]) -> Vec<String> {
        if algorithm == ED25519_ALGORITHM {
            if self.public.is_empty() {
                return vec!["is signed with Ed25519, but no public key was given (--evidence-public-key)".to_owned()];
            }
            return match self.public.iter().find(|key| key.key_id == key_id) {
                None => vec![format!(
                    "signature key_id {key_id:?} is not one of the public keys given"
                )],
                Some(key) if key.verifies(message, value) => Vec::new(),
                Some(_) => vec!["signature mismatch".to_owned()],
            };
        }
        let Some(hmac) = &self.hmac else {
            return vec![if algorithm == HMAC_SHA256 {
                "is signed with HMAC-SHA256, but no HMAC key was given".to_owned()
            } else {
                "signature algorithm mismatch".to_owned()
            }];
        };
        let mut problems = Vec::new();
        if algorithm != HMAC_SHA256 {
            problems.push("signature algorithm mismatch".to_owned());
        }
        if !hmac.key_id().is_empty() && key_id != hmac.key_id() {
            problems.push("signature key_id mismatch".to_owned());
        }
        if !hmac.hmac_matches(message, value) {
            problems.push("signature mismatch".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` of it (RFC 8032's first test key).
    const PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
    const PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn debug_never_shows_a_secret() {
        let key = SigningKey::new(b"super-secret-value".to_vec(), "k1");
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.contains("super-secret-value"), "{shown}");
        assert!(!shown.contains("115, 117, 112"), "{shown}"); // the bytes of "sup"
        assert!(shown.contains("k1"), "{shown}");
        let ed = SigningKey::ed25519(PRIVATE_PEM.as_bytes(), None).unwrap();
        let shown = format!("{ed:?}");
        assert!(!shown.contains("9d61b19d"), "the private key's bytes: {shown}");
        assert!(shown.contains("d75a980182b10ab7"), "the public key: {shown}");
    }

    #[test]
    fn openssl_keys_load_and_the_public_key_verifies_what_the_private_key_signs() {
        let private = SigningKey::ed25519(PRIVATE_PEM.as_bytes(), None).unwrap();
        let public = PublicKey::from_spki(PUBLIC_PEM.as_bytes(), None).unwrap();
        assert_eq!(private.public_key().unwrap(), public);
        assert_eq!(public.key_id(), private.key_id());
        assert_eq!(public.key_id(), fingerprint(&public.key));
        assert!(public.key_id().starts_with("ed25519-") && public.key_id().len() == 24);
        // RFC 8032, test 1: the empty message.
        let signature = private.sign(b"");
        assert_eq!(
            signature,
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(public.verifies(b"", &signature));
        assert!(public.verifies(b"", &signature.to_uppercase()));
        assert!(!public.verifies(b"x", &signature));
        assert!(!public.verifies(b"", "zz"));
        // DER is read as well as PEM; a named id replaces the fingerprint.
        let der = pem_or_der(PUBLIC_PEM.as_bytes(), "PUBLIC KEY").unwrap();
        assert_eq!(PublicKey::from_spki(&der, Some("site-1")).unwrap().key_id(), "site-1");
    }

    #[test]
    fn wrong_key_files_are_refused_saying_what_they_are_not() {
        assert_eq!(
            SigningKey::ed25519(PUBLIC_PEM.as_bytes(), None).unwrap_err(),
            KeyError::PemLabel("PRIVATE KEY")
        );
        assert_eq!(
            PublicKey::from_spki(PRIVATE_PEM.as_bytes(), None).unwrap_err(),
            KeyError::PemLabel("PUBLIC KEY")
        );
        assert!(matches!(
            SigningKey::ed25519(b"not a key", None).unwrap_err(),
            KeyError::Private(_)
        ));
        assert_eq!(PublicKey::from_spki(b"not a key", None).unwrap_err(), KeyError::Public);
        assert_eq!(
            SigningKey::ed25519(
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                None
            )
            .unwrap_err(),
            KeyError::Encrypted
        );
    }

    #[test]
    fn hmac_problems_are_the_references_and_each_key_kind_names_what_is_missing() {
        let hmac = SigningKey::new(b"k".to_vec(), "id1");
        let value = hmac.sign(b"m");
        let keys = VerifyingKeys::of(&hmac);
        assert!(keys.problems(HMAC_SHA256, "id1", &value, b"m").is_empty());
        assert_eq!(
            keys.problems("HMAC-SHA1", "other", &value, b"x"),
            [
                "signature algorithm mismatch",
                "signature key_id mismatch",
                "signature mismatch"
            ]
        );
        let ed = SigningKey::ed25519(PRIVATE_PEM.as_bytes(), Some("ed-1")).unwrap();
        let signed = ed.sign(b"m");
        assert_eq!(
            keys.problems(ED25519_ALGORITHM, "ed-1", &signed, b"m"),
            ["is signed with Ed25519, but no public key was given (--evidence-public-key)"]
        );
        let public = VerifyingKeys::of(&ed);
        assert!(public.problems(ED25519_ALGORITHM, "ed-1", &signed, b"m").is_empty());
        assert_eq!(
            public.problems(ED25519_ALGORITHM, "ed-2", &signed, b"m"),
            ["signature key_id \"ed-2\" is not one of the public keys given"]
        );
        assert_eq!(
            public.problems(ED25519_ALGORITHM, "ed-1", &signed, b"n"),
            ["signature mismatch"]
        );
        assert_eq!(
            public.problems(HMAC_SHA256, "id1", &value, b"m"),
            ["is signed with HMAC-SHA256, but no HMAC key was given"]
        );
        // A public key cannot make signatures: an HMAC "signature" with the public key's bytes is no signature.
        assert!(!ed.hmac_matches(b"m", &signed));
    }
}
