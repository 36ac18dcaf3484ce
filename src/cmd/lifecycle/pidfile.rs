//! The PID file and its lock. The daemon holds an exclusive `flock` on the file for its whole life, so the lock,
//! not the number in the file, says whether the daemon is there: a stale file left by a crash, or one whose pid
//! was reused by an unrelated process, has no holder.
//!
//! The file is reached through its checked directory ([`SafeDir`]) and never through a link; it must be a regular
//! file owned by the caller or root, and the process holding it must be this program, or nothing is done.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;

use crate::fsutil::{FsError, SafeDir, Trust};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// No PID file.
    Absent,
    /// A PID file nobody holds: the daemon that wrote it is gone.
    Stale,
    /// The daemon holds the file.
    Held,
}

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("refusing pid file {}: {source}", path.display())]
    Unsafe { path: PathBuf, source: FsError },
    #[error("cannot {action} pid file {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "pid file {} is held by pid {pid}, which runs {program}, not this cavra-runtime ({this}); nothing was signalled",
        path.display()
    )]
    NotThisProgram {
        path: PathBuf,
        pid: i32,
        program: String,
        this: String,
    },
    #[error("cannot tell whether pid {pid}, which holds pid file {}, is cavra-runtime: {source}", path.display())]
    Unverifiable { path: PathBuf, pid: i32, source: io::Error },
    #[error("pid file {} appeared while starting: another start is under way", path.display())]
    Appeared { path: PathBuf },
}

/// A PID file, through its checked directory.
#[derive(Debug)]
pub struct PidFile {
    dir: SafeDir,
    name: OsString,
    path: PathBuf,
}

impl PidFile {
    /// The PID file at `path`; with `create`, its directory is created with that mode if missing. `None` when the
    /// directory does not exist (so neither does the file).
    pub fn at(path: &Path, create: Option<Mode>) -> Result<Option<Self>, PidFileError> {
        match SafeDir::of_file(path, create, &Trust::effective_user()) {
            Ok((dir, name)) => Ok(Some(Self {
                dir,
                name,
                path: path.to_owned(),
            })),
            Err(error) if create.is_none() && error.io_kind() == Some(io::ErrorKind::NotFound) => Ok(None),
            Err(error) => Err(self::unsafe_file(path, error)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, read-only, if it exists and passes the checks.
    fn open(&self) -> Result<Option<File>, PidFileError> {
        match self.dir.open_file(&self.name, OFlag::O_RDONLY, None) {
            Ok(file) => Ok(Some(file)),
            Err(error) if error.io_kind() == Some(io::ErrorKind::NotFound) => Ok(None),
            Err(error) => Err(self.unsafe_file(error)),
        }
    }

    pub fn lock_state(&self) -> Result<LockState, PidFileError> {
        let Some(file) = self.open()? else {
            return Ok(LockState::Absent);
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            // Taken and, on drop, released at once: nobody held it.
            Ok(_) => Ok(LockState::Stale),
            Err((_, Errno::EWOULDBLOCK)) => Ok(LockState::Held),
            Err((_, errno)) => Err(self.io("lock", errno.into())),
        }
    }

    /// The pid a daemon wrote before it let go of the file: read while this probe holds the lock, so a daemon that
    /// takes the lock and writes its pid just after a separate look at the lock is never taken for a dead one.
    pub fn abandoned_pid(&self) -> Result<Option<i32>, PidFileError> {
        let Some(file) = self.open()? else {
            return Ok(None);
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut locked) => {
                let mut text = String::new();
                (&mut *locked)
                    .take(64)
                    .read_to_string(&mut text)
                    .map_err(|source| self.io("read", source))?;
                Ok(text.trim().parse().ok().filter(|pid| *pid > 0))
            }
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(self.io("lock", errno.into())),
        }
    }

    /// The pid written in the file, if it holds one.
    pub fn read_pid(&self) -> Option<i32> {
        let mut text = String::new();
        self.open().ok()??.take(64).read_to_string(&mut text).ok()?;
        text.trim().parse().ok().filter(|pid| *pid > 0)
    }

    /// The pid of the process holding the file's lock. On Linux the kernel's lock table says so directly, whatever
    /// the file contains; elsewhere the file's own pid is trusted while the lock is held.
    pub fn holder(&self) -> Result<Option<i32>, PidFileError> {
        if self.lock_state()? != LockState::Held {
            return Ok(None);
        }
        #[cfg(target_os = "linux")]
        {
            let Some(file) = self.open()? else {
                return Ok(None);
            };
            let stat = nix::sys::stat::fstat(&file).map_err(|errno| self.io("inspect", errno.into()))?;
            let (major, minor) = (nix::sys::stat::major(stat.st_dev), nix::sys::stat::minor(stat.st_dev));
            let wanted = format!("{major:02x}:{minor:02x}:{}", stat.st_ino);
            let locks =
                std::fs::read_to_string("/proc/locks").map_err(|source| self.io("find the holder of", source))?;
            Ok(flock_holder(&locks, &wanted))
        }
        #[cfg(not(target_os = "linux"))]
        Ok(self.read_pid())
    }

    /// The daemon holding the file: its holder, which must be running this program. `None` when nobody holds it.
    pub fn daemon(&self) -> Result<Option<i32>, PidFileError> {
        let Some(pid) = self.holder()? else {
            return Ok(None);
        };
        let unverifiable = |source| PidFileError::Unverifiable {
            path: self.path.clone(),
            pid,
            source,
        };
        let this = program_of(std::process::id() as i32).map_err(unverifiable)?;
        let program = match program_of(pid) {
            Ok(program) => program,
            // Gone since: nobody to act on.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(unverifiable(error)),
        };
        if program != this {
            return Err(PidFileError::NotThisProgram {
                path: self.path.clone(),
                pid,
                program: program.display().to_string(),
                this: this.display().to_string(),
            });
        }
        Ok(Some(pid))
    }

    /// Creates the file, which must not exist; empty until the daemon locks it and writes its pid.
    pub fn create(&self) -> Result<File, PidFileError> {
        self.dir
            .create_file(&self.name, OFlag::O_WRONLY, crate::fsutil::mode(0o644))
            .map_err(|error| match error.io_kind() {
                Some(io::ErrorKind::AlreadyExists) => PidFileError::Appeared {
                    path: self.path.clone(),
                },
                _ => self.unsafe_file(error),
            })
    }

    /// Removes the file, if it is one this process may act on.
    pub fn remove(&self) -> Result<(), PidFileError> {
        if self.open()?.is_some() {
            self.dir.remove(&self.name).map_err(|error| self.unsafe_file(error))?;
        }
        Ok(())
    }

    fn unsafe_file(&self, error: FsError) -> PidFileError {
        self::unsafe_file(&self.path, error)
    }

    fn io(&self, action: &'static str, source: io::Error) -> PidFileError {
        PidFileError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }
}

fn unsafe_file(path: &Path, error: FsError) -> PidFileError {
    match error {
        FsError::Io { action, source, .. } => PidFileError::Io {
            action,
            path: path.to_owned(),
            source,
        },
        error => PidFileError::Unsafe {
            path: path.to_owned(),
            source: error,
        },
    }
}

/// The executable a process runs. An executable replaced since the process started (an upgrade) still counts as
/// the same program: the kernel names it with a ` (deleted)` suffix, which is dropped.
#[cfg(target_os = "linux")]
fn program_of(pid: i32) -> io::Result<PathBuf> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    let text = link.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => link,
    })
}

#[cfg(target_os = "macos")]
fn program_of(pid: i32) -> io::Result<PathBuf> {
    use std::os::unix::ffi::OsStringExt as _;
    let mut buffer = vec![0u8; nix::libc::PROC_PIDPATHINFO_MAXSIZE as usize];
    let capacity = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
    // SAFETY: the buffer has room for `capacity` bytes, which proc_pidpath fills with the path.
    let length = unsafe { nix::libc::proc_pidpath(pid, buffer.as_mut_ptr().cast(), capacity) };
    if length <= 0 {
        let error = io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(nix::libc::ESRCH) => io::Error::from(io::ErrorKind::NotFound),
            _ => error,
        });
    }
    buffer.truncate(usize::try_from(length).unwrap_or(0));
    Ok(PathBuf::from(std::ffi::OsString::from_vec(buffer)))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn program_of(_pid: i32) -> io::Result<PathBuf> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "finding a process's executable is implemented for Linux and macOS only",
    ))
}

/// Finds the pid of the FLOCK entry for `device_inode` (`MAJ:MIN:INODE`) in `/proc/locks` text.
#[cfg(target_os = "linux")]
fn flock_holder(locks: &str, device_inode: &str) -> Option<i32> {
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, id, ..] if *id == device_inode => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn pid_file(dir: &Path) -> PidFile {
        PidFile::at(&dir.join("d.pid"), None).unwrap().unwrap()
    }

    #[test]
    fn absent_stale_and_held_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = pid_file(dir.path());
        let path = dir.path().join("d.pid");
        assert_eq!(pid_file.lock_state().unwrap(), LockState::Absent);
        fs::write(&path, "999999\n").unwrap();
        assert_eq!(pid_file.lock_state().unwrap(), LockState::Stale);
        assert_eq!(pid_file.read_pid(), Some(999999));
        assert_eq!(pid_file.holder().unwrap(), None);
        let held = Flock::lock(File::open(&path).unwrap(), FlockArg::LockExclusiveNonblock).unwrap();
        assert_eq!(pid_file.lock_state().unwrap(), LockState::Held);
        #[cfg(target_os = "linux")]
        assert_eq!(
            pid_file.holder().unwrap(),
            Some(std::process::id() as i32),
            "the lock table, not the file"
        );
        assert_eq!(
            pid_file.abandoned_pid().unwrap(),
            None,
            "a held file's pid is not abandoned"
        );
        drop(held);
        assert_eq!(pid_file.lock_state().unwrap(), LockState::Stale);
        assert_eq!(pid_file.abandoned_pid().unwrap(), Some(999999));
        fs::write(&path, "").unwrap();
        assert_eq!(
            pid_file.abandoned_pid().unwrap(),
            None,
            "locked by a daemon that has not written yet"
        );
    }

    #[test]
    fn unreadable_pids_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = pid_file(dir.path());
        for text in ["", "abc", "-4", "0"] {
            fs::write(dir.path().join("d.pid"), text).unwrap();
            assert_eq!(pid_file.read_pid(), None, "{text:?}");
        }
    }

    #[test]
    fn a_link_or_a_directory_in_its_place_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = pid_file(dir.path());
        let path = dir.path().join("d.pid");
        let lock = dir.path().join("other.lock");
        fs::write(&lock, "1\n").unwrap();
        std::os::unix::fs::symlink(&lock, &path).unwrap();
        let error = pid_file.lock_state().unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "refusing pid file {0}: {0} is a symbolic link",
                path.display()
            )),
            "{error}"
        );
        assert!(pid_file.remove().is_err());
        assert!(
            path.symlink_metadata().is_ok() && lock.exists(),
            "neither the link nor its target was removed"
        );
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        assert!(matches!(
            pid_file.lock_state(),
            Err(PidFileError::Unsafe {
                source: FsError::NotRegular { .. },
                ..
            })
        ));
    }

    #[test]
    fn a_holder_that_is_not_this_program_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = pid_file(dir.path());
        fs::write(dir.path().join("d.pid"), "1\n").unwrap();
        // `flock FILE sleep`: another program holding the lock, as a bystander's lock file would be.
        let mut holder = std::process::Command::new("flock")
            .arg(dir.path().join("d.pid"))
            .args(["sleep", "30"])
            .spawn()
            .expect("flock (util-linux) runs");
        let held = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            pid_file.lock_state().unwrap() == LockState::Held
        });
        assert!(held);
        let error = pid_file.daemon().unwrap_err();
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(matches!(error, PidFileError::NotThisProgram { .. }), "{error}");
        assert!(error.to_string().contains("nothing was signalled"), "{error}");
    }

    #[test]
    fn create_never_replaces_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = pid_file(dir.path());
        pid_file.create().unwrap();
        assert!(matches!(pid_file.create(), Err(PidFileError::Appeared { .. })));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn proc_locks_lines_are_matched_by_device_and_inode() {
        let locks = "1: POSIX  ADVISORY  WRITE 10 08:01:77 0 EOF\n2: FLOCK  ADVISORY  WRITE 4321 00:2a:77 0 EOF\n";
        assert_eq!(flock_holder(locks, "00:2a:77"), Some(4321));
        assert_eq!(flock_holder(locks, "08:01:77"), None, "POSIX locks are not ours");
        assert_eq!(flock_holder(locks, "00:2a:78"), None);
    }
}
