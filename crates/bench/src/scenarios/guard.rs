//! Benchmarks of the guard scenario, each beside GNU `timeout(1)` measured
//! in the same run, interleaved run by run so both see the same machine load.
//!
//! - **overhead**: wall time of `guard 10 true` (start, run a command that
//!   ends at once, clean up, exit) against `timeout 10 true`.
//!   Target ≤ 1.3 × timeout(1). Python key `guard_overhead_ms`.
//! - **kill precision**: how long after its deadline a command that overruns
//!   is killed and reaped and guard has exited (`guard 0.05 sleep 10`, wall
//!   time minus 50 ms), against the same for `timeout(1)`. Target ≤ 10 ms
//!   (median); a polling implementation (the seed's sleep-then-check) shows
//!   about 100 ms.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::stats::summarize;
use crate::trials::Paired;
use crate::{Ctx, Figure, Floor, Target, Unit};

/// How long one run of `cmd` takes, in milliseconds; checks its exit code.
fn wall_ms(mut cmd: Command, want: i32) -> anyhow::Result<f64> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if status.code() != Some(want) {
        bail!("{:?} exited {status}, expected {want}", cmd.get_program());
    }
    Ok(ms)
}

/// The floor, `timeout(1)`, pinned like `guard` (the same CPUs, the same
/// way of starting it).
fn timeout(ctx: &Ctx, args: &[&str]) -> Command {
    let mut c = Command::new("timeout");
    c.args(args);
    ctx.pin_peer(&mut c);
    c
}

/// Measures the guard scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let guard = |args: &[&str]| {
        let mut c = ctx.cmd("guard");
        c.args(args);
        c
    };
    let mut figures = Vec::new();

    // Overhead: a command that ends at once.
    let n = ctx.iters(300, 30);
    let (mut ours, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..3 {
        // Warm the page cache for both binaries.
        wall_ms(guard(&["10", "true"]), 0)?;
        wall_ms(timeout(ctx, &["10", "true"]), 0)?;
    }
    for i in 0..n {
        // Alternate which goes first, so neither always runs on a warmer machine.
        if i % 2 == 0 {
            ours.push(wall_ms(guard(&["10", "true"]), 0)?);
            floor.push(wall_ms(timeout(ctx, &["10", "true"]), 0)?);
        } else {
            floor.push(wall_ms(timeout(ctx, &["10", "true"]), 0)?);
            ours.push(wall_ms(guard(&["10", "true"]), 0)?);
        }
    }
    let paired = Paired::from_chunks(&floor, &ours, ctx.trials());
    let (_, p99) = summarize(&mut ours.clone());
    let median = paired.subject.median();
    let floor_median = paired.floor.median();
    figures.push(Figure {
        id: "guard.overhead",
        scenario: "guard",
        what: "overhead: wall time of `guard 10 true`".into(),
        unit: Unit::Millis,
        median,
        p99: Some(p99),
        floor: Some(Floor {
            name: "timeout 10 true".into(),
            hops: Some("fork + exec timeout → fork + exec true → wait".into()),
            median: floor_median,
            ..Default::default()
        }),
        python_key: Some("guard_overhead_ms"),
        target: Some(Target {
            text: "≤ 1.3 × timeout(1)".into(),
            met: median <= 1.3 * floor_median,
        }),
        ..Default::default()
    });
    let f = figures.last_mut().expect("pushed");
    paired.apply(f);
    // The target is a ratio: judge it on the per-pair ratio.
    let r = f.pair_ratio.unwrap_or(f64::INFINITY);
    f.target = Some(Target::new("≤ 1.3 × timeout(1)", r <= 1.3));

    // Precision: a command that overruns a 50 ms deadline.
    let deadline = Duration::from_millis(50);
    let d = format!("{}", deadline.as_secs_f64());
    let n = ctx.iters(40, 6);
    let (mut ours, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let late = |ms: f64| ms - deadline.as_secs_f64() * 1e3;
    for _ in 0..n {
        ours.push(late(wall_ms(guard(&[&d, "sleep", "10"]), 124)?));
        floor.push(late(wall_ms(timeout(ctx, &[&d, "sleep", "10"]), 124)?));
    }
    let paired = Paired::from_chunks(&floor, &ours, ctx.trials());
    let (_, p99) = summarize(&mut ours.clone());
    let median = paired.subject.median();
    let floor_median = paired.floor.median();
    figures.push(Figure {
        id: "guard.precision",
        scenario: "guard",
        what: "kill precision: deadline to command reaped and guard exited".into(),
        unit: Unit::Millis,
        median,
        p99: Some(p99),
        floor: Some(Floor {
            name: "timeout 0.05 sleep 10".into(),
            hops: Some("timeout's timer → SIGTERM → sleep reaped".into()),
            median: floor_median,
            ..Default::default()
        }),
        python_key: None,
        target: Some(Target {
            text: "≤ 10 ms after the deadline (median)".into(),
            met: median <= 10.0,
        }),
        ..Default::default()
    });
    paired.apply(figures.last_mut().expect("pushed"));
    Ok(figures)
}
