//! # syncomm-board
//!
//! The shared board behind the **notify** and **data-sharing** scenarios: a
//! named POSIX shared-memory segment that a `producer` appends random values
//! 0..=100 to, `consumer`s sleep on until their value has appeared, and
//! `monitor`s read without ever taking its lock.
//!
//! ## The mechanism
//! - **Segment** ([`segment`]): one `#[repr(C)]` struct, [`segment::Shared`],
//!   then a ring of recent values. A header (magic, layout fingerprint, sizes)
//!   is checked by every opener; the creator stores the magic last, with
//!   release ordering, so no opener sees a half-built board. Payload types
//!   carry the unsafe marker trait [`segment::ShmSafe`], whose contract says
//!   why sharing them between processes is sound.
//! - **Lock**: a `pthread_mutex_t` made `PTHREAD_PROCESS_SHARED` and
//!   `PTHREAD_MUTEX_ROBUST`. When a holder dies the next locker gets
//!   `EOWNERDEAD`, repairs the board from its redo record (the value being
//!   appended) so the per-value counts sum to the total again, calls
//!   `pthread_mutex_consistent` and goes on ([`Board::lock`]).
//! - **Notification**: a condition variable made of the robust mutex and a
//!   futex word in the segment (a wake-up sequence number): a waiter reads it
//!   under the mutex, unlocks and sleeps in `FUTEX_WAIT` while it is
//!   unchanged; a notifier bumps it under the mutex and `FUTEX_WAKE`s right
//!   after unlocking (so the woken do not block again on the mutex; a locker
//!   that repairs after a holder's death wakes everyone). Consumers register in
//!   `waiting[value]`; the producer notifies only when someone waits for the
//!   value it just appended, so appending stays cheap. Waits re-check their
//!   predicate in a loop. Why not glibc's process-shared `pthread_cond_t`: it
//!   keeps per-waiter references in shared memory, and a waiter killed in its
//!   sleep leaves one behind that makes a later `pthread_cond_broadcast`
//!   block forever (seen on glibc 2.36) — a killed consumer would hang the
//!   producer. The futex word holds no per-waiter state.
//! - **Snapshots**: a sequence counter (seqlock). Writers make it odd, write,
//!   make it even; a reader retries when it changed. A reader that keeps
//!   losing to a flat-out producer asks it for a few microseconds' pause
//!   ([`Board::yield_to_readers`]) instead of taking the lock.
//! - **Finding each other**: the segment's name is written to a link file
//!   `board.NAME.shm` in the runtime directory (published atomically with
//!   `link(2)`); a consumer started first waits for it with inotify (or, when
//!   the kernel has no inotify instance left for us, looks every 50 ms). The
//!   link and the segment are opened without blocking or following a
//!   symlink, and only as regular files of ours
//!   ([`syncomm_sys::openfile`]): a FIFO, a link or another user's object
//!   under the name is refused with one line, even by root.
//!
//! ## Modules
//! - [`segment`]: the layout and its initialisation.
//! - [`mapped`]: the mapping, its header check and the lock-free reads
//!   (snapshot, ring values), which run unchanged over any bytes (the fuzz
//!   check's entry point is [`mapped::Segment::from_bytes`]).
//! - [`board`]: [`Board`] (open, create, lock, snapshot) and [`board::Guard`]
//!   (append, wait, stop).
//! - [`producer`], [`consumer`], [`monitor`]: the three programs' logic.
//! - [`record`]: the attribution record after the ring, and reading
//!   segments for `syncomm ls`.
//! - [`wait`]: waiting for a board to appear, for a signal, for a deadline.
//! - [`liveness`]: is a process alive; a pidfd that tells when it dies.
//! - [`values`]: the seeded value stream.
//!
//! ## Why these crates
//! - `libc`: the pthread process-shared and robust attributes (nix lacks them).
//! - `nix`: shm_open/mmap, inotify, ppoll, shm_unlink, clocks.
//! - `rand`: a portable seeded generator, so `--seed` reproduces a run anywhere.
#![deny(missing_docs)]

pub mod board;
pub mod consumer;
pub mod error;
pub mod liveness;
pub mod mapped;
pub mod monitor;
pub mod producer;
pub mod record;
pub mod segment;
pub mod values;
pub mod wait;
mod watch;

pub use board::{Board, Origin, Snapshot};
pub use error::BoardError;
