//! The ping client: `ping(8)` for the line protocol.
//!
//! One connection, one request at a time: write `ping [PAYLOAD]\n`, read one
//! line, check it is the matching `pong`, time the round trip. A ping that
//! gets no right answer within the timeout (`-W`) is lost: the reason is
//! printed, the connection is dropped (a late answer would be mistaken for
//! the next one) and the next ping connects afresh, so a server that
//! restarts is picked up again.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use syncomm_common::jsonl::{round, Line};
use syncomm_common::shutdown::Shutdown;

use crate::protocol;
use crate::Endpoint;

/// The program whose JSON lines these are.
const PROGRAM: &str = "ping-client";

/// A connected stream to a ping server, TCP or local.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection (`TCP_NODELAY` set: every request goes out at once).
    Tcp(TcpStream),
    /// A local (Unix-domain) socket connection.
    Local(UnixStream),
}

impl Stream {
    /// Connects to `endpoint`, giving up after `timeout` (TCP; a local
    /// connect never waits).
    pub fn connect(endpoint: &Endpoint, timeout: Option<Duration>) -> io::Result<Stream> {
        match endpoint {
            Endpoint::Tcp(addr) => {
                let s = match timeout {
                    Some(t) => TcpStream::connect_timeout(addr, t.max(Duration::from_millis(1)))?,
                    None => TcpStream::connect(addr)?,
                };
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Endpoint::Local(dir, name) => {
                let path = Endpoint::local_path(dir, name);
                Ok(Stream::Local(UnixStream::connect(path)?))
            }
        }
    }

    /// Sets how long a `read` may wait (`None`: forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Local(s) => s.set_read_timeout(t),
        }
    }

    /// Sets how long a `write` may wait (`None`: forever).
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Local(s) => s.set_write_timeout(t),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Local(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Local(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Local(s) => s.as_fd(),
        }
    }
}

/// Why one ping got no good answer.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// Connecting failed.
    #[error("cannot connect: {}", crate::describe_io(.0))]
    Connect(io::Error),
    /// No answer within the timeout.
    #[error("timed out after {}", syncomm_common::duration::format_duration(*.0))]
    Timeout(Duration),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The server refused the connection with `error: server busy`.
    #[error("server busy")]
    Busy,
    /// The answer is not the `pong` expected.
    #[error("unexpected reply {0:?}")]
    Unexpected(String),
    /// Reading or writing failed.
    #[error("{}", crate::describe_io(.0))]
    Io(io::Error),
}

/// Sends one ping on `stream` and waits for its answer until `deadline`.
///
/// `request` is the whole request line, `expected` the whole answer line;
/// `buf` is scratch space for the answer. Returns when the answer is in.
pub fn ping_once(
    stream: &mut Stream,
    request: &[u8],
    expected: &[u8],
    buf: &mut Vec<u8>,
    deadline: Option<Instant>,
    timeout: Duration,
) -> Result<(), PingError> {
    let left = |d: Option<Instant>| -> Result<Option<Duration>, PingError> {
        match d {
            None => Ok(None),
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(l) if !l.is_zero() => Ok(Some(l)),
                _ => Err(PingError::Timeout(timeout)),
            },
        }
    };
    if deadline.is_some() {
        stream
            .set_write_timeout(left(deadline)?)
            .map_err(PingError::Io)?;
    }
    stream.write_all(request).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => PingError::Timeout(timeout),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => PingError::Closed,
        _ => PingError::Io(e),
    })?;
    read_answer(stream, expected, buf, deadline, timeout, left)
}

fn read_answer(
    stream: &mut Stream,
    expected: &[u8],
    buf: &mut Vec<u8>,
    deadline: Option<Instant>,
    timeout: Duration,
    left: impl Fn(Option<Instant>) -> Result<Option<Duration>, PingError>,
) -> Result<(), PingError> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if deadline.is_some() {
            stream
                .set_read_timeout(left(deadline)?)
                .map_err(PingError::Io)?;
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return verdict_at_eof(buf),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(PingError::Timeout(timeout))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err(PingError::Closed),
            Err(e) => return Err(PingError::Io(e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        match check_answer(buf, expected) {
            Verdict::Incomplete => {}
            Verdict::Match => return Ok(()),
            Verdict::Busy => return Err(PingError::Busy),
            // The server dropped this connection while we were waiting
            // between pings: as good as closed.
            Verdict::Idle => return Err(PingError::Closed),
            Verdict::Unexpected(shown) => return Err(PingError::Unexpected(shown)),
        }
    }
}

/// What the bytes of an answer received so far say, by [`check_answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No whole line yet, and it may still become the right one: read on.
    Incomplete,
    /// Exactly the answer expected, and nothing after it.
    Match,
    /// `error: server busy`.
    Busy,
    /// `error: idle timeout`: the server dropped the connection.
    Idle,
    /// Anything else; the start of it (at most [`SHOWN`] bytes), for the message.
    Unexpected(String),
}

/// How many bytes of a wrong answer a message shows.
pub const SHOWN: usize = 80;

/// The client's check of an answer: `buf` holds every byte received so far
/// for one ping, `expected` the whole answer owed (with its `\n`). Decides
/// at the first `\n`, or as soon as `buf` is longer than any answer the
/// server could give without one (so a wrong answer never makes the client
/// buffer more than that plus one read).
pub fn check_answer(buf: &[u8], expected: &[u8]) -> Verdict {
    let shown = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(SHOWN)]).into_owned();
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let line = &buf[..=end];
            if line == expected && end + 1 == buf.len() {
                Verdict::Match
            } else if line == protocol::BUSY {
                Verdict::Busy
            } else if line == protocol::IDLE {
                Verdict::Idle
            } else {
                Verdict::Unexpected(shown(&line[..end]))
            }
        }
        None if buf.len() > longest_answer(expected) => Verdict::Unexpected(shown(buf)),
        None => Verdict::Incomplete,
    }
}

/// The longest line the server may send in answer to a ping whose answer
/// is `expected`: that answer, or one of its error lines (a busy or idle
/// line cut in pieces must not be taken for a wrong answer).
pub fn longest_answer(expected: &[u8]) -> usize {
    expected
        .len()
        .max(protocol::BUSY.len())
        .max(protocol::IDLE.len())
}

/// The check at end of stream, when `buf` (no whole line) is all that came.
pub fn verdict_at_eof(buf: &[u8]) -> Result<(), PingError> {
    Err(if buf.starts_with(b"error: server busy") {
        PingError::Busy
    } else if buf.is_empty() {
        PingError::Closed
    } else {
        PingError::Unexpected(String::from_utf8_lossy(&buf[..buf.len().min(SHOWN)]).into_owned())
    })
}

/// What `ping-client` is asked to do.
#[derive(Debug, Clone)]
pub struct PingConfig {
    /// Where the server is.
    pub endpoint: Endpoint,
    /// How many pings (`None`: until interrupted).
    pub count: Option<u64>,
    /// Time between the starts of two pings.
    pub interval: Duration,
    /// Payload bytes per ping.
    pub payload: usize,
    /// How long one ping may take, connecting included.
    pub timeout: Duration,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Only the first line and the summary, no line per ping (`-q`).
    pub quiet: bool,
    /// Set (by SIGQUIT) to ask for the statistics so far, printed on
    /// stderr as `ping(8)` does on Ctrl-\; cleared when printed.
    pub info: Option<Arc<AtomicBool>>,
}

/// Round-trip statistics, as `ping(8)` prints them.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Pings sent (or attempted).
    pub sent: u64,
    /// Pings answered correctly.
    pub received: u64,
    min: f64,
    max: f64,
    sum: f64,
    sum_sq: f64,
    /// The reason the last lost ping was lost.
    pub last_error: Option<String>,
}

impl Summary {
    fn add(&mut self, ms: f64) {
        if self.received == 0 || ms < self.min {
            self.min = ms;
        }
        if ms > self.max {
            self.max = ms;
        }
        self.received += 1;
        self.sum += ms;
        self.sum_sq += ms * ms;
    }

    /// Lost pings, in percent of those sent.
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            100.0 * (self.sent - self.received) as f64 / self.sent as f64
        }
    }

    /// `(min, avg, max, mdev)` of the round trips in milliseconds, if any.
    pub fn rtt(&self) -> Option<(f64, f64, f64, f64)> {
        if self.received == 0 {
            return None;
        }
        let n = self.received as f64;
        let avg = self.sum / n;
        let mdev = (self.sum_sq / n - avg * avg).max(0.0).sqrt();
        Some((self.min, avg, self.max, mdev))
    }

    /// The summary line: `3 sent, 3 received, 0% loss, rtt min/avg/max/mdev = a/b/c/d ms`.
    pub fn line(&self) -> String {
        let loss = self.loss_percent();
        let loss = if loss.fract() == 0.0 {
            format!("{loss:.0}")
        } else {
            format!("{loss:.1}")
        };
        let mut s = format!(
            "{} sent, {} received, {loss}% loss",
            self.sent, self.received
        );
        if let Some((min, avg, max, mdev)) = self.rtt() {
            s.push_str(&format!(
                ", rtt min/avg/max/mdev = {min:.3}/{avg:.3}/{max:.3}/{mdev:.3} ms"
            ));
        }
        s
    }

    /// The summary as one JSON line (`summary`, see docs/JSON.md).
    fn json(&self) -> Line {
        let rtt = self.rtt();
        let ms = |pick: fn((f64, f64, f64, f64)) -> f64| rtt.map(|r| round(pick(r), 3));
        Line::new(PROGRAM, "summary")
            .field("sent", self.sent)
            .field("received", self.received)
            .field("loss_percent", round(self.loss_percent(), 3))
            .field("rtt_min_ms", ms(|r| r.0))
            .field("rtt_avg_ms", ms(|r| r.1))
            .field("rtt_max_ms", ms(|r| r.2))
            .field("rtt_mdev_ms", ms(|r| r.3))
    }
}

/// Pings like `ping(8)`, writing one line per ping and the summary to `out`.
///
/// Stops after `count` pings or when `shutdown` is requested. Errors are
/// only those of writing `out`; lost pings are counted in the summary.
pub fn ping(cfg: &PingConfig, shutdown: &Shutdown, out: &mut dyn Write) -> io::Result<Summary> {
    let (request, expected) = protocol::exchange(cfg.payload);
    let mut buf = Vec::with_capacity(expected.len());
    let mut conn: Option<Stream> = None;
    let mut sum = Summary::default();
    let ep = &cfg.endpoint;
    if !cfg.json {
        writeln!(out, "PING {ep}: {} bytes of payload", cfg.payload)?;
        out.flush()?;
    }
    let mut seq = 0u64;
    while cfg.count.map_or(true, |c| seq < c) && !shutdown.requested() {
        seq += 1;
        sum.sent += 1;
        let start = Instant::now();
        let deadline = start + cfg.timeout;
        let mut attempt = |conn: &mut Option<Stream>| {
            let s =
                match conn {
                    Some(s) => s,
                    None => conn.insert(Stream::connect(ep, Some(cfg.timeout)).map_err(|e| {
                        match e.kind() {
                            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                                PingError::Timeout(cfg.timeout)
                            }
                            _ => PingError::Connect(e),
                        }
                    })?),
                };
            // The round trip is timed from the request on: a new connection's
            // handshake is not part of it (ping(8) times the echo alone).
            let sent = Instant::now();
            ping_once(
                s,
                &request,
                &expected,
                &mut buf,
                Some(deadline),
                cfg.timeout,
            )
            .map(|()| sent.elapsed())
        };
        let reused = conn.is_some();
        let mut result = attempt(&mut conn);
        if reused && matches!(result, Err(PingError::Closed)) {
            // The server closed the connection kept from the last ping (it
            // restarted, or dropped us as idle): try once on a new one.
            conn = None;
            result = attempt(&mut conn);
        }
        match result {
            Ok(rtt) => {
                let ms = rtt.as_secs_f64() * 1e3;
                sum.add(ms);
                if cfg.json && !cfg.quiet {
                    Line::new(PROGRAM, "reply")
                        .field("seq", seq)
                        .field("bytes", expected.len())
                        .field("rtt_ms", round(ms, 3))
                        .write_to(out)?;
                } else if !cfg.quiet {
                    writeln!(
                        out,
                        "{} bytes from {ep}: seq={seq} time={ms:.3} ms",
                        expected.len()
                    )?;
                }
            }
            Err(e) => {
                conn = None;
                let why = e.to_string();
                if cfg.json && !cfg.quiet {
                    Line::new(PROGRAM, "lost")
                        .field("seq", seq)
                        .field("error", &why)
                        .write_to(out)?;
                } else if !cfg.quiet {
                    writeln!(out, "no reply from {ep}: seq={seq}: {why}")?;
                }
                sum.last_error = Some(why);
            }
        }
        out.flush()?;
        interim(cfg, &sum);
        if cfg.count.is_some_and(|c| seq >= c) {
            break;
        }
        // In slices, so that a SIGQUIT is answered within 100ms.
        let next = start + cfg.interval;
        loop {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() || shutdown.requested() {
                break;
            }
            wait_or_shutdown(shutdown, left.min(Duration::from_millis(100)));
            interim(cfg, &sum);
        }
    }
    if cfg.json {
        sum.json().write_to(out)?;
    } else {
        writeln!(out, "--- {ep} ping statistics ---")?;
        writeln!(out, "{}", sum.line())?;
    }
    out.flush()?;
    Ok(sum)
}

/// Prints the statistics so far on stderr if they were asked for (SIGQUIT).
fn interim(cfg: &PingConfig, sum: &Summary) {
    if cfg
        .info
        .as_ref()
        .is_some_and(|f| f.swap(false, Ordering::Relaxed))
    {
        eprintln!("{}", sum.line());
    }
}

/// Sleeps for `d`, waking early if a shutdown signal arrives.
pub fn wait_or_shutdown(shutdown: &Shutdown, d: Duration) {
    let deadline = Instant::now() + d;
    while !shutdown.requested() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let ms =
            PollTimeout::try_from(left + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(shutdown.wake_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_like_ping8() {
        let mut s = Summary {
            sent: 3,
            ..Summary::default()
        };
        assert_eq!(s.line(), "3 sent, 0 received, 100% loss");
        s.add(1.0);
        s.add(3.0);
        assert_eq!(
            s.line(),
            "3 sent, 2 received, 33.3% loss, rtt min/avg/max/mdev = 1.000/2.000/3.000/1.000 ms"
        );
    }
}
