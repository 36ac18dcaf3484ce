//! The blocking client: one request per connection (the reference protocol), or a stream-mode connection that
//! pipelines many.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::error::{ClientError, Refusal};
use crate::retry::Retry;
#[cfg(feature = "runner-auth")]
use crate::runner_auth::RunnerSigner;
use crate::server::{Server, ServerCheck, expected_server};
use crate::socket::{self, ConnectError, LineReader, ReadError};
use crate::wire::{
    DecisionResponse, EvaluateRequest, HEALTH_ACTION, Health, METRICS_ACTION, MetricsAnswer, STREAM_PROTOCOL,
};

/// The default deadline of one call: connect, send, answer and any retries.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one daemon socket. Cheap to clone; every call opens its own connection.
///
/// ```no_run
/// use std::time::Duration;
/// use cavra_runtime_client::{Client, ClientError, EvaluateRequest, RefusalKind};
///
/// let client = Client::new("/run/cavra/cavra-runtime.sock").with_timeout(Duration::from_secs(2));
/// let request = EvaluateRequest {
///     action_type: "execute_command".into(),
///     target: "terraform apply".into(),
///     ..Default::default()
/// };
/// match client.evaluate(&request) {
///     Ok(decision) if decision.decision.is_allow() => println!("go ahead"),
///     Ok(decision) => println!("not allowed: {} ({})", decision.reason, decision.rule_id),
///     Err(ClientError::Refused { refusal, .. }) if refusal.kind() == RefusalKind::PeerUnauthorized => {
///         eprintln!("ask an administrator for access: {refusal}")
///     }
///     Err(error) => eprintln!("no decision: {error}"),
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
    retry: Retry,
    server: ServerCheck,
    #[cfg(feature = "runner-auth")]
    signer: Option<RunnerSigner>,
}

impl Client {
    /// A client of the daemon on `socket`, with a 5 s deadline ([`DEFAULT_TIMEOUT`]), the default [`Retry`] and the
    /// server checked by its socket's location ([`ServerCheck::Location`]).
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
            retry: Retry::default(),
            server: ServerCheck::default(),
            #[cfg(feature = "runner-auth")]
            signer: None,
        }
    }

    /// The deadline of each call, from its start to its answer: connecting (however full the daemon's queue), sending,
    /// the answer, and any retries with their waits. For a stream, see [`Stream`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// When to ask again ([`Retry::none`] to ask once).
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Whom to accept as the server (default: [`ServerCheck::Location`]).
    pub fn expect_server(mut self, server: ServerCheck) -> Self {
        self.server = server;
        self
    }

    /// Authenticates every request as this CI runner: each gets a fresh HMAC credential (runner auth v2) just before
    /// it is sent, bound to that request and usable once; a retry is signed afresh.
    #[cfg(feature = "runner-auth")]
    pub fn with_runner_signer(mut self, signer: RunnerSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// Asks for one decision. `Ok` is a decision of the policy (allow, block, require_approval, or a value a newer
    /// daemon added); a daemon refusal is [`ClientError::Refused`], after the retries it is worth.
    pub fn evaluate(&self, request: &EvaluateRequest) -> Result<DecisionResponse, ClientError> {
        self.with_retries(|deadline| {
            let (answer, _) = self.exchange(&self.line(request), deadline)?;
            self.decision(&answer)
        })
    }

    /// The daemon's answer as it is, decision or refusal alike, as the reference's clients see it (the `--daemon`
    /// command line prints it). Refusals worth retrying are still retried first.
    pub fn evaluate_raw(&self, request: &EvaluateRequest) -> Result<DecisionResponse, ClientError> {
        match self.evaluate(request) {
            Err(ClientError::Refused { refusal, .. }) => Ok(refusal.into_response()),
            other => other,
        }
    }

    /// Asks whether the daemon is up; records no evidence.
    pub fn health(&self) -> Result<Health, ClientError> {
        self.health_and_server().map(|(health, _)| health)
    }

    /// [`Client::health`], and who answered, as the kernel recorded it.
    pub fn health_and_server(&self) -> Result<(Health, Server), ClientError> {
        let line = format!("{{\"action_type\":\"{HEALTH_ACTION}\"}}\n");
        self.with_retries(|deadline| {
            let (answer, server) = self.exchange(line.as_bytes(), deadline)?;
            Ok((self.health_answer(&answer)?, server))
        })
    }

    /// The health answer read as `T` (for fields beyond [`Health`]'s, such as the reasons and `last_reload`), and
    /// who answered.
    pub fn health_as<T: DeserializeOwned>(&self) -> Result<(T, Server), ClientError> {
        let line = format!("{{\"action_type\":\"{HEALTH_ACTION}\"}}\n");
        self.with_retries(|deadline| {
            let (answer, server) = self.exchange(line.as_bytes(), deadline)?;
            self.health_answer(&answer)?;
            Ok((self.parse(&answer)?, server))
        })
    }

    /// The daemon's metrics, in the Prometheus text format; records no evidence. A refusal (the daemon may not
    /// serve metrics to this caller) is the typed error every call gives.
    pub fn metrics(&self) -> Result<MetricsAnswer, ClientError> {
        let line = format!("{{\"action_type\":\"{METRICS_ACTION}\"}}\n");
        self.with_retries(|deadline| {
            let (answer, _) = self.exchange(line.as_bytes(), deadline)?;
            let value: serde_json::Value = self.parse(&answer)?;
            if value.get("decision").is_some() {
                self.decision(&answer)?;
            }
            self.parse(&answer)
        })
    }

    /// Who listens on the socket, as the kernel recorded it: connects within the deadline (no retries), checks the
    /// server as every call does, and closes without sending anything, so the daemon records nothing. Tells a
    /// listening daemon from a socket file left behind, whether or not the daemon has a health probe.
    pub fn listener(&self) -> Result<Server, ClientError> {
        let (_, server) = self.connect(Instant::now() + self.timeout)?;
        Ok(server)
    }

    /// Opens a stream-mode connection (connect and handshake within the deadline).
    pub fn stream(&self) -> Result<Stream, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let (connection, _) = self.connect(deadline)?;
        let mut stream = Stream {
            connection,
            reader: LineReader::default(),
            pending: Vec::new(),
            client: self.clone(),
            server: String::new(),
        };
        let hello = format!("{{\"protocol\":\"{STREAM_PROTOCOL}\"}}\n");
        socket::write_all(&stream.connection, hello.as_bytes(), deadline).map_err(|error| self.io(error))?;
        let answer = stream.read_line(deadline)?;
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

    /// Runs `attempt` until it succeeds, fails in a way not worth retrying, the attempts are used up, or the next
    /// wait would pass the deadline.
    pub(crate) fn with_retries<T>(
        &self,
        mut attempt: impl FnMut(Instant) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let mut made = 1;
        loop {
            match attempt(deadline) {
                Err(error) if error.is_retryable() && made < self.retry.attempts() => {
                    let delay = self.retry.delay(made);
                    if Instant::now() + delay >= deadline {
                        return Err(error);
                    }
                    std::thread::sleep(delay);
                    made += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// The request line to send, newline included, signed when this client authenticates as a runner.
    pub(crate) fn line(&self, request: &EvaluateRequest) -> Vec<u8> {
        #[cfg(feature = "runner-auth")]
        let signed;
        #[cfg(feature = "runner-auth")]
        let request = match &self.signer {
            Some(signer) => {
                signed = signer.signed(request);
                &signed
            }
            None => request,
        };
        let mut line = serde_json::to_vec(request).expect("a request serialises");
        line.push(b'\n');
        line
    }

    /// Connects, and checks the server before anything is sent to it.
    fn connect(&self, deadline: Instant) -> Result<(UnixStream, Server), ClientError> {
        let stream = socket::connect(&self.socket, deadline).map_err(|error| match error {
            ConnectError::TimedOut => ClientError::ConnectTimedOut {
                path: self.socket.clone(),
                timeout: self.timeout,
            },
            ConnectError::Failed(source) => ClientError::Connect {
                path: self.socket.clone(),
                source,
            },
        })?;
        let server = Server::of(&stream).map_err(|source| self.io(source))?;
        self.check_server(server)?;
        Ok((stream, server))
    }

    pub(crate) fn check_server(&self, server: Server) -> Result<(), ClientError> {
        let expected =
            expected_server(&self.server, &self.socket).map_err(|source| ClientError::UntrustedLocation {
                path: self.socket.clone(),
                source,
            })?;
        match expected {
            Some(trust) if !trust.trusts(server.uid) => Err(ClientError::WrongServer {
                path: self.socket.clone(),
                expected: trust.describe(),
                uid: server.uid,
                pid: server.pid,
            }),
            _ => Ok(()),
        }
    }

    /// One request, one answer line, by `deadline`: the answer is complete at its newline, whatever the server does
    /// next. A server that answers and closes before it has read all of the request (the Go daemon stops reading at
    /// the end of the JSON object; any daemon answers a refusal at once) fails the rest of the write: its answer is
    /// still there to read, and is kept.
    fn exchange(&self, line: &[u8], deadline: Instant) -> Result<(Vec<u8>, Server), ClientError> {
        let (stream, server) = self.connect(deadline)?;
        let mut reader = LineReader::default();
        let answer = match socket::write_all(&stream, line, deadline) {
            Ok(()) => self.read(&mut reader, &stream, deadline)?,
            Err(error) if socket::closed_by_server(&error) => {
                self.read(&mut reader, &stream, deadline).map_err(|_| self.io(error))?
            }
            Err(error) => return Err(self.io(error)),
        };
        Ok((answer, server))
    }

    pub(crate) fn read(
        &self,
        reader: &mut LineReader,
        stream: &UnixStream,
        deadline: Instant,
    ) -> Result<Vec<u8>, ClientError> {
        reader.read_line(stream, deadline).map_err(|error| match error {
            ReadError::Closed => ClientError::Closed {
                path: self.socket.clone(),
            },
            ReadError::Failed(source) => self.io(source),
        })
    }

    /// A decision, or the daemon's refusal as an error.
    pub(crate) fn decision(&self, answer: &[u8]) -> Result<DecisionResponse, ClientError> {
        Refusal::classify(self.parse(answer)?).map_err(|refusal| ClientError::Refused {
            path: self.socket.clone(),
            refusal,
        })
    }

    /// The daemon's health; a refusal (overloaded, unauthorised) is an error, and so is a decision (a server without
    /// a health probe evaluates it as an action).
    pub(crate) fn health_answer(&self, answer: &[u8]) -> Result<Health, ClientError> {
        let value: serde_json::Value = self.parse(answer)?;
        if value.get("decision").is_some() {
            self.decision(answer)?;
            return Err(ClientError::NoHealth {
                path: self.socket.clone(),
                answer: self.shown(answer),
            });
        }
        self.parse(answer)
    }

    pub(crate) fn parse<T: DeserializeOwned>(&self, answer: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(answer).map_err(|error| ClientError::InvalidAnswer {
            path: self.socket.clone(),
            error,
            answer: self.shown(answer),
        })
    }

    /// An answer as messages show it: the first 512 characters.
    fn shown(&self, answer: &[u8]) -> String {
        String::from_utf8_lossy(answer).trim_end().chars().take(512).collect()
    }

    pub(crate) fn io(&self, source: io::Error) -> ClientError {
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

/// A stream-mode connection: requests are answered in the order they were sent. Each call (or, in
/// [`Stream::evaluate_all`], each answer) has the client's timeout. Refusals are not retried on a stream: the
/// caller decides whether to ask again.
#[derive(Debug)]
pub struct Stream {
    connection: UnixStream,
    reader: LineReader,
    pending: Vec<u8>,
    client: Client,
    server: String,
}

impl Stream {
    /// The server's name and version from its handshake.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends one request and reads its answer, as [`Client::evaluate`] does.
    pub fn evaluate(&mut self, request: &EvaluateRequest) -> Result<DecisionResponse, ClientError> {
        let deadline = Instant::now() + self.client.timeout;
        self.send(request);
        self.flush_by(deadline)?;
        let answer = self.read_line(deadline)?;
        self.client.decision(&answer)
    }

    /// Queues a request; [`Stream::flush`] sends what is queued.
    pub fn send(&mut self, request: &EvaluateRequest) {
        let line = self.client.line(request);
        self.pending.extend_from_slice(&line);
    }

    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.flush_by(Instant::now() + self.client.timeout)
    }

    /// The next answer: a decision, or a refusal as an error.
    pub fn receive(&mut self) -> Result<DecisionResponse, ClientError> {
        let answer = self.read_line(Instant::now() + self.client.timeout)?;
        self.client.decision(&answer)
    }

    /// Sends every request while reading answers, so neither side's buffer can fill and stall the other. Each
    /// answer is a decision or a refusal; the error is for the connection as a whole.
    pub fn evaluate_all(
        &mut self,
        requests: &[EvaluateRequest],
    ) -> Result<Vec<Result<DecisionResponse, Refusal>>, ClientError> {
        self.flush()?;
        let writer = self.connection.try_clone().map_err(|source| self.client.io(source))?;
        let Self {
            connection,
            reader,
            client,
            ..
        } = self;
        std::thread::scope(|scope| {
            let sender = scope.spawn(|| -> Result<(), ClientError> {
                for request in requests {
                    let deadline = Instant::now() + client.timeout;
                    socket::write_all(&writer, &client.line(request), deadline).map_err(|error| client.io(error))?;
                }
                Ok(())
            });
            let answers = (0..requests.len())
                .map(|_| {
                    let answer = client.read(reader, connection, Instant::now() + client.timeout)?;
                    Ok(Refusal::classify(client.parse(&answer)?))
                })
                .collect::<Result<Vec<_>, ClientError>>();
            sender.join().expect("the sending thread does not panic")?;
            answers
        })
    }

    fn flush_by(&mut self, deadline: Instant) -> Result<(), ClientError> {
        let pending = std::mem::take(&mut self.pending);
        socket::write_all(&self.connection, &pending, deadline).map_err(|error| self.client.io(error))
    }

    fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, ClientError> {
        self.client.read(&mut self.reader, &self.connection, deadline)
    }
}
