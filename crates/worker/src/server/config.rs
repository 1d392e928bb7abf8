//! How to run a pool ([`Config`], sizes, descriptors) and why it can fail ([`ServeError`]).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use syncomm_common::frame;
use syncomm_common::rundir::RunDir;
use syncomm_common::Name;

use super::{DEFAULT_DRAIN_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BUFFERED, DEFAULT_MAX_CONNS};

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
/// listener, the shutdown pipe, the epoll set, and per child two pipes plus a few while a
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

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}
