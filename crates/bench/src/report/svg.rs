//! The ratios as a hand-drawn SVG chart (`target/bench/ratios.svg`).

use std::fmt::Write as _;

use super::{ratio_to_floor, ratio_to_python, sig3, Report, Row};
use crate::cpu::CpuConfig;
use crate::Figure;

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
