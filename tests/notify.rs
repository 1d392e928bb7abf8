//! The notify scenario on the real binaries: `consumer`s sleep until their
//! value appears on the shared board that `producer` appends to; a producer
//! killed while holding the board's robust mutex leaves nobody hanging.
mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use syncomm_board::values::Values;

/// Removes a board's shared-memory object (and link) when a test ends, so a
/// test that kills a producer or uses --keep leaves nothing in /dev/shm.
struct BoardCleanup {
    link: std::path::PathBuf,
}

impl BoardCleanup {
    fn new(env: &Env, name: &str) -> BoardCleanup {
        BoardCleanup {
            link: env.dir().join(format!("board.{name}.shm")),
        }
    }
}

impl Drop for BoardCleanup {
    fn drop(&mut self) {
        unlink_board(&self.link);
    }
}

fn unlink_board(link: &Path) {
    if let Ok(id) = std::fs::read_to_string(link) {
        if id.starts_with("/syncomm.board.") {
            let _ = nix::sys::mman::shm_unlink(id.trim());
        }
    }
}

/// The first `n` values a producer with `--seed seed` appends.
fn seeded(seed: u64, n: usize) -> Vec<u8> {
    let mut v = Values::new(Some(seed));
    (0..n).map(|_| v.next_value()).collect()
}

/// The line a consumer prints when `value` first appears at position `k`
/// (1-based) of `seq`, with a ring large enough to hold the whole prefix.
fn lucky_line(seq: &[u8], value: u8) -> String {
    let k = seq
        .iter()
        .position(|&x| x == value)
        .expect("value in sequence")
        + 1;
    format!(
        "Lucky number {value} found after {k} values: {:?}",
        &seq[..k]
    )
}

fn cmd(env: &Env, bin: &str, name: &str, args: &[&str]) -> Command {
    let mut c = env.cmd(bin);
    c.arg("--name").arg(name).args(args);
    c
}

/// Reads lines until one contains `pat`; on end of stream panics showing
/// every line read, so a failure explains itself.
fn expect_line(lines: &Lines, pat: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match lines.next_line() {
            Some(l) if l.contains(pat) => return l,
            Some(l) => seen.push(l),
            None => panic!("stream ended before a line with {pat:?}; read: {seen:#?}"),
        }
    }
}

/// A command with info logs on stderr (the tests wait on them as events).
fn verbose(mut c: Command) -> Command {
    c.env("RUST_LOG", "info");
    c
}

/// The seed's scenario, consumer first: a consumer started before any
/// producer waits (inotify) for the board, then sleeps on the condition
/// variable until 22 appears, and prints the seed's line with the exact
/// position and values of the seeded run.
#[test]
fn consumer_started_first_finds_22_from_seeded_producer() {
    let env = Env::new();
    let name = unique_name("seed");
    let _clean = BoardCleanup::new(&env, &name);
    let mut consumer = Proc::spawn(verbose(cmd(&env, "consumer", &name, &["--until", "22"])));
    let err = consumer.stderr_lines();
    err.wait_for(|l| l.contains("waiting for board"));

    let out = run(cmd(
        &env,
        "producer",
        &name,
        &[
            "--seed",
            "7",
            "--count",
            "300",
            "--capacity",
            "512",
            "--keep",
        ],
    ));
    assert!(out.status.success(), "producer: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("created"));

    let c = consumer.finish();
    assert!(c.status.success(), "consumer failed");
    assert_eq!(
        text(&c.stdout).trim(),
        lucky_line(&seeded(7, 300), 22),
        "consumer output"
    );
}

/// Several consumers wait for different values at once, some started before
/// the producer and one after; each reports its own value's first position.
#[test]
fn several_consumers_wait_for_different_values() {
    let env = Env::new();
    let name = unique_name("many");
    let _clean = BoardCleanup::new(&env, &name);
    let seq = seeded(11, 3000);
    let values = [22u8, 0, 100];
    let mut early: Vec<(Proc, Option<Lines>)> = values[..2]
        .iter()
        .map(|v| {
            let mut p = Proc::spawn(verbose(cmd(
                &env,
                "consumer",
                &name,
                &["--until", &v.to_string()],
            )));
            let err = p.stderr_lines();
            expect_line(&err, "waiting for board");
            (p, Some(err))
        })
        .collect();
    let producer = Proc::spawn(cmd(
        &env,
        "producer",
        &name,
        &[
            "--seed",
            "11",
            "--count",
            "3000",
            "--capacity",
            "4096",
            "--keep",
        ],
    ));
    let late = Proc::spawn(cmd(&env, "consumer", &name, &["--until", "100"]));
    early.push((late, None));
    for ((p, err), v) in early.into_iter().zip(values) {
        let out = p.finish();
        let err = err.map(|e| e.rest().join("\n")).unwrap_or_default();
        assert!(
            out.status.success(),
            "consumer {v}: {:?} {}{err}",
            out.status,
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).trim(), lucky_line(&seq, v));
    }
    assert!(producer.finish().status.success());
}

/// A consumer whose value never comes exits 1 with a clear message when the
/// producer ends, and on its own timeout when no board ever appears.
#[test]
fn consumer_exits_1_when_producer_ends_without_value_or_on_timeout() {
    let env = Env::new();
    let name = unique_name("never");
    let seq = seeded(3, 100);
    let missing = (0..=100u8)
        .find(|v| !seq.contains(v))
        .expect("a value absent");
    let mut producer = Proc::spawn(cmd(
        &env,
        "producer",
        &name,
        &["--seed", "3", "--count", "100", "--interval", "20ms"],
    ));
    let pout = producer.stdout_lines();
    expect_line(&pout, "created");
    let mut consumer = Proc::spawn(verbose(cmd(
        &env,
        "consumer",
        &name,
        &["--until", &missing.to_string()],
    )));
    let err = consumer.stderr_lines();
    err.wait_for(|l| l.contains("runs the board"));
    let status = consumer.wait_timeout(HANG);
    assert_eq!(status.code(), Some(1));
    let rest = err.rest().join("\n");
    assert!(
        rest.contains(&format!(
            "the producer ended after 100 values without {missing}"
        )),
        "{rest}"
    );
    assert!(producer.finish().status.success());

    // No board at all: the timeout bounds the wait.
    let out = run(cmd(
        &env,
        "consumer",
        &unique_name("none"),
        &["--until", "5", "--timeout", "300ms"],
    ));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("consumer: timed out after 300ms"), "{err}");
}

/// The producer is `kill -9`-ed in the middle of an append, holding the
/// board's robust mutex. A consumer blocked on that mutex does not hang: it
/// gets EOWNERDEAD, repairs the board (the interrupted append is finished,
/// counts sum to the total again) and waits for a new producer; a monitor
/// that watched the dead producer exits 1 saying it died, one started after
/// the death waits for the next producer; a new producer attaches, continues
/// the total, and the consumer finds its value at the position the seeded
/// run predicts.
#[test]
fn producer_killed_holding_the_lock_is_repaired_and_continued() {
    let env = Env::new();
    let name = unique_name("kill");
    let _clean = BoardCleanup::new(&env, &name);
    let seq = seeded(5, 2000);
    // A value absent from the first 11 values (10 appended + the stalled one).
    let v = (0..=100u8)
        .find(|x| !seq[..11].contains(x) && seq[11..].contains(x))
        .unwrap();

    let mut p1 = Proc::spawn(cmd(
        &env,
        "producer",
        &name,
        &["--seed", "5", "--hold-lock", "60s", "--hold-after", "10"],
    ));
    let p1_out = p1.stdout_lines();
    expect_line(&p1_out, "holding the board lock");

    let mut watcher = Proc::spawn(cmd(&env, "monitor", &name, &["--interval", "20ms"]));
    // It has attached once it complains that the board stays mid-update.
    let werr = watcher.stderr_lines();
    expect_line(&werr, "stayed mid-update");
    let mut consumer = Proc::spawn(verbose(cmd(
        &env,
        "consumer",
        &name,
        &["--until", &v.to_string()],
    )));
    let cerr = consumer.stderr_lines();
    expect_line(&cerr, "taking its lock");

    p1.kill9();
    let _ = p1.wait_timeout(HANG);
    // The consumer was blocked on the mutex: it is the next locker and repairs.
    expect_line(&cerr, "repairing board: finishing the interrupted append");
    expect_line(&cerr, "no producer runs the board");
    // The monitor that watched the holder reports its death.
    let w = watcher.finish();
    let werr = werr.rest().join("\n");
    assert_eq!(w.status.code(), Some(1), "{werr}");
    assert!(werr.contains("died"), "{werr}");
    // A monitor started after the death waits for the next producer.
    let mut monitor = Proc::spawn(cmd(
        &env,
        "monitor",
        &name,
        &["--json", "--interval", "20ms"],
    ));
    let mon = monitor.stdout_lines();

    // The repaired board is consistent: the stalled append was finished.
    let snap = wait_snapshot(&env, &name, |s| s["total"] == 11);
    assert_eq!(snap["repairs"], 1);
    assert_consistent(&snap);

    // A new producer attaches and goes on from 11.
    let p2 = Proc::spawn(cmd(
        &env,
        "producer",
        &name,
        &["--seed", "5", "--count", "2000", "--interval", "500us"],
    ));
    let out = consumer.finish();
    assert!(out.status.success(), "consumer: {}", text(&out.stderr));
    let k = 11 + seq.iter().position(|&x| x == v).unwrap() + 1;
    assert!(
        text(&out.stdout).starts_with(&format!("Lucky number {v} found after {k} values")),
        "{}",
        text(&out.stdout)
    );
    let p2 = p2.finish();
    assert!(p2.status.success(), "{}", text(&p2.stderr));
    assert!(text(&p2.stdout).contains("attached: capacity 64, 11 values so far"));
    assert!(text(&p2.stdout).contains("board total 2011"));

    // The monitor never hung: it ends when the new producer clears `active`,
    // and every snapshot it printed was consistent.
    let lines = mon.rest();
    assert!(monitor.wait_timeout(HANG).success());
    assert!(!lines.is_empty());
    for l in &lines {
        assert_consistent(&serde_json::from_str(l).unwrap());
    }
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["total"], 2011);
    assert_eq!(last["active"], false);
}

/// Killing a waiting consumer or a running monitor does not disturb the
/// producer: it goes on appending, a new consumer for the dead one's value
/// still finds it, and `monitor --stop` ends the producer cleanly.
#[test]
fn killed_consumer_or_monitor_leaves_producer_unaffected() {
    let env = Env::new();
    let name = unique_name("peer");
    let seq = seeded(9, 100_000);
    // A value that first appears late, so the consumer is surely waiting.
    let v = (0..=100u8)
        .max_by_key(|x| seq.iter().position(|y| y == x).unwrap_or(0))
        .unwrap();
    let mut producer = Proc::spawn(cmd(
        &env,
        "producer",
        &name,
        &["--seed", "9", "--interval", "5ms"],
    ));
    let pout = producer.stdout_lines();
    pout.wait_for(|l| l.contains("created"));
    let mut consumer = Proc::spawn(verbose(cmd(
        &env,
        "consumer",
        &name,
        &["--until", &v.to_string()],
    )));
    let cerr = consumer.stderr_lines();
    expect_line(&cerr, "runs the board");
    let mut monitor = Proc::spawn(cmd(&env, "monitor", &name, &["--interval", "10ms"]));
    let mout = monitor.stdout_lines();
    expect_line(&mout, "total");
    // Killed while waiting on the condition variable / between snapshots.
    consumer.kill9();
    monitor.kill9();
    let _ = consumer.wait_timeout(HANG);
    let _ = monitor.wait_timeout(HANG);
    drop((cerr, mout));

    let before = wait_snapshot(&env, &name, |_| true)["total"]
        .as_u64()
        .unwrap();
    wait_snapshot(&env, &name, |s| s["total"].as_u64().unwrap() > before + 5);
    assert!(producer.is_running());
    let again = run(cmd(&env, "consumer", &name, &["--until", &v.to_string()]));
    assert!(again.status.success(), "{}", text(&again.stderr));

    let stop = run(cmd(&env, "monitor", &name, &["--stop"]));
    assert!(stop.status.success());
    let status = producer.wait_timeout(HANG);
    assert!(status.success());
    assert!(pout.rest().join("\n").contains("stopped: monitor --stop"));
    assert!(!env.dir().join(format!("board.{name}.shm")).exists());
}

/// Polls `monitor --once --json` until a snapshot satisfies `pred`.
fn wait_snapshot(
    env: &Env,
    name: &str,
    mut pred: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut found = None;
    wait_until("a matching snapshot", || {
        let out = run(cmd(env, "monitor", name, &["--once", "--json"]));
        if !out.status.success() {
            return false;
        }
        let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ok = pred(&snap);
        found = Some(snap);
        ok
    });
    found.unwrap()
}

fn assert_consistent(snap: &serde_json::Value) {
    let total = snap["total"].as_u64().unwrap();
    let sum: u64 = snap["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(sum, total, "counts sum to the total in {snap}");
    let recent = snap["recent"].as_array().unwrap().len() as u64;
    assert_eq!(recent, total.min(64), "ring length in {snap}");
}

/// A consumer killed while it sleeps leaves nothing that can block the
/// producer: its value appears (the wake-up finds nobody asleep and the
/// producer reaps the dead waiter's registration), a new
/// consumer waits for another value, and the producer's next wake-ups still
/// go through. (glibc's process-shared `pthread_cond_t` hangs the producer
/// in exactly this sequence; the board's futex-word condition does not.)
#[test]
fn consumer_killed_mid_wait_never_blocks_later_wakeups() {
    let env = Env::new();
    let name = unique_name("dead-waiter");
    let seq = seeded(13, 100_000);
    let first = |v: u8| seq.iter().position(|&x| x == v).unwrap();
    // A: a value that appears early-ish; B: the value that appears last.
    let mut order: Vec<u8> = (0..=100).collect();
    order.sort_by_key(|&v| first(v));
    let (a, b) = (order[90], order[100]);
    let mut producer = Proc::spawn(verbose(cmd(
        &env,
        "producer",
        &name,
        &["--seed", "13", "--interval", "10ms"],
    )));
    let pout = producer.stdout_lines();
    let perr = producer.stderr_lines();
    expect_line(&pout, "created");
    let mut dead = Proc::spawn(verbose(cmd(
        &env,
        "consumer",
        &name,
        &["--until", &a.to_string()],
    )));
    let derr = dead.stderr_lines();
    expect_line(&derr, "runs the board");
    dead.kill9();
    let _ = dead.wait_timeout(HANG);
    drop(derr);
    // When A appears, the wake-up finds nobody asleep: the producer reaps
    // the dead registration and no longer pays a wake-up for every later A.
    expect_line(&perr, "reaped 1 waiter");
    let waiter = Proc::spawn(cmd(&env, "consumer", &name, &["--until", &b.to_string()]));
    // The producer keeps appending and the waiter gets its value.
    let out = waiter.finish();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("Lucky number {b} found")));
    let before = wait_snapshot(&env, &name, |_| true)["total"]
        .as_u64()
        .unwrap();
    wait_snapshot(&env, &name, |s| s["total"].as_u64().unwrap() > before);
    producer.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(producer.wait_timeout(HANG).success());
}

/// The largest durations the parser accepts (100 years, 36525d) are waited
/// on, not a panic from overflowing the clock: a producer pausing that long
/// between values, a consumer and a monitor bounded by such a timeout, all
/// still end cleanly on SIGTERM.
#[test]
fn huge_durations_wait_instead_of_panicking() {
    let env = Env::new();
    let name = unique_name("huge");
    let _clean = BoardCleanup::new(&env, &name);
    let huge = "36525d";
    let mut producer = Proc::spawn(cmd(
        &env,
        "producer",
        &name,
        &["--count", "2", "--interval", huge],
    ));
    let pout = producer.stdout_lines();
    expect_line(&pout, "created");
    let mut consumer = Proc::spawn(verbose(cmd(
        &env,
        "consumer",
        &unique_name("none"),
        &["--timeout", huge],
    )));
    let cerr = consumer.stderr_lines();
    expect_line(&cerr, "waiting for board");
    let mut monitor = Proc::spawn(cmd(
        &env,
        "monitor",
        &name,
        &["--interval", huge, "--timeout", huge],
    ));
    let mout = monitor.stdout_lines();
    expect_line(&mout, "total ");
    for p in [&producer, &consumer, &monitor] {
        p.signal(nix::sys::signal::Signal::SIGTERM);
    }
    assert_eq!(producer.wait_timeout(HANG).code(), Some(0));
    // SIGTERM: 128+15.
    assert_eq!(consumer.wait_timeout(HANG).code(), Some(143));
    assert_eq!(monitor.wait_timeout(HANG).code(), Some(143));
    drop((pout, cerr, mout));
}

/// A producer `kill -9`-ed between appends (not holding the lock) cannot
/// clear `active`: the consumer watching it (woken by its pidfd) exits 1
/// saying it died, the monitor exits 1, and a new producer attaches to the
/// board and continues its total.
#[test]
fn producer_killed_between_appends_ends_its_watchers_with_1() {
    let env = Env::new();
    let name = unique_name("gone");
    let _clean = BoardCleanup::new(&env, &name);
    let seq = seeded(9, 100_000);
    let v = (0..=100u8)
        .max_by_key(|x| seq.iter().position(|y| y == x).unwrap_or(0))
        .unwrap();
    let mut producer = Proc::spawn(cmd(
        &env,
        "producer",
        &name,
        &["--seed", "9", "--interval", "20ms"],
    ));
    let pout = producer.stdout_lines();
    expect_line(&pout, "created");
    let mut consumer = Proc::spawn(verbose(cmd(
        &env,
        "consumer",
        &name,
        &["--until", &v.to_string()],
    )));
    let cerr = consumer.stderr_lines();
    expect_line(&cerr, "runs the board");
    let mut monitor = Proc::spawn(cmd(&env, "monitor", &name, &["--interval", "20ms"]));
    let mout = monitor.stdout_lines();
    expect_line(&mout, "active yes");
    producer.kill9();
    let _ = producer.wait_timeout(HANG);
    assert_eq!(consumer.wait_timeout(HANG).code(), Some(1));
    let err = cerr.rest().join("\n");
    assert!(err.contains("died after"), "{err}");
    assert_eq!(monitor.wait_timeout(HANG).code(), Some(1));
    drop((pout, mout));

    let total = wait_snapshot(&env, &name, |_| true)["total"]
        .as_u64()
        .unwrap();
    let out = run(cmd(&env, "producer", &name, &["--count", "5"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("board total {}", total + 5)),
        "{}",
        text(&out.stdout)
    );
}

/// A producer that is alive but stalled while holding the board's lock (as
/// after Ctrl-Z) does not make a consumer wait past its `--timeout`, nor
/// ignore Ctrl-C: the lock wait is bounded too; `monitor --stop` gives up
/// with a clear error instead of hanging.
#[test]
fn a_stalled_lock_holder_does_not_trap_consumers() {
    let env = Env::new();
    let name = unique_name("stall");
    let _clean = BoardCleanup::new(&env, &name);
    let mut producer = Proc::spawn(cmd(
        &env,
        "producer",
        &name,
        &["--seed", "5", "--hold-lock", "600s", "--hold-after", "3"],
    ));
    let out = producer.stdout_lines();
    expect_line(&out, "holding the board lock");

    // A value not among those appended before the stall: the consumer
    // cannot find it and must give up at its timeout.
    let seq = seeded(5, 4);
    let v = (0..=100u8).find(|x| !seq.contains(x)).unwrap().to_string();
    let timed = run(cmd(
        &env,
        "consumer",
        &name,
        &["--until", &v, "--timeout", "300ms"],
    ));
    assert_eq!(timed.status.code(), Some(1), "{}", text(&timed.stderr));
    let err = text(&timed.stderr);
    assert!(
        err.contains(&format!("timed out after 300ms waiting for {v}")),
        "{err}"
    );
    assert!(err.contains("lock stayed held"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let mut waiting = Proc::spawn(verbose(cmd(&env, "consumer", &name, &["--until", &v])));
    let werr = waiting.stderr_lines();
    expect_line(&werr, "taking its lock");
    waiting.signal(nix::sys::signal::Signal::SIGINT);
    let status = waiting.wait_timeout(HANG);
    assert_eq!(status.code(), Some(130));

    // `monitor --stop` must write under the lock: it gives up with one line.
    let stop = run(cmd(&env, "monitor", &name, &["--stop"]));
    assert_eq!(stop.status.code(), Some(1), "{}", text(&stop.stderr));
    let err = text(&stop.stderr);
    assert!(err.contains("the board's lock stayed held for 5s"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(producer.is_running(), "the stalled producer is untouched");
}
