//! Where a client finds the daemon, and, when it cannot reach it, why.
//!
//! [`find_socket`] looks where users expect: the socket the caller names (`--socket`), then `$CAVRA_RUNTIME_SOCKET`,
//! then the user's own daemon's socket if one listens there, then the system socket. [`refused_access`] says why a
//! connection was refused permission: usually that the user is not in the group the socket admits.

use std::ffi::{CStr, CString};
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::server::SYSTEM_SOCKET;
use crate::socket;

/// The environment variable that names the daemon's socket, for the daemon and its clients alike.
pub const SOCKET_ENV: &str = "CAVRA_RUNTIME_SOCKET";

/// How long [`find_socket`] waits for the user's own daemon to accept a connection.
const LOOK: Duration = Duration::from_millis(250);

/// Where a socket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketOrigin {
    /// Named by the caller (`--socket`).
    Named,
    /// `$CAVRA_RUNTIME_SOCKET`.
    Environment,
    /// The user's own daemon's socket ([`own_socket`]), where a daemon listens.
    Own,
    /// The system socket ([`SYSTEM_SOCKET`]).
    System,
}

/// The socket a client should use, and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSocket {
    pub path: PathBuf,
    pub origin: SocketOrigin,
    /// The user's own socket, when it was looked at first and nothing listened there.
    pub passed_over: Option<PathBuf>,
}

impl FoundSocket {
    /// For a message about a system socket that could not be reached: where else was looked.
    pub fn looked_elsewhere(&self) -> Option<String> {
        self.passed_over.as_ref().map(|own| {
            format!(
                "no daemon of yours listens on {} either (and neither --socket nor ${SOCKET_ENV} names a socket)",
                own.display()
            )
        })
    }
}

/// The socket a daemon run by this user binds when none is named: the system socket for root, else
/// `$XDG_RUNTIME_DIR/cavra/cavra-runtime.sock`, else `.cavra/cavra-runtime.sock` (the Go daemon's default).
pub fn own_socket() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return SYSTEM_SOCKET.into();
    }
    match non_empty_env("XDG_RUNTIME_DIR") {
        Some(runtime_dir) => PathBuf::from(runtime_dir).join("cavra/cavra-runtime.sock"),
        None => PathBuf::from(".cavra/cavra-runtime.sock"),
    }
}

/// The socket named by `$CAVRA_RUNTIME_SOCKET`, if it is set and not empty.
pub fn socket_from_env() -> Option<PathBuf> {
    non_empty_env(SOCKET_ENV).map(PathBuf::from)
}

/// The socket to ask: `named` if given, else `$CAVRA_RUNTIME_SOCKET`, else the user's own socket ([`own_socket`])
/// if a daemon listens there (a connection is made and closed, nothing sent), else the system socket.
///
/// ```
/// use std::path::Path;
/// use cavra_runtime_client::{Client, SocketOrigin, find_socket};
///
/// // What `--socket` gave, if anything.
/// let named: Option<&Path> = Some(Path::new("/srv/agents/cavra.sock"));
/// let found = find_socket(named);
/// assert_eq!((found.path.as_path(), found.origin), (Path::new("/srv/agents/cavra.sock"), SocketOrigin::Named));
/// let client = Client::new(&found.path);
/// # let _ = client;
/// ```
pub fn find_socket(named: Option<&Path>) -> FoundSocket {
    let found = |path: PathBuf, origin| FoundSocket {
        path,
        origin,
        passed_over: None,
    };
    if let Some(path) = named {
        return found(path.to_owned(), SocketOrigin::Named);
    }
    if let Some(path) = socket_from_env() {
        return found(path, SocketOrigin::Environment);
    }
    let own = own_socket();
    if own == Path::new(SYSTEM_SOCKET) {
        return found(own, SocketOrigin::System);
    }
    match socket::connect(&own, Instant::now() + LOOK) {
        // Someone listens (or its queue is full: busy, but there).
        Ok(_) | Err(socket::ConnectError::TimedOut) => found(own, SocketOrigin::Own),
        Err(socket::ConnectError::Failed(_)) => FoundSocket {
            path: SYSTEM_SOCKET.into(),
            origin: SocketOrigin::System,
            passed_over: Some(own),
        },
    }
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|value| !value.is_empty())
}

/// Why connecting to `socket` was refused permission, to follow "permission denied": in brackets the reason (most
/// often "you are not in group cavra"), then the directory or socket that stopped the caller and what would let
/// them in. Looks at the file system and the caller's groups as they are now.
pub fn refused_access(socket: &Path) -> String {
    let Some((path, metadata)) = blocker(socket) else {
        return format!(
            "(nothing on the way to {} refuses you by its mode): a security policy (an ACL, SELinux, AppArmor) may \
             refuse the connection",
            socket.display()
        );
    };
    let is_dir = metadata.is_dir();
    let (uid, gid, mode) = (metadata.uid(), metadata.gid(), metadata.mode() & 0o7777);
    let group = group_name(gid);
    let owner = crate::server::user_name(uid);
    let described = format!(
        "{} {} (owner {owner}, group {group}, mode {mode:04o})",
        if is_dir { "directory" } else { "socket" },
        path.display()
    );
    // What the group would need: to pass through a directory, to write to (connect to) a socket.
    let group_bit = if is_dir { 0o010 } else { 0o020 };
    if mode & group_bit == 0 {
        return format!(
            "(only its owner may connect): {described} is open to its owner only; ask {owner} for access, or use a \
             socket of your own"
        );
    }
    let (me, my_uid) = current_user();
    if in_process_groups(gid) {
        return format!(
            "(although you are in group {group}): {described} does not admit you; a security policy (an ACL, \
             SELinux, AppArmor) may refuse it"
        );
    }
    if me.as_ref().is_some_and(|name| account_groups(name).contains(&gid)) {
        return format!(
            "(this login session is not in group {group} yet): your account was added to group {group} after this \
             session started; log in again (or run `newgrp {group}`) to use {described}"
        );
    }
    let name = me.unwrap_or_else(|| "USER".to_owned());
    format!(
        "(you are not in group {group}): {described} admits members of group {group}, and you, {name} (uid \
         {my_uid}), are not one; ask an administrator to add you ({}), then log in again",
        add_to_group_command(&group, &name)
    )
}

#[cfg(target_os = "macos")]
fn add_to_group_command(group: &str, user: &str) -> String {
    format!("`sudo dseditgroup -o edit -a {user} -t user {group}`")
}

#[cfg(not(target_os = "macos"))]
fn add_to_group_command(group: &str, user: &str) -> String {
    format!("`sudo usermod -aG {group} {user}`")
}

/// The first directory on the way to `socket` this process may not pass through, or else the socket if it may not
/// write to it, with its metadata; `None` when nothing on the way says no.
fn blocker(socket: &Path) -> Option<(PathBuf, Metadata)> {
    let absolute = if socket.is_absolute() {
        socket.to_owned()
    } else {
        std::env::current_dir().ok()?.join(socket)
    };
    let mut ancestors: Vec<&Path> = absolute.ancestors().skip(1).collect();
    ancestors.reverse();
    for dir in ancestors {
        if !may(dir, libc::X_OK) {
            return std::fs::metadata(dir).ok().map(|metadata| (dir.to_owned(), metadata));
        }
    }
    if !may(&absolute, libc::W_OK) {
        return std::fs::metadata(&absolute).ok().map(|metadata| (absolute, metadata));
    }
    None
}

/// Whether this process (its effective ids) may access `path` as `mode` asks; a path that cannot be checked (it is
/// not there) counts as allowed, since that is not a refusal of permission.
fn may(path: &Path, mode: libc::c_int) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: `path` is a NUL-terminated string.
    let result = unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), mode, libc::AT_EACCESS) };
    result == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EACCES)
}

/// This process's effective user's name (if it has one) and uid.
fn current_user() -> (Option<String>, u32) {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut buffer = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data, for which all zeroes is a valid value.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the strings it sets point into `buffer`.
    let result = unsafe { libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if result != 0 || found.is_null() {
        return (None, uid);
    }
    // SAFETY: on success pw_name is a NUL-terminated string in `buffer`.
    let name = unsafe { CStr::from_ptr(entry.pw_name) };
    (Some(name.to_string_lossy().into_owned()), uid)
}

/// A group's name, or `gid N` when it has none.
fn group_name(gid: u32) -> String {
    let mut buffer = vec![0 as libc::c_char; 16384];
    // SAFETY: group is plain data, for which all zeroes is a valid value.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the strings it sets point into `buffer`.
    let result = unsafe { libc::getgrgid_r(gid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if result != 0 || found.is_null() {
        return format!("gid {gid}");
    }
    // SAFETY: on success gr_name is a NUL-terminated string in `buffer`.
    unsafe { CStr::from_ptr(entry.gr_name) }.to_string_lossy().into_owned()
}

/// Whether this process has `gid` as its effective or a supplementary group.
fn in_process_groups(gid: u32) -> bool {
    // SAFETY: getegid cannot fail.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    let mut groups = vec![0 as libc::gid_t; 1024];
    // SAFETY: `groups` has room for as many ids as its length says.
    let count = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    count > 0 && groups[..count as usize].contains(&gid)
}

/// The groups the group database gives the user called `name` (what a new login session would have).
fn account_groups(name: &str) -> Vec<u32> {
    let Ok(name) = CString::new(name) else {
        return Vec::new();
    };
    // SAFETY: getegid cannot fail.
    let base = GroupListEntry::from_ne_bytes(unsafe { libc::getegid() }.to_ne_bytes());
    let mut count: libc::c_int = 256;
    loop {
        let mut groups = vec![0 as GroupListEntry; count as usize];
        let capacity = count;
        // SAFETY: `groups` has room for `count` entries, which getgrouplist fills, setting `count` to how many.
        let result = unsafe { libc::getgrouplist(name.as_ptr(), base, groups.as_mut_ptr(), &mut count) };
        if result >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups
                .into_iter()
                .map(|gid| u32::from_ne_bytes(gid.to_ne_bytes()))
                .collect();
        }
        if capacity >= 65536 {
            return Vec::new();
        }
        count = count.max(capacity * 2);
    }
}

/// Apple's getgrouplist takes `int` group ids.
#[cfg(target_os = "macos")]
type GroupListEntry = libc::c_int;
#[cfg(not(target_os = "macos"))]
type GroupListEntry = libc::gid_t;

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn a_named_socket_wins_and_is_not_looked_at() {
        let found = find_socket(Some(Path::new("/nowhere/cavra.sock")));
        assert_eq!(
            found,
            FoundSocket {
                path: "/nowhere/cavra.sock".into(),
                origin: SocketOrigin::Named,
                passed_over: None,
            }
        );
        assert_eq!(found.looked_elsewhere(), None);
    }

    #[test]
    fn the_blocker_is_the_first_directory_that_does_not_let_this_process_through() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cavra.sock");
        let _listener = UnixListener::bind(&socket).unwrap();
        assert!(blocker(&socket).is_none(), "all open to its owner");
        assert_eq!(group_name(u32::MAX - 7), format!("gid {}", u32::MAX - 7));
    }
}
