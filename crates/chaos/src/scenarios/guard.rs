//! guard: commands that overrun their deadline and leave a tree behind (a
//! background child and a `setsid` grandchild), and commands that end in time.
//!
//! Promises checked:
//! - a command that ends in time gives guard its own exit status (a quick
//!   command that we stalled past the deadline is timed out, never earlier);
//! - an overrunning command makes guard exit 124 (137 with `-s KILL`), and
//!   its whole tree, the `setsid` descendant included, is gone once guard
//!   has exited;
//! - guard ends by the deadline plus a generous bound plus the time we kept
//!   it stopped;
//! - SIGTERM/SIGINT/SIGHUP to guard reach the command: guard ends and the
//!   tree is gone;
//! - guard killed with `kill -9` takes the command with it (parent-death
//!   signal); descendants of the command are documented as not covered then,
//!   and are noted (and cleaned up) rather than counted.
//!
//! Faults: SIGSTOP/SIGCONT of guard and of the command, SIGTERM/SIGINT/SIGHUP
//! and kill -9 of guard, guard under RLIMIT_NOFILE=10.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::HANG_BOUND;
use crate::ctx::{Ctx, Fault};
use crate::os::{self, Proc};

/// The environment variable naming one guard run's tree.
const TREE_VAR: &str = "SYNCOMM_CHAOS_TREE";
/// How long the tree may linger after guard exited (generous).
const TREE_BOUND: Duration = Duration::from_secs(10);

struct Run {
    p: Proc,
    tree: String,
    deadline: Duration,
    quick: Option<i32>,
    kill_sig: bool,
    hit: Option<Signal>,
    stopped_for: Duration,
    /// The command's pid (guard's child), seen while it ran.
    command: Option<i32>,
}

/// Runs the scenario.
pub fn run(ctx: &mut Ctx) {
    let mut runs: Vec<Run> = Vec::new();
    let mut n = 0u64;
    while ctx.running() {
        runs.retain_mut(|r| !finished(ctx, r));
        if runs.len() < 3 && ctx.rng.chance(0.1) {
            n += 1;
            if let Some(r) = start(ctx, n) {
                runs.push(r);
            }
        }
        for r in runs.iter_mut() {
            if r.command.is_none() {
                r.command = os::children(r.p.pid()).first().copied();
            }
        }
        if !runs.is_empty() && ctx.rng.chance(0.02) {
            let i = ctx.rng.below(runs.len() as u64) as usize;
            inject(ctx, &mut runs[i]);
        }
        ctx.tick(20);
    }
    ctx.cont_all();
    for mut r in runs.drain(..) {
        let _ = r.p.wait_for(r.deadline + HANG_BOUND);
        finished(ctx, &mut r);
    }
}

fn start(ctx: &mut Ctx, n: u64) -> Option<Run> {
    let tree = format!("{}/{n}", ctx.mark());
    let deadline = ctx.rng.ms(200, 1500);
    let mut c = ctx.cmd("guard");
    c.env(TREE_VAR, &tree);
    let kill_sig = ctx.rng.chance(0.15);
    if kill_sig {
        c.args(["-s", "KILL"]);
    } else if ctx.rng.chance(0.3) {
        c.args(["-k", "1"]);
    }
    c.arg(format!("{}ms", deadline.as_millis()));
    let quick = ctx.rng.chance(0.2).then(|| ctx.rng.range(0, 5) as i32);
    match quick {
        Some(code) => c.args(["sh", "-c", &format!("exit {code}")]),
        None => c.args(["sh", "-c", "sleep 60 & setsid sleep 60 & sleep 60; wait"]),
    };
    let nofile = ctx.rng.chance(0.07);
    if nofile {
        ctx.fault(Fault::Nofile);
    }
    let p = ctx.spawn(c, "guard", nofile.then_some(10))?;
    Some(Run {
        p,
        tree,
        deadline,
        quick,
        kill_sig,
        hit: None,
        stopped_for: Duration::ZERO,
        command: None,
    })
}

fn inject(ctx: &mut Ctx, r: &mut Run) {
    if r.hit.is_some() || r.p.poll().is_some() {
        return;
    }
    match ctx.rng.below(4) {
        0 => {
            let d = ctx.rng.ms(100, 1500);
            if !ctx.stalled(r.p.pid()) {
                ctx.stall(r.p.pid(), d);
                r.stopped_for += d;
            }
        }
        1 => {
            if let Some(c) = r.command.filter(|&c| os::alive(c)) {
                let d = ctx.rng.ms(100, 1500);
                if !ctx.stalled(c) {
                    ctx.stall(c, d);
                    r.stopped_for += d;
                }
            }
        }
        2 => {
            let sig = ctx.polite_signal();
            r.p.signal(sig);
            r.hit = Some(sig);
        }
        _ => {
            r.p.signal(Signal::SIGKILL);
            r.hit = Some(Signal::SIGKILL);
            ctx.fault(Fault::Kill9Worst);
        }
    }
}

fn finished(ctx: &mut Ctx, r: &mut Run) -> bool {
    let Some(st) = r.p.poll() else {
        let bound = r.deadline + r.stopped_for + Duration::from_secs(1) + HANG_BOUND;
        if r.p.started.elapsed() > bound {
            ctx.violation(format!(
                "guard {:?} still running {:?} after it started ({})",
                r.deadline,
                r.p.started.elapsed(),
                if r.quick.is_some() {
                    "quick command"
                } else {
                    "overrunning tree"
                }
            ));
            r.p.kill_now();
            return true;
        }
        return false;
    };
    ctx.check_no_crash(&mut r.p);
    let err = r.p.stderr();
    ctx.op();
    let nofile_refusal = st.code() == Some(125) && !err.trim().is_empty();
    match (r.hit, r.quick) {
        (Some(Signal::SIGKILL), _) => {
            // Only the command is covered: it must die with guard.
            if let Some(c) = r.command {
                let end = Instant::now() + TREE_BOUND;
                while os::alive(c) && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(20));
                }
                ctx.check(!os::alive(c), || {
                    format!("guard was killed with SIGKILL but its command (pid {c}) lives on")
                });
            }
            let left = os::marked(TREE_VAR, &r.tree);
            if !left.is_empty() {
                ctx.note(
                    "guard killed with SIGKILL leaves the command's own children (documented: not covered); cleaned up here"
                        .to_owned(),
                );
                for p in left {
                    os::kill(p, Signal::SIGKILL);
                }
            }
            return true;
        }
        (Some(_), _) => {}
        (None, Some(code)) => {
            // A quick command can still overrun: we may have stopped it, or
            // the loaded machine was slow to start `sh`. Guard then rightly
            // times it out, but never before the deadline (our clock started
            // before guard's, so it has run at least as long as guard).
            let timeout = if r.kill_sig { 137 } else { 124 };
            let timed_out = st.code() == Some(timeout) && r.p.started.elapsed() >= r.deadline;
            ctx.check(
                st.code() == Some(code) || nofile_refusal || timed_out,
                || {
                    format!(
                        "guard {:?} around 'exit {code}': {} after {:?} ({})",
                        r.deadline,
                        os::describe(st),
                        r.p.started.elapsed(),
                        err.trim()
                    )
                },
            );
            if timed_out && st.code() != Some(code) {
                ctx.note(
                    "a quick command overran its deadline (stopped by us, or slow to start) and was timed out"
                        .to_owned(),
                );
            }
        }
        (None, None) => {
            let want = if r.kill_sig { 137 } else { 124 };
            ctx.check(st.code() == Some(want) || nofile_refusal, || {
                format!(
                    "guard {:?} around an overrunning command: {}, expected exit {want} ({})",
                    r.deadline,
                    os::describe(st),
                    err.trim()
                )
            });
        }
    }
    // Nothing of the tree survives guard.
    let end = Instant::now() + TREE_BOUND;
    let mut left = os::marked(TREE_VAR, &r.tree);
    while !left.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        left = os::marked(TREE_VAR, &r.tree);
    }
    let described: Vec<String> = left
        .iter()
        .map(|&p| format!("{p} ({})", os::cmdline(p)))
        .collect();
    ctx.check(left.is_empty(), || {
        format!(
            "guard exited ({}{}) but left {described:?} of its command's tree",
            os::describe(st),
            r.hit
                .map(|s| format!(" after our {}", s.as_str()))
                .unwrap_or_default()
        )
    });
    for p in left {
        os::kill(p, Signal::SIGKILL);
    }
    true
}
