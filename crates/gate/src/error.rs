//! What can go wrong with a gate: [`GateError`].

use std::io;
use std::path::PathBuf;

/// What went wrong with a gate.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The runtime file is a symlink.
    #[error("runtime file {0} is a symlink; refusing it (remove it)")]
    Symlink(PathBuf),
    /// The runtime file belongs to another user.
    #[error("runtime file {path} is owned by uid {owner}, not by us (uid {me}); refusing it (if no other user's gate is using it, remove it)")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        me: u32,
    },
    /// The runtime file is not a regular file.
    #[error("runtime file {0} is not a regular file (remove it)")]
    NotRegular(PathBuf),
    /// The runtime file holds something else than a gate key.
    #[error("runtime file {path} is not a gate file (it holds {content:?}); if no gate named {name} is running, remove it")]
    Garbage {
        /// The file.
        path: PathBuf,
        /// The semaphore's name.
        name: String,
        /// The start of what it holds.
        content: String,
    },
    /// Reading, writing or locking the runtime file failed.
    #[error("runtime file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The runtime file's lock stayed held past the deadline (a holder that
    /// is stopped, say).
    #[error("timed out after {waited}: the lock on runtime file {path} is held by {holder}, which does not release it (is it stopped?)")]
    FileLocked {
        /// The file.
        path: PathBuf,
        /// How long we waited, as written (`300ms`).
        waited: String,
        /// Who holds the lock: `pid N`, or `another process`.
        holder: String,
    },
    /// A shutdown signal arrived while waiting for the runtime file's lock.
    #[error("interrupted while waiting for the lock on runtime file {0}")]
    Interrupted(PathBuf),
    /// The semaphore exists with another slot count.
    #[error("semaphore {name} has {current} slots, not {asked} (its count is fixed while it exists; use --slots {current}, another --name, or gate --remove --name {name} when it is idle)")]
    SlotsDiffer {
        /// The semaphore's name.
        name: String,
        /// Its slot count.
        current: u16,
        /// The count asked for.
        asked: u16,
    },
    /// A System V call failed.
    #[error("{call} on semaphore {name}: {source}")]
    Sys {
        /// The call.
        call: &'static str,
        /// The semaphore's name.
        name: String,
        /// Why.
        source: nix::Error,
    },
    /// `--remove` while slots are held or processes wait.
    #[error(
        "semaphore {name} is in use ({held} of {slots} slots held, {waiting} waiting); not removed"
    )]
    InUse {
        /// The semaphore's name.
        name: String,
        /// Slots held.
        held: u16,
        /// Slot count.
        slots: u16,
        /// Processes waiting.
        waiting: u32,
    },
    /// Every slot semaphore was taken although the counter let us in (cannot
    /// happen while every process uses this library).
    #[error("semaphore {0} has no free slot although its counter let us in (was it changed by another program?)")]
    Inconsistent(String),
    /// The set holds values no gate leaves (see [`status_from`](crate::status_from)).
    #[error("semaphore {0} holds values no gate leaves (was it changed by another program?); gate --remove --name {0} when it is idle")]
    Tampered(String),
}

impl GateError {
    /// Whether the error says the set was removed while we used it.
    pub fn is_removed(&self) -> bool {
        matches!(
            self,
            GateError::Sys {
                source: nix::Error::EIDRM | nix::Error::EINVAL,
                ..
            }
        )
    }
}
