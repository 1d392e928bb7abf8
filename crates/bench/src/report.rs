//! The one table, the JSON file and the SVG chart made from a run.
//!
//! ## Ratios
//! - **× floor** is the figure's cost divided by the floor's cost, whatever the
//!   unit: for a latency `median / floor`, for a rate `floor / median`. 1.0 is
//!   as fast as the raw mechanism; 3.0 costs three times as much.
//! - **vs Python** is how many times faster than the seed's Python doing the
//!   same thing: for a latency `python / median`, for a rate `median / python`.
//!   Above 1 syncomm is faster.
//!
//! ## Formats
//! Values are written with three significant digits and a unit: `12.3 µs`,
//! `1.23 ms`, `4.56 s`, `5.20 M/s`, `370 k/s`, `950 /s`. [`parse_value`] reads
//! them back (the end-to-end test does).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};

use crate::cpu::{CpuConfig, Cpus};
use crate::{Figure, Unit};

/// The machine a run was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs available to the bench.
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel name and release (`Linux 6.1.0`).
    pub kernel: String,
    /// When the run started, UTC, ISO 8601.
    pub date: String,
    /// /proc/loadavg's 1-, 5- and 15-minute load averages when the run started.
    pub loadavg: String,
    /// `release`, or `debug` when the suite itself was built without
    /// optimisations (then its sibling binaries are debug builds too).
    pub build: String,
}

impl Machine {
    /// Reads the machine's description from /proc.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let kernel = format!(
            "{} {}",
            read("/proc/sys/kernel/ostype"),
            read("/proc/sys/kernel/osrelease")
        )
        .trim()
        .to_string();
        let loadavg = read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            date: utc_now(),
            loadavg,
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
        }
    }

    /// One line: `2 × Intel(R) ... , Linux 6.1.0, 2026-11-26T07:00:00Z, load 0.1 0.2 0.3`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} × {}, {}, {}, load {}",
            self.nproc, self.cpu_model, self.kernel, self.date, self.loadavg
        );
        if self.build != "release" {
            s += &format!(
                ", {} build (not representative: use ./launch bench)",
                self.build
            );
        }
        s
    }
}

/// The current time, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_from_unix(secs)
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian).
pub fn utc_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// One row of the table: a figure, or a scenario that could not be measured.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a few dozen rows per run
pub enum Row {
    /// A measured figure.
    Measured(Figure),
    /// A scenario (or floor) whose module failed, returned nothing, or timed out.
    NotMeasured {
        /// The scenario.
        scenario: String,
        /// Why, in one line.
        why: String,
        /// The configuration it was to be measured in.
        config: Option<CpuConfig>,
    },
}

impl Row {
    /// The configuration the row belongs to.
    pub fn config(&self) -> Option<CpuConfig> {
        match self {
            Row::Measured(f) => f.config,
            Row::NotMeasured { config, .. } => *config,
        }
    }
}

/// What the seed's Python gave (bench/seed.py).
#[derive(Debug, Clone, Default)]
pub struct Python {
    /// One line: `python3 3.11.7, bench/seed.py --quick` or why it did not run.
    pub status: String,
    /// Its figures by key (`None`: that sub-benchmark failed).
    pub figures: BTreeMap<String, Option<f64>>,
}

impl Python {
    /// The value for `key`, if the script gave one.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.figures.get(key).copied().flatten()
    }
}

/// The Python comparison keys (the brief's table): key, unit, what it measures.
pub const PYTHON_KEYS: [(&str, Unit, &str); 11] = [
    (
        "notify_wakeup_us",
        Unit::Micros,
        "multiprocessing.Condition: notify → waiting process runs",
    ),
    (
        "board_append_per_s",
        Unit::PerSec,
        "multiprocessing.Array/Value updates under its lock",
    ),
    (
        "pipeline_lines_per_s",
        Unit::PerSec,
        "Pipe()-joined chain of 3 filter processes, records",
    ),
    (
        "worker_call_us",
        Unit::Micros,
        "in/out multiprocessing.Queue round trip per call",
    ),
    (
        "worker_calls_per_s",
        Unit::PerSec,
        "same queues, many calls in flight",
    ),
    (
        "ping_rtt_us",
        Unit::Micros,
        "socketserver TCP, one connection, one ping at a time",
    ),
    (
        "ping_reconnect_per_s",
        Unit::PerSec,
        "new TCP connection per ping (the seed's client)",
    ),
    (
        "scribe_lines_per_s",
        Unit::PerSec,
        "4 writer processes appending under multiprocessing.Lock",
    ),
    (
        "gate_cycle_us",
        Unit::Micros,
        "multiprocessing.Semaphore acquire+release",
    ),
    (
        "discover_meet_ms",
        Unit::Millis,
        "seed's discover, 16 processes, until all found all",
    ),
    (
        "guard_overhead_ms",
        Unit::Millis,
        "seed's guardProcess (timeout 1 s) around a command that ends at once",
    ),
];

/// The unit of a Python comparison key.
pub fn python_unit(key: &str) -> Option<Unit> {
    PYTHON_KEYS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, u, _)| *u)
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// `--quick` or full.
    pub quick: bool,
    /// The rows: floors first, then each scenario's figures.
    pub rows: Vec<Row>,
    /// The seed Python's figures.
    pub python: Python,
    /// The configurations measured, in the order shown.
    pub configs: Vec<CpuConfig>,
    /// The CPUs the configurations use.
    pub cpus: Cpus,
    /// The peers' rows (`--peers`), and what happened to them.
    pub peers: crate::peers::Peers,
}

/// Whether lower values are better in `unit`.
pub fn lower_is_better(unit: Unit) -> bool {
    matches!(unit, Unit::Micros | Unit::Millis)
}

/// Cost relative to the floor (1.0 = as fast as the floor), see the module doc:
/// the median of the per-trial-pair ratios where the figure was measured in
/// trials, else median ÷ floor median.
pub fn ratio_to_floor(f: &Figure) -> Option<f64> {
    if let Some(r) = f.pair_ratio {
        return r.is_finite().then_some(r);
    }
    let floor = f.floor.as_ref()?;
    let r = if lower_is_better(f.unit) {
        f.median / floor.median
    } else {
        floor.median / f.median
    };
    r.is_finite().then_some(r)
}

/// Converts `v` from `from` to `to` when both are times, or both rates.
fn convert(v: f64, from: Unit, to: Unit) -> Option<f64> {
    match (from, to) {
        (a, b) if a == b => Some(v),
        (Unit::Micros, Unit::Millis) => Some(v / 1000.0),
        (Unit::Millis, Unit::Micros) => Some(v * 1000.0),
        _ => None,
    }
}

/// The seed Python's value for this figure, in the figure's unit.
pub fn python_value(f: &Figure, py: &Python) -> Option<f64> {
    let key = f.python_key?;
    convert(py.get(key)?, python_unit(key)?, f.unit)
}

/// How many times faster than the seed's Python (above 1 = syncomm faster).
pub fn ratio_to_python(f: &Figure, py: &Python) -> Option<f64> {
    let p = python_value(f, py)?;
    let r = if lower_is_better(f.unit) {
        p / f.median
    } else {
        f.median / p
    };
    r.is_finite().then_some(r)
}

/// Three significant digits.
fn sig3(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A value with its unit: `12.3 µs`, `1.23 ms`, `5.20 M/s`.
pub fn format_value(unit: Unit, v: f64) -> String {
    if !v.is_finite() {
        return "—".to_string();
    }
    match unit {
        Unit::Micros if v >= 1e6 => format!("{} s", sig3(v / 1e6)),
        Unit::Micros if v >= 1e3 => format!("{} ms", sig3(v / 1e3)),
        Unit::Micros => format!("{} µs", sig3(v)),
        Unit::Millis if v >= 1e3 => format!("{} s", sig3(v / 1e3)),
        Unit::Millis if v < 1.0 => format!("{} µs", sig3(v * 1e3)),
        Unit::Millis => format!("{} ms", sig3(v)),
        Unit::PerSec if v >= 1e9 => format!("{} G/s", sig3(v / 1e9)),
        Unit::PerSec if v >= 1e6 => format!("{} M/s", sig3(v / 1e6)),
        Unit::PerSec if v >= 1e3 => format!("{} k/s", sig3(v / 1e3)),
        Unit::PerSec => format!("{} /s", sig3(v)),
    }
}

/// Reads a value written by [`format_value`] back, in the base unit of its
/// kind: seconds for times, per second for rates. `None` if it is not one.
pub fn parse_value(s: &str) -> Option<f64> {
    let (num, unit) = s.trim().split_once(' ')?;
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" => 1e-6,
        "/s" => 1.0,
        "k/s" => 1e3,
        "M/s" => 1e6,
        "G/s" => 1e9,
        _ => return None,
    };
    Some(v * scale)
}

/// A spread `lo–hi` in the unit of its figure.
pub fn format_spread(unit: Unit, (lo, hi): (f64, f64)) -> String {
    format!("{}–{}", format_value(unit, lo), format_value(unit, hi))
}

/// The table's header cells.
pub const COLUMNS: [&str; 12] = [
    "scenario",
    "what is measured",
    "median",
    "spread",
    "p99",
    "floor (same run)",
    "floor hops",
    "floor median",
    "× floor",
    "vs Python",
    "target",
    "met",
];

const DASH: &str = "—";

fn cells(row: &Row, py: &Python) -> Vec<String> {
    match row {
        Row::NotMeasured { scenario, why, .. } => {
            let mut v = vec![scenario.clone(), format!("not measured: {why}")];
            v.extend(std::iter::repeat(DASH.to_string()).take(COLUMNS.len() - 2));
            v
        }
        Row::Measured(f) => {
            let opt = |o: Option<String>| o.unwrap_or_else(|| DASH.to_string());
            vec![
                f.scenario.to_string(),
                f.what.clone(),
                format_value(f.unit, f.median),
                opt(f.spread.map(|sp| format_spread(f.unit, sp))),
                opt(f.p99.map(|p| format_value(f.unit, p))),
                opt(f.floor.as_ref().map(|fl| fl.name.clone())),
                opt(f.floor.as_ref().and_then(|fl| fl.hops.clone())),
                opt(f.floor.as_ref().map(|fl| match fl.spread {
                    Some(sp) => format!(
                        "{} ({})",
                        format_value(f.unit, fl.median),
                        format_spread(f.unit, sp)
                    ),
                    None => format_value(f.unit, fl.median),
                })),
                opt(ratio_to_floor(f).map(|r| format!("{}×", sig3(r)))),
                opt(ratio_to_python(f, py).map(|r| {
                    if r >= 1.0 {
                        format!("{}× faster", sig3(r))
                    } else {
                        format!("{}× slower", sig3(1.0 / r))
                    }
                })),
                opt(f.target.as_ref().map(|t| t.text.clone())),
                opt(f
                    .target
                    .as_ref()
                    .map(|t| if t.met { "met" } else { "MISSED" }.to_string())),
            ]
        }
    }
}

/// A table cell: `|` escaped and newlines flattened, so the row stays one line.
fn escape(cell: &str) -> String {
    cell.replace('\n', " ").replace('|', "\\|")
}

/// Splits a table line written by [`table`] into its cells (unescaping `\|`).
pub fn split_row(line: &str) -> Option<Vec<String>> {
    let line = line.trim();
    let inner = line.strip_prefix('|')?.strip_suffix('|')?;
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cur.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    Some(out)
}

/// Renders rows of cells as an aligned Markdown (GitHub) pipe table.
pub fn pipe_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| escape(c)).collect())
        .collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::from("|");
        for (c, w) in cells.iter().zip(&widths) {
            let pad = w.saturating_sub(c.chars().count());
            let _ = write!(s, " {c}{} |", " ".repeat(pad));
        }
        s.push('\n');
        s
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out += &line(widths.iter().map(|w| "-".repeat((*w).max(3))).collect());
    for r in rows {
        out += &line(r);
    }
    out
}

/// The main table (Markdown pipe table, aligned so it also reads as text):
/// every row, or with `config` only that configuration's.
pub fn table(report: &Report, config: Option<CpuConfig>) -> String {
    let rows: Vec<Vec<String>> = report
        .rows
        .iter()
        .filter(|r| config.is_none() || r.config() == config)
        .map(|r| cells(r, &report.python))
        .collect();
    pipe_table(&COLUMNS, &rows)
}

/// The seed Python's own figures, one row per comparison key.
pub fn python_table(py: &Python) -> String {
    let rows: Vec<Vec<String>> = PYTHON_KEYS
        .iter()
        .filter(|(k, _, _)| py.figures.contains_key(*k))
        .map(|(k, u, what)| {
            vec![
                format!("`{k}`"),
                what.to_string(),
                py.get(k)
                    .map_or_else(|| "failed".to_string(), |v| format_value(*u, v)),
            ]
        })
        .collect();
    pipe_table(&["key", "the seed's Python", "median"], &rows)
}

/// What the columns mean, in a few lines.
pub const LEGEND: &str = "\
Each figure is measured in trials alternating with its floor (floor, figure, floor, figure …): \
median = the median of the trial medians, spread = their min–max. \
× floor: the figure's cost divided by the floor's cost, computed per trial pair and then the median \
(latency ÷ floor latency, or floor rate ÷ rate); 1.0 is as fast as the bare mechanism. \
vs Python: how many times faster than the seed's Python doing the same (bench/seed.py). \
p99 is shown where a figure has per-operation samples. \
Floor hops: the processes a floor's message crosses (A = the measuring process). \
Configurations: one-cpu pins every process of a figure to one CPU (the stable one), \
two-cpus puts the measuring side and the processes it starts on different CPUs, \
unpinned lets the scheduler choose (on a shared VM these vary from run to run).";

/// How many targets were met, missed, and how many rows were not measured
/// (in `config`, or in all).
pub fn tally(report: &Report, config: Option<CpuConfig>) -> (usize, usize, usize) {
    let (mut met, mut missed, mut not) = (0, 0, 0);
    for r in report
        .rows
        .iter()
        .filter(|r| config.is_none() || r.config() == config)
    {
        match r {
            Row::Measured(f) => match &f.target {
                Some(t) if t.met => met += 1,
                Some(_) => missed += 1,
                None => {}
            },
            Row::NotMeasured { .. } => not += 1,
        }
    }
    (met, missed, not)
}

/// One line: `Targets: 9 met, 2 missed; 1 row not measured.`
pub fn tally_line(report: &Report, config: Option<CpuConfig>) -> String {
    let (met, missed, not) = tally(report, config);
    format!(
        "Targets: {met} met, {missed} missed; {not} row{} not measured.",
        if not == 1 { "" } else { "s" }
    )
}

/// The whole human-readable output: title, machine, table, Python figures, legend.
/// With `markdown`, the same as Markdown ready to paste into the README.
pub fn render(report: &Report, markdown: bool) -> String {
    let mode = if report.quick { "quick" } else { "full" };
    let mut out = String::new();
    if markdown {
        let _ = writeln!(
            out,
            "Measured with `syncomm-bench` ({mode} run) on {}.\n",
            report.machine.summary()
        );
    } else {
        let _ = writeln!(out, "syncomm benchmarks ({mode} run)");
        let _ = writeln!(out, "machine: {}\n", report.machine.summary());
    }
    for &config in &report.configs {
        let _ = writeln!(
            out,
            "{}configuration {}: {}\n",
            if markdown { "#### " } else { "" },
            config.name(),
            config.describe(&report.cpus)
        );
        out += &table(report, Some(config));
        out.push('\n');
        out += &tally_line(report, Some(config));
        out.push_str("\n\n");
    }
    out += &crate::peers::render(report, markdown);
    if !report.python.figures.is_empty() {
        if markdown {
            let _ = writeln!(out, "The seed's Python ({}):\n", report.python.status);
        } else {
            let _ = writeln!(out, "seed Python: {}\n", report.python.status);
        }
        out += &python_table(&report.python);
        out.push('\n');
    } else {
        let _ = writeln!(out, "seed Python: {}\n", report.python.status);
    }
    out += LEGEND;
    out.push('\n');
    out
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Micros => "us",
        Unit::Millis => "ms",
        Unit::PerSec => "per_s",
    }
}

/// The run as JSON (`target/bench/results.json`).
pub fn to_json(report: &Report) -> Value {
    let rows: Vec<Value> = report
        .rows
        .iter()
        .map(|r| match r {
            Row::Measured(f) => json!({
                "measured": true,
                "config": f.config.map(CpuConfig::name),
                "scenario": f.scenario,
                "what": f.what,
                "unit": unit_name(f.unit),
                "median": f.median,
                "spread": f.spread,
                "trials": f.trials,
                "p99": f.p99,
                "floor": f.floor,
                "ratio_to_floor": ratio_to_floor(f),
                "python_key": f.python_key,
                "python": python_value(f, &report.python),
                "ratio_to_python": ratio_to_python(f, &report.python),
                "target": f.target,
            }),
            Row::NotMeasured {
                scenario,
                why,
                config,
            } => json!({
                "measured": false,
                "config": config.map(CpuConfig::name),
                "scenario": scenario,
                "why": why,
            }),
        })
        .collect();
    json!({
        "machine": {
            "nproc": report.machine.nproc,
            "cpu_model": report.machine.cpu_model,
            "kernel": report.machine.kernel,
            "date": report.machine.date,
            "loadavg": report.machine.loadavg,
            "build": report.machine.build,
        },
        "mode": if report.quick { "quick" } else { "full" },
        "configs": report.configs.iter().map(|c| c.name()).collect::<Vec<_>>(),
        "targets": {
            "met": tally(report, None).0,
            "missed": tally(report, None).1,
            "not_measured": tally(report, None).2,
        },
        "peers": crate::peers::to_json(&report.peers),
        "rows": rows,
        "python": {
            "status": report.python.status,
            "figures": report.python.figures,
        },
    })
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `s` cut to `n` characters, an ellipsis marking the cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    } else {
        s.to_string()
    }
}

/// One horizontal bar on a log scale.
struct Bar {
    label: String,
    value: f64,
    text: String,
    color: &'static str,
}

const GREEN: &str = "#2e7d32";
const RED: &str = "#c62828";
const GREY: &str = "#78909c";
const BLUE: &str = "#1565c0";

/// Draws one panel of bars at `y`; returns the SVG and the height used.
fn panel(title: &str, note: &str, bars: &[Bar], y: f64, width: f64) -> (String, f64) {
    const LABEL_W: f64 = 360.0;
    const ROW_H: f64 = 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<text x="10" y="{:.0}" font-size="15" font-weight="bold">{}</text>"#,
        y + 18.0,
        xml(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="{:.0}" font-size="11" fill="#555">{}</text>"##,
        y + 34.0,
        xml(note)
    );
    let top = y + 46.0;
    if bars.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{LABEL_W}" y="{:.0}" font-size="12" fill="#555">no figure in this run</text>"##,
            top + 14.0
        );
        return (s, 46.0 + 30.0);
    }
    // Log scale from 10^lo to 10^hi, whole decades.
    let logs: Vec<f64> = bars.iter().map(|b| b.value.max(1e-9).log10()).collect();
    let lo = logs.iter().copied().fold(0.0f64, f64::min).floor();
    let hi = logs
        .iter()
        .copied()
        .fold(1.0f64, f64::max)
        .ceil()
        .max(lo + 1.0);
    let plot_w = width - LABEL_W - 200.0;
    let x_of = |l: f64| LABEL_W + (l - lo) / (hi - lo) * plot_w;
    let bottom = top + ROW_H * bars.len() as f64;
    for d in (lo as i32)..=(hi as i32) {
        let x = x_of(f64::from(d));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#ddd"/>"##
        );
        let label = format!("{}×", 10f64.powi(d));
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#555">{}</text>"##,
            bottom + 12.0,
            xml(&label)
        );
    }
    for (i, (b, l)) in bars.iter().zip(&logs).enumerate() {
        let ry = top + ROW_H * i as f64;
        let x0 = x_of(0.0_f64.clamp(lo, hi));
        let x1 = x_of(*l);
        let (bx, bw) = if x1 >= x0 {
            (x0, x1 - x0)
        } else {
            (x1, x0 - x1)
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            ry + 14.0,
            xml(&b.label)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
            ry + 3.0,
            bw.max(1.0),
            ROW_H - 6.0,
            b.color
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            x0.max(x1) + 4.0,
            ry + 14.0,
            xml(&b.text)
        );
    }
    let x1 = x_of(0.0_f64.clamp(lo, hi));
    let _ = writeln!(
        s,
        r##"<line x1="{x1:.1}" y1="{top:.1}" x2="{x1:.1}" y2="{bottom:.1}" stroke="#333"/>"##
    );
    (s, bottom - y + 24.0)
}

/// The ratios as an SVG chart (`target/bench/ratios.svg`), drawn by hand: one
/// panel of cost ÷ floor (green: target met, red: missed, grey: no target),
/// one of the speed-up over the seed's Python; the first configuration's rows.
pub fn svg(report: &Report) -> String {
    let width = 980.0;
    let label = |f: &Figure| clip(&format!("{}: {}", f.scenario, f.what), 52);
    let mut floor_bars = Vec::new();
    let mut py_bars = Vec::new();
    let first = report.configs.first().copied();
    for row in report
        .rows
        .iter()
        .filter(|r| first.is_none() || r.config() == first)
    {
        let Row::Measured(f) = row else { continue };
        if let Some(r) = ratio_to_floor(f) {
            let color = match &f.target {
                Some(t) if t.met => GREEN,
                Some(_) => RED,
                None => GREY,
            };
            let floor_name = f.floor.as_ref().map_or("", |fl| fl.name.as_str());
            floor_bars.push(Bar {
                label: label(f),
                value: r,
                text: clip(&format!("{}× {floor_name}", sig3(r)), 52),
                color,
            });
        }
        if let Some(r) = ratio_to_python(f, &report.python) {
            py_bars.push(Bar {
                label: label(f),
                value: r,
                text: format!("{}×", sig3(r)),
                color: BLUE,
            });
        }
    }
    let mode = if report.quick { "quick" } else { "full" };
    let mut body = String::new();
    let mut y = 10.0;
    let _ = writeln!(
        body,
        r#"<text x="10" y="{:.0}" font-size="17" font-weight="bold">syncomm benchmarks ({mode} run, {})</text>"#,
        y + 16.0,
        first.map_or("all configurations", CpuConfig::name)
    );
    let _ = writeln!(
        body,
        r##"<text x="10" y="{:.0}" font-size="11" fill="#555">{}</text>"##,
        y + 32.0,
        xml(&report.machine.summary())
    );
    y += 44.0;
    let (p, h) = panel(
        "Cost relative to the raw floor (log scale, 1× = the bare mechanism; lower is better)",
        "green: the issue's target met · red: missed · grey: no target for this figure",
        &floor_bars,
        y,
        width,
    );
    body += &p;
    y += h + 10.0;
    let (p, h) = panel(
        "Speed-up over the seed's Python (log scale; higher is better)",
        &format!("bench/seed.py: {}", report.python.status),
        &py_bars,
        y,
        width,
    );
    body += &p;
    y += h + 10.0;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{y:.0}\" \
         viewBox=\"0 0 {width:.0} {y:.0}\" font-family=\"sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Floor, Target};

    fn fig(unit: Unit, median: f64, floor: f64, key: Option<&'static str>) -> Figure {
        Figure {
            scenario: "demo",
            what: "a | b".to_string(),
            unit,
            median,
            p99: Some(median * 2.0),
            floor: Some(Floor {
                name: "cat | cat".to_string(),
                median: floor,
                ..Default::default()
            }),
            python_key: key,
            target: Some(Target {
                text: "≤ 2 × floor".to_string(),
                met: true,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ratios_follow_the_direction_of_the_unit() {
        let lat = fig(Unit::Micros, 30.0, 10.0, Some("ping_rtt_us"));
        assert_eq!(ratio_to_floor(&lat), Some(3.0));
        let rate = fig(Unit::PerSec, 1e6, 2e6, Some("pipeline_lines_per_s"));
        assert_eq!(ratio_to_floor(&rate), Some(2.0));
        let mut py = Python::default();
        py.figures.insert("ping_rtt_us".into(), Some(300.0));
        py.figures.insert("pipeline_lines_per_s".into(), Some(25e3));
        assert_eq!(ratio_to_python(&lat, &py), Some(10.0));
        assert_eq!(ratio_to_python(&rate, &py), Some(40.0));
    }

    #[test]
    fn python_values_convert_between_time_units() {
        let f = fig(Unit::Micros, 2000.0, 1.0, Some("discover_meet_ms"));
        let mut py = Python::default();
        py.figures.insert("discover_meet_ms".into(), Some(20.0));
        assert_eq!(python_value(&f, &py), Some(20_000.0));
        assert_eq!(ratio_to_python(&f, &py), Some(10.0));
        py.figures.insert("discover_meet_ms".into(), None);
        assert_eq!(ratio_to_python(&f, &py), None);
    }

    #[test]
    fn values_format_and_parse_back() {
        for (u, v, s) in [
            (Unit::Micros, 12.34, "12.3 µs"),
            (Unit::Micros, 1234.0, "1.23 ms"),
            (Unit::Millis, 0.5, "500 µs"),
            (Unit::Millis, 2500.0, "2.50 s"),
            (Unit::PerSec, 5.2e6, "5.20 M/s"),
            (Unit::PerSec, 370e3, "370 k/s"),
            (Unit::PerSec, 950.0, "950 /s"),
        ] {
            assert_eq!(format_value(u, v), s);
            assert!(parse_value(s).is_some(), "{s}");
        }
        assert_eq!(parse_value("12.3 µs"), Some(12.3e-6));
        assert_eq!(parse_value("fast"), None);
    }

    #[test]
    fn table_rows_split_back_into_cells_even_with_pipes() {
        let report = Report {
            machine: Machine::detect(),
            quick: true,
            rows: vec![
                Row::Measured(fig(Unit::Micros, 30.0, 10.0, None)),
                Row::NotMeasured {
                    scenario: "gate".into(),
                    why: "module returned no figures".into(),
                    config: None,
                },
            ],
            python: Python::default(),
            configs: Vec::new(),
            cpus: Cpus::detect(),
            peers: Default::default(),
        };
        let t = table(&report, None);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        for l in &lines {
            assert_eq!(split_row(l).unwrap().len(), COLUMNS.len(), "{l}");
        }
        let row = split_row(lines[2]).unwrap();
        assert_eq!(row[1], "a | b");
        assert_eq!(row[5], "cat | cat");
        assert_eq!(row[8], "3.00×");
        assert!(split_row(lines[3]).unwrap()[1].starts_with("not measured: "));
        let svg = svg(&report);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        let j = to_json(&report);
        assert_eq!(j["rows"].as_array().unwrap().len(), 2);
        assert_eq!(j["mode"], "quick");
    }

    #[test]
    fn dates_are_iso_utc() {
        assert_eq!(utc_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_from_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_from_unix(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
