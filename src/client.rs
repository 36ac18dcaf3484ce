//! Clients for the daemon's socket: one request per connection (the reference protocol), or a stream-mode
//! connection that pipelines many requests.
//!
//! Before it sends anything, a client checks whom it is talking to: the kernel's record of the server's uid
//! (peer credentials) must be one the socket's location vouches for ([`ServerCheck`]), so an impostor bound in a
//! place another user could reach is an error, never an answer.

use std::io::{self, BufRead as _, BufReader, BufWriter, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::stat::SFlag;
use serde::de::DeserializeOwned;

use crate::auth::{Peer, RunnerSigner};
use crate::contract::{
    DecisionResponse, EvaluateRequest, HEALTH_ACTION, Health, METRICS_ACTION, MetricsAnswer, STREAM_PROTOCOL,
};
use crate::fsutil::{self, FsError, SafeDir, Trust};

/// The system socket on Linux, in the directory the socket unit (or the daemon) creates.
pub const LINUX_SYSTEM_SOCKET: &str = "/run/cavra/cavra-runtime.sock";
/// The system socket on macOS: it has no /run, empties /var/run at boot, and launchd creates no directory for a
/// socket it binds, so the socket sits directly in /var/run (as mDNSResponder's does).
pub const MACOS_SYSTEM_SOCKET: &str = "/var/run/cavra-runtime.sock";
/// The packaged service's socket on this platform, and the user its daemon runs as (macOS names service accounts
/// with a leading underscore).
pub const SYSTEM_SOCKET: &str = if cfg!(target_os = "macos") {
    MACOS_SYSTEM_SOCKET
} else {
    LINUX_SYSTEM_SOCKET
};
pub const SERVICE_USER: &str = if cfg!(target_os = "macos") { "_cavra" } else { "cavra" };

/// Whom a client accepts as the server. Root is always accepted: it could impersonate anyone anyway, and a socket
/// the service manager holds (socket activation) is credited to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerCheck {
    /// The user the socket's location names: the service user ([`SERVICE_USER`]) for [`SYSTEM_SOCKET`]; otherwise
    /// the owner of the socket's directory, or of the socket itself in a shared directory with the sticky bit (like
    /// `/tmp`). Every directory on the way must belong to root, the caller or that user, and none may be writable by
    /// others without the sticky bit: a location another user controls vouches for no one.
    #[default]
    Location,
    /// This uid.
    Uid(u32),
    /// Anyone: for probes that trust nothing the server says (`--lifecycle` compares the server's pid instead).
    Anyone,
}

/// The largest answer a client reads; real answers are a few hundred bytes.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to cavra-runtime at {}: {source}; is it running? Start it with `cavra-runtime --lifecycle start --socket {0}` or `systemctl start cavra-runtime.socket`",
        path.display()
    )]
    Connect { path: PathBuf, source: io::Error },
    #[error("no answer from cavra-runtime at {} within {timeout:?}", path.display())]
    TimedOut { path: PathBuf, timeout: Duration },
    #[error("connection to cavra-runtime at {} failed: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("cavra-runtime at {} closed the connection without answering", path.display())]
    Closed { path: PathBuf },
    #[error("cavra-runtime at {} sent an answer that is not valid JSON ({error}): {answer}", path.display())]
    InvalidAnswer {
        path: PathBuf,
        error: serde_json::Error,
        answer: String,
    },
    #[error("cavra-runtime at {} does not speak {STREAM_PROTOCOL}; it answered: {answer}", path.display())]
    NoStreamMode { path: PathBuf, answer: String },
    #[error(
        "cannot tell who should answer on {}: {source}; name the daemon's user with --expect-server-uid",
        path.display()
    )]
    UntrustedLocation { path: PathBuf, source: FsError },
    #[error(
        "refusing to talk to {}: it is served by {} (pid {}), but only {expected} may answer there (--expect-server-uid)",
        path.display(), fsutil::owner(*uid), pid.map_or("unknown".to_owned(), |pid| pid.to_string())
    )]
    WrongServer {
        path: PathBuf,
        expected: String,
        uid: u32,
        pid: Option<i32>,
    },
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
    signer: Option<RunnerSigner>,
    server: ServerCheck,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: Duration::from_secs(5),
            signer: None,
            server: ServerCheck::default(),
        }
    }

    /// Authenticates every request as this CI runner: each gets a fresh HMAC credential (runner auth v2) just before
    /// it is sent, bound to that request and usable once.
    pub fn with_runner_signer(mut self, signer: RunnerSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Whom to accept as the server (default: [`ServerCheck::Location`]).
    pub fn expect_server(mut self, server: ServerCheck) -> Self {
        self.server = server;
        self
    }

    /// Bounds each read and write on the connection.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Asks for one decision.
    pub fn evaluate(&self, request: &EvaluateRequest) -> Result<DecisionResponse, ClientError> {
        self.exchange(&self.encode(request)).map(|(decision, _)| decision)
    }

    /// The request line to send (without its newline), signed when this client authenticates as a runner.
    fn encode(&self, request: &EvaluateRequest) -> Vec<u8> {
        let line = match &self.signer {
            Some(signer) => {
                let mut signed = request.clone();
                signer.sign(&mut signed);
                serde_json::to_vec(&signed)
            }
            None => serde_json::to_vec(request),
        };
        line.expect("a request serialises")
    }

    /// Asks whether the daemon is up; records no evidence.
    pub fn health(&self) -> Result<Health, ClientError> {
        self.health_and_server().map(|(health, _)| health)
    }

    /// [`Client::health`], and who answered, as the kernel recorded it.
    pub fn health_and_server(&self) -> Result<(Health, Peer), ClientError> {
        self.exchange(format!(r#"{{"action_type":"{HEALTH_ACTION}"}}"#).as_bytes())
    }

    /// The health answer read as `T` (for the fields beyond the contract's, such as `last_reload`), and who
    /// answered.
    pub fn health_as<T: DeserializeOwned>(&self) -> Result<(T, Peer), ClientError> {
        self.exchange(format!(r#"{{"action_type":"{HEALTH_ACTION}"}}"#).as_bytes())
    }

    /// The daemon's metrics, in the Prometheus text format; records no evidence.
    pub fn metrics(&self) -> Result<MetricsAnswer, ClientError> {
        self.exchange(format!(r#"{{"action_type":"{METRICS_ACTION}"}}"#).as_bytes())
            .map(|(metrics, _)| metrics)
    }

    /// Opens a stream-mode connection.
    pub fn stream(&self) -> Result<Stream, ClientError> {
        let (connection, _) = self.connect()?;
        let mut stream = Stream {
            reader: BufReader::new(connection.try_clone().map_err(|source| self.io(source))?),
            writer: BufWriter::new(connection),
            client: self.clone(),
            server: String::new(),
        };
        stream.write_line(format!(r#"{{"protocol":"{STREAM_PROTOCOL}"}}"#).as_bytes())?;
        stream.flush()?;
        let answer = stream.read_line()?;
        let greeting: serde_json::Value = self.parse(&answer)?;
        if greeting.get("protocol").and_then(|p| p.as_str()) != Some(STREAM_PROTOCOL) {
            return Err(ClientError::NoStreamMode {
                path: self.socket.clone(),
                answer: String::from_utf8_lossy(&answer).into_owned(),
            });
        }
        stream.server = greeting
            .get("server")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned();
        Ok(stream)
    }

    /// Connects, and checks the server before anything is sent to it.
    fn connect(&self) -> Result<(UnixStream, Peer), ClientError> {
        let stream = UnixStream::connect(&self.socket).map_err(|source| ClientError::Connect {
            path: self.socket.clone(),
            source,
        })?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|source| self.io(source))?;
        let server = Peer::of(&stream, false).map_err(|source| self.io(source))?;
        if let Some(expected) = self.expected_server()?
            && !expected.trusts(server.uid)
        {
            return Err(ClientError::WrongServer {
                path: self.socket.clone(),
                expected: expected.describe(),
                uid: server.uid,
                pid: server.pid,
            });
        }
        Ok((stream, server))
    }

    /// The users who may answer on the socket; `None` for anyone.
    fn expected_server(&self) -> Result<Option<Trust>, ClientError> {
        match self.server {
            ServerCheck::Anyone => Ok(None),
            ServerCheck::Uid(uid) => Ok(Some(Trust::user(uid))),
            ServerCheck::Location if self.socket == Path::new(SYSTEM_SOCKET) => {
                let service = nix::unistd::User::from_name(SERVICE_USER).ok().flatten();
                Ok(Some(
                    service.map_or(Trust::user(0), |user| Trust::user(user.uid.as_raw())),
                ))
            }
            ServerCheck::Location => self
                .location_owner()
                .map(|owner| Some(Trust::user(owner)))
                .map_err(|source| ClientError::UntrustedLocation {
                    path: self.socket.clone(),
                    source,
                }),
        }
    }

    /// Whom the socket's location names (see [`ServerCheck::Location`]).
    fn location_owner(&self) -> Result<u32, FsError> {
        let name = self.socket.file_name().unwrap_or_default();
        let parent = match self.socket.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        // A first look names the candidate; the walk then checks every directory on the way against it.
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| FsError::Io { action, path, source }
        };
        let directory = std::fs::metadata(parent).map_err(io("inspect", parent))?;
        let candidate = {
            use std::os::unix::fs::MetadataExt as _;
            let shared = directory.mode() & 0o022 != 0 && directory.mode() & 0o1000 != 0;
            if shared {
                std::fs::symlink_metadata(&self.socket)
                    .map_err(io("inspect", &self.socket))?
                    .uid()
            } else {
                directory.uid()
            }
        };
        let trust = Trust::effective_user().also(candidate);
        let dir = SafeDir::open(parent, &trust)?;
        if !dir.is_shared() {
            return Ok(dir.owner());
        }
        match dir.entry(name)? {
            Some(stat)
                if stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFSOCK.bits() && trust.trusts(stat.st_uid) =>
            {
                Ok(stat.st_uid)
            }
            Some(stat) => Err(FsError::Untrusted {
                kind: "socket",
                path: self.socket.clone(),
                uid: stat.st_uid,
                mode: stat.st_mode & 0o7777,
                trusted: trust.describe(),
            }),
            None => Err(FsError::Io {
                action: "find",
                path: self.socket.clone(),
                source: io::Error::from(io::ErrorKind::NotFound),
            }),
        }
    }

    /// One request, one answer line: the answer is complete at its newline, whatever the server does next.
    fn exchange<T: DeserializeOwned>(&self, body: &[u8]) -> Result<(T, Peer), ClientError> {
        let (mut stream, server) = self.connect()?;
        let written = stream.write_all(body).and_then(|()| stream.write_all(b"\n"));
        let mut reader = BufReader::new(stream);
        let answer = match written {
            Ok(()) => read_line(&mut reader, self)?,
            // A server that refuses a connection answers and closes at once, perhaps before the request is
            // written: its answer is still there to read.
            Err(error) if matches!(error.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                read_line(&mut reader, self).map_err(|_| self.io(error))?
            }
            Err(error) => return Err(self.io(error)),
        };
        Ok((self.parse(&answer)?, server))
    }

    fn parse<T: DeserializeOwned>(&self, answer: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(answer).map_err(|error| ClientError::InvalidAnswer {
            path: self.socket.clone(),
            error,
            answer: String::from_utf8_lossy(answer).chars().take(512).collect(),
        })
    }

    fn io(&self, source: io::Error) -> ClientError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::TimedOut {
                path: self.socket.clone(),
                timeout: self.timeout,
            },
            _ => ClientError::Io {
                path: self.socket.clone(),
                source,
            },
        }
    }
}

/// A stream-mode connection: requests are answered in the order they were sent.
pub struct Stream {
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    client: Client,
    server: String,
}

impl Stream {
    /// The server's name and version from its handshake.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn evaluate(&mut self, request: &EvaluateRequest) -> Result<DecisionResponse, ClientError> {
        self.send(request)?;
        self.flush()?;
        self.receive()
    }

    /// Queues a request; [`Stream::flush`] sends what is queued.
    pub fn send(&mut self, request: &EvaluateRequest) -> Result<(), ClientError> {
        let line = self.client.encode(request);
        self.write_line(&line)
    }

    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.writer.flush().map_err(|source| self.client.io(source))
    }

    pub fn receive(&mut self) -> Result<DecisionResponse, ClientError> {
        let line = self.read_line()?;
        self.client.parse(&line)
    }

    /// Sends every request while reading answers, so neither side's buffer can fill and stall the other.
    pub fn evaluate_all(&mut self, requests: &[EvaluateRequest]) -> Result<Vec<DecisionResponse>, ClientError> {
        let Self {
            reader, writer, client, ..
        } = self;
        std::thread::scope(|scope| {
            let sender = scope.spawn(|| -> Result<(), ClientError> {
                for request in requests {
                    let mut line = client.encode(request);
                    line.push(b'\n');
                    writer.write_all(&line).map_err(|source| client.io(source))?;
                }
                writer.flush().map_err(|source| client.io(source))
            });
            let answers = (0..requests.len())
                .map(|_| {
                    let line = read_line(reader, client)?;
                    client.parse(&line)
                })
                .collect::<Result<Vec<_>, _>>();
            sender.join().expect("the sending thread does not panic")?;
            answers
        })
    }

    fn write_line(&mut self, body: &[u8]) -> Result<(), ClientError> {
        self.writer
            .write_all(body)
            .and_then(|()| self.writer.write_all(b"\n"))
            .map_err(|source| self.client.io(source))
    }

    fn read_line(&mut self) -> Result<Vec<u8>, ClientError> {
        read_line(&mut self.reader, &self.client)
    }
}

fn read_line(reader: &mut BufReader<UnixStream>, client: &Client) -> Result<Vec<u8>, ClientError> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_ANSWER_BYTES)
        .read_until(b'\n', &mut line)
        .map_err(|source| client.io(source))?;
    if line.is_empty() {
        return Err(ClientError::Closed {
            path: client.socket.clone(),
        });
    }
    Ok(line)
}
