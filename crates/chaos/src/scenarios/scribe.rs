//! shared-file: `scribe` writers appending to one file under `flock`.
//!
//! Promises checked (after each batch of writers, when the file is quiet):
//! - `scribe --verify` passes on the whole file: no torn, garbled or
//!   duplicated line, each writer's counters 0, 1, 2, ... with none missing;
//! - a writer that exited 0 wrote exactly its `--count` lines; one we
//!   killed or signalled wrote a prefix of them (never more);
//! - no writer hangs (even one waiting for a lock whose holder is stopped
//!   gets its turn once the holder is continued);
//! - `scribe --verify` on garbage (random bytes, torn or repeated lines)
//!   fails with one line, exit 1, never a crash.
//!
//! Faults: kill -9 of writers at random and while they hold the lock (with
//! `--hold`), SIGSTOP/SIGCONT, SIGTERM/SIGINT/SIGHUP, a writer under
//! RLIMIT_NOFILE=10, garbage handed to the verifier.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::HANG_BOUND;
use crate::ctx::{Ctx, Fault};
use crate::os::{self, Proc};

struct Writer {
    p: Proc,
    id: String,
    count: u64,
    /// We killed or signalled it.
    hit: bool,
}

/// Runs the scenario.
pub fn run(ctx: &mut Ctx) {
    let file = ctx.work().join("shared.txt");
    // Lines each writer id wrote (to compare with the file).
    let mut batch = 0u64;
    while ctx.running() {
        batch += 1;
        let mut writers = Vec::new();
        for k in 0..ctx.rng.range(2, 4) {
            let id = format!("b{batch}w{k}");
            let count = ctx.rng.range(20, 400);
            let mut c = ctx.cmd("scribe");
            c.arg("--file").arg(&file);
            c.args(["--id", &id, "--count", &count.to_string()]);
            let holding = ctx.rng.chance(0.3);
            if holding {
                c.args(["--hold", "5ms"]);
            }
            let nofile = ctx.rng.chance(0.07);
            if nofile {
                ctx.fault(Fault::Nofile);
            }
            if let Some(p) = ctx.spawn(c, "scribe", nofile.then_some(10)) {
                writers.push(Writer {
                    p,
                    id,
                    count,
                    hit: false,
                });
            }
        }
        // Faults while they write.
        let until = Instant::now() + ctx.rng.ms(100, 1500);
        while Instant::now() < until && writers.iter_mut().any(|w| w.p.poll().is_none()) {
            if ctx.rng.chance(0.08) {
                let i = ctx.rng.below(writers.len() as u64) as usize;
                let pid = writers[i].p.pid();
                match ctx.rng.below(3) {
                    0 => {
                        writers[i].p.signal(Signal::SIGKILL);
                        // With --hold it is most likely inside the lock.
                        ctx.fault(Fault::Kill9Worst);
                        writers[i].hit = true;
                    }
                    1 => {
                        let sig = ctx.polite_signal();
                        writers[i].p.signal(sig);
                        writers[i].hit = true;
                    }
                    _ => {
                        if !ctx.stalled(pid) {
                            let d = ctx.rng.ms(50, 800);
                            ctx.stall(pid, d);
                        }
                    }
                }
            }
            ctx.tick(10);
        }
        // Wait for the batch (the stalled ones are continued on schedule).
        let end = Instant::now() + HANG_BOUND;
        while writers.iter_mut().any(|w| w.p.poll().is_none()) && Instant::now() < end {
            ctx.tick(10);
        }
        ctx.cont_all();
        for w in &mut writers {
            if w.p.wait_for(Duration::from_secs(5)).is_none() {
                ctx.violation(format!("scribe --id {} hung", w.id));
                w.p.kill_now();
                w.hit = true;
            }
        }
        check_batch(ctx, &file, &mut writers);
        if ctx.rng.chance(0.3) {
            garbage_verify(ctx);
        }
    }
}

fn check_batch(ctx: &mut Ctx, file: &std::path::Path, writers: &mut [Writer]) {
    let mut c = ctx.cmd("scribe");
    c.arg("--verify").arg(file);
    let Some(mut v) = ctx.spawn(c, "scribe-verify", None) else {
        return;
    };
    let st = v.wait_for(HANG_BOUND);
    ctx.check_no_crash(&mut v);
    let err = v.stderr();
    ctx.check(st.is_some_and(|s| s.success()), || {
        format!(
            "scribe --verify failed ({}): {}",
            st.map(os::describe).unwrap_or("hung".into()),
            err.trim()
        )
    });
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut lines: HashMap<&str, u64> = HashMap::new();
    for l in text.lines() {
        if let Some(id) = l.split(' ').next() {
            *lines.entry(id).or_default() += 1;
        }
    }
    for w in writers.iter_mut() {
        ctx.check_no_crash(&mut w.p);
        let st = w.p.poll();
        let n = lines.get(w.id.as_str()).copied().unwrap_or(0);
        ctx.op();
        if st.is_some_and(|s| s.success()) {
            ctx.check(n == w.count, || {
                format!(
                    "scribe --id {} --count {} exited 0 but wrote {n} lines",
                    w.id, w.count
                )
            });
            ctx.tally.ops += n;
        } else {
            ctx.check(n <= w.count, || {
                format!("scribe --id {} --count {} wrote {n} lines", w.id, w.count)
            });
            let err = w.p.stderr();
            let clear = w.hit || !err.trim().is_empty();
            ctx.check(clear, || {
                format!(
                    "scribe --id {} failed ({}) without a word",
                    w.id,
                    st.map(os::describe).unwrap_or_default()
                )
            });
        }
    }
}

/// Hands `scribe --verify` a file of garbage: one line, exit 1, no crash.
fn garbage_verify(ctx: &mut Ctx) {
    ctx.fault(Fault::Garbage);
    let r = &mut ctx.rng;
    let bytes: Vec<u8> = match r.below(4) {
        0 => r.some_bytes(1, 2000),
        1 => b"a mu: x 0\na mu: x 1\na mu: x".to_vec(),
        2 => b"a mu: x 0\na mu: x 0\n".to_vec(),
        _ => {
            let mut v = b"a mu: x 0\n".to_vec();
            v.extend(r.bytes(40));
            v.push(b'\n');
            v
        }
    };
    let path = ctx.work().join("garbage.txt");
    if std::fs::write(&path, &bytes).is_err() {
        return;
    }
    let mut c = ctx.cmd("scribe");
    c.arg("--verify").arg(&path);
    let Some(mut v) = ctx.spawn(c, "scribe-verify-garbage", None) else {
        return;
    };
    let st = v.wait_for(HANG_BOUND);
    ctx.check_no_crash(&mut v);
    let err = v.stderr();
    let lines = err.lines().filter(|l| !l.trim().is_empty()).count();
    ctx.check(
        st.is_some_and(|s| s.code() == Some(1)) && lines == 1,
        || {
            format!(
                "scribe --verify on garbage ({:02x?}...): {} with stderr {err:?}",
                &bytes[..bytes.len().min(24)],
                st.map(os::describe).unwrap_or("hung".into())
            )
        },
    );
    let _ = std::fs::remove_file(&path);
}
