//! Files on a host shared with other users, opened so that none of them can redirect what cavra-runtime writes.
//!
//! A directory is reached one component at a time from `/` ([`SafeDir`]): every directory and symbolic link on the
//! way must belong to root or to a user the caller trusts ([`Trust`], by default the effective user), and no
//! directory may be writable by group or others unless it has the sticky bit, which stops them from renaming or
//! removing what is not theirs. Nobody else can then change what the path names, and the directory is held open:
//! files in it are created with `O_EXCL` and opened with `O_NOFOLLOW` relative to it, and refused if they are not
//! regular files of a trusted owner.

mod dir;

use std::io;
use std::path::PathBuf;

use nix::libc::mode_t;
use nix::sys::stat::{FileStat, Mode};
use nix::unistd::{Uid, User};

pub use dir::SafeDir;

/// The owners whose directories, links and files may be relied on: always root, and the users named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    uids: Vec<u32>,
}

impl Trust {
    /// Root and this process's effective user.
    pub fn effective_user() -> Self {
        Self::user(nix::unistd::geteuid().as_raw())
    }

    /// Root and `uid`.
    pub fn user(uid: u32) -> Self {
        let mut uids = vec![0];
        if uid != 0 {
            uids.push(uid);
        }
        Self { uids }
    }

    /// These users, and `uid` too.
    pub fn also(mut self, uid: u32) -> Self {
        if !self.trusts(uid) {
            self.uids.push(uid);
        }
        self
    }

    pub fn trusts(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }

    /// For messages: "root", or "root or alice (uid 1000)".
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .uids
            .iter()
            .map(|&uid| if uid == 0 { "root".to_owned() } else { owner(uid) })
            .collect();
        names.join(" or ")
    }
}

/// A file mode from its bits (`mode_t` is not `u32` everywhere; macOS has 16 bits).
pub fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits as mode_t)
}

/// Device and inode: which file an entry or descriptor is.
#[allow(clippy::unnecessary_cast)] // dev_t and ino_t differ between platforms
pub fn identity(stat: &FileStat) -> (u64, u64) {
    (stat.st_dev as u64, stat.st_ino as u64)
}

/// A user as messages name it: `nobody (uid 65534)`, or `uid 4242` when it has no name.
pub fn owner(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error(
        "{kind} {} is owned by {} (mode {mode:04o}); cavra-runtime relies only on those owned by {trusted}",
        path.display(), owner(*uid)
    )]
    Untrusted {
        kind: &'static str,
        path: PathBuf,
        uid: u32,
        mode: mode_t,
        trusted: String,
    },
    #[error(
        "directory {} (owner {}, mode {mode:04o}) is writable by group or others without the sticky bit; another user could replace what it holds",
        path.display(), owner(*uid)
    )]
    WritableByOthers { path: PathBuf, uid: u32, mode: mode_t },
    #[error("{} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{}: too many symbolic links on the way", path.display())]
    TooManyLinks { path: PathBuf },
    #[error("{} is a symbolic link; cavra-runtime does not follow links to the files it writes or acts on", path.display())]
    Symlink { path: PathBuf },
    #[error("{} is not a regular file", path.display())]
    NotRegular { path: PathBuf },
    #[error(
        "{} has {links} hard links in the shared directory {}; another user may have linked it there",
        path.display(), dir.display()
    )]
    HardLinks { path: PathBuf, dir: PathBuf, links: u64 },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl FsError {
    /// The operating system's error, if that is what this is (`NotFound`, `AlreadyExists`, ...).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            FsError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}
