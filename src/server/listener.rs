//! The one place that decides where the listening socket comes from: systemd socket activation, launchd
//! activation (macOS), or a socket this process binds itself. It runs before the async runtime exists, because
//! taking activated sockets edits the environment, which is only safe while the process has one thread.

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::{env, fmt};

use nix::sys::stat::{Mode, SFlag, umask};

use crate::fsutil::{self, FsError, SafeDir, Trust};

mod launchd;

pub use launchd::LaunchdError;

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error(
        "another cavra-runtime is already answering on {}; stop it first (cavra-runtime --lifecycle stop --socket {0}, or systemctl stop cavra-runtime)",
        path.display()
    )]
    AlreadyServing { path: PathBuf },
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket { path: PathBuf },
    #[error("cannot serve on {}: {source}", path.display())]
    Unsafe { path: PathBuf, source: FsError },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("systemd passed sockets named [{names}] but none is named {wanted:?} (see --listen-fd-name)")]
    NamedSocketMissing { names: String, wanted: String },
    #[error("systemd passed {count} sockets and none is named {wanted:?}; name one with FileDescriptorName=")]
    AmbiguousSockets { count: usize, wanted: String },
    #[error("the socket systemd passed at index {index} is not a listening Unix stream socket: {source}")]
    WrongSocketType { index: usize, source: io::Error },
    #[error(
        "the socket systemd passed as {name:?} (index {index}) is not a listening TCP socket: {source}; the metrics \
         socket unit needs ListenStream=127.0.0.1:<port>"
    )]
    WrongMetricsSocket {
        name: String,
        index: usize,
        source: io::Error,
    },
    #[error(transparent)]
    Launchd(#[from] LaunchdError),
}

#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Path to bind when no socket is passed in.
    pub socket: PathBuf,
    /// File mode of a socket this process binds.
    pub mode: u32,
    /// Which passed socket to use when systemd passes several (its `FileDescriptorName=`).
    pub fd_name: String,
    /// The passed socket to serve metrics on over HTTP, if systemd passes one by this name.
    pub metrics_fd_name: String,
}

/// Where the listener came from; a socket this process bound is removed again when it is dropped.
#[derive(Debug)]
pub enum Origin {
    Systemd { name: Option<String> },
    Launchd,
    Bound(BoundSocket),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Systemd { name: Some(name) } => write!(f, "systemd socket {name:?}"),
            Origin::Systemd { name: None } => f.write_str("systemd socket"),
            Origin::Launchd => write!(f, "launchd socket {}", launchd::SOCKET_NAME),
            Origin::Bound(bound) => write!(f, "{}", bound.path.display()),
        }
    }
}

/// A socket file this process created, in its checked directory. Removed on drop, unless something else has
/// replaced it since.
#[derive(Debug)]
pub struct BoundSocket {
    path: PathBuf,
    dir: SafeDir,
    name: OsString,
    identity: (u64, u64),
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Ok(Some(stat)) = self.dir.entry(&self.name)
            && fsutil::identity(&stat) == self.identity
        {
            let _ = self.dir.remove(&self.name);
        }
    }
}

pub struct Acquired {
    pub listener: UnixListener,
    pub origin: Origin,
    /// The metrics listener systemd passed (a TCP socket the daemon answers HTTP scrapes on), if any.
    pub metrics: Option<TcpListener>,
}

pub fn acquire(options: &ListenOptions) -> Result<Acquired, ListenerError> {
    if let Some(acquired) = from_systemd(&options.fd_name, &options.metrics_fd_name)? {
        return Ok(acquired);
    }
    if let Some(listener) = launchd::activate()? {
        return Ok(Acquired {
            listener,
            origin: Origin::Launchd,
            metrics: None,
        });
    }
    bind(&options.socket, options.mode)
}

/// Takes the sockets systemd passed, if it passed any to this process (`LISTEN_PID` must be ours): the one named
/// `wanted` (or the only one), and the one named `metrics_name` if there is one. The metrics socket was created by
/// the service manager, so the daemon itself never creates an Internet socket.
fn from_systemd(wanted: &str, metrics_name: &str) -> Result<Option<Acquired>, ListenerError> {
    let for_us = env::var("LISTEN_PID").ok().and_then(|pid| pid.parse::<u32>().ok()) == Some(std::process::id());
    let names: Option<Vec<String>> = env::var("LISTEN_FDNAMES")
        .ok()
        .map(|names| names.split(':').map(str::to_owned).collect());
    let mut fds = listenfd::ListenFd::from_env();
    // SAFETY: called from `main` before any other thread exists, so nothing reads the environment concurrently.
    // Children (there are none) must not see the activation variables.
    unsafe { env::remove_var("LISTEN_FDNAMES") };
    if !for_us || fds.len() == 0 {
        return Ok(None);
    }
    let metrics_index = names
        .as_ref()
        .and_then(|names| names.iter().position(|name| name == metrics_name));
    let others = fds.len() - usize::from(metrics_index.is_some());
    let index = match names
        .as_ref()
        .and_then(|names| names.iter().position(|name| name == wanted))
    {
        Some(index) => index,
        None if others == 1 => (0..fds.len()).find(|index| Some(*index) != metrics_index).unwrap_or(0),
        None => {
            return Err(match names {
                Some(names) => ListenerError::NamedSocketMissing {
                    names: names.join(", "),
                    wanted: wanted.to_owned(),
                },
                None => ListenerError::AmbiguousSockets {
                    count: fds.len(),
                    wanted: wanted.to_owned(),
                },
            });
        }
    };
    let listener = fds
        .take_unix_listener(index)
        .map_err(|source| ListenerError::WrongSocketType { index, source })?
        .ok_or_else(|| ListenerError::WrongSocketType {
            index,
            source: io::Error::new(io::ErrorKind::NotFound, "no such passed socket"),
        })?;
    let metrics = match metrics_index {
        Some(index) => Some(
            fds.take_tcp_listener(index)
                .map_err(|source| ListenerError::WrongMetricsSocket {
                    name: metrics_name.to_owned(),
                    index,
                    source,
                })?
                .ok_or_else(|| ListenerError::WrongMetricsSocket {
                    name: metrics_name.to_owned(),
                    index,
                    source: io::Error::new(io::ErrorKind::NotFound, "no such passed socket"),
                })?,
        ),
        None => None,
    };
    let name = names.and_then(|names| names.get(index).cloned());
    Ok(Some(Acquired {
        listener,
        origin: Origin::Systemd { name },
        metrics,
    }))
}

/// The mode of a socket directory the daemon creates: the owner's, and search for the group and others as far as the
/// socket's own mode lets them connect (0660 gives 0750), whatever the umask.
pub fn socket_directory_mode(socket_mode: u32) -> Mode {
    let mut bits = 0o700;
    if socket_mode & 0o070 != 0 {
        bits |= 0o050;
    }
    if socket_mode & 0o007 != 0 {
        bits |= 0o005;
    }
    fsutil::mode(bits)
}

/// Binds `path` with `mode`, in a directory checked (and if need be created) as [`SafeDir`] does: nobody but root
/// and this user can then change what the path names, so binding by path lands in that directory. The file is
/// created with its final mode (umask during bind), so the socket never accepts with a wider one.
fn bind(path: &Path, mode: u32) -> Result<Acquired, ListenerError> {
    let io_error = |action, source| ListenerError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let unsafe_path = |source| ListenerError::Unsafe {
        path: path.to_owned(),
        source,
    };
    let (dir, name) =
        SafeDir::of_file(path, Some(socket_directory_mode(mode)), &Trust::effective_user()).map_err(unsafe_path)?;
    match dir.entry(&name).map_err(unsafe_path)? {
        Some(stat) if !is_socket(&stat) => {
            return Err(ListenerError::NotASocket { path: path.to_owned() });
        }
        Some(_) => {
            if UnixStream::connect(path).is_ok() {
                return Err(ListenerError::AlreadyServing { path: path.to_owned() });
            }
            dir.remove(&name).map_err(unsafe_path)?;
        }
        None => {}
    }
    let previous = umask(fsutil::mode(!mode & 0o777));
    let bound = UnixListener::bind(path);
    umask(previous);
    let listener = bound.map_err(|source| io_error("bind", source))?;
    let stat = dir
        .entry(&name)
        .map_err(unsafe_path)?
        .filter(|stat| is_socket(stat) && stat.st_uid == nix::unistd::geteuid().as_raw())
        .ok_or_else(|| {
            io_error(
                "find the socket just bound in its directory",
                io::Error::from(io::ErrorKind::NotFound),
            )
        })?;
    let bound = BoundSocket {
        path: path.to_owned(),
        dir,
        name,
        identity: fsutil::identity(&stat),
    };
    // Also set the mode explicitly: some platforms ignore the umask for sockets.
    bound
        .dir
        .set_mode(&bound.name, fsutil::mode(mode))
        .map_err(unsafe_path)?;
    Ok(Acquired {
        listener,
        origin: Origin::Bound(bound),
        metrics: None,
    })
}

fn is_socket(stat: &nix::sys::stat::FileStat) -> bool {
    stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFSOCK.bits()
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_socket_directory_lets_in_whom_the_socket_mode_does() {
        assert_eq!(socket_directory_mode(0o660).bits(), 0o750);
        assert_eq!(socket_directory_mode(0o600).bits(), 0o700);
        assert_eq!(socket_directory_mode(0o666).bits(), 0o755);
        assert_eq!(socket_directory_mode(0o606).bits(), 0o705);
    }

    #[test]
    fn a_socket_is_bound_in_a_new_directory_of_that_mode_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/cavra.sock");
        let acquired = bind(&path, 0o660).unwrap();
        let mode = |path: &Path| fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir.path().join("run")), 0o750);
        assert_eq!(mode(&path), 0o660);
        drop(acquired);
        assert!(!path.exists());
    }

    #[test]
    fn a_socket_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let path = open.join("cavra.sock");
        let error = bind(&path, 0o660).err().expect("refused");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot serve on {}: directory {} (owner ",
                path.display(),
                open.display()
            )),
            "{text}"
        );
        assert!(
            text.contains("mode 0777) is writable by group or others without the sticky bit"),
            "{text}"
        );
        assert!(!path.exists());
    }
}
