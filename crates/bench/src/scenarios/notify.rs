//! Benchmarks of the notify and data-sharing scenarios (the shared board).
//!
//! - **Wake-up latency**: a `consumer` process waits on the board's condition
//!   variable for a value; this process (the producer, through the board
//!   library) appends it. The consumer reports the time from the producer's
//!   wake-up (`FUTEX_WAKE`; CLOCK_MONOTONIC stamped in the segment) to
//!   its own thread running again with the mutex re-acquired. Floor: a raw
//!   `FUTEX_WAKE` → `FUTEX_WAIT` return between two threads.
//! - **Append rate**: the `producer` binary appends flat out while a
//!   `monitor` process takes snapshots every 10 ms and a consumer (a thread
//!   here, using the board's real wait path) waits for a value, woken at each
//!   of its appearances. Floor: lock + increment + unlock of an uncontended
//!   `std::sync::Mutex`.

use std::io::BufRead;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use syncomm_board::Board;
use syncomm_common::Name;

use crate::stats::{median, summarize};
use crate::{Ctx, Figure, Floor, Target, Unit};

/// Measures the notify scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    // The board library finds boards in the runtime directory, as the
    // programs started with `ctx.cmd` do.
    std::env::set_var(syncomm_common::rundir::ENV_VAR, &ctx.work_dir);
    Ok(vec![wakeup(ctx)?, append_rate(ctx)?])
}

fn wakeup(ctx: &Ctx) -> anyhow::Result<Figure> {
    let n = ctx.iters(200, 20);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        samples.push(wakeup_once(ctx, i)? / 1e3);
    }
    let (median_us, p99) = summarize(&mut samples);
    let mut floor = futex_floor(n.max(50))?;
    let floor_us = median(&mut floor);
    Ok(Figure {
        scenario: "notify",
        what: "wake-up latency: producer appends the awaited value → consumer process runs".into(),
        unit: Unit::Micros,
        median: median_us,
        p99: Some(p99),
        floor: Some(Floor {
            name: "raw FUTEX_WAKE → waiting thread runs".into(),
            median: floor_us,
        }),
        python_key: Some("notify_wakeup_us"),
        target: Some(Target {
            text: "≤ 25 µs".into(),
            met: median_us <= 25.0,
        }),
    })
}

/// One sample, in nanoseconds.
fn wakeup_once(ctx: &Ctx, i: usize) -> anyhow::Result<f64> {
    const V: u8 = 50;
    let name = Name::new(&format!("bench-wake-{}-{i}", std::process::id()))?;
    let (board, _) = Board::open_or_create(&name, None, true)?;
    board.lock()?.start_producing(std::process::id() as i32);
    let result = (|| {
        let mut child = ctx
            .cmd("consumer")
            .args(["--name", name.as_str(), "--until", "50", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting consumer")?;
        let pid = child.id();
        // Wait until the consumer is registered and its main thread sleeps
        // in the condition wait.
        let start = Instant::now();
        while !(board.waiting(V) > 0 && sleeping(pid)) {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("consumer never started waiting");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        board.lock()?.append(V);
        let out = child.wait_with_output()?;
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .with_context(|| format!("consumer output {line:?}"))?;
        v["wakeup_ns"]
            .as_u64()
            .map(|ns| ns as f64)
            .context("no wakeup_ns in the consumer's output")
    })();
    board.lock()?.stop();
    board.remove();
    result
}

fn sleeping(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('S')
        })
        .unwrap_or(false)
}

fn now_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: FUTEX_WAIT/FUTEX_WAKE on a live AtomicU32 with no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Raw futex wake-up latency between two threads, microseconds per sample.
fn futex_floor(n: usize) -> anyhow::Result<Vec<f64>> {
    let word = Arc::new(AtomicU32::new(0));
    let stamp = Arc::new(AtomicU64::new(0));
    let (tx, rx) = std::sync::mpsc::channel::<f64>();
    let (w, s) = (Arc::clone(&word), Arc::clone(&stamp));
    let waiter = std::thread::spawn(move || {
        for round in 0..n as u32 {
            // Wait for word == round + 1 (odd rounds published by the waker).
            while w.load(Ordering::Acquire) != round + 1 {
                futex(&w, libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, round);
            }
            let lat = now_ns().saturating_sub(s.load(Ordering::Acquire));
            if tx.send(lat as f64 / 1e3).is_err() {
                return;
            }
        }
    });
    let mut out = Vec::with_capacity(n);
    for round in 0..n as u32 {
        // Let the waiter fall asleep in FUTEX_WAIT.
        std::thread::sleep(Duration::from_micros(500));
        stamp.store(now_ns(), Ordering::Release);
        word.store(round + 1, Ordering::Release);
        futex(&word, libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
        out.push(rx.recv_timeout(Duration::from_secs(10))?);
    }
    waiter
        .join()
        .map_err(|_| anyhow::anyhow!("futex waiter panicked"))?;
    Ok(out)
}

fn append_rate(ctx: &Ctx) -> anyhow::Result<Figure> {
    let runs = ctx.iters(5, 1);
    let count = if ctx.quick { 2_000_000 } else { 20_000_000 };
    let mut rates = Vec::new();
    for i in 0..runs {
        rates.push(append_once(ctx, i, count)?);
    }
    let med = median(&mut rates);
    // Floor: an uncontended mutex lock + increment + unlock.
    let m = std::sync::Mutex::new(0u64);
    let n = 20_000_000u64;
    let t = Instant::now();
    for _ in 0..n {
        *m.lock().unwrap() += 1;
    }
    let floor = n as f64 / t.elapsed().as_secs_f64();
    std::hint::black_box(&m);
    Ok(Figure {
        scenario: "data-sharing",
        what:
            "producer append rate with a monitor (10 ms snapshots) and a waiting consumer attached"
                .into(),
        unit: Unit::PerSec,
        median: med,
        p99: None,
        floor: Some(Floor {
            name: "uncontended mutex lock + increment + unlock".into(),
            median: floor,
        }),
        python_key: Some("board_append_per_s"),
        target: Some(Target {
            text: "≥ 5 M values/s".into(),
            met: med >= 5e6,
        }),
    })
}

fn append_once(ctx: &Ctx, i: usize, count: u64) -> anyhow::Result<f64> {
    let name = format!("bench-append-{}-{i}", std::process::id());
    let mut producer = ctx
        .cmd("producer")
        .args(["--name", &name, "--json", "--fresh", "--count"])
        .arg(count.to_string())
        // Flat out; the monitor and the consumer attach within its first
        // milliseconds, out of a run of several seconds.
        .args(["--interval", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting producer")?;
    let mut lines = std::io::BufReader::new(producer.stdout.take().unwrap()).lines();
    let ready = lines.next().context("producer said nothing")??;
    if !ready.contains("\"ready\"") {
        bail!("producer: {ready}");
    }
    let board = Board::open(&Name::new(&name)?).ok();
    let mut monitor = ctx
        .cmd("monitor")
        .args(["--name", &name, "--interval", "10ms", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting monitor")?;
    // A consumer for 22 that is woken at every appearance and waits again.
    let waiter = board.map(|b| {
        std::thread::spawn(move || {
            if let Ok(mut g) = b.lock() {
                g.add_waiter(22, 1);
                while g.active() {
                    let deadline = Some(Instant::now() + Duration::from_secs(1));
                    if !matches!(g.wait(deadline, &|| false), Ok(true)) {
                        break;
                    }
                }
                if g.held() {
                    g.add_waiter(22, -1);
                }
            }
        })
    });
    let mut report = None;
    for line in lines {
        let line = line?;
        if line.contains("\"done\"") {
            report = Some(line);
        }
    }
    let _ = producer.wait();
    let _ = monitor.kill();
    let _ = monitor.wait();
    if let Some(w) = waiter {
        let _ = w.join();
    }
    let report = report.context("producer printed no report")?;
    let v: serde_json::Value = serde_json::from_str(&report)?;
    v["report"]["values_per_s"]
        .as_f64()
        .context("no values_per_s in the producer's report")
}
