//! Benchmarks of the discover scenario: how long 16 processes take to find
//! each other and meet, beside the floor of starting and reaping 16 processes
//! that do nothing (`true`) the same way.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::{stats, Ctx, Figure, Floor};

/// Members in the group, as in the seed's measurement.
const MEMBERS: usize = 16;

/// Starts every command at once, then reaps them all: wall time in ms.
fn spawn_all_and_reap(cmds: Vec<Command>) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut children = Vec::with_capacity(cmds.len());
    for mut c in cmds {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        children.push(c.spawn().context("spawning a benchmark process")?);
    }
    let mut failed = 0;
    for mut child in children {
        if !child.wait()?.success() {
            failed += 1;
        }
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if failed > 0 {
        bail!("{failed} of the processes failed");
    }
    Ok(ms)
}

fn members(ctx: &Ctx, round: usize, m: usize) -> Vec<Command> {
    let name = format!("bench-{}-{round}", std::process::id());
    (0..m)
        .map(|i| {
            let mut c = ctx.cmd("discover");
            c.args(["--name", &name, "--as", &format!("p{i}")]);
            c.args(["--members", &m.to_string(), "--timeout", "60s"]);
            c
        })
        .collect()
}

fn trues(n: usize) -> Vec<Command> {
    (0..n).map(|_| Command::new("true")).collect()
}

/// Measures the discover scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let rounds = ctx.iters(15, 3);
    let (mut meet, mut floor16, mut alone, mut floor1) = (vec![], vec![], vec![], vec![]);
    // Warm up the page cache and the binary once.
    spawn_all_and_reap(members(ctx, usize::MAX, 2))?;
    for round in 0..rounds {
        // Interleaved, so a burst of machine load hits both sides alike.
        floor16.push(spawn_all_and_reap(trues(MEMBERS))?);
        meet.push(spawn_all_and_reap(members(ctx, round, MEMBERS)).context("16 members meeting")?);
        floor1.push(spawn_all_and_reap(trues(1))?);
        alone.push(spawn_all_and_reap(members(ctx, rounds + round, 1))?);
    }
    let fig = |what: &str, samples: &mut Vec<f64>, floor: &mut Vec<f64>, floor_name: &str, key| {
        let (median, p99) = stats::summarize(samples);
        Figure {
            scenario: "discover",
            what: what.to_owned(),
            unit: crate::Unit::Millis,
            median,
            p99: Some(p99),
            floor: Some(Floor {
                name: floor_name.to_owned(),
                median: stats::median(floor),
            }),
            python_key: key,
            target: None,
        }
    };
    Ok(vec![
        fig(
            "16 members meet (all started to all exited)",
            &mut meet,
            &mut floor16,
            "16 × true, started and reaped the same way",
            Some("discover_meet_ms"),
        ),
        fig(
            "1 member alone (--members 1: join, barrier, leave)",
            &mut alone,
            &mut floor1,
            "1 × true",
            None,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the module against the release binaries (`cargo build --release` first):
    /// `cargo test -p syncomm-benchsuite discover -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn discover_figures() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let work = tempfile::tempdir().unwrap();
        let ctx = Ctx {
            quick: std::env::var_os("QUICK").is_some(),
            bin_dir: root.join("target/release"),
            work_dir: work.path().to_owned(),
        };
        for f in run(&ctx).unwrap() {
            println!(
                "{}: median {:.2} ms, p99 {:.2} ms, floor {} {:.2} ms",
                f.what,
                f.median,
                f.p99.unwrap(),
                f.floor.as_ref().unwrap().name,
                f.floor.as_ref().unwrap().median
            );
        }
    }
}
