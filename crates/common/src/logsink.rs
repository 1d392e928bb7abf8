//! A log output that never blocks the program writing to it: what servers
//! use for their stdout log.
//!
//! [`LogSink::start`] hands the output (stdout) to a helper thread. The
//! server passes lines with [`LogHandle::send`] (or writes through a
//! [`LogWriter`]), which only copies them into a bounded backlog and returns
//! at once. When the reader stalls (a paused terminal, a pipe nobody reads)
//! and the backlog is full, lines are dropped and counted; once the reader
//! catches up, a note with the count is written where the gap is. When the
//! output is closed (`server | head -1`: `EPIPE`), every later line is
//! dropped and counted, and the server goes on serving.
//!
//! [`LogSink::finish`] gives the helper a bounded time to write what is
//! left, then abandons it (a thread blocked in `write(2)` on a stalled pipe
//! dies with the process): shutdown never waits on output. Lines that were
//! dropped and never reported in the output are reported as one line on
//! stderr, itself written with a bound.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes of log that may wait for a slow reader unless told otherwise.
pub const DEFAULT_BACKLOG: usize = 256 * 1024;

/// How long [`LogSink::finish`] gives the output to take what is left,
/// unless told otherwise.
pub const DEFAULT_FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// Words the note about dropped lines: `(N log lines dropped: output too slow)`.
pub type NoteFn = Box<dyn Fn(u64) -> String + Send + Sync>;

/// The default note, a text line.
pub fn text_note(n: u64) -> String {
    let lines = if n == 1 { "line" } else { "lines" };
    format!("({n} log {lines} dropped: output too slow)\n")
}

/// The note as one JSON line of `program` (see [`crate::jsonl`]):
/// `{"program":…,"event":"log_dropped",…,"lines":N}`.
pub fn json_note(program: &'static str) -> impl Fn(u64) -> String + Send + Sync {
    move |n| {
        crate::jsonl::Line::new(program, "log_dropped")
            .field("lines", n)
            .into_string()
    }
}

struct State {
    /// Bytes accepted and not yet taken by the writer.
    queue: Vec<u8>,
    /// Bytes the writer took and is writing now.
    in_write: usize,
    /// Lines in those bytes.
    in_write_lines: u64,
    /// Lines dropped since the last note was queued.
    unnoted: u64,
    /// Every line dropped so far (noted or not).
    dropped: u64,
    /// No more lines will come: write what is left and stop.
    closing: bool,
    /// The output failed (closed by its reader): nothing more is written.
    broken: bool,
    /// The writer thread ended.
    done: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when lines are queued or closing starts.
    work: Condvar,
    /// Signalled when the writer finished a batch or ended.
    progress: Condvar,
    capacity: usize,
    note: NoteFn,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done that
        // matters for a log: go on with the data as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn count_lines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// A cheap, cloneable, thread-safe handle that passes lines to the sink.
#[derive(Clone)]
pub struct LogHandle {
    shared: Arc<Shared>,
}

impl LogHandle {
    /// Passes `lines` (whole lines, each ending in `\n`) to the output
    /// without waiting. Returns false when they were dropped (counted)
    /// because the backlog is full or the output is closed.
    pub fn send(&self, lines: &[u8]) -> bool {
        if lines.is_empty() {
            return true;
        }
        let mut st = self.shared.lock();
        let n = count_lines(lines).max(1);
        let pending = st.queue.len() + st.in_write;
        if st.broken || pending + lines.len() > self.shared.capacity {
            st.unnoted += n;
            st.dropped += n;
            return false;
        }
        if st.unnoted > 0 {
            // The reader caught up: say where the gap is.
            let note = (self.shared.note)(st.unnoted);
            st.queue.extend_from_slice(note.as_bytes());
            st.unnoted = 0;
        }
        st.queue.extend_from_slice(lines);
        drop(st);
        self.shared.work.notify_one();
        true
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    /// Whether the output is closed for good (its reader went away).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().broken
    }

    /// A [`Write`] that passes each complete line on as it is written.
    pub fn writer(&self) -> LogWriter {
        LogWriter {
            handle: self.clone(),
            buf: Vec::new(),
        }
    }
}

/// A [`Write`] over a [`LogHandle`]: buffers a line until its `\n` (or a
/// `flush`), then passes it on; never blocks, never fails.
pub struct LogWriter {
    handle: LogHandle,
    buf: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if let Some(end) = self.buf.iter().rposition(|&c| c == b'\n') {
            self.handle.send(&self.buf[..=end]);
            self.buf.drain(..=end);
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.buf.push(b'\n');
            self.handle.send(&self.buf);
            self.buf.clear();
        }
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// What became of the log, from [`LogSink::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogReport {
    /// Lines never written: dropped, or still waiting when the flush limit passed.
    pub lost: u64,
    /// Whether everything handed over was written (or dropped and noted) in time.
    pub complete: bool,
    /// Whether the output was closed by its reader.
    pub closed: bool,
}

/// The sink: owns the writer thread.
pub struct LogSink {
    handle: LogHandle,
    thread: Option<JoinHandle<()>>,
}

impl LogSink {
    /// Starts the writer thread on `out` with a backlog of at most
    /// `capacity` bytes; `note` words the count of dropped lines.
    pub fn start(
        out: impl Write + Send + 'static,
        capacity: usize,
        note: impl Fn(u64) -> String + Send + Sync + 'static,
    ) -> LogSink {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: Vec::new(),
                in_write: 0,
                in_write_lines: 0,
                unnoted: 0,
                dropped: 0,
                closing: false,
                broken: false,
                done: false,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            capacity,
            note: Box::new(note),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("log".into())
            .spawn(move || write_loop(&for_thread, out))
            .ok();
        if thread.is_none() {
            // No thread, no output: every line is dropped and counted.
            shared.lock().broken = true;
        }
        LogSink {
            handle: LogHandle { shared },
            thread,
        }
    }

    /// A handle to pass lines with.
    pub fn handle(&self) -> LogHandle {
        self.handle.clone()
    }

    /// Ends the log: the lines still waiting, and a last note if lines were
    /// dropped since the previous one, get at most `limit` to be written;
    /// past it the writer is abandoned. Then, if lines were lost and the
    /// output never said so, one line `PROGRAM: N log lines dropped (...)`
    /// goes to stderr (also with a bound). Never waits longer than about
    /// twice `limit`.
    pub fn finish(mut self, limit: Duration, program: &str) -> LogReport {
        let shared = Arc::clone(&self.handle.shared);
        let deadline = Instant::now() + limit;
        let mut st = shared.lock();
        if st.unnoted > 0 && !st.broken {
            let note = (shared.note)(st.unnoted);
            st.queue.extend_from_slice(note.as_bytes());
            st.unnoted = 0;
        }
        st.closing = true;
        shared.work.notify_one();
        while !st.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = shared
                .progress
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let complete = st.done && !st.broken;
        let waiting = count_lines(&st.queue) + st.in_write_lines;
        let lost = st.dropped + if complete { 0 } else { waiting };
        let closed = st.broken;
        // Lines the output itself reported (in a note) need no second word;
        // otherwise say it on stderr.
        let unreported = if complete { 0 } else { lost };
        drop(st);
        if complete {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        // Else the thread is left behind, blocked in write(2): it ends with the process.
        if unreported > 0 {
            let why = if closed {
                "output closed"
            } else {
                "output too slow"
            };
            let lines = if unreported == 1 { "line" } else { "lines" };
            write_bounded(
                format!("{program}: {unreported} log {lines} dropped ({why})\n"),
                limit,
            );
        }
        LogReport {
            lost,
            complete,
            closed,
        }
    }
}

/// The writer thread: takes what is queued, writes it, until closing.
fn write_loop(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut st = shared.lock();
        while st.queue.is_empty() && !st.closing {
            st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.queue.is_empty() {
            st.done = true;
            drop(st);
            shared.progress.notify_all();
            return;
        }
        std::mem::swap(&mut batch, &mut st.queue);
        st.in_write = batch.len();
        st.in_write_lines = count_lines(&batch);
        drop(st);
        let result = out.write_all(&batch).and_then(|()| out.flush());
        let mut st = shared.lock();
        st.in_write = 0;
        st.in_write_lines = 0;
        if result.is_err() {
            // Closed by its reader (EPIPE) or otherwise gone: from now on
            // every line is dropped and counted; the server goes on.
            let lost = count_lines(&batch) + count_lines(&st.queue);
            st.dropped += lost;
            st.queue = Vec::new();
            st.broken = true;
            st.done = true;
            drop(st);
            shared.progress.notify_all();
            return;
        }
        drop(st);
        shared.progress.notify_all();
        batch.clear();
        if batch.capacity() > 64 * 1024 {
            batch.shrink_to(64 * 1024);
        }
    }
}

/// Writes `line` to stderr from a helper thread, waiting at most `limit`
/// for it (a stalled stderr must not hold the exit up).
pub fn write_bounded(line: String, limit: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().spawn(move || {
        let mut err = io::stderr().lock();
        let _ = err.write_all(line.as_bytes()).and_then(|()| err.flush());
        let _ = tx.send(());
    });
    if spawned.is_ok() {
        let _ = rx.recv_timeout(limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// An output that blocks until told to go on, then records.
    struct Gate {
        go: mpsc::Receiver<()>,
        got: Arc<Mutex<Vec<u8>>>,
    }
    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let _ = self.go.recv();
            self.got.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn stalled_output_drops_counts_and_notes_the_gap() {
        let (go, rx) = mpsc::channel();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = LogSink::start(
            Gate {
                go: rx,
                got: Arc::clone(&got),
            },
            100,
            text_note,
        );
        let h = sink.handle();
        assert!(h.send(b"first\n"));
        // The writer now blocks on "first"; 100 bytes of backlog fill up.
        let mut accepted = 0;
        for _ in 0..50 {
            if h.send(b"0123456789\n") {
                accepted += 1;
            }
        }
        assert!(accepted < 10, "{accepted}");
        assert_eq!(h.dropped(), 50 - accepted);
        // The reader catches up: let everything through.
        for _ in 0..100 {
            let _ = go.send(());
        }
        wait(|| {
            let st = h.shared.lock();
            st.queue.is_empty() && st.in_write == 0
        });
        assert!(h.send(b"after\n"));
        let report = sink.finish(Duration::from_secs(5), "test");
        assert!(report.complete);
        assert_eq!(report.lost, 50 - accepted);
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        let note = format!(
            "({} log lines dropped: output too slow)\nafter\n",
            50 - accepted
        );
        assert!(text.starts_with("first\n"), "{text}");
        assert!(text.ends_with(&note), "{text}");
    }

    #[test]
    fn finish_abandons_a_blocked_writer() {
        let (go, rx) = mpsc::channel();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = LogSink::start(Gate { go: rx, got }, 1000, text_note);
        let h = sink.handle();
        h.send(b"stuck\n");
        h.send(b"waiting\n");
        let report = sink.finish(Duration::from_millis(50), "test");
        assert!(!report.complete);
        assert_eq!(report.lost, 2);
        drop(go);
    }

    #[test]
    fn closed_output_drops_everything_and_says_so() {
        let sink = LogSink::start(Closed, 1000, text_note);
        let h = sink.handle();
        h.send(b"a\n");
        wait(|| h.is_closed());
        assert!(!h.send(b"b\nc\n"));
        let mut w = h.writer();
        writeln!(w, "d").unwrap();
        let report = sink.finish(Duration::from_secs(1), "test");
        assert!(report.closed);
        assert_eq!(report.lost, 4);
    }

    #[test]
    fn writer_passes_whole_lines() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let (go, rx) = mpsc::channel();
        for _ in 0..10 {
            go.send(()).unwrap();
        }
        let sink = LogSink::start(
            Gate {
                go: rx,
                got: Arc::clone(&got),
            },
            1000,
            text_note,
        );
        let mut w = sink.handle().writer();
        write!(w, "one ").unwrap();
        writeln!(w, "line").unwrap();
        write!(w, "partial").unwrap();
        drop(w);
        assert!(sink.finish(Duration::from_secs(5), "test").complete);
        assert_eq!(&*got.lock().unwrap(), b"one line\npartial\n");
    }

    fn wait(mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
