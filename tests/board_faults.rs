//! Faults an adversarial review found in the shared-memory board (issue 12),
//! each reproduced on the real binaries: things planted under a board's name
//! (a FIFO, a symlink, objects of another user), a monitor racing a producer
//! killed mid-update, consumers that cannot get an inotify instance, and a
//! producer hit by two SIGINTs back to back.
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// How long any one program here may take before it counts as trapped.
const TRAPPED: Duration = Duration::from_secs(15);

fn link(env: &Env, name: &str) -> PathBuf {
    env.dir().join(format!("board.{name}.shm"))
}

fn cmd(env: &Env, bin: &str, name: &str, args: &[&str]) -> Command {
    let mut c = env.cmd(bin);
    c.arg("--name").arg(name).args(args);
    c
}

/// Runs `c` to completion; a run longer than [`TRAPPED`] is killed and fails the test.
fn run_bounded(mut c: Command) -> Output {
    c.stdin(std::process::Stdio::null());
    let mut p = Proc::spawn(c);
    let out = p.child.stdout.take().unwrap();
    let err = p.child.stderr.take().unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let (o, e) = (read(Box::new(out)), read(Box::new(err)));
    let status = p.wait_timeout(TRAPPED);
    Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

/// Asserts a failed run printed exactly one line `PROGRAM: ...` containing `what`.
fn assert_one_line_error(out: &Output, prog: &str, what: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{prog}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with(&format!("{prog}: ")), "{err}");
    assert!(err.contains(what), "{err} should mention {what:?}");
}

/// Every shared-memory object in /dev/shm made for board `name`
/// (`syncomm.board.NAME.PID.RAND`), as os ids (`/syncomm.board...`).
fn segments_of(name: &str) -> Vec<String> {
    let prefix = format!("syncomm.board.{name}.");
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix))
                .map(|n| format!("/{n}"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Removes every segment of board `name` (and whatever a test planted) at
/// the end of a test, even on failure.
struct Cleanup {
    name: String,
    extra: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in segments_of(&self.name).iter().chain(&self.extra) {
            let _ = nix::sys::mman::shm_unlink(id.as_str());
        }
    }
}

fn cleanup(name: &str) -> Cleanup {
    Cleanup {
        name: name.to_owned(),
        extra: Vec::new(),
    }
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
}

/// Item 4: a FIFO planted at a board's link name (or at the segment a link
/// names, or a symlink at the link name) traps nobody: `consumer --timeout`,
/// `monitor --once`, `monitor --timeout` and `producer` each refuse it at
/// once with one line and exit 1 (before the fix they hung in open(2)), and
/// `producer --fresh` replaces the FIFO with a real board.
#[test]
fn a_fifo_or_symlink_under_the_board_name_traps_nobody() {
    let env = Env::new();
    let name = unique_name("fifo");
    let _clean = cleanup(&name);
    let l = link(&env, &name);
    let refusers: [(&str, &[&str]); 4] = [
        ("consumer", &["--timeout", "1s"]),
        ("monitor", &["--once"]),
        ("monitor", &["--timeout", "1s"]),
        ("producer", &["--count", "3"]),
    ];

    mkfifo(&l);
    for (prog, args) in refusers {
        let out = run_bounded(cmd(&env, prog, &name, args));
        assert_one_line_error(&out, prog, "FIFO");
    }
    let out = run_bounded(cmd(&env, "producer", &name, &["--fresh", "--count", "3"]));
    assert!(
        out.status.success(),
        "producer --fresh: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("created"),
        "{}",
        text(&out.stdout)
    );
    assert!(!l.exists(), "the FIFO was replaced, the board then removed");

    // A symlink at the link name is not followed, even to a real link file.
    let real = env.dir().join("elsewhere");
    std::fs::write(&real, "/syncomm.board.x.1.a").unwrap();
    std::os::unix::fs::symlink(&real, &l).unwrap();
    for (prog, args) in refusers {
        let out = run_bounded(cmd(&env, prog, &name, args));
        assert_one_line_error(&out, prog, "symlink");
    }
    std::fs::remove_file(&l).unwrap();

    // A FIFO at the segment a (well-formed) link names.
    let seg = format!("syncomm.board.{name}.1.fifo");
    let seg_path = Path::new("/dev/shm").join(&seg);
    let _seg = Cleanup {
        name: name.clone(),
        extra: vec![format!("/{seg}")],
    };
    mkfifo(&seg_path);
    std::fs::write(&l, format!("/{seg}")).unwrap();
    for (prog, args) in refusers {
        let out = run_bounded(cmd(&env, prog, &name, args));
        assert_one_line_error(&out, prog, "FIFO");
    }
    let out = run_bounded(cmd(&env, "producer", &name, &["--fresh", "--count", "3"]));
    assert!(
        out.status.success(),
        "producer --fresh: {}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_file(&seg_path);
}

/// Item 16: objects under a board's name that belong to another user are
/// refused even when we run as root: a link file of uid 65534, and our own
/// link naming a real board segment of uid 65534. The foreign segment is
/// never attached, written or unlinked — not even by `producer --fresh`,
/// which builds a new board of its own instead.
#[test]
fn objects_of_another_user_are_refused_even_as_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot chown a file to another user; skipped");
        return;
    }
    let env = Env::new();
    let name = unique_name("owner");
    let _clean = cleanup(&name);
    let l = link(&env, &name);
    let nobody = Some(nix::unistd::Uid::from_raw(65534));

    // A real board, kept, whose segment then changes hands.
    let out = run_bounded(cmd(&env, "producer", &name, &["--count", "7", "--keep"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seg_id = std::fs::read_to_string(&l).unwrap().trim().to_owned();
    let seg_path = Path::new("/dev/shm").join(&seg_id[1..]);
    nix::unistd::chown(&seg_path, nobody, None).unwrap();
    let before = std::fs::read(&seg_path).unwrap();

    let refusers: [(&str, &[&str]); 4] = [
        ("consumer", &["--timeout", "1s"]),
        ("monitor", &["--once"]),
        ("monitor", &["--timeout", "1s"]),
        ("producer", &["--count", "3"]),
    ];
    for (prog, args) in refusers {
        let out = run_bounded(cmd(&env, prog, &name, args));
        assert_one_line_error(&out, prog, "uid 65534");
    }
    // --fresh replaces our link but leaves the other user's segment alone.
    let out = run_bounded(cmd(&env, "producer", &name, &["--fresh", "--count", "3"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(seg_path.exists(), "the foreign segment was unlinked");
    assert_eq!(std::fs::read(&seg_path).unwrap(), before, "it was written");
    assert_eq!(std::fs::metadata(&seg_path).unwrap().uid(), 65534);

    // A link file that belongs to another user, naming that same segment.
    std::fs::write(&l, &seg_id).unwrap();
    nix::unistd::chown(&l, nobody, None).unwrap();
    for (prog, args) in refusers {
        let out = run_bounded(cmd(&env, prog, &name, args));
        assert_one_line_error(&out, prog, "uid 65534");
    }
    assert_eq!(std::fs::read(&seg_path).unwrap(), before, "it was written");
    let _ = std::fs::remove_file(&l);
}

/// Item 5: a monitor started before a producer that is `kill -9`-ed in the
/// middle of an update (holding the lock, the sequence counter odd) exits 1
/// saying the producer died — in every round, whatever the monitor managed
/// to see of the producer before it died. Before the fix, about one round
/// in five left the monitor running, silent, until its own timeout.
#[test]
fn monitor_started_first_always_sees_the_producer_die_mid_update() {
    let env = Env::new();
    const ROUNDS: u32 = 40;
    let mut stuck = Vec::new();
    for round in 0..ROUNDS {
        let name = unique_name("midupd");
        let _clean = cleanup(&name);
        let r: u32 = rand::random();
        let interval = ["10ms", "50ms", "200ms"][(r % 3) as usize];
        let hold_after = ((r / 3) % 4).to_string();
        let monitor = Proc::spawn(cmd(
            &env,
            "monitor",
            &name,
            &["--timeout", "6s", "--interval", interval],
        ));
        let mut producer = Proc::spawn(cmd(
            &env,
            "producer",
            &name,
            &["--hold-lock", "30s", "--hold-after", &hold_after],
        ));
        let pout = producer.stdout_lines();
        pout.wait_for(|l| l.contains("holding the board lock"));
        std::thread::sleep(Duration::from_millis(u64::from((r / 12) % 30)));
        producer.kill9();
        let _ = producer.wait_timeout(HANG);
        drop(pout);
        let out = monitor.finish();
        let err = text(&out.stderr);
        if out.status.code() != Some(1) || !err.contains("died") || err.contains("timed out") {
            stuck.push(format!(
                "round {round} (interval {interval}, hold after {hold_after}): {:?} {err}",
                out.status.code()
            ));
        }
    }
    assert!(
        stuck.is_empty(),
        "{} of {ROUNDS} monitors did not report the death: {stuck:#?}",
        stuck.len()
    );
}

/// A command running `bin` in a new user namespace (root mapped to us)
/// whose inotify instance limit is 0, so `inotify_init` fails with EMFILE
/// exactly as it does past `max_user_instances`. The limit is the child
/// namespace's own (`/proc/sys/user/max_inotify_instances`); nothing global
/// changes. `None` when user namespaces are not available here.
fn without_inotify(env: &Env, bin: &str, name: &str, args: &[&str]) -> Option<Command> {
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c"])
        .arg("echo 0 > /proc/sys/user/max_inotify_instances")
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("unshare --user not available: skipped");
        return None;
    }
    let mut c = Command::new("unshare");
    c.env("SYNCOMM_DIR", env.dir())
        .env("RUST_LOG", "info")
        .args(["--user", "--map-root-user", "sh", "-c"])
        .arg("echo 0 > /proc/sys/user/max_inotify_instances && exec \"$0\" \"$@\"")
        .arg(common::bin(bin))
        .arg("--name")
        .arg(name)
        .args(args);
    Some(c)
}

/// Item 9: a consumer (and a monitor) waiting for a board that does not
/// exist yet, unable to get an inotify instance (the per-user limit that
/// ~128 waiting consumers exhaust), falls back to looking again now and
/// then: it still finds the board once a producer appears, and the consumer
/// prints the seeded run's line. Before the fix both failed at once with
/// `inotify_init: Too many open files`.
#[test]
fn waiting_for_a_board_works_without_inotify() {
    let env = Env::new();
    let name = unique_name("noino");
    let _clean = cleanup(&name);
    let Some(c) = without_inotify(
        &env,
        "consumer",
        &name,
        &["--until", "22", "--timeout", "30s"],
    ) else {
        return;
    };
    let mut consumer = Proc::spawn(c);
    let cerr = consumer.stderr_lines();
    let mut monitor = Proc::spawn(
        without_inotify(&env, "monitor", &name, &["--timeout", "30s", "--json"]).unwrap(),
    );
    let merr = monitor.stderr_lines();
    for (who, lines) in [("consumer", &cerr), ("monitor", &merr)] {
        let l = lines.wait_for(|l| l.contains("waiting for board") || l.contains("inotify"));
        assert!(l.contains("waiting for board"), "{who}: {l}");
    }
    let out = run_bounded(cmd(
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
            "--interval",
            "1ms",
        ],
    ));
    assert!(out.status.success(), "producer: {}", text(&out.stderr));
    let c = consumer.finish();
    let rest = cerr.rest().join("\n");
    assert!(c.status.success(), "consumer: {rest}");
    assert!(
        text(&c.stdout).starts_with("Lucky number 22 found after 117 values"),
        "{}",
        text(&c.stdout)
    );
    let m = monitor.finish();
    assert!(m.status.success(), "monitor: {}", merr.rest().join("\n"));
    let last = text(&m.stdout).lines().last().unwrap_or("").to_owned();
    let snap: serde_json::Value = serde_json::from_str(&last).expect("a snapshot");
    assert_eq!(snap["total"], 300);
}

/// Item 17: two SIGINTs back to back to a producer (the second one ends it
/// at once, wherever its clean-up is) never leave a shared-memory segment
/// that no link names: at any moment the segment goes before its link, so
/// what a cut-short clean-up leaves is a stale link that the next producer
/// replaces. After the rounds, one more producer leaves nothing behind.
#[test]
fn two_sigints_never_orphan_the_segment() {
    let env = Env::new();
    let name = unique_name("sigint2");
    let _clean = cleanup(&name);
    let l = link(&env, &name);
    const ROUNDS: u32 = 1500;
    let mut orphaned = Vec::new();
    for round in 0..ROUNDS {
        let mut producer = Proc::spawn(cmd(&env, "producer", &name, &["--interval", "100us"]));
        let out = producer.stdout_lines();
        out.wait_for(|l| l.contains("created") || l.contains("attached"));
        // The second signal lands somewhere in the clean-up the first began.
        let gap = Duration::from_micros(u64::from(rand::random::<u32>() % 400));
        producer.signal(Signal::SIGINT);
        let t = std::time::Instant::now();
        while t.elapsed() < gap {
            std::hint::spin_loop();
        }
        producer.signal(Signal::SIGINT);
        let _ = producer.wait_timeout(HANG);
        drop(out);
        let named = std::fs::read_to_string(&l).ok();
        for seg in segments_of(&name) {
            if named.as_deref().map(str::trim) != Some(seg.as_str()) {
                orphaned.push(format!(
                    "round {round} (gap {gap:?}): {seg} (link: {named:?})"
                ));
                let _ = nix::sys::mman::shm_unlink(seg.as_str());
            }
        }
    }
    assert!(
        orphaned.is_empty(),
        "{} of {ROUNDS} rounds left a segment no link names: {orphaned:#?}",
        orphaned.len()
    );
    let out = run_bounded(cmd(&env, "producer", &name, &["--count", "3"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!l.exists(), "link left behind");
    assert_eq!(
        segments_of(&name),
        Vec::<String>::new(),
        "segments left behind"
    );
}
