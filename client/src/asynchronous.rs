//! The async client (feature `async`), on tokio: the same requests, answers, deadline, retries and server check as
//! [`Client`], without blocking a runtime thread. It needs a tokio runtime with the time driver enabled.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, Interest};
use tokio::net::UnixStream;

use crate::blocking::Client;
use crate::error::ClientError;
use crate::retry::Retry;
#[cfg(feature = "runner-auth")]
use crate::runner_auth::RunnerSigner;
use crate::server::{Server, ServerCheck};
use crate::socket::{self, MAX_ANSWER_BYTES};
use crate::wire::{DecisionResponse, EvaluateRequest, HEALTH_ACTION, Health};

/// An async client of one daemon socket, configured as [`Client`] is (or made from one).
///
/// ```no_run
/// # async fn run() -> Result<(), cavra_runtime_client::ClientError> {
/// use cavra_runtime_client::{AsyncClient, EvaluateRequest};
///
/// let client = AsyncClient::new("/run/cavra/cavra-runtime.sock");
/// let request = EvaluateRequest { action_type: "read_file".into(), target: ".env".into(), ..Default::default() };
/// let decision = client.evaluate(&request).await?;
/// println!("{}: {}", decision.decision, decision.reason);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AsyncClient {
    client: Client,
}

impl From<Client> for AsyncClient {
    fn from(client: Client) -> Self {
        AsyncClient { client }
    }
}

impl AsyncClient {
    /// As [`Client::new`].
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client::new(socket).into()
    }

    /// As [`Client::with_timeout`]: one deadline for connect, send, answer and retries.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.client.with_timeout(timeout).into()
    }

    /// As [`Client::with_retry`].
    pub fn with_retry(self, retry: Retry) -> Self {
        self.client.with_retry(retry).into()
    }

    /// As [`Client::expect_server`].
    pub fn expect_server(self, server: ServerCheck) -> Self {
        self.client.expect_server(server).into()
    }

    /// As [`Client::with_runner_signer`].
    #[cfg(feature = "runner-auth")]
    pub fn with_runner_signer(self, signer: RunnerSigner) -> Self {
        self.client.with_runner_signer(signer).into()
    }

    pub fn socket(&self) -> &Path {
        self.client.socket()
    }

    /// As [`Client::evaluate`].
    pub async fn evaluate(&self, request: &EvaluateRequest) -> Result<DecisionResponse, ClientError> {
        self.with_retries(async |deadline| {
            let (answer, _) = self.exchange(&self.client.line(request), deadline).await?;
            self.client.decision(&answer)
        })
        .await
    }

    /// As [`Client::evaluate_raw`].
    pub async fn evaluate_raw(&self, request: &EvaluateRequest) -> Result<DecisionResponse, ClientError> {
        match self.evaluate(request).await {
            Err(ClientError::Refused { refusal, .. }) => Ok(refusal.into_response()),
            other => other,
        }
    }

    /// As [`Client::health`].
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.health_and_server().await.map(|(health, _)| health)
    }

    /// As [`Client::health_and_server`].
    pub async fn health_and_server(&self) -> Result<(Health, Server), ClientError> {
        let line = format!("{{\"action_type\":\"{HEALTH_ACTION}\"}}\n");
        self.with_retries(async |deadline| {
            let (answer, server) = self.exchange(line.as_bytes(), deadline).await?;
            Ok((self.client.health_answer(&answer)?, server))
        })
        .await
    }

    async fn with_retries<T>(
        &self,
        mut attempt: impl AsyncFnMut(Instant) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + self.client.timeout();
        let retry = self.client.retry();
        let mut made = 1;
        loop {
            match attempt(deadline).await {
                Err(error) if error.is_retryable() && made < retry.attempts() => {
                    let delay = retry.delay(made);
                    if Instant::now() + delay >= deadline {
                        return Err(error);
                    }
                    tokio::time::sleep(delay).await;
                    made += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// As the blocking client's exchange: one line out, one line back, by `deadline`, an answer that arrived before
    /// a failed write kept.
    async fn exchange(&self, line: &[u8], deadline: Instant) -> Result<(Vec<u8>, Server), ClientError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let stream =
            tokio::time::timeout_at(deadline, self.connect())
                .await
                .map_err(|_| ClientError::ConnectTimedOut {
                    path: self.socket().to_owned(),
                    timeout: self.client.timeout(),
                })??;
        let server = Server::of(&stream).map_err(|source| self.client.io(source))?;
        self.client.check_server(server)?;
        let answer = tokio::time::timeout_at(deadline, self.send_and_read(stream, line))
            .await
            .map_err(|_| self.client.io(io::Error::from(io::ErrorKind::TimedOut)))??;
        Ok((answer, server))
    }

    /// Connects; a full queue (`EAGAIN`) is tried again until the caller's deadline.
    async fn connect(&self) -> Result<UnixStream, ClientError> {
        loop {
            match UnixStream::connect(self.socket()).await {
                Ok(stream) => {
                    socket::no_sigpipe(&stream).map_err(|source| self.client.io(source))?;
                    return Ok(stream);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(source) => {
                    return Err(ClientError::Connect {
                        path: self.socket().to_owned(),
                        source,
                    });
                }
            }
        }
    }

    async fn send_and_read(&self, mut stream: UnixStream, line: &[u8]) -> Result<Vec<u8>, ClientError> {
        match write_all(&stream, line).await {
            Ok(()) => self.read_line(&mut stream).await,
            Err(error) if socket::closed_by_server(&error) => {
                self.read_line(&mut stream).await.map_err(|_| self.client.io(error))
            }
            Err(error) => Err(self.client.io(error)),
        }
    }

    /// One answer line (one connection carries one answer, so nothing after it matters).
    async fn read_line(&self, stream: &mut UnixStream) -> Result<Vec<u8>, ClientError> {
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) if answer.is_empty() => {
                    return Err(ClientError::Closed {
                        path: self.socket().to_owned(),
                    });
                }
                Ok(0) => return Ok(answer),
                Ok(read) => {
                    let chunk = &chunk[..read];
                    if let Some(at) = chunk.iter().position(|byte| *byte == b'\n') {
                        answer.extend_from_slice(&chunk[..=at]);
                        return Ok(answer);
                    }
                    answer.extend_from_slice(chunk);
                    if answer.len() >= MAX_ANSWER_BYTES {
                        answer.truncate(MAX_ANSWER_BYTES);
                        return Ok(answer);
                    }
                }
                // A server that closes with part of the request unread resets the connection, after what it wrote.
                Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {
                    if answer.is_empty() {
                        return Err(ClientError::Closed {
                            path: self.socket().to_owned(),
                        });
                    }
                    return Ok(answer);
                }
                Err(error) => return Err(self.client.io(error)),
            }
        }
    }
}

/// Writes all of `bytes` in as few `send` calls as the socket allows, never raising SIGPIPE.
async fn write_all(stream: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_io(Interest::WRITABLE, || socket::send(stream, bytes)) {
            Ok(sent) => bytes = &bytes[sent..],
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
