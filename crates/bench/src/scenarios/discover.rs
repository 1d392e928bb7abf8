//! Benchmarks of the discover scenario: how long 16 processes take to find
//! each other (until the last has printed the group, as the seed measures it)
//! and to exit, beside the floor of 16 `echo` processes started, read and
//! reaped the same way.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::trials::Paired;
use crate::{stats, Ctx, Figure, Floor};

/// Members in the group, as in the seed's measurement.
const MEMBERS: usize = 16;

/// Starts every command at once, then waits until each has printed its first
/// line and until all have exited: both wall times, in ms, from the first start.
pub(crate) fn start_all(cmds: Vec<Command>) -> anyhow::Result<(f64, f64)> {
    let start = Instant::now();
    let mut children = Vec::with_capacity(cmds.len());
    for mut c in cmds {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        children.push(c.spawn().context("spawning a benchmark process")?);
    }
    // Reading the pipes one after another: the total is the latest line.
    for child in &mut children {
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("piped")).read_line(&mut line)?;
        if line.is_empty() {
            bail!("a process ended without printing its line");
        }
    }
    let printed = start.elapsed().as_secs_f64() * 1e3;
    let mut failed = 0;
    for mut child in children {
        if !child.wait()?.success() {
            failed += 1;
        }
    }
    let exited = start.elapsed().as_secs_f64() * 1e3;
    if failed > 0 {
        bail!("{failed} of the processes failed");
    }
    Ok((printed, exited))
}

pub(crate) fn members(ctx: &Ctx, round: usize, m: usize) -> Vec<Command> {
    let name = format!("bench-{}-{round}", std::process::id());
    (0..m)
        .map(|i| {
            let mut c = ctx.cmd("discover");
            c.args(["--name", &name, "--id", &format!("p{i}")]);
            c.args(["--members", &m.to_string(), "--timeout", "60s"]);
            c
        })
        .collect()
}

/// The floor: processes that print one line and exit (`echo`, not the shell builtin).
fn echoes(ctx: &Ctx, n: usize) -> Vec<Command> {
    (0..n)
        .map(|_| {
            let mut c = Command::new("echo");
            c.arg("found");
            ctx.pin_peer(&mut c);
            c
        })
        .collect()
}

/// Measures the discover scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let trials = ctx.many_trials();
    let rounds = ctx.iters(3, 1) * trials;
    let mut found = Vec::new();
    let mut exited = Vec::new();
    let mut floor_found = Vec::new();
    let mut floor_exited = Vec::new();
    let mut alone = Vec::new();
    let mut floor_alone = Vec::new();
    // Warm up the page cache and the binary once.
    start_all(members(ctx, usize::MAX, 2))?;
    for round in 0..rounds {
        // Interleaved, so a burst of machine load hits both sides alike.
        let (f, e) = start_all(echoes(ctx, MEMBERS))?;
        floor_found.push(f);
        floor_exited.push(e);
        let (f, e) = start_all(members(ctx, round, MEMBERS)).context("16 members meeting")?;
        found.push(f);
        exited.push(e);
        floor_alone.push(start_all(echoes(ctx, 1))?.1);
        alone.push(start_all(members(ctx, rounds + round, 1))?.1);
    }
    let fig = |id: &'static str,
               what: &str,
               samples: &mut Vec<f64>,
               floor: &mut Vec<f64>,
               floor_name: &str,
               key| {
        let paired = Paired::from_chunks(floor, samples, trials);
        let (median, p99) = stats::summarize(samples);
        let mut f = Figure {
            id,
            scenario: "discover",
            what: what.to_owned(),
            unit: crate::Unit::Millis,
            median,
            p99: Some(p99),
            floor: Some(Floor {
                name: floor_name.to_owned(),
                median: stats::median(floor),
                hops: Some("processes started at once, each prints a line, all reaped".into()),
                ..Default::default()
            }),
            python_key: key,
            target: None,
            ..Default::default()
        };
        paired.apply(&mut f);
        f
    };
    Ok(vec![
        fig(
            "discover.meet",
            "16 members: all started → all have found all (printed)",
            &mut found,
            &mut floor_found,
            "16 × echo, started → all printed",
            Some("discover_meet_ms"),
        ),
        fig(
            "discover.exit",
            "16 members: all started → all exited",
            &mut exited,
            &mut floor_exited,
            "16 × echo, started → all exited",
            None,
        ),
        fig(
            "discover.alone",
            "1 member alone (--members 1): started → exited",
            &mut alone,
            &mut floor_alone,
            "1 × echo",
            None,
        ),
    ])
}
