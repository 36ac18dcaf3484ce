//! Standard error written in batches by a background thread.
//!
//! Under load the daemon logs one line per decision. Writing each line on the request path costs a system call
//! and, with several worker threads, contention on the standard-error lock; waking a writer thread per line costs
//! as much. Here a line is appended to a shared buffer, the first line into an empty buffer wakes the writer, and
//! the writer lets a burst gather for [`GATHER`] before it writes the whole buffer at once. Lines are never
//! dropped: past [`MAX_BUFFERED`] the logging thread writes the buffer itself. Dropping the [`Flusher`] writes out
//! what is left.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer waits for more lines after the first one of a batch.
const GATHER: Duration = Duration::from_millis(2);
/// Past this many buffered bytes the logging thread writes them itself.
const MAX_BUFFERED: usize = 1 << 20;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    closed: bool,
}

type Output = Box<dyn io::Write + Send>;

/// Whoever writes to the output holds `output` first, then `buffer`: lines reach the output in the order they
/// entered the buffer.
struct Shared {
    buffer: Mutex<Buffer>,
    wake: Condvar,
    output: Mutex<Output>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn output(&self) -> MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes out everything buffered, then `extra`.
    fn write_out(&self, extra: &[u8]) {
        let mut output = self.output();
        let bytes = std::mem::take(&mut self.lock().bytes);
        // Nothing useful can be done when standard error is gone; the daemon goes on.
        let _ = output.write_all(&bytes);
        let _ = output.write_all(extra);
        let _ = output.flush();
    }
}

/// The `MakeWriter` handed to the formatting layer.
#[derive(Clone)]
pub struct BatchedStderr(Arc<Shared>);

/// Owns the writer thread; dropping it flushes and stops it.
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer for standard error and the thread that drains it.
pub fn batched_stderr() -> (BatchedStderr, Flusher) {
    batched(Box::new(io::stderr()))
}

/// A writer for `output` (a log file) and the thread that drains it.
pub fn batched(output: Output) -> (BatchedStderr, Flusher) {
    let shared = Arc::new(Shared {
        buffer: Mutex::default(),
        wake: Condvar::new(),
        output: Mutex::new(output),
    });
    let drained = Arc::clone(&shared);
    let thread = thread::Builder::new()
        .name("cavra-log".to_owned())
        .spawn(move || drain(&drained))
        .ok();
    if thread.is_none() {
        // No thread: every line is written at once, as an unbuffered writer would.
        shared.lock().closed = true;
    }
    (BatchedStderr(Arc::clone(&shared)), Flusher { shared, thread })
}

fn drain(shared: &Shared) {
    loop {
        let mut buffer = shared.lock();
        while buffer.bytes.is_empty() && !buffer.closed {
            buffer = shared
                .wake
                .wait(buffer)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        let closed = buffer.closed;
        drop(buffer);
        if !closed {
            thread::sleep(GATHER);
        }
        shared.write_out(&[]);
        if closed {
            return;
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One event's writer: the formatting layer writes a whole line through it.
pub struct Line<'a>(&'a Shared);

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(&self.0)
    }
}

impl io::Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut buffer = self.0.lock();
        if buffer.closed || buffer.bytes.len() + bytes.len() > MAX_BUFFERED {
            // Stopped, or the writer cannot keep up: write here, after what is buffered.
            drop(buffer);
            self.0.write_out(bytes);
            return Ok(bytes.len());
        }
        let was_empty = buffer.bytes.is_empty();
        buffer.bytes.extend_from_slice(bytes);
        drop(buffer);
        if was_empty {
            self.0.wake.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_in_order_by_the_time_the_flusher_drops() {
        let captured = Captured::default();
        let (writer, flusher) = batched(Box::new(captured.clone()));
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let writer = writer.clone();
                thread::spawn(move || {
                    // As the formatting layer does: one whole line per write.
                    for line in 0..5_000 {
                        let line = format!("t{thread} {line}\n");
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(flusher);
        let text = captured.text();
        for thread in 0..4 {
            let prefix = format!("t{thread} ");
            let lines: Vec<usize> = text
                .lines()
                .filter_map(|line| line.strip_prefix(&prefix))
                .map(|number| number.parse().unwrap())
                .collect();
            assert_eq!(lines, (0..5_000).collect::<Vec<_>>(), "thread {thread}");
        }
    }

    #[test]
    fn lines_reach_the_output_without_a_flush_while_running() {
        let captured = Captured::default();
        let (writer, _flusher) = batched(Box::new(captured.clone()));
        writeln!(writer.make_writer(), "first").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while captured.text().is_empty() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(captured.text(), "first\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_caller_in_order() {
        let captured = Captured::default();
        let (writer, flusher) = batched(Box::new(captured.clone()));
        // Hold the output so the writer thread cannot drain: the buffer fills and the caller writes.
        let held = flusher.shared.output();
        let line = vec![b'x'; 1000];
        let mut expected = Vec::new();
        for _ in 0..MAX_BUFFERED / 1000 {
            writer.make_writer().write_all(&line).unwrap();
            expected.extend_from_slice(&line);
        }
        assert!(captured.0.lock().unwrap().is_empty());
        drop(held);
        writer.make_writer().write_all(b"last\n").unwrap();
        expected.extend_from_slice(b"last\n");
        drop(flusher);
        assert_eq!(*captured.0.lock().unwrap(), expected);
    }

    #[test]
    fn lines_after_the_flusher_stopped_are_written_at_once() {
        let captured = Captured::default();
        let (writer, flusher) = batched(Box::new(captured.clone()));
        drop(flusher);
        writeln!(writer.make_writer(), "late").unwrap();
        assert_eq!(captured.text(), "late\n");
    }
}
