//! # syncomm-benchsuite
//!
//! The benchmark suite behind `syncomm-bench` and `./launch bench`: every
//! scenario's figures, each beside a raw-syscall floor measured in the same run.
//!
//! ## Structure
//! - [`Ctx`]: where the release binaries are, a scratch runtime directory, quick or full.
//! - [`Figure`]: one measured figure: median, p99, the floor beside it, the target.
//! - [`scenarios`]: one module per scenario, each `pub fn run(&Ctx) -> anyhow::Result<Vec<Figure>>`.
//! - [`stats`]: medians and percentiles.
#![deny(missing_docs)]

use std::path::PathBuf;
use std::process::Command;

pub mod stats;

/// One module per scenario; each measures its figures.
pub mod scenarios {
    pub mod discover;
    pub mod gate;
    pub mod guard;
    pub mod notify;
    pub mod ping;
    pub mod pipeline;
    pub mod scribe;
    pub mod worker;
}

/// What a benchmark needs to run.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `--quick`: fewer iterations, the whole suite within a minute.
    pub quick: bool,
    /// The directory holding the release binaries (`target/release`).
    pub bin_dir: PathBuf,
    /// A scratch directory, also used as `SYNCOMM_DIR` for the programs started.
    pub work_dir: PathBuf,
}

impl Ctx {
    /// A command for one of syncomm's binaries, with `SYNCOMM_DIR` set to the scratch directory.
    pub fn cmd(&self, bin: &str) -> Command {
        let mut c = Command::new(self.bin_dir.join(bin));
        c.env("SYNCOMM_DIR", &self.work_dir);
        c.env_remove("RUST_LOG");
        c
    }

    /// `full` iterations in a full run, `quick` in a quick one.
    pub fn iters(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// The unit of a figure, which also says which direction is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Unit {
    /// Microseconds per operation (latency): lower is better.
    Micros,
    /// Milliseconds of wall time: lower is better.
    Millis,
    /// Operations per second (throughput): higher is better.
    PerSec,
}

/// A baseline measured in the same run and in the same unit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Floor {
    /// What the floor is: "pipe round trip", "cat | cat | cat", "flock(1)".
    pub name: String,
    /// Its median.
    pub median: f64,
}

/// A target named in the scenario's issue.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Target {
    /// The target as written: "≤ 25 µs", "≥ 5 M/s", "≤ 1.5 × floor".
    pub text: String,
    /// Whether this run met it.
    pub met: bool,
}

/// One measured figure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    /// The scenario: "notify", "pipeline", ...
    pub scenario: &'static str,
    /// What is measured: "wake-up latency", "append rate".
    pub what: String,
    /// The unit of `median`, `p99` and the floor.
    pub unit: Unit,
    /// Median over the samples.
    pub median: f64,
    /// 99th percentile, where there are enough samples.
    pub p99: Option<f64>,
    /// The floor measured beside it.
    pub floor: Option<Floor>,
    /// Key of the seed Python implementation's figure for the same thing (bench/seed.py).
    pub python_key: Option<&'static str>,
    /// The target, and whether it was met.
    pub target: Option<Target>,
}
