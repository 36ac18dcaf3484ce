//! The one place that decides where the listening socket comes from: systemd socket activation, launchd
//! activation (macOS), or a socket this process binds itself. It runs before the async runtime exists, because
//! taking activated sockets edits the environment, which is only safe while the process has one thread.

use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::{env, fmt, fs};

use nix::sys::stat::{Mode, umask};

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

/// A socket file this process created. Removed on drop, unless something else has replaced it since.
#[derive(Debug)]
pub struct BoundSocket {
    path: PathBuf,
    identity: (u64, u64),
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Ok(metadata) = fs::symlink_metadata(&self.path) {
            if (metadata.dev(), metadata.ino()) == self.identity {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

pub struct Acquired {
    pub listener: UnixListener,
    pub origin: Origin,
}

pub fn acquire(options: &ListenOptions) -> Result<Acquired, ListenerError> {
    if let Some(acquired) = from_systemd(&options.fd_name)? {
        return Ok(acquired);
    }
    if let Some(listener) = launchd::activate()? {
        return Ok(Acquired {
            listener,
            origin: Origin::Launchd,
        });
    }
    bind(&options.socket, options.mode)
}

/// Takes the socket systemd passed, if it passed any to this process (`LISTEN_PID` must be ours).
fn from_systemd(wanted: &str) -> Result<Option<Acquired>, ListenerError> {
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
    let index = match names
        .as_ref()
        .and_then(|names| names.iter().position(|name| name == wanted))
    {
        Some(index) => index,
        None if fds.len() == 1 => 0,
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
    let name = names.and_then(|names| names.get(index).cloned());
    Ok(Some(Acquired {
        listener,
        origin: Origin::Systemd { name },
    }))
}

/// Binds `path` with `mode`: the file is created with its final mode (umask during bind), so the socket never
/// accepts with a wider one.
fn bind(path: &Path, mode: u32) -> Result<Acquired, ListenerError> {
    let io_error = |action, source| ListenerError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|source| ListenerError::Io {
            action: "create the socket directory",
            path: parent.to_owned(),
            source,
        })?;
    }
    match fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.file_type().is_socket() => {
            return Err(ListenerError::NotASocket { path: path.to_owned() });
        }
        Ok(_) => {
            if UnixStream::connect(path).is_ok() {
                return Err(ListenerError::AlreadyServing { path: path.to_owned() });
            }
            fs::remove_file(path).map_err(|source| io_error("remove the stale socket", source))?;
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error("inspect", source)),
    }
    // `mode_t` is u16 on macOS, u32 on Linux; `!mode & 0o777` fits either.
    let previous = umask(Mode::from_bits_truncate((!mode & 0o777) as nix::libc::mode_t));
    let bound = UnixListener::bind(path);
    umask(previous);
    let listener = bound.map_err(|source| io_error("bind", source))?;
    // Also set the mode explicitly: some platforms ignore the umask for sockets.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| io_error("chmod", source))?;
    let metadata = fs::symlink_metadata(path).map_err(|source| io_error("inspect", source))?;
    Ok(Acquired {
        listener,
        origin: Origin::Bound(BoundSocket {
            path: path.to_owned(),
            identity: (metadata.dev(), metadata.ino()),
        }),
    })
}
