//! One connection: its buffers, its states (open, closing, lingering), reading and writing.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::socket::{shutdown, Shutdown as How};

use super::event_loop::Ctx;
use super::lines::{answer_lines, Lines};
use super::log::Event;
use super::slab::Slab;
use super::{LINGER, MAX_LINGERING, OUT_BUDGET};
use crate::protocol::{self, Request};

/// Capacity an empty connection buffer keeps; larger ones are given back.
const KEEP_BUFFER: usize = 4096;

/// Who is at the other end, for the log.
#[derive(Debug, Clone, Copy)]
pub(super) enum Peer {
    Tcp(SocketAddr),
    /// A local peer, by the process id the kernel reports (`SO_PEERCRED`).
    Local(i32),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Local(pid) => write!(f, "local pid {pid}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Reading requests and answering them.
    Open,
    /// No more requests; write what is left, then close the sending side.
    Closing,
    /// Sending side closed; discard input until the peer closes or [`LINGER`] passes.
    Lingering,
}

/// One connection: its socket, its buffers, its state and deadline.
pub(super) struct Conn {
    pub(super) fd: OwnedFd,
    pub(super) peer: Peer,
    /// Bytes received and not yet answered (at most one partial line after a turn).
    pub(super) inbuf: Vec<u8>,
    /// How much of `inbuf` is known to hold no `\n`.
    pub(super) scanned: usize,
    /// Answers not yet written.
    pub(super) outbuf: Vec<u8>,
    /// Complete lines wait in `inbuf`, unanswered, for `outbuf` to drain.
    pub(super) paused: bool,
    pub(super) state: State,
    pub(super) deadline: Option<Instant>,
    /// The epoll events currently asked for.
    pub(super) interest: EpollFlags,
    /// Its slot in the table, which is also its epoll token.
    pub(super) token: u64,
}

/// Tells a connection past `--max-conns` that the server is busy, and closes it.
pub(super) fn refuse_busy(fd: OwnedFd, peer: Peer, ctx: &mut Ctx<'_>, conns: &mut Slab) {
    // A fresh socket's send buffer is empty: this write does not block.
    let _ = nix::unistd::write(&fd, protocol::BUSY);
    if let Some(log) = ctx.log.as_mut() {
        log.event(Event::Busy, peer);
    }
    start_lingering(fd, peer, ctx, conns);
}

/// Closes the sending side and keeps the socket a moment, discarding input,
/// so the peer reads our last line before the connection goes away.
fn start_lingering(fd: OwnedFd, peer: Peer, ctx: &mut Ctx<'_>, conns: &mut Slab) {
    let _ = shutdown(fd.as_raw_fd(), How::Write);
    if ctx.lingering >= MAX_LINGERING || ctx.draining {
        return; // dropped: closed at once
    }
    let deadline = Some(ctx.now + LINGER);
    if register(fd, peer, State::Lingering, deadline, ctx, conns) {
        ctx.lingering += 1;
    }
}

/// Puts a new connection in the table and in this loop's epoll set (input
/// wanted); `false` (and the socket closed) if epoll refuses it.
pub(super) fn register(
    fd: OwnedFd,
    peer: Peer,
    state: State,
    deadline: Option<Instant>,
    ctx: &mut Ctx<'_>,
    conns: &mut Slab,
) -> bool {
    let conn = Conn {
        fd,
        peer,
        inbuf: Vec::new(),
        scanned: 0,
        outbuf: Vec::new(),
        paused: false,
        state,
        deadline,
        interest: EpollFlags::EPOLLIN,
        token: 0,
    };
    let slot = conns.insert(conn);
    let conn = conns.get_mut(slot).expect("just inserted");
    if ctx
        .epoll
        .add(&conn.fd, EpollEvent::new(EpollFlags::EPOLLIN, slot as u64))
        .is_err()
    {
        conns.remove(slot);
        return false;
    }
    true
}

/// Updates the counters for a connection leaving the table (its socket closes on drop).
pub(super) fn forget(conn: Conn, ctx: &mut Ctx<'_>) {
    match conn.state {
        State::Open | State::Closing => {
            ctx.open.fetch_sub(1, Ordering::Relaxed);
        }
        State::Lingering => ctx.lingering -= 1,
    }
    // Closing the descriptor also removes it from the epoll set.
    drop(conn);
}

/// Handles readiness of one connection. Returns false when it must be closed.
pub(super) fn on_event(conn: &mut Conn, events: EpollFlags, ctx: &mut Ctx<'_>) -> bool {
    if events.contains(EpollFlags::EPOLLOUT) && !flush(conn, ctx) {
        return false;
    }
    let readable = EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
    if !events.intersects(readable) {
        return true;
    }
    match conn.state {
        // Lines wait unanswered: read no more (a hang-up shows in the write).
        State::Open if conn.paused => flush(conn, ctx),
        State::Open => {
            let n = match nix::unistd::read(&conn.fd, &mut ctx.scratch) {
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR) => return true,
                Err(_) => return false, // reset by peer and the like: just close
            };
            if n == 0 {
                // The peer finished sending: answer what it sent, then close.
                if conn.inbuf.is_empty() && conn.outbuf.is_empty() && !conn.paused {
                    return false; // nothing left to say: close at once
                }
                if !conn.inbuf.is_empty() {
                    conn.inbuf.push(b'\n');
                    answer(conn, ctx);
                }
                conn.state = State::Closing;
                return flush(conn, ctx) && conn.state != State::Lingering;
            }
            conn.inbuf.extend_from_slice(&ctx.scratch[..n]);
            answer(conn, ctx);
            flush(conn, ctx)
        }
        // Discard what still arrives; close at end of stream or on error.
        State::Lingering => match nix::unistd::read(&conn.fd, &mut ctx.scratch) {
            Ok(n) => n > 0,
            Err(Errno::EAGAIN | Errno::EINTR) => true,
            Err(_) => false,
        },
        // Closing connections do not ask for input; a hang-up ends them.
        State::Closing => !events.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR),
    }
}

/// Answers every complete line in the connection's input buffer.
pub(super) fn answer(conn: &mut Conn, ctx: &mut Ctx<'_>) {
    let peer = conn.peer;
    let log = &mut ctx.log;
    let mut answered = 0u64;
    let outcome = answer_lines(
        &mut conn.inbuf,
        &mut conn.scanned,
        &mut conn.outbuf,
        OUT_BUDGET,
        |req| {
            answered += 1;
            if let Some(log) = log.as_mut() {
                let event = match req {
                    Request::Ping(payload) => Event::Ping(payload.map(<[u8]>::len)),
                    Request::Unknown => Event::Unknown,
                };
                log.event(event, peer);
            }
        },
    );
    ctx.stats.requests += answered;
    if answered > 0 {
        ctx.live.requests.fetch_add(answered, Ordering::Relaxed);
    }
    if answered > 0 {
        conn.deadline = ctx.idle.map(|d| ctx.now + d);
    }
    conn.paused = outcome == Lines::Paused;
    if outcome == Lines::TooLong {
        if let Some(log) = ctx.log.as_mut() {
            log.event(Event::TooLong, peer);
        }
        conn.state = State::Closing;
    }
}

/// Writes what the connection has to say; chooses the events to wait for.
/// Returns false when the connection must be closed.
pub(super) fn flush(conn: &mut Conn, ctx: &mut Ctx<'_>) -> bool {
    if conn.paused && conn.outbuf.is_empty() {
        // The last answers are out: answer the lines that waited (a budget's
        // worth per turn; the rest on the next turn).
        answer(conn, ctx);
    }
    let mut written = 0;
    while written < conn.outbuf.len() {
        match nix::unistd::write(&conn.fd, &conn.outbuf[written..]) {
            Ok(n) => written += n,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => break,
            Err(_) => return false, // the peer is gone
        }
    }
    if written > 0 {
        conn.outbuf.drain(..written);
        if conn.state == State::Open {
            conn.deadline = ctx.idle.map(|d| ctx.now + d);
        }
    }
    // A thousand idle connections should not each keep the memory of their
    // biggest line: give large empty buffers back.
    for buf in [&mut conn.inbuf, &mut conn.outbuf] {
        if buf.is_empty() && buf.capacity() > KEEP_BUFFER {
            buf.shrink_to(KEEP_BUFFER);
        }
    }
    let want = if !conn.outbuf.is_empty() || conn.paused {
        // Back-pressure: read no more until the peer takes our answers
        // (and the lines that wait for them are answered).
        EpollFlags::EPOLLOUT
    } else {
        match conn.state {
            State::Open | State::Lingering => EpollFlags::EPOLLIN,
            State::Closing => {
                // Everything said: close our side; linger unless shutting down.
                let _ = shutdown(conn.fd.as_raw_fd(), How::Write);
                if ctx.draining || ctx.lingering >= MAX_LINGERING {
                    return false;
                }
                conn.state = State::Lingering;
                ctx.open.fetch_sub(1, Ordering::Relaxed);
                ctx.lingering += 1;
                conn.deadline = Some(ctx.now + LINGER);
                EpollFlags::EPOLLIN
            }
        }
    };
    if want != conn.interest {
        conn.interest = want;
        if ctx
            .epoll
            .modify(&conn.fd, &mut EpollEvent::new(want, conn.token))
            .is_err()
        {
            return false;
        }
    }
    true
}
