//! The HMAC key that signs evidence records.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use super::EvidenceError;

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

    /// Reads the key from a file (trailing newline trimmed). Error names the path.
    pub fn from_file(path: &Path, key_id: impl Into<String>) -> Result<Self, EvidenceError> {
        let mut key = Zeroizing::new(std::fs::read(path).map_err(|source| EvidenceError::KeyFile {
            path: path.to_owned(),
            source,
        })?);
        // Editors and `echo` add a newline (maybe `\r\n`) that is not part of the secret.
        while matches!(key.last(), Some(b'\n' | b'\r')) {
            key.pop();
        }
        if key.is_empty() {
            return Err(EvidenceError::EmptyKey { path: path.to_owned() });
        }
        Ok(SigningKey {
            key,
            key_id: key_id.into(),
        })
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

    #[test]
    fn from_file_trims_trailing_newlines_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, b" secret \r\n\n").unwrap();
        let key = SigningKey::from_file(&path, "k2").unwrap();
        assert_eq!(key.bytes(), b" secret ");
        assert_eq!(key.key_id(), "k2");
    }

    #[test]
    fn from_file_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-key");
        let error = SigningKey::from_file(&missing, "").unwrap_err().to_string();
        assert!(error.contains(&*missing.to_string_lossy()), "{error}");

        let empty = dir.path().join("empty-key");
        std::fs::write(&empty, "\n").unwrap();
        let error = SigningKey::from_file(&empty, "").unwrap_err().to_string();
        assert_eq!(error, format!("evidence signing key file {} is empty", empty.display()));
    }
}
