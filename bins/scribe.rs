//! `scribe`: append lines to a shared file under an exclusive `flock`, or
//! verify such a file. See the `syncomm-scribe` crate for the mechanism.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use syncomm_cli::progress::ProgressLine;
use syncomm_cli::{output, Fail};
use syncomm_common::parse_duration;
use syncomm_common::shutdown::Shutdown;
use syncomm_scribe::{Expect, VerifyError, WriteOptions, WriteOutcome};

const EXAMPLES: &str = "
  rm -f shared.txt; scribe --file shared.txt --id 1 --count 1000 &   # writer 1, on a fresh file
  scribe --file shared.txt --id 2 --count 1000; wait                  # writer 2, then wait for 1
  scribe --verify shared.txt --writers 2 --count 1000                 # prints: 2000 lines from 2 writers: ok
  scribe --file slow.txt --count 5 --hold 200ms                       # hold the lock 200 ms after each line";

const EXIT_STATUS: &[&str] = &[
    "  0      every line was written, or the file verified",
    "  1      failure: the file could not be opened or written, or --verify found a problem",
    syncomm_cli::help::EXIT_USAGE,
    "  128+N  stopped by signal N; every line written is whole",
];

const ENVIRONMENT: &[&str] = &[
    "  SYNCOMM_DIR  not used: the writers meet in the file --file names",
    syncomm_cli::help::ENV_RUST_LOG,
];

/// Append lines to a shared file under an exclusive lock, or verify the file.
///
/// Each line is `ID mu: TEXT K` (K = 0..COUNT-1), appended with one write(2)
/// on an O_APPEND descriptor while holding flock(LOCK_EX). A writer killed
/// with kill -9 releases the lock with its descriptor and leaves no torn line.
#[derive(Parser, Debug)]
#[command(
    name = "scribe",
    version,
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, ENVIRONMENT)
)]
struct Args {
    /// The shared file to append to (created 0644; a symlink anywhere on the path is refused).
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "verify",
        required_unless_present = "verify"
    )]
    file: Option<PathBuf>,

    /// Check PATH instead: every line well formed, each writer's lines 0..K-1 in order.
    #[arg(long, value_name = "PATH")]
    verify: Option<PathBuf>,

    /// This writer's id, 1-64 of A-Z a-z 0-9 . _ - (default: the process id).
    #[arg(long, value_name = "ID", conflicts_with = "verify")]
    id: Option<String>,

    /// Lines to append (default 10); with --verify, the lines each writer must have.
    #[arg(long, value_name = "N")]
    count: Option<u64>,

    /// With --verify: the number of writers the file must have.
    #[arg(long, value_name = "N", requires = "verify")]
    writers: Option<u64>,

    /// The text of each line.
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "hello from scribe",
        conflicts_with = "verify"
    )]
    message: String,

    /// Keep the lock this long after each line (e.g. 200ms), to show contention.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, conflicts_with = "verify")]
    hold: Option<Duration>,

    /// fdatasync(2) each line before releasing the lock.
    #[arg(long, conflicts_with = "verify")]
    fsync: bool,

    /// One JSON line: what was appended, or the summary of --verify.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    syncomm_cli::run("scribe", || {
        let args = syncomm_cli::parse::<Args>()?;
        output::enable(args.json);
        match (&args.verify, &args.file) {
            (Some(path), _) => verify(path, &args),
            (None, Some(path)) => write(path, &args),
            (None, None) => Err(Fail::usage("give --file PATH or --verify PATH").into()),
        }
    })
}

fn write(path: &Path, args: &Args) -> anyhow::Result<u8> {
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| std::process::id().to_string());
    if !syncomm_scribe::valid_id(&id) {
        return Err(Fail::usage(format!(
            "invalid --id {id:?} (allowed: 1 to 64 of A-Z a-z 0-9 . _ -)"
        ))
        .into());
    }
    syncomm_scribe::check_message(&args.message)
        .map_err(|e| Fail::usage(format!("--message: {e}")))?;
    let opts = WriteOptions {
        id,
        count: args.count.unwrap_or(10),
        message: args.message.clone(),
        hold: args.hold.unwrap_or(Duration::ZERO),
        fsync: args.fsync,
        progress: syncomm_cli::progress::counter(),
    };
    let shutdown = Shutdown::install().context("installing signal handlers")?;
    let line = |event: &str, written: u64| {
        output::event(event)
            .field("file", path)
            .field("id", &opts.id)
            .field("lines", written)
    };
    // On a terminal: a line counting the lines written (on stderr).
    let progress = opts
        .progress
        .clone()
        .map(|n| ProgressLine::start("scribe", "lines", Some(opts.count), n));
    let outcome = syncomm_scribe::append_lines(path, &opts, &shutdown);
    drop(progress);
    match outcome? {
        WriteOutcome::Done => {
            if args.json {
                output::emit(line("appended", opts.count))?;
            }
            Ok(0)
        }
        WriteOutcome::Interrupted { written } => {
            eprintln!(
                "scribe: interrupted after {written} of {} lines (each written whole)",
                opts.count
            );
            if args.json {
                output::emit(
                    line("interrupted", written)
                        .field("signal", shutdown.signal())
                        .field("exit_code", shutdown.exit_code()),
                )?;
            }
            Ok(shutdown.exit_code())
        }
    }
}

fn verify(path: &Path, args: &Args) -> anyhow::Result<u8> {
    let expect = Expect {
        writers: args.writers,
        count: args.count,
    };
    match syncomm_scribe::verify_file(path, expect) {
        Ok(s) => {
            if args.json {
                output::emit(
                    output::event("verified")
                        .field("file", path)
                        .field("lines", s.lines)
                        .field("writers", s.writers),
                )?;
            } else {
                println!("{} lines from {} writers: ok", s.lines, s.writers);
            }
            Ok(0)
        }
        Err(VerifyError::Bad { path, problem }) => {
            Err(Fail::failed(format!("{}: {problem}", path.display()))
                .with_field("file", path.display().to_string())
                .with_field("problem", problem.to_string())
                .into())
        }
        Err(e) => Err(Fail::failed(e.to_string()).into()),
    }
}
