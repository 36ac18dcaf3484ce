//! The PID file and its lock. The daemon holds an exclusive `flock` on the file for its whole life, so the lock,
//! not the number in the file, says whether the daemon is there: a stale file left by a crash, or one whose pid
//! was reused by an unrelated process, has no holder.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// No PID file.
    Absent,
    /// A PID file nobody holds: the daemon that wrote it is gone.
    Stale,
    /// The daemon holds the file.
    Held,
}

pub fn lock_state(path: &Path) -> io::Result<LockState> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(LockState::Absent),
        Err(error) => return Err(error),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        // Taken and, on drop, released at once: nobody held it.
        Ok(_) => Ok(LockState::Stale),
        Err((_, Errno::EWOULDBLOCK)) => Ok(LockState::Held),
        Err((_, errno)) => Err(errno.into()),
    }
}

/// The pid written in the file, if it holds one.
pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
}

/// The pid of the process holding the file's lock. On Linux the kernel's lock table says so directly, whatever the
/// file contains; elsewhere the file's own pid is trusted while the lock is held.
pub fn holder(path: &Path) -> io::Result<Option<i32>> {
    if lock_state(path)? != LockState::Held {
        return Ok(None);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt as _;
        let metadata = fs::metadata(path)?;
        let (major, minor) = (
            nix::sys::stat::major(metadata.dev()),
            nix::sys::stat::minor(metadata.dev()),
        );
        let wanted = format!("{major:02x}:{minor:02x}:{}", metadata.ino());
        let locks = fs::read_to_string("/proc/locks")?;
        Ok(flock_holder(&locks, &wanted))
    }
    #[cfg(not(target_os = "linux"))]
    Ok(read_pid(path))
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
    use super::*;

    #[test]
    fn absent_stale_and_held_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        assert_eq!(lock_state(&path).unwrap(), LockState::Absent);
        fs::write(&path, "999999\n").unwrap();
        assert_eq!(lock_state(&path).unwrap(), LockState::Stale);
        assert_eq!(read_pid(&path), Some(999999));
        assert_eq!(holder(&path).unwrap(), None);
        let held = Flock::lock(File::open(&path).unwrap(), FlockArg::LockExclusiveNonblock).unwrap();
        assert_eq!(lock_state(&path).unwrap(), LockState::Held);
        #[cfg(target_os = "linux")]
        assert_eq!(
            holder(&path).unwrap(),
            Some(std::process::id() as i32),
            "the lock table, not the file"
        );
        drop(held);
        assert_eq!(lock_state(&path).unwrap(), LockState::Stale);
    }

    #[test]
    fn unreadable_pids_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pid");
        for text in ["", "abc", "-4", "0"] {
            fs::write(&path, text).unwrap();
            assert_eq!(read_pid(&path), None, "{text:?}");
        }
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
