//! The run as JSON (`target/bench/results.json`), its shape given by
//! `#[derive(Serialize)]` structs.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{python_value, ratio_to_floor, ratio_to_python, tally, Machine, Report, Row};
use crate::cpu::CpuConfig;
use crate::{Floor, Target, Unit};

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Micros => "us",
        Unit::Millis => "ms",
        Unit::PerSec => "per_s",
    }
}

/// The whole file.
#[derive(Serialize)]
struct Results<'a> {
    machine: &'a Machine,
    /// `quick` or `full`.
    mode: &'static str,
    configs: Vec<&'static str>,
    targets: Targets,
    peers: Value,
    rows: Vec<JsonRow<'a>>,
    python: PythonJson<'a>,
}

/// How many targets were met, missed, and rows not measured.
#[derive(Serialize)]
struct Targets {
    met: usize,
    missed: usize,
    not_measured: usize,
}

/// One row: a measured figure, or a scenario that could not be measured.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonRow<'a> {
    Measured {
        measured: bool,
        config: Option<&'static str>,
        scenario: &'static str,
        what: &'a str,
        unit: &'static str,
        median: f64,
        spread: Option<(f64, f64)>,
        trials: usize,
        p99: Option<f64>,
        floor: &'a Option<Floor>,
        ratio_to_floor: Option<f64>,
        python_key: Option<&'static str>,
        python: Option<f64>,
        ratio_to_python: Option<f64>,
        target: &'a Option<Target>,
    },
    NotMeasured {
        measured: bool,
        config: Option<&'static str>,
        scenario: &'a str,
        why: &'a str,
    },
}

/// The seed Python's figures.
#[derive(Serialize)]
struct PythonJson<'a> {
    status: &'a str,
    figures: &'a BTreeMap<String, Option<f64>>,
}

/// The run as JSON (`target/bench/results.json`).
pub fn to_json(report: &Report) -> Value {
    let rows = report
        .rows
        .iter()
        .map(|r| match r {
            Row::Measured(f) => JsonRow::Measured {
                measured: true,
                config: f.config.map(CpuConfig::name),
                scenario: f.scenario,
                what: &f.what,
                unit: unit_name(f.unit),
                median: f.median,
                spread: f.spread,
                trials: f.trials,
                p99: f.p99,
                floor: &f.floor,
                ratio_to_floor: ratio_to_floor(f),
                python_key: f.python_key,
                python: python_value(f, &report.python),
                ratio_to_python: ratio_to_python(f, &report.python),
                target: &f.target,
            },
            Row::NotMeasured {
                scenario,
                why,
                config,
            } => JsonRow::NotMeasured {
                measured: false,
                config: config.map(CpuConfig::name),
                scenario,
                why,
            },
        })
        .collect();
    let (met, missed, not_measured) = tally(report, None);
    let results = Results {
        machine: &report.machine,
        mode: if report.quick { "quick" } else { "full" },
        configs: report.configs.iter().map(|c| c.name()).collect(),
        targets: Targets {
            met,
            missed,
            not_measured,
        },
        peers: crate::peers::to_json(&report.peers),
        rows,
        python: PythonJson {
            status: &report.python.status,
            figures: &report.python.figures,
        },
    };
    serde_json::to_value(results).expect("the results are plain data")
}
