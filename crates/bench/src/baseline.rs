//! The regression gate: each figure's cost ratio to its floor (never an
//! absolute time) against a committed baseline (`bench/baseline.json`).
//!
//! The file holds one section per mode (`full`, `quick`), each a map from a
//! figure's key (`one-cpu/worker.call`, see [`crate::Figure::key`]) to its
//! ratio. `--save-baseline` replaces the section of the run's mode and keeps
//! the other; `--check` compares the run against the section of its mode and
//! fails on any figure whose ratio is more than the tolerance worse, or that
//! could not be measured.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use crate::report::{ratio_to_floor, Report, Row};

/// The default tolerance: a figure fails when its ratio is more than 25 % worse.
pub const DEFAULT_TOLERANCE_PCT: f64 = 25.0;

/// The ratios of a run, by key.
pub fn ratios(report: &Report) -> BTreeMap<String, f64> {
    report
        .rows
        .iter()
        .filter_map(|r| match r {
            Row::Measured(f) => ratio_to_floor(f).map(|x| (f.key(), x)),
            Row::NotMeasured { .. } => None,
        })
        .collect()
}

fn mode(report: &Report) -> &'static str {
    if report.quick {
        "quick"
    } else {
        "full"
    }
}

/// Figures the baseline leaves out, so the gate never checks them: the first
/// wake of a freshly started process, where process start-up noise dominates
/// (its ratio swung 0.53× to 1.24× between two runs under load).
pub const UNGATED: &[&str] = &["notify.wake_fresh"];

/// Writes (or updates) the baseline at `path` with this run's ratios.
pub fn save(report: &Report, path: &Path) -> anyhow::Result<usize> {
    let mut doc: Value = match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s).with_context(|| format!("reading {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut r = ratios(report);
    r.retain(|key, _| !UNGATED.iter().any(|u| key.rsplit('/').next() == Some(u)));
    let n = r.len();
    doc["about"] = json!(
        "Cost ratios to the floor (1.0 = the bare mechanism) by configuration/figure, \
         written by `syncomm-bench --save-baseline`; `syncomm-bench --check` fails on a \
         figure more than the tolerance worse. `notify.wake_fresh` (the first wake of a \
         freshly started process) is left out: process start-up noise dominates it."
    );
    doc["tolerance_pct"] = json!(DEFAULT_TOLERANCE_PCT);
    if !doc["modes"].is_object() {
        doc["modes"] = json!({});
    }
    doc["modes"][mode(report)] = json!({
        "machine": report.machine.summary(),
        "ratios": r,
    });
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(n)
}

/// The outcome of a check.
#[derive(Debug, Clone, Default)]
pub struct Check {
    /// Every compared figure: key, baseline ratio, this run's ratio.
    pub compared: Vec<(String, f64, f64)>,
    /// The keys of those more than the tolerance worse.
    pub worse: Vec<String>,
    /// Rows that could not be measured (they fail the check too).
    pub not_measured: Vec<String>,
    /// Figures of this run the baseline does not know (not a failure).
    pub new: Vec<String>,
    /// The tolerance used, in percent.
    pub tolerance_pct: f64,
    /// The baseline's section used (`full` or `quick`).
    pub section: String,
}

impl Check {
    /// Whether the run passes.
    pub fn passed(&self) -> bool {
        self.worse.is_empty() && self.not_measured.is_empty()
    }

    /// The report: one line per compared figure, then the verdict.
    pub fn render(&self) -> String {
        let mut out = format!(
            "check against the baseline ({} section, tolerance {} %):\n",
            self.section, self.tolerance_pct
        );
        for (key, base, now) in &self.compared {
            let change = (now / base - 1.0) * 100.0;
            let mark = if self.worse.contains(key) {
                "WORSE"
            } else {
                "ok"
            };
            out += &format!(
                "  {mark:5} {key}: {now:.2}× floor (baseline {base:.2}×, {change:+.0} %)\n"
            );
        }
        for key in &self.not_measured {
            out += &format!("  FAIL  {key}: not measured\n");
        }
        for key in &self.new {
            out += &format!("  new   {key}: not in the baseline\n");
        }
        if self.passed() {
            out += &format!(
                "check passed: {} figures within tolerance\n",
                self.compared.len()
            );
        } else {
            let mut names = self.worse.clone();
            names.extend(self.not_measured.iter().cloned());
            out += &format!(
                "check FAILED: {} more than {} % worse than the baseline or not measured: {}\n",
                names.len(),
                self.tolerance_pct,
                names.join(", ")
            );
        }
        out
    }
}

/// Compares `report` with the baseline at `path`; `tolerance_pct` overrides
/// the file's own tolerance.
pub fn check(report: &Report, path: &Path, tolerance_pct: Option<f64>) -> anyhow::Result<Check> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let tol = tolerance_pct
        .or_else(|| doc["tolerance_pct"].as_f64())
        .unwrap_or(DEFAULT_TOLERANCE_PCT);
    let want = mode(report);
    let (section, base) = [want, if want == "quick" { "full" } else { "quick" }]
        .into_iter()
        .find_map(|m| {
            doc["modes"][m]["ratios"]
                .as_object()
                .map(|o| (m, o.clone()))
        })
        .with_context(|| format!("{} has no baseline ratios", path.display()))?;
    let mut c = Check {
        tolerance_pct: tol,
        section: section.to_string(),
        ..Check::default()
    };
    for (key, now) in ratios(report) {
        match base.get(&key).and_then(Value::as_f64) {
            Some(b) => {
                if now > b * (1.0 + tol / 100.0) {
                    c.worse.push(key.clone());
                }
                c.compared.push((key, b, now));
            }
            None => c.new.push(key),
        }
    }
    for r in &report.rows {
        if let Row::NotMeasured {
            scenario, config, ..
        } = r
        {
            c.not_measured.push(format!(
                "{}/{scenario}",
                config.map_or("-", crate::cpu::CpuConfig::name)
            ));
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{CpuConfig, Cpus};
    use crate::report::{Machine, Python};
    use crate::{Figure, Unit};

    fn report(ratio: f64) -> Report {
        let mut f = Figure::new("worker", "call", Unit::Micros, 10.0 * ratio)
            .with_floor("relay", 10.0)
            .with_id("worker.call");
        f.config = Some(CpuConfig::OneCpu);
        Report {
            machine: Machine::detect(),
            quick: true,
            rows: vec![Row::Measured(f)],
            python: Python::default(),
            configs: vec![CpuConfig::OneCpu],
            cpus: Cpus::detect(),
            peers: Default::default(),
        }
    }

    #[test]
    fn save_then_check_passes_and_a_worse_ratio_fails_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baseline.json");
        assert_eq!(save(&report(1.2), &path).unwrap(), 1);
        let c = check(&report(1.4), &path, None).unwrap();
        assert!(c.passed(), "{}", c.render());
        let c = check(&report(1.6), &path, None).unwrap();
        assert!(!c.passed());
        assert_eq!(c.worse, ["one-cpu/worker.call"]);
        assert!(c.render().contains("one-cpu/worker.call"));
        let c = check(&report(1.6), &path, Some(50.0)).unwrap();
        assert!(c.passed());
    }
}
