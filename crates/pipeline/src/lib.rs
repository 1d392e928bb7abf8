//! # syncomm-pipeline
//!
//! Pipes & filters: the `filter` program's stages and the chain of processes
//! that runs them, joined by `pipe(2)`.
//!
//! ## The mechanism
//! With one stage, `filter` is an ordinary Unix filter: it reads lines from
//! stdin and writes results to stdout. With two or more, it builds the chain
//! itself: one child process per stage, each child this same program in a
//! single-stage mode, the stages joined by pipes the parent creates (no shell).
//! End-of-file flows down the chain, `EPIPE` flows up it, and each child
//! reports how it ended on a report pipe of its own (see [`chain`]).
//!
//! ## Modules
//! - [`stage`]: the stages (`add N`, `upper`, `grep TEXT`, ...) and their specs.
//! - [`int`]: allocation-free, checked `i64` parsing and formatting.
//! - [`stream`]: one stage over a byte stream, with big buffers and bounded memory.
//! - [`chain`]: spawning, joining and supervising the stage processes.
//!
//! ## Promises
//! - Bounded memory: input is read in 128 KiB buffers; a line may be at most
//!   1 MiB (`pass` streams anything).
//! - Integer stages use checked arithmetic: overflow is an error, never a wrap.
//! - A failing or killed stage fails the whole command and is named; a reader
//!   going away early is a quiet success; no stage outlives its parent.
#![deny(missing_docs)]

pub mod chain;
pub mod int;
pub mod stage;
pub mod stream;

pub use chain::{run_chain, run_child_owning_fd, run_here, Report, StageReport, Status};
pub use stage::{Stage, StageSpec, LIST};
