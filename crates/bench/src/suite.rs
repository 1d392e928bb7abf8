//! The whole suite: floors, every scenario module, the seed's Python.
//!
//! A scenario module that fails, panics, returns nothing or overruns its time
//! limit becomes a `not measured: why` row; the suite itself never aborts.
//! The modules run one after another (never two measurements at once), each
//! with its own fresh runtime directory under the scratch directory.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use crate::cpu::{CpuConfig, Cpus};
use crate::floor::{self, FloorKind};
use crate::peers::Peers;
use crate::report::{Machine, Python, Report, Row};
use crate::{python, scenarios, Ctx, Figure};

/// A scenario module's entry point.
pub type RunFn = fn(&Ctx) -> anyhow::Result<Vec<Figure>>;

/// Every scenario module: its name (for `--only`), its `run`, and the seed
/// Python keys that belong to it.
pub const SCENARIOS: [(&str, RunFn, &[&str]); 8] = [
    (
        "notify",
        scenarios::notify::run,
        &["notify_wakeup_us", "board_append_per_s"],
    ),
    (
        "pipeline",
        scenarios::pipeline::run,
        &["pipeline_lines_per_s"],
    ),
    (
        "worker",
        scenarios::worker::run,
        &["worker_call_us", "worker_calls_per_s"],
    ),
    (
        "ping",
        scenarios::ping::run,
        &["ping_rtt_us", "ping_reconnect_per_s"],
    ),
    ("scribe", scenarios::scribe::run, &["scribe_lines_per_s"]),
    ("gate", scenarios::gate::run, &["gate_cycle_us"]),
    ("guard", scenarios::guard::run, &["guard_overhead_ms"]),
    ("discover", scenarios::discover::run, &["discover_meet_ms"]),
];

/// The name `--only` takes for the floors alone.
pub const FLOORS: &str = "floors";

/// `./launch` scenario names that another module measures: name, module.
pub const ALIASES: [(&str, &str); 3] = [
    ("data-sharing", "notify"),
    ("shared-file", "scribe"),
    ("limited-access", "gate"),
];

/// The module an `--only` name selects (a module name, or an alias of one).
fn module_of(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, module)| module)
}

/// Every name `--only` accepts.
pub fn selectable() -> Vec<&'static str> {
    std::iter::once(FLOORS)
        .chain(SCENARIOS.iter().map(|s| s.0))
        .chain(ALIASES.iter().map(|a| a.0))
        .collect()
}

/// How to run the suite.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--quick`.
    pub quick: bool,
    /// `--only`: the scenarios to run (empty: all). The floors always run.
    pub only: Vec<String>,
    /// Run the seed's Python (off with `--no-python`).
    pub python: bool,
    /// Where syncomm's binaries are.
    pub bin_dir: PathBuf,
    /// Scratch directory; each module gets a fresh subdirectory as `SYNCOMM_DIR`.
    pub work_dir: PathBuf,
    /// bench/seed.py, if found.
    pub seed_script: Option<PathBuf>,
    /// The CPU configurations to measure in, in order.
    pub configs: Vec<CpuConfig>,
    /// `syncomm-peers`, when the peers are to be measured (`--peers`).
    pub peers_exe: Option<PathBuf>,
}

impl Options {
    /// Checks `--only`: each name must be in [`selectable`].
    pub fn check_only(&self) -> Result<(), String> {
        let ok = selectable();
        for o in &self.only {
            if !ok.contains(&o.as_str()) {
                return Err(format!("unknown scenario {o:?}; one of: {}", ok.join(", ")));
            }
        }
        Ok(())
    }

    fn selected(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| module_of(o) == name)
    }

    /// How long one module may take before it is reported as not measured.
    pub fn module_limit(&self) -> Duration {
        Duration::from_secs(if self.quick { 40 } else { 300 })
    }

    /// How long the seed's Python may take.
    pub fn python_limit(&self) -> Duration {
        Duration::from_secs(if self.quick { 60 } else { 480 })
    }
}

/// A fresh private (0700) scratch directory, removed when dropped.
pub fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix("syncomm-bench-").tempdir()
}

/// The floors as a module: one row per floor.
fn floors(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    FloorKind::ALL
        .into_iter()
        .map(|kind| floor::figure(ctx, kind))
        .collect()
}

/// Runs one module on its own thread, pinned to the measuring side of the
/// context's configuration, bounded by `limit`; a panic, an error, no figures
/// or an overrun come back as the reason it was not measured.
fn run_module(name: &str, f: RunFn, ctx: Ctx, limit: Duration) -> Result<Vec<Figure>, String> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(format!("bench-{name}"))
        .spawn(move || {
            if let Err(e) = ctx.pin_main_thread() {
                let _ = tx.send(Err(anyhow::anyhow!(
                    "pinning to {:?}: {e}",
                    ctx.main_cpus()
                )));
                return;
            }
            let _ = tx.send(f(&ctx));
        })
        .map_err(|e| format!("could not start a thread: {e}"))?;
    match rx.recv_timeout(limit) {
        Ok(Ok(figs)) if figs.is_empty() => {
            let _ = handle.join();
            Err("the module returned no figures (not built yet?)".to_string())
        }
        Ok(Ok(figs)) => {
            let _ = handle.join();
            Ok(figs)
        }
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(format!("{e:#}").replace('\n', " "))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "did not finish within {} s (left running)",
            limit.as_secs()
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let msg = match handle.join() {
                Err(p) => p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string()),
                Ok(()) => "ended without a result".to_string(),
            };
            Err(format!("panicked: {}", msg.replace('\n', " ")))
        }
    }
}

/// Runs the suite, telling `progress` what it is doing (one line each).
pub fn run(opts: &Options, progress: &mut dyn FnMut(&str)) -> Report {
    let machine = Machine::detect();
    let cpus = Cpus::detect();
    let mut rows = Vec::new();
    let mut peers = Peers {
        status: if opts.peers_exe.is_some() {
            "iceoryx2 0.10 and ipc-channel 0.23 (bench/peers), same run".to_string()
        } else {
            "not run (./launch bench --peers builds and runs them)".to_string()
        },
        ..Peers::default()
    };

    for &config in &opts.configs {
        if config == CpuConfig::TwoCpus && cpus.b.is_none() {
            rows.push(Row::NotMeasured {
                scenario: "all".to_string(),
                why: "two-cpus needs two CPUs; this process may use one".to_string(),
                config: Some(config),
            });
            continue;
        }
        let mut modules: Vec<(&str, RunFn)> = vec![(FLOORS, floors as RunFn)];
        modules.extend(
            SCENARIOS
                .iter()
                .filter(|s| opts.selected(s.0))
                .map(|s| (s.0, s.1)),
        );
        for (name, f) in modules {
            progress(&format!("{}: {name}", config.name()));
            let result = module_ctx(opts, &cpus, config, name)
                .and_then(|ctx| run_module(name, f, ctx, opts.module_limit()));
            match result {
                Ok(figs) => rows.extend(figs.into_iter().map(|mut f| {
                    f.config = Some(config);
                    Row::Measured(f)
                })),
                Err(why) => {
                    progress(&format!("{}: {name}: not measured: {why}", config.name()));
                    rows.push(Row::NotMeasured {
                        scenario: name.to_string(),
                        why,
                        config: Some(config),
                    });
                }
            }
        }
        if let Some(exe) = &opts.peers_exe {
            progress(&format!("{}: peers ({})", config.name(), exe.display()));
            let got = module_ctx(opts, &cpus, config, "peers").and_then(|ctx| {
                crate::peers::run(&ctx, exe, opts.module_limit()).map_err(|e| format!("{e:#}"))
            });
            match got {
                Ok(r) => peers.rows.extend(r),
                Err(why) => {
                    progress(&format!("{}: peers: not measured: {why}", config.name()));
                    peers.failed.push((config, why));
                }
            }
        }
    }

    let python = run_python(opts, progress);
    Report {
        machine,
        quick: opts.quick,
        rows,
        python,
        configs: opts.configs.clone(),
        cpus,
        peers,
    }
}

/// A fresh context (and scratch directory) for module `name` in `config`.
fn module_ctx(opts: &Options, cpus: &Cpus, config: CpuConfig, name: &str) -> Result<Ctx, String> {
    let dir = opts.work_dir.join(config.name()).join(name);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("scratch directory {}: {e}", dir.display()))?;
    Ok(Ctx {
        quick: opts.quick,
        bin_dir: opts.bin_dir.clone(),
        work_dir: dir,
        config,
        cpus: cpus.clone(),
    })
}

fn run_python(opts: &Options, progress: &mut dyn FnMut(&str)) -> Python {
    let status = |s: &str| Python {
        status: s.to_string(),
        ..Python::default()
    };
    if !opts.python {
        return status("not run (--no-python)");
    }
    let keys: Option<Vec<&str>> = (!opts.only.is_empty()).then(|| {
        SCENARIOS
            .iter()
            .filter(|s| opts.selected(s.0))
            .flat_map(|s| s.2.iter().copied())
            .collect()
    });
    if keys.as_ref().is_some_and(|k| k.is_empty()) {
        return status("not run (no selected scenario has a Python counterpart)");
    }
    let Some(py) = python::find_python3() else {
        return status("not run: python3 is not on PATH, so there is no Python comparison");
    };
    let Some(script) = opts.seed_script.as_ref() else {
        return status("not run: bench/seed.py not found (run from the repository root)");
    };
    progress(&format!("seed Python: {}", script.display()));
    python::run_seed(
        &py,
        script,
        opts.quick,
        keys.as_deref(),
        opts.python_limit(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx::new(true, "/nonexistent", std::env::temp_dir())
    }
    fn panics(_: &Ctx) -> anyhow::Result<Vec<Figure>> {
        panic!("boom\nsecond line")
    }
    fn fails(_: &Ctx) -> anyhow::Result<Vec<Figure>> {
        Err(anyhow::anyhow!("no server").context("starting ping-server"))
    }
    fn empty(_: &Ctx) -> anyhow::Result<Vec<Figure>> {
        Ok(Vec::new())
    }
    fn slow(_: &Ctx) -> anyhow::Result<Vec<Figure>> {
        std::thread::sleep(Duration::from_secs(5));
        Ok(Vec::new())
    }
    fn one(_: &Ctx) -> anyhow::Result<Vec<Figure>> {
        Ok(vec![Figure::new("demo", "x", crate::Unit::Micros, 1.0)])
    }

    #[test]
    fn a_failing_module_becomes_a_one_line_reason() {
        let lim = Duration::from_secs(10);
        let why = run_module("p", panics, ctx(), lim).unwrap_err();
        assert_eq!(why, "panicked: boom second line");
        let why = run_module("f", fails, ctx(), lim).unwrap_err();
        assert_eq!(why, "starting ping-server: no server");
        let why = run_module("e", empty, ctx(), lim).unwrap_err();
        assert!(why.contains("no figures"), "{why}");
        let why = run_module("s", slow, ctx(), Duration::from_millis(50)).unwrap_err();
        assert!(why.starts_with("did not finish within"), "{why}");
        assert_eq!(run_module("o", one, ctx(), lim).unwrap().len(), 1);
    }

    #[test]
    fn only_accepts_known_names() {
        let mut o = Options {
            quick: true,
            only: vec!["floors".into(), "ping".into()],
            python: false,
            bin_dir: "/x".into(),
            work_dir: "/x".into(),
            seed_script: None,
            configs: vec![CpuConfig::OneCpu],
            peers_exe: None,
        };
        assert!(o.check_only().is_ok());
        assert!(!o.selected("gate"));
        o.only.push("limited-access".into());
        assert!(o.check_only().is_ok());
        assert!(o.selected("gate") && o.selected("ping") && !o.selected("notify"));
        o.only.push("pong".into());
        assert!(o.check_only().unwrap_err().contains("\"pong\""));
    }
}
