//! # syncomm-ping
//!
//! A ping server and client over TCP and local (Unix-domain) sockets: the
//! seed's "Local ping server", made dependable. `ping-server` and
//! `ping-client` are thin wrappers around this crate.
//!
//! ## The protocol ([`protocol`])
//! Text lines: `ping` or `ping PAYLOAD` is answered `pong` or `pong PAYLOAD`;
//! anything else gets `error: unknown request`; a line over 64 KiB gets
//! `error: line too long` and the connection is closed. `echo ping | nc
//! 127.0.0.1 7878` prints `pong`.
//!
//! ## The server ([`server`]): `epoll(7)` event loops
//! Every socket is non-blocking and registered with an epoll instance: the
//! listeners (TCP and local), every connection, and the shutdown descriptor
//! that SIGINT/SIGTERM make readable. `epoll_wait` says which are ready; the
//! loop accepts new connections, reads what arrived into the connection's own
//! buffer, answers every complete line, and writes the answers. Nothing ever
//! blocks, so one slow, silent or hostile client cannot hold up the others,
//! and a thousand connections cost a thousand small buffers, not a thousand
//! threads. The `epoll_wait` timeout doubles as the timer that drops idle
//! connections. Per-connection states: open, closing (flush the last answer,
//! then `shutdown(SHUT_WR)`) and lingering (read and discard what the peer
//! still sends, so that closing never turns into a reset that would destroy
//! the error line it was just sent). `--threads N` runs N copies of the loop,
//! each owning its connections, sharing the listeners (one per CPU by
//! default; `--threads 1` is the single-threaded classic).
//!
//! ## The client ([`client`], [`flood`])
//! [`client::ping`] behaves like `ping(8)`: one request at a time on one
//! connection, one line per reply with its sequence number and round-trip
//! time, a summary at the end; a lost ping (refused, timed out, cut) is
//! counted and the next one reconnects. [`flood::flood`] is the load mode:
//! many connections pinging as fast as they can, then requests/s and
//! latency percentiles.
//!
//! ## Why std's `UnixListener` and not `interprocess`
//! DESIGN.md names `interprocess` for local sockets. Its local sockets hide
//! the file descriptor behind a portable type made for blocking use or
//! async runtimes; this server needs the raw, non-blocking descriptor for
//! `epoll`, and the learner should see the plain `socket(AF_UNIX)` file in
//! the runtime directory. `std::os::unix::net` gives exactly that, with no
//! extra layer, so this crate uses it on both sides.
//!
//! ## Limits
//! [`raise_nofile_limit`] lifts the soft `RLIMIT_NOFILE` to the hard limit at
//! start (server and flood client), so a thousand connections fit.
#![deny(missing_docs)]

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use syncomm_common::rundir::RunDir;
use syncomm_common::Name;

pub mod client;
pub mod flood;
pub mod protocol;
pub mod server;

/// The TCP address served and pinged when none is given.
pub const DEFAULT_TCP: &str = "127.0.0.1:7878";

/// Where a server listens or a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP address, `HOST:PORT`.
    Tcp(SocketAddr),
    /// A local socket `ping.NAME.sock` in the runtime directory.
    Local(RunDir, Name),
}

impl Endpoint {
    /// Resolves `HOST:PORT` (the first address it names).
    pub fn tcp(addr: &str) -> io::Result<Endpoint> {
        addr.to_socket_addrs()?
            .next()
            .map(Endpoint::Tcp)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address found"))
    }

    /// The path of the local socket for `name` in `dir`.
    pub fn local_path(dir: &RunDir, name: &Name) -> PathBuf {
        dir.file("ping", name, "sock")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "{a}"),
            Endpoint::Local(_, n) => write!(f, "local:{n}"),
        }
    }
}

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
pub use syncomm_sys::rlimit::raise_nofile_limit;

/// A short, lower-case description of an I/O error for one-line messages
/// (`connection refused`, not `Connection refused (os error 111)`).
pub fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        io::ErrorKind::NotFound => "no such socket (is ping-server running?)".into(),
        io::ErrorKind::AddrInUse => "address already in use".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
        io::ErrorKind::UnexpectedEof => "connection closed by the server".into(),
        io::ErrorKind::BrokenPipe => "connection closed by the server".into(),
        _ => {
            let s = syncomm_sys::errtext::os_reason(e);
            let mut c = s.chars();
            match c.next() {
                Some(first) => first.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}
