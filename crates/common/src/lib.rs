//! # syncomm-common
//!
//! What every syncomm program shares, so that each program's own code shows
//! only its mechanism.
//!
//! ## Contents
//! - [`attribution`]: the record every kernel object of ours carries (its
//!   runtime directory and name), so `syncomm ls` can trace orphans.
//! - [`status`]: servers' status records (`KIND.NAME.status`) for `syncomm ls`/`top`.
//! - [`waitnote`]: the one line a waiting program prints on a terminal, and
//!   the `--help` paragraph about the runtime directory.
//! - [`name`]: rendezvous names (`--name`), validated once.
//! - [`rundir`]: the runtime directory where sockets, registries and link
//!   files live (0700, never a symlink, never another user's).
//! - [`duration`]: durations written `250ms`, `1.5s`, `2m` (a bare number is seconds).
//! - [`shutdown`]: clean shutdown on SIGINT/SIGTERM, as a flag and as a file
//!   descriptor that `poll(2)` can wait on (and that ends a
//!   `syncomm_sys::flock` wait).
//! - [`logsink`]: a server's log output that never blocks it: a bounded
//!   backlog written by a helper thread, lines dropped and counted when the
//!   reader stalls or goes away.
//! - [`frame`]: frames on pipes and sockets: a little-endian `u32` length and a
//!   bincode 2 body.
//! - [`jsonl`]: the one envelope of every `--json` line (`program`, `event`,
//!   `pid`, `ts_ms`, then the event's fields), and its rounding rules.
//!
//! The OS wrappers (opening runtime files, binding Unix sockets, locks,
//! `/proc`) live in `syncomm-sys`.
//!
//! ## Why these crates
//! - `signal-hook`: async-signal-safe handlers written once, well kept.
//! - `bincode` 2 + `serde`: the frame body format fixed in docs/DESIGN.md.
//!
//! The command line (the `main` runner, `--json` output, logging set-up,
//! the options every program shares) is in `syncomm-cli`, which only the
//! binaries use: this crate and the libraries built on it compile no
//! `anyhow`, `clap` or `tracing-subscriber`.
#![deny(missing_docs)]

pub mod attribution;
pub mod duration;
pub mod frame;
pub mod jsonl;
pub mod logsink;
pub mod name;
pub mod rundir;
pub mod shutdown;
pub mod status;
pub mod waitnote;

pub use duration::parse_duration;
pub use name::Name;
