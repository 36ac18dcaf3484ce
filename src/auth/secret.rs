//! Secrets on disk: read from files (or systemd's credentials directory), refused unless they belong to root or
//! the user reading them and nobody else can read them, held in memory that is wiped on drop, and never shown by
//! `Debug`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::fsutil::{self, Trust};

/// Where systemd's `LoadCredential=` puts a service's secrets.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read key file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "key file {} has mode {mode:04o}: it must not be readable by group or others (chmod 600 {0})",
        path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "key file {} is owned by {}: it must belong to {trusted}, the user reading it (chown)",
        path.display(), fsutil::owner(*uid)
    )]
    WrongOwner { path: PathBuf, uid: u32, trusted: String },
    #[error("key file {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("key file {} is empty", path.display())]
    Empty { path: PathBuf },
}

#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Reads a key file: it must belong to root or the user reading it, and its mode must keep group and others out;
    /// a trailing newline is not part of the key. The checks and the read are of one open file.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let read_error = |source| SecretError::Read {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(read_error)?;
        let metadata = file.metadata().map_err(read_error)?;
        if !metadata.is_file() {
            return Err(SecretError::NotAFile { path: path.to_owned() });
        }
        let trust = Trust::effective_user();
        if !trust.trusts(metadata.uid()) {
            return Err(SecretError::WrongOwner {
                path: path.to_owned(),
                uid: metadata.uid(),
                trusted: trust.describe(),
            });
        }
        let mode = metadata.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        let mut bytes = Zeroizing::new(Vec::new());
        file.read_to_end(&mut bytes).map_err(read_error)?;
        while matches!(bytes.last(), Some(b'\n' | b'\r')) {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(SecretError::Empty { path: path.to_owned() });
        }
        Ok(Secret(bytes))
    }

    /// The first source that has the secret: a file named on the command line, the systemd credential `name`, or
    /// the environment variable `env` if there is one (which holds the secret itself, as the reference's runners
    /// set it).
    pub fn locate(file: Option<&Path>, credential: &str, env: Option<&str>) -> Result<Option<Self>, SecretError> {
        if let Some(path) = file {
            return Self::from_file(path).map(Some);
        }
        let from_credentials = std::env::var_os(CREDENTIALS_DIRECTORY)
            .map(|dir| PathBuf::from(dir).join(credential))
            .filter(|path| path.exists());
        if let Some(path) = from_credentials {
            return Self::from_file(&path).map(Some);
        }
        Ok(env
            .and_then(|env| std::env::var(env).ok())
            .filter(|value| !value.is_empty())
            .map(|value| Secret::new(value.into_bytes())))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn write(dir: &Path, mode: u32, text: &str) -> PathBuf {
        let path = dir.join("key");
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn an_owner_only_file_is_read_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let secret = Secret::from_file(&write(dir.path(), 0o600, "s3cret\n")).unwrap();
        assert_eq!(secret.expose(), b"s3cret");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn a_file_others_can_read_is_refused_naming_file_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 0o644, "s3cret");
        let error = Secret::from_file(&path).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "key file {0} has mode 0644: it must not be readable by group or others (chmod 600 {0})",
                path.display()
            )
        );
        assert!(Secret::from_file(&write(dir.path(), 0o640, "s3cret")).is_err());
        assert!(Secret::from_file(&write(dir.path(), 0o400, "s3cret")).is_ok());
    }

    #[test]
    fn a_file_of_another_user_is_refused_whatever_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 0o600, "s3cret");
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            let error = Secret::from_file(&path).unwrap_err();
            assert!(matches!(error, SecretError::WrongOwner { uid: 65534, .. }), "{error}");
            assert_eq!(
                error.to_string(),
                format!(
                    "key file {} is owned by {}: it must belong to root, the user reading it (chown)",
                    path.display(),
                    fsutil::owner(65534)
                )
            );
        }
        let error = Secret::from_file(dir.path()).unwrap_err();
        assert!(matches!(error, SecretError::NotAFile { .. }), "{error}");
    }

    #[test]
    fn an_empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = Secret::from_file(&write(dir.path(), 0o600, "\n")).unwrap_err();
        assert!(matches!(error, SecretError::Empty { .. }));
    }
}
