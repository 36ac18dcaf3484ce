//! The blocking client's socket: a connect bounded by the deadline, writes that never raise SIGPIPE, and answers
//! read a line at a time, every call given only the time left.

use std::io::{self, Read as _};
use std::os::fd::{AsRawFd, FromRawFd as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The largest answer a client reads; real answers are a few hundred bytes.
pub(crate) const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The time left until `deadline`, or a `TimedOut` error when there is none.
pub(crate) fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::from(io::ErrorKind::TimedOut));
    }
    Ok(left)
}

/// What a bounded connect can end in, besides a connection.
pub(crate) enum ConnectError {
    /// The listener's queue stayed full until the deadline.
    TimedOut,
    Failed(io::Error),
}

/// Connects to `path` by `deadline`. A connect to a Unix socket whose queue is full blocks (Linux) until the send
/// timeout, which is set to the time left, and then fails with `EAGAIN`.
pub(crate) fn connect(path: &Path, deadline: Instant) -> Result<UnixStream, ConnectError> {
    let (address, length) = address(path).map_err(ConnectError::Failed)?;
    let stream = socket().map_err(ConnectError::Failed)?;
    loop {
        let left = remaining(deadline).map_err(|_| ConnectError::TimedOut)?;
        stream.set_write_timeout(Some(left)).map_err(ConnectError::Failed)?;
        // SAFETY: `address` is a valid sockaddr_un of `length` bytes.
        let result = unsafe { libc::connect(stream.as_raw_fd(), (&raw const address).cast(), length) };
        if result == 0 {
            return Ok(stream);
        }
        let error = io::Error::last_os_error();
        match error.kind() {
            io::ErrorKind::Interrupted => {}
            // The queue is full (the send timeout ran out, or a platform that does not wait): try again until the
            // deadline, a little later.
            io::ErrorKind::WouldBlock => {
                let left = remaining(deadline).map_err(|_| ConnectError::TimedOut)?;
                std::thread::sleep(left.min(Duration::from_millis(5)));
            }
            _ => return Err(ConnectError::Failed(error)),
        }
    }
}

/// A new Unix stream socket, closed on exec, that never raises SIGPIPE.
fn socket() -> io::Result<UnixStream> {
    // Closed on exec from the start where the platform can (no window for another thread's fork and exec).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const KIND: libc::c_int = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const KIND: libc::c_int = libc::SOCK_STREAM;
    // SAFETY: plain system call; the descriptor is owned by the stream made from it at once.
    let fd = unsafe { libc::socket(libc::AF_UNIX, KIND, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: plain system call on a descriptor we own.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    no_sigpipe(&stream)?;
    Ok(stream)
}

/// Makes writes to `socket` fail with `EPIPE` instead of raising SIGPIPE, where that is a socket option (macOS);
/// elsewhere [`send`] asks it of each write.
pub(crate) fn no_sigpipe(socket: &impl AsRawFd) -> io::Result<()> {
    #[cfg(target_os = "macos")]
    {
        let on: libc::c_int = 1;
        // SAFETY: the option value is a c_int of the size given.
        let result = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NOSIGPIPE,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "macos"))]
    let _ = socket;
    Ok(())
}

/// One `send` of `bytes`, never raising SIGPIPE (see [`no_sigpipe`]).
pub(crate) fn send(socket: &impl AsRawFd, bytes: &[u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const FLAGS: libc::c_int = 0;
    // SAFETY: the buffer is valid for `bytes.len()` bytes.
    let sent = unsafe { libc::send(socket.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), FLAGS) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// `path` as a `sockaddr_un`, and its length.
fn address(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data, for which all zeroes is a valid value.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // One byte stays for the terminating NUL.
    if bytes.is_empty() || bytes.len() >= address.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a socket path must be 1 to {} bytes without NUL",
                address.sun_path.len() - 1
            ),
        ));
    }
    for (slot, byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    Ok((address, (offset + bytes.len() + 1) as libc::socklen_t))
}

/// Writes all of `bytes` by `deadline`, in as few calls as the socket allows: a request and its newline go in one
/// buffer, so a server that answers and closes as soon as it has read the request cannot fail a second write.
pub(crate) fn write_all(stream: &UnixStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        match send(stream, bytes) {
            Ok(sent) => bytes = &bytes[sent..],
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Whether a write failed because the server closed its end, perhaps after answering.
pub(crate) fn closed_by_server(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
}

/// Reads lines from a stream; what arrives after a line waits for the next call.
#[derive(Debug, Default)]
pub(crate) struct LineReader {
    buffer: Vec<u8>,
}

/// What reading a line can end in, besides a line.
pub(crate) enum ReadError {
    /// The stream ended before any byte of a line.
    Closed,
    Failed(io::Error),
}

impl LineReader {
    /// The next line (with its newline, if the stream did not end first), by `deadline`. At most
    /// [`MAX_ANSWER_BYTES`]: a longer line is returned cut there, and will not parse.
    pub(crate) fn read_line(&mut self, mut stream: &UnixStream, deadline: Instant) -> Result<Vec<u8>, ReadError> {
        let mut searched = 0;
        loop {
            if let Some(at) = self.buffer[searched..].iter().position(|byte| *byte == b'\n') {
                let rest = self.buffer.split_off(searched + at + 1);
                return Ok(std::mem::replace(&mut self.buffer, rest));
            }
            searched = self.buffer.len();
            if self.buffer.len() >= MAX_ANSWER_BYTES {
                let rest = self.buffer.split_off(MAX_ANSWER_BYTES);
                return Ok(std::mem::replace(&mut self.buffer, rest));
            }
            let left = remaining(deadline).map_err(ReadError::Failed)?;
            stream.set_read_timeout(Some(left)).map_err(ReadError::Failed)?;
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) if self.buffer.is_empty() => return Err(ReadError::Closed),
                Ok(0) => return Ok(std::mem::take(&mut self.buffer)),
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Err(ReadError::Failed(io::Error::from(io::ErrorKind::TimedOut)));
                }
                // A server that closes with part of the request unread resets the connection, after what it wrote.
                Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {
                    if self.buffer.is_empty() {
                        return Err(ReadError::Closed);
                    }
                    return Ok(std::mem::take(&mut self.buffer));
                }
                Err(error) => return Err(ReadError::Failed(error)),
            }
        }
    }
}
