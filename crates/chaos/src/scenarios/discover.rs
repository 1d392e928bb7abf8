//! discover: rounds of M members meeting under one name.
//!
//! Promises checked:
//! - every member of a round that printed its group printed the same list,
//!   of exactly M ids, its own among them, all of them ids of that round;
//! - a round without faults meets: every member exits 0;
//! - no member hangs past its `--timeout`;
//! - after a round that met, its registry and lock files are gone (the last
//!   member to see the group removes them), and at the end a clean round
//!   leaves the runtime directory empty (dead entries of killed members are
//!   pruned by the next round).
//!
//! Faults: kill -9 of members (early, often while one holds the registry
//! lock) with a replacement under the same id, SIGSTOP/SIGCONT,
//! SIGTERM/SIGINT/SIGHUP (the member removes its entry; replaced), a member
//! under RLIMIT_NOFILE=12.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value as J;

use super::{unique, HANG_BOUND};
use crate::ctx::{Ctx, Fault};
use crate::os::{self, Proc};

const TIMEOUT: Duration = Duration::from_secs(8);

struct Member {
    p: Proc,
    id: String,
    hit: bool,
}

/// Runs the scenario.
pub fn run(ctx: &mut Ctx) {
    let name = unique("disc");
    let mut round = 0u64;
    while ctx.running() {
        round += 1;
        let faults = ctx.rng.chance(0.6);
        round_once(ctx, &name, round, faults);
    }
    // A clean round: must meet, and leave nothing behind.
    round_once(ctx, &name, round + 1, false);
}

fn spawn_member(ctx: &mut Ctx, name: &str, id: &str, m: u64, nofile: bool) -> Option<Member> {
    let mut c = ctx.cmd("discover");
    c.args([
        "--name",
        name,
        "--id",
        id,
        "--members",
        &m.to_string(),
        "--json",
        "--timeout",
    ])
    .arg(format!("{}s", TIMEOUT.as_secs()));
    let p = ctx.spawn(c, "discover", nofile.then_some(12))?;
    Some(Member {
        p,
        id: id.to_owned(),
        hit: false,
    })
}

/// One fault on a random member started so far; the victim of a kill or a
/// signal is replaced under the same id (the role goes on). Whether a member
/// was ended (a stall is not).
fn strike(
    ctx: &mut Ctx,
    name: &str,
    m: u64,
    members: &mut Vec<Member>,
    replaced: &mut u32,
) -> bool {
    std::thread::sleep(ctx.rng.ms(0, 40));
    let i = ctx.rng.below(members.len() as u64) as usize;
    let pid = members[i].p.pid();
    match ctx.rng.below(3) {
        0 => {
            members[i].p.signal(Signal::SIGKILL);
            ctx.fault(Fault::Kill9);
        }
        1 => {
            let sig = ctx.polite_signal();
            members[i].p.signal(sig);
        }
        _ => {
            if !ctx.stalled(pid) {
                let d = ctx.rng.ms(100, 1500);
                ctx.stall(pid, d);
            }
            return false;
        }
    }
    members[i].hit = true;
    let met = members[i].p.stdout().contains("found");
    if members[i].p.wait_for(Duration::from_secs(5)).is_some() && !met && *replaced < 2 {
        let id = members[i].id.clone();
        ctx.fault(Fault::Restart);
        if let Some(mb) = spawn_member(ctx, name, &id, m, false) {
            members.push(mb);
            *replaced += 1;
        }
    }
    true
}

fn files_of(ctx: &Ctx, name: &str) -> Vec<String> {
    os::dir_entries(ctx.rundir())
        .into_iter()
        .filter(|f| f.starts_with(&format!("discover.{name}.")))
        .collect()
}

fn round_once(ctx: &mut Ctx, name: &str, round: u64, faults: bool) {
    let clean_start = files_of(ctx, name).is_empty();
    let m = ctx.rng.range(2, 5);
    let ids: Vec<String> = (0..m).map(|k| format!("r{round}m{k}")).collect();
    let mut members: Vec<Member> = Vec::new();
    let mut replaced = 0;
    let mut injected = false;
    let mut ended = 0;
    // Faults strike after member `at` started and before the last one has,
    // so the group cannot be complete yet: a victim must be replaced.
    let fault_after = faults.then(|| ctx.rng.below(m - 1) as usize);
    for (k, id) in ids.iter().enumerate() {
        let nofile = faults && ctx.rng.chance(0.1);
        if nofile {
            ctx.fault(Fault::Nofile);
        }
        if let Some(mb) = spawn_member(ctx, name, id, m, nofile) {
            members.push(mb);
        }
        std::thread::sleep(ctx.rng.ms(0, 30));
        if fault_after == Some(k) && strike(ctx, name, m, &mut members, &mut replaced) {
            injected = true;
            ended += 1;
        }
    }
    // Wait for everyone.
    let end = Instant::now() + TIMEOUT + HANG_BOUND;
    while members.iter_mut().any(|mb| mb.p.poll().is_none()) && Instant::now() < end {
        ctx.tick(20);
    }
    ctx.cont_all();
    let mut lists: Vec<(String, Vec<String>)> = Vec::new();
    let mut all_met = true;
    for mb in &mut members {
        let Some(st) = mb.p.wait_for(Duration::from_secs(2)) else {
            ctx.violation(format!(
                "discover --id {} --timeout {TIMEOUT:?} hung",
                mb.id
            ));
            all_met = false;
            continue;
        };
        ctx.check_no_crash(&mut mb.p);
        if st.success() {
            let out = mb.p.stdout();
            let j: Option<J> = out.lines().find_map(|l| serde_json::from_str(l).ok());
            let found: Vec<String> = j
                .as_ref()
                .and_then(|j| j["found"].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            lists.push((mb.id.clone(), found));
        } else if !mb.hit {
            all_met = false;
            let err = mb.p.stderr();
            ctx.check(!err.trim().is_empty(), || {
                format!(
                    "discover --id {} failed ({}) without a word",
                    mb.id,
                    os::describe(st)
                )
            });
        }
    }
    if std::env::var_os("SYNCOMM_CHAOS_DEBUG").is_some() {
        for mb in &mut members {
            eprintln!(
                "discover round {round} m={m} {}: {:?} hit={} out={:?} err={:?}",
                mb.id,
                mb.p.poll().map(os::describe),
                mb.hit,
                mb.p.stdout().trim(),
                mb.p.stderr().trim()
            );
        }
    }
    let round_ids: BTreeSet<&String> = ids.iter().collect();
    for (id, found) in &lists {
        ctx.check(
            found.len() as u64 == m
                && found.contains(id)
                && found.iter().all(|f| round_ids.contains(f)),
            || format!("round {round}: {id} printed {found:?} for a group of {m} from {ids:?}"),
        );
    }
    if let Some((first_id, first)) = lists.first() {
        for (id, found) in &lists[1..] {
            ctx.check(found == first, || {
                format!("round {round}: {first_id} printed {first:?} but {id} printed {found:?}")
            });
        }
        ctx.op();
    }
    // Every member ended by a fault was replaced: the group must meet.
    if clean_start && ended == replaced {
        ctx.check(all_met, || {
            format!(
                "round {round} ({m} members, clean start, {ended} ended and replaced) did not meet"
            )
        });
    }
    if all_met && !injected && !lists.is_empty() {
        let left = files_of(ctx, name);
        ctx.check(left.is_empty(), || {
            format!("round {round} met and every member exited, but {left:?} was left behind")
        });
    }
}
