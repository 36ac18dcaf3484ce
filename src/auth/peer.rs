//! Who is on the other end of a connection, as the kernel recorded it when the peer connected, and whether the
//! operator's allow-lists admit it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::unistd::{Gid, Group, Uid, User};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// Not every platform reports the peer's pid.
    pub pid: Option<i32>,
    /// Supplementary groups, read only when an allow-list needs them: all of them on Linux (`SO_PEERGROUPS`), the
    /// at most 16 the kernel keeps in the credential on macOS (`LOCAL_PEERCRED`).
    pub groups: Vec<u32>,
}

impl Peer {
    /// Reads the credentials of the process connected to `socket`, a connected Unix stream socket.
    pub fn of(socket: &impl AsFd, with_groups: bool) -> io::Result<Peer> {
        let socket = socket.as_fd();
        let (uid, gid, pid) = credentials(socket)?;
        Ok(Peer {
            uid,
            gid,
            pid,
            groups: if with_groups {
                supplementary_groups(socket)?
            } else {
                Vec::new()
            },
        })
    }
}

impl Peer {
    /// This process, for decisions made in it (the one-shot mode), as a daemon would see it connect.
    pub fn current() -> Peer {
        Peer {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            pid: i32::try_from(std::process::id()).ok(),
            groups: current_groups(),
        }
    }
}

#[cfg(not(target_os = "macos"))]
fn current_groups() -> Vec<u32> {
    nix::unistd::getgroups()
        .map(|groups| groups.into_iter().map(Gid::as_raw).collect())
        .unwrap_or_default()
}

#[cfg(target_os = "macos")]
fn current_groups() -> Vec<u32> {
    Vec::new()
}

/// `SO_PEERCRED`: uid, gid and pid as of connect().
#[cfg(any(target_os = "linux", target_os = "android"))]
fn credentials(socket: BorrowedFd<'_>) -> io::Result<(u32, u32, Option<i32>)> {
    let credentials = nix::sys::socket::getsockopt(&socket, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok((credentials.uid(), credentials.gid(), Some(credentials.pid())))
}

/// `getpeereid` and `LOCAL_PEERPID`.
#[cfg(target_os = "macos")]
fn credentials(socket: BorrowedFd<'_>) -> io::Result<(u32, u32, Option<i32>)> {
    let (uid, gid) = nix::unistd::getpeereid(socket)?;
    let pid = nix::sys::socket::getsockopt(&socket, nix::sys::socket::sockopt::LocalPeerPid).ok();
    Ok((uid.as_raw(), gid.as_raw(), pid))
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
fn credentials(_socket: BorrowedFd<'_>) -> io::Result<(u32, u32, Option<i32>)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reading a Unix socket peer's credentials is implemented for Linux and macOS only",
    ))
}

/// `SO_PEERGROUPS`: the peer's supplementary groups as of connect().
#[cfg(target_os = "linux")]
fn supplementary_groups(socket: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    use nix::libc;
    use std::os::fd::AsRawFd as _;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut length = (groups.len() * size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer is `length` bytes of gid_t the kernel fills; it reports the size it needed if short.
        let result = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut length,
            )
        };
        let count = length as usize / size_of::<libc::gid_t>();
        if result == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ERANGE) && count > groups.len() {
            groups.resize(count, 0);
            continue;
        }
        return Err(error);
    }
}

/// `LOCAL_PEERCRED`: the groups in the credential the kernel recorded when the peer connected (macOS has no
/// `SO_PEERGROUPS`). The credential holds at most 16; macOS resolves memberships beyond those through its directory
/// service, which this does not ask, so a group past the 16th does not count (fail closed; docs/security.md).
#[cfg(target_os = "macos")]
fn supplementary_groups(socket: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    use nix::libc;
    use std::os::fd::AsRawFd as _;
    // nix's LocalPeerCred is not used: its `XuCred::groups()` returns all 16 slots, ignoring `cr_ngroups`.
    // SAFETY: xucred is plain data, for which all zeroes is a valid value.
    let mut credentials: libc::xucred = unsafe { std::mem::zeroed() };
    let size = size_of::<libc::xucred>();
    let mut length = size as libc::socklen_t;
    // SAFETY: the buffer is `length` bytes of xucred, which the kernel fills.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_LOCAL,
            libc::LOCAL_PEERCRED,
            (&raw mut credentials).cast(),
            &mut length,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    if length as usize != size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("LOCAL_PEERCRED returned {length} bytes, not a {size}-byte struct xucred"),
        ));
    }
    xucred_groups(credentials.cr_version, credentials.cr_ngroups, &credentials.cr_groups)
}

/// The groups of a `struct xucred`: the first `cr_ngroups` of its slots. The slots past them are not the peer's
/// (read as gid 0, they would admit anyone to `--allow-group wheel`).
#[cfg(any(target_os = "macos", test))]
fn xucred_groups(version: u32, count: i16, slots: &[u32]) -> io::Result<Vec<u32>> {
    /// `XUCRED_VERSION` in macOS's <sys/ucred.h>: the only layout there is.
    const XUCRED_VERSION: u32 = 0;
    if version != XUCRED_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("LOCAL_PEERCRED returned struct xucred version {version}; only version {XUCRED_VERSION} is known"),
        ));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|count| *count <= slots.len())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "LOCAL_PEERCRED returned cr_ngroups {count}, outside 0..={}",
                    slots.len()
                ),
            )
        })?;
    Ok(slots[..count].to_vec())
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn supplementary_groups(_socket: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    Ok(Vec::new())
}

#[derive(Debug, thiserror::Error)]
pub enum PeerPolicyError {
    #[error("--allow-uid {0:?}: no such user")]
    UnknownUser(String),
    #[error("--allow-group {0:?}: no such group")]
    UnknownGroup(String),
}

/// `--allow-uid` and `--allow-group`. Empty lists admit everyone the socket's file mode lets connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl PeerPolicy {
    /// Resolves user and group names (or numbers) once, at start.
    pub fn resolve(users: &[String], groups: &[String]) -> Result<Self, PeerPolicyError> {
        let uids = users
            .iter()
            .map(|user| match user.parse::<u32>() {
                Ok(uid) => Ok(uid),
                Err(_) => User::from_name(user)
                    .ok()
                    .flatten()
                    .map(|found| found.uid.as_raw())
                    .ok_or_else(|| PeerPolicyError::UnknownUser(user.clone())),
            })
            .collect::<Result<_, _>>()?;
        let gids = groups
            .iter()
            .map(|group| match group.parse::<u32>() {
                Ok(gid) => Ok(gid),
                Err(_) => Group::from_name(group)
                    .ok()
                    .flatten()
                    .map(|found| found.gid.as_raw())
                    .ok_or_else(|| PeerPolicyError::UnknownGroup(group.clone())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { uids, gids })
    }

    pub fn admits_everyone(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }

    /// Whether admitting a peer needs its supplementary groups.
    pub fn needs_groups(&self) -> bool {
        !self.gids.is_empty()
    }

    /// Root is not special: it is admitted only if listed, like anyone else.
    pub fn admits(&self, peer: &Peer) -> bool {
        self.admits_everyone()
            || self.uids.contains(&peer.uid)
            || self.gids.contains(&peer.gid)
            || peer.groups.iter().any(|gid| self.gids.contains(gid))
    }

    /// For logs: who is admitted.
    pub fn describe(&self) -> String {
        let uid = |uid: &u32| {
            User::from_uid(Uid::from_raw(*uid))
                .ok()
                .flatten()
                .map_or(uid.to_string(), |user| format!("{} ({uid})", user.name))
        };
        let gid = |gid: &u32| {
            Group::from_gid(Gid::from_raw(*gid))
                .ok()
                .flatten()
                .map_or(gid.to_string(), |group| format!("{} ({gid})", group.name))
        };
        let users: Vec<String> = self.uids.iter().map(uid).collect();
        let groups: Vec<String> = self.gids.iter().map(gid).collect();
        format!("users [{}], groups [{}]", users.join(", "), groups.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid,
            pid: Some(1),
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn no_lists_admit_everyone() {
        assert!(PeerPolicy::default().admits(&peer(1000, 1000, &[])));
    }

    #[test]
    fn listed_uids_and_groups_are_admitted_and_root_is_not_special() {
        let policy = PeerPolicy::resolve(&["1000".into()], &["2000".into()]).unwrap();
        assert!(policy.admits(&peer(1000, 5, &[])));
        assert!(policy.admits(&peer(7, 2000, &[])));
        assert!(policy.admits(&peer(7, 5, &[3, 2000])), "a supplementary group counts");
        assert!(!policy.admits(&peer(0, 0, &[])), "root is refused unless listed");
        assert!(!policy.admits(&peer(1001, 1001, &[1002])));
    }

    #[test]
    fn only_the_counted_xucred_slots_are_groups() {
        let mut slots = [0u32; 16];
        slots[..3].copy_from_slice(&[20, 12, 701]);
        let groups = xucred_groups(0, 3, &slots).unwrap();
        assert_eq!(groups, [20, 12, 701]);
        let wheel = PeerPolicy::resolve(&[], &["0".into()]).unwrap();
        assert!(
            !wheel.admits(&peer(501, 20, &groups)),
            "empty slots (gid 0) must not count as groups"
        );
        assert_eq!(xucred_groups(0, 16, &slots).unwrap().len(), 16);
        assert_eq!(xucred_groups(0, 0, &slots).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn a_malformed_xucred_is_an_error_naming_what_is_wrong() {
        let slots = [0u32; 16];
        for (version, count, expected) in [
            (1, 3, "struct xucred version 1; only version 0 is known"),
            (0, -1, "cr_ngroups -1, outside 0..=16"),
            (0, 17, "cr_ngroups 17, outside 0..=16"),
        ] {
            let error = xucred_groups(version, count, &slots).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn names_resolve_and_unknown_names_are_errors() {
        let policy = PeerPolicy::resolve(&["root".into()], &["root".into()]).unwrap();
        assert!(policy.admits(&peer(0, 99, &[])));
        assert_eq!(
            PeerPolicy::resolve(&["no-such-user-x".into()], &[])
                .unwrap_err()
                .to_string(),
            "--allow-uid \"no-such-user-x\": no such user"
        );
        assert_eq!(
            PeerPolicy::resolve(&[], &["no-such-group-x".into()])
                .unwrap_err()
                .to_string(),
            "--allow-group \"no-such-group-x\": no such group"
        );
    }
}
