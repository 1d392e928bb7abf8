//! shared-file: `scribe` writers appending to one file under an exclusive
//! `flock`, and `scribe --verify` reading it back.
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use common::*;

fn writer(env: &Env, file: &Path, id: &str, count: u64) -> Command {
    let mut c = env.cmd("scribe");
    c.arg("--file")
        .arg(file)
        .args(["--id", id, "--count", &count.to_string()]);
    c.args(["--message", "the quick brown fox"]);
    c
}

fn verify(env: &Env, file: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = env.cmd("scribe");
    c.arg("--verify").arg(file).args(extra);
    run(c)
}

/// Our own check, independent of `--verify`: every line is `ID mu: TEXT K`
/// and each writer's K runs 0, 1, 2, ...; returns lines per writer.
fn count_by_writer(file: &Path) -> HashMap<String, u64> {
    let data = std::fs::read_to_string(file).unwrap();
    assert!(
        data.is_empty() || data.ends_with('\n'),
        "file ends mid-line"
    );
    let mut next: HashMap<String, u64> = HashMap::new();
    for (i, line) in data.lines().enumerate() {
        let (id, rest) = line
            .split_once(" mu: ")
            .unwrap_or_else(|| panic!("line {}: {line:?}", i + 1));
        let k: u64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
        let n = next.entry(id.to_owned()).or_insert(0);
        assert_eq!(k, *n, "line {}: writer {id} out of sequence", i + 1);
        *n += 1;
    }
    next
}

/// Eight writers appending 10,000 lines each at the same time: the file holds
/// exactly 80,000 whole lines, each writer's in order, and `--verify` agrees.
#[test]
fn eight_writers_lose_and_tear_nothing() {
    let env = Env::new();
    let file = env.dir().join("shared.txt");
    let procs: Vec<Proc> = (0..8)
        .map(|i| Proc::spawn(writer(&env, &file, &format!("w{i}"), 10_000)))
        .collect();
    for p in procs {
        let out = p.finish();
        assert!(out.status.success(), "writer failed: {}", text(&out.stderr));
    }
    let out = verify(&env, &file, &["--writers", "8", "--count", "10000"]);
    assert!(out.status.success(), "verify: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "80000 lines from 8 writers: ok");
    let counts = count_by_writer(&file);
    assert_eq!(counts.len(), 8);
    assert!(counts.values().all(|&n| n == 10_000), "{counts:?}");
}

/// How many of `pids` have `file` open. While another writer holds the
/// lock, a writer with the file open is waiting for the lock (writers wait
/// with non-blocking attempts paced by `poll(2)` on their shutdown
/// descriptor, so `/proc/locks` lists no blocked request).
fn flock_waiters(file: &Path, pids: &[i32]) -> usize {
    pids.iter().filter(|&&pid| has_open(pid, file)).count()
}

/// A writer killed with SIGKILL while it holds the lock (it holds it for
/// 1000 s after its first line): until then the other writers wait for the
/// lock and write nothing (the lock is real); then the kernel releases
/// the lock, the others finish, and the file has no torn line.
#[test]
fn writer_killed_holding_the_lock_blocks_nobody() {
    let env = Env::new();
    let file = env.dir().join("shared.txt");
    let mut c = writer(&env, &file, "victim", 5);
    c.args(["--hold", "1000s"]);
    let victim = Proc::spawn(c);
    // The victim's first line is in the file: it now holds the lock.
    wait_until("the victim's first line", || {
        std::fs::read_to_string(&file).is_ok_and(|s| s.contains("victim mu:"))
    });
    let others: Vec<Proc> = (0..3)
        .map(|i| Proc::spawn(writer(&env, &file, &format!("o{i}"), 2000)))
        .collect();
    let pids: Vec<i32> = others.iter().map(Proc::pid).collect();
    wait_until("the three other writers to wait for the lock", || {
        flock_waiters(&file, &pids) == 3
    });
    assert_eq!(
        count_by_writer(&file).len(),
        1,
        "a writer got past the lock"
    );
    victim.kill9();
    for p in others {
        let out = p.finish();
        assert!(out.status.success(), "writer failed: {}", text(&out.stderr));
    }
    let out = verify(&env, &file, &["--writers", "4"]);
    assert!(out.status.success(), "verify: {}", text(&out.stderr));
    let counts = count_by_writer(&file);
    assert_eq!(counts["victim"], 1);
    for i in 0..3 {
        assert_eq!(counts[&format!("o{i}")], 2000);
    }
}

/// `--verify` finds a missing, a repeated and an out-of-order line, garbage,
/// a torn last line and wrong totals: exit 1, naming the line.
#[test]
fn verify_reports_what_is_wrong_and_where() {
    let env = Env::new();
    let file = env.dir().join("f.txt");
    let cases: &[(&[u8], &[&str], &str)] = &[
        (
            b"a mu: x 0\na mu: x 2\n",
            &[],
            "line 2: writer a wrote line 2, expected 1",
        ),
        (
            b"a mu: x 0\na mu: x 1\na mu: x 1\n",
            &[],
            "line 3: writer a wrote line 1 again",
        ),
        (
            b"a mu: x 0\nb mu: x 1\nb mu: x 0\n",
            &[],
            "line 2: writer b wrote line 1, expected 0",
        ),
        (
            b"a mu: x 0\n\x00\xff\xfe\x01 binary\n",
            &[],
            "line 2: not a scribe line",
        ),
        (b"a mu: x 0\n\n", &[], "line 2: not a scribe line"),
        (b"a mu: x 0\na mu: x", &[], "line 2: torn line"),
        (
            b"a mu: x 0\n",
            &["--count", "2"],
            "writer a has 1 lines, expected 2",
        ),
        (
            b"a mu: x 0\na mu: x 1\n",
            &["--count", "1"],
            "line 2: writer a has more than",
        ),
        (
            b"a mu: x 0\n",
            &["--writers", "2"],
            "found 1 writers, expected 2",
        ),
    ];
    for (content, extra, want) in cases {
        std::fs::write(&file, content).unwrap();
        let out = verify(&env, &file, extra);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{want}: {err}");
        assert!(err.contains(want), "expected {want:?} in {err:?}");
        assert_eq!(err.lines().count(), 1, "one-line error: {err:?}");
    }
    // Random garbage never panics.
    let garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &garbage).unwrap();
    let out = verify(&env, &file, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // A missing file is a one-line error too.
    let out = verify(&env, &env.dir().join("none"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("scribe: cannot read"));
}

/// The shared file is never reached through a symlink (writing or
/// verifying), and a directory is refused: one-line errors, nothing written.
#[test]
fn refuses_symlinks_and_non_files() {
    let env = Env::new();
    let real = env.dir().join("real.txt");
    std::fs::write(&real, b"").unwrap();
    let link = env.dir().join("link.txt");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = run(writer(&env, &link, "a", 3));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is a symlink"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&real).unwrap(), b"");
    let out = verify(&env, &link, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("symlink"));
    let out = run(writer(&env, env.dir(), "a", 3));
    assert_eq!(out.status.code(), Some(1));
    let mut bad = writer(&env, &real, "not an id", 3);
    bad.arg("--fsync");
    assert_eq!(run(bad).status.code(), Some(2));
}

/// Whether the kernel has openat2(2) (Linux 5.6 and later).
fn kernel_has_openat2() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (5, 6)
}

/// A symlink in a parent directory (`DIR/parentlink/file`) cannot redirect
/// the appends either (it used to: only the last component was checked):
/// no component of the path may be a symlink. Nothing is created or written
/// in the link's target, for a new file or an existing one, and `--verify`
/// refuses the path too; the real path works. Needs openat2(2) (Linux 5.6):
/// skipped on older kernels, where only the last component is checked.
#[test]
fn refuses_a_symlink_in_a_parent_directory() {
    if !kernel_has_openat2() {
        eprintln!("kernel without openat2: skipped");
        return;
    }
    let env = Env::new();
    let target = env.dir().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("existing.txt"), b"").unwrap();
    let parentlink = env.dir().join("parentlink");
    std::os::unix::fs::symlink(&target, &parentlink).unwrap();
    for file in ["new.txt", "existing.txt"] {
        let path = parentlink.join(file);
        let out = run(writer(&env, &path, "a", 3));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert_eq!(err.lines().count(), 1, "{file}: one line: {err}");
        assert!(err.contains("symlink"), "{file}: {err}");
    }
    assert!(!target.join("new.txt").exists(), "created through the link");
    assert_eq!(std::fs::read(target.join("existing.txt")).unwrap(), b"");
    // A symlink further up, and a relative spelling, are refused the same way.
    std::fs::create_dir_all(target.join("sub")).unwrap();
    let out = run(writer(&env, &parentlink.join("sub/x.txt"), "a", 1));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!target.join("sub/x.txt").exists());
    let mut rel = writer(&env, Path::new("parentlink/new.txt"), "a", 1);
    rel.current_dir(env.dir());
    let out = run(rel);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!target.join("new.txt").exists());

    let out = verify(&env, &parentlink.join("existing.txt"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("symlink"),
        "{}",
        text(&out.stderr)
    );

    let real = target.join("new.txt");
    let out = run(writer(&env, &real, "a", 3));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(count_by_writer(&real)["a"], 3);
}

/// SIGTERM while a writer holds the lock: it stops after the current line,
/// releases the lock, exits 143, and what it wrote verifies.
#[test]
fn sigterm_stops_a_writer_cleanly() {
    let env = Env::new();
    let file = env.dir().join("shared.txt");
    let mut c = writer(&env, &file, "t", 100);
    c.args(["--hold", "1000s", "--fsync"]);
    let p = Proc::spawn(c);
    wait_until("the first line", || {
        std::fs::read_to_string(&file).is_ok_and(|s| s.contains("t mu:"))
    });
    p.signal(nix::sys::signal::Signal::SIGTERM);
    let out = p.finish();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("interrupted after"));
    let out = verify(&env, &file, &["--writers", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The lock is free again: a new writer gets through.
    assert!(run(writer(&env, &file, "u", 3)).status.success());
}

/// SIGINT to a writer that waits for the lock (another writer holds it for
/// 1000 s): the waiter stops at once, without waiting for the lock and
/// without writing, and exits 130. (A blocking flock(2) is restarted after a
/// signal handler installed with SA_RESTART; the waiter must not be.)
#[test]
fn sigint_stops_a_writer_waiting_for_the_lock() {
    let env = Env::new();
    let file = env.dir().join("shared.txt");
    let mut c = writer(&env, &file, "holder", 5);
    c.args(["--hold", "1000s"]);
    let _holder = Proc::spawn(c);
    wait_until("the holder's first line", || {
        std::fs::read_to_string(&file).is_ok_and(|s| s.contains("holder mu:"))
    });
    let waiter = Proc::spawn(writer(&env, &file, "waiter", 5));
    wait_until("the waiter to wait for the lock", || {
        flock_waiters(&file, &[waiter.pid()]) == 1
    });
    waiter.signal(nix::sys::signal::Signal::SIGINT);
    let out = waiter.finish();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("interrupted after 0 of 5 lines"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(count_by_writer(&file).get("waiter"), None);
}
