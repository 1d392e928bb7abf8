//! Benchmarks of the pipeline scenario (`filter`).
//!
//! - Integer lines per second through `filter 'add 1' 'mul 2' neg` (three
//!   stage processes), beside `cat | cat | cat` on the same input (three
//!   processes that only copy): the floor any three-process chain pays.
//! - Bytes per second through `filter pass pass pass`, beside the same
//!   `cat | cat | cat`, measured in the same run and interleaved with it.
//!
//! Each run of the three commands is one trial (5, or 3 with `--quick`).
//! Input is `1..=N` one per line in a file (N = 10 M, 1 M with `--quick`),
//! read from the page cache; output goes to `/dev/null`. Each sample is the
//! wall time of the whole command, process start-up included.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::trials::Paired;
use crate::{Ctx, Figure, Floor, Target, Unit};

/// Measures the pipeline scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let lines: u64 = if ctx.quick { 1_000_000 } else { 10_000_000 };
    let samples = ctx.trials();
    let input = ctx.work_dir.join("pipeline-ints.txt");
    write_input(&input, lines)?;
    let bytes = std::fs::metadata(&input)?.len() as f64;

    let arith = ["add 1", "mul 2", "neg"];
    let pass = ["pass", "pass", "pass"];
    // Warm the page cache and the binaries once, unmeasured.
    time_filter(ctx, &input, &arith)?;
    time_cat3(ctx, &input)?;

    let (mut t_arith, mut t_pass, mut t_cat) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        t_arith.push(time_filter(ctx, &input, &arith)?);
        t_cat.push(time_cat3(ctx, &input)?);
        t_pass.push(time_filter(ctx, &input, &pass)?);
    }
    std::fs::remove_file(&input).ok();

    let rate =
        |times: &[f64], amount: f64| -> Vec<f64> { times.iter().map(|t| amount / t).collect() };
    let lines_f = lines as f64;
    let arith = Paired::from_runs(&rate(&t_cat, lines_f), &rate(&t_arith, lines_f));
    let pass = Paired::from_runs(&rate(&t_cat, bytes), &rate(&t_pass, bytes));
    let arith_rate = arith.subject.median();
    let pass_rate = pass.subject.median();
    let cat_bytes = pass.floor.median();
    let cat_lines = arith.floor.median();

    let mut figs = vec![
        Figure {
            id: "pipeline.arith",
            scenario: "pipeline",
            what: "integer lines through 'add 1' 'mul 2' neg, lines/s".into(),
            unit: Unit::PerSec,
            median: arith_rate,
            p99: None,
            floor: Some(Floor {
                name: "cat | cat | cat, lines/s".into(),
                median: cat_lines,
                hops: Some("file → cat → pipe → cat → pipe → cat → /dev/null".into()),
                ..Default::default()
            }),
            python_key: Some("pipeline_lines_per_s"),
            target: Some(Target {
                text: "≥ 5 M lines/s".into(),
                met: arith_rate >= 5e6,
            }),
            ..Default::default()
        },
        Figure {
            id: "pipeline.pass",
            scenario: "pipeline",
            what: "filter pass pass pass, bytes/s".into(),
            unit: Unit::PerSec,
            median: pass_rate,
            p99: None,
            floor: Some(Floor {
                name: "cat | cat | cat, bytes/s".into(),
                median: cat_bytes,
                hops: Some("file → cat → pipe → cat → pipe → cat → /dev/null".into()),
                ..Default::default()
            }),
            python_key: None,
            target: Some(Target {
                text: "≥ 0.5 × cat | cat | cat".into(),
                met: pass_rate >= 0.5 * cat_bytes,
            }),
            ..Default::default()
        },
    ];
    arith.apply(&mut figs[0]);
    pass.apply(&mut figs[1]);
    Ok(figs)
}

/// Writes `1..=n`, one per line.
pub(crate) fn write_input(path: &Path, n: u64) -> anyhow::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).context("creating input")?);
    for i in 1..=n {
        writeln!(w, "{i}")?;
    }
    w.flush()?;
    Ok(())
}

/// Seconds for `filter STAGES < input > /dev/null`.
pub(crate) fn time_filter(ctx: &Ctx, input: &Path, stages: &[&str]) -> anyhow::Result<f64> {
    let mut cmd = ctx.cmd("filter");
    cmd.args(stages)
        .stdin(File::open(input)?)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd.output().context("running filter")?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "filter {stages:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(secs)
}

/// Seconds for `cat < input | cat | cat > /dev/null`, joined without a shell.
/// (Each `cat` pinned like the filter stages.)
fn time_cat3(ctx: &Ctx, input: &Path) -> anyhow::Result<f64> {
    let cat = || {
        let mut c = Command::new("cat");
        ctx.pin_peer(&mut c);
        c
    };
    let start = Instant::now();
    let mut first = cat()
        .stdin(File::open(input)?)
        .stdout(Stdio::piped())
        .spawn()
        .context("running cat")?;
    let mut second = cat()
        .stdin(Stdio::from(first.stdout.take().expect("piped")))
        .stdout(Stdio::piped())
        .spawn()?;
    let mut third = cat()
        .stdin(Stdio::from(second.stdout.take().expect("piped")))
        .stdout(Stdio::null())
        .spawn()?;
    let ok = [first.wait()?, second.wait()?, third.wait()?]
        .iter()
        .all(|s| s.success());
    let secs = start.elapsed().as_secs_f64();
    if !ok {
        bail!("cat | cat | cat failed");
    }
    Ok(secs)
}
