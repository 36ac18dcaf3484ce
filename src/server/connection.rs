//! One client connection: compatible mode (one request, one answer, close) or stream mode (after the
//! `cavra.ndjson.v1` handshake, newline-delimited requests answered in order, pipelined). What a request line is
//! answered with is the handler's business ([`super::handler`]). What a connection holds in memory is counted
//! against the byte budget ([`super::budget`]): its input buffer, and its requests and answers in transit.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::UnixStream;
use tokio::net::unix::{ReadHalf, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::timeout;

use super::budget::Held;
use super::framing::{CHUNK, Frame, FrameReader, single_request_line};
use super::handler::{self, Reply, answer};
use super::{Limits, Service};
use crate::auth::Peer;
use crate::contract::STREAM_PROTOCOL;

/// Answers a stream-mode connection may have in flight before the server stops reading from it.
const PIPELINE_DEPTH: usize = 256;

/// How long, and how much unread input, the server waits out before closing (see `FrameReader::drain`).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// Serves an admitted peer's connection (the accept loop has checked the peer and its limits).
pub async fn serve(stream: StdUnixStream, peer: Peer, service: Arc<Service>, stop: watch::Receiver<bool>) {
    let input = match at_once(&stream, &service, &peer).await {
        AtOnce::Done => return,
        AtOnce::Continue(read) => read,
        AtOnce::Unsent(rest) => {
            // The reader starts empty, so the close lingers for the client's end of stream (bounded by LINGER).
            if let Some(mut stream) = register(stream) {
                let (read_half, mut write_half) = stream.split();
                let mut reader = FrameReader::new(read_half, 0);
                let mut unsent = Held::new(service.budget());
                unsent.set(rest.len());
                finish_compatible(&mut reader, &mut write_half, &rest, service.limits()).await;
            }
            return;
        }
    };
    if let Some(stream) = register(stream) {
        serve_registered(stream, input, &service, &peer, stop).await;
    }
}

/// How far [`at_once`] got.
enum AtOnce {
    /// Answered (or closed by the client): nothing more to do.
    Done,
    /// Go on with the event loop, from this input.
    Continue(Vec<u8>),
    /// Answered, but the socket took only part of the answer: this is the rest to send.
    Unsent(Vec<u8>),
}

/// The common compatible-mode case without the event loop: a client that writes its request in one go has usually
/// sent all of it by the time the connection is accepted. Then one read, one write and a close answer it, and the
/// socket is never registered for readiness. Anything else (no input yet, part of a request, more than one, the
/// stream-mode handshake) goes on through the event loop with the input read so far.
async fn at_once(stream: &StdUnixStream, service: &Arc<Service>, peer: &Peer) -> AtOnce {
    let reply = match first_read(stream, service, peer) {
        FirstRead::Answer(reply) => reply,
        FirstRead::Partial(input) => return AtOnce::Continue(input),
        FirstRead::Closed => return AtOnce::Done,
    };
    let mut line = reply.line().await;
    match (&*stream).write(&line) {
        Ok(written) if written == line.len() => {
            let _ = stream.shutdown(Shutdown::Write);
            AtOnce::Done
        }
        Ok(written) => {
            line.drain(..written);
            AtOnce::Unsent(line)
        }
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => AtOnce::Unsent(line),
        Err(error) => {
            tracing::debug!(%error, peer_uid = peer.uid, "writing the answer failed");
            AtOnce::Done
        }
    }
}

/// What the first read on a connection found.
enum FirstRead {
    /// A whole request line and nothing after it: its answer.
    Answer(Reply),
    /// Anything else: what was read, possibly nothing.
    Partial(Vec<u8>),
    /// The client closed, or the read failed.
    Closed,
}

/// Reads what the client has sent so far, without waiting. Not async, so its buffer is on the stack only for the
/// call and never in the state of an idle connection's task.
fn first_read(stream: &StdUnixStream, service: &Arc<Service>, peer: &Peer) -> FirstRead {
    let mut first = [0u8; CHUNK];
    let read = match (&*stream).read(&mut first) {
        Ok(0) => return FirstRead::Closed,
        Ok(read) => read,
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
            return FirstRead::Partial(Vec::new());
        }
        Err(error) => {
            tracing::debug!(%error, peer_uid = peer.uid, "read failed before the first request");
            return FirstRead::Closed;
        }
    };
    let input = &first[..read];
    // A short read took everything the client had sent, so closing after the answer cannot reset the connection
    // under it (see `FrameReader::drain`); a full one may have more behind it.
    match (read < first.len())
        .then(|| single_request_line(input, service.limits().max_request_bytes))
        .flatten()
        .filter(|request| !is_stream_handshake(request))
    {
        Some(request) => FirstRead::Answer(answer(service, peer, request)),
        None => FirstRead::Partial(input.to_vec()),
    }
}

/// Hands the connection to the event loop.
fn register(stream: StdUnixStream) -> Option<UnixStream> {
    UnixStream::from_std(stream)
        .inspect_err(|error| tracing::warn!(%error, "cannot register a connection; closing it"))
        .ok()
}

async fn serve_registered(
    mut stream: UnixStream,
    input: Vec<u8>,
    service: &Arc<Service>,
    peer: &Peer,
    mut stop: watch::Receiver<bool>,
) {
    let limits = service.limits().clone();
    let (read_half, mut write_half) = stream.split();
    let mut reader =
        FrameReader::with_input(read_half, limits.max_request_bytes, input).with_budget(Held::new(service.budget()));
    let first = match reader.first_value(limits.request_timeout).await {
        Ok(frame) => frame,
        Err(error) => {
            tracing::debug!(%error, peer_uid = peer.uid, "read failed before the first request");
            return;
        }
    };
    // The request from when it leaves the input buffer, then its answer until it is written.
    let mut in_transit = Held::new(service.budget());
    let reply = match first {
        Frame::Request(bytes) if is_stream_handshake(&bytes) => {
            return stream_mode(reader, write_half, service, peer, &mut stop).await;
        }
        Frame::Request(bytes) => {
            in_transit.set(bytes.len());
            answer(service, peer, &bytes)
        }
        Frame::TooLarge => Reply::Ready(handler::too_large(service)),
        Frame::TimedOut => Reply::Ready(handler::timed_out(service)),
        Frame::NoRoom => Reply::Ready(no_room(service, peer)),
        Frame::Closed | Frame::Idle => return,
    };
    let line = reply.line().await;
    in_transit.set(line.len());
    finish_compatible(&mut reader, &mut write_half, &line, &limits).await;
}

/// The answer to a request the byte budget had no room for; logged at most once an interval.
fn no_room(service: &Service, peer: &Peer) -> Vec<u8> {
    if service.warnings.budget.allow() {
        tracing::warn!(
            peer_uid = peer.uid,
            peer_pid = peer.pid,
            limit = service.limits().max_buffered_bytes,
            in_use = service.budget().used(),
            "refused a request: --max-buffered-bytes in use"
        );
    }
    handler::budget_overloaded(service)
}

/// Sends the rest of a compatible-mode answer and closes, lingering first if the client sent more than its request.
async fn finish_compatible(
    reader: &mut FrameReader<ReadHalf<'_>>,
    writer: &mut WriteHalf<'_>,
    answer: &[u8],
    limits: &Limits,
) {
    let written = timeout(limits.request_timeout, async {
        writer.write_all(answer).await?;
        writer.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) && !nothing_left_to_read(reader) {
        reader.drain(LINGER_BYTES, LINGER).await;
    }
}

/// True when the client sent its request as one line and nothing after it: closing at once then cannot reset the
/// connection under the client (see `FrameReader::drain`), so there is no need to wait for it to close first.
fn nothing_left_to_read(reader: &FrameReader<ReadHalf<'_>>) -> bool {
    if !reader.rest_is_line_end() {
        return false;
    }
    let mut probe = [0u8; 1];
    match reader.get_ref().as_ref().try_read(&mut probe) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// Connections refused before they are served that may linger at once (see [`refuse`]).
pub const REFUSALS_LINGERING: usize = 64;

/// Answers a connection refused before it is served (a peer the allow-lists do not admit, or one past a connection
/// limit), holding no connection slot. A fresh socket's buffer always takes one line, so the answer never waits on
/// the client. With a `linger` permit, the close waits briefly for the client's end of input, so a client that sent
/// its request reads the answer rather than a reset (bounded by LINGER); without one, as in a flood, it is closed
/// at once, after taking what input is already there.
pub fn refuse(stream: StdUnixStream, answer: &[u8], linger: Option<OwnedSemaphorePermit>) {
    if !(&stream).write(answer).is_ok_and(|written| written == answer.len()) {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let Some(permit) = linger else {
        // What is there already: at most a few reads, never a wait.
        let mut scratch = [0u8; CHUNK];
        for _ in 0..8 {
            if !(&stream).read(&mut scratch).is_ok_and(|read| read > 0) {
                break;
            }
        }
        return;
    };
    if let Some(stream) = register(stream) {
        tokio::spawn(async move {
            FrameReader::new(stream, 0).drain(LINGER_BYTES, LINGER).await;
            drop(permit);
        });
    }
}

/// Answers newline-delimited requests in order. Everything already read is answered before anything is written,
/// so a pipelined burst costs one write; answers still waiting for their evidence record hold back the ones after
/// them, while reading goes on up to `PIPELINE_DEPTH` answers ahead. The requests waiting for their answers and the
/// answers not yet written are counted against the byte budget.
async fn stream_mode(
    mut reader: FrameReader<ReadHalf<'_>>,
    mut writer: WriteHalf<'_>,
    service: &Arc<Service>,
    peer: &Peer,
    stop: &mut watch::Receiver<bool>,
) {
    let limits = service.limits().clone();
    let greeting = serde_json::json!({
        "protocol": STREAM_PROTOCOL,
        "server": format!("cavra-runtime {}", env!("CARGO_PKG_VERSION")),
    });
    let mut out = greeting.to_string().into_bytes();
    out.push(b'\n');
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut in_transit = Held::new(service.budget());
    let mut reading = true;
    loop {
        while reading && waiting.len() < PIPELINE_DEPTH {
            let Some(frame) = reader.buffered_line() else {
                break;
            };
            reading = take(frame, service, peer, &mut waiting, &mut out);
        }
        collect_ready(&mut waiting, &mut out).await;
        in_transit.set(held_for(&waiting) + out.len());
        if !out.is_empty() {
            // A client that stops reading must not hold the connection open forever.
            if !matches!(
                timeout(limits.request_timeout, writer.write_all(&out)).await,
                Ok(Ok(()))
            ) {
                return;
            }
            out.clear();
            in_transit.set(held_for(&waiting));
        }
        if *stop.borrow() {
            reading = false;
        }
        if !reading && waiting.is_empty() {
            break;
        }
        let can_read = reading && waiting.len() < PIPELINE_DEPTH;
        tokio::select! {
            biased;
            line = next_waiting(&mut waiting), if !waiting.is_empty() => out.extend(line),
            frame = reader.next_line(limits.idle_timeout, limits.request_timeout), if can_read => {
                reading = match frame {
                    Ok(frame) => take(frame, service, peer, &mut waiting, &mut out),
                    Err(_) => false,
                };
            }
            _ = stop.changed(), if reading => reading = false,
        }
    }
    let _ = timeout(limits.request_timeout, writer.shutdown()).await;
}

/// An answer not yet sent, and the bytes it stands for until it is (its request's, or its own).
struct Waiting {
    reply: Reply,
    bytes: usize,
}

fn held_for(waiting: &VecDeque<Waiting>) -> usize {
    waiting.iter().map(|entry| entry.bytes).sum()
}

/// Queues the answer to `frame`; false once nothing more is to be read from the connection.
fn take(frame: Frame, service: &Arc<Service>, peer: &Peer, waiting: &mut VecDeque<Waiting>, out: &mut Vec<u8>) -> bool {
    let (reply, bytes, more) = match frame {
        Frame::Request(bytes) => (answer(service, peer, &bytes), bytes.len(), true),
        Frame::TooLarge => (Reply::Ready(handler::too_large(service)), 0, true),
        Frame::TimedOut => (Reply::Ready(handler::timed_out(service)), 0, false),
        // The request's bytes were not read, so the stream cannot go on.
        Frame::NoRoom => (Reply::Ready(no_room(service, peer)), 0, false),
        Frame::Closed | Frame::Idle => return false,
    };
    match reply {
        Reply::Ready(line) if waiting.is_empty() => out.extend(line),
        Reply::Ready(line) => waiting.push_back(Waiting {
            bytes: line.len(),
            reply: Reply::Ready(line),
        }),
        reply => waiting.push_back(Waiting { reply, bytes }),
    }
    more
}

/// Moves the answers at the head of the queue that are ready into `out`, in order, without waiting.
async fn collect_ready(waiting: &mut VecDeque<Waiting>, out: &mut Vec<u8>) {
    poll_fn(|cx| {
        while let Some(front) = waiting.front_mut() {
            let line = match &mut front.reply {
                Reply::Ready(line) => std::mem::take(line),
                Reply::Waiting(future) => match future.as_mut().poll(cx) {
                    Poll::Ready(line) => line,
                    Poll::Pending => break,
                },
            };
            out.extend(line);
            waiting.pop_front();
        }
        Poll::Ready(())
    })
    .await;
}

/// Waits for the answer at the head of the queue and takes it.
async fn next_waiting(waiting: &mut VecDeque<Waiting>) -> Vec<u8> {
    let line = match waiting.front_mut().map(|front| &mut front.reply) {
        Some(Reply::Ready(line)) => std::mem::take(line),
        Some(Reply::Waiting(future)) => future.await,
        None => return Vec::new(),
    };
    waiting.pop_front();
    line
}

fn is_stream_handshake(bytes: &[u8]) -> bool {
    // Cheap test first: ordinary requests never mention "protocol".
    if !bytes.windows(10).any(|window| window == b"\"protocol\"") {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(bytes)
        .is_ok_and(|value| value.get("protocol").and_then(|p| p.as_str()) == Some(STREAM_PROTOCOL))
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use nix::sys::socket::{setsockopt, sockopt::SndBuf};

    use super::*;
    use crate::contract::DecisionResponse;
    use crate::policy::{PolicyConfig, PolicySet};

    fn service() -> Arc<Service> {
        service_with(Limits::default())
    }

    /// This process, as the peer of a socket pair.
    fn peer() -> Peer {
        Peer {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            pid: Some(std::process::id() as i32),
            groups: Vec::new(),
        }
    }

    fn service_with(limits: Limits) -> Arc<Service> {
        let policies = PolicySet::load(&PolicyConfig::default()).unwrap();
        Arc::new(Service::new(policies, limits))
    }

    /// Serves the server end of a socket pair whose send buffer is `send_buffer` bytes, after the client wrote
    /// `request`; returns everything the client reads.
    async fn exchange(request: &[u8], send_buffer: Option<usize>) -> String {
        let (server, mut client) = StdUnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        if let Some(size) = send_buffer {
            setsockopt(&server, SndBuf, &size).unwrap();
        }
        client.write_all(request).unwrap();
        let (_stop, stopped) = watch::channel(false);
        let served = tokio::spawn(serve(server, peer(), service(), stopped));
        let read = tokio::task::spawn_blocking(move || {
            let mut answer = String::new();
            client.read_to_string(&mut answer).map(|_| answer)
        });
        served.await.unwrap();
        read.await.unwrap().unwrap()
    }

    fn request_with_target(length: usize) -> Vec<u8> {
        format!(r#"{{"action_type":"read_file","target":"{}"}}"#, "a".repeat(length)).into_bytes()
    }

    /// A request of about `length` bytes whose fields are all within their maximum: the bulk is a field the daemon
    /// does not read.
    fn padded_request(length: usize) -> Vec<u8> {
        format!(
            r#"{{"action_type":"read_file","target":"a","padding":"{}"}}"#,
            "p".repeat(length)
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn a_request_sent_in_one_go_is_answered_and_closed() {
        let mut request = request_with_target(10);
        request.push(b'\n');
        let answer = exchange(&request, None).await;
        let response: DecisionResponse = serde_json::from_str(answer.trim_end()).unwrap();
        assert_eq!(response.target, "a".repeat(10));
        assert!(answer.ends_with("}\n") && answer.lines().count() == 1, "{answer:?}");
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_send_buffer_is_sent_whole() {
        // The answer echoes the target, so it is far over the smallest send buffer and the first write is short.
        let mut request = request_with_target(6000);
        request.push(b'\n');
        let answer = exchange(&request, Some(1)).await;
        let response: DecisionResponse = serde_json::from_str(answer.trim_end()).unwrap();
        assert_eq!(response.target, "a".repeat(6000));
    }

    #[tokio::test]
    async fn a_whole_request_line_over_the_size_cap_is_refused_as_too_large() {
        let (server, mut client) = StdUnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut request = request_with_target(200);
        request.push(b'\n');
        client.write_all(&request).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let limits = Limits {
            max_request_bytes: 100,
            ..Limits::default()
        };
        let (_stop, stopped) = watch::channel(false);
        serve(server, peer(), service_with(limits), stopped).await;
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        let response: DecisionResponse = serde_json::from_str(answer.trim_end()).unwrap();
        assert_eq!(response.rule_id, "daemon.request.too_large", "{answer}");
    }

    #[tokio::test]
    async fn with_the_byte_budget_in_use_small_requests_are_answered_and_large_ones_refused_unread() {
        let limits = Limits {
            max_request_bytes: 200 * 1024,
            max_buffered_bytes: 256 * 1024,
            request_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let service = service_with(limits);
        let mut hog = Held::new(service.budget());
        hog.set(super::super::budget::ALLOWANCE + 256 * 1024);
        let ask = |request: Vec<u8>| {
            let service = Arc::clone(&service);
            async move {
                let (server, mut client) = StdUnixStream::pair().unwrap();
                server.set_nonblocking(true).unwrap();
                let writer = std::thread::spawn(move || {
                    let _ = client.write_all(&request);
                    let _ = client.shutdown(Shutdown::Write);
                    let mut answer = String::new();
                    let _ = client.read_to_string(&mut answer);
                    answer
                });
                let (_stop, stopped) = watch::channel(false);
                serve(server, peer(), service, stopped).await;
                let answer = writer.join().unwrap();
                serde_json::from_str::<DecisionResponse>(answer.lines().next().unwrap()).unwrap()
            }
        };
        let mut small = request_with_target(100);
        small.push(b'\n');
        assert_eq!(
            ask(small).await.target,
            "a".repeat(100),
            "the allowance needs no budget"
        );
        let refused = ask(padded_request(100 * 1024)).await;
        assert_eq!(refused.rule_id, "daemon.overloaded");
        assert!(refused.reason.contains("--max-buffered-bytes"), "{}", refused.reason);
        assert_eq!(service.budget().used(), 256 * 1024, "the refused request holds nothing");
        drop(hog);
        let answered = ask(padded_request(100 * 1024)).await;
        assert_eq!(
            (answered.rule_id.as_str(), answered.target.as_str()),
            ("filesystem.read.allow", "a"),
            "with room again, it is read"
        );
        assert_eq!(service.budget().used(), 0, "and everything is given back");
    }

    #[tokio::test]
    async fn a_request_without_its_newline_is_answered_through_the_event_loop() {
        let (server, mut client) = StdUnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        client.write_all(&request_with_target(10)).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let (_stop, stopped) = watch::channel(false);
        serve(server, peer(), service(), stopped).await;
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        let response: DecisionResponse = serde_json::from_str(answer.trim_end()).unwrap();
        assert_eq!(response.target, "a".repeat(10));
    }
}
