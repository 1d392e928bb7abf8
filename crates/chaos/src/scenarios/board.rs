//! board (notify + data-sharing): one `producer` appending to a shared-memory
//! board, `consumer`s waiting for values, `monitor --once --json` snapshots.
//!
//! Promises checked:
//! - every snapshot is consistent: 101 counts that sum to the total, a total
//!   that never goes back, recent values that all have a count;
//! - no value is appended twice after a repair: a producer `kill -9`ed while
//!   holding the mutex mid-append (hidden `--hold-lock`/`--hold-after`) is
//!   repaired by the next locker, which finishes that one append exactly once:
//!   the total is then the old total + N + 1 and `repairs` went up by one;
//! - a consumer that says it found V found it (V's count is positive, its list
//!   ends with V); none hangs past its `--timeout`;
//! - at the end, the producer stops on SIGTERM, a last producer removes the
//!   board, and no segment (/dev/shm) or link is left.
//!
//! Faults: kill -9 of the producer at random and while it holds the mutex,
//! SIGSTOP/SIGCONT of the producer, SIGTERM/SIGINT/SIGHUP, kill -9 of
//! consumers and monitors, a producer restarted under RLIMIT_NOFILE=16.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value as J;

use super::{unique, HANG_BOUND};
use crate::ctx::{Ctx, Fault};
use crate::os::{self, Proc};

struct Producer {
    p: Proc,
    /// `--hold-after N` when started with the lock-holding knob.
    hold_after: Option<u64>,
    /// Total when it attached (from its `ready` event).
    start_total: Option<u64>,
    /// Killed by us while holding the lock.
    killed_holding: bool,
}

struct Consumer {
    p: Proc,
    v: u8,
    timeout: Duration,
    killed: bool,
}

fn events(p: &Proc) -> Vec<J> {
    p.stdout()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs the scenario.
pub fn run(ctx: &mut Ctx) {
    let board = unique("board");
    let mut producer: Option<Producer> = None;
    let mut consumers: Vec<Consumer> = Vec::new();
    let mut monitor: Option<Proc> = None;
    let mut last_total = 0u64;
    // Values consumers reported found, with when we saw them finish: checked
    // against a snapshot taken by a monitor started after that moment.
    let mut found: Vec<(u8, Instant)> = Vec::new();
    // After a kill mid-append: (expected total, repairs before).
    let mut expect_repair: Option<(u64, u64)> = None;
    let mut last_repairs = 0u64;
    let mut next_fault = Instant::now() + ctx.rng.ms(500, 1500);
    let mut restart_at = Instant::now();

    while ctx.running() {
        // The producer: start one when none runs.
        if producer.as_mut().is_some_and(|pr| pr.p.poll().is_some()) {
            let mut pr = producer.take().unwrap();
            ctx.check_no_crash(&mut pr.p);
            restart_at = Instant::now() + ctx.rng.ms(0, 300);
        }
        if producer.is_none() && Instant::now() >= restart_at {
            if let Some((expected, repairs_before)) = expect_repair.take() {
                // First the repairer: attaches (repairs) and appends nothing.
                repair_and_check(ctx, &board, expected, repairs_before, &mut last_total);
            }
            producer = start_producer(ctx, &board);
        }
        // A producer holding the lock on purpose: kill it there.
        if let Some(pr) = producer.as_mut() {
            if pr.start_total.is_none() {
                let ready = events(&pr.p).into_iter().find(|e| e["event"] == "ready");
                if let Some(e) = ready {
                    pr.start_total = e["total"].as_u64();
                    if e["origin"] == "created" {
                        // A new board (the first, or after one was removed):
                        // what was found on the old one is not in its counts.
                        last_total = 0;
                        last_repairs = 0;
                        found.clear();
                    }
                }
            }
            if let (Some(n), Some(t0), false) = (pr.hold_after, pr.start_total, pr.killed_holding) {
                if events(&pr.p).iter().any(|e| e["event"] == "holding_lock") {
                    pr.p.signal(Signal::SIGKILL);
                    pr.killed_holding = true;
                    ctx.fault(Fault::Kill9Worst);
                    expect_repair = Some((t0 + n + 1, last_repairs));
                }
            }
        }
        // Consumers: a few at a time, each for a random value.
        consumers.retain_mut(
            |Consumer {
                 p: c,
                 v,
                 timeout,
                 killed,
             }| match c.poll() {
                Some(st) => {
                    let out = c.stdout();
                    let err = c.stderr();
                    if *killed {
                        // Killed by us: nothing to check but that it is gone.
                    } else if let Some(why) = os::crashed(st, &err) {
                        ctx.violation(format!("consumer --until {v} crashed: {why}"));
                    } else if st.success() {
                        ctx.op();
                        let want = format!("Lucky number {v} found after ");
                        // The list is the values up to V while they are still in
                        // the ring, else the most recent ones: only the line's form
                        // is checked here; that V really appeared is checked
                        // against the next snapshot's counts.
                        ctx.check(out.starts_with(&want) && out.lines().count() == 1, || {
                            format!("consumer --until {v} exited 0 printing {out:?}")
                        });
                        found.push((*v, Instant::now()));
                    } else {
                        ctx.check(!err.trim().is_empty(), || {
                            format!(
                                "consumer --until {v} failed ({}) without a word",
                                os::describe(st)
                            )
                        });
                    }
                    false
                }
                None => {
                    if c.started.elapsed() > *timeout + HANG_BOUND && !ctx.stalled(c.pid()) {
                        ctx.violation(format!(
                            "consumer --until {v} --timeout {timeout:?} still running after {:?}",
                            c.started.elapsed()
                        ));
                        c.kill_now();
                        return false;
                    }
                    true
                }
            },
        );
        if consumers.len() < 3 && ctx.rng.chance(0.1) {
            let v = ctx.rng.below(101) as u8;
            let timeout = ctx.rng.ms(500, 4000);
            let mut c = ctx.cmd("consumer");
            c.args(["--name", &board, "--until", &v.to_string(), "--timeout"])
                .arg(format!("{}ms", timeout.as_millis()));
            if let Some(p) = ctx.spawn(c, "consumer", None) {
                consumers.push(Consumer {
                    p,
                    v,
                    timeout,
                    killed: false,
                });
            }
        }
        // Monitor snapshots: one at a time.
        match monitor.as_mut().map(|m| m.poll()) {
            Some(Some(_)) => {
                let mut m = monitor.take().unwrap();
                ctx.check_no_crash(&mut m);
                let since = m.started;
                if let Some(snap) = m
                    .stdout()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<J>(l).ok())
                    .find(|j| j["event"] == "snapshot")
                {
                    let snap_found = take_found_before(&mut found, since);
                    check_snapshot(ctx, &snap, &mut last_total, &mut last_repairs, snap_found);
                }
            }
            Some(None) => {
                let m = monitor.as_mut().unwrap();
                if m.started.elapsed() > HANG_BOUND {
                    ctx.violation(format!(
                        "monitor --once still running after {:?}",
                        m.started.elapsed()
                    ));
                    monitor = None;
                }
            }
            None => {
                if ctx.rng.chance(0.3) {
                    let mut c = ctx.cmd("monitor");
                    c.args(["--name", &board, "--once", "--json"]);
                    monitor = ctx.spawn(c, "monitor", None);
                }
            }
        }
        // Faults.
        if Instant::now() >= next_fault {
            next_fault = Instant::now() + ctx.rng.ms(300, 1500);
            inject(ctx, producer.as_mut(), &mut consumers, monitor.as_mut());
        }
        ctx.tick(20);
    }

    // Wind down: stop the producer politely, check the last snapshot, then a
    // last producer (without --keep) removes the board.
    ctx.cont_all();
    for Consumer {
        p: mut c,
        v,
        timeout,
        ..
    } in consumers.drain(..)
    {
        if c.wait_for(timeout + HANG_BOUND).is_none() {
            ctx.violation(format!(
                "consumer --until {v} hung past its timeout at the end"
            ));
        }
        ctx.check_no_crash(&mut c);
    }
    drop(monitor);
    if let Some(mut pr) = producer.take() {
        pr.p.signal(Signal::SIGTERM);
        let st = pr.p.wait_for(HANG_BOUND);
        ctx.check(st.is_some(), || "the producer ignored SIGTERM".to_owned());
        ctx.check_no_crash(&mut pr.p);
    }
    if let Some((expected, repairs_before)) = expect_repair.take() {
        repair_and_check(ctx, &board, expected, repairs_before, &mut last_total);
    }
    if let Some(snap) = snapshot(ctx, &board) {
        // Taken after every consumer finished: all found values must show.
        let all = found.drain(..).map(|(v, _)| v).collect();
        check_snapshot(ctx, &snap, &mut last_total, &mut last_repairs, all);
    }
    let mut c = ctx.cmd("producer");
    c.args(["--name", &board, "--count", "0"]);
    if let Some(mut p) = ctx.spawn(c, "producer-final", None) {
        let st = p.wait_for(HANG_BOUND);
        ctx.check(st.is_some_and(|s| s.success()), || {
            format!(
                "the last producer (removing the board) failed: {} {}",
                st.map(os::describe).unwrap_or("hung".into()),
                p.stderr().trim()
            )
        });
    }
    ctx.tally.checks += 1;
    for seg in os::shm_objects(&format!("syncomm.board.{board}.")) {
        ctx.leak(format!("shared-memory segment /dev/shm/{seg}"));
        let _ = std::fs::remove_file(format!("/dev/shm/{seg}"));
    }
}

fn start_producer(ctx: &mut Ctx, board: &str) -> Option<Producer> {
    let mut c = ctx.cmd("producer");
    c.args(["--name", board, "--keep", "--json", "--interval", "200us"]);
    let hold_after = if ctx.rng.chance(0.3) {
        let n = ctx.rng.range(0, 3000);
        c.args(["--hold-lock", "60s", "--hold-after", &n.to_string()]);
        Some(n)
    } else {
        None
    };
    let nofile = if ctx.rng.chance(0.1) {
        ctx.fault(Fault::Nofile);
        Some(16)
    } else {
        None
    };
    ctx.fault(Fault::Restart);
    let p = ctx.spawn(c, "producer", nofile)?;
    Some(Producer {
        p,
        hold_after,
        start_total: None,
        killed_holding: false,
    })
}

fn snapshot(ctx: &mut Ctx, board: &str) -> Option<J> {
    let mut c = ctx.cmd("monitor");
    c.args(["--name", board, "--once", "--json"]);
    let mut p = ctx.spawn(c, "monitor", None)?;
    if p.wait_for(HANG_BOUND).is_none() {
        ctx.violation("monitor --once hung".to_owned());
        return None;
    }
    ctx.check_no_crash(&mut p);
    let out = p.stdout();
    // A failed monitor's line is an `error` event, not a snapshot.
    let snap = out
        .lines()
        .filter_map(|l| serde_json::from_str::<J>(l).ok())
        .find(|j| j["event"] == "snapshot");
    snap
}

/// After a producer was killed holding the mutex mid-append: a producer with
/// `--count 0` attaches (the lock hands it EOWNERDEAD, it finishes the append
/// from the redo record) and appends nothing; the total must be exactly the
/// old one plus that one append, and `repairs` one more.
fn repair_and_check(
    ctx: &mut Ctx,
    board: &str,
    expected: u64,
    repairs_before: u64,
    last_total: &mut u64,
) {
    let mut c = ctx.cmd("producer");
    c.args(["--name", board, "--keep", "--count", "0"]);
    let Some(mut p) = ctx.spawn(c, "repairer", None) else {
        return;
    };
    let st = p.wait_for(HANG_BOUND);
    ctx.check_no_crash(&mut p);
    if !ctx.check(st.is_some_and(|s| s.success()), || {
        format!(
            "producer --count 0 after a kill mid-append failed: {} {}",
            st.map(os::describe).unwrap_or("hung".into()),
            p.stderr().trim()
        )
    }) {
        return;
    }
    let Some(snap) = snapshot(ctx, board) else {
        return;
    };
    let total = snap["total"].as_u64().unwrap_or(0);
    let repairs = snap["repairs"].as_u64().unwrap_or(0);
    ctx.op();
    ctx.check(total == expected, || {
        format!(
            "after a producer was killed mid-append and repaired, total is {total}, expected {expected} (the interrupted append done exactly once)"
        )
    });
    ctx.check(repairs > repairs_before, || {
        format!("repairs went from {repairs_before} to {repairs} across a repair, expected more")
    });
    *last_total = (*last_total).max(total);
}

/// The found values a snapshot taken by a monitor started at `since` must
/// show: those whose consumer had finished by then (a monitor started
/// earlier may have read the board before the value was appended).
fn take_found_before(found: &mut Vec<(u8, Instant)>, since: Instant) -> Vec<u8> {
    let (before, after): (Vec<_>, Vec<_>) = found.drain(..).partition(|&(_, at)| at <= since);
    *found = after;
    before.into_iter().map(|(v, _)| v).collect()
}

fn check_snapshot(
    ctx: &mut Ctx,
    snap: &J,
    last_total: &mut u64,
    last_repairs: &mut u64,
    found: Vec<u8>,
) {
    let total = snap["total"].as_u64().unwrap_or(0);
    let counts: Vec<u64> = snap["counts"]
        .as_array()
        .map(|a| a.iter().map(|c| c.as_u64().unwrap_or(0)).collect())
        .unwrap_or_default();
    let recent: Vec<u64> = snap["recent"]
        .as_array()
        .map(|a| a.iter().map(|c| c.as_u64().unwrap_or(999)).collect())
        .unwrap_or_default();
    let sum: u64 = counts.iter().sum();
    ctx.op();
    ctx.check(counts.len() == 101 && sum == total, || {
        format!(
            "snapshot counts ({} of them) sum to {sum}, total is {total}",
            counts.len()
        )
    });
    ctx.check(total >= *last_total, || {
        format!("total went back from {last_total} to {total}")
    });
    ctx.check(
        recent
            .iter()
            .all(|&v| v <= 100 && counts.get(v as usize).is_some_and(|&c| c > 0)),
        || format!("a recent value has no count: recent {recent:?}"),
    );
    for v in found {
        ctx.check(counts.get(v as usize).is_some_and(|&c| c > 0), || {
            format!("a consumer found {v} but its count is 0")
        });
    }
    *last_total = total;
    *last_repairs = snap["repairs"].as_u64().unwrap_or(*last_repairs);
}

fn inject(
    ctx: &mut Ctx,
    producer: Option<&mut Producer>,
    consumers: &mut [Consumer],
    monitor: Option<&mut Proc>,
) {
    match ctx.rng.below(5) {
        0 | 1 => {
            if let Some(pr) = producer.filter(|p| !p.killed_holding) {
                if ctx.rng.chance(0.5) {
                    pr.p.signal(Signal::SIGKILL);
                    ctx.fault(Fault::Kill9);
                } else {
                    let sig = ctx.polite_signal();
                    pr.p.signal(sig);
                }
            }
        }
        2 => {
            if let Some(pr) = producer.filter(|p| !p.killed_holding) {
                let d = ctx.rng.ms(100, 2500);
                let pid = pr.p.pid();
                if !ctx.stalled(pid) {
                    ctx.stall(pid, d);
                }
            }
        }
        3 => {
            if !consumers.is_empty() {
                let i = ctx.rng.below(consumers.len() as u64) as usize;
                consumers[i].p.signal(Signal::SIGKILL);
                consumers[i].killed = true;
                ctx.fault(Fault::Kill9);
            }
        }
        _ => {
            if let Some(m) = monitor {
                m.signal(Signal::SIGKILL);
                ctx.fault(Fault::Kill9);
            }
        }
    }
}
