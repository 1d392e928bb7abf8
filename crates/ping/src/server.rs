//! The ping server: `epoll(7)` event loops over non-blocking sockets.
//!
//! ## The loop
//! [`Server::bind`] opens the listeners; [`Server::run`] then runs the event
//! loop, which repeats:
//! 1. `epoll_wait` for ready descriptors, at most until the next sweep is due;
//! 2. a ready listener: `accept` every waiting connection (past `--max-conns`
//!    the newcomer gets `error: server busy` and is closed);
//! 3. a ready connection: one `read` into its buffer, an answer for every
//!    complete line (up to [`OUT_BUDGET`] bytes of answers; the other lines
//!    wait in the buffer), one `write` of all the answers (what does not
//!    fit waits for `EPOLLOUT`, and reading pauses meanwhile: back-pressure).
//!    So a connection holds at most one line plus one read of input and the
//!    budget plus one answer of output, whatever it sends;
//! 4. the sweep (a few times per idle timeout): drop connections whose
//!    deadline passed;
//! 5. hand this turn's request log lines to the log sink.
//!
//! ## Several loops
//! With [`ServerConfig::threads`] > 1 the same loop runs on several threads.
//! Each has its own epoll set and owns the connections it accepted, so no
//! connection is ever touched by two threads and nothing needs a lock. They
//! share the listeners (registered with `EPOLLEXCLUSIVE`: a new connection
//! wakes one loop, not all) and one atomic count of open connections for
//! `--max-conns`. With `threads = 1` it is the classic single-threaded server.
//!
//! ## The request log
//! Log lines are collected per turn and passed to a
//! [`LogHandle`](syncomm_common::logsink::LogHandle), whose helper thread
//! writes them, so a slow, paused or closed reader of stdout never stalls a
//! loop: when the writer falls behind or its output is closed, lines are
//! dropped and counted instead, and serving goes on.
//!
//! ## Idle deadline
//! A connection's deadline is reset when it completes a request or when one
//! of its answers makes progress, not by every byte: a client that dribbles
//! half a line is dropped like one that sends nothing.
//!
//! ## Shutdown
//! SIGINT/SIGTERM make the shutdown descriptor readable; every loop watches
//! it. Each loop then stops accepting, the first removes the local socket,
//! and each answers every request already received (at most a receive
//! buffer's worth per connection: a client that keeps sending cannot keep
//! it reading), flushes the answers (for at most [`DRAIN_LIMIT`]) and ends;
//! the listeners close when all have.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{getsockopt, shutdown, sockopt, Shutdown as How};
use syncomm_common::logsink::LogHandle;
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::Name;
use syncomm_sys::unixsock::{self, BindError, FileId};

use crate::protocol::{self, Request, MAX_LINE};
use crate::Endpoint;

/// How long a closing connection may linger, discarding input, before it is closed.
pub const LINGER: Duration = Duration::from_secs(1);
/// How long shutdown waits for the last answers to be written.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Capacity an empty connection buffer keeps; larger ones are given back.
const KEEP_BUFFER: usize = 4096;
/// Answers a connection may have waiting before the server stops answering
/// its next lines (they wait, unread, until the answers are taken): empty
/// lines cost 23 bytes of answer each, so without this bound one read of
/// 64 KiB would queue 1.5 MB of answers per connection.
pub const OUT_BUDGET: usize = 16 * 1024;
/// At most this many bytes of request log wait for a slow reader; past it lines are dropped.
pub const LOG_BACKLOG: usize = 256 * 1024;
/// A loop hands its log lines over once they reach this many bytes, even mid-turn.
const LOG_TURN: usize = 64 * 1024;
/// At most this many closing connections linger at once; past it they are closed at once.
pub const MAX_LINGERING: usize = 256;

/// What the server is asked to do.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The TCP address to serve, if any.
    pub tcp: Option<SocketAddr>,
    /// The local socket to serve, if any: its runtime directory and name.
    pub local: Option<(RunDir, Name)>,
    /// The most connections served at once; more are told `error: server busy`.
    pub max_conns: usize,
    /// Drop a connection that completes no request for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Event loops (threads) sharing the listeners; each owns the
    /// connections it accepts. 1 is the simplest to follow; one per core
    /// uses every core.
    pub threads: usize,
    /// Log one JSON object per line instead of the seed's text.
    pub json_log: bool,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another server already answers there.
    #[error("cannot listen on {what}: a ping-server is already running there")]
    InUse {
        /// The address or socket path.
        what: String,
    },
    /// `bind`/`listen` failed.
    #[error("cannot listen on {what}: {why}")]
    Listen {
        /// The address or socket path.
        what: String,
        /// The reason, already worded.
        why: String,
    },
    /// A system call of the event loop failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> ServerError {
    move |e| ServerError::Sys {
        what,
        source: e.into(),
    }
}

/// What a finished run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted (busy ones included).
    pub accepted: u64,
    /// Connections refused with `error: server busy`.
    pub busy: u64,
    /// Requests answered.
    pub requests: u64,
    /// Connections dropped by the idle timeout.
    pub idle_drops: u64,
}

// Tokens in `epoll_event.data`: a connection's slot number, or one of these.
const WAKE: u64 = u64::MAX;
const TCP_LISTENER: u64 = u64::MAX - 1;
const LOCAL_LISTENER: u64 = u64::MAX - 2;

/// Who is at the other end, for the log.
#[derive(Debug, Clone, Copy)]
enum Peer {
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
enum State {
    /// Reading requests and answering them.
    Open,
    /// No more requests; write what is left, then close the sending side.
    Closing,
    /// Sending side closed; discard input until the peer closes or [`LINGER`] passes.
    Lingering,
}

/// One connection: its socket, its buffers, its state and deadline.
struct Conn {
    fd: OwnedFd,
    peer: Peer,
    /// Bytes received and not yet answered (at most one partial line after a turn).
    inbuf: Vec<u8>,
    /// How much of `inbuf` is known to hold no `\n`.
    scanned: usize,
    /// Answers not yet written.
    outbuf: Vec<u8>,
    /// Complete lines wait in `inbuf`, unanswered, for `outbuf` to drain.
    paused: bool,
    state: State,
    deadline: Option<Instant>,
    /// The epoll events currently asked for.
    interest: EpollFlags,
    /// Its slot in the table, which is also its epoll token.
    token: u64,
}

/// Everything one loop's handlers share besides its connection table.
struct Ctx<'s> {
    epoll: Epoll,
    now: Instant,
    idle: Option<Duration>,
    draining: bool,
    lingering: usize,
    /// Connections served (open or closing) by all loops together.
    open: &'s AtomicUsize,
    /// Figures for the status record.
    live: &'s LiveStats,
    stats: Stats,
    scratch: Vec<u8>,
    log: Option<LogSender>,
}

/// What a running server is doing, for its status record
/// (`ping.NAME.status`, read by `syncomm ls` and `syncomm top`).
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Connections accepted since the start.
    pub accepted: AtomicU64,
    /// Requests answered since the start.
    pub requests: AtomicU64,
    /// Connections open now (all loops together).
    pub open: AtomicUsize,
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    live: Arc<LiveStats>,
    config: ServerConfig,
    tcp: Option<TcpListener>,
    local: Option<(UnixListener, PathBuf, FileId)>,
}

impl Server {
    /// Opens the listeners: TCP (`bind` + `listen`) and the local socket file.
    ///
    /// A local socket file left by a dead server (connecting to it is
    /// refused) is replaced; one that a live server answers on is an error,
    /// as is a TCP port already in use.
    pub fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let tcp = match config.tcp {
            Some(addr) => Some(bind_tcp(addr)?),
            None => None,
        };
        let local = match &config.local {
            Some((dir, name)) => Some(bind_local(&Endpoint::local_path(dir, name))?),
            None => None,
        };
        Ok(Server {
            live: Arc::new(LiveStats::default()),
            config,
            tcp,
            local,
        })
    }

    /// The server's live figures (for its status record).
    pub fn live(&self) -> Arc<LiveStats> {
        self.live.clone()
    }

    /// The TCP address actually bound (with the port chosen for `:0`).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The local socket's path.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        self.local.as_ref().map(|(_, p, _)| p.as_path())
    }

    /// Serves until `shutdown` is requested, logging each request to `log` if given.
    ///
    /// Runs `threads` copies of the event loop (see [`ServerConfig::threads`]).
    /// Passing lines to the log never waits: a stalled or closed output only
    /// costs log lines (dropped and counted by the sink), never service.
    pub fn run(self, shutdown: &Shutdown, log: Option<LogHandle>) -> Result<Stats, ServerError> {
        let nonblocking = |r: io::Result<()>| {
            r.map_err(|e| ServerError::Sys {
                what: "set_nonblocking",
                source: e,
            })
        };
        if let Some(l) = &self.tcp {
            nonblocking(l.set_nonblocking(true))?;
        }
        if let Some((l, _, _)) = &self.local {
            nonblocking(l.set_nonblocking(true))?;
        }
        let json = self.config.json_log;
        let unlinked = AtomicBool::new(false);
        let live = self.live.clone();
        let shared = Shared {
            shutdown,
            open: &live.open,
            live: &live,
            unlinked: &unlinked,
        };
        let results: Vec<Result<Stats, ServerError>> = std::thread::scope(|scope| {
            let this = &self;
            let shared = &shared;
            let others: Vec<_> = (1..self.config.threads.max(1))
                .map(|_| {
                    let log = log.clone().map(|h| LogSender::new(h, json));
                    scope.spawn(move || this.event_loop(shared, log))
                })
                .collect();
            let log = log.map(|h| LogSender::new(h, json));
            let mut results = vec![this.event_loop(shared, log)];
            if results[0].is_err() {
                // This loop failed: make the others stop too.
                shutdown.request();
            }
            results.extend(
                others
                    .into_iter()
                    .map(|h| h.join().expect("event loop panicked")),
            );
            results
        });
        let mut total = Stats::default();
        for r in results {
            let s = r?;
            total.accepted += s.accepted;
            total.busy += s.busy;
            total.requests += s.requests;
            total.idle_drops += s.idle_drops;
        }
        Ok(total)
    }

    /// One event loop: its own epoll set and connections, the listeners
    /// shared with the other loops.
    fn event_loop(
        &self,
        shared: &Shared<'_>,
        log: Option<LogSender>,
    ) -> Result<Stats, ServerError> {
        let shutdown = shared.shutdown;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(sys("epoll_create"))?;
        epoll
            .add(
                shutdown.wake_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, WAKE),
            )
            .map_err(sys("epoll_ctl"))?;
        let mut ctx = Ctx {
            epoll,
            now: Instant::now(),
            idle: self.config.idle_timeout,
            draining: false,
            lingering: 0,
            open: shared.open,
            live: shared.live,
            stats: Stats::default(),
            scratch: vec![0; MAX_LINE + 1],
            log,
        };
        self.listen(&ctx, true).map_err(sys("epoll_ctl"))?;
        let mut conns = Slab::default();
        let sweep_every = match self.config.idle_timeout {
            Some(d) => (d / 4).clamp(Duration::from_millis(5), Duration::from_secs(1)),
            None => Duration::from_secs(1),
        }
        .min(LINGER / 2);
        let mut next_sweep = ctx.now + sweep_every;
        let mut listeners_paused = false;
        let mut drain_until = None;
        let mut events = vec![EpollEvent::empty(); 256];

        loop {
            let wait = next_sweep.saturating_duration_since(ctx.now);
            let timeout = EpollTimeout::try_from(wait + Duration::from_micros(999))
                .unwrap_or(EpollTimeout::MAX);
            let n = match ctx.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(sys("epoll_wait")(e)),
            };
            ctx.now = Instant::now();
            for ev in &events[..n] {
                match ev.data() {
                    // Seen through `shutdown.requested()` below; the byte is
                    // left in place so that every loop wakes up.
                    WAKE => {}
                    TCP_LISTENER | LOCAL_LISTENER if !ctx.draining => {
                        let paused = self.accept_all(ev.data(), &mut ctx, &mut conns);
                        listeners_paused |= paused;
                    }
                    TCP_LISTENER | LOCAL_LISTENER => {}
                    token => {
                        if let Some(conn) = conns.get_mut(token as usize) {
                            if !on_event(conn, ev.events(), &mut ctx) {
                                let conn = conns.remove(token as usize);
                                forget(conn, &mut ctx);
                            }
                        }
                    }
                }
            }
            if shutdown.requested() && !ctx.draining {
                // Stop accepting, stop watching the signal, answer what is in flight.
                ctx.draining = true;
                if !listeners_paused {
                    let _ = self.listen(&ctx, false);
                }
                let _ = ctx.epoll.delete(shutdown.wake_fd());
                if !shared.unlinked.swap(true, Ordering::SeqCst) {
                    if let Some((_, path, id)) = &self.local {
                        unixsock::remove_if_ours(path, *id);
                    }
                }
                drain_until = Some(ctx.now + DRAIN_LIMIT);
                begin_drain(&mut ctx, &mut conns);
            }
            if ctx.now >= next_sweep {
                next_sweep = ctx.now + sweep_every;
                sweep(&mut ctx, &mut conns);
                if listeners_paused && !ctx.draining && self.listen(&ctx, true).is_ok() {
                    listeners_paused = false;
                }
            }
            if let Some(log) = ctx.log.as_mut() {
                log.pass_on();
            }
            if let Some(until) = drain_until {
                if conns.is_empty() || ctx.now >= until {
                    break;
                }
            }
        }
        if let Some(mut log) = ctx.log.take() {
            log.pass_on();
        }
        Ok(ctx.stats)
    }

    /// Accepts every waiting connection on one listener. Returns true when
    /// the listener had to be paused (out of file descriptors).
    fn accept_all(&self, token: u64, ctx: &mut Ctx<'_>, conns: &mut Slab) -> bool {
        // Bounded, so one busy listener cannot starve the connections. With
        // several loops, take one connection per wake-up and leave the rest
        // to whichever loop wakes next: a burst of clients is spread over the
        // loops instead of landing all on the first one awake.
        let batch = if self.config.threads > 1 { 1 } else { 256 };
        for _ in 0..batch {
            let accepted = match token {
                TCP_LISTENER => match self.tcp.as_ref().map(|l| l.accept()) {
                    Some(Ok((s, addr))) => {
                        let _ = s.set_nodelay(true);
                        s.set_nonblocking(true)
                            .map(|()| (OwnedFd::from(s), Peer::Tcp(addr)))
                    }
                    Some(Err(e)) => Err(e),
                    None => return false,
                },
                _ => match self.local.as_ref().map(|(l, _, _)| l.accept()) {
                    Some(Ok((s, _))) => {
                        let pid = getsockopt(&s, sockopt::PeerCredentials)
                            .map(|c| c.pid())
                            .unwrap_or(0);
                        s.set_nonblocking(true)
                            .map(|()| (OwnedFd::from(s), Peer::Local(pid)))
                    }
                    Some(Err(e)) => Err(e),
                    None => return false,
                },
            };
            let (fd, peer) = match accepted {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // Out of descriptors: stop listening until the next sweep,
                    // or level-triggered epoll would report the listener forever.
                    tracing::warn!("accept: {e}; pausing new connections briefly");
                    return self.listen(ctx, false).is_ok();
                }
                Err(e) => {
                    // ECONNABORTED and friends: that one connection is gone.
                    tracing::debug!("accept: {e}");
                    continue;
                }
            };
            ctx.stats.accepted += 1;
            ctx.live.accepted.fetch_add(1, Ordering::Relaxed);
            // Take a place among the --max-conns (shared by all loops), if one is free.
            let max = self.config.max_conns;
            let placed = ctx
                .open
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok();
            if !placed {
                ctx.stats.busy += 1;
                refuse_busy(fd, peer, ctx, conns);
                continue;
            }
            let deadline = ctx.idle.map(|d| ctx.now + d);
            if !register(fd, peer, State::Open, deadline, ctx, conns) {
                ctx.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
        false
    }

    /// Adds the listeners to (or removes them from) this loop's epoll set.
    /// `EPOLLEXCLUSIVE`: a new connection wakes one waiting loop, not all.
    fn listen(&self, ctx: &Ctx<'_>, on: bool) -> nix::Result<()> {
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
        if let Some(l) = &self.tcp {
            match on {
                true => ctx.epoll.add(l, EpollEvent::new(flags, TCP_LISTENER))?,
                false => ctx.epoll.delete(l)?,
            }
        }
        if let Some((l, _, _)) = &self.local {
            match on {
                true => ctx.epoll.add(l, EpollEvent::new(flags, LOCAL_LISTENER))?,
                false => ctx.epoll.delete(l)?,
            }
        }
        Ok(())
    }

    fn close_listeners(&mut self) {
        self.tcp = None;
        if let Some((listener, path, id)) = self.local.take() {
            drop(listener);
            unixsock::remove_if_ours(&path, id);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close_listeners();
    }
}

/// Tells a connection past `--max-conns` that the server is busy, and closes it.
fn refuse_busy(fd: OwnedFd, peer: Peer, ctx: &mut Ctx<'_>, conns: &mut Slab) {
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
fn register(
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
fn forget(conn: Conn, ctx: &mut Ctx<'_>) {
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
fn on_event(conn: &mut Conn, events: EpollFlags, ctx: &mut Ctx<'_>) -> bool {
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
fn answer(conn: &mut Conn, ctx: &mut Ctx<'_>) {
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

/// What [`answer_lines`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Every complete line was answered; a partial line may remain.
    Ok,
    /// The answers reached the budget: the lines after them are kept in
    /// the input buffer, unanswered, for a later call.
    Paused,
    /// A line is over [`MAX_LINE`]: `error: line too long` was appended, the
    /// input was discarded, and the connection must close.
    TooLong,
}

/// The heart of the server: answers each complete line of `inbuf` into
/// `outbuf`, calling `each` per request, and keeps a trailing partial line.
/// `scanned` remembers how far `inbuf` is known to hold no `\n`, so a long
/// line arriving in pieces is scanned once. Once `outbuf` holds `budget`
/// bytes or more, it stops and keeps the remaining lines ([`Lines::Paused`]);
/// so `outbuf` grows to at most `budget` plus one answer (`MAX_LINE + 1`).
pub fn answer_lines(
    inbuf: &mut Vec<u8>,
    scanned: &mut usize,
    outbuf: &mut Vec<u8>,
    budget: usize,
    mut each: impl FnMut(Request<'_>),
) -> Lines {
    let mut start = 0;
    loop {
        if outbuf.len() >= budget {
            inbuf.drain(..start);
            *scanned -= start;
            return Lines::Paused;
        }
        match inbuf[*scanned..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = *scanned + i;
                let line = &inbuf[start..end];
                if line.len() > MAX_LINE {
                    break;
                }
                let req = protocol::parse_request(line);
                protocol::write_reply(req, outbuf);
                each(req);
                start = end + 1;
                *scanned = start;
            }
            None => {
                *scanned = inbuf.len();
                if inbuf.len() - start <= MAX_LINE {
                    inbuf.drain(..start);
                    *scanned -= start;
                    return Lines::Ok;
                }
                break;
            }
        }
    }
    inbuf.clear();
    *scanned = 0;
    outbuf.extend_from_slice(protocol::TOO_LONG);
    Lines::TooLong
}

/// Writes what the connection has to say; chooses the events to wait for.
/// Returns false when the connection must be closed.
fn flush(conn: &mut Conn, ctx: &mut Ctx<'_>) -> bool {
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

/// Drops connections whose deadline passed.
fn sweep(ctx: &mut Ctx<'_>, conns: &mut Slab) {
    let now = ctx.now;
    let expired: Vec<usize> = conns
        .iter()
        .filter(|(_, c)| c.deadline.is_some_and(|d| now >= d))
        .map(|(slot, _)| slot)
        .collect();
    for slot in expired {
        let conn = conns.remove(slot);
        if conn.state == State::Open {
            ctx.stats.idle_drops += 1;
            // Best effort: tell the peer why, then close.
            let _ = nix::unistd::write(&conn.fd, protocol::IDLE);
            if let Some(log) = ctx.log.as_mut() {
                log.event(Event::Idle, conn.peer);
            }
        }
        forget(conn, ctx);
    }
}

/// Shutdown: answer what every connection already sent, then close them all.
fn begin_drain(ctx: &mut Ctx<'_>, conns: &mut Slab) {
    let slots: Vec<usize> = conns.iter().map(|(s, _)| s).collect();
    for slot in slots {
        let conn = conns.get_mut(slot).expect("listed");
        let keep = match conn.state {
            State::Open => {
                // Whatever has arrived: read it, answer it, then close. What
                // has arrived fits in the receive buffer: read no more than
                // that, or a client that keeps sending would keep us here,
                // piling up answers, forever.
                let mut budget = getsockopt(&conn.fd, sockopt::RcvBuf).unwrap_or(MAX_LINE);
                let mut alive = true;
                while budget > 0 {
                    match nix::unistd::read(&conn.fd, &mut ctx.scratch) {
                        Ok(0) => break,
                        Ok(n) => {
                            budget = budget.saturating_sub(n);
                            conn.inbuf.extend_from_slice(&ctx.scratch[..n]);
                            answer(conn, ctx);
                            if conn.state != State::Open || conn.paused {
                                break;
                            }
                        }
                        Err(Errno::EINTR) => {}
                        Err(Errno::EAGAIN) => break,
                        Err(_) => {
                            alive = false;
                            break;
                        }
                    }
                }
                conn.state = State::Closing;
                alive && flush(conn, ctx)
            }
            State::Closing => flush(conn, ctx),
            State::Lingering => false,
        };
        if !keep {
            let conn = conns.remove(slot);
            forget(conn, ctx);
        }
    }
}

/// What a log line reports.
#[derive(Debug, Clone, Copy)]
enum Event {
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
struct LogSender {
    json: bool,
    buf: Vec<u8>,
    sink: LogHandle,
}

impl LogSender {
    fn new(sink: LogHandle, json: bool) -> LogSender {
        LogSender {
            json,
            buf: Vec::with_capacity(4096),
            sink,
        }
    }

    /// Hands this turn's lines to the sink without waiting (they are
    /// dropped and counted there if its backlog is full or its output closed).
    fn pass_on(&mut self) {
        if !self.buf.is_empty() {
            self.sink.send(&self.buf);
            self.buf.clear();
            if self.buf.capacity() > 2 * LOG_TURN {
                self.buf.shrink_to(LOG_TURN);
            }
        }
    }

    /// Adds one line about `event` from `peer`, as text (the seed's wording) or JSON.
    fn event(&mut self, event: Event, peer: Peer) {
        if self.json {
            let mut v = match event {
                Event::Ping(bytes) => {
                    serde_json::json!({"event": "ping", "payload_bytes": bytes.unwrap_or(0)})
                }
                Event::Unknown => serde_json::json!({"event": "unknown_request"}),
                Event::TooLong => serde_json::json!({"event": "line_too_long"}),
                Event::Busy => serde_json::json!({"event": "busy"}),
                Event::Idle => serde_json::json!({"event": "idle_timeout"}),
            };
            match peer {
                Peer::Tcp(addr) => v["peer"] = addr.to_string().into(),
                Peer::Local(pid) => v["peer_pid"] = pid.into(),
            }
            let _ = serde_json::to_writer(&mut *self, &v);
            let _ = self.write_all(b"\n");
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

/// What the loops share.
struct Shared<'s> {
    shutdown: &'s Shutdown,
    /// Figures for the status record.
    live: &'s LiveStats,
    /// Connections served (open or closing) by all loops together.
    open: &'s AtomicUsize,
    /// Whether the local socket file was removed (by the first loop to stop).
    unlinked: &'s AtomicBool,
}

/// A table of connections indexed by slot number (the epoll token).
#[derive(Default)]
struct Slab {
    slots: Vec<Option<Conn>>,
    free: VecDeque<usize>,
    len: usize,
}

impl Slab {
    fn insert(&mut self, conn: Conn) -> usize {
        self.len += 1;
        let slot = match self.free.pop_front() {
            Some(s) => {
                self.slots[s] = Some(conn);
                s
            }
            None => {
                self.slots.push(Some(conn));
                self.slots.len() - 1
            }
        };
        self.slots[slot].as_mut().expect("just stored").token = slot as u64;
        slot
    }
    fn get_mut(&mut self, slot: usize) -> Option<&mut Conn> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }
    fn remove(&mut self, slot: usize) -> Conn {
        let conn = self.slots[slot].take().expect("slot in use");
        self.free.push_back(slot);
        self.len -= 1;
        conn
    }
    fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn iter(&self) -> impl Iterator<Item = (usize, &Conn)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
    }
}

/// Raises a listener's queue of connections not yet accepted to the system
/// maximum (`listen(2)` again on a listening socket only changes the queue),
/// so a thousand clients connecting at once are not made to retry.
fn deepen_backlog<F: std::os::fd::AsFd>(listener: &F) {
    let _ = nix::sys::socket::listen(listener, nix::sys::socket::Backlog::MAXCONN);
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            // Who holds it? If a ping server answers, say so plainly.
            ServerError::Listen {
                what: addr.to_string(),
                why: "address already in use (is another ping-server running? \
                      `--tcp 127.0.0.1:0` picks a free port)"
                    .into(),
            }
        } else {
            ServerError::Listen {
                what: addr.to_string(),
                why: crate::describe_io(&e),
            }
        }
    })?;
    deepen_backlog(&listener);
    Ok(listener)
}

/// Binds the local socket at `path`, replacing a stale one (one winner
/// among servers started at once: see [`syncomm_sys::unixsock`]).
fn bind_local(path: &std::path::Path) -> Result<(UnixListener, PathBuf, FileId), ServerError> {
    let what = path.display().to_string();
    let bound = unixsock::bind(path, 0o600).map_err(|e| match e {
        BindError::Live { .. } => ServerError::InUse { what: what.clone() },
        BindError::NotASocket { .. } => ServerError::Listen {
            what: what.clone(),
            why: "the path exists and is not a socket".into(),
        },
        BindError::Io {
            what: doing,
            source,
            ..
        } => ServerError::Listen {
            what: what.clone(),
            why: format!("{doing}: {}", crate::describe_io(&source)),
        },
        other => ServerError::Listen {
            what: what.clone(),
            why: other.to_string(),
        },
    })?;
    if bound.took_over {
        tracing::info!("replaced stale socket {what}");
    }
    deepen_backlog(&bound.listener);
    Ok((bound.listener, path.to_owned(), bound.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, Vec<u8>, Lines) {
        let mut inbuf = input.to_vec();
        let mut scanned = 0;
        let mut out = Vec::new();
        let r = answer_lines(&mut inbuf, &mut scanned, &mut out, usize::MAX, |_| {});
        (inbuf, out, r)
    }

    #[test]
    fn answers_complete_lines_and_keeps_the_rest() {
        let (rest, out, r) = run(b"ping\nping x\nfoo\npi");
        assert_eq!(out, b"pong\npong x\nerror: unknown request\n");
        assert_eq!(rest, b"pi");
        assert_eq!(r, Lines::Ok);
    }

    #[test]
    fn a_long_line_in_pieces_is_refused() {
        let mut inbuf = Vec::new();
        let mut scanned = 0;
        let mut out = Vec::new();
        let piece = vec![b'x'; 1000];
        let mut result = Lines::Ok;
        for _ in 0..70 {
            inbuf.extend_from_slice(&piece);
            result = answer_lines(&mut inbuf, &mut scanned, &mut out, usize::MAX, |_| {});
            if result == Lines::TooLong {
                break;
            }
        }
        assert_eq!(result, Lines::TooLong);
        assert_eq!(out, protocol::TOO_LONG);
    }

    #[test]
    fn exactly_max_line_is_accepted() {
        let mut line = b"ping ".to_vec();
        line.resize(MAX_LINE, b'a');
        line.push(b'\n');
        let (_, out, r) = run(&line);
        assert_eq!(r, Lines::Ok);
        assert_eq!(out.len(), MAX_LINE + 1);
        line.insert(0, b'p');
        let (_, out, r) = run(&line);
        assert_eq!(r, Lines::TooLong);
        assert_eq!(out, protocol::TOO_LONG);
    }

    #[test]
    fn a_budget_pauses_and_resumes_with_the_same_answers() {
        let input = b"\n\nping a\nping b\n\nx\nping c\npar".repeat(50);
        let (_, whole, _) = run(&input);
        let mut inbuf = input.clone();
        let mut scanned = 0;
        let mut out = Vec::new();
        let mut turns = 0;
        loop {
            let mut chunk = Vec::new();
            let r = answer_lines(&mut inbuf, &mut scanned, &mut chunk, 40, |_| {});
            assert!(chunk.len() < 40 + 30, "{}", chunk.len());
            out.extend_from_slice(&chunk);
            turns += 1;
            if r == Lines::Ok {
                break;
            }
            assert_eq!(r, Lines::Paused);
        }
        assert!(turns > 10);
        assert_eq!(out, whole);
        assert_eq!(inbuf, b"par");
    }
}
