//! Clients for the daemon's socket: one request per connection (the reference protocol), or a stream-mode
//! connection that pipelines many requests.

use std::io::{self, BufRead as _, BufReader, BufWriter, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::auth::RunnerSigner;
use crate::contract::{DecisionResponse, EvaluateRequest, HEALTH_ACTION, Health, STREAM_PROTOCOL};

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
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
    signer: Option<RunnerSigner>,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: Duration::from_secs(5),
            signer: None,
        }
    }

    /// Authenticates every request as this CI runner: each gets a fresh HMAC credential (runner auth v2) just before
    /// it is sent, bound to that request and usable once.
    pub fn with_runner_signer(mut self, signer: RunnerSigner) -> Self {
        self.signer = Some(signer);
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
        self.exchange(&self.encode(request))
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
        self.exchange(format!(r#"{{"action_type":"{HEALTH_ACTION}"}}"#).as_bytes())
    }

    /// Opens a stream-mode connection.
    pub fn stream(&self) -> Result<Stream, ClientError> {
        let connection = self.connect()?;
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

    fn connect(&self) -> Result<UnixStream, ClientError> {
        let stream = UnixStream::connect(&self.socket).map_err(|source| ClientError::Connect {
            path: self.socket.clone(),
            source,
        })?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|source| self.io(source))?;
        Ok(stream)
    }

    /// One request, one answer line: the answer is complete at its newline, whatever the server does next.
    fn exchange<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, ClientError> {
        let mut stream = self.connect()?;
        stream
            .write_all(body)
            .and_then(|()| stream.write_all(b"\n"))
            .map_err(|source| self.io(source))?;
        let answer = read_line(&mut BufReader::new(stream), self)?;
        self.parse(&answer)
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
