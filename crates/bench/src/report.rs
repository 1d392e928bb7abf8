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

//!
//! ## Files
//! - `machine`: the machine a run was measured on, and UTC timestamps.
//! - `table`: the aligned pipe table and the rest of the text output.
//! - `json`: `results.json`.
//! - `svg`: `ratios.svg`.

use std::collections::BTreeMap;

use crate::cpu::{CpuConfig, Cpus};
use crate::{Figure, Unit};

mod json;
mod machine;
mod svg;
mod table;

pub use json::to_json;
pub use machine::{utc_from_unix, utc_now, Machine};
pub use svg::svg;
pub use table::{
    pipe_table, python_table, render, split_row, table, tally, tally_line, COLUMNS, LEGEND,
};

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
}
