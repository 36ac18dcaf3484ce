//! Whom a client is talking to. Before it sends anything, a client compares the kernel's record of the server's uid
//! (peer credentials) with the user the socket's location vouches for ([`ServerCheck`]), so that an impostor bound
//! where another local user could reach is an error, never an answer. A request may carry a runner's credential:
//! it must not reach whoever managed to listen first.

use std::ffi::{CStr, CString, OsString};
use std::fmt;
use std::fs::Metadata;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Component, Path, PathBuf};

/// The system socket on Linux, in the directory the socket unit (or the daemon) creates.
pub const LINUX_SYSTEM_SOCKET: &str = "/run/cavra/cavra-runtime.sock";
/// The system socket on macOS: it has no /run, empties /var/run at boot, and launchd creates no directory for a
/// socket it binds, so the socket sits directly in /var/run (as mDNSResponder's does).
pub const MACOS_SYSTEM_SOCKET: &str = "/var/run/cavra-runtime.sock";
/// The packaged service's socket on this platform.
pub const SYSTEM_SOCKET: &str = if cfg!(target_os = "macos") {
    MACOS_SYSTEM_SOCKET
} else {
    LINUX_SYSTEM_SOCKET
};
/// The user the packaged service runs as (macOS names service accounts with a leading underscore).
pub const SERVICE_USER: &str = if cfg!(target_os = "macos") { "_cavra" } else { "cavra" };

/// As many symbolic links as the kernel follows in one path.
const MAX_LINKS: usize = 40;

/// Whom a client accepts as the server. Root is always accepted: it could impersonate anyone anyway, and a socket
/// the service manager holds (socket activation) is credited to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ServerCheck {
    /// The user the socket's location names: the service user ([`SERVICE_USER`]) for [`SYSTEM_SOCKET`]; otherwise
    /// the owner of the socket's directory, or of the socket itself in a shared directory with the sticky bit that
    /// only its group may write (1770). In one every user may write (like `/tmp`, 1777) anyone can bind a name
    /// first, so only the caller's or root's socket is accepted there. Every directory on the way must belong to
    /// root, the caller or that user, and none may be writable by others without the sticky bit: a location another
    /// user controls vouches for no one.
    #[default]
    Location,
    /// This uid.
    Uid(u32),
    /// Anyone: for probes that trust nothing the server says (`--lifecycle` compares the server's pid instead).
    Anyone,
}

/// Who answered, as the kernel recorded it when the connection was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    pub uid: u32,
    pub gid: u32,
    /// Not every platform reports the server's pid.
    pub pid: Option<i32>,
}

impl Server {
    /// The credentials of the process at the other end of `socket`, a connected Unix stream socket.
    pub fn of(socket: &impl AsRawFd) -> io::Result<Server> {
        credentials(socket.as_raw_fd())
    }
}

/// `SO_PEERCRED`: uid, gid and pid as of connect().
#[cfg(any(target_os = "linux", target_os = "android"))]
fn credentials(fd: RawFd) -> io::Result<Server> {
    // SAFETY: ucred is plain data, for which all zeroes is a valid value.
    let mut credentials: libc::ucred = unsafe { std::mem::zeroed() };
    let mut length = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the buffer is `length` bytes of ucred, which the kernel fills.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut credentials).cast(),
            &mut length,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Server {
        uid: credentials.uid,
        gid: credentials.gid,
        pid: Some(credentials.pid),
    })
}

/// `getpeereid` and `LOCAL_PEERPID`.
#[cfg(target_os = "macos")]
fn credentials(fd: RawFd) -> io::Result<Server> {
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: both out-pointers are valid for the call.
    if unsafe { libc::getpeereid(fd, &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut pid: libc::pid_t = 0;
    let mut length = size_of::<libc::pid_t>() as libc::socklen_t;
    // SAFETY: the buffer is `length` bytes of pid_t, which the kernel fills.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_LOCAL,
            libc::LOCAL_PEERPID,
            (&raw mut pid).cast(),
            &mut length,
        )
    };
    Ok(Server {
        uid,
        gid,
        pid: (result == 0).then_some(pid),
    })
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
fn credentials(_fd: RawFd) -> io::Result<Server> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reading a Unix socket peer's credentials is implemented for Linux and macOS only",
    ))
}

/// The users who may answer on a socket; `None` for anyone.
pub(crate) fn expected_server(check: &ServerCheck, socket: &Path) -> Result<Option<Trust>, LocationError> {
    match check {
        ServerCheck::Anyone => Ok(None),
        ServerCheck::Uid(uid) => Ok(Some(Trust::user(*uid))),
        ServerCheck::Location if socket == Path::new(SYSTEM_SOCKET) => {
            Ok(Some(Trust::user(uid_of(SERVICE_USER).unwrap_or(0))))
        }
        ServerCheck::Location => location_owner(socket).map(|owner| Some(Trust::user(owner))),
    }
}

/// The owners that may be relied on: always root, and the users named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trust {
    uids: Vec<u32>,
}

impl Trust {
    /// Root and `uid`.
    pub(crate) fn user(uid: u32) -> Self {
        let mut uids = vec![0];
        if uid != 0 {
            uids.push(uid);
        }
        Self { uids }
    }

    fn also(mut self, uid: u32) -> Self {
        if !self.trusts(uid) {
            self.uids.push(uid);
        }
        self
    }

    pub(crate) fn trusts(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }

    /// For messages: "root", or "root or alice (uid 1000)".
    pub(crate) fn describe(&self) -> String {
        let names: Vec<String> = self
            .uids
            .iter()
            .map(|&uid| if uid == 0 { "root".to_owned() } else { user_name(uid) })
            .collect();
        names.join(" or ")
    }
}

/// Why a socket's location vouches for no one. The texts are those the daemon uses for its own files.
#[derive(Debug)]
#[non_exhaustive]
pub enum LocationError {
    /// A directory, link or socket on the way belongs to someone not trusted.
    Untrusted {
        kind: &'static str,
        path: PathBuf,
        uid: u32,
        mode: u32,
        trusted: String,
    },
    /// A directory on the way others may write without the sticky bit.
    WritableByOthers {
        path: PathBuf,
        uid: u32,
        mode: u32,
    },
    /// A socket of another user in a directory where every user may create names: it may have been bound first by
    /// anyone.
    TakenFirst {
        path: PathBuf,
        uid: u32,
        trusted: String,
    },
    NotADirectory {
        path: PathBuf,
    },
    TooManyLinks {
        path: PathBuf,
    },
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl fmt::Display for LocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocationError::Untrusted {
                kind,
                path,
                uid,
                mode,
                trusted,
            } => write!(
                f,
                "{kind} {} is owned by {} (mode {mode:04o}); cavra-runtime relies only on those owned by {trusted}",
                path.display(),
                user_name(*uid)
            ),
            LocationError::WritableByOthers { path, uid, mode } => write!(
                f,
                "directory {} (owner {}, mode {mode:04o}) is writable by group or others without the sticky bit; \
                 another user could replace what it holds",
                path.display(),
                user_name(*uid)
            ),
            LocationError::TakenFirst { path, uid, trusted } => write!(
                f,
                "socket {} belongs to {} in a directory every user may create names in, where anyone can bind a \
                 name first: only a socket of {trusted} vouches for itself there; if {} runs the daemon you mean, \
                 expect that user (--expect-server-uid, ServerCheck::Uid)",
                path.display(),
                user_name(*uid),
                user_name(*uid)
            ),
            LocationError::NotADirectory { path } => write!(f, "{} is not a directory", path.display()),
            LocationError::TooManyLinks { path } => {
                write!(f, "{}: too many symbolic links on the way", path.display())
            }
            LocationError::Io { action, path, source } => write!(f, "cannot {action} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for LocationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LocationError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Whom the socket's location names (see [`ServerCheck::Location`]).
fn location_owner(socket: &Path) -> Result<u32, LocationError> {
    let name = socket.file_name().unwrap_or_default();
    let parent = match socket.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // A first look names the candidate; the walk then checks every directory on the way against it.
    let directory = std::fs::metadata(parent).map_err(io_error("inspect", parent))?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    // In a directory every user may create names in (like /tmp), whoever binds a name first owns it, so the owner of
    // a socket there vouches for nothing unless it is root or the caller. Where only the directory's group may create
    // names (1770), the members are users its owner chose.
    let open_to_all = is_shared(&directory) && directory.mode() & 0o002 != 0;
    let candidate = if is_shared(&directory) && !open_to_all {
        std::fs::symlink_metadata(socket)
            .map_err(io_error("inspect", socket))?
            .uid()
    } else if open_to_all {
        me
    } else {
        directory.uid()
    };
    let trust = Trust::user(me).also(candidate);
    let (shared, owner) = walk(parent, &trust)?;
    if !shared {
        return Ok(owner);
    }
    let path = parent.join(name);
    let entry = std::fs::symlink_metadata(&path).map_err(io_error("find", &path))?;
    if entry.file_type().is_socket() && trust.trusts(entry.uid()) {
        Ok(entry.uid())
    } else if entry.file_type().is_socket() && open_to_all {
        Err(LocationError::TakenFirst {
            path,
            uid: entry.uid(),
            trusted: trust.describe(),
        })
    } else {
        Err(untrusted("socket", path, &entry, &trust))
    }
}

/// Walks from `/` to `dir` (a relative path starts at the working directory), following links only where their
/// owner is trusted, and checks every directory: a trusted owner, and nobody else may write in it unless it has the
/// sticky bit. Returns whether the last is shared (writable by others, sticky) and its owner.
fn walk(dir: &Path, trust: &Trust) -> Result<(bool, u32), LocationError> {
    let absolute = if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir()
            .map_err(io_error("read the working directory for", dir))?
            .join(dir)
    };
    let root = PathBuf::from("/");
    let mut pending: Vec<OsString> = names(&absolute);
    pending.reverse();
    let mut levels = vec![checked(&root, trust)?];
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            if levels.len() > 1 {
                levels.pop();
            }
            continue;
        }
        let at = levels.last().expect("the root is never popped").0.join(&name);
        let metadata = std::fs::symlink_metadata(&at).map_err(io_error("inspect", &at))?;
        if metadata.file_type().is_symlink() {
            if !trust.trusts(metadata.uid()) {
                return Err(untrusted("symbolic link", at, &metadata, trust));
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(LocationError::TooManyLinks { path: absolute });
            }
            let target = std::fs::read_link(&at).map_err(io_error("read the link", &at))?;
            if target.is_absolute() {
                levels.truncate(1);
            }
            pending.extend(names(&target).into_iter().rev());
        } else if metadata.is_dir() {
            levels.push(checked(&at, trust)?);
        } else {
            return Err(LocationError::NotADirectory { path: at });
        }
    }
    let (_, shared, owner) = levels.pop().expect("the root is never popped");
    Ok((shared, owner))
}

/// A directory, checked: its path, whether it is shared, and its owner.
fn checked(path: &Path, trust: &Trust) -> Result<(PathBuf, bool, u32), LocationError> {
    let metadata = std::fs::symlink_metadata(path).map_err(io_error("inspect", path))?;
    if !trust.trusts(metadata.uid()) {
        return Err(untrusted("directory", path.to_owned(), &metadata, trust));
    }
    let shared = metadata.mode() & 0o022 != 0;
    if shared && metadata.mode() & 0o1000 == 0 {
        return Err(LocationError::WritableByOthers {
            path: path.to_owned(),
            uid: metadata.uid(),
            mode: metadata.mode() & 0o7777,
        });
    }
    Ok((path.to_owned(), shared, metadata.uid()))
}

/// Writable by group or others, with the sticky bit (like `/tmp`).
fn is_shared(metadata: &Metadata) -> bool {
    metadata.mode() & 0o022 != 0 && metadata.mode() & 0o1000 != 0
}

fn untrusted(kind: &'static str, path: PathBuf, metadata: &Metadata, trust: &Trust) -> LocationError {
    LocationError::Untrusted {
        kind,
        path,
        uid: metadata.uid(),
        mode: metadata.mode() & 0o7777,
        trusted: trust.describe(),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LocationError {
    let path = path.to_owned();
    move |source| LocationError::Io { action, path, source }
}

/// The names in `path` to walk through, `..` included, without the root and `.`.
fn names(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// A user as messages name it: `nobody (uid 65534)`, or `uid 4242` when it has no name.
pub fn user_name(uid: u32) -> String {
    let mut buffer = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data, for which all zeroes is a valid value.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the strings it sets point into `buffer`.
    let result = unsafe { libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if result != 0 || found.is_null() {
        return format!("uid {uid}");
    }
    // SAFETY: on success pw_name is a NUL-terminated string in `buffer`.
    let name = unsafe { CStr::from_ptr(entry.pw_name) };
    format!("{} (uid {uid})", name.to_string_lossy())
}

/// The uid of the user called `name`, if there is one.
pub(crate) fn uid_of(name: &str) -> Option<u32> {
    let name = CString::new(Path::new(name).as_os_str().as_bytes()).ok()?;
    let mut buffer = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data, for which all zeroes is a valid value.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call.
    let result = unsafe { libc::getpwnam_r(name.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    (result == 0 && !found.is_null()).then_some(entry.pw_uid)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;
    use std::os::unix::net::{UnixListener, UnixStream};

    use super::*;

    fn me() -> u32 {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn the_server_is_who_the_kernel_says() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("s")).unwrap();
        let client = UnixStream::connect(dir.path().join("s")).unwrap();
        let server = Server::of(&client).unwrap();
        assert_eq!(server.uid, me());
        // SAFETY: getgid cannot fail.
        assert_eq!(server.gid, unsafe { libc::getgid() });
        assert_eq!(server.pid, Some(std::process::id() as i32));
        drop(listener);
    }

    #[test]
    fn a_private_directory_names_its_owner_and_a_shared_one_the_socket_owner() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cavra.sock");
        let _listener = UnixListener::bind(&socket).unwrap();
        assert_eq!(location_owner(&socket).unwrap(), me());
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        let in_shared = shared.join("cavra.sock");
        let _other = UnixListener::bind(&in_shared).unwrap();
        assert_eq!(location_owner(&in_shared).unwrap(), me());
        // In a shared directory only a socket vouches: a regular file there is refused.
        fs::write(shared.join("file"), "").unwrap();
        let error = location_owner(&shared.join("file")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("socket {} is owned by ", shared.join("file").display())),
            "{error}"
        );
        let error = location_owner(&shared.join("missing")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("cannot find {}: ", shared.join("missing").display())),
            "{error}"
        );
    }

    #[test]
    fn a_directory_others_can_write_vouches_for_no_one() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let error = location_owner(&open.join("cavra.sock")).unwrap_err();
        assert!(matches!(error, LocationError::WritableByOthers { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            format!(
                "directory {} (owner {}, mode 0777) is writable by group or others without the sticky bit; another \
                 user could replace what it holds",
                open.display(),
                user_name(me())
            )
        );
        // Reached through a link to it, too.
        std::os::unix::fs::symlink(&open, dir.path().join("link")).unwrap();
        assert!(matches!(
            location_owner(&dir.path().join("link/cavra.sock")),
            Err(LocationError::WritableByOthers { .. })
        ));
    }

    #[test]
    fn a_directory_of_another_user_vouches_for_no_one() {
        if me() != 0 {
            return;
        }
        // Root hands a directory on the way to nobody: nobody could swap what is below it.
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        fs::create_dir_all(theirs.join("private")).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
        let error = location_owner(&theirs.join("private/cavra.sock")).unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "directory {} is owned by {} (mode 0",
                theirs.display(),
                user_name(65534)
            )),
            "{error}"
        );
    }

    #[test]
    fn another_users_socket_vouches_only_where_not_everyone_may_create_names() {
        if me() != 0 {
            eprintln!("skipped: handing a socket to another user needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for (mode, trusted) in [(0o1777, false), (0o1770, true)] {
            let shared = dir.path().join(format!("{mode:o}"));
            fs::create_dir(&shared).unwrap();
            fs::set_permissions(&shared, fs::Permissions::from_mode(mode)).unwrap();
            let socket = shared.join("cavra.sock");
            let _listener = UnixListener::bind(&socket).unwrap();
            // As if nobody had bound it first.
            std::os::unix::fs::chown(&socket, Some(65534), None).unwrap();
            match location_owner(&socket) {
                Ok(owner) if trusted => assert_eq!(owner, 65534),
                Err(error @ LocationError::TakenFirst { .. }) if !trusted => assert!(
                    error.to_string().starts_with(&format!(
                        "socket {} belongs to {} in a directory every user may create names in",
                        socket.display(),
                        user_name(65534)
                    )),
                    "{error}"
                ),
                other => panic!("mode {mode:o}: {other:?}"),
            }
        }
    }

    #[test]
    fn link_loops_and_files_on_the_way_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
        let error = location_owner(&dir.path().join("loop/s")).unwrap_err();
        assert!(error.to_string().starts_with("cannot inspect "), "{error}");
        // The walk stops at the kernel's limit by itself too (a link swapped in after the first look).
        assert!(matches!(
            walk(&dir.path().join("loop"), &Trust::user(me())),
            Err(LocationError::TooManyLinks { .. })
        ));
        fs::write(dir.path().join("file"), "").unwrap();
        let error = location_owner(&dir.path().join("file/s")).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{} is not a directory", dir.path().join("file").display())
        );
    }

    #[test]
    fn names_of_users() {
        assert_eq!(user_name(0), "root (uid 0)");
        assert_eq!(user_name(4_000_000_000), "uid 4000000000");
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(uid_of("no-such-user-x"), None);
        assert_eq!(Trust::user(0).describe(), "root");
        assert_eq!(Trust::user(0).also(4_000_000_000).describe(), "root or uid 4000000000");
    }
}
