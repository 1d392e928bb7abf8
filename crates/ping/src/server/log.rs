//! The request log: one loop's lines of a turn, handed to the log sink.

use std::io::{self, Write};

use syncomm_common::jsonl::{now_ms, Line};
use syncomm_common::logsink::LogHandle;

use super::connection::Peer;
use crate::protocol::MAX_LINE;

/// The program whose JSON lines these are.
const PROGRAM: &str = "ping-server";

/// A loop hands its log lines over once they reach this many bytes, even mid-turn.
const LOG_TURN: usize = 64 * 1024;

/// What a log line reports.
#[derive(Debug, Clone, Copy)]
pub(super) enum Event {
    /// A ping answered, with its payload length if it had one.
    Ping(Option<usize>),
    /// A line that is not a request, answered `error: unknown request`.
    Unknown,
    /// A line over [`MAX_LINE`]: answered, then the connection closes.
    TooLong,
    /// A connection refused past `--max-conns`.
    Busy,
    /// A connection dropped by the idle timeout.
    Idle,
}

/// One loop's end of the request log: the lines of the current turn.
pub(super) struct LogSender {
    json: bool,
    /// Our pid, for the JSON lines (read once: `getpid` is a system call).
    pid: u32,
    buf: Vec<u8>,
    sink: LogHandle,
}

impl LogSender {
    pub(super) fn new(sink: LogHandle, json: bool) -> LogSender {
        LogSender {
            json,
            pid: std::process::id(),
            buf: Vec::with_capacity(4096),
            sink,
        }
    }

    /// Hands this turn's lines to the sink without waiting (they are
    /// dropped and counted there if its backlog is full or its output closed).
    pub(super) fn pass_on(&mut self) {
        if !self.buf.is_empty() {
            self.sink.send(&self.buf);
            self.buf.clear();
            if self.buf.capacity() > 2 * LOG_TURN {
                self.buf.shrink_to(LOG_TURN);
            }
        }
    }

    /// Adds one line about `event` from `peer`, as text (the seed's wording)
    /// or JSON (in the envelope of `syncomm_common::jsonl`).
    pub(super) fn event(&mut self, event: Event, peer: Peer) {
        if self.json {
            let name = match event {
                Event::Ping(_) => "ping",
                Event::Unknown => "unknown_request",
                Event::TooLong => "line_too_long",
                Event::Busy => "busy",
                Event::Idle => "idle_timeout",
            };
            let mut line = Line::stamped(PROGRAM, name, self.pid, now_ms());
            if let Event::Ping(bytes) = event {
                line.add("payload_bytes", &bytes.unwrap_or(0));
            }
            match peer {
                Peer::Tcp(addr) => line.add("peer", &addr.to_string()),
                Peer::Local(pid) => line.add("peer_pid", &pid),
            }
            self.buf.extend_from_slice(line.into_string().as_bytes());
        } else {
            self.text_event(event, peer);
        }
        if self.buf.len() >= LOG_TURN {
            // A busy turn: hand over now, so the turn's lines stay bounded.
            self.pass_on();
        }
    }

    /// The seed's wording of one event.
    fn text_event(&mut self, event: Event, peer: Peer) {
        let _ = match event {
            Event::Ping(None) => writeln!(self, "Server received: ping from {peer}"),
            Event::Ping(Some(n)) => writeln!(
                self,
                "Server received: ping with {n} bytes of payload from {peer}"
            ),
            Event::Unknown => writeln!(self, "Server received: unknown request from {peer}"),
            Event::TooLong => writeln!(
                self,
                "Server received: a line over {MAX_LINE} bytes from {peer}; closing"
            ),
            Event::Busy => writeln!(self, "Server busy: refused {peer}"),
            Event::Idle => writeln!(self, "Server dropped idle connection from {peer}"),
        };
    }
}

impl Write for LogSender {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
