//! `--user`/`--group`: the started daemon gives up root for good. Supplementary groups first (root's would otherwise
//! survive), then the group, then the user, then a check that it took: the ids are the user's and root cannot be
//! had back.

use std::ffi::{CStr, CString};

use nix::errno::Errno;
use nix::unistd::{Gid, Group, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("no such user {0:?}")]
    UnknownUser(String),
    #[error("no such group {0:?}")]
    UnknownGroup(String),
    #[error("cannot {step} for user {user}: {source}")]
    Failed {
        step: &'static str,
        user: String,
        source: Errno,
    },
    #[error("dropping privileges to user {user} did not take: {what}")]
    NotDropped { user: String, what: String },
    #[error(
        "--user {user}: only root can start the daemon as another user, and this is {me}; run the start as root, or \
         leave out --user (and --group) to run the daemon as yourself"
    )]
    NotRoot { user: String, me: String },
}

/// Who the daemon runs as.
#[derive(Debug, Clone)]
pub struct Identity {
    user: User,
    group: Group,
}

impl Identity {
    /// The user `--user` names and the group `--group` names (default: the user's own); `None` without `--user`.
    pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Self>, PrivilegeError> {
        let Some(name) = user else {
            return Ok(None);
        };
        let user = User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| PrivilegeError::UnknownUser(name.to_owned()))?;
        let group = match group {
            Some(name) => Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| PrivilegeError::UnknownGroup(name.to_owned()))?,
            None => Group::from_gid(user.gid)
                .ok()
                .flatten()
                .ok_or_else(|| PrivilegeError::UnknownGroup(user.gid.to_string()))?,
        };
        Ok(Some(Self { user, group }))
    }

    /// The identity to assume, checked before anything starts: only root can become another user. Naming oneself
    /// (and one's own group) asks for no change.
    pub fn for_start(user: Option<&str>, group: Option<&str>) -> Result<Option<Self>, PrivilegeError> {
        let Some(identity) = Self::resolve(user, group)? else {
            return Ok(None);
        };
        let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
        if uid.is_root() {
            return Ok(Some(identity));
        }
        if identity.user.uid == uid && identity.group.gid == gid {
            return Ok(None);
        }
        let me = User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {uid}"), |me| format!("{} (uid {uid})", me.name));
        Err(PrivilegeError::NotRoot {
            user: identity.user.name,
            me,
        })
    }

    /// Becomes this user and group, with the user's supplementary groups and no others.
    pub fn assume(&self) -> Result<(), PrivilegeError> {
        let (uid, gid) = (self.user.uid, self.group.gid);
        let failed = |step| {
            let user = self.describe();
            move |source| PrivilegeError::Failed { step, user, source }
        };
        let name = CString::new(self.user.name.clone()).map_err(|_| failed("name")(Errno::EINVAL))?;
        let groups = groups_of(&name, gid).map_err(failed("list the groups"))?;
        set_groups(&groups).map_err(failed("set the supplementary groups"))?;
        nix::unistd::setgid(gid).map_err(failed("set the group"))?;
        nix::unistd::setuid(uid).map_err(failed("set the user"))?;
        self.verify(&groups)
    }

    fn verify(&self, groups: &[Gid]) -> Result<(), PrivilegeError> {
        let (uid, gid) = (self.user.uid, self.group.gid);
        let not_dropped = |what: String| PrivilegeError::NotDropped {
            user: self.describe(),
            what,
        };
        let ids = (
            nix::unistd::getuid(),
            nix::unistd::geteuid(),
            nix::unistd::getgid(),
            nix::unistd::getegid(),
        );
        if ids != (uid, uid, gid, gid) {
            return Err(not_dropped(format!(
                "uid {}, euid {}, gid {}, egid {}",
                ids.0, ids.1, ids.2, ids.3
            )));
        }
        if !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(not_dropped("root could be regained".to_owned()));
        }
        let now = current_groups().map_err(|errno| not_dropped(format!("cannot read the groups: {errno}")))?;
        match now.iter().find(|group| !groups.contains(group)) {
            Some(group) => Err(not_dropped(format!("still in group {group}"))),
            None => Ok(()),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} (uid {}, group {} gid {})",
            self.user.name, self.user.uid, self.group.name, self.group.gid
        )
    }
}

/// The user's groups as the group database lists them, with `gid`.
#[cfg(not(target_os = "macos"))]
fn groups_of(name: &CStr, gid: Gid) -> nix::Result<Vec<Gid>> {
    nix::unistd::getgrouplist(name, gid)
}

#[cfg(not(target_os = "macos"))]
fn set_groups(groups: &[Gid]) -> nix::Result<()> {
    nix::unistd::setgroups(groups)
}

#[cfg(not(target_os = "macos"))]
fn current_groups() -> nix::Result<Vec<Gid>> {
    nix::unistd::getgroups()
}

// nix has neither getgrouplist, setgroups nor getgroups on Apple platforms: libc's, with Apple's `int` groups in
// getgrouplist, and at most as many groups as the kernel takes (16), as Apple's initgroups does.

#[cfg(target_os = "macos")]
fn groups_of(name: &CStr, gid: Gid) -> nix::Result<Vec<Gid>> {
    use nix::libc::c_int;
    let base = c_int::try_from(gid.as_raw()).map_err(|_| Errno::EINVAL)?;
    let mut groups: Vec<c_int> = vec![0; 64];
    loop {
        let mut count = c_int::try_from(groups.len()).map_err(|_| Errno::EINVAL)?;
        // SAFETY: `name` is a C string and `groups` has room for `count` entries, which getgrouplist fills.
        let found = unsafe { nix::libc::getgrouplist(name.as_ptr(), base, groups.as_mut_ptr(), &mut count) };
        if found == 0 {
            groups.truncate(usize::try_from(count).map_err(|_| Errno::EINVAL)?);
            break;
        }
        if groups.len() >= 65536 {
            return Err(Errno::EINVAL);
        }
        groups.resize(groups.len() * 2, 0);
    }
    let most = nix::unistd::sysconf(nix::unistd::SysconfVar::NGROUPS_MAX)
        .ok()
        .flatten()
        .and_then(|most| usize::try_from(most).ok())
        .unwrap_or(16);
    Ok(groups
        .into_iter()
        .take(most)
        .map(|group| Gid::from_raw(nix::libc::gid_t::from_ne_bytes(group.to_ne_bytes())))
        .collect())
}

#[cfg(target_os = "macos")]
fn set_groups(groups: &[Gid]) -> nix::Result<()> {
    let raw: Vec<nix::libc::gid_t> = groups.iter().map(|group| group.as_raw()).collect();
    let count = nix::libc::c_int::try_from(raw.len()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `raw` holds `count` group ids.
    Errno::result(unsafe { nix::libc::setgroups(count, raw.as_ptr()) }).map(drop)
}

#[cfg(target_os = "macos")]
fn current_groups() -> nix::Result<Vec<Gid>> {
    let mut raw: Vec<nix::libc::gid_t> = vec![0; 64];
    let capacity = nix::libc::c_int::try_from(raw.len()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `raw` has room for `capacity` group ids.
    let count = Errno::result(unsafe { nix::libc::getgroups(capacity, raw.as_mut_ptr()) })?;
    raw.truncate(usize::try_from(count).map_err(|_| Errno::EINVAL)?);
    Ok(raw.into_iter().map(Gid::from_raw).collect())
}
