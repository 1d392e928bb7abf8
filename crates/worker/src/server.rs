//! The server: `worker serve`. One thread, one `poll(2)` loop, over
//! - the listening local socket (new callers),
//! - every caller's connection (requests in, answers out),
//! - every child's stdout pipe (answers in) and stdin pipe (requests out),
//! - the shutdown descriptor (SIGINT / SIGTERM).
//!
//! ## Calls
//! A request from a caller becomes a `Job` with a server-wide id. Jobs wait
//! in `pending` until a child has room: each child takes up to
//! [`PIPELINE_DEPTH`] jobs at once, so its pipe never runs dry under load,
//! and jobs go to the child with the fewest, so a lone call always goes to an
//! idle child; a child busy with one call for over [`SLOW_CALL`] is passed
//! over while another child can take the job. A child answers its jobs in
//! the order it got them, so its `running` queue is a FIFO: the front job is
//! the one it is running now.
//!
//! ## Faults
//! - A child's stdout ends (it aborted, was killed, exited): the front job's
//!   caller gets `worker 2 (pid N) died from signal 6 while running abort`;
//!   the child's other jobs had not started, so they go back to the front of
//!   `pending` (never lost, never run twice); a new child takes the slot.
//! - The front job runs past `--task-timeout`: the child is killed, its
//!   caller gets a timeout error, the rest as above.
//! - A caller sends something that is not a frame of a [`Request`]: it gets
//!   a [`ToClient::ConnectionError`] and its connection is closed.
//! - A caller goes away with calls in flight: their answers are dropped.
//! - A caller sends faster than the pool works, or never reads its answers:
//!   past [`MAX_IN_FLIGHT_PER_CONN`] calls or [`MAX_UNSENT_PER_CONN`] bytes of
//!   unread answers, the server stops reading its socket until it catches
//!   up (back-pressure), so its memory stays bounded and others are served.
//! - Memory in total: every byte the server buffers (callers' partial and
//!   queued frames, answers not yet read, calls waiting or running) counts
//!   against `--max-buffered`. Past it the server stops reading callers
//!   (back-pressure), except a few KiB from a caller with nothing buffered,
//!   so a small call still gets through while big ones wait; a child only
//!   gets a new call while its pipe buffer is empty.
//! - Descriptors: past `--max-conns` (by default what the open-file limit
//!   leaves after the children's pipes) a newcomer is told "server busy" and
//!   closed; a caller with nothing in flight that completes no request for
//!   `--idle-timeout` is closed, so idle callers cannot hold every place. An
//!   `accept` failure is logged at most once per [`ACCEPT_WARN_EVERY`].
//! - SIGINT/SIGTERM: stop accepting, remove the socket, stop reading
//!   callers (calls already read but not started are refused as "shutting
//!   down"; a flood of new ones cannot hold the pool up), finish every call
//!   already accepted whose caller is still there (a child whose calls have
//!   all lost their callers is killed at once), close the children's stdin
//!   (they exit), exit. After `--drain-timeout` the calls still running are
//!   answered with a "shutting down" error and their children killed.
//! - The server is killed with SIGKILL: each child was started with
//!   `PR_SET_PDEATHSIG = SIGKILL`, so the kernel kills it too.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use syncomm_common::duration::format_duration;
use syncomm_common::frame::{self, FrameError};
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::Name;

use crate::protocol::{CallError, CallErrorKind, Request, Response, ToClient};
use crate::registry;
use crate::wire::{Fill, InBuf, OutBuf};

/// Jobs a child holds at once (one running, the rest waiting in its pipe).
pub const PIPELINE_DEPTH: usize = 8;

/// A child whose current call has run longer than this gets new calls
/// only when every child is in such a call.
pub const SLOW_CALL: Duration = Duration::from_millis(2);

/// Calls one connection may have in flight before the server stops reading
/// from it (back-pressure on a caller that sends faster than the pool works).
pub const MAX_IN_FLIGHT_PER_CONN: usize = 4096;

/// Bytes of answers a connection may leave unread before the server stops
/// taking its requests (back-pressure on a caller that sends and never reads).
pub const MAX_UNSENT_PER_CONN: usize = 1 << 20;

/// How long the server waits, after the last call is finished at shutdown,
/// for callers to read their answers and for children to exit.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long the listener is left alone after `accept` failed (out of file
/// descriptors): a level-triggered poll would report it ready at once again.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Bytes read from one descriptor per turn of the loop (fairness).
const READ_LIMIT: usize = 1 << 20;

/// What a caller with nothing buffered may still send while the server is
/// past `--max-buffered`: enough for a small call.
pub const SMALL_CALL_ALLOWANCE: usize = 4096;

/// The default `--max-buffered`: 256 MiB.
pub const DEFAULT_MAX_BUFFERED: usize = 256 << 20;

/// The default `--idle-timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default `--drain-timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The most connections served by default (the open-file limit may lower it).
pub const DEFAULT_MAX_CONNS: usize = 4096;

/// An `accept` failure is logged at most once per this long.
pub const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// How to run a pool.
#[derive(Debug, Clone)]
pub struct Config {
    /// The runtime directory where the socket is bound.
    pub dir: RunDir,
    /// The rendezvous name.
    pub name: Name,
    /// Number of child processes.
    pub workers: usize,
    /// A call running longer than this gets its child killed and replaced.
    pub task_timeout: Option<Duration>,
    /// The largest request body accepted from a caller.
    pub max_frame: u32,
    /// The child program and its arguments (normally this same binary with
    /// `--stdio`).
    pub child_command: Vec<String>,
    /// Bytes buffered in total (all connections, queues and pipes) past
    /// which the server stops reading callers.
    pub max_buffered: usize,
    /// Connections served at once; more are told the server is busy.
    pub max_conns: usize,
    /// A caller with nothing in flight that completes no request for this
    /// long is closed (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// At shutdown, the longest the server waits for calls still running.
    pub drain_timeout: Duration,
}

impl Config {
    /// A configuration with the defaults for everything but the runtime
    /// directory, the name, the number of children and the child command.
    pub fn new(dir: RunDir, name: Name, workers: usize, child_command: Vec<String>) -> Config {
        Config {
            dir,
            name,
            workers,
            task_timeout: None,
            max_frame: frame::DEFAULT_MAX_FRAME,
            child_command,
            max_buffered: DEFAULT_MAX_BUFFERED,
            max_conns: DEFAULT_MAX_CONNS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// Descriptors the server needs besides its callers: standard streams, the
/// listener, the shutdown pipe, and per child two pipes plus a few while a
/// replacement is being started.
pub fn reserved_fds(workers: usize) -> usize {
    16 + 2 * workers + 8
}

/// Lifts the soft open-file limit to the hard one; returns the limit now in
/// force.
pub use syncomm_sys::rlimit::raise_nofile_limit;

/// Reads a byte count: `1048576`, `512K`, `64MiB`, `1G` (powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number such as 256MiB"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("invalid size {s:?}: the unit must be K, M or G")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

/// Why the server could not start or went down.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another server is live on the name.
    #[error("a server is already serving {name}{} (socket {path})", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyServing {
        /// The name.
        name: Name,
        /// The socket path.
        path: PathBuf,
        /// The live server's pid, when the kernel told us.
        pid: Option<i32>,
    },
    /// Something is at the socket path that is not a socket.
    #[error("{0} exists and is not a socket; remove it or pick another --name")]
    NotASocket(PathBuf),
    /// A child could not be started.
    #[error("starting worker {index}: {source}")]
    Spawn {
        /// Its slot.
        index: usize,
        /// Why.
        source: io::Error,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// The socket path for `name`: `{rundir}/worker.NAME.sock`.
pub fn socket_path(dir: &RunDir, name: &Name) -> PathBuf {
    dir.file("worker", name, "sock")
}

/// Binds the listening socket (mode 0600) at `path`, taking over a stale
/// socket file left by a crashed server and refusing when a server answers
/// (one winner among servers started at once: see
/// [`syncomm_sys::unixsock`]).
///
/// Returns the listener, whether a stale file was removed, and the new
/// file's identity (to remove it on the way out only while it is ours).
pub fn bind(
    name: &Name,
    path: &Path,
) -> Result<(UnixListener, bool, syncomm_sys::unixsock::FileId), ServeError> {
    use syncomm_sys::unixsock::{self, BindError};
    let bound = unixsock::bind(path, 0o600).map_err(|e| match e {
        BindError::Live { pid, .. } => ServeError::AlreadyServing {
            name: name.clone(),
            path: path.to_owned(),
            pid,
        },
        BindError::NotASocket { .. } => ServeError::NotASocket(path.to_owned()),
        BindError::Io { what, source, .. } => io_err(format!("{what} {}", path.display()))(source),
        other => io_err(format!("binding {}", path.display()))(io::Error::other(other.to_string())),
    })?;
    bound
        .listener
        .set_nonblocking(true)
        .map_err(io_err("making the listener non-blocking"))?;
    Ok((bound.listener, bound.took_over, bound.id))
}

/// One call on its way through the pool.
#[derive(Debug)]
struct Job {
    /// Bytes it holds (its request's frame body), counted in `jobs_bytes`.
    cost: usize,
    /// The caller's connection.
    conn: u64,
    /// The caller's own request id.
    caller_id: u64,
    /// The request as sent to a child (its id is the server-wide job id).
    req: Request,
}

/// One caller's connection.
struct Conn {
    stream: UnixStream,
    /// Who is at the other end, for log lines: `pid 123, uid 1000`.
    peer: String,
    inbuf: InBuf,
    outbuf: OutBuf,
    /// Calls accepted and not yet answered.
    in_flight: usize,
    /// The caller shut down its sending side; answer what is in flight, then close.
    read_closed: bool,
    /// The caller broke the protocol; send the error, then close.
    doomed: bool,
    /// When it last completed a request or was sent an answer.
    active: Instant,
}

impl Conn {
    /// Back-pressure: too many of its calls in the pool, or too many of its
    /// answers not yet read by it. Its requests wait (in its socket) meanwhile.
    fn held_back(&self) -> bool {
        self.in_flight >= MAX_IN_FLIGHT_PER_CONN || self.outbuf.unsent() >= MAX_UNSENT_PER_CONN
    }

    /// Whether to read from its socket: not after its end or an error, and not
    /// while a whole request already waits in `inbuf` (it is held back).
    fn wants_input(&self, max_frame: u32) -> bool {
        !self.read_closed && !self.doomed && !self.inbuf.frame_ready(max_frame)
    }
}

/// One child process and its two pipes.
struct Worker {
    /// 1-based slot number, kept by replacements ("worker 2").
    index: usize,
    pid: i32,
    process: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    inbuf: InBuf,
    outbuf: OutBuf,
    /// Jobs sent to it, oldest first; the front one is running.
    running: VecDeque<Job>,
    /// When the front job started running.
    head_since: Instant,
}

/// How a child left.
enum Ending {
    /// Its stdout ended (it died or exited on its own).
    Ended,
    /// We killed it: its front job ran past the task timeout.
    TimedOut {
        /// The limit.
        limit: Duration,
        /// The job that ran past it.
        job: u64,
    },
    /// It sent something that is not a response to its front job.
    Misbehaved(String),
}

/// What a running pool is doing, for its status record
/// (`worker.NAME.status`, read by `syncomm ls` and `syncomm top`).
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Children running.
    pub workers: AtomicUsize,
    /// Calls answered since the start (results and errors).
    pub calls: AtomicU64,
    /// Calls waiting for a child.
    pub queue: AtomicUsize,
    /// Calls running in children.
    pub running: AtomicUsize,
    /// Callers connected.
    pub connections: AtomicUsize,
}

/// A running pool: listener, connections, children.
pub struct Server {
    /// Figures for the status record.
    live: Arc<LiveStats>,
    cfg: Config,
    path: PathBuf,
    /// The identity of the socket file we bound (see `unixsock::FileId`).
    socket_id: syncomm_sys::unixsock::FileId,
    listener: Option<UnixListener>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    workers: Vec<Worker>,
    pending: VecDeque<Job>,
    next_job: u64,
    draining: Option<Instant>,
    /// `accept` failed (out of descriptors): the listener rests until then.
    accept_paused: Option<Instant>,
    /// When an `accept` failure was last logged, and failures since.
    accept_warned: Option<Instant>,
    accept_failures: u64,
    /// Bytes held by jobs (waiting or running).
    jobs_bytes: usize,
    /// Bytes buffered in total, as of this turn (see [`Server::total_buffered`]).
    buffered: usize,
    /// Past the budget with no call waiting or running, the connection that
    /// may still finish its frame: the one with the most of a frame
    /// received (so the pool never stalls on unfinished frames alone).
    privileged: Option<u64>,
    /// When idle connections were last looked for.
    swept: Instant,
    log: Box<dyn Write>,
}

/// What a turn of the poll loop watches.
#[derive(Clone, Copy)]
enum Source {
    Wake,
    Listener,
    Conn(u64),
    WorkerOut(usize),
    WorkerIn,
}

impl Server {
    /// Binds the socket and starts the children. `log` receives one line per
    /// event (children started and replaced, shutdown).
    pub fn start(cfg: Config, mut log: Box<dyn Write>) -> Result<Server, ServeError> {
        let path = socket_path(&cfg.dir, &cfg.name);
        let (listener, took_over, socket_id) = bind(&cfg.name, &path)?;
        if took_over {
            let _ = writeln!(
                log,
                "removed stale socket {} (its server is gone)",
                path.display()
            );
        }
        let mut server = Server {
            live: Arc::new(LiveStats::default()),
            cfg,
            path,
            socket_id,
            listener: Some(listener),
            conns: BTreeMap::new(),
            next_conn: 0,
            workers: Vec::new(),
            pending: VecDeque::new(),
            next_job: 0,
            draining: None,
            accept_paused: None,
            accept_warned: None,
            accept_failures: 0,
            jobs_bytes: 0,
            buffered: 0,
            privileged: None,
            swept: Instant::now(),
            log,
        };
        for index in 1..=server.cfg.workers {
            let w = spawn_worker(&server.cfg, index)?;
            server.say(format!("worker {index} started (pid {})", w.pid));
            server.workers.push(w);
        }
        let n = server.workers.len();
        server.say(format!(
            "serving {} at {} ({n} {})",
            server.cfg.name,
            server.path.display(),
            if n == 1 { "worker" } else { "workers" }
        ));
        Ok(server)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pool's live figures (updated every turn of its loop).
    pub fn live(&self) -> Arc<LiveStats> {
        self.live.clone()
    }

    fn say(&mut self, line: String) {
        let _ = writeln!(self.log, "{line}");
        let _ = self.log.flush();
    }

    /// Serves until `shutdown` is requested and every accepted call is
    /// answered; then stops the children and removes the socket.
    pub fn run(mut self, shutdown: &Shutdown) -> Result<(), ServeError> {
        loop {
            if shutdown.requested() && self.draining.is_none() {
                self.begin_drain(shutdown);
            }
            if let Some(since) = self.draining {
                self.drop_orphaned_children();
                if since.elapsed() > self.cfg.drain_timeout {
                    self.abandon_calls();
                }
                let calls_done =
                    self.pending.is_empty() && self.workers.iter().all(|w| w.running.is_empty());
                let answers_out = self.conns.values().all(|c| c.outbuf.is_empty());
                if calls_done
                    && (answers_out || since.elapsed() > self.cfg.drain_timeout + SHUTDOWN_GRACE)
                {
                    break;
                }
            }
            (self.buffered, self.privileged) = self.total_buffered();
            let ready = self.wait(shutdown)?;
            for (source, revents) in ready {
                match source {
                    Source::Wake => shutdown.drain(),
                    Source::Listener => self.accept(),
                    Source::Conn(id) => {
                        self.conn_readable(id);
                        if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                            // Both directions closed: the caller is gone,
                            // its answers are dropped.
                            self.conns.remove(&id);
                        }
                    }
                    Source::WorkerOut(i) => self.worker_readable(i)?,
                    Source::WorkerIn => {} // flushed below
                }
            }
            self.check_timeouts()?;
            self.sweep_idle();
            // Requests left unread by back-pressure may now fit.
            let ids: Vec<u64> = self.conns.keys().copied().collect();
            for id in ids {
                self.take_requests(id);
            }
            self.dispatch();
            self.flush_all();
            let r = Ordering::Relaxed;
            self.live.workers.store(self.workers.len(), r);
            self.live.queue.store(self.pending.len(), r);
            let running = self.workers.iter().map(|w| w.running.len()).sum();
            self.live.running.store(running, r);
            self.live.connections.store(self.conns.len(), r);
        }
        self.stop_children();
        self.say("stopped".to_owned());
        Ok(())
    }

    fn begin_drain(&mut self, shutdown: &Shutdown) {
        self.draining = Some(Instant::now());
        self.listener = None;
        syncomm_sys::unixsock::remove_if_ours(&self.path, self.socket_id);
        // Calls whose callers left are not worth waiting for.
        let conns = &self.conns;
        let (keep, orphans): (VecDeque<Job>, VecDeque<Job>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|j| conns.contains_key(&j.conn));
        self.pending = keep;
        for job in orphans {
            self.retire(job.cost);
        }
        self.drop_orphaned_children();
        let in_flight =
            self.pending.len() + self.workers.iter().map(|w| w.running.len()).sum::<usize>();
        let sig = match shutdown.signal() {
            Some(s) => Signal::try_from(s)
                .map(|s| s.as_str().to_owned())
                .unwrap_or(s.to_string()),
            None => "request".to_owned(),
        };
        let calls = if in_flight == 1 { "call" } else { "calls" };
        self.say(format!(
            "stopping ({sig}): finishing {in_flight} {calls} in flight"
        ));
    }

    /// One `poll(2)`: which descriptors are ready.
    fn wait(&self, shutdown: &Shutdown) -> Result<Vec<(Source, PollFlags)>, ServeError> {
        // Two parallel lists: what each descriptor is, and the descriptor.
        let mut sources = Vec::with_capacity(2 + self.conns.len() + 2 * self.workers.len());
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(sources.capacity());
        let mut watch = |fd, flags, s| {
            sources.push(s);
            fds.push(PollFd::new(fd, flags));
        };
        watch(shutdown.wake_fd(), PollFlags::POLLIN, Source::Wake);
        let resting = self.accept_paused.is_some_and(|t| Instant::now() < t);
        if let (Some(l), false) = (&self.listener, resting) {
            watch(l.as_fd(), PollFlags::POLLIN, Source::Listener);
        }
        for (id, c) in &self.conns {
            let mut flags = PollFlags::empty();
            if self.draining.is_none()
                && c.wants_input(self.cfg.max_frame)
                && self.read_room(*id, c) > 0
            {
                flags |= PollFlags::POLLIN;
            }
            if !c.outbuf.is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            watch(c.stream.as_fd(), flags, Source::Conn(*id));
        }
        for (i, w) in self.workers.iter().enumerate() {
            watch(w.stdout.as_fd(), PollFlags::POLLIN, Source::WorkerOut(i));
            if !w.outbuf.is_empty() {
                watch(w.stdin.as_fd(), PollFlags::POLLOUT, Source::WorkerIn);
            }
        }
        let timeout = self.poll_timeout();
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => return Err(io_err("poll")(e.into())),
        }
        Ok(sources
            .into_iter()
            .zip(fds.iter())
            .filter_map(|(s, fd)| fd.revents().filter(|r| !r.is_empty()).map(|r| (s, r)))
            .collect())
    }

    /// Until the earliest task deadline; bounded while draining.
    fn poll_timeout(&self) -> PollTimeout {
        let now = Instant::now();
        let mut until: Option<Duration> = self.draining.map(|_| Duration::from_millis(50));
        if let Some(t) = self.accept_paused.filter(|t| *t > now) {
            let left = t - now;
            until = Some(until.map_or(left, |u| u.min(left)));
        }
        if let (Some(idle), false) = (self.cfg.idle_timeout, self.conns.is_empty()) {
            let left = (self.swept + sweep_every(idle)).saturating_duration_since(now);
            until = Some(until.map_or(left, |u| u.min(left)));
        }
        if let Some(limit) = self.cfg.task_timeout {
            for w in &self.workers {
                if !w.running.is_empty() {
                    let left = (w.head_since + limit).saturating_duration_since(now);
                    until = Some(until.map_or(left, |u| u.min(left)));
                }
            }
        }
        match until {
            None => PollTimeout::NONE,
            Some(d) => {
                // Round up so we never wake just before the deadline.
                let ms = d.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        }
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.conns.len() >= self.cfg.max_conns {
                        // One small write to a fresh socket: it fits.
                        let busy = frame::encode_frame(&ToClient::ConnectionError(format!(
                            "server busy: {} connections open (--max-conns); try again later",
                            self.conns.len()
                        )));
                        if let Ok(bytes) = busy {
                            let _ = (&stream).write(&bytes);
                        }
                        continue;
                    }
                    self.next_conn += 1;
                    let peer = nix::sys::socket::getsockopt(
                        &stream,
                        nix::sys::socket::sockopt::PeerCredentials,
                    )
                    .map_or_else(
                        |_| "peer unknown".to_owned(),
                        |c| format!("pid {}, uid {}", c.pid(), c.uid()),
                    );
                    self.conns.insert(
                        self.next_conn,
                        Conn {
                            stream,
                            peer,
                            inbuf: InBuf::default(),
                            outbuf: OutBuf::default(),
                            in_flight: 0,
                            read_closed: false,
                            doomed: false,
                            active: Instant::now(),
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: keep serving those we have, and
                    // leave the listener alone a moment rather than spin on
                    // it; say so at most once per ACCEPT_WARN_EVERY.
                    let now = Instant::now();
                    self.accept_failures += 1;
                    if self
                        .accept_warned
                        .map_or(true, |t| now.duration_since(t) >= ACCEPT_WARN_EVERY)
                    {
                        let n = self.accept_failures;
                        let times = if n == 1 {
                            String::new()
                        } else {
                            format!(" ({n} failures since the last warning)")
                        };
                        tracing::warn!("accept: {e}; pausing new connections briefly{times}");
                        self.accept_warned = Some(now);
                        self.accept_failures = 0;
                    }
                    self.accept_paused = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    fn conn_readable(&mut self, id: u64) {
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
    fn take_requests(&mut self, id: u64) {
        let max = self.cfg.max_frame;
        let draining = self.draining.is_some();
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
                c.active = Instant::now();
                let _ = c.outbuf.push(&ToClient::Answer(Response {
                    id: req.id,
                    result: Err(err),
                }));
                continue;
            }
            c.in_flight += 1;
            c.active = Instant::now();
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
    fn doom(&mut self, id: u64, err: &FrameError) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let msg = match err {
            FrameError::Malformed(_) => format!("{err} (expected a Request frame)"),
            _ => err.to_string(),
        };
        let line = format!(
            "connection {id} ({}) broke the protocol: {msg}; closed",
            c.peer
        );
        let _ = c.outbuf.push(&ToClient::ConnectionError(msg));
        c.doomed = true;
        c.inbuf.clear();
        self.say(line);
    }

    /// Sends a job's result to its caller, if the caller is still there.
    fn answer(&mut self, job: Job, result: Result<crate::protocol::Value, CallError>) {
        self.retire(job.cost);
        self.live.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.conns.get_mut(&job.conn) {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.active = Instant::now();
            let _ = c.outbuf.push(&ToClient::Answer(Response {
                id: job.caller_id,
                result,
            }));
        }
    }

    /// Reads what child `i` has written and passes its answers on. Returns
    /// how the read ended and, if the child broke the protocol, how.
    fn read_answers(&mut self, i: usize) -> (io::Result<Fill>, Option<String>) {
        let max_answer = crate::protocol::max_answer(self.cfg.max_frame);
        let w = &mut self.workers[i];
        let fill = w.inbuf.fill(&mut w.stdout, READ_LIMIT);
        let mut done = Vec::new();
        let mut bad = None;
        loop {
            match w.inbuf.next_frame(max_answer) {
                Ok(None) => break,
                Ok(Some(body)) => match frame::decode_body::<Response>(body) {
                    Ok(resp) if w.running.front().is_some_and(|j| j.req.id == resp.id) => {
                        let job = w.running.pop_front().expect("front checked");
                        // The next job starts now.
                        w.head_since = Instant::now();
                        done.push((job, resp.result));
                    }
                    Ok(resp) => {
                        bad = Some(format!("answered job {} out of turn", resp.id));
                        break;
                    }
                    Err(e) => {
                        bad = Some(e.to_string());
                        break;
                    }
                },
                Err(e) => {
                    bad = Some(e.to_string());
                    break;
                }
            }
        }
        for (job, result) in done {
            self.answer(job, result);
        }
        (fill, bad)
    }

    fn worker_readable(&mut self, i: usize) -> Result<(), ServeError> {
        match self.read_answers(i) {
            (_, Some(why)) => self.replace(i, Ending::Misbehaved(why)),
            (Ok(Fill::Eof) | Err(_), None) => self.replace(i, Ending::Ended),
            (Ok(_), None) => Ok(()),
        }
    }

    fn check_timeouts(&mut self) -> Result<(), ServeError> {
        let Some(limit) = self.cfg.task_timeout else {
            return Ok(());
        };
        let overdue = |w: &Worker| !w.running.is_empty() && w.head_since.elapsed() >= limit;
        for i in 0..self.workers.len() {
            if overdue(&self.workers[i]) {
                // An answer may have arrived since poll returned: take it
                // first (a child replaced meanwhile is not overdue).
                self.worker_readable(i)?;
                if overdue(&self.workers[i]) {
                    let job = self.workers[i].running[0].req.id;
                    self.replace(i, Ending::TimedOut { limit, job })?;
                }
            }
        }
        Ok(())
    }

    /// Reaps the child in slot `i`, settles its jobs and starts another.
    fn replace(&mut self, i: usize, ending: Ending) -> Result<(), ServeError> {
        let w = &mut self.workers[i];
        // Already dead, or closed its stdout, or overdue: make sure it is gone.
        let _ = kill(Pid::from_raw(w.pid), Signal::SIGKILL);
        let how = match w.process.wait() {
            Ok(status) => match (status.signal(), status.code()) {
                (Some(sig), _) => format!("died from signal {sig}"),
                (None, Some(code)) => format!("exited with status {code}"),
                _ => "ended".to_owned(),
            },
            Err(e) => format!("could not be reaped ({e})"),
        };
        if !matches!(ending, Ending::Misbehaved(_)) {
            // Answers it wrote before it died are still in the pipe: they
            // count (the pipe ends now that the child is gone).
            while let (Ok(Fill::Limit), None) = self.read_answers(i) {}
        }
        let w = &mut self.workers[i];
        let who = format!("worker {} (pid {})", w.index, w.pid);
        let mut jobs = std::mem::take(&mut w.running);
        let index = w.index;
        let mut front = jobs.pop_front();
        if let (Ending::TimedOut { job, .. }, Some(f)) = (&ending, &front) {
            if f.req.id != *job {
                // The overdue job answered just before the kill; the one
                // after it had barely started: it goes round again.
                jobs.push_front(front.take().expect("checked"));
            }
        }
        // The others had not started: back to the front of the queue, in order.
        for job in jobs.into_iter().rev() {
            self.pending.push_front(job);
        }
        let line = match (&ending, front) {
            (Ending::TimedOut { limit, .. }, Some(job)) => {
                let line = format!(
                    "{who} ran {} past the task timeout of {}: killed",
                    job.req.function,
                    format_duration(*limit)
                );
                let msg = format!(
                    "timed out after {} ({who} was killed and replaced)",
                    format_duration(*limit)
                );
                self.answer(job, Err(CallError::new(CallErrorKind::Timeout, msg)));
                line
            }
            (Ending::Misbehaved(why), front) => {
                if let Some(job) = front {
                    let msg = format!(
                        "{who} broke the protocol while running {}: {why}",
                        job.req.function
                    );
                    self.answer(job, Err(CallError::new(CallErrorKind::WorkerDied, msg)));
                }
                format!("{who} broke the protocol ({why}): killed")
            }
            (_, Some(job)) => {
                let msg = format!("{who} {how} while running {}", job.req.function);
                self.answer(
                    job,
                    Err(CallError::new(CallErrorKind::WorkerDied, msg.clone())),
                );
                msg
            }
            (_, None) => format!("{who} {how} while idle"),
        };
        self.say(line);
        let fresh = spawn_worker(&self.cfg, index)?;
        self.say(format!("worker {index} started (pid {})", fresh.pid));
        self.workers[i] = fresh;
        Ok(())
    }

    /// Hands pending jobs to the children with the fewest jobs.
    fn dispatch(&mut self) {
        let now = Instant::now();
        // A child whose current call has run for a while may be in a long
        // one: queue behind it only when every child is like that (else the
        // job waits here for a quick child to have room).
        let slow =
            |w: &Worker| !w.running.is_empty() && now.duration_since(w.head_since) > SLOW_CALL;
        let all_slow = self.workers.iter().all(slow);
        while let Some(job) = self.pending.front() {
            if !self.conns.contains_key(&job.conn) {
                // Its caller left before it started: nobody wants the answer.
                let job = self.pending.pop_front().expect("front checked");
                self.retire(job.cost);
                continue;
            }
            // Past the budget a child gets a call only once its pipe buffer
            // is empty (so the pool never stalls, and holds one copy at most).
            let over = self.buffered >= self.cfg.max_buffered;
            let Some(w) = self
                .workers
                .iter_mut()
                .filter(|w| w.running.len() < PIPELINE_DEPTH && (all_slow || !slow(w)))
                .filter(|w| !over || w.outbuf.is_empty())
                .min_by_key(|w| w.running.len())
            else {
                return;
            };
            let job = self.pending.pop_front().expect("front checked");
            if w.outbuf.push(&job.req).is_err() {
                // Cannot happen for values that decoded; answer rather than lose it.
                self.answer(
                    job,
                    Err(CallError::new(
                        CallErrorKind::Failed,
                        "cannot encode the request",
                    )),
                );
                continue;
            }
            if w.running.is_empty() {
                w.head_since = Instant::now();
            }
            self.buffered += job.cost;
            w.running.push_back(job);
        }
    }

    fn flush_all(&mut self) {
        for w in &mut self.workers {
            // EPIPE means the child died; its stdout's end tells us the rest.
            let _ = w.outbuf.flush_to(&mut w.stdin);
        }
        self.conns.retain(|_, c| {
            if c.outbuf.flush_to(&mut c.stream).is_err() {
                return false; // the caller is gone
            }
            let finished = c.outbuf.is_empty() && (c.doomed || (c.read_closed && c.in_flight == 0));
            !finished
        });
    }

    /// A job leaves the pool: its bytes no longer count.
    fn retire(&mut self, cost: usize) {
        debug_assert!(cost <= self.jobs_bytes, "job bytes miscounted");
        self.jobs_bytes = self.jobs_bytes.saturating_sub(cost);
    }

    /// Bytes buffered in total: every connection's and child pipe's buffers
    /// and every job waiting or running; and the connection with the most
    /// of an unfinished frame (see `privileged`).
    fn total_buffered(&self) -> (usize, Option<u64>) {
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
    fn read_room(&self, id: u64, c: &Conn) -> usize {
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
    fn sweep_idle(&mut self) {
        let Some(idle) = self.cfg.idle_timeout else {
            return;
        };
        let now = Instant::now();
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
            let s = if closed == 1 { "" } else { "s" };
            self.say(format!(
                "closed {closed} idle connection{s} (no request for {limit})"
            ));
        }
    }

    /// While draining: a child none of whose calls has a caller any more is
    /// killed at once (its calls are dropped; no replacement is started).
    fn drop_orphaned_children(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            let w = &self.workers[i];
            let orphaned = !w.running.is_empty()
                && w.running.iter().all(|j| !self.conns.contains_key(&j.conn));
            if !orphaned {
                i += 1;
                continue;
            }
            let mut w = self.workers.remove(i);
            let _ = kill(Pid::from_raw(w.pid), Signal::SIGKILL);
            let _ = w.process.wait();
            let n = w.running.len();
            for job in std::mem::take(&mut w.running) {
                self.retire(job.cost);
            }
            let calls = if n == 1 { "call" } else { "calls" };
            self.say(format!(
                "worker {} (pid {}) killed: the callers of its {n} {calls} left",
                w.index, w.pid
            ));
            if !self.pending.is_empty() {
                // Calls with callers still wait: they need this place.
                if let Ok(fresh) = spawn_worker(&self.cfg, w.index) {
                    self.say(format!("worker {} started (pid {})", w.index, fresh.pid));
                    self.workers.insert(i, fresh);
                    i += 1;
                }
            }
        }
    }

    /// Past `--drain-timeout`: every call not yet finished is answered with
    /// a "shutting down" error and the children running them are killed.
    fn abandon_calls(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let mut abandoned = pending.len();
        let msg = format!(
            "the server shut down before the call finished (--drain-timeout {})",
            format_duration(self.cfg.drain_timeout)
        );
        for job in pending {
            self.answer(job, Err(CallError::new(CallErrorKind::ShuttingDown, &*msg)));
        }
        let mut i = 0;
        while i < self.workers.len() {
            if self.workers[i].running.is_empty() {
                i += 1;
                continue;
            }
            let mut w = self.workers.remove(i);
            let _ = kill(Pid::from_raw(w.pid), Signal::SIGKILL);
            let _ = w.process.wait();
            for job in std::mem::take(&mut w.running) {
                abandoned += 1;
                self.answer(job, Err(CallError::new(CallErrorKind::ShuttingDown, &*msg)));
            }
        }
        if abandoned > 0 {
            let calls = if abandoned == 1 { "call" } else { "calls" };
            self.say(format!(
                "drain timeout ({}): {abandoned} {calls} abandoned",
                format_duration(self.cfg.drain_timeout)
            ));
        }
    }

    /// Closes every child's stdin (they exit at the end of their input) and
    /// reaps them, killing any that does not exit within the grace period.
    fn stop_children(&mut self) {
        let workers = std::mem::take(&mut self.workers);
        let mut procs = Vec::new();
        for w in workers {
            drop(w.stdin);
            procs.push((w.index, w.pid, w.process));
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        for (index, pid, mut p) in procs {
            loop {
                match p.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        tracing::warn!("worker {index} (pid {pid}) did not exit: killing it");
                        let _ = p.kill();
                        let _ = p.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // However we leave (error included), the children go and the socket too.
        for w in &mut self.workers {
            let _ = w.process.kill();
            let _ = w.process.wait();
        }
        if self.listener.is_some() {
            syncomm_sys::unixsock::remove_if_ours(&self.path, self.socket_id);
        }
    }
}

/// How often idle connections are looked for: a few times per timeout.
fn sweep_every(idle: Duration) -> Duration {
    (idle / 4).max(Duration::from_millis(10))
}

/// Starts the child for slot `index`: the child command with its stdin and
/// stdout as pipes, killed by the kernel if this process dies.
fn spawn_worker(cfg: &Config, index: usize) -> Result<Worker, ServeError> {
    let spawn_err = |source| ServeError::Spawn { index, source };
    let (program, args) = cfg
        .child_command
        .split_first()
        .ok_or_else(|| spawn_err(io::Error::other("empty child command")))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Killed by the kernel if we die, even by SIGKILL.
    syncomm_sys::spawn::kill_child_with_us(&mut cmd);
    let mut process = cmd.spawn().map_err(spawn_err)?;
    let stdin = process.stdin.take().expect("piped");
    let stdout = process.stdout.take().expect("piped");
    for fd in [stdin.as_fd(), stdout.as_fd()] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| spawn_err(e.into()))?;
    }
    Ok(Worker {
        index,
        pid: process.id() as i32,
        process,
        stdin,
        stdout,
        inbuf: InBuf::default(),
        outbuf: OutBuf::default(),
        running: VecDeque::new(),
        head_since: Instant::now(),
    })
}
