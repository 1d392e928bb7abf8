//! Chaos soak for syncomm: every scenario at once, each in its own runtime
//! directory, on the real binaries, under a seeded random schedule of faults
//! (`kill -9` at random and at the worst moments, SIGSTOP/SIGCONT,
//! SIGTERM/SIGINT/SIGHUP, garbage and slow clients, low descriptor limits,
//! restarts), with every scenario's invariants checked as it runs and at the
//! end, and nothing left behind.
//!
//! One file per scenario under [`scenarios`] says what that scenario promises
//! and checks it. [`ctx`] is what they share (the tally, starting and
//! stalling participants, the end-of-run leak checks); [`os`] wraps the OS
//! calls; [`rng`] is the seeded SplitMix64 the schedule is drawn from.
//!
//! A seed names a schedule of decisions (which fault, whom, after how long);
//! the operating system's timing is not replayed, so a replay reproduces the
//! same schedule, and a race found once usually shows again within a few runs.

pub mod ctx;
pub mod os;
pub mod rng;
pub mod scenarios;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctx::{Ctx, Fault, Tally};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long the scenarios run (then they wind down and are checked).
    pub seconds: u64,
    /// The schedule's seed.
    pub seed: u64,
    /// Directory of the release binaries.
    pub bins: PathBuf,
    /// Only these scenarios (all when empty).
    pub only: Vec<String>,
}

/// One scenario's row.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario.
    pub name: &'static str,
    /// Its figures.
    pub tally: Tally,
    /// Seconds it took, wind-down included.
    pub seconds: f64,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed to replay it.
    pub seed: u64,
    /// The `--seconds` asked for.
    pub seconds: u64,
    /// One row per scenario.
    pub rows: Vec<Row>,
    /// Whether the run was cut short by a signal.
    pub interrupted: bool,
}

impl Report {
    /// Total violations.
    pub fn violations(&self) -> usize {
        self.rows.iter().map(|r| r.tally.violations.len()).sum()
    }

    /// Total leaks.
    pub fn leaks(&self) -> usize {
        self.rows.iter().map(|r| r.tally.leaks.len()).sum()
    }

    /// The table, as text.
    pub fn table(&self) -> String {
        let mut head = vec!["scenario".to_owned()];
        head.extend(Fault::ALL.iter().map(|f| f.key().to_owned()));
        head.extend(["ops", "checks", "violations", "leaks"].map(str::to_owned));
        let mut rows = vec![head];
        for r in &self.rows {
            let mut v = vec![r.name.to_owned()];
            v.extend(
                Fault::ALL
                    .iter()
                    .map(|f| r.tally.faults.get(f).copied().unwrap_or(0).to_string()),
            );
            v.push(r.tally.ops.to_string());
            v.push(r.tally.checks.to_string());
            v.push(r.tally.violations.len().to_string());
            v.push(r.tally.leaks.len().to_string());
            rows.push(v);
        }
        let mut total = vec!["total".to_owned()];
        for i in 1..rows[0].len() {
            let sum: u64 = rows[1..]
                .iter()
                .map(|r| r[i].parse::<u64>().unwrap_or(0))
                .sum();
            total.push(sum.to_string());
        }
        rows.push(total);
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        let mut s = format!(
            "syncomm chaos: {} s, seed {}{}\n",
            self.seconds,
            self.seed,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        for (n, r) in rows.iter().enumerate() {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        format!("{c:<w$}", w = widths[i])
                    } else {
                        format!("{c:>w$}", w = widths[i])
                    }
                })
                .collect();
            s.push_str(&cells.join("  "));
            s.push('\n');
            if n == 0 || n == rows.len() - 2 {
                s.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
                s.push('\n');
            }
        }
        for r in &self.rows {
            for v in &r.tally.violations {
                s.push_str(&format!("VIOLATION {}: {v}\n", r.name));
            }
            for l in &r.tally.leaks {
                s.push_str(&format!("LEAK {}: {l}\n", r.name));
            }
            for n in &r.tally.notes {
                s.push_str(&format!("note {}: {n}\n", r.name));
            }
        }
        s.push_str(&format!(
            "{} violations, {} leaks; replay: ./launch chaos --seconds {} --seed {}\n",
            self.violations(),
            self.leaks(),
            self.seconds,
            self.seed
        ));
        s
    }

    /// The same as JSON: the fields of `syncomm-chaos --json`'s `report`
    /// line (docs/JSON.md).
    pub fn json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                let faults: serde_json::Map<String, serde_json::Value> = Fault::ALL
                    .iter()
                    .map(|f| {
                        (
                            f.key().to_owned(),
                            r.tally.faults.get(f).copied().unwrap_or(0).into(),
                        )
                    })
                    .collect();
                serde_json::json!({
                    "scenario": r.name,
                    "faults": faults,
                    "faults_total": r.tally.faults.values().sum::<u64>(),
                    "ops": r.tally.ops,
                    "checks": r.tally.checks,
                    "violations": r.tally.violations,
                    "leaks": r.tally.leaks,
                    "notes": r.tally.notes,
                    "elapsed_ms": (r.seconds * 1e6).round() / 1e3,
                })
            })
            .collect();
        serde_json::json!({
            "seed": self.seed,
            "duration_s": self.seconds,
            "interrupted": self.interrupted,
            "violations": self.violations(),
            "leaks": self.leaks(),
            "scenarios": rows,
            "replay": format!("./launch chaos --seconds {} --seed {}", self.seconds, self.seed),
        })
    }
}

/// Runs every scenario (or `cfg.only`) concurrently and returns the report.
/// SIGINT, SIGTERM and SIGHUP wind the run down early; every participant is
/// killed and reaped and every temporary directory removed either way.
pub fn run(cfg: &Config) -> std::io::Result<Report> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let selected: Vec<&(&'static str, scenarios::RunFn)> = scenarios::ALL
        .iter()
        .filter(|(n, _)| cfg.only.is_empty() || cfg.only.iter().any(|o| o == n))
        .collect();
    if let Some(bad) = cfg
        .only
        .iter()
        .find(|o| !scenarios::ALL.iter().any(|(n, _)| n == o))
    {
        return Err(std::io::Error::other(format!(
            "unknown scenario '{bad}' (scenarios: {})",
            scenarios::ALL
                .iter()
                .map(|s| s.0)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let run_tag = format!("{}-{}", std::process::id(), cfg.seed);
    let handles: Vec<_> = selected
        .into_iter()
        .map(|&(name, f)| {
            let stop = Arc::clone(&stop);
            let cfg = cfg.clone();
            let run_tag = run_tag.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let tally = match Ctx::new(name, cfg.seed, &cfg.bins, &run_tag, cfg.seconds, stop) {
                    Ok(mut ctx) => {
                        let ran =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut ctx)));
                        if let Err(p) = ran {
                            let why = p
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            ctx.violation(format!("the driver itself failed: {why}"));
                        }
                        ctx.final_leak_checks(Duration::from_secs(10));
                        ctx.tally.clone()
                    }
                    Err(e) => {
                        let mut t = Tally::default();
                        t.violations.push(format!("cannot set up: {e}"));
                        t
                    }
                };
                Row {
                    name,
                    tally,
                    seconds: started.elapsed().as_secs_f64(),
                }
            })
        })
        .collect();
    let rows = handles
        .into_iter()
        .map(|h| h.join().expect("scenario thread"))
        .collect();
    Ok(Report {
        seed: cfg.seed,
        seconds: cfg.seconds,
        rows,
        interrupted: stop.load(std::sync::atomic::Ordering::Relaxed),
    })
}
