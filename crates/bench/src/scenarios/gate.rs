//! Benchmarks of the limited-access scenario (`gate`).
//!
//! - **`gate -- true`**: wall time of one whole run (start, take a slot, exec
//!   `true`, exit), side by side with util-linux `flock FILE true`, alternating
//!   the two so both see the same machine load.
//! - **acquire + release**: one slot taken and given back by the library, in
//!   process (two `semop(2)` to take, one to give back), beside an
//!   uncontended `flock(2)` lock + unlock pair on a file.

use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context};
use syncomm_common::shutdown::Shutdown;
use syncomm_common::Name;
use syncomm_gate::{Acquire, Gate};

use crate::trials::Paired;
use crate::{stats, Ctx, Figure, Floor, Target, Unit};

/// Measures the gate scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    Ok(vec![command_run(ctx)?, cycle(ctx)?])
}

fn timed(cmd: &mut Command) -> anyhow::Result<f64> {
    let start = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    let us = start.elapsed().as_secs_f64() * 1e6;
    ensure!(status.success(), "{:?} failed: {status}", cmd.get_program());
    Ok(us)
}

fn command_run(ctx: &Ctx) -> anyhow::Result<Figure> {
    let n = ctx.iters(300, 30);
    let lock_file = ctx.work_dir.join("bench-gate.flock");
    let mut gate = ctx.cmd("gate");
    gate.args(["--name", "bench", "--", "true"]);
    let mut flock = Command::new("flock");
    flock.arg(&lock_file).arg("true");
    ctx.pin_peer(&mut flock);
    // Warm up both (page cache, the semaphore's creation).
    timed(&mut gate)?;
    let flock_ok = timed(&mut flock).is_ok();
    let (mut ours, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        ours.push(timed(&mut gate)?);
        if flock_ok {
            floor.push(timed(&mut flock)?);
        }
    }
    let _ = ctx
        .cmd("gate")
        .args(["--remove", "--name", "bench"])
        .stdout(Stdio::null())
        .status();
    let _ = std::fs::remove_file(&lock_file);
    let paired = Paired::from_chunks(&floor, &ours, ctx.trials());
    let (_, p99) = stats::summarize(&mut ours.clone());
    let median = paired.subject.median();
    let floor = (!floor.is_empty()).then(|| Floor {
        name: "util-linux flock FILE true".into(),
        hops: Some("fork + exec flock → flock(2) → fork + exec true".into()),
        median: stats::median(&mut floor),
        ..Default::default()
    });
    let target = floor.as_ref().map(|f| Target {
        text: "≤ 1.2 × flock(1)".into(),
        met: median <= 1.2 * f.median,
    });
    let mut f = Figure {
        id: "gate.run",
        scenario: "limited-access",
        what: "gate -- true, whole run".into(),
        unit: Unit::Micros,
        median,
        p99: Some(p99),
        floor,
        python_key: None,
        target,
        ..Default::default()
    };
    if f.floor.is_some() {
        paired.apply(&mut f);
        // The target is a ratio: judge it on the per-pair ratio.
        let r = f.pair_ratio.unwrap_or(f64::INFINITY);
        f.target = Some(Target::new("≤ 1.2 × flock(1)", r <= 1.2));
    }
    Ok(f)
}

fn cycle(ctx: &Ctx) -> anyhow::Result<Figure> {
    let batches = ctx.iters(100, 10);
    const PER_BATCH: usize = 1000;
    let name = Name::new("bench-cycle").expect("valid name");
    let path = ctx.work_dir.join("gate.bench-cycle.sem");
    let shutdown = Shutdown::manual()?;
    let gate = Gate::open_or_create_at(&path, &name, Some(3))?;
    let lock_path = ctx.work_dir.join("bench-gate.lock");
    let lock_file = std::fs::File::create(&lock_path)?;
    let fd = lock_file.as_raw_fd();
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..batches {
        let start = Instant::now();
        for _ in 0..PER_BATCH {
            let Acquire::Slot(slot) = gate.acquire(None, &shutdown)? else {
                anyhow::bail!("no slot");
            };
            gate.release(slot)?;
        }
        ours.push(start.elapsed().as_secs_f64() * 1e6 / PER_BATCH as f64);
        let start = Instant::now();
        for _ in 0..PER_BATCH {
            // SAFETY: flock(2) on a descriptor that `lock_file` keeps open.
            let rc = unsafe { libc::flock(fd, libc::LOCK_EX) + libc::flock(fd, libc::LOCK_UN) };
            ensure!(rc == 0, "flock failed");
        }
        floor.push(start.elapsed().as_secs_f64() * 1e6 / PER_BATCH as f64);
    }
    drop(gate);
    let _ = Gate::remove_at(&path, &name);
    let _ = std::fs::remove_file(&lock_path);
    let paired = Paired::from_chunks(&floor, &ours, ctx.trials());
    let (_, p99) = stats::summarize(&mut ours.clone());
    let median = paired.subject.median();
    let mut f = Figure {
        id: "gate.cycle",
        scenario: "limited-access",
        what: "slot acquire + release (library, uncontended)".into(),
        unit: Unit::Micros,
        median,
        p99: Some(p99),
        floor: Some(Floor {
            name: "flock(2) LOCK_EX + LOCK_UN".into(),
            hops: Some("one process, two system calls".into()),
            median: stats::median(&mut floor),
            ..Default::default()
        }),
        python_key: Some("gate_cycle_us"),
        target: None,
        ..Default::default()
    };
    paired.apply(&mut f);
    Ok(f)
}
