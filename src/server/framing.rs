//! Finding requests in a byte stream, with a hard cap on how much of one request is ever buffered.
//!
//! The first request on a connection is one JSON value: a newline and EOF are both optional, as the reference
//! decoder reads it, so the end of the value is found by scanning its brackets. After the stream-mode handshake,
//! requests are newline-delimited. A request longer than the cap is reported as too large and skipped without
//! being stored.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::time::{Instant, timeout_at};

const CHUNK: usize = 8 * 1024;
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
}

pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
    eof: bool,
    /// Discarding the rest of an oversized line up to its newline.
    skipping: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            max,
            eof: false,
            skipping: false,
        }
    }

    /// Reads the first JSON value, which must be complete within `limit` of the call.
    pub async fn first_value(&mut self, limit: Duration) -> io::Result<Frame> {
        let deadline = Instant::now() + limit;
        let mut scanner = ValueScanner::default();
        loop {
            if let Some(end) = scanner.scan(&self.buf) {
                if end > self.max {
                    self.buf = Vec::new();
                    return Ok(Frame::TooLarge);
                }
                let rest = self.buf.split_off(end);
                let value = std::mem::replace(&mut self.buf, rest);
                return Ok(Frame::Request(value));
            }
            if self.buf.len() > self.max {
                self.buf = Vec::new();
                return Ok(Frame::TooLarge);
            }
            if self.eof {
                return Ok(self.finish());
            }
            if !self.fill(deadline).await? {
                return Ok(Frame::TimedOut);
            }
        }
    }

    /// Reads the next newline-delimited request. Waits up to `idle` for it to begin, then up to `limit` for its end.
    pub async fn next_line(&mut self, idle: Duration, limit: Duration) -> io::Result<Frame> {
        let mut deadline = None;
        let mut searched = 0;
        loop {
            if self.skipping {
                match self.buf.iter().position(|&byte| byte == b'\n') {
                    Some(newline) => {
                        self.buf.drain(..=newline);
                        self.skipping = false;
                    }
                    None => self.buf.clear(),
                }
            }
            if !self.skipping {
                if let Some(offset) = self.buf[searched..].iter().position(|&byte| byte == b'\n') {
                    let newline = searched + offset;
                    if newline > self.max {
                        self.buf.drain(..=newline);
                        return Ok(Frame::TooLarge);
                    }
                    let rest = self.buf.split_off(newline + 1);
                    let mut line = std::mem::replace(&mut self.buf, rest);
                    line.truncate(newline);
                    if line.iter().all(u8::is_ascii_whitespace) {
                        searched = 0;
                        continue;
                    }
                    return Ok(Frame::Request(line));
                }
                searched = self.buf.len();
                if self.buf.len() > self.max {
                    self.buf.clear();
                    self.skipping = true;
                    return Ok(Frame::TooLarge);
                }
            }
            if self.eof {
                return Ok(self.finish());
            }
            let pending = self.skipping || self.buf.iter().any(|byte| !byte.is_ascii_whitespace());
            let until = match (pending, deadline) {
                (true, Some(deadline)) => deadline,
                (true, None) => *deadline.insert(Instant::now() + limit),
                (false, _) => Instant::now() + idle,
            };
            if !self.fill(until).await? {
                return Ok(if pending { Frame::TimedOut } else { Frame::Idle });
            }
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

    /// What is left at end of input: a last request without its terminator, or nothing.
    fn finish(&mut self) -> Frame {
        let rest = std::mem::take(&mut self.buf);
        if self.skipping || rest.iter().all(u8::is_ascii_whitespace) {
            Frame::Closed
        } else {
            Frame::Request(rest)
        }
    }

    /// Reads more input; false when the deadline passed first.
    async fn fill(&mut self, deadline: Instant) -> io::Result<bool> {
        let read = if self.buf.is_empty() {
            // An idle connection holds no buffer: the first bytes land on the stack, and most requests fit.
            let mut first = [0u8; FIRST_READ];
            timeout_at(deadline, self.inner.read(&mut first)).await.map(|read| {
                read.inspect(|&length| {
                    self.buf.extend_from_slice(&first[..length]);
                })
            })
        } else {
            self.buf.reserve(CHUNK);
            timeout_at(deadline, self.inner.read_buf(&mut self.buf)).await
        };
        match read {
            Ok(Ok(0)) => {
                self.eof = true;
                Ok(true)
            }
            Ok(Ok(_)) => Ok(true),
            Ok(Err(error)) => Err(error),
            Err(_) => Ok(false),
        }
    }
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
}
