//! The server: `worker serve`. One thread, one `epoll_wait` loop, over
//! - the listening local socket (new callers),
//! - every caller's connection (requests in, answers out),
//! - every child's stdout pipe (answers in) and stdin pipe (requests out),
//! - the shutdown descriptor (SIGINT / SIGTERM).
//!
//! Each descriptor is registered once and changed only when what it waits
//! for changes (`readiness`), so a call costs two `epoll_wait`s beside its
//! reads and writes.
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
//! - A caller sends something that is not a frame of a
//!   [`Request`](crate::protocol::Request): it gets a
//!   [`ToClient::ConnectionError`](crate::protocol::ToClient::ConnectionError)
//!   and its connection is closed.
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

mod children;
mod config;
mod connection;
mod dispatch;
mod event_loop;
mod listener;
mod log;
mod readiness;

use std::collections::{BTreeMap, VecDeque};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use children::{spawn_worker, Worker};
use connection::Conn;
use dispatch::Job;

pub use config::{parse_size, raise_nofile_limit, reserved_fds, Config, ServeError};
pub use listener::{bind, socket_path};
pub use log::LogEvent;

/// Where the server's log events go (see [`Server::start`]).
pub type LogFn = Box<dyn FnMut(&LogEvent) + Send>;

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
/// descriptors): a level-triggered wait would report it ready at once again.
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
    /// The clock of this turn of the loop, read once when its wait returns
    /// (and again after a child is started, which takes a while): idle,
    /// slow-call and task timers count from it.
    now: Instant,
    /// Every descriptor the loop watches (see `readiness`).
    epoll: Epoll,
    /// What `epoll_wait` reported, reused from turn to turn.
    events: Vec<EpollEvent>,
    /// What the listener is registered for.
    listener_watched: Option<EpollFlags>,
    log: LogFn,
}

impl Server {
    /// Binds the socket and starts the children. `log` receives each event
    /// (children started and replaced, callers closed, shutdown); its
    /// `Display` is the text line.
    pub fn start(cfg: Config, mut log: LogFn) -> Result<Server, ServeError> {
        let path = socket_path(&cfg.dir, &cfg.name);
        let (listener, took_over, socket_id) = bind(&cfg.name, &path)?;
        if took_over {
            log(&LogEvent::StaleSocketRemoved { path: path.clone() });
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
            now: Instant::now(),
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
                .map_err(|e| config::io_err("epoll_create")(e.into()))?,
            events: Vec::new(),
            listener_watched: None,
            log,
        };
        for index in 1..=server.cfg.workers {
            let w = spawn_worker(&server.cfg, index)?;
            server.say(LogEvent::WorkerStarted {
                index,
                worker_pid: w.pid,
            });
            server.workers.push(w);
        }
        server.say(LogEvent::Serving {
            name: server.cfg.name.to_string(),
            socket: server.path.clone(),
            workers: server.workers.len(),
        });
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

    fn say(&mut self, event: LogEvent) {
        (self.log)(&event);
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
