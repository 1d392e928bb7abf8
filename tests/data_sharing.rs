//! The data-sharing scenario on the real binaries: `monitor` reads consistent
//! snapshots of the board through its sequence counter while `producer`
//! appends; `monitor --stop` clears `active`; bad names, missing boards and
//! foreign segments are refused with one-line errors.
mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

struct BoardCleanup(std::path::PathBuf);

impl Drop for BoardCleanup {
    fn drop(&mut self) {
        if let Ok(id) = std::fs::read_to_string(&self.0) {
            if id.starts_with("/syncomm.board.") {
                let _ = nix::sys::mman::shm_unlink(id.trim());
            }
        }
    }
}

fn link(env: &Env, name: &str) -> std::path::PathBuf {
    env.dir().join(format!("board.{name}.shm"))
}

fn cmd(env: &Env, bin: &str, name: &str, args: &[&str]) -> Command {
    let mut c = env.cmd(bin);
    c.arg("--name").arg(name).args(args);
    c
}

fn assert_consistent(snap: &serde_json::Value, capacity: u64) {
    let total = snap["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no total in {snap}"));
    let counts = snap["counts"]
        .as_array()
        .unwrap_or_else(|| panic!("no counts in {snap}"));
    assert_eq!(counts.len(), 101);
    let sum: u64 = counts.iter().map(|c| c.as_u64().unwrap()).sum();
    assert_eq!(sum, total, "counts sum to the total in {snap}");
    let recent = snap["recent"].as_array().unwrap();
    assert_eq!(recent.len() as u64, total.min(capacity), "ring in {snap}");
    assert!(recent.iter().all(|v| v.as_u64().unwrap() <= 100));
}

/// Asserts a failed run printed exactly one line `PROGRAM: ...` containing `what`.
fn assert_one_line_error(out: &std::process::Output, prog: &str, code: i32, what: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{prog}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with(&format!("{prog}: ")), "{err}");
    assert!(err.contains(what), "{err} should mention {what}");
    assert!(!err.contains("panicked"), "{err}");
}

/// While a producer appends flat out, every snapshot `monitor --json` prints
/// is internally consistent (per-value counts sum to the total, the ring
/// holds min(total, capacity) values) and totals never go backwards; then
/// `monitor --stop` stops the producer and the monitor exits 0.
#[test]
fn monitor_snapshots_are_consistent_under_flat_out_producer() {
    let env = Env::new();
    let name = unique_name("flat");
    let _clean = BoardCleanup(link(&env, &name));
    let mut producer = Proc::spawn(cmd(&env, "producer", &name, &["--capacity", "100"]));
    let pout = producer.stdout_lines();
    pout.wait_for(|l| l.contains("created"));
    let mut monitor = Proc::spawn(cmd(
        &env,
        "monitor",
        &name,
        &["--json", "--interval", "5ms"],
    ));
    let lines = monitor.stdout_lines();
    let mut last_total = 0;
    let mut moving = 0;
    for _ in 0..60 {
        let l = lines.next_line().expect("a snapshot");
        let snap: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_consistent(&snap, 100);
        let total = snap["total"].as_u64().unwrap();
        assert!(total >= last_total, "total went backwards");
        if total > last_total {
            moving += 1;
        }
        last_total = total;
        assert_eq!(snap["active"], true);
    }
    assert!(
        moving > 10,
        "the producer was appending during the snapshots"
    );

    let stop = run(cmd(&env, "monitor", &name, &["--stop"]));
    assert!(stop.status.success());
    assert!(producer.wait_timeout(HANG).success());
    assert!(pout.rest().join("\n").contains("stopped: monitor --stop"));
    assert!(monitor.wait_timeout(HANG).success());
    for l in lines.rest() {
        assert_consistent(&serde_json::from_str(&l).unwrap(), 100);
    }
}

/// A monitor started before the producer waits for the board, follows it,
/// and exits 0 when the producer clears `active`, its last snapshot showing
/// the producer's final total.
#[test]
fn monitor_started_first_follows_the_producer_to_its_end() {
    let env = Env::new();
    let name = unique_name("first");
    let mut monitor = Proc::spawn(cmd(
        &env,
        "monitor",
        &name,
        &["--json", "--interval", "20ms", "--timeout", "120s"],
    ));
    let lines = monitor.stdout_lines();
    // Give the monitor a head start that is observable: its inotify watch.
    wait_until("monitor watching the runtime directory", || {
        std::fs::read_dir(format!("/proc/{}/fd", monitor.pid()))
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().contains("inotify"))
                })
            })
            .unwrap_or(false)
    });
    let producer = run(cmd(
        &env,
        "producer",
        &name,
        &["--count", "3000", "--interval", "1ms", "--seed", "1"],
    ));
    assert!(producer.status.success());
    let out = lines.rest();
    assert!(monitor.wait_timeout(HANG).success());
    let last: serde_json::Value = serde_json::from_str(out.last().unwrap()).unwrap();
    assert_eq!(last["total"], 3000);
    assert_eq!(last["active"], false);
    for l in &out {
        assert_consistent(&serde_json::from_str(l).unwrap(), 64);
    }
}

/// `monitor --stop` wakes a consumer still waiting: it reports that the
/// producer ended without its value and exits 1; SIGTERM on a producer does
/// the same cleanup and removes the board's name.
#[test]
fn stop_and_sigterm_end_the_producer_and_wake_consumers() {
    let env = Env::new();
    for how in ["stop", "sigterm"] {
        let name = unique_name(how);
        let mut producer = Proc::spawn(cmd(
            &env,
            "producer",
            &name,
            &["--interval", "50ms", "--seed", "2"],
        ));
        let pout = producer.stdout_lines();
        pout.wait_for(|l| l.contains("created"));
        // Value 101 is impossible; wait for the latest-appearing one instead.
        let seq: Vec<u8> = {
            let mut v = syncomm_board::values::Values::new(Some(2));
            (0..100_000).map(|_| v.next_value()).collect()
        };
        let v = (0..=100u8)
            .max_by_key(|x| seq.iter().position(|y| y == x).unwrap_or(0))
            .unwrap();
        let mut consumer = Proc::spawn({
            let mut c = cmd(&env, "consumer", &name, &["--until", &v.to_string()]);
            c.env("RUST_LOG", "info");
            c
        });
        let cerr = consumer.stderr_lines();
        cerr.wait_for(|l| l.contains("runs the board"));
        if how == "stop" {
            assert!(run(cmd(&env, "monitor", &name, &["--stop"]))
                .status
                .success());
        } else {
            producer.signal(nix::sys::signal::Signal::SIGTERM);
        }
        assert!(producer.wait_timeout(HANG).success(), "{how}");
        assert_eq!(consumer.wait_timeout(HANG).code(), Some(1), "{how}");
        let rest = cerr.rest().join("\n");
        assert!(rest.contains("the producer ended after"), "{rest}");
        assert!(!link(&env, &name).exists(), "{how}: the name is removed");
        let _ = pout.rest();
    }
}

/// A second producer is refused while the first one lives; the board's
/// link and segment are private to the user (0600).
#[test]
fn second_producer_is_refused_while_first_runs() {
    let env = Env::new();
    let name = unique_name("two");
    let mut first = Proc::spawn(cmd(&env, "producer", &name, &["--interval", "10ms"]));
    let fout = first.stdout_lines();
    fout.wait_for(|l| l.contains("created"));
    let l = link(&env, &name);
    let id = std::fs::read_to_string(&l).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&l), 0o600);
    assert_eq!(
        mode(&Path::new("/dev/shm").join(id.trim_start_matches('/'))),
        0o600
    );
    let out = run(cmd(&env, "producer", &name, &["--count", "5"]));
    assert_one_line_error(&out, "producer", 1, "already has a live producer");
    assert!(first.is_running());
    first.signal(nix::sys::signal::Signal::SIGINT);
    assert!(first.wait_timeout(HANG).success());
}

/// A bad name is a usage error (exit 2, one line saying what is allowed) for
/// every program; a missing board with `--once` or `--stop` is exit 1.
#[test]
fn bad_name_and_missing_board_are_clear_errors() {
    let env = Env::new();
    for prog in ["producer", "consumer", "monitor"] {
        for bad in ["a/b", "..", "", "x y"] {
            let out = run(cmd(&env, prog, bad, &[]));
            assert_one_line_error(&out, prog, 2, "allowed");
        }
    }
    let name = unique_name("missing");
    for args in [&["--once"][..], &["--stop"][..]] {
        let out = run(cmd(&env, "monitor", &name, args));
        assert_one_line_error(&out, "monitor", 1, "no board named");
    }
    let out = run(cmd(&env, "consumer", &name, &["--until", "101"]));
    assert_eq!(out.status.code(), Some(2));
}

fn write_garbage_segment(os_id: &str, bytes: &[u8]) {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let fd = nix::sys::mman::shm_open(
        os_id,
        OFlag::O_CREAT | OFlag::O_RDWR | OFlag::O_TRUNC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )
    .unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).unwrap();
}

/// Garbage under the board's name is refused by every program with a
/// one-line error and exit 1: a link file with garbage in it, a link to a
/// segment full of garbage, a link to an empty segment. `producer --fresh`
/// replaces it with a real board.
#[test]
fn foreign_segment_under_the_name_is_refused() {
    let env = Env::new();
    let name = unique_name("foreign");
    let l = link(&env, &name);
    let _clean = BoardCleanup(l.clone());
    let garbage_id = format!("/syncomm.board.{name}.garbage");
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    type Make<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Make<'_>)> = vec![
        (
            "garbage link",
            Box::new(|| std::fs::write(&l, b"\x00\xffnot a board\n").unwrap()),
        ),
        (
            "garbage segment",
            Box::new(|| {
                write_garbage_segment(&garbage_id, &garbage);
                std::fs::write(&l, &garbage_id).unwrap();
            }),
        ),
        (
            "empty segment",
            Box::new(|| {
                write_garbage_segment(&garbage_id, b"");
                std::fs::write(&l, &garbage_id).unwrap();
            }),
        ),
    ];
    for (what, make) in &cases {
        make();
        for (prog, args) in [
            ("monitor", &["--once"][..]),
            ("consumer", &["--timeout", "5s"][..]),
            ("producer", &["--count", "5"][..]),
        ] {
            let out = run(cmd(&env, prog, &name, args));
            assert_one_line_error(&out, prog, 1, "is not a syncomm board");
            let _ = what;
        }
        let out = run(cmd(
            &env,
            "producer",
            &name,
            &["--count", "50", "--fresh", "--keep"],
        ));
        assert!(out.status.success(), "{what}: {}", text(&out.stderr));
        let out = run(cmd(&env, "monitor", &name, &["--once", "--json"]));
        assert!(out.status.success());
        let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(snap["total"], 50);
        let _ = nix::sys::mman::shm_unlink(std::fs::read_to_string(&l).unwrap().trim());
        let _ = std::fs::remove_file(&l);
    }
    let _ = nix::sys::mman::shm_unlink(garbage_id.as_str());
}

/// A real board whose segment was cut short (smaller than its header says,
/// or smaller than the header itself) is refused with a one-line error and
/// exit 1 by every program: never a SIGBUS from touching unmapped bytes.
#[test]
fn truncated_segment_is_refused() {
    let env = Env::new();
    let name = unique_name("cut");
    let l = link(&env, &name);
    let _clean = BoardCleanup(l.clone());
    let out = run(cmd(&env, "producer", &name, &["--count", "10", "--keep"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = std::fs::read_to_string(&l).unwrap();
    let segment = std::fs::File::from(
        nix::sys::mman::shm_open(
            id.trim(),
            nix::fcntl::OFlag::O_RDWR,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap(),
    );
    // The board ends where its ring does; the attribution record follows it.
    let full = syncomm_board::segment::segment_size(64) as u64;
    assert!(segment.metadata().unwrap().len() > full);
    // The ring (64 bytes) loses its last byte; then only half a header is left.
    for size in [full - 1, (full - 64) / 2] {
        segment.set_len(size).unwrap();
        for (prog, args) in [
            ("monitor", &["--once"][..]),
            ("consumer", &["--timeout", "5s"][..]),
            ("producer", &["--count", "5"][..]),
        ] {
            let out = run(cmd(&env, prog, &name, args));
            assert_one_line_error(&out, prog, 1, "is not a syncomm board");
        }
    }
}

/// A link left by a crash whose segment is gone is stale: a consumer treats
/// the board as not there yet, and a producer replaces the link.
#[test]
fn stale_link_is_replaced() {
    let env = Env::new();
    let name = unique_name("stale");
    let l = link(&env, &name);
    std::fs::write(&l, format!("/syncomm.board.{name}.gone")).unwrap();
    let out = run(cmd(&env, "consumer", &name, &["--timeout", "200ms"]));
    assert_one_line_error(&out, "consumer", 1, "timed out");
    let out = run(cmd(&env, "producer", &name, &["--count", "10"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("created"));
    assert!(!l.exists());
}

/// SIGINT or SIGTERM ends a waiting consumer (on the board's condition
/// variable, or still waiting for the board) and a monitor cleanly with
/// status 128+N (130 for SIGINT, 143 for SIGTERM), and the producer is
/// unaffected.
#[test]
fn signals_end_waiting_consumers_and_monitors() {
    let env = Env::new();
    let name = unique_name("sig");
    let mut producer = Proc::spawn(cmd(&env, "producer", &name, &["--interval", "100ms"]));
    let pout = producer.stdout_lines();
    pout.wait_for(|l| l.contains("created"));
    let verbose = |mut c: Command| {
        c.env("RUST_LOG", "info");
        c
    };
    // One value every 100 ms: the consumer for 100 is almost surely still
    // waiting when it is signalled (the assertion allows the rare find).
    let mut on_board = Proc::spawn(verbose(cmd(&env, "consumer", &name, &["--until", "100"])));
    let e1 = on_board.stderr_lines();
    let mut no_board = Proc::spawn(verbose(cmd(
        &env,
        "consumer",
        &unique_name("nothing"),
        &["--until", "1"],
    )));
    let e2 = no_board.stderr_lines();
    let mut monitor = Proc::spawn(cmd(&env, "monitor", &name, &["--interval", "20ms"]));
    let mout = monitor.stdout_lines();
    mout.wait_for(|l| l.contains("total"));
    e2.wait_for(|l| l.contains("waiting for board"));
    let registered = e1.wait_for(|l| l.contains("runs the board") || l.contains("Lucky"));
    on_board.signal(nix::sys::signal::Signal::SIGINT);
    no_board.signal(nix::sys::signal::Signal::SIGTERM);
    monitor.signal(nix::sys::signal::Signal::SIGINT);
    if registered.contains("runs the board") {
        let code = on_board.wait_timeout(HANG).code();
        // 0 only if 100 happened to appear just before the signal.
        assert!(matches!(code, Some(130) | Some(0)), "{code:?}");
    }
    assert_eq!(
        no_board.wait_timeout(HANG).code(),
        Some(143),
        "SIGTERM: 128+15"
    );
    assert_eq!(monitor.wait_timeout(HANG).code(), Some(130));
    drop(mout);
    assert!(producer.is_running());
    producer.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(producer.wait_timeout(HANG).success());
}
