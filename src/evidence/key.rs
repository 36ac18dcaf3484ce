//! The HMAC key that signs evidence records.

use std::fmt;

use zeroize::Zeroizing;

/// An evidence signing key and its id. The key bytes are wiped on drop and never shown by `Debug`.
#[derive(Clone)]
pub struct SigningKey {
    key: Zeroizing<Vec<u8>>,
    key_id: String,
}

impl SigningKey {
    pub fn new(key: Vec<u8>, key_id: impl Into<String>) -> Self {
        SigningKey {
            key: Zeroizing::new(key),
            key_id: key_id.into(),
        }
    }

    /// Written into each signature; checked against signatures when verifying, unless empty.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key", &"<redacted>")
            .field("key_id", &self.key_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let key = SigningKey::new(b"super-secret-value".to_vec(), "k1");
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.contains("super-secret-value"), "{shown}");
        assert!(!shown.contains("115, 117, 112"), "{shown}"); // the bytes of "sup"
        assert!(shown.contains("k1"), "{shown}");
    }
}
