//! [`SafeDir`]: a directory reached and checked one component at a time, held open, and the files in it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, FcntlArg, OFlag, fcntl, openat, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::{FsError, Trust};

/// As many symbolic links as the kernel follows in one path.
const MAX_LINKS: usize = 40;

/// An open directory whose every ancestor, and every link on the way to it, belongs to root or a trusted user,
/// and none of which others may write without the sticky bit. See the module documentation.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    /// The directory as the caller named it; names in it are shown joined to it.
    path: PathBuf,
    /// Writable by group or others, with the sticky bit (like `/tmp`): what others create here must be told apart.
    shared: bool,
    /// Who owns it.
    uid: u32,
    trust: Trust,
}

impl SafeDir {
    /// Opens an existing directory.
    pub fn open(path: &Path, trust: &Trust) -> Result<Self, FsError> {
        walk(path, None, trust)
    }

    /// Opens a directory, creating what is missing of it with exactly `mode`, whatever the umask.
    pub fn create(path: &Path, mode: Mode, trust: &Trust) -> Result<Self, FsError> {
        walk(path, Some(mode), trust)
    }

    /// The directory of `file` (its parent, or the working directory for a bare name), opened or created as by
    /// [`SafeDir::open`] and [`SafeDir::create`], and the file's name in it.
    pub fn of_file(file: &Path, create: Option<Mode>, trust: &Trust) -> Result<(Self, OsString), FsError> {
        let name = file
            .file_name()
            .ok_or_else(|| FsError::NotRegular { path: file.to_owned() })?;
        let parent = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let dir = walk(parent, create, trust)?;
        Ok((dir, name.to_owned()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` in this directory, for messages and for APIs that only take paths.
    pub fn join(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The directory's owner.
    pub fn owner(&self) -> u32 {
        self.uid
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// Creates `name`, which must not exist (`O_CREAT|O_EXCL`: never through a link). `access` is `O_WRONLY` or
    /// `O_RDWR`, plus any flag such as `O_APPEND`.
    pub fn create_file(&self, name: &OsStr, access: OFlag, mode: Mode) -> Result<File, FsError> {
        let flags = access | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, name, flags, mode).map_err(|errno| match errno {
            // Whatever is in the way: a link or another user's file is reported as such by the caller's checks.
            Errno::EEXIST => self.io("create", name, errno),
            errno => self.refusal(name, "create", errno),
        })?;
        Ok(File::from(fd))
    }

    /// Opens `name` (with `create`, creating it with that mode if missing) without following a link, and only if
    /// it is a regular file of a trusted owner with, in a shared directory, no other hard link.
    pub fn open_file(&self, name: &OsStr, access: OFlag, create: Option<Mode>) -> Result<File, FsError> {
        // Non-blocking, so a FIFO planted under the name fails the checks below instead of blocking the open.
        let mut flags = access | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        if create.is_some() {
            flags |= OFlag::O_CREAT;
        }
        let fd = openat(&self.fd, name, flags, create.unwrap_or(Mode::empty()))
            .map_err(|errno| self.refusal(name, "open", errno))?;
        let stat = fstat(&fd).map_err(|errno| self.io("inspect", name, errno))?;
        self.check_file(name, &stat)?;
        let status = fcntl(&fd, FcntlArg::F_GETFL).map_err(|errno| self.io("open", name, errno))?;
        let status = OFlag::from_bits_truncate(status) - OFlag::O_NONBLOCK;
        fcntl(&fd, FcntlArg::F_SETFL(status)).map_err(|errno| self.io("open", name, errno))?;
        Ok(File::from(fd))
    }

    /// What `name` is, without following a link; `None` when there is nothing by that name.
    pub fn entry(&self, name: &OsStr) -> Result<Option<FileStat>, FsError> {
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(self.io("inspect", name, errno)),
        }
    }

    pub fn remove(&self, name: &OsStr) -> Result<(), FsError> {
        unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir).map_err(|errno| self.io("remove", name, errno))
    }

    pub fn rename(&self, from: &OsStr, to: &OsStr) -> Result<(), FsError> {
        renameat(&self.fd, from, &self.fd, to).map_err(|errno| self.io("rename", from, errno))
    }

    /// Sets the mode of `name`, an entry this process just made (such as a socket it bound).
    pub fn set_mode(&self, name: &OsStr, mode: Mode) -> Result<(), FsError> {
        nix::sys::stat::fchmodat(&self.fd, name, mode, nix::sys::stat::FchmodatFlags::FollowSymlink)
            .map_err(|errno| self.io("set the mode of", name, errno))
    }

    /// Makes the directory's entries durable (a new or renamed file survives a crash).
    pub fn sync(&self) -> Result<(), FsError> {
        nix::unistd::fsync(&self.fd).map_err(|errno| FsError::Io {
            action: "sync",
            path: self.path.clone(),
            source: errno.into(),
        })
    }

    /// The checks [`SafeDir::open_file`] makes, for a file opened some other way.
    pub fn check_file(&self, name: &OsStr, stat: &FileStat) -> Result<(), FsError> {
        let path = || self.join(name);
        if kind(stat) != SFlag::S_IFREG {
            return Err(FsError::NotRegular { path: path() });
        }
        if !self.trust.trusts(stat.st_uid) {
            return Err(FsError::Untrusted {
                kind: "file",
                path: path(),
                uid: stat.st_uid,
                mode: stat.st_mode & 0o7777,
                trusted: self.trust.describe(),
            });
        }
        // In a shared directory another user could have hard-linked a file of ours under this name.
        #[allow(clippy::useless_conversion)] // nlink_t is u16 on some platforms
        let links = u64::from(stat.st_nlink);
        if self.shared && links != 1 {
            return Err(FsError::HardLinks {
                path: path(),
                dir: self.path.clone(),
                links,
            });
        }
        Ok(())
    }

    /// Why opening `name` failed: what is there, if that is the reason (a link, or in a shared directory another
    /// user's entry, which the kernel may refuse with EACCES before `O_NOFOLLOW` applies), else the error.
    fn refusal(&self, name: &OsStr, action: &'static str, errno: Errno) -> FsError {
        if let Ok(Some(stat)) = self.entry(name) {
            if kind(&stat) == SFlag::S_IFLNK {
                return FsError::Symlink { path: self.join(name) };
            }
            if let Err(error) = self.check_file(name, &stat) {
                return error;
            }
        }
        self.io(action, name, errno)
    }

    fn io(&self, action: &'static str, name: &OsStr, errno: Errno) -> FsError {
        FsError::Io {
            action,
            path: self.join(name),
            source: errno.into(),
        }
    }
}

impl AsFd for SafeDir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// Writable by group or others.
fn writable_by_others(stat: &FileStat) -> bool {
    stat.st_mode & 0o022 != 0
}

fn sticky(stat: &FileStat) -> bool {
    stat.st_mode & Mode::S_ISVTX.bits() != 0
}

/// A directory on the way, open.
struct Level {
    fd: OwnedFd,
    path: PathBuf,
    shared: bool,
    uid: u32,
}

/// Walks from `/` to `path` (relative paths start at the working directory), following links only where their
/// owner is trusted, checking each directory through the descriptor it was opened as.
fn walk(path: &Path, create: Option<Mode>, trust: &Trust) -> Result<SafeDir, FsError> {
    let io = |action, at: &Path, errno: Errno| FsError::Io {
        action,
        path: at.to_owned(),
        source: errno.into(),
    };
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|source| FsError::Io {
                action: "read the working directory for",
                path: path.to_owned(),
                source,
            })?
            .join(path)
    };
    let mut pending: VecDeque<OsString> = names(&absolute).collect();
    let root = Path::new("/");
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(AT_FDCWD, root, flags, Mode::empty()).map_err(|errno| io("open", root, errno))?;
    let stat = fstat(&fd).map_err(|errno| io("inspect", root, errno))?;
    let mut levels = vec![checked(fd, &stat, root.to_owned(), trust)?];
    let mut links = 0;
    let mut made: Option<OsString> = None;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if levels.len() > 1 {
                levels.pop();
            }
            continue;
        }
        let here = levels.last().expect("the root is never popped");
        let at = here.path.join(&name);
        let stat = match fstatat(&here.fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) if create.is_some() => {
                let mode = create.unwrap_or(Mode::empty());
                match mkdirat(&here.fd, name.as_os_str(), mode) {
                    Ok(()) => made = Some(name.clone()),
                    // Someone made it meanwhile: it is checked like any other.
                    Err(Errno::EEXIST) => {}
                    Err(errno) => return Err(io("create the directory", &at, errno)),
                }
                pending.push_front(name);
                continue;
            }
            Err(errno) => return Err(io("inspect", &at, errno)),
        };
        match kind(&stat) {
            SFlag::S_IFLNK => {
                if !trust.trusts(stat.st_uid) {
                    return Err(untrusted("symbolic link", at, &stat, trust));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(FsError::TooManyLinks { path: absolute });
                }
                let target = readlinkat(&here.fd, name.as_os_str()).map_err(|errno| io("read the link", &at, errno))?;
                let target = PathBuf::from(target);
                if target.is_absolute() {
                    levels.truncate(1);
                }
                for part in names(&target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(part);
                }
            }
            SFlag::S_IFDIR => {
                let fd = openat(&here.fd, name.as_os_str(), flags, Mode::empty()).map_err(|errno| match errno {
                    // Replaced by a link or a file since it was looked at.
                    Errno::ELOOP | Errno::ENOTDIR => FsError::NotADirectory { path: at.clone() },
                    errno => io("open", &at, errno),
                })?;
                let mut stat = fstat(&fd).map_err(|errno| io("inspect", &at, errno))?;
                if made.take().as_ref() == Some(&name) && stat.st_uid == nix::unistd::geteuid().as_raw() {
                    // The umask may have taken bits away, or, when the mode asks for them, added none: set it exactly.
                    let mode = create.unwrap_or(Mode::empty());
                    fchmod(&fd, mode).map_err(|errno| io("set the mode of", &at, errno))?;
                    stat = fstat(&fd).map_err(|errno| io("inspect", &at, errno))?;
                }
                levels.push(checked(fd, &stat, at, trust)?);
            }
            _ => return Err(FsError::NotADirectory { path: at }),
        }
    }
    let last = levels.pop().expect("the root is never popped");
    Ok(SafeDir {
        fd: last.fd,
        path: path.to_owned(),
        shared: last.shared,
        uid: last.uid,
        trust: trust.clone(),
    })
}

/// A directory may be relied on if a trusted user owns it and nobody else may write in it, or only with the sticky
/// bit's protection.
fn checked(fd: OwnedFd, stat: &FileStat, path: PathBuf, trust: &Trust) -> Result<Level, FsError> {
    if !trust.trusts(stat.st_uid) {
        return Err(untrusted("directory", path, stat, trust));
    }
    let shared = writable_by_others(stat);
    if shared && !sticky(stat) {
        return Err(FsError::WritableByOthers {
            path,
            uid: stat.st_uid,
            mode: stat.st_mode & 0o7777,
        });
    }
    Ok(Level {
        fd,
        path,
        shared,
        uid: stat.st_uid,
    })
}

fn untrusted(kind: &'static str, path: PathBuf, stat: &FileStat, trust: &Trust) -> FsError {
    FsError::Untrusted {
        kind,
        path,
        uid: stat.st_uid,
        mode: stat.st_mode & 0o7777,
        trusted: trust.describe(),
    }
}

/// The names in `path` to walk through, `..` included, without the root and `.`.
fn names(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|component| match component {
        Component::Normal(name) => Some(name.to_owned()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    fn trust() -> Trust {
        Trust::effective_user()
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn missing_directories_are_created_with_exactly_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        // Group write is what a usual umask (022) takes away; the mode is set whatever the umask.
        let wanted = Mode::from_bits_truncate(0o1770);
        SafeDir::create(&dir.path().join("a/b"), wanted, &trust()).unwrap();
        assert_eq!(mode_of(&dir.path().join("a")), 0o1770);
        assert_eq!(mode_of(&dir.path().join("a/b")), 0o1770);
        // An existing directory keeps its mode.
        fs::set_permissions(dir.path().join("a"), fs::Permissions::from_mode(0o700)).unwrap();
        SafeDir::create(&dir.path().join("a/b"), Mode::from_bits_truncate(0o755), &trust()).unwrap();
        assert_eq!(mode_of(&dir.path().join("a")), 0o700);
    }

    #[test]
    fn a_directory_others_can_write_is_refused_naming_it_its_owner_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let error = SafeDir::open(&open.join("."), &trust()).unwrap_err();
        assert!(matches!(error, FsError::WritableByOthers { .. }), "{error}");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("directory {} (owner ", open.display())),
            "{text}"
        );
        assert!(text.contains("mode 0777"), "{text}");
        // Below it too, and when only the group may write.
        assert!(SafeDir::create(&open.join("sub"), Mode::from_bits_truncate(0o750), &trust()).is_err());
        assert!(
            !open.join("sub").exists(),
            "nothing is created below a refused directory"
        );
        fs::set_permissions(&open, fs::Permissions::from_mode(0o770)).unwrap();
        assert!(SafeDir::open(&open, &trust()).is_err());
        // The sticky bit makes it shared, not refused.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(SafeDir::open(&open, &trust()).unwrap().is_shared());
    }

    #[test]
    fn a_directory_of_an_untrusted_owner_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let (theirs, trust) = if me == 0 {
            // Root hands the directory to another user.
            let theirs = dir.path().join("theirs");
            fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            (theirs, trust())
        } else {
            // Trusting someone else makes our own temporary directory a stranger's.
            (dir.path().to_owned(), Trust::user(me + 1))
        };
        let error = SafeDir::create(&theirs.join("sub"), Mode::from_bits_truncate(0o750), &trust).unwrap_err();
        assert!(matches!(error, FsError::Untrusted { kind: "directory", .. }), "{error}");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("directory {} is owned by ", theirs.display())),
            "{text}"
        );
        assert!(text.contains("(mode 0"), "{text}");
        assert!(!theirs.join("sub").exists());
        // Root's directories are always trusted.
        SafeDir::open(Path::new("/"), &Trust::user(4242)).unwrap();
    }

    #[test]
    fn links_on_the_way_are_followed_and_links_at_the_file_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let opened = SafeDir::open(&dir.path().join("link"), &trust()).unwrap();
        let mut file = opened
            .open_file(
                OsStr::new("f"),
                OFlag::O_WRONLY | OFlag::O_APPEND,
                Some(Mode::from_bits_truncate(0o640)),
            )
            .unwrap();
        file.write_all(b"x").unwrap();
        assert_eq!(fs::read(real.join("f")).unwrap(), b"x");

        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, real.join("planted")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("nowhere"), real.join("dangling")).unwrap();
        let error = opened
            .open_file(
                OsStr::new("planted"),
                OFlag::O_WRONLY | OFlag::O_APPEND,
                Some(Mode::from_bits_truncate(0o640)),
            )
            .unwrap_err();
        assert!(matches!(error, FsError::Symlink { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            format!(
                "{} is a symbolic link; cavra-runtime does not follow links to the files it writes or acts on",
                dir.path().join("link/planted").display()
            )
        );
        let error = opened
            .create_file(OsStr::new("dangling"), OFlag::O_WRONLY, Mode::from_bits_truncate(0o640))
            .unwrap_err();
        assert_eq!(error.io_kind(), Some(std::io::ErrorKind::AlreadyExists), "{error}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn only_regular_files_with_one_link_in_a_shared_directory_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        let opened = SafeDir::open(&shared, &trust()).unwrap();
        fs::write(dir.path().join("mine"), "x").unwrap();
        fs::hard_link(dir.path().join("mine"), shared.join("linked")).unwrap();
        let error = opened
            .open_file(OsStr::new("linked"), OFlag::O_WRONLY, None)
            .unwrap_err();
        assert!(matches!(error, FsError::HardLinks { links: 2, .. }), "{error}");
        fs::create_dir(shared.join("d")).unwrap();
        let error = opened.open_file(OsStr::new("d"), OFlag::O_RDONLY, None).unwrap_err();
        assert!(matches!(error, FsError::NotRegular { .. }), "{error}");
        nix::unistd::mkfifo(&shared.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let error = opened.open_file(OsStr::new("fifo"), OFlag::O_WRONLY, None).unwrap_err();
        assert!(
            error.io_kind().is_some() || matches!(error, FsError::NotRegular { .. }),
            "{error}"
        );
    }

    #[test]
    fn parent_components_and_link_loops_are_handled() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        let up = SafeDir::open(&dir.path().join("a/../a/."), &trust()).unwrap();
        assert_eq!(
            fs::metadata(dir.path().join("a")).unwrap().ino(),
            fstat(&up).unwrap().st_ino
        );
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        let error = SafeDir::open(&dir.path().join("loop"), &trust()).unwrap_err();
        assert!(matches!(error, FsError::TooManyLinks { .. }), "{error}");
        fs::write(dir.path().join("file"), "").unwrap();
        let error = SafeDir::open(&dir.path().join("file"), &trust()).unwrap_err();
        assert!(matches!(error, FsError::NotADirectory { .. }), "{error}");
    }
}
