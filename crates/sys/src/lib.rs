//! # syncomm-sys
//!
//! The one OS layer of syncomm (in the manner of mio's `sys/unix`): each
//! operating-system fact the programs share is written here once, and every
//! `unsafe` block that wraps a system call for more than one program lives
//! here, each with a `// SAFETY:` comment. Where `rustix` or `nix` has a safe
//! wrapper it is used; `libc` only where neither has one.
//!
//! ## Contents
//! - [`proc`]: a process stamp (pid + start time), `/proc/PID/stat` parsing,
//!   and the one rule for "dead" (zombie, dead, or exiting); "cannot tell" is
//!   never "dead".
//! - [`pidfd`]: a process file descriptor: open, wait until the process
//!   ends, signal exactly that process, reap it with `waitid(P_PIDFD)`.
//! - [`futex`]: `futex(2)` wait and wake on a shared word.
//! - [`flock`]: an interruptible, optionally bounded `flock(2)`: Ctrl-C and
//!   a deadline end the wait.
//! - [`unixsock`]: binding a Unix socket, taking over a stale one; removing
//!   it only while it is still ours.
//! - [`openfile`]: opening a runtime file without following a symlink or
//!   blocking on a FIFO; only a regular file of ours.
//! - [`spawn`]: a child that dies with its parent (`PR_SET_PDEATHSIG` and the
//!   `getppid` race check).
//! - [`errtext`]: an OS error as one short line.
//! - [`rlimit`]: raising `RLIMIT_NOFILE` to the hard limit.
//! - [`tty`]: the terminal's size.
#![deny(missing_docs)]

pub mod errtext;
pub mod flock;
pub mod futex;
pub mod openfile;
pub mod pidfd;
pub mod proc;
pub mod rlimit;
pub mod spawn;
pub mod tty;
pub mod unixsock;
