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
//! - [`floor`]: the four raw floors (pipe, Unix socket, TCP loopback, futex
//!   round trips between two processes), measured in the same run.
//! - [`suite`]: runs the floors, every scenario module and the seed's Python;
//!   a failing module becomes a "not measured" row, never an abort.
//! - [`report`]: the one table (text or Markdown), `results.json`, `ratios.svg`.
//! - [`python`]: runs `bench/seed.py` and reads its figures.
//!
//! ## Writing a scenario module
//! `pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>>`: start the release
//! binaries with [`Ctx::cmd`], measure each figure beside its own floor in the
//! same unit, set `python_key` to one of [`report::PYTHON_KEYS`], and keep
//! `ctx.quick` to a few seconds.
#![deny(missing_docs)]

use std::path::PathBuf;
use std::process::Command;

use cpu::{CpuConfig, Cpus};
use syncomm_common::rundir::{RunDir, RunDirError};

pub mod baseline;
pub mod cpu;
pub mod curves;
pub mod floor;
pub mod peers;
pub mod python;
pub mod report;
pub mod stats;
pub mod suite;
pub mod trials;

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
    /// The CPU configuration the figures are measured in.
    pub config: CpuConfig,
    /// The CPUs A and B of the configurations.
    pub cpus: Cpus,
}

impl Ctx {
    /// A context: quick or full, the binaries' directory, a scratch directory.
    pub fn new(quick: bool, bin_dir: impl Into<PathBuf>, work_dir: impl Into<PathBuf>) -> Ctx {
        Ctx {
            quick,
            bin_dir: bin_dir.into(),
            work_dir: work_dir.into(),
            config: CpuConfig::Unpinned,
            cpus: Cpus::detect(),
        }
    }

    /// The same context in configuration `config`.
    pub fn with_config(mut self, config: CpuConfig) -> Ctx {
        self.config = config;
        self
    }

    /// The scratch directory as the runtime directory the libraries are
    /// given (the programs started with [`Ctx::cmd`] get it as `SYNCOMM_DIR`).
    pub fn run_dir(&self) -> Result<RunDir, RunDirError> {
        RunDir::open(&self.work_dir)
    }

    /// A command for one of syncomm's binaries, with `SYNCOMM_DIR` set to the
    /// scratch directory, pinned to the other side's CPUs (it and everything it starts).
    pub fn cmd(&self, bin: &str) -> Command {
        let mut c = self.unpinned_cmd(bin);
        self.pin_peer(&mut c);
        c
    }

    /// Like [`Ctx::cmd`], but on the measuring side's CPUs (a load generator
    /// such as `ping-client --flood` is the measuring side).
    pub fn main_cmd(&self, bin: &str) -> Command {
        let mut c = self.unpinned_cmd(bin);
        cpu::pin_command(&mut c, &self.main_cpus());
        c
    }

    /// The command with its environment, not yet pinned (each command is
    /// pinned once: [`cpu::pin_command`] adds nothing when the affinity is
    /// inherited, so a second pinning could not undo a first).
    fn unpinned_cmd(&self, bin: &str) -> Command {
        let mut c = Command::new(self.bin_dir.join(bin));
        c.env("SYNCOMM_DIR", &self.work_dir);
        c.env_remove("RUST_LOG");
        c
    }

    /// Pins `cmd`'s process to the other side's CPUs.
    pub fn pin_peer(&self, cmd: &mut Command) {
        cpu::pin_command(cmd, &self.peer_cpus());
    }

    /// The measuring side's CPUs.
    pub fn main_cpus(&self) -> Vec<usize> {
        self.cpus.main_side(self.config)
    }

    /// The other side's CPUs (two-cpus on a one-CPU machine: the one CPU).
    pub fn peer_cpus(&self) -> Vec<usize> {
        self.cpus
            .peer_side(self.config)
            .unwrap_or_else(|| vec![self.cpus.a])
    }

    /// Pins the calling thread to the measuring side (threads it starts inherit it).
    pub fn pin_main_thread(&self) -> anyhow::Result<()> {
        cpu::pin_current_thread(&self.main_cpus())?;
        Ok(())
    }

    /// Pins the calling thread to the other side: for a server thread that
    /// stands in for another process (the threads it starts inherit it).
    pub fn pin_peer_thread(&self) {
        let _ = cpu::pin_current_thread(&self.peer_cpus());
    }

    /// Trials of each side: 5 in a full run, 3 with `--quick`.
    pub fn trials(&self) -> usize {
        if self.quick {
            trials::QUICK_TRIALS
        } else {
            trials::FULL_TRIALS
        }
    }

    /// Trials of each side for a figure whose trial medians swing more than
    /// most (a wake, where the scheduler's state shifts from trial to trial;
    /// process start-up; processes contending for a lock): 9 in a full run,
    /// 5 with `--quick`. Each such trial is cheap.
    pub fn many_trials(&self) -> usize {
        2 * self.trials() - 1
    }

    /// The bench binary itself, re-executed as the floors' peer.
    pub fn bench_exe(&self) -> PathBuf {
        self.bin_dir.join("syncomm-bench")
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Unit {
    /// Microseconds per operation (latency): lower is better.
    #[default]
    Micros,
    /// Milliseconds of wall time: lower is better.
    Millis,
    /// Operations per second (throughput): higher is better.
    PerSec,
}

/// A baseline measured in the same run and in the same unit.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Floor {
    /// What the floor is: "pipe round trip", "cat | cat | cat", "flock(1)".
    pub name: String,
    /// Its median (of trial medians, where measured in trials).
    pub median: f64,
    /// Min–max of its trial medians.
    pub spread: Option<(f64, f64)>,
    /// Its hop structure: which processes the message crosses, through what.
    pub hops: Option<String>,
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
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Figure {
    /// A stable id (`worker.call`) for baselines and peer comparisons; empty:
    /// `scenario/what` is used.
    pub id: &'static str,
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
    /// Min–max of the trial medians (`median` is then the median of trial medians).
    pub spread: Option<(f64, f64)>,
    /// How many trials (0: one measurement, not in trials).
    pub trials: usize,
    /// The median of the per-trial-pair cost ratios to the floor.
    pub pair_ratio: Option<f64>,
    /// The CPU configuration it was measured in (set by the suite).
    pub config: Option<CpuConfig>,
}

impl Floor {
    /// A floor named `name` with median `median`.
    pub fn new(name: impl Into<String>, median: f64) -> Floor {
        Floor {
            name: name.into(),
            median,
            ..Floor::default()
        }
    }
}

impl Target {
    /// A target as written, and whether it was met.
    pub fn new(text: impl Into<String>, met: bool) -> Target {
        Target {
            text: text.into(),
            met,
        }
    }
}

impl Figure {
    /// A figure with its median only; add the rest with the `with_*` methods.
    pub fn new(scenario: &'static str, what: impl Into<String>, unit: Unit, median: f64) -> Figure {
        Figure {
            scenario,
            what: what.into(),
            unit,
            median,
            p99: None,
            floor: None,
            python_key: None,
            target: None,
            ..Figure::default()
        }
    }

    /// Sets the 99th percentile.
    pub fn with_p99(mut self, p99: f64) -> Figure {
        self.p99 = Some(p99);
        self
    }

    /// Sets the stable id.
    pub fn with_id(mut self, id: &'static str) -> Figure {
        self.id = id;
        self
    }

    /// The key of this figure in a baseline: `config/id` (or `config/scenario/what`).
    pub fn key(&self) -> String {
        let config = self.config.map_or("-", CpuConfig::name);
        if self.id.is_empty() {
            format!("{config}/{}/{}", self.scenario, self.what)
        } else {
            format!("{config}/{}", self.id)
        }
    }

    /// Sets the floor's hop structure.
    pub fn with_hops(mut self, hops: impl Into<String>) -> Figure {
        if let Some(f) = self.floor.as_mut() {
            f.hops = Some(hops.into());
        }
        self
    }

    /// Sets the floor measured beside it.
    pub fn with_floor(mut self, name: impl Into<String>, median: f64) -> Figure {
        self.floor = Some(Floor::new(name, median));
        self
    }

    /// Sets the seed Python's comparison key.
    pub fn with_python(mut self, key: &'static str) -> Figure {
        self.python_key = Some(key);
        self
    }

    /// Sets the target and whether it was met.
    pub fn with_target(mut self, text: impl Into<String>, met: bool) -> Figure {
        self.target = Some(Target::new(text, met));
        self
    }

    /// Cost relative to the floor: 1.0 = as fast as the floor (see [`report`]).
    pub fn ratio_to_floor(&self) -> Option<f64> {
        report::ratio_to_floor(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPUs a command's process may run on, as the kernel lists them.
    fn allowed(mut cmd: Command) -> String {
        cmd.args(["-c", "grep Cpus_allowed_list /proc/self/status"]);
        let out = cmd.output().expect("running sh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.rsplit(|c: char| c.is_whitespace() || c == ':')
            .find(|s| !s.is_empty())
            .unwrap_or_default()
            .to_owned()
    }

    /// In `two-cpus`, from a measuring thread pinned to CPU A, a main-side
    /// command runs on A and a peer command on B. (A peer pinning followed by a
    /// main pinning that added nothing, since the thread was already on A,
    /// once left a load generator on the peer's CPU.)
    #[test]
    fn main_and_peer_commands_run_on_their_own_cpus() {
        let ctx = Ctx::new(true, "/bin", std::env::temp_dir()).with_config(CpuConfig::TwoCpus);
        if ctx.cpus.b.is_none() {
            return; // one CPU: nothing to tell apart
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                ctx.pin_main_thread().expect("pinning the measuring thread");
                let one = |cpus: Vec<usize>| cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>();
                assert_eq!(vec![allowed(ctx.main_cmd("sh"))], one(ctx.main_cpus()));
                assert_eq!(vec![allowed(ctx.cmd("sh"))], one(ctx.peer_cpus()));
            });
        });
    }
}
