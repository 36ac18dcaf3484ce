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

    /// The first source that has the secret (see [`Secret::source`]), read.
    pub fn locate(
        file: Option<&Path>,
        credential: &str,
        env: Option<&'static str>,
    ) -> Result<Option<Self>, SecretError> {
        match Self::source(file, credential, env) {
            Some(Source::File(path) | Source::Credential(path)) => Self::from_file(&path).map(Some),
            Some(Source::Environment(variable)) => Ok(std::env::var(variable)
                .ok()
                .map(|value| Secret::new(value.into_bytes()))),
            None => Ok(None),
        }
    }

    /// Where the secret would come from, without reading it: a file named on the command line, the systemd
    /// credential `credential`, or the environment variable `env` when it is set and not empty (which holds the
    /// secret itself, as the reference's runners set it).
    pub fn source(file: Option<&Path>, credential: &str, env: Option<&'static str>) -> Option<Source> {
        if let Some(path) = file {
            return Some(Source::File(path.to_owned()));
        }
        let from_credentials = std::env::var_os(CREDENTIALS_DIRECTORY)
            .map(|dir| PathBuf::from(dir).join(credential))
            .filter(|path| path.exists());
        if let Some(path) = from_credentials {
            return Some(Source::Credential(path));
        }
        env.filter(|variable| std::env::var_os(variable).is_some_and(|value| !value.is_empty()))
            .map(Source::Environment)
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Credential(PathBuf),
    /// The variable's value is the secret. A service's environment is visible to whoever can read the file that
    /// set it, and (as root) in `/proc/PID/environ`; a file or credential is the place for a daemon's keys.
    Environment(&'static str),
}

/// The settings files the packages install for the service's `EnvironmentFile=`.
pub const PACKAGED_SETTINGS: [&str; 2] = ["/etc/default/cavra-runtime", "/etc/sysconfig/cavra-runtime"];

#[derive(Debug, thiserror::Error)]
#[error(
    "{variable} is set in {} (mode {mode:04o}), which users other than root can read: the key in it is not secret. \
     Move it to /etc/credstore/{credential} (mode 0600; the unit's LoadCredential= hands it to the daemon), remove \
     the line, and chmod 600 {0}",
    path.display()
)]
pub struct ExposedSecret {
    pub variable: &'static str,
    pub credential: &'static str,
    pub path: PathBuf,
    pub mode: u32,
}

/// The first of `files` that users other than root can read (its owner when that is not root, its group when that
/// is not root's, or everyone) and that sets `variable` to a value: where a key taken from the environment was
/// written for others to see. A file the daemon cannot read is not looked into (the packaged one is root's, 0600).
pub fn exposed_in(files: &[&Path], variable: &'static str, credential: &'static str) -> Option<ExposedSecret> {
    files.iter().find_map(|path| {
        let mut file = File::open(path).ok()?;
        let metadata = file.metadata().ok()?;
        let mode = metadata.mode() & 0o7777;
        let readable_by_others = (mode & 0o400 != 0 && metadata.uid() != 0)
            || (mode & 0o040 != 0 && metadata.gid() != 0)
            || mode & 0o004 != 0;
        if !metadata.is_file() || !readable_by_others {
            return None;
        }
        let mut text = Zeroizing::new(String::new());
        file.read_to_string(&mut text).ok()?;
        let sets = text.lines().any(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("export ").unwrap_or(line);
            line.strip_prefix(variable)
                .and_then(|rest| rest.strip_prefix('='))
                .is_some_and(|value| !value.trim().trim_matches(['"', '\'']).is_empty())
        });
        sets.then(|| ExposedSecret {
            variable,
            credential,
            path: path.to_path_buf(),
            mode,
        })
    })
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
    fn a_settings_file_others_can_read_exposes_the_variables_it_sets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cavra-runtime");
        let files = [path.as_path()];
        let variable = "CAVRA_RUNNER_AUTH_HMAC_KEY";
        let exposed = |text: &str, mode: u32| {
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            exposed_in(&files, variable, "runner-auth-key")
        };
        let setting = "# keys\nCAVRA_RUNNER_AUTH_HMAC_KEY=s3cret\n";
        let error = exposed(setting, 0o644).expect("world-readable and set");
        assert_eq!((error.path.as_path(), error.mode), (path.as_path(), 0o644));
        assert_eq!(
            error.to_string(),
            format!(
                "CAVRA_RUNNER_AUTH_HMAC_KEY is set in {0} (mode 0644), which users other than root can read: the key \
                 in it is not secret. Move it to /etc/credstore/runner-auth-key (mode 0600; the unit's \
                 LoadCredential= hands it to the daemon), remove the line, and chmod 600 {0}",
                path.display()
            )
        );
        assert!(exposed(setting, 0o600).is_none(), "root-only");
        assert!(
            exposed("#CAVRA_RUNNER_AUTH_HMAC_KEY=s3cret\n", 0o644).is_none(),
            "commented out"
        );
        assert!(exposed("CAVRA_RUNNER_AUTH_HMAC_KEY=\n", 0o644).is_none(), "empty");
        assert!(
            exposed("CAVRA_RUNNER_AUTH_HMAC_KEY_ID=x\n", 0o644).is_none(),
            "another variable"
        );
        assert!(
            exposed("  CAVRA_RUNNER_AUTH_HMAC_KEY=\"s\"\n", 0o644).is_some(),
            "indented and quoted"
        );
        // Group-readable: exposed unless the group is root's (the packaged cavra group holds every client).
        let group_readable = exposed(setting, 0o640);
        if nix::unistd::geteuid().is_root() && nix::unistd::getegid().as_raw() == 0 {
            assert!(group_readable.is_none(), "root:root 0640");
            std::os::unix::fs::chown(&path, None, Some(65534)).unwrap();
            assert!(exposed(setting, 0o640).is_some(), "root:nogroup 0640");
            std::os::unix::fs::chown(&path, Some(65534), Some(0)).unwrap();
            assert!(
                exposed(setting, 0o600).is_some(),
                "nobody:root 0600: its owner reads it"
            );
        }
        assert!(exposed_in(&[dir.path().join("absent").as_path()], variable, "runner-auth-key").is_none());
    }

    #[test]
    fn the_source_is_a_named_file_else_a_credential_else_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let named = write(dir.path(), 0o600, "k");
        assert_eq!(
            Secret::source(Some(&named), "no-such-credential", None),
            Some(Source::File(named.clone()))
        );
        // PATH is always set and never empty; an unset variable is no source.
        assert_eq!(
            Secret::source(None, "no-such-credential", Some("PATH")),
            Some(Source::Environment("PATH"))
        );
        assert_eq!(
            Secret::source(None, "no-such-credential", Some("CAVRA_TEST_SURELY_UNSET_VARIABLE")),
            None
        );
    }

    #[test]
    fn an_empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = Secret::from_file(&write(dir.path(), 0o600, "\n")).unwrap_err();
        assert!(matches!(error, SecretError::Empty { .. }));
    }
}
