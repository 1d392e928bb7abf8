//! # syncomm-cli
//!
//! The command-line side of syncomm's programs, used by the binaries
//! (`bins/*.rs`) and the benchmark suite only: the libraries take their
//! configuration as values and never depend on this crate, so they compile
//! no `anyhow`, `clap` or `tracing-subscriber` (and its `regex`).
//!
//! ## Contents
//! - [`exit`]: the exit-code scheme and the `main` runner every binary uses:
//!   one-line errors `PROGRAM: what failed: why`, a broken pipe is a quiet success.
//! - [`output`]: `--json` output, one JSON object per line in one envelope
//!   (`program`, `event`, `pid`, `ts_ms`), and the `error` line of a failure.
//! - [`progress`]: a status line redrawn in place on a terminal, for long work.
//! - [`log`]: the stderr log subscriber (`RUST_LOG`) the runner installs.
//! - [`args`]: the options the programs share (`--name`, `--json`), as clap
//!   `#[derive(Args)]` structs to `#[command(flatten)]`, and [`run_dir`]:
//!   the runtime directory named by the environment (`SYNCOMM_DIR`), the
//!   one place it is read.
//! - [`help`]: the one layout of every program's `--help` (Examples, Exit
//!   status, Environment).
//! - [`generate`]: manual pages, shell completions and a parse-only check,
//!   made by each program from its own clap definition (`SYNCOMM_GENERATE`).
//!
//! ## Why these crates
//! - `anyhow`: binaries report error chains; the runner in [`exit`] prints them.
//! - `clap`: argument parsing with `--help` and `--version` for free.
//! - `clap_mangen`, `clap_complete`: manual pages and shell completions from
//!   the same clap definitions, so they never disagree with `--help`.
//! - `serde_json`: `--json` output that scripts can parse.
//! - `tracing-subscriber`: the filter (`RUST_LOG`) and format of log lines.
#![deny(missing_docs)]

pub mod args;
pub mod exit;
pub mod generate;
pub mod help;
pub mod log;
pub mod output;
pub mod progress;

pub use args::{parse, run_dir, CommonArgs};
pub use exit::{run, Fail};
