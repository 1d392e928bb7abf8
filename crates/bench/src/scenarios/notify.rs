//! Benchmarks of the notify and data-sharing scenarios (the shared board),
//! in trials alternating with their floors:
//!
//! - **Wake-up latency** (`notify.wake`): a long-lived process (the bench
//!   binary as a peer, [`peer_board_waiter`]) waits on the board's condition
//!   variable for a value through the board library's own wait path, again and
//!   again; this process (the producer) appends the value. The waiter reports
//!   the time from the producer's wake-up (`FUTEX_WAKE`; CLOCK_MONOTONIC
//!   stamped in the segment) to its thread running again with the mutex
//!   re-acquired. Floor: a raw `FUTEX_WAKE` of another long-lived *process*
//!   sleeping in `FUTEX_WAIT` on a shared-memory word, stamped the same way
//!   ([`FloorKind::Wake`]).
//! - **First wake of a fresh consumer** (`notify.wake_fresh`): the same with
//!   a freshly started `consumer --until` process per sample (the program as
//!   users run it); its floor is likewise a freshly started wake peer per
//!   sample, woken once: a first wake runs on cold caches, which costs more
//!   than the whole wake path.
//! - **Append rate** (`notify.append`): the `producer` binary appends flat out
//!   while a `monitor` process takes snapshots every 10 ms and a consumer (a
//!   thread here, using the board's real wait path) waits for a value, woken
//!   at each of its appearances. Floor: lock + increment + unlock of an
//!   uncontended `std::sync::Mutex`.
//! - **Append + snapshot** (`notify.append_snapshot`): one append and one
//!   lock-free snapshot of the board, in one process: the job iceoryx2's
//!   publish-subscribe of a small value does in the peers' table. No floor.

use std::io::BufRead;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use syncomm_board::Board;
use syncomm_common::rundir::RunDir;
use syncomm_common::Name;

use crate::floor::{self, sleeping, FloorKind, PeerSpec};
use crate::{trials, Ctx, Figure, Target, Unit};

/// Measures the notify scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    Ok(vec![
        wakeup_warm(ctx)?,
        wakeup(ctx)?,
        append_rate(ctx)?,
        append_snapshot(ctx)?,
    ])
}

/// The value the waiters wait for.
const AWAITED: u8 = 50;
/// The environment variable naming the board for [`peer_board_waiter`].
const WAITER_BOARD: &str = "SYNCOMM_BENCH_BOARD";

/// The long-lived waiter (`syncomm-bench --floor-peer board-waiter`): waits
/// for the awaited value (`AWAITED`) through the board library's wait path until the board
/// stops, printing each wake-up's latency (ns since the producer's stamp).
pub fn peer_board_waiter() -> anyhow::Result<()> {
    use std::io::Write;
    let name = std::env::var(WAITER_BOARD).context("no board name")?;
    // The parent sets the runtime directory on our command (`Waiter::start`).
    let dir = std::env::var_os(syncomm_common::rundir::ENV_VAR).context("no runtime directory")?;
    let board = Board::open(&RunDir::open(dir)?, &Name::new(&name)?)?;
    let mut g = board.lock()?;
    g.add_waiter(AWAITED, 1);
    let mut seen = g.count(AWAITED);
    let mut out = std::io::stdout().lock();
    while g.active() {
        let deadline = Some(Instant::now() + Duration::from_secs(1));
        let Some(again) = g.wait(deadline, &|| false)? else {
            return Ok(());
        };
        g = again;
        let woke = floor::now_ns();
        let c = g.count(AWAITED);
        if c != seen {
            seen = c;
            writeln!(out, "{}", woke.saturating_sub(board.notify_ns()))?;
            out.flush()?;
        }
    }
    g.add_waiter(AWAITED, -1);
    Ok(())
}

/// A board and its long-lived waiter process, both gone on drop.
struct Waiter {
    board: Board,
    child: Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Waiter {
    fn start(ctx: &Ctx) -> anyhow::Result<Waiter> {
        let name = Name::new(&format!("bench-warm-{}", std::process::id()))?;
        let (board, _) = Board::open_or_create(&ctx.run_dir()?, &name, None, true)?;
        board.lock()?.start_producing(std::process::id() as i32);
        let mut child = floor::peer_cmd(&PeerSpec::of(ctx), floor::BOARD_WAITER)
            .env(WAITER_BOARD, name.as_str())
            .env(syncomm_common::rundir::ENV_VAR, &ctx.work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the board waiter")?;
        let lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        Ok(Waiter {
            board,
            child,
            lines,
        })
    }

    /// One append woken on by the waiter, once it sleeps: its latency, µs.
    fn sample(&mut self) -> anyhow::Result<f64> {
        let pid = self.child.id();
        let t = Instant::now();
        loop {
            std::thread::sleep(Duration::from_micros(200));
            if self.board.waiting(AWAITED) > 0 && sleeping(pid) {
                break;
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("the board waiter never went to sleep");
            }
        }
        self.board.lock()?.append(AWAITED);
        let line = self.lines.next().context("the board waiter went away")??;
        Ok(line.trim().parse::<f64>().context("board waiter's line")? / 1e3)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Ok(mut g) = self.board.lock() {
            g.stop();
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.board.remove();
    }
}

fn wakeup_warm(ctx: &Ctx) -> anyhow::Result<Figure> {
    let n = ctx.iters(400, 100);
    let peer = PeerSpec::of(ctx);
    let mut waiter = Waiter::start(ctx)?;
    for _ in 0..10 {
        waiter.sample()?;
    }
    let paired = trials::interleave(
        ctx.many_trials(),
        |_| floor::measure(FloorKind::Wake, &peer, 10, n),
        |_| (0..n).map(|_| waiter.sample()).collect(),
    )?;
    drop(waiter);
    let mut f = paired
        .figure(
            "notify",
            "wake-up latency: producer appends the awaited value → the waiting process runs (board wait path, long-lived waiter)",
            Unit::Micros,
            FloorKind::Wake.name(),
            FloorKind::Wake.hops(),
        )
        .with_id("notify.wake")
        .with_python("notify_wakeup_us");
    let r = f.pair_ratio.unwrap_or(f64::INFINITY);
    f.target = Some(Target::new("≤ 1.5 × floor", r <= 1.5));
    Ok(f)
}

fn wakeup(ctx: &Ctx) -> anyhow::Result<Figure> {
    let n = ctx.iters(40, 10);
    let peer = PeerSpec::of(ctx);
    let mut round = 0;
    let paired = trials::interleave(
        ctx.many_trials(),
        |_| {
            // A fresh peer per sample, woken once: a first wake, as the
            // consumer's is.
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.extend(floor::measure(FloorKind::Wake, &peer, 0, 1)?);
            }
            Ok(v)
        },
        |_| {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                round += 1;
                out.extend(wakeup_once(ctx, round, 1)?.into_iter().map(|ns| ns / 1e3));
            }
            Ok(out)
        },
    )?;
    let f = paired
        .figure(
            "notify",
            "first wake of a freshly started `consumer --until` process (as users run it)",
            Unit::Micros,
            "first futex wake of a freshly started process, one way",
            "A →FUTEX_WAKE→ B runs (B started just before, woken once)",
        )
        .with_id("notify.wake_fresh");
    Ok(f)
}

/// Consumer processes, killed and reaped on drop.
struct Consumers(Vec<Child>);

impl Drop for Consumers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// One append woken on by `consumers` waiting consumer processes: each one's
/// wake-up latency, in nanoseconds.
pub(crate) fn wakeup_once(ctx: &Ctx, i: usize, consumers: usize) -> anyhow::Result<Vec<f64>> {
    const V: u8 = AWAITED;
    let name = Name::new(&format!("bench-wake-{}-{i}", std::process::id()))?;
    let (board, _) = Board::open_or_create(&ctx.run_dir()?, &name, None, true)?;
    board.lock()?.start_producing(std::process::id() as i32);
    let result = (|| {
        let mut kids = Consumers(Vec::with_capacity(consumers));
        for _ in 0..consumers {
            kids.0.push(
                ctx.cmd("consumer")
                    .args(["--name", name.as_str(), "--until", "50", "--json"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting consumer")?,
            );
        }
        // Wait until every consumer is registered and its main thread sleeps
        // in the condition wait.
        let start = Instant::now();
        while !(board.waiting(V) as usize >= consumers && kids.0.iter().all(|c| sleeping(c.id()))) {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("the consumers never all started waiting");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        board.lock()?.append(V);
        let mut out = Vec::with_capacity(consumers);
        for mut child in kids.0.drain(..) {
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
            let _ = child.wait();
            let v: serde_json::Value = serde_json::from_str(line.trim())
                .with_context(|| format!("consumer output {line:?}"))?;
            out.push(
                v["wakeup_ns"]
                    .as_u64()
                    .map(|ns| ns as f64)
                    .context("no wakeup_ns in the consumer's output")?,
            );
        }
        Ok(out)
    })();
    board.lock()?.stop();
    board.remove();
    result
}

fn append_rate(ctx: &Ctx) -> anyhow::Result<Figure> {
    let count = if ctx.quick { 2_000_000 } else { 20_000_000 };
    let mut i = 0;
    let paired = trials::interleave(
        ctx.trials(),
        |_| {
            // An uncontended mutex lock + increment + unlock.
            let m = std::sync::Mutex::new(0u64);
            let n = count / 2;
            let t = Instant::now();
            for _ in 0..n {
                *m.lock().unwrap() += 1;
            }
            std::hint::black_box(&m);
            Ok(vec![n as f64 / t.elapsed().as_secs_f64()])
        },
        |_| {
            i += 1;
            Ok(vec![append_once(ctx, i, count)?])
        },
    )?;
    let mut f = paired
        .figure(
            "data-sharing",
            "producer append rate with a monitor (10 ms snapshots) and a waiting consumer attached",
            Unit::PerSec,
            "uncontended mutex lock + increment + unlock",
            "one thread, no other process",
        )
        .with_id("notify.append")
        .with_python("board_append_per_s");
    f.target = Some(Target::new("≥ 5 M values/s", f.median >= 5e6));
    Ok(f)
}

/// One append and one snapshot of a board, in this process: µs per pair.
fn append_snapshot(ctx: &Ctx) -> anyhow::Result<Figure> {
    let name = Name::new(&format!("bench-snap-{}", std::process::id()))?;
    let (board, _) = Board::open_or_create(&ctx.run_dir()?, &name, None, true)?;
    board.lock()?.start_producing(std::process::id() as i32);
    let blocks = ctx.iters(100, 20);
    let result = trials::alone(ctx.trials(), |_| {
        let mut out = Vec::with_capacity(blocks);
        for b in 0..blocks {
            let t = Instant::now();
            for k in 0..1000u32 {
                board.lock()?.append((k % 100) as u8);
                let snap = board
                    .snapshot(Duration::from_millis(100))
                    .map_err(|e| anyhow::anyhow!("snapshot: {e:?}"))?;
                std::hint::black_box(&snap);
            }
            if b > 0 {
                out.push(t.elapsed().as_secs_f64() * 1e6 / 1000.0);
            }
        }
        Ok(out)
    });
    board.lock()?.stop();
    board.remove();
    let side = result?;
    let mut f = Figure::new(
        "data-sharing",
        "append one value + take a snapshot, one process (per pair)",
        Unit::Micros,
        side.median(),
    )
    .with_id("notify.append_snapshot");
    f.spread = Some(side.spread());
    f.trials = side.medians.len();
    f.p99 = side.p99();
    Ok(f)
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
    let board = Board::open(&ctx.run_dir()?, &Name::new(&name)?).ok();
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
                    match g.wait(deadline, &|| false) {
                        Ok(Some(again)) => g = again,
                        _ => return,
                    }
                }
                g.add_waiter(22, -1);
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
    v["values_per_s"]
        .as_f64()
        .context("no values_per_s in the producer's report")
}
