//! pipeline: `filter` chains of 2–4 integer stages (one process each) fed
//! from our own writer, with the expected output computed here.
//!
//! Promises checked:
//! - exit 0 means the output is exactly the expected lines (never a partial
//!   silent success);
//! - any other end is a clear failure: exit 1 with a `filter: ...` line, or
//!   128+N / death by the signal we sent; and whatever was printed is a
//!   prefix of the expected output (at most a last line cut short when a
//!   process was killed mid-write), never a wrong line;
//! - a bad input line fails the chain naming the line, after delivering the
//!   records before it;
//! - no stage outlives its chain: once `filter` is gone (even by kill -9),
//!   every stage process is gone within a bound.
//!
//! Faults: kill -9 of a stage mid-stream and of `filter` itself,
//! SIGSTOP/SIGCONT of a stage, SIGTERM/SIGINT/SIGHUP of `filter`, garbage
//! input lines, a chain under RLIMIT_NOFILE=10.

use std::io::Write;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::HANG_BOUND;
use crate::ctx::{Ctx, Fault};
use crate::os;

/// How long stages may linger after their chain is gone (generous).
const STAGE_BOUND: Duration = Duration::from_secs(10);

/// Runs the scenario.
pub fn run(ctx: &mut Ctx) {
    while ctx.running() {
        one_chain(ctx);
        ctx.tick(20);
    }
}

/// What a stage does to one number (computed here, for the expected output).
type Stage = Box<dyn Fn(i64) -> i64>;

fn one_chain(ctx: &mut Ctx) {
    let r = &mut ctx.rng;
    let mut stages: Vec<(String, Stage)> = Vec::new();
    for _ in 0..r.range(2, 4) {
        match r.below(3) {
            0 => {
                let k = r.range(0, 1000) as i64 - 500;
                stages.push((format!("add {k}"), Box::new(move |x| x + k)));
            }
            1 => {
                let k = r.range(0, 6) as i64 - 3;
                stages.push((format!("mul {k}"), Box::new(move |x| x * k)));
            }
            _ => stages.push(("neg".into(), Box::new(|x: i64| -x))),
        }
    }
    let n = r.range(1000, 40_000) as usize;
    let bad_at = r.chance(0.15).then(|| r.below(n as u64) as usize);
    let mut input = String::new();
    let mut expected: Vec<String> = Vec::new();
    for i in 0..n {
        if Some(i) == bad_at {
            input.push_str("abc\n");
            continue;
        }
        let x = r.range(0, 2_000_000) as i64 - 1_000_000;
        input.push_str(&format!("{x}\n"));
        if bad_at.map_or(true, |b| i < b) {
            expected.push(stages.iter().fold(x, |v, (_, f)| f(v)).to_string());
        }
    }
    let chunk = r.range(200, 4000) as usize;
    let pause = r.ms(0, 15);
    let nofile = r.chance(0.05);
    if bad_at.is_some() {
        ctx.fault(Fault::Garbage);
    }
    if nofile {
        ctx.fault(Fault::Nofile);
    }
    let specs: Vec<String> = stages.iter().map(|s| s.0.clone()).collect();
    let mut c = ctx.cmd("filter");
    c.args(&specs);
    let Some(mut p) = ctx.spawn_piped(c, "filter", nofile.then_some(10)) else {
        return;
    };
    let mut stdin = p.take_stdin().expect("piped");
    let feeder = std::thread::spawn(move || {
        for part in input.as_bytes().chunks(chunk * 8) {
            if stdin.write_all(part).is_err() {
                return;
            }
            std::thread::sleep(pause);
        }
    });
    // Faults while it runs.
    let mut hit: Option<&'static str> = None;
    let mut stage_pids: Vec<i32> = Vec::new();
    let fault_at = Instant::now() + ctx.rng.ms(20, 800);
    let do_fault = ctx.rng.chance(0.6);
    let started = Instant::now();
    while p.poll().is_none() && started.elapsed() < HANG_BOUND * 2 {
        for k in os::children(p.pid()) {
            if !stage_pids.contains(&k) {
                stage_pids.push(k);
            }
        }
        if do_fault && hit.is_none() && Instant::now() >= fault_at {
            let kids = os::children(p.pid());
            match ctx.rng.below(4) {
                0 if !kids.is_empty() => {
                    os::kill(*ctx.rng.pick(&kids), Signal::SIGKILL);
                    ctx.fault(Fault::Kill9Worst);
                    hit = Some("a stage was killed");
                }
                1 => {
                    p.signal(Signal::SIGKILL);
                    ctx.fault(Fault::Kill9);
                    hit = Some("filter was killed");
                }
                2 => {
                    let sig = ctx.polite_signal();
                    p.signal(sig);
                    hit = Some("filter was signalled");
                }
                _ if !kids.is_empty() => {
                    let k = *ctx.rng.pick(&kids);
                    let d = ctx.rng.ms(50, 1000);
                    ctx.stall(k, d);
                    hit = Some("stall");
                }
                _ => {}
            }
        }
        ctx.tick(5);
    }
    let Some(st) = p.poll() else {
        ctx.violation(format!(
            "filter {specs:?} still running after {:?}",
            started.elapsed()
        ));
        return;
    };
    ctx.cont_all();
    let _ = feeder.join();
    ctx.check_no_crash(&mut p);
    let out = std::fs::read_to_string(p.stdout_path()).unwrap_or_default();
    let err = p.stderr();
    let what = format!(
        "filter {specs:?} on {n} lines{}",
        match bad_at {
            Some(b) => format!(" (line {} is 'abc')", b + 1),
            None => String::new(),
        }
    );
    let hit = hit.filter(|h| *h != "stall");
    ctx.op();
    if st.success() {
        ctx.check(bad_at.is_none(), || {
            format!("{what}: exit 0 despite the bad line")
        });
        let lines: Vec<&str> = out.lines().collect();
        ctx.check(lines == expected && out.ends_with('\n'), || {
            format!(
                "{what}: exit 0 but the output differs from the expected ({} of {} lines{})",
                lines.len(),
                expected.len(),
                hit.map(|h| format!("; {h}")).unwrap_or_default()
            )
        });
    } else {
        let clear = hit.is_some()
            || (st.code() == Some(1) && err.lines().any(|l| l.starts_with("filter: ")));
        ctx.check(clear, || {
            format!(
                "{what}: {} without a clear 'filter: ...' line: {err:?}",
                os::describe(st)
            )
        });
        if bad_at.is_some() && hit.is_none() && !nofile {
            ctx.check(err.contains("line") && err.contains("abc"), || {
                format!("{what}: the failure does not name the bad line: {err:?}")
            });
        }
        // What was printed is a prefix of the expected output.
        let mut lines: Vec<&str> = out.split('\n').collect();
        let partial = lines.pop().unwrap_or("");
        let k = lines.len();
        let prefix_ok = k <= expected.len()
            && lines.iter().zip(&expected).all(|(a, b)| a == b)
            && (partial.is_empty()
                || (hit.is_some() && expected.get(k).is_some_and(|e| e.starts_with(partial))));
        ctx.check(prefix_ok, || {
            format!(
                "{what}: failed ({}) and printed {k} lines that are not a prefix of the expected output (partial {partial:?})",
                os::describe(st)
            )
        });
    }
    // No stage outlives its chain.
    let end = Instant::now() + STAGE_BOUND;
    while stage_pids.iter().any(|&s| os::alive(s)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = stage_pids
        .iter()
        .copied()
        .filter(|&s| os::alive(s))
        .collect();
    ctx.check(left.is_empty(), || {
        format!(
            "{what}: stages {left:?} outlived the chain by {STAGE_BOUND:?} ({})",
            hit.unwrap_or("no fault")
        )
    });
    for s in left {
        os::kill(s, Signal::SIGKILL);
    }
}
