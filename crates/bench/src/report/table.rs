//! The human-readable output: the aligned pipe table, the Python figures,
//! the legend and the tally of targets.

use std::fmt::Write as _;

use super::{
    format_spread, format_value, ratio_to_floor, ratio_to_python, sig3, Python, Report, Row,
    PYTHON_KEYS,
};
use crate::cpu::CpuConfig;

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
