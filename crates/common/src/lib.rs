//! # syncomm-common
//!
//! What every syncomm program shares, so that each program's own code shows
//! only its mechanism.
//!
//! ## Contents
//! - [`name`]: rendezvous names (`--name`), validated once.
//! - [`rundir`]: the runtime directory where sockets, registries and link
//!   files live (0700, never a symlink, never another user's).
//! - [`duration`]: durations written `250ms`, `1.5s`, `2m` (a bare number is seconds).
//! - [`exit`]: the exit-code scheme and the `main` runner every binary uses:
//!   one-line errors `PROGRAM: what failed: why`, a broken pipe is a quiet success.
//! - [`shutdown`]: clean shutdown on SIGINT/SIGTERM, as a flag and as a file
//!   descriptor that `poll(2)` can wait on (and that ends a
//!   `syncomm_sys::flock` wait).
//!
//! The OS wrappers (opening runtime files, binding Unix sockets, locks,
//! `/proc`) live in `syncomm-sys`.
//! - [`output`]: `--json` output, one JSON object per line.
//! - [`logsink`]: a server's log output that never blocks it: a bounded
//!   backlog written by a helper thread, lines dropped and counted when the
//!   reader stalls or goes away.
//! - [`frame`]: frames on pipes and sockets: a little-endian `u32` length and a
//!   bincode 2 body.
//!
//! ## Why these crates
//! - `signal-hook`: async-signal-safe handlers written once, well kept.
//! - `bincode` 2 + `serde`: the frame body format fixed in docs/DESIGN.md.
//! - `serde_json`: `--json` output that scripts can parse.
//! - `anyhow`: binaries report error chains; the runner in [`exit`] prints them.
#![deny(missing_docs)]

pub mod duration;
pub mod exit;
pub mod frame;
pub mod logsink;
pub mod name;
pub mod output;
pub mod rundir;
pub mod shutdown;

pub use duration::parse_duration;
pub use exit::{run, Fail};
pub use name::Name;
