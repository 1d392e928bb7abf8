//! # syncomm-discover
//!
//! Processes started in any order, in separate shells, find each other and
//! meet: each leaves its id in a registry file and waits until M live members
//! are present, then all print the same list. The seed's Python version spins
//! on the file; this one sleeps in `poll(2)` until something changes.
//!
//! ## The mechanism
//! - **Registry** ([`registry`]): a small text file per rendezvous name,
//!   replaced whole by `rename(2)` under an exclusive `flock(2)` on a lock file,
//!   so readers never see half a file and a member killed mid-update leaves
//!   nothing broken.
//! - **Liveness** (`syncomm_sys::proc::Stamp`): each entry holds the member's pid and process
//!   start time; whoever next updates the registry prunes entries whose process
//!   is gone or whose pid now belongs to another process.
//! - **Waiting**: `poll(2)` on an inotify descriptor watching the runtime
//!   directory (another member changed the registry; set up when a member
//!   first has to wait, then the registry is read once more), one pidfd per other
//!   member (a member died: a dead process writes nothing, so only its pidfd
//!   can tell), and the SIGINT/SIGTERM wake-up descriptor, bounded by
//!   `--timeout`. Each wake-up re-reads the registry; no spinning. Members
//!   beyond the descriptor budget ([`fds`]) are checked in `/proc` now and
//!   then instead; one whose state cannot be read is never taken for dead.
//! - **Barrier**: the member whose arrival makes M fixes the group in the
//!   registry (`group a b c`). Then each member marks itself `seen`. The one
//!   whose mark makes everyone `seen` removes the registry and lock files; the
//!   others wake on that removal and leave, knowing the barrier completed
//!   (only a finished group is ever cleared away). So nobody leaves before all
//!   have seen the group, and the next group under the same name starts afresh.
//!   A member arriving while a group is finishing waits for the next group.
//!
//! ## Guarantees
//! - All members of a group print the same sorted list: it is fixed once, in
//!   the registry, by the member that completed the group.
//! - A member killed before the group is complete is pruned; a replacement may
//!   take its id, and the group completes. A member killed after the group is
//!   complete does not hold up the others' barrier.
//! - The same id twice while its first holder lives is refused.
//! - On `--timeout` or SIGINT/SIGTERM a member removes its entry before it exits.
//!
//! ## Modules
//! - [`id`]: member ids and their natural order.
//! - liveness: pid + start time and pidfds, from `syncomm_sys` (`proc`, `pidfd`).
//! - [`registry`]: the file format, atomic replacement, the lock.
//! - `protocol`: the pure decision a member makes at each look, with its tests.
//! - `member`: a member's run loop ([`discover`]): locking, liveness, waiting.
//! - `listing`: the read-only view behind `--list` ([`list`]).
#![deny(missing_docs)]

pub mod fds;
pub mod id;
mod listing;
mod member;
mod protocol;
pub mod registry;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use syncomm_common::Name;

pub use id::{IdError, MemberId};
pub use listing::{list, Listed, Listing};
pub use member::discover;
use registry::{FileError, MAX_MEMBERS};

/// What a member asks for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The rendezvous name.
    pub name: Name,
    /// Our id.
    pub id: MemberId,
    /// M, the group size.
    pub members: usize,
    /// Give up after this long.
    pub timeout: Option<Duration>,
}

/// A group met: every member prints the same `group`.
#[derive(Debug)]
pub struct Found {
    /// Our id.
    pub id: MemberId,
    /// All M ids, sorted.
    pub group: Vec<MemberId>,
    /// The inotify watch of a member that had to wait, closed when this is
    /// dropped. Closing an inotify descriptor waits for an RCU grace period
    /// in the kernel (5–30 ms here), so report the group first, then drop.
    pub watch: Option<nix::sys::inotify::Inotify>,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--members` out of range.
    #[error("--members {0} is out of range (1 to {MAX_MEMBERS})")]
    BadMembers(usize),
    /// Our id is held by a live process.
    #[error("id {id} is already taken by pid {pid}, which is still running; choose another --id")]
    IdTaken {
        /// The id.
        id: MemberId,
        /// Its holder.
        pid: i32,
    },
    /// The registry is for another group size.
    #[error("group {name} is waiting for {have} members, not {want}; use --members {have} or another --name")]
    Mismatch {
        /// The name.
        name: Name,
        /// M in the registry.
        have: usize,
        /// M asked for.
        want: usize,
    },
    /// Our own entry disappeared (the registry was removed or replaced by hand).
    #[error("our entry {id} vanished from the registry {path} (was it removed by hand?)")]
    Vanished {
        /// Our id.
        id: MemberId,
        /// The registry.
        path: PathBuf,
    },
    /// `--timeout` passed.
    #[error("timed out after {after}: {waiting}")]
    Timeout {
        /// The timeout.
        after: String,
        /// What we were waiting for.
        waiting: String,
    },
    /// SIGINT or SIGTERM.
    #[error("interrupted by {}: {waiting}", signal.as_str())]
    Interrupted {
        /// The signal.
        signal: Signal,
        /// What we were waiting for.
        waiting: String,
    },
    /// A registry or lock file problem.
    #[error("registry: {0}")]
    File(#[from] FileError),
    /// Some other system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What failed.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
}

impl Error {
    /// The exit code this error maps to: 2 for a usage error, 128+N for a
    /// member stopped by signal N (as a shell reports a death by that
    /// signal), 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::BadMembers(_) => 2,
            Error::Interrupted { signal, .. } => 128 + *signal as u8,
            _ => 1,
        }
    }
}
