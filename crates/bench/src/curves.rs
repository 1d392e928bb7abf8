//! How cost grows with load: curves, not single points (`--curves DIR`).
//!
//! | curve | x | y |
//! |---|---|---|
//! | `worker` | clients 1, 4, 16 (16 calls in flight each); one line per pool of 1, 2, 4 workers | calls/s |
//! | `ping` | connections 1, 32, 256, 1000 (`ping-client --flood`) | pings/s, and p99 latency |
//! | `notify` | waiting consumer processes 1, 8, 64, all woken by one append | wake-up latency: median consumer, last consumer |
//! | `discover` | members 2, 8, 32, 64 | all started → all have found all |
//! | `pipeline` | `filter` stages 1, 2, 4, 8 (`add 1` each) | lines/s |
//!
//! Each point is measured in a few trials (3, or 1 with `--quick`); the
//! point is the median of the trials, the whisker their min–max. Every curve
//! is bounded in time (short floods, small inputs). Each is written as an SVG
//! (`curve-NAME.svg`) drawn by hand, and all of them into `curves.json`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use crate::report::format_value;
use crate::scenarios::{discover, notify, ping, pipeline, worker};
use crate::{stats, Ctx, Unit};

/// One point: median of the trials and their min–max.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Point {
    /// The x value.
    pub x: f64,
    /// Median of the trials.
    pub y: f64,
    /// Lowest trial.
    pub lo: f64,
    /// Highest trial.
    pub hi: f64,
}

impl Point {
    fn of(x: f64, mut trials: Vec<f64>) -> Point {
        let lo = trials.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = trials.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Point {
            x,
            y: stats::median(&mut trials),
            lo,
            hi,
        }
    }
}

/// One line of a chart.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Its points (a failed point is left out).
    pub points: Vec<Point>,
}

/// One chart.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Curve {
    /// The file name's stem: `worker`, `ping-rate`, ...
    pub name: &'static str,
    /// The title.
    pub title: String,
    /// What x is.
    pub x_label: &'static str,
    /// The unit of y.
    #[serde(skip)]
    pub unit: Unit,
    /// y on a log scale (latencies that grow by orders of magnitude).
    pub log_y: bool,
    /// The lines.
    pub series: Vec<Series>,
    /// Points that could not be measured: why.
    pub failed: Vec<String>,
}

/// Trials per point.
fn trials(ctx: &Ctx) -> usize {
    if ctx.quick {
        1
    } else {
        3
    }
}

/// Runs every curve (or those named in `only`), telling `progress`.
pub fn run(ctx: &Ctx, only: &[String], progress: &mut dyn FnMut(&str)) -> Vec<Curve> {
    type CurveFn = fn(&Ctx) -> Vec<Curve>;
    let all: [(&str, CurveFn); 5] = [
        ("worker", worker_curve),
        ("ping", ping_curve),
        ("notify", notify_curve),
        ("discover", discover_curve),
        ("pipeline", pipeline_curve),
    ];
    let mut out = Vec::new();
    for (name, f) in all {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        progress(&format!("curve: {name}"));
        out.extend(f(ctx));
    }
    out
}

/// Measures `f(x)` in `trials` trials for each x: the series' points, and
/// the failures as lines of text.
fn series(
    name: impl Into<String>,
    xs: &[f64],
    trials: usize,
    failed: &mut Vec<String>,
    mut f: impl FnMut(f64, usize) -> anyhow::Result<f64>,
) -> Series {
    let name = name.into();
    let mut points = Vec::new();
    for &x in xs {
        let mut ys = Vec::new();
        for t in 0..trials {
            match f(x, t) {
                Ok(y) => ys.push(y),
                Err(e) => {
                    failed.push(format!("{name} at {x}: {e:#}"));
                    break;
                }
            }
        }
        if !ys.is_empty() {
            points.push(Point::of(x, ys));
        }
    }
    Series { name, points }
}

fn worker_curve(ctx: &Ctx) -> Vec<Curve> {
    let clients = [1.0, 4.0, 16.0];
    let calls = if ctx.quick { 8_000 } else { 48_000 };
    let mut failed = Vec::new();
    let mut lines = Vec::new();
    for workers in [1usize, 2, 4] {
        let pool = match worker::PoolProc::start(ctx, workers) {
            Ok(p) => p,
            Err(e) => {
                failed.push(format!("{workers} workers: {e:#}"));
                continue;
            }
        };
        lines.push(series(
            format!("{workers} worker{}", if workers == 1 { "" } else { "s" }),
            &clients,
            trials(ctx),
            &mut failed,
            |c, _| worker::pipelined_rate(&pool, c as usize, 16, calls),
        ));
    }
    vec![Curve {
        name: "worker",
        title: "worker: add calls/s against clients (16 calls in flight each)".into(),
        x_label: "clients",
        unit: Unit::PerSec,
        log_y: false,
        series: lines,
        failed,
    }]
}

fn ping_curve(ctx: &Ctx) -> Vec<Curve> {
    let conns = [1.0, 32.0, 256.0, 1000.0];
    let secs = if ctx.quick { "0.5s" } else { "1.5s" };
    let mut failed = Vec::new();
    let server = match ping::ServerProc::start(ctx) {
        Ok(s) => s,
        Err(e) => {
            failed.push(format!("ping-server: {e:#}"));
            return vec![Curve {
                name: "ping",
                title: "ping: pings/s against connections".into(),
                x_label: "connections",
                unit: Unit::PerSec,
                log_y: false,
                series: Vec::new(),
                failed,
            }];
        }
    };
    let addr = format!("127.0.0.1:{}", server.port);
    // One flood per trial gives both figures.
    let mut p99s: Vec<(f64, Vec<f64>)> = Vec::new();
    let rate = series("ping-server", &conns, trials(ctx), &mut failed, |c, _| {
        let n = (c as usize).to_string();
        let v = ping::flood_json(ctx, &addr, &["--clients", &n], secs)?;
        let p99 = v["latency_p99_ms"].as_f64().context("no p99")? * 1e3;
        match p99s.iter_mut().find(|(x, _)| *x == c) {
            Some((_, v)) => v.push(p99),
            None => p99s.push((c, vec![p99])),
        }
        let errors = v["errors"].as_u64().unwrap_or(0);
        anyhow::ensure!(errors == 0, "{errors} errors");
        v["requests_per_s"].as_f64().context("no requests_per_s")
    });
    drop(server);
    let p99 = Series {
        name: "ping-server p99".into(),
        points: p99s.into_iter().map(|(x, v)| Point::of(x, v)).collect(),
    };
    vec![
        Curve {
            name: "ping-rate",
            title: "ping: pings/s against connections (ping-client --flood)".into(),
            x_label: "connections",
            unit: Unit::PerSec,
            log_y: false,
            series: vec![rate],
            failed: failed.clone(),
        },
        Curve {
            name: "ping-p99",
            title: "ping: p99 round trip against connections (ping-client --flood)".into(),
            x_label: "connections",
            unit: Unit::Micros,
            log_y: true,
            series: vec![p99],
            failed,
        },
    ]
}

fn notify_curve(ctx: &Ctx) -> Vec<Curve> {
    let consumers = [1.0, 8.0, 64.0];
    let rounds = if ctx.quick { 2 } else { 5 };
    let mut failed = Vec::new();
    let mut round = 1_000_000;
    // Each trial: `rounds` appends; the median over rounds of the median
    // consumer's and of the last consumer's wake-up.
    let mut last: Vec<(f64, Vec<f64>)> = Vec::new();
    let median = series(
        "median consumer",
        &consumers,
        trials(ctx),
        &mut failed,
        |c, _| {
            let (mut mid, mut max) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                round += 1;
                let mut v = notify::wakeup_once(ctx, round, c as usize)?;
                max.push(v.iter().copied().fold(0.0, f64::max) / 1e3);
                mid.push(stats::median(&mut v) / 1e3);
            }
            let m = stats::median(&mut max);
            match last.iter_mut().find(|(x, _)| *x == c) {
                Some((_, v)) => v.push(m),
                None => last.push((c, vec![m])),
            }
            Ok(stats::median(&mut mid))
        },
    );
    let last = Series {
        name: "last consumer".into(),
        points: last.into_iter().map(|(x, v)| Point::of(x, v)).collect(),
    };
    vec![Curve {
        name: "notify",
        title: "notify: wake-up latency against waiting consumer processes (one append)".into(),
        x_label: "waiting consumers",
        unit: Unit::Micros,
        log_y: true,
        series: vec![median, last],
        failed,
    }]
}

fn discover_curve(ctx: &Ctx) -> Vec<Curve> {
    let members = [2.0, 8.0, 32.0, 64.0];
    let mut failed = Vec::new();
    let mut round = 1_000_000;
    let s = series("discover", &members, trials(ctx), &mut failed, |m, _| {
        round += 1;
        Ok(discover::start_all(discover::members(ctx, round, m as usize))?.0)
    });
    vec![Curve {
        name: "discover",
        title: "discover: all started → all have found all, against members".into(),
        x_label: "members",
        unit: Unit::Millis,
        log_y: true,
        series: vec![s],
        failed,
    }]
}

fn pipeline_curve(ctx: &Ctx) -> Vec<Curve> {
    let stages = [1.0, 2.0, 4.0, 8.0];
    let lines: u64 = if ctx.quick { 500_000 } else { 3_000_000 };
    let mut failed = Vec::new();
    let input = ctx.work_dir.join("curve-pipeline.txt");
    let s = match pipeline::write_input(&input, lines) {
        Ok(()) => series("filter", &stages, trials(ctx), &mut failed, |n, _| {
            let st: Vec<&str> = std::iter::repeat("add 1").take(n as usize).collect();
            Ok(lines as f64 / pipeline::time_filter(ctx, &input, &st)?)
        }),
        Err(e) => {
            failed.push(format!("input: {e:#}"));
            Series {
                name: "filter".into(),
                points: Vec::new(),
            }
        }
    };
    let _ = std::fs::remove_file(&input);
    vec![Curve {
        name: "pipeline",
        title: format!(
            "pipeline: lines/s through filter 'add 1' × stages ({} k lines)",
            lines / 1000
        ),
        x_label: "stages",
        unit: Unit::PerSec,
        log_y: false,
        series: vec![s],
        failed,
    }]
}

/// The curves as a text table: one line per point.
pub fn render(curves: &[Curve]) -> String {
    let mut out = String::from("curves (median of trials, min–max):\n");
    for c in curves {
        let _ = writeln!(out, "  {}", c.title);
        for s in &c.series {
            let pts: Vec<String> = s
                .points
                .iter()
                .map(|p| {
                    format!(
                        "{}: {} ({}–{})",
                        p.x,
                        format_value(c.unit, p.y),
                        format_value(c.unit, p.lo),
                        format_value(c.unit, p.hi)
                    )
                })
                .collect();
            let _ = writeln!(out, "    {}: {}", s.name, pts.join(", "));
        }
        for f in &c.failed {
            let _ = writeln!(out, "    not measured: {f}");
        }
    }
    out
}

/// Every curve as JSON.
pub fn to_json(curves: &[Curve], config: &str) -> Value {
    json!({
        "config": config,
        "curves": curves.iter().map(|c| json!({
            "name": c.name,
            "title": c.title,
            "x": c.x_label,
            "unit": format!("{:?}", c.unit),
            "series": c.series,
            "failed": c.failed,
        })).collect::<Vec<_>>(),
    })
}

/// Writes `curve-NAME.svg` for each curve into `dir`; returns the paths.
pub fn write_svgs(curves: &[Curve], dir: &Path, note: &str) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut paths = Vec::new();
    for c in curves {
        let p = dir.join(format!("curve-{}.svg", c.name));
        std::fs::write(&p, svg(c, note)).with_context(|| format!("writing {}", p.display()))?;
        paths.push(p.display().to_string());
    }
    Ok(paths)
}

const COLORS: [&str; 4] = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a"];

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One chart: x on a log scale (the loads grow geometrically), y linear from 0.
pub fn svg(c: &Curve, note: &str) -> String {
    let (w, h) = (720.0, 420.0);
    let (left, right, top, bottom) = (90.0, 170.0, 60.0, 60.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let pts: Vec<&Point> = c.series.iter().flat_map(|s| &s.points).collect();
    let mut body = String::new();
    let _ = writeln!(
        body,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        xml(&c.title)
    );
    let _ = writeln!(
        body,
        r##"<text x="10" y="40" font-size="11" fill="#555">{}</text>"##,
        xml(note)
    );
    if pts.is_empty() {
        let _ = writeln!(
            body,
            r##"<text x="{left}" y="{}" font-size="13" fill="#555">not measured: {}</text>"##,
            top + 30.0,
            xml(&c.failed.join("; "))
        );
    } else {
        let xmin = pts
            .iter()
            .map(|p| p.x)
            .fold(f64::INFINITY, f64::min)
            .max(1.0);
        let xmax = pts.iter().map(|p| p.x).fold(0.0, f64::max).max(xmin * 2.0);
        let ymax = pts.iter().map(|p| p.hi.max(p.y)).fold(0.0, f64::max) * 1.1;
        let ymax = if ymax > 0.0 { ymax } else { 1.0 };
        let ymin_pos = pts
            .iter()
            .map(|p| p.lo.min(p.y))
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        // Log scale: whole decades around the data; linear: 0 to the top.
        let (d_lo, d_hi) = if ymin_pos.is_finite() {
            (
                ymin_pos.log10().floor(),
                ymax.log10().ceil().max(ymin_pos.log10().floor() + 1.0),
            )
        } else {
            (0.0, 1.0)
        };
        let log_y = c.log_y && ymin_pos.is_finite();
        let xs = |x: f64| left + (x.max(xmin).ln() - xmin.ln()) / (xmax.ln() - xmin.ln()) * pw;
        let ys = |y: f64| {
            if log_y {
                top + ph - (y.max(10f64.powf(d_lo)).log10() - d_lo) / (d_hi - d_lo) * ph
            } else {
                top + ph - y / ymax * ph
            }
        };
        // Axes and grid.
        let ticks: Vec<f64> = if log_y {
            (d_lo as i32..=d_hi as i32).map(|d| 10f64.powi(d)).collect()
        } else {
            (0..=4).map(|i| ymax * f64::from(i) / 4.0).collect()
        };
        for y in ticks {
            let py = ys(y);
            let _ = writeln!(
                body,
                r##"<line x1="{left}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e0e0e0"/>"##,
                left + pw
            );
            let _ = writeln!(
                body,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
                left - 6.0,
                py + 3.0,
                xml(&format_value(c.unit, y))
            );
        }
        let mut xticks: Vec<f64> = pts.iter().map(|p| p.x).collect();
        xticks.sort_by(f64::total_cmp);
        xticks.dedup();
        for x in xticks {
            let px = xs(x);
            let _ = writeln!(
                body,
                r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{:.1}" stroke="#e0e0e0"/>"##,
                top + ph
            );
            let _ = writeln!(
                body,
                r##"<text x="{px:.1}" y="{:.1}" font-size="11" text-anchor="middle">{x}</text>"##,
                top + ph + 16.0
            );
        }
        let _ = writeln!(
            body,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"##,
            left + pw / 2.0,
            top + ph + 36.0,
            xml(c.x_label)
        );
        let _ = writeln!(
            body,
            r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
        );
        for (i, s) in c.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let path: Vec<String> = s
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", xs(p.x), ys(p.y)))
                .collect();
            let _ = writeln!(
                body,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for p in &s.points {
                let (px, py) = (xs(p.x), ys(p.y));
                let _ = writeln!(
                    body,
                    r#"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="{color}"/>"#,
                    ys(p.lo),
                    ys(p.hi)
                );
                let _ = writeln!(
                    body,
                    r#"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{color}"><title>{}: {}</title></circle>"#,
                    p.x,
                    xml(&format_value(c.unit, p.y))
                );
            }
            let ly = top + 14.0 + 18.0 * i as f64;
            let lx = left + pw + 14.0;
            let _ = writeln!(
                body,
                r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"/>"#,
                ly - 4.0,
                lx + 18.0,
                ly - 4.0
            );
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{ly:.1}" font-size="11">{}</text>"#,
                lx + 24.0,
                xml(&s.name)
            );
        }
        for (i, f) in c.failed.iter().enumerate() {
            let _ = writeln!(
                body,
                r##"<text x="10" y="{:.1}" font-size="10" fill="#c62828">not measured: {}</text>"##,
                h - 8.0 - 12.0 * i as f64,
                xml(f)
            );
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_with_a_point_per_value() {
        let c = Curve {
            name: "demo",
            title: "demo <&>".into(),
            x_label: "clients",
            unit: Unit::PerSec,
            log_y: false,
            series: vec![Series {
                name: "a".into(),
                points: vec![Point::of(1.0, vec![1e5, 2e5]), Point::of(16.0, vec![3e5])],
            }],
            failed: vec!["a at 64: boom".into()],
        };
        let s = svg(&c, "note");
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<circle").count(), 2);
        assert!(s.contains("demo &lt;&amp;&gt;"));
        assert!(render(&[c]).contains("not measured: a at 64: boom"));
    }
}
