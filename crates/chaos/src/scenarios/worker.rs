//! worker: `worker serve` with a pool of children; `worker call`s from many
//! processes at once; garbage and slow clients on its Unix socket.
//!
//! Promises checked:
//! - every call issued gets exactly one outcome: its correct result (one
//!   line, exit 0) or one clear error line (`worker: ...`, exit 1: the child
//!   died, timed out, the server is shutting down or cannot be reached) —
//!   never a wrong result, never both, never silence past its `--timeout`;
//! - `abort` is always an error (the child died), never a result;
//! - garbage on the socket (hostile frames: a huge declared length, a tiny
//!   frame declaring a huge string, deep nesting, truncated frames, random
//!   bytes) and slow clients never take the server down;
//! - the server dies only when we kill it; SIGTERM ends it within a bound,
//!   with its socket removed and its children gone.
//!
//! Faults: kill -9 of a child mid-call and of the server, SIGSTOP/SIGCONT of
//! the server or a child, SIGTERM/SIGINT/SIGHUP of the server, garbage and
//! slow clients, the server restarted under RLIMIT_NOFILE=24.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{unique, HANG_BOUND};
use crate::ctx::{Ctx, Fault};
use crate::os::{self, Proc};
use crate::rng::Rng;

const CALL_TIMEOUT: Duration = Duration::from_secs(8);

struct Server {
    p: Proc,
    /// We ended it on purpose (signal), so its exit is expected.
    ended_by_us: bool,
    nofile: bool,
    /// Its death was already reported (after garbage).
    crash_reported: bool,
}

struct Call {
    p: Proc,
    what: String,
    /// The correct result, or None for a call that must fail (`abort`) or
    /// whose value is not checked.
    expect: Expect,
}

enum Expect {
    Value(String),
    Error,
    Any,
}

/// Runs the scenario.
pub fn run(ctx: &mut Ctx) {
    let name = unique("worker");
    let sock = ctx.rundir().join(format!("worker.{name}.sock"));
    let mut server: Option<Server> = None;
    let mut calls: Vec<Call> = Vec::new();
    let mut slow: Vec<JoinHandle<()>> = Vec::new();
    let mut next_fault = Instant::now() + ctx.rng.ms(500, 1500);
    let mut restart_at = Instant::now();

    while ctx.running() {
        if server.as_mut().is_some_and(|s| s.p.poll().is_some()) {
            let mut s = server.take().unwrap();
            ended(ctx, &mut s);
            restart_at = Instant::now() + ctx.rng.ms(0, 500);
        }
        if server.is_none() && Instant::now() >= restart_at {
            server = start_server(ctx, &name, true);
        }
        calls.retain_mut(|c| !finish_call(ctx, c));
        if calls.len() < 4 {
            if let Some(c) = start_call(ctx, &name) {
                calls.push(c);
            }
        }
        if Instant::now() >= next_fault {
            next_fault = Instant::now() + ctx.rng.ms(300, 1200);
            inject(ctx, server.as_mut(), &calls, &sock, &mut slow);
        }
        ctx.tick(15);
    }

    ctx.cont_all();
    for mut c in calls.drain(..) {
        if c.p.wait_for(CALL_TIMEOUT + HANG_BOUND).is_none() {
            ctx.violation(format!("worker call {} still running at the end", c.what));
        }
        finish_call(ctx, &mut c);
    }
    for h in slow.drain(..) {
        let _ = h.join();
    }
    // End with a live server (a fresh one takes over the socket a killed one
    // left), then SIGTERM it: it must exit 0, remove its socket, and take
    // its children along.
    let mut s = match server.take() {
        Some(s) if s.p.status_known_running() => s,
        Some(mut s) => {
            ended(ctx, &mut s);
            match start_server(ctx, &name, false) {
                Some(s) => s,
                None => return,
            }
        }
        None => match start_server(ctx, &name, false) {
            Some(s) => s,
            None => return,
        },
    };
    let end = Instant::now() + HANG_BOUND;
    while !sock.exists() && s.p.poll().is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let children = os::children(s.p.pid());
    s.p.signal(Signal::SIGTERM);
    s.ended_by_us = true;
    let st = s.p.wait_for(HANG_BOUND);
    ctx.check(st.is_some(), || {
        format!("worker serve still running {HANG_BOUND:?} after SIGTERM")
    });
    ended(ctx, &mut s);
    if st.is_some_and(|st| st.success()) {
        ctx.check(!sock.exists(), || {
            "worker serve exited 0 on SIGTERM but left its socket".to_owned()
        });
    }
    let end = Instant::now() + Duration::from_secs(10);
    while children.iter().any(|&c| os::alive(c)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    ctx.check(!children.iter().any(|&c| os::alive(c)), || {
        format!("children {children:?} outlived worker serve")
    });
}

/// Starts `worker serve`. `faulty`: a restart of the scenario, sometimes
/// under a low descriptor limit; otherwise the fault-free server of the end.
fn start_server(ctx: &mut Ctx, name: &str, faulty: bool) -> Option<Server> {
    let mut c = ctx.cmd("worker");
    c.args([
        "serve",
        "--name",
        name,
        "--workers",
        "2",
        "--task-timeout",
        "2s",
    ]);
    let nofile = faulty && ctx.rng.chance(0.1);
    if nofile {
        ctx.fault(Fault::Nofile);
    }
    if faulty {
        ctx.fault(Fault::Restart);
    }
    let tag = if faulty {
        "worker-serve"
    } else {
        "worker-serve-last"
    };
    let p = ctx.spawn(c, tag, nofile.then_some(24))?;
    Some(Server {
        p,
        ended_by_us: false,
        nofile,
        crash_reported: false,
    })
}

/// The server exited: only acceptable when we ended it (or, under a low
/// descriptor limit, when it refused to start with one clear line).
fn ended(ctx: &mut Ctx, s: &mut Server) {
    if !s.crash_reported {
        ctx.check_no_crash(&mut s.p);
    }
    let st = s.p.poll().expect("exited");
    let err = s.p.stderr();
    let clear_refusal = s.nofile && st.code() == Some(1) && err.lines().count() == 1;
    if !s.ended_by_us && !clear_refusal && !s.crash_reported {
        ctx.violation(format!(
            "worker serve died on its own: {}; stderr: {}",
            os::describe(st),
            err.lines().last().unwrap_or("").trim()
        ));
    }
}

fn start_call(ctx: &mut Ctx, name: &str) -> Option<Call> {
    let r = &mut ctx.rng;
    let (args, expect): (Vec<String>, Expect) = match r.below(12) {
        0..=3 => {
            let a = r.range(0, 2_000_000_000) as i64 - 1_000_000_000;
            let b = r.range(0, 2_000_000_000) as i64 - 1_000_000_000;
            (
                vec!["add".into(), a.to_string(), b.to_string()],
                Expect::Value((a + b).to_string()),
            )
        }
        4 | 5 => {
            let n = r.range(0, 93);
            (
                vec!["fib".into(), n.to_string()],
                Expect::Value(fib(n).to_string()),
            )
        }
        6 | 7 => {
            let n = r.range(2, 5_000_000);
            (
                vec!["factor".into(), n.to_string()],
                Expect::Value(factor(n)),
            )
        }
        8 | 9 => {
            let len = r.range(1, 20) as usize;
            let w = r.word(len);
            (
                vec!["upper".into(), w.clone()],
                Expect::Value(w.to_uppercase()),
            )
        }
        10 => {
            // Long enough to meet the 2 s task timeout now and then.
            let ms = r.range(0, 2500);
            (vec!["sleep_ms".into(), ms.to_string()], Expect::Any)
        }
        _ => (vec!["abort".into()], Expect::Error),
    };
    let mut c = ctx.cmd("worker");
    c.args(["call", "--name", name, "--timeout"])
        .arg(format!("{}s", CALL_TIMEOUT.as_secs()))
        .args(&args);
    let p = ctx.spawn(c, "worker-call", None)?;
    Some(Call {
        p,
        what: args.join(" "),
        expect,
    })
}

/// Checks a finished call; false while it runs (or hangs, which is reported).
fn finish_call(ctx: &mut Ctx, c: &mut Call) -> bool {
    let Some(st) = c.p.poll() else {
        if c.p.started.elapsed() > CALL_TIMEOUT + HANG_BOUND {
            ctx.violation(format!(
                "worker call {} --timeout {CALL_TIMEOUT:?}: no answer and no error after {:?}",
                c.what,
                c.p.started.elapsed()
            ));
            c.p.kill_now();
            return true;
        }
        return false;
    };
    let out = c.p.stdout();
    let err = c.p.stderr();
    if let Some(why) = os::crashed(st, &err) {
        ctx.violation(format!("worker call {} crashed: {why}", c.what));
        return true;
    }
    let out_lines: Vec<&str> = out.lines().collect();
    let err_lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    if st.success() {
        ctx.op();
        ctx.check(out_lines.len() == 1 && err_lines.is_empty(), || {
            format!(
                "worker call {}: exit 0 with {} result lines and stderr {err:?}",
                c.what,
                out_lines.len()
            )
        });
        match &c.expect {
            Expect::Value(v) => {
                let got = out.trim_end_matches('\n');
                ctx.check(got == v, || {
                    format!("worker call {}: result {got:?}, expected {v:?}", c.what)
                });
            }
            Expect::Error => {
                ctx.violation(format!(
                    "worker call {}: must fail (the child aborts) but printed {out:?}",
                    c.what
                ));
            }
            Expect::Any => {}
        }
    } else {
        ctx.op();
        ctx.check(
            st.code() == Some(1)
                && out_lines.is_empty()
                && err_lines.len() == 1
                && err_lines[0].starts_with("worker: "),
            || {
                format!(
                    "worker call {}: {} with stdout {out:?} and stderr {err:?} (want one line 'worker: ...', exit 1)",
                    c.what,
                    os::describe(st)
                )
            },
        );
    }
    true
}

fn fib(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        let t = a.wrapping_add(b);
        a = b;
        b = t;
    }
    a
}

fn factor(mut n: u64) -> String {
    let mut f = Vec::new();
    let mut d = 2;
    while d * d <= n {
        while n % d == 0 {
            f.push(d.to_string());
            n /= d;
        }
        d += 1;
    }
    if n > 1 {
        f.push(n.to_string());
    }
    f.join(" ")
}

fn inject(
    ctx: &mut Ctx,
    server: Option<&mut Server>,
    calls: &[Call],
    sock: &std::path::Path,
    slow: &mut Vec<JoinHandle<()>>,
) {
    let Some(s) = server else { return };
    let spid = s.p.pid();
    match ctx.rng.below(10) {
        0 | 1 => {
            // A child mid-call (when calls are in flight).
            let kids = os::children(spid);
            if !kids.is_empty() {
                let k = *ctx.rng.pick(&kids);
                os::kill(k, Signal::SIGKILL);
                ctx.fault(if calls.is_empty() {
                    Fault::Kill9
                } else {
                    Fault::Kill9Worst
                });
            }
        }
        2 => {
            s.p.signal(Signal::SIGKILL);
            s.ended_by_us = true;
            ctx.fault(Fault::Kill9Worst);
        }
        3 => {
            let sig = ctx.polite_signal();
            s.p.signal(sig);
            s.ended_by_us = true;
        }
        4 => {
            let d = ctx.rng.ms(100, 2000);
            let kids = os::children(spid);
            let target = if ctx.rng.chance(0.5) || kids.is_empty() {
                spid
            } else {
                *ctx.rng.pick(&kids)
            };
            if !ctx.stalled(target) {
                ctx.stall(target, d);
            }
        }
        5..=7 => {
            let (label, bytes) = hostile_frame(&mut ctx.rng);
            ctx.fault(Fault::Garbage);
            send_garbage(ctx, s, sock, label, &bytes);
        }
        _ => {
            ctx.fault(Fault::Slow);
            let seed = ctx.rng.next_u64();
            let sock: PathBuf = sock.to_owned();
            slow.push(std::thread::spawn(move || slow_client(&sock, seed)));
        }
    }
}

/// One hostile frame (u32 LE length + body), of the classes the fuzzing work
/// found or feared.
fn hostile_frame(r: &mut Rng) -> (&'static str, Vec<u8>) {
    let frame = |body: Vec<u8>| {
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend(body);
        f
    };
    // A request's start: id 1, function "add", one argument.
    let head = |tag: u8| vec![1u8, 3, b'a', b'd', b'd', 1, tag];
    match r.below(7) {
        0 => ("random bytes", r.some_bytes(1, 300)),
        1 => ("length prefix 0xffffffff", {
            let mut v = u32::MAX.to_le_bytes().to_vec();
            v.extend(r.bytes(16));
            v
        }),
        2 => ("tiny frame declaring a huge string", {
            // Text tag 3, then a varint u64 length of ~2^62.
            let mut b = head(3);
            b.extend([253, 0, 0, 0, 0, 0, 0, 0, 0x40]);
            frame(b)
        }),
        3 => ("deep nesting of lists", {
            let mut b = head(4);
            for _ in 0..200_000 {
                b.extend([1, 4]);
            }
            frame(b)
        }),
        4 => ("truncated frame", {
            let mut f = frame(r.some_bytes(10, 200));
            f.truncate(f.len() / 2);
            f
        }),
        5 => ("frame of random body", frame(r.some_bytes(1, 4000))),
        _ => ("length prefix at the 16 MiB limit, no body", {
            (16u32 << 20).to_le_bytes().to_vec()
        }),
    }
}

/// Sends hostile bytes and closes; the server must go on (checked by the
/// calls that follow, and here: it must still be running a moment later).
fn send_garbage(ctx: &mut Ctx, s: &mut Server, sock: &std::path::Path, label: &str, bytes: &[u8]) {
    let Ok(mut c) = UnixStream::connect(sock) else {
        return;
    };
    let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = c.write_all(bytes);
    let _ = c.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    let _ = c.read(&mut sink);
    drop(c);
    std::thread::sleep(Duration::from_millis(200));
    if let Some(st) = s.p.poll() {
        if !s.ended_by_us {
            let err = s.p.stderr();
            ctx.violation(format!(
                "worker serve died ({}) after garbage on its socket ({label}, {} bytes, starting {:02x?}): {}",
                os::describe(st),
                bytes.len(),
                &bytes[..bytes.len().min(16)],
                os::telling_line(&err)
            ));
            s.crash_reported = true; // reported once
        }
    }
}

/// A client that trickles a frame one byte at a time, or connects and sits.
fn slow_client(sock: &std::path::Path, seed: u64) {
    let mut r = Rng::new(seed);
    let Ok(mut c) = UnixStream::connect(sock) else {
        return;
    };
    let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
    let body = [1u8, 3, b'a', b'd', b'd', 2, 1, 2, 1, 4];
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend(body);
    let end = Instant::now() + r.ms(1000, 4000);
    let trickle = r.chance(0.6);
    for b in f {
        if Instant::now() >= end {
            return;
        }
        if trickle && c.write_all(&[b]).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
