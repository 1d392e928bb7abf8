//! limited-access: `gate` holders and waiters on one semaphore of 2 slots.
//!
//! Promises checked:
//! - never more holders than slots, at any sample of `gate --status --json`
//!   (held = slots - free ≤ slots, and at most `slots` holder records);
//! - a holder killed with `kill -9` gives its slot back: within a generous
//!   bound it is no longer listed as a holder;
//! - every gate ends: it gets its slot and runs, or times out (exit 1, one
//!   line), or ends on our signal — no gate hangs past its `--timeout`;
//! - at the end `gate --remove` removes the semaphore: no runtime file and no
//!   System V semaphore set is left (`/proc/sysvipc/sem`).
//!
//! Faults: kill -9 of holders (while they hold a slot) and of waiters,
//! SIGSTOP/SIGCONT of holders, SIGTERM/SIGINT/SIGHUP, gates started under
//! RLIMIT_NOFILE=8.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value as J;

use super::{unique, HANG_BOUND};
use crate::ctx::{Ctx, Fault};
use crate::os::{self, Proc};

const SLOTS: u64 = 2;
const WAIT: Duration = Duration::from_secs(4);
/// How long a dead holder's slot may take to come back (generous).
const FREED_BOUND: Duration = Duration::from_secs(10);

struct Gate {
    p: Proc,
    hit: bool,
}

/// Runs the scenario.
pub fn run(ctx: &mut Ctx) {
    let name = unique("gate");
    let keyfile = ctx.rundir().join(format!("gate.{name}.sem"));
    let mut keys: BTreeSet<i64> = BTreeSet::new();
    let mut gates: Vec<Gate> = Vec::new();
    let mut status: Option<Proc> = None;
    let mut holders: Vec<i32> = Vec::new();
    // Holders killed while holding: (pid, when).
    let mut dead_holders: Vec<(i32, Instant)> = Vec::new();
    let mut next_fault = Instant::now() + ctx.rng.ms(300, 1000);

    while ctx.running() {
        if let Some(k) = read_key(&keyfile) {
            keys.insert(k);
        }
        gates.retain_mut(|g| !finished(ctx, g));
        if gates.len() < 6 && ctx.rng.chance(0.15) {
            if let Some(g) = start_gate(ctx, &name) {
                gates.push(g);
            }
        }
        // Status samples, one at a time.
        match status.as_mut().map(|s| s.poll()) {
            Some(Some(st)) => {
                let mut s = status.take().unwrap();
                ctx.check_no_crash(&mut s);
                if st.success() {
                    if let Some(j) = s
                        .stdout()
                        .lines()
                        .find_map(|l| serde_json::from_str::<J>(l).ok())
                    {
                        holders = check_status(ctx, &j);
                        dead_holders.retain(|&(pid, at)| {
                            if !holders.contains(&pid) {
                                ctx.tally.checks += 1;
                                false
                            } else if at.elapsed() > FREED_BOUND {
                                ctx.violation(format!(
                                    "holder {pid} was killed {:?} ago and still holds a slot",
                                    at.elapsed()
                                ));
                                false
                            } else {
                                true
                            }
                        });
                    }
                }
            }
            Some(None) => {
                if status.as_ref().unwrap().started.elapsed() > HANG_BOUND {
                    ctx.violation("gate --status hung".to_owned());
                    status = None;
                }
            }
            None => {
                let mut c = ctx.cmd("gate");
                c.args(["--status", "--json", "--name", &name]);
                status = ctx.spawn(c, "gate-status", None);
            }
        }
        if Instant::now() >= next_fault {
            next_fault = Instant::now() + ctx.rng.ms(200, 900);
            inject(ctx, &mut gates, &holders, &mut dead_holders);
        }
        ctx.tick(20);
    }

    ctx.cont_all();
    drop(status);
    for mut g in gates.drain(..) {
        if g.p.wait_for(WAIT + HANG_BOUND).is_none() {
            ctx.violation("a gate hung at the end".to_owned());
        }
        finished(ctx, &mut g);
    }
    if let Some(k) = read_key(&keyfile) {
        keys.insert(k);
    }
    let mut c = ctx.cmd("gate");
    c.args(["--remove", "--name", &name]);
    if let Some(mut p) = ctx.spawn(c, "gate-remove", None) {
        let st = p.wait_for(HANG_BOUND);
        ctx.check(st.is_some_and(|s| s.success()) || keys.is_empty(), || {
            format!(
                "gate --remove at the end failed: {} {}",
                st.map(os::describe).unwrap_or("hung".into()),
                p.stderr().trim()
            )
        });
    }
    ctx.tally.checks += 1;
    for k in keys {
        if os::sem_key_exists(k) {
            ctx.leak(format!("System V semaphore set with key {k}"));
        }
    }
}

fn read_key(keyfile: &std::path::Path) -> Option<i64> {
    let t = std::fs::read_to_string(keyfile).ok()?;
    t.trim().rsplit("key=").next()?.parse().ok()
}

fn start_gate(ctx: &mut Ctx, name: &str) -> Option<Gate> {
    let mut c = ctx.cmd("gate");
    c.args(["--name", name, "--slots", &SLOTS.to_string(), "--timeout"])
        .arg(format!("{}s", WAIT.as_secs()));
    let hold = ctx.rng.range(50, 1500);
    if ctx.rng.chance(0.5) {
        // The command becomes the holder (execve keeps the slot's undo record).
        c.args([
            "--",
            "sleep",
            &format!("{}.{:03}", hold / 1000, hold % 1000),
        ]);
    } else {
        c.args(["--hold", &format!("{hold}ms"), "--id", "demo"]);
    }
    let nofile = ctx.rng.chance(0.07);
    if nofile {
        ctx.fault(Fault::Nofile);
    }
    let p = ctx.spawn(c, "gate", nofile.then_some(8))?;
    Some(Gate { p, hit: false })
}

fn finished(ctx: &mut Ctx, g: &mut Gate) -> bool {
    let Some(st) = g.p.poll() else {
        if g.p.started.elapsed() > WAIT + Duration::from_secs(2) + HANG_BOUND
            && !ctx.stalled(g.p.pid())
        {
            ctx.violation(format!(
                "a gate --timeout {WAIT:?} still running after {:?}",
                g.p.started.elapsed()
            ));
            g.p.kill_now();
            return true;
        }
        return false;
    };
    ctx.check_no_crash(&mut g.p);
    ctx.op();
    if !st.success() && !g.hit {
        let err = g.p.stderr();
        // 75: gate's own --timeout expired; 1: any other clear failure.
        ctx.check(
            matches!(st.code(), Some(1 | 75)) && !err.trim().is_empty(),
            || format!("a gate failed ({}) with {err:?}", os::describe(st)),
        );
    }
    true
}

/// Checks one status sample; returns the holders' pids.
fn check_status(ctx: &mut Ctx, j: &J) -> Vec<i32> {
    let slots = j["slots"].as_u64().unwrap_or(0);
    let free = j["free"].as_u64().unwrap_or(0);
    let holders: Vec<i32> = j["holders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h["pid"].as_i64())
                .map(|p| p as i32)
                .collect()
        })
        .unwrap_or_default();
    ctx.op();
    ctx.check(slots == SLOTS && free <= slots, || {
        format!("status: {slots} slots, {free} free (want {SLOTS} slots)")
    });
    ctx.check(holders.len() as u64 <= SLOTS, || {
        format!(
            "status lists {} holders for {SLOTS} slots: {j}",
            holders.len()
        )
    });
    holders
}

fn inject(
    ctx: &mut Ctx,
    gates: &mut [Gate],
    holders: &[i32],
    dead_holders: &mut Vec<(i32, Instant)>,
) {
    if gates.is_empty() {
        return;
    }
    let live_holders: Vec<usize> = gates
        .iter()
        .enumerate()
        .filter(|(_, g)| holders.contains(&g.p.pid()))
        .map(|(i, _)| i)
        .collect();
    match ctx.rng.below(5) {
        0 | 1 if !live_holders.is_empty() => {
            let i = *ctx.rng.pick(&live_holders);
            gates[i].p.signal(Signal::SIGKILL);
            gates[i].hit = true;
            ctx.fault(Fault::Kill9Worst);
            dead_holders.push((gates[i].p.pid(), Instant::now()));
        }
        2 => {
            let i = ctx.rng.below(gates.len() as u64) as usize;
            gates[i].p.signal(Signal::SIGKILL);
            gates[i].hit = true;
            ctx.fault(Fault::Kill9);
        }
        3 => {
            let i = ctx.rng.below(gates.len() as u64) as usize;
            let pid = gates[i].p.pid();
            if !ctx.stalled(pid) {
                let d = ctx.rng.ms(100, 1500);
                ctx.stall(pid, d);
            }
        }
        _ => {
            let i = ctx.rng.below(gates.len() as u64) as usize;
            let sig = ctx.polite_signal();
            gates[i].p.signal(sig);
            gates[i].hit = true;
        }
    }
}
