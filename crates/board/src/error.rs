//! The board's errors.

use std::io;
use std::path::PathBuf;

/// What can go wrong with a board.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// No board of that name exists (no link, or its segment is gone).
    #[error(
        "no board named {name:?} in {} (is a producer running with the same SYNCOMM_DIR? start one with `producer --name {name}`)", dir.display()
    )]
    NotFound {
        /// The board's name.
        name: String,
        /// The runtime directory searched.
        dir: PathBuf,
    },
    /// Something under the board's name is not a board of this layout.
    #[error("{} is not a syncomm board: {why} (remove it, or start `producer --fresh` to replace it)", path.display())]
    Foreign {
        /// The link file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A live producer already runs the board.
    #[error("board {name:?} already has a live producer (pid {pid})")]
    HasProducer {
        /// The board's name.
        name: String,
        /// The producer's pid.
        pid: i32,
    },
    /// A request that makes no sense (capacity out of range or mismatched).
    #[error("{0}")]
    Usage(String),
    /// The lock cannot be made consistent again.
    #[error(
        "the board's lock is not recoverable (error {0}); recreate it with `producer --fresh`"
    )]
    Unrecoverable(i32),
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// Another process held the board's lock past our bound without letting
    /// go (a producer stopped with Ctrl-Z, say).
    #[error("the board's lock stayed held for {waited}{}", match producer {
        Some(pid) => format!(" (producer pid {pid} is alive but not letting go: stopped?)"),
        None => String::new(),
    })]
    LockHeld {
        /// How long we waited, as written for people.
        waited: String,
        /// The board's producer, if it is alive.
        producer: Option<i32>,
    },
}
