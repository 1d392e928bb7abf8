//! Callers' connections: reading requests, the memory budget that holds them back, idle sweep.

use std::cell::Cell;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sys::epoll::EpollFlags;

use syncomm_common::duration::format_duration;
use syncomm_common::frame::{self, FrameError};

use super::dispatch::Job;
use super::{
    LogEvent, Server, MAX_IN_FLIGHT_PER_CONN, MAX_UNSENT_PER_CONN, READ_LIMIT, SMALL_CALL_ALLOWANCE,
};
use crate::protocol::{CallError, CallErrorKind, Request, Response, ToClient};
use crate::registry;
use crate::wire::{Fill, InBuf, OutBuf};

/// One caller's connection.
pub(super) struct Conn {
    pub(super) stream: UnixStream,
    /// Who is at the other end, for log lines: pid and uid, if the kernel said.
    pub(super) peer: Option<(i32, u32)>,
    pub(super) inbuf: InBuf,
    pub(super) outbuf: OutBuf,
    /// Calls accepted and not yet answered.
    pub(super) in_flight: usize,
    /// The caller shut down its sending side; answer what is in flight, then close.
    pub(super) read_closed: bool,
    /// The caller broke the protocol; send the error, then close.
    pub(super) doomed: bool,
    /// When it last completed a request or was sent an answer.
    pub(super) active: Instant,
    /// What its socket is registered for (see `readiness`).
    pub(super) watched: Cell<Option<EpollFlags>>,
}

impl Conn {
    /// Back-pressure: too many of its calls in the pool, or too many of its
    /// answers not yet read by it. Its requests wait (in its socket) meanwhile.
    pub(super) fn held_back(&self) -> bool {
        self.in_flight >= MAX_IN_FLIGHT_PER_CONN || self.outbuf.unsent() >= MAX_UNSENT_PER_CONN
    }

    /// Whether to read from its socket: not after its end or an error, and not
    /// while a whole request already waits in `inbuf` (it is held back).
    pub(super) fn wants_input(&self, max_frame: u32) -> bool {
        !self.read_closed && !self.doomed && !self.inbuf.frame_ready(max_frame)
    }
}

impl Server {
    pub(super) fn conn_readable(&mut self, id: u64) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        if self.draining.is_some() || !c.wants_input(self.cfg.max_frame) {
            return;
        }
        let room = self.read_room(id, c);
        let before = c.inbuf.held();
        let c = self.conns.get_mut(&id).expect("looked up above");
        let fill = c.inbuf.fill(&mut c.stream, room);
        self.buffered = (self.buffered + c.inbuf.held()).saturating_sub(before);
        match fill {
            // The rest (and a frame cut by the end) is seen in take_requests.
            Ok(Fill::Eof) => c.read_closed = true,
            Ok(_) => {}
            Err(_) => {
                // Reset by the caller: it is gone, its answers are dropped.
                self.conns.remove(&id);
                return;
            }
        }
        self.take_requests(id);
    }

    /// Turns the whole frames a connection has sent into jobs.
    pub(super) fn take_requests(&mut self, id: u64) {
        let max = self.cfg.max_frame;
        let draining = self.draining.is_some();
        let now = self.now;
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if c.doomed || c.held_back() {
                return;
            }
            if c.read_closed && c.inbuf.pending() > 0 && !c.inbuf.frame_ready(max) {
                // The caller's stream ended inside a frame.
                let err = c.inbuf.truncated();
                self.doom(id, &err);
                return;
            }
            let mut cost = 0;
            let req = match c.inbuf.next_frame(max) {
                Ok(None) => return,
                Ok(Some(body)) => {
                    cost = body.len();
                    frame::decode_body::<Request>(body)
                }
                Err(e) => Err(e),
            };
            let req = match req {
                Ok(req) => req,
                Err(e) => {
                    self.doom(id, &e);
                    return;
                }
            };
            let refusal = if draining {
                Some(CallError::new(
                    CallErrorKind::ShuttingDown,
                    "the server is shutting down",
                ))
            } else {
                registry::check(&req.function, &req.args).err()
            };
            if let Some(err) = refusal {
                c.active = now;
                let _ = c.outbuf.push(&ToClient::Answer(Response {
                    id: req.id,
                    result: Err(err),
                }));
                continue;
            }
            c.in_flight += 1;
            c.active = now;
            self.next_job += 1;
            self.jobs_bytes += cost;
            self.pending.push_back(Job {
                cost,
                conn: id,
                caller_id: req.id,
                req: Request {
                    id: self.next_job,
                    function: req.function,
                    args: req.args,
                },
            });
        }
    }

    /// Sends a protocol error to a connection, marks it for closing, and
    /// logs one line naming the peer and the reason.
    pub(super) fn doom(&mut self, id: u64, err: &FrameError) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let msg = match err {
            FrameError::Malformed(_) => format!("{err} (expected a Request frame)"),
            _ => err.to_string(),
        };
        let event = LogEvent::ProtocolError {
            connection: id,
            peer_pid: c.peer.map(|p| p.0),
            peer_uid: c.peer.map(|p| p.1),
            reason: msg.clone(),
        };
        let _ = c.outbuf.push(&ToClient::ConnectionError(msg));
        c.doomed = true;
        c.inbuf.clear();
        self.say(event);
    }

    /// Bytes buffered in total: every connection's and child pipe's buffers
    /// and every job waiting or running; and the connection with the most
    /// of an unfinished frame (see `privileged`).
    pub(super) fn total_buffered(&self) -> (usize, Option<u64>) {
        let mut conns = 0;
        let mut most: Option<(usize, u64)> = None;
        for (id, c) in &self.conns {
            conns += c.inbuf.held() + c.outbuf.held();
            if c.inbuf.missing(self.cfg.max_frame).is_some()
                && c.wants_input(self.cfg.max_frame)
                && !c.held_back()
                && most.map_or(true, |(n, _)| c.inbuf.pending() > n)
            {
                most = Some((c.inbuf.pending(), *id));
            }
        }
        let workers: usize = self
            .workers
            .iter()
            .map(|w| w.inbuf.held() + w.outbuf.held())
            .sum();
        // Only while no call waits or runs: then nothing else would free
        // memory, and one frame at a time gets through.
        let privileged = most.filter(|_| self.jobs_bytes == 0).map(|(_, id)| id);
        (conns + workers + self.jobs_bytes, privileged)
    }

    /// How many bytes may be read from connection `id` now: up to
    /// [`READ_LIMIT`] while under `--max-buffered`; past it, the rest of its
    /// frame for the privileged connection, and for the others what is left
    /// of [`SMALL_CALL_ALLOWANCE`].
    pub(super) fn read_room(&self, id: u64, c: &Conn) -> usize {
        let room = self.cfg.max_buffered.saturating_sub(self.buffered);
        if room > 0 {
            room.min(READ_LIMIT)
        } else if self.privileged == Some(id) {
            c.inbuf
                .missing(self.cfg.max_frame)
                .unwrap_or(0)
                .min(READ_LIMIT)
        } else {
            SMALL_CALL_ALLOWANCE.saturating_sub(c.inbuf.pending())
        }
    }

    /// Closes connections idle for `--idle-timeout`: nothing in flight,
    /// nothing left to send, and no request completed meanwhile (a caller
    /// dribbling a frame is as idle as a silent one).
    pub(super) fn sweep_idle(&mut self) {
        let Some(idle) = self.cfg.idle_timeout else {
            return;
        };
        let now = self.now;
        if now.duration_since(self.swept) < sweep_every(idle) {
            return;
        }
        self.swept = now;
        let limit = format_duration(idle);
        let mut closed = 0;
        for c in self.conns.values_mut() {
            if !c.doomed
                && c.in_flight == 0
                && c.outbuf.is_empty()
                && now.duration_since(c.active) >= idle
            {
                let _ = c.outbuf.push(&ToClient::ConnectionError(format!(
                    "idle timeout: no request completed for {limit}"
                )));
                c.doomed = true;
                c.inbuf.clear();
                closed += 1;
            }
        }
        if closed > 0 {
            self.say(LogEvent::IdleClosed {
                connections: closed,
                idle_timeout: idle,
            });
        }
    }
}

/// How often idle connections are looked for: a few times per timeout.
pub(super) fn sweep_every(idle: Duration) -> Duration {
    (idle / 4).max(Duration::from_millis(10))
}
