//! Finding requests in a byte stream, with a hard cap on how much of one request is ever buffered.
//!
//! The first request on a connection is one JSON value: a newline and EOF are both optional, as the reference
//! decoder reads it, so the end of the value is found by scanning its brackets. After the stream-mode handshake,
//! requests are newline-delimited. A request longer than the cap is reported as too large and skipped without
//! being stored. With a byte budget ([`super::budget`]), the buffer grows past its allowance only when the budget
//! has room; a request that finds none before its deadline is reported and not read.

use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::time::{Instant, Sleep, timeout_at};

use super::budget::{ALLOWANCE, Held};

pub const CHUNK: usize = 8 * 1024;
const FIRST_READ: usize = 512;

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// One request's bytes (without its newline).
    Request(Vec<u8>),
    /// The request exceeded the size cap; its bytes were dropped.
    TooLarge,
    /// The peer closed the connection with nothing pending.
    Closed,
    /// A request had begun but did not complete in time.
    TimedOut,
    /// No request began before the idle timeout.
    Idle,
    /// The byte budget had no room for the rest of the request before its deadline; it was not read.
    NoRoom,
}

/// What one attempt to read more found.
enum Filled {
    Read,
    Deadline,
    NoRoom,
}

pub struct FrameReader<R> {
    inner: R,
    /// Input read and not yet consumed is `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    /// Where the search for the next newline resumes (an index into `buf`).
    searched: usize,
    max: usize,
    eof: bool,
    /// Discarding the rest of an oversized line up to its newline.
    skipping: bool,
    /// When the request that has begun must be complete; kept here so a caller may stop waiting and come back.
    request_deadline: Option<Instant>,
    /// One timer for the connection's life, moved as deadlines change (moving it later is cheap).
    timer: Pin<Box<Sleep>>,
    /// The buffer's share of the byte budget, if there is one.
    held: Option<Held>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            start: 0,
            searched: 0,
            max,
            eof: false,
            skipping: false,
            request_deadline: None,
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            held: None,
        }
    }

    /// Counts the buffer against the byte budget through `held`.
    pub fn with_budget(mut self, held: Held) -> Self {
        self.held = Some(held);
        self.account();
        self
    }

    /// Like [`FrameReader::new`], going on from `input` already read from the connection.
    pub fn with_input(inner: R, max: usize, input: Vec<u8>) -> Self {
        Self {
            buf: input,
            ..Self::new(inner, max)
        }
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Reads the first JSON value, which must be complete within `limit` of the call.
    pub async fn first_value(&mut self, limit: Duration) -> io::Result<Frame> {
        let deadline = Instant::now() + limit;
        let mut scanner = ValueScanner::default();
        loop {
            if let Some(end) = scanner.scan(&self.buf[self.start..]) {
                if end > self.max {
                    self.release();
                    return Ok(Frame::TooLarge);
                }
                let value = self.buf[self.start..self.start + end].to_vec();
                self.consume(end);
                return Ok(Frame::Request(value));
            }
            if self.pending().len() > self.max {
                self.release();
                return Ok(Frame::TooLarge);
            }
            if self.eof {
                return Ok(self.finish());
            }
            match self.fill(deadline).await? {
                Filled::Read => {}
                Filled::Deadline => return Ok(Frame::TimedOut),
                Filled::NoRoom => return Ok(Frame::NoRoom),
            }
        }
    }

    /// True when all that followed the first value so far is whitespace ending in a newline: the client sent one
    /// line, as the reference's clients do.
    pub fn rest_is_line_end(&self) -> bool {
        let rest = self.pending();
        rest.ends_with(b"\n") && rest.iter().all(u8::is_ascii_whitespace)
    }

    /// Reads the next newline-delimited request. Waits up to `idle` for it to begin, then up to `limit` for its end.
    /// Cancel-safe: a caller that stops waiting loses no input, and the deadline of a begun request stands.
    pub async fn next_line(&mut self, idle: Duration, limit: Duration) -> io::Result<Frame> {
        loop {
            if let Some(frame) = self.buffered_line() {
                return Ok(frame);
            }
            let pending = self.skipping || self.pending().iter().any(|byte| !byte.is_ascii_whitespace());
            let until = if pending {
                *self.request_deadline.get_or_insert_with(|| Instant::now() + limit)
            } else {
                Instant::now() + idle
            };
            match self.fill(until).await? {
                Filled::Read => {}
                Filled::Deadline if pending => return Ok(Frame::TimedOut),
                Filled::Deadline => return Ok(Frame::Idle),
                Filled::NoRoom => return Ok(Frame::NoRoom),
            }
        }
    }

    /// The next request already read, or the end of input; `None` when more input is needed.
    pub fn buffered_line(&mut self) -> Option<Frame> {
        loop {
            if self.skipping {
                match memchr(&self.buf[self.searched..]) {
                    Some(offset) => {
                        self.consume(self.searched + offset + 1 - self.start);
                        self.skipping = false;
                    }
                    None => self.release(),
                }
            }
            if !self.skipping {
                if let Some(offset) = memchr(&self.buf[self.searched..]) {
                    let newline = self.searched + offset;
                    let line = &self.buf[self.start..newline];
                    let frame = if line.len() > self.max {
                        Some(Frame::TooLarge)
                    } else if line.iter().all(u8::is_ascii_whitespace) {
                        None
                    } else {
                        Some(Frame::Request(line.to_vec()))
                    };
                    self.consume(newline + 1 - self.start);
                    match frame {
                        Some(frame) => return Some(frame),
                        None => continue,
                    }
                }
                self.searched = self.buf.len();
                if self.pending().len() > self.max {
                    self.release();
                    self.skipping = true;
                    self.request_deadline = None;
                    return Some(Frame::TooLarge);
                }
            }
            if self.eof {
                return Some(self.finish());
            }
            return None;
        }
    }

    /// Reads and drops input until the peer closes, within `budget` bytes and `limit` of time. Closing a Unix
    /// socket with unread input makes the peer's next read fail with ECONNRESET instead of seeing the end of our
    /// answer, so the server lingers briefly before it closes.
    pub async fn drain(&mut self, budget: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut left = budget;
        let mut scratch = vec![0u8; CHUNK];
        while !self.eof && left > 0 {
            match timeout_at(deadline, self.inner.read(&mut scratch)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(read)) => left = left.saturating_sub(read),
            }
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Marks `length` bytes from `start` as used; the buffer is reset once everything in it is.
    fn consume(&mut self, length: usize) {
        self.start += length;
        self.searched = self.searched.max(self.start);
        self.request_deadline = None;
        if self.start == self.buf.len() {
            // Keep a small buffer for the next request; give a large one back.
            if self.buf.capacity() > 2 * CHUNK {
                self.buf = Vec::new();
                self.account();
            } else {
                self.buf.clear();
            }
            self.start = 0;
            self.searched = 0;
        }
    }

    /// Drops everything buffered, and the memory.
    fn release(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
        self.searched = 0;
        self.account();
    }

    /// Brings the buffer's share of the budget in line with its size.
    fn account(&mut self) {
        if let Some(held) = &mut self.held {
            held.set(charge_for(self.buf.capacity(), self.max));
        }
    }

    /// What is left at end of input: a last request without its terminator, or nothing.
    fn finish(&mut self) -> Frame {
        let rest = self.pending().to_vec();
        self.release();
        if self.skipping || rest.iter().all(u8::is_ascii_whitespace) {
            Frame::Closed
        } else {
            Frame::Request(rest)
        }
    }

    /// Reads more input, unless `deadline` passes first or the budget has no room for a larger buffer by then.
    async fn fill(&mut self, deadline: Instant) -> io::Result<Filled> {
        if self.start > 0 {
            // Move what is left to the front before reading more, so the buffer never grows past what one
            // request needs.
            self.buf.drain(..self.start);
            self.searched -= self.start;
            self.start = 0;
        }
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        let read = if self.buf.capacity() == 0 {
            // An idle connection holds no buffer: the first bytes land on the stack, and most requests fit.
            let mut first = [0u8; FIRST_READ];
            let read = tokio::select! {
                biased;
                read = self.inner.read(&mut first) => Some(read),
                () = &mut self.timer => None,
            };
            if let Some(Ok(length)) = read {
                self.buf.extend_from_slice(&first[..length]);
                self.account();
            }
            read
        } else {
            if self.buf.capacity() - self.buf.len() < CHUNK {
                // Doubling, but never past what the largest request needs.
                let wanted = (self.buf.capacity() * 2)
                    .min(self.max.saturating_add(CHUNK))
                    .max(self.buf.len() + CHUNK);
                if let Some(held) = &mut self.held
                    && !held.reserve(charge_for(wanted, self.max), deadline).await
                {
                    return Ok(Filled::NoRoom);
                }
                self.buf.reserve_exact(wanted - self.buf.len());
                self.account();
            }
            tokio::select! {
                biased;
                read = self.inner.read_buf(&mut self.buf) => Some(read),
                () = &mut self.timer => None,
            }
        };
        match read {
            Some(Ok(0)) => {
                self.eof = true;
                Ok(Filled::Read)
            }
            Some(Ok(_)) => Ok(Filled::Read),
            Some(Err(error)) => Err(error),
            None => Ok(Filled::Deadline),
        }
    }
}

/// What a buffer of `capacity` counts against the byte budget: itself within the allowance; past it, room for the
/// largest request (`max`) at once. Were a request to take room as it grows, requests that had each taken some
/// could together hold the whole budget, none able to finish; this way the budget always lets some finish.
fn charge_for(capacity: usize, max: usize) -> usize {
    if capacity <= ALLOWANCE {
        capacity
    } else {
        capacity.max(ALLOWANCE.saturating_add(max))
    }
}

/// The request in `input` when `input` is exactly one first value (see [`FrameReader::first_value`]) of at most
/// `max` bytes, then its newline: what a client that writes its request in one go has sent. None when more is
/// needed or something follows.
pub fn single_request_line(input: &[u8], max: usize) -> Option<&[u8]> {
    let end = ValueScanner::default().scan(input)?;
    let rest = &input[end..];
    (end <= max && rest.ends_with(b"\n") && rest.iter().all(u8::is_ascii_whitespace)).then_some(&input[..end])
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&byte| byte == b'\n')
}

/// Tracks brackets and strings to find where a JSON object or array ends; anything that does not start with `{`
/// or `[` is not a request, and is taken up to its newline so the parser can say what is wrong with it.
#[derive(Debug, Default)]
struct ValueScanner {
    position: usize,
    started: bool,
    container: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl ValueScanner {
    /// The end (exclusive) of the first value in `buf`, if it is complete. Resumes where the last call stopped.
    fn scan(&mut self, buf: &[u8]) -> Option<usize> {
        while self.position < buf.len() {
            let byte = buf[self.position];
            self.position += 1;
            if !self.started {
                if byte.is_ascii_whitespace() {
                    continue;
                }
                self.started = true;
                self.container = matches!(byte, b'{' | b'[');
                self.depth = usize::from(self.container);
                continue;
            }
            if !self.container {
                if byte == b'\n' {
                    return Some(self.position - 1);
                }
                continue;
            }
            if self.in_string {
                match (self.escaped, byte) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Some(self.position);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    const SECOND: Duration = Duration::from_secs(1);

    fn scan_all(input: &[u8]) -> Option<usize> {
        ValueScanner::default().scan(input)
    }

    #[test]
    fn scanner_finds_the_end_of_an_object_without_newline() {
        assert_eq!(scan_all(br#"  {"a":"}{\"","b":[1,{}]}tail"#), Some(25));
        assert_eq!(scan_all(br#"{"a":1"#), None);
        assert_eq!(scan_all(b"[[]]"), Some(4));
        assert_eq!(scan_all(b"42\n{}"), Some(2));
        assert_eq!(scan_all(b"42"), None);
    }

    #[test]
    fn a_single_request_line_is_one_value_then_its_newline() {
        let request = br#"{"action_type":"read_file","target":"a"}"#;
        let with = |tail: &[u8]| [&request[..], tail].concat();
        assert_eq!(single_request_line(&with(b"\n"), 1024), Some(&request[..]));
        assert_eq!(single_request_line(&with(b" \r\n"), 1024), Some(&request[..]));
        assert_eq!(single_request_line(b"not json\n", 1024), Some(&b"not json"[..]));
        // More input is needed, something follows, or the request is over the cap.
        assert_eq!(single_request_line(request, 1024), None);
        assert_eq!(single_request_line(&request[..20], 1024), None);
        assert_eq!(single_request_line(&with(b"\n{}"), 1024), None);
        assert_eq!(single_request_line(&with(b"\n{}\n"), 1024), None);
        assert_eq!(single_request_line(&with(b"\n"), request.len() - 1), None);
        assert_eq!(single_request_line(&with(b"\n"), request.len()), Some(&request[..]));
    }

    #[test]
    fn scanner_resumes_across_reads() {
        let mut scanner = ValueScanner::default();
        assert_eq!(scanner.scan(br#"{"a": "x\"#), None);
        assert_eq!(scanner.scan(br#"{"a": "x\"}"}"#), Some(13));
    }

    async fn reader_over(input: &'static [u8], max: usize) -> FrameReader<tokio::io::DuplexStream> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(input).await.unwrap();
        drop(client);
        FrameReader::new(server, max)
    }

    #[tokio::test]
    async fn first_value_then_lines() {
        let mut reader = reader_over(b"{\"protocol\":\"x\"}\n\n{\"a\":1}\n {\"b\":2}", 64).await;
        assert_eq!(
            reader.first_value(SECOND).await.unwrap(),
            Frame::Request(b"{\"protocol\":\"x\"}".to_vec())
        );
        assert_eq!(
            reader.next_line(SECOND, SECOND).await.unwrap(),
            Frame::Request(b"{\"a\":1}".to_vec())
        );
        assert_eq!(
            reader.next_line(SECOND, SECOND).await.unwrap(),
            Frame::Request(b" {\"b\":2}".to_vec())
        );
        assert_eq!(reader.next_line(SECOND, SECOND).await.unwrap(), Frame::Closed);
    }

    #[tokio::test]
    async fn oversized_first_value_is_refused_without_keeping_it() {
        let mut reader = reader_over(b"{\"a\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", 16).await;
        assert_eq!(reader.first_value(SECOND).await.unwrap(), Frame::TooLarge);
        assert!(reader.buf.capacity() <= 16 + CHUNK);
    }

    #[tokio::test]
    async fn oversized_line_is_skipped_and_the_next_one_read() {
        let mut reader = reader_over(b"{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1}\n{\"b\":2}\n", 16).await;
        assert_eq!(reader.next_line(SECOND, SECOND).await.unwrap(), Frame::TooLarge);
        assert_eq!(
            reader.next_line(SECOND, SECOND).await.unwrap(),
            Frame::Request(b"{\"b\":2}".to_vec())
        );
    }

    #[tokio::test]
    async fn eof_ends_an_unterminated_value() {
        let mut reader = reader_over(b"{\"a\":", 64).await;
        assert_eq!(
            reader.first_value(SECOND).await.unwrap(),
            Frame::Request(b"{\"a\":".to_vec())
        );
        let mut reader = reader_over(b"  \n", 64).await;
        assert_eq!(reader.first_value(SECOND).await.unwrap(), Frame::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_and_begun_requests_time_out_differently() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(server, 64);
        assert_eq!(
            reader.next_line(Duration::from_secs(5), SECOND).await.unwrap(),
            Frame::Idle
        );
        client.write_all(b"{\"a\"").await.unwrap();
        assert_eq!(
            reader.next_line(Duration::from_secs(5), SECOND).await.unwrap(),
            Frame::TimedOut
        );
        assert_eq!(reader.first_value(SECOND).await.unwrap(), Frame::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_begun_request_keeps_its_deadline_when_the_caller_stops_waiting() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(server, 64);
        client.write_all(b"{\"a\"").await.unwrap();
        let idle = Duration::from_secs(5);
        let gave_up = tokio::time::timeout(Duration::from_millis(600), reader.next_line(idle, SECOND)).await;
        assert!(gave_up.is_err());
        let resumed = Instant::now();
        assert_eq!(reader.next_line(idle, SECOND).await.unwrap(), Frame::TimedOut);
        assert_eq!(resumed.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test]
    async fn buffered_lines_are_taken_without_reading() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut reader = FrameReader::new(server, 64);
        client.write_all(b"{\"a\":1}\n{\"b\":2}\n{\"c\"").await.unwrap();
        assert_eq!(reader.buffered_line(), None, "nothing read yet");
        assert_eq!(
            reader.next_line(SECOND, SECOND).await.unwrap(),
            Frame::Request(b"{\"a\":1}".to_vec())
        );
        assert_eq!(reader.buffered_line(), Some(Frame::Request(b"{\"b\":2}".to_vec())));
        assert_eq!(reader.buffered_line(), None, "the third line is not complete");
        client.write_all(b":3}\n").await.unwrap();
        assert_eq!(
            reader.next_line(SECOND, SECOND).await.unwrap(),
            Frame::Request(b"{\"c\":3}".to_vec())
        );
    }
}
