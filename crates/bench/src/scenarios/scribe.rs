//! Benchmarks of the shared-file scenario (`scribe`).
//!
//! - **append rate**: 4 `scribe` processes append 100,000 lines between them
//!   (no `--fsync`), lines per second of wall time from the first start to the
//!   last exit. Floor: 4 forked processes doing the same raw `write(2)`s on an
//!   `O_APPEND` descriptor *without* any lock, in the same run.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Context};

use crate::{Ctx, Figure, Floor, Target, Unit};

const WRITERS: u64 = 4;
const LINES: u64 = 100_000;

/// Measures the scribe scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    // Four processes contending for one lock: who wins each turn shifts from
    // run to run (one trial took 1.23 M lines/s, the next 1.50 M), so the
    // median takes more of these cheap trials (about 75 ms each).
    let rounds = ctx.many_trials();
    let file = ctx.work_dir.join("bench-scribe.txt");
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        floor.push(LINES as f64 / raw_appends(&file)?);
        ours.push(LINES as f64 / scribes(ctx, &file)?);
    }
    let _ = std::fs::remove_file(&file);
    let paired = crate::trials::Paired::from_runs(&floor, &ours);
    let median = paired.subject.median();
    let mut f = Figure {
        id: "scribe.append",
        scenario: "shared-file",
        what: format!("{WRITERS} scribes appending {LINES} lines under flock (no --fsync)"),
        unit: Unit::PerSec,
        median,
        p99: None,
        floor: Some(Floor {
            name: format!("{WRITERS} processes, raw O_APPEND write(2) per line, no lock"),
            hops: Some(format!("{WRITERS} processes → one O_APPEND file")),
            ..Default::default()
        }),
        python_key: Some("scribe_lines_per_s"),
        target: Some(Target {
            text: "≥ 300 K lines/s".into(),
            met: median >= 300_000.0,
        }),
        ..Default::default()
    };
    paired.apply(&mut f);
    Ok(vec![f])
}

/// Runs 4 scribes at once on a fresh file; returns the wall time in seconds.
fn scribes(ctx: &Ctx, file: &Path) -> anyhow::Result<f64> {
    let _ = std::fs::remove_file(file);
    let per = (LINES / WRITERS).to_string();
    let start = Instant::now();
    let children: Vec<_> = (0..WRITERS)
        .map(|i| {
            ctx.cmd("scribe")
                .arg("--file")
                .arg(file)
                .args(["--id", &i.to_string(), "--count", &per])
                .spawn()
                .context("starting scribe")
        })
        .collect::<anyhow::Result<_>>()?;
    for mut c in children {
        ensure!(c.wait()?.success(), "a scribe failed");
    }
    let secs = start.elapsed().as_secs_f64();
    let data = std::fs::read(file)?;
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    ensure!(lines == LINES, "expected {LINES} lines, found {lines}");
    Ok(secs)
}

/// The floor: 4 forked processes, each writing its share of pre-formatted
/// lines with one write(2) each on an O_APPEND descriptor, no lock.
fn raw_appends(file: &Path) -> anyhow::Result<f64> {
    let _ = std::fs::remove_file(file);
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(file)?;
    let lines: Vec<Vec<u8>> = (0..WRITERS)
        .map(|i| {
            (0..LINES / WRITERS)
                .flat_map(|k| format!("{i} mu: hello from scribe {k}\n").into_bytes())
                .collect()
        })
        .collect();
    let start = Instant::now();
    let mut pids = Vec::new();
    for buf in &lines {
        // SAFETY: the child only calls write(2) and _exit(2), both
        // async-signal-safe, on memory prepared before the fork.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => {
                let mut rest: &[u8] = buf;
                while !rest.is_empty() {
                    let end = rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(rest.len(), |i| i + 1);
                    // SAFETY: `rest[..end]` is live memory of `end` bytes.
                    let n = unsafe { libc::write(f.as_raw_fd(), rest.as_ptr().cast(), end) };
                    if n <= 0 {
                        // SAFETY: _exit ends the child without running destructors.
                        unsafe { libc::_exit(1) };
                    }
                    rest = &rest[end..];
                }
                // SAFETY: as above.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => pids.push(child),
        }
    }
    for pid in pids {
        let st = nix::sys::wait::waitpid(pid, None)?;
        ensure!(
            matches!(st, nix::sys::wait::WaitStatus::Exited(_, 0)),
            "raw writer failed: {st:?}"
        );
    }
    Ok(start.elapsed().as_secs_f64())
}
