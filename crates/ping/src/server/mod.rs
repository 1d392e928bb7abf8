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

mod connection;
mod event_loop;
mod lines;
mod listener;
mod log;
mod slab;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use nix::errno::Errno;
use syncomm_common::rundir::RunDir;
use syncomm_common::Name;

pub use lines::{answer_lines, Lines};
pub use listener::Server;

/// How long a closing connection may linger, discarding input, before it is closed.
pub const LINGER: Duration = Duration::from_secs(1);
/// How long shutdown waits for the last answers to be written.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Answers a connection may have waiting before the server stops answering
/// its next lines (they wait, unread, until the answers are taken): empty
/// lines cost 23 bytes of answer each, so without this bound one read of
/// 64 KiB would queue 1.5 MB of answers per connection.
pub const OUT_BUDGET: usize = 16 * 1024;
/// At most this many bytes of request log wait for a slow reader; past it lines are dropped.
pub const LOG_BACKLOG: usize = 256 * 1024;
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
