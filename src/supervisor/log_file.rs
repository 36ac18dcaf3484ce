//! `--log-file`: the daemon's log in a file that log rotation can rename without signalling the daemon.
//!
//! launchd opens a job's `StandardErrorPath` once, when it starts the job, so after newsyslog renames the file the
//! daemon would go on writing into the archive. Here the daemon opens the file itself and points standard error at
//! it (so a panic lands there too). Before each batch of lines, it checks that the path still names that file; when
//! rotation has renamed or removed it, it opens the file now at the path (creating it if it can) and points standard
//! error there. A batch that races with the rename lands in the archive, never nowhere.
//!
//! The file is opened as every file the daemon writes is ([`crate::fsutil`]): in a directory no other user can
//! change, only as a regular file of a trusted owner, never through a symbolic link (nor does a planted FIFO block
//! it). So nothing planted at the path between a rotation and the reopen is written to.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use crate::fsutil::{self, FsError, SafeDir, Trust};

/// The log file and the identity (device, inode) of the one open now.
pub struct LogFile {
    path: PathBuf,
    file: File,
    identity: (u64, u64),
    /// Whether standard error follows the file (the daemon); unit tests leave their own alone.
    redirect_stderr: bool,
    /// The last failure to open the file again, reported once until an open succeeds.
    failing: Option<String>,
}

impl LogFile {
    /// Opens `path` for appending (mode 0640 when it creates it) and, if `redirect_stderr`, points standard error
    /// at it.
    pub fn open(path: &Path, redirect_stderr: bool) -> Result<Self, FsError> {
        let (file, identity) = open(path)?;
        if redirect_stderr {
            nix::unistd::dup2_stderr(&file).map_err(|errno| FsError::Io {
                action: "point standard error at",
                path: path.to_owned(),
                source: errno.into(),
            })?;
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            identity,
            redirect_stderr,
            failing: None,
        })
    }

    /// Opens the file at the path again if it is no longer the open one. A failure leaves the open file in use,
    /// and says so in it once.
    fn follow(&mut self) {
        let current = std::fs::symlink_metadata(&self.path).map(|metadata| (metadata.dev(), metadata.ino()));
        if current.as_ref().is_ok_and(|identity| *identity == self.identity) {
            return;
        }
        let reopened = open(&self.path).and_then(|(file, identity)| {
            if self.redirect_stderr {
                nix::unistd::dup2_stderr(&file).map_err(|errno| FsError::Io {
                    action: "point standard error at",
                    path: self.path.clone(),
                    source: errno.into(),
                })?;
            }
            Ok((file, identity))
        });
        match reopened {
            Ok((file, identity)) => {
                self.file = file;
                self.identity = identity;
                self.failing = None;
            }
            Err(error) if self.failing.as_deref() != Some(error.to_string().as_str()) => {
                self.failing = Some(error.to_string());
                let _ = writeln!(
                    self.file,
                    "cavra-runtime: cannot open the log file {} again after rotation: {error}; still writing to the \
                     previous file",
                    self.path.display()
                );
            }
            Err(_) => {}
        }
    }
}

/// Opens the file (created 0640) through its checked directory; the path is resolved afresh each time, so a
/// rotation that replaced the directory too is followed.
fn open(path: &Path) -> Result<(File, (u64, u64)), FsError> {
    let (dir, name) = SafeDir::of_file(path, None, &Trust::effective_user())?;
    let file = dir.open_file(&name, OFlag::O_WRONLY | OFlag::O_APPEND, Some(fsutil::mode(0o640)))?;
    let metadata = file.metadata().map_err(|source| FsError::Io {
        action: "inspect",
        path: path.to_owned(),
        source,
    })?;
    Ok((file, (metadata.dev(), metadata.ino())))
}

impl io::Write for LogFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.follow();
        self.file.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    use super::*;

    #[test]
    fn a_renamed_or_removed_file_is_replaced_at_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.log");
        let mut log = LogFile::open(&path, false).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        log.write_all(b"one\n").unwrap();
        // What newsyslog and logrotate do: rename, then (usually) create an empty file.
        fs::rename(&path, dir.path().join("daemon.log.0")).unwrap();
        fs::write(&path, "").unwrap();
        log.write_all(b"two\n").unwrap();
        // Removed outright: created again.
        fs::rename(&path, dir.path().join("daemon.log.1")).unwrap();
        log.write_all(b"three\n").unwrap();
        log.write_all(b"four\n").unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("daemon.log.0")).unwrap(), "one\n");
        assert_eq!(fs::read_to_string(dir.path().join("daemon.log.1")).unwrap(), "two\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "three\nfour\n");
    }

    #[test]
    fn only_a_regular_file_is_opened_and_never_through_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, "precious\n").unwrap();
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = LogFile::open(&link, false).err().unwrap();
        assert!(matches!(error, FsError::Symlink { .. }), "{error}");
        let fifo = dir.path().join("fifo.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let error = LogFile::open(&fifo, false).err().unwrap();
        assert!(error.to_string().contains("fifo.log"), "no reader: {error}");
        // With a reader the open succeeds, and the file type refuses it.
        let _reader = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let error = LogFile::open(&fifo, false).err().unwrap();
        assert!(matches!(error, FsError::NotRegular { .. }), "{error}");

        // Planted after a rotation: the old file stays in use.
        let path = dir.path().join("daemon.log");
        let mut log = LogFile::open(&path, false).unwrap();
        fs::rename(&path, dir.path().join("daemon.log.0")).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        log.write_all(b"after\n").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
        let archived = fs::read_to_string(dir.path().join("daemon.log.0")).unwrap();
        assert!(
            archived.ends_with("still writing to the previous file\nafter\n"),
            "{archived}"
        );
    }

    #[test]
    fn a_file_that_cannot_be_opened_again_leaves_the_old_one_in_use_and_says_so_once() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        fs::create_dir(&logs).unwrap();
        let path = logs.join("daemon.log");
        let mut log = LogFile::open(&path, false).unwrap();
        fs::rename(&logs, dir.path().join("moved")).unwrap();
        log.write_all(b"one\n").unwrap();
        log.write_all(b"two\n").unwrap();
        let text = fs::read_to_string(dir.path().join("moved/daemon.log")).unwrap();
        let expected = format!(
            "cavra-runtime: cannot open the log file {} again after rotation: cannot inspect {}: No such file or \
             directory (os error 2); still writing to the previous file\none\ntwo\n",
            path.display(),
            logs.display()
        );
        assert_eq!(text, expected);
        // Once the path can be opened again, the log moves there.
        fs::create_dir(&logs).unwrap();
        log.write_all(b"three\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "three\n");
    }
}
