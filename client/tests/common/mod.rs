//! Tiny servers on a real Unix socket, each behaving as one kind of daemon does, for the client's tests.

#![allow(dead_code)] // each test file uses some of these

use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

/// A listening socket in a private temporary directory, served by a thread that hands each connection, with its
/// index (from 0), to a behaviour.
pub struct TestServer {
    pub socket: PathBuf,
    connections: Arc<AtomicUsize>,
    _dir: TempDir,
}

impl TestServer {
    pub fn start(behaviour: impl Fn(usize, UnixStream) + Send + Sync + 'static) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cavra.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let behaviour = Arc::new(behaviour);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let index = counted.fetch_add(1, Ordering::SeqCst);
                let behaviour = Arc::clone(&behaviour);
                std::thread::spawn(move || behaviour(index, stream.unwrap()));
            }
        });
        TestServer {
            socket,
            connections,
            _dir: dir,
        }
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A listener that never accepts, its queue of pending connections full: a connect to it waits (Linux).
pub struct FullQueue {
    pub socket: PathBuf,
    _listener: UnixListener,
    _queued: Vec<UnixStream>,
    _dir: TempDir,
}

impl FullQueue {
    pub fn new() -> FullQueue {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("cavra.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        // Listening again changes the backlog: the shortest queue there is.
        // SAFETY: plain system call on a socket the listener owns.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let mut queued = Vec::new();
        loop {
            // SAFETY: plain system call; the descriptor is owned by the stream made from it at once.
            let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            assert!(fd >= 0);
            // SAFETY: `fd` is a new descriptor nobody else owns.
            let stream = unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            stream.set_nonblocking(true).unwrap();
            let (raw, length) = sockaddr(&socket);
            // SAFETY: `raw` is a valid sockaddr_un of `length` bytes.
            let result = unsafe { libc::connect(fd, (&raw const raw).cast(), length) };
            if result != 0 {
                let error = std::io::Error::last_os_error();
                assert_eq!(error.kind(), std::io::ErrorKind::WouldBlock, "{error}");
                break;
            }
            queued.push(stream);
            assert!(queued.len() < 10_000, "the queue never filled");
        }
        FullQueue {
            socket,
            _listener: listener,
            _queued: queued,
            _dir: dir,
        }
    }
}

fn sockaddr(path: &std::path::Path) -> (libc::sockaddr_un, libc::socklen_t) {
    use std::os::unix::ffi::OsStrExt as _;
    // SAFETY: sockaddr_un is plain data, for which all zeroes is a valid value.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    for (slot, byte) in address.sun_path.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
    (address, (offset + bytes.len() + 1) as libc::socklen_t)
}

/// A decision line as the daemon writes it.
pub fn answer(rule_id: &str, decision: &str, severity: &str) -> String {
    format!(
        "{}\n",
        serde_json::json!({
            "decision_id": "dec_000000000001", "rule_id": rule_id, "decision": decision, "severity": severity,
            "reason": format!("answered {rule_id}"), "correlation_id": "corr_000000000001"
        })
    )
}

/// Reads one JSON object a byte at a time, as a decoder that stops at the object's end does (the Go daemon's
/// `json.Decoder`): whatever follows it, the newline included, is left unread. Returns the object's bytes.
pub fn read_object(stream: &mut UnixStream) -> Vec<u8> {
    let mut object = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut byte = [0u8; 1];
    loop {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            return object;
        }
        object.push(byte[0]);
        match (in_string, escaped, byte[0]) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'{') => depth += 1,
            (false, _, b'}') => {
                depth -= 1;
                if depth == 0 {
                    return object;
                }
            }
            _ => {}
        }
    }
}

/// The Go daemon: decode one object, answer, close at once without reading the rest.
pub fn go_daemon(_: usize, mut stream: UnixStream) {
    let request: serde_json::Value = serde_json::from_slice(&read_object(&mut stream)).unwrap();
    let line = answer("filesystem.read.allow", "allow", "low").replace(
        "answered filesystem.read.allow",
        request["target"].as_str().unwrap_or_default(),
    );
    let _ = stream.write_all(line.as_bytes());
}
