//! The run as JSON (`target/bench/results.json`).

use serde_json::{json, Value};

use super::{python_value, ratio_to_floor, ratio_to_python, tally, Report, Row};
use crate::cpu::CpuConfig;
use crate::Unit;

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
