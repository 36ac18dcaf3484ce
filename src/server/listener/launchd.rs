//! launchd socket activation (macOS): `launch_activate_socket("Listeners")` hands over the socket a job's plist
//! declares under `Sockets`. The call itself exists on macOS only; what its answers mean, and the check of what it
//! passed, are plain code, unit-tested on every platform.

use std::io;
use std::os::unix::net::UnixListener;

/// The key under the plist's `Sockets` that the daemon asks for (the name CUPS and mDNSResponder use too).
pub const SOCKET_NAME: &str = "Listeners";

#[derive(Debug, thiserror::Error)]
pub enum LaunchdError {
    #[error(
        "launchd has already handed this process its socket {SOCKET_NAME:?} (EALREADY); it does so once per process"
    )]
    AlreadyActivated,
    #[error("launch_activate_socket({SOCKET_NAME:?}) failed: {0}")]
    Failed(io::Error),
    #[error(
        "launchd passed {0} sockets named {SOCKET_NAME:?}; the plist's Sockets.{SOCKET_NAME} must declare exactly one, with SockPathName"
    )]
    SocketCount(usize),
    #[error(
        "the socket launchd passed as {SOCKET_NAME:?} is not a listening Unix stream socket ({0}); declare it with SockPathName and no SockType other than stream"
    )]
    WrongSocket(String),
}

/// What `launch_activate_socket` answered.
#[cfg(any(target_os = "macos", test))]
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// It passed descriptors.
    Sockets,
    /// ESRCH: this process was not started by launchd (a shell, `--lifecycle start`).
    NotLaunchd,
    /// ENOENT: started by launchd, but its plist declares no socket by that name (a Homebrew service, whose `sockets`
    /// can only be TCP or UDP ones, or a hand-written plist).
    NoSuchSocket,
}

/// Reads `launch_activate_socket`'s return value: an error number in macOS's numbering (it sets no `errno`).
#[cfg(any(target_os = "macos", test))]
fn answer(status: i32) -> Result<Answer, LaunchdError> {
    // <sys/errno.h> on macOS, spelled out so that the mapping means the same where it is tested.
    const ENOENT: i32 = 2;
    const ESRCH: i32 = 3;
    const EALREADY: i32 = 37;
    match status {
        0 => Ok(Answer::Sockets),
        ESRCH => Ok(Answer::NotLaunchd),
        ENOENT => Ok(Answer::NoSuchSocket),
        EALREADY => Err(LaunchdError::AlreadyActivated),
        code => Err(LaunchdError::Failed(io::Error::from_raw_os_error(code))),
    }
}

/// The one listening Unix stream socket launchd must have passed; anything else is refused (and closed), so a plist
/// that declares a TCP port or a datagram socket never gets answered on.
#[cfg(any(target_os = "macos", test))]
fn listener(fds: Vec<std::os::fd::OwnedFd>) -> Result<UnixListener, LaunchdError> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    use nix::sys::socket::{
        AddressFamily, SockType, SockaddrLike as _, SockaddrStorage, getsockname, getsockopt, sockopt,
    };
    use std::os::fd::AsRawFd as _;

    let count = fds.len();
    let mut fds = fds.into_iter();
    let (Some(fd), None) = (fds.next(), fds.next()) else {
        return Err(LaunchdError::SocketCount(count));
    };
    let wrong = |what: String| LaunchdError::WrongSocket(what);
    let family = getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .map_err(|errno| wrong(format!("cannot read its address: {errno}")))?
        .family();
    if family != Some(AddressFamily::Unix) {
        return Err(wrong(format!("address family {family:?}")));
    }
    let kind = getsockopt(&fd, sockopt::SockType).map_err(|errno| wrong(format!("cannot read its type: {errno}")))?;
    if kind != SockType::Stream {
        return Err(wrong(format!("type {kind:?}")));
    }
    let listening = getsockopt(&fd, sockopt::AcceptConn)
        .map_err(|errno| wrong(format!("cannot tell whether it listens: {errno}")))?;
    if !listening {
        return Err(wrong("not listening".to_owned()));
    }
    // launchd leaves it inheritable; nothing this daemon might start should hold the socket open.
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|errno| wrong(format!("cannot set close-on-exec: {errno}")))?;
    Ok(UnixListener::from(fd))
}

/// The `Listeners` socket, when launchd started this process with one; `None` when it did not (bind instead).
#[cfg(target_os = "macos")]
pub fn activate() -> Result<Option<UnixListener>, LaunchdError> {
    use std::ffi::{CString, c_char, c_int, c_void};
    use std::os::fd::{FromRawFd as _, OwnedFd};

    unsafe extern "C" {
        fn launch_activate_socket(name: *const c_char, fds: *mut *mut c_int, count: *mut usize) -> c_int;
        fn free(pointer: *mut c_void);
    }

    let name = CString::new(SOCKET_NAME).expect("no NUL in the socket name");
    let mut array: *mut c_int = std::ptr::null_mut();
    let mut count: usize = 0;
    // SAFETY: on success launchd points `array` at a malloc'd array of `count` descriptors, which we then own.
    let status = unsafe { launch_activate_socket(name.as_ptr(), &mut array, &mut count) };
    match answer(status)? {
        Answer::Sockets => {}
        Answer::NotLaunchd => return Ok(None),
        Answer::NoSuchSocket => {
            tracing::info!("launchd started this process without a socket named {SOCKET_NAME:?}; binding one");
            return Ok(None);
        }
    }
    let fds: Vec<OwnedFd> = if array.is_null() {
        Vec::new()
    } else {
        // SAFETY: `array` holds `count` descriptors that launchd handed to this process and nothing else refers to.
        let fds = unsafe { std::slice::from_raw_parts(array, count) }
            .iter()
            .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        // SAFETY: the caller frees the array (launch_activate_socket(3)); the descriptors are in `fds` now.
        unsafe { free(array.cast()) };
        fds
    };
    listener(fds).map(Some)
}

/// launchd exists only on macOS.
#[cfg(not(target_os = "macos"))]
pub fn activate() -> Result<Option<UnixListener>, LaunchdError> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd as _, OwnedFd};
    use std::os::unix::net::{UnixDatagram, UnixStream};

    use nix::fcntl::{FcntlArg, FdFlag, fcntl};

    use super::*;

    #[test]
    fn each_answer_of_launch_activate_socket_means_what_launch_h_says() {
        assert_eq!(answer(0).unwrap(), Answer::Sockets);
        assert_eq!(answer(3).unwrap(), Answer::NotLaunchd, "ESRCH: not started by launchd");
        assert_eq!(answer(2).unwrap(), Answer::NoSuchSocket, "ENOENT: no such socket");
        let already = answer(37).unwrap_err();
        assert!(matches!(already, LaunchdError::AlreadyActivated));
        assert!(already.to_string().contains("\"Listeners\" (EALREADY)"), "{already}");
        // Anything else is a failure that names the call and the number.
        for code in [1, 12, 22, 99] {
            let error = answer(code).unwrap_err();
            assert!(matches!(error, LaunchdError::Failed(_)), "{code}: {error:?}");
            let message = error.to_string();
            assert!(
                message.starts_with("launch_activate_socket(\"Listeners\") failed: ")
                    && message.ends_with(&format!("(os error {code})")),
                "{message}"
            );
        }
    }

    fn wrong_socket(fds: Vec<OwnedFd>) -> String {
        match listener(fds) {
            Err(LaunchdError::WrongSocket(what)) => what,
            other => panic!("expected WrongSocket, got {other:?}"),
        }
    }

    #[test]
    fn only_one_listening_unix_stream_socket_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let bound = UnixListener::bind(dir.path().join("s")).unwrap();
        // launchd passes the socket inheritable; it must come out close-on-exec.
        fcntl(bound.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        let taken = listener(vec![OwnedFd::from(bound)]).unwrap();
        let flags = FdFlag::from_bits_retain(fcntl(taken.as_fd(), FcntlArg::F_GETFD).unwrap());
        assert!(flags.contains(FdFlag::FD_CLOEXEC));
        UnixStream::connect(dir.path().join("s")).expect("the taken socket still listens");

        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(wrong_socket(vec![OwnedFd::from(tcp)]), "address family Some(Inet)");
        let datagram = UnixDatagram::bind(dir.path().join("d")).unwrap();
        assert_eq!(wrong_socket(vec![OwnedFd::from(datagram)]), "type Datagram");
        let (connected, _peer) = UnixStream::pair().unwrap();
        assert_eq!(wrong_socket(vec![OwnedFd::from(connected)]), "not listening");

        assert!(matches!(listener(Vec::new()), Err(LaunchdError::SocketCount(0))));
        let two = vec![
            OwnedFd::from(UnixListener::bind(dir.path().join("a")).unwrap()),
            OwnedFd::from(UnixListener::bind(dir.path().join("b")).unwrap()),
        ];
        let error = listener(two).unwrap_err();
        assert!(matches!(error, LaunchdError::SocketCount(2)));
        assert!(error.to_string().contains("must declare exactly one"), "{error}");
    }
}
