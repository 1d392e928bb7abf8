//! End-to-end tests of `discover`: real processes meet through the registry
//! in a private runtime directory, with members killed, stopped, impersonated
//! and registry files vandalised on the way.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

use common::*;
use nix::sys::signal::Signal;

/// `discover --name NAME --as ID --members M [extra...]` as a running child.
fn member(env: &Env, name: &str, id: &str, m: usize, extra: &[&str]) -> Proc {
    let mut c = env.cmd("discover");
    c.args(["--name", name, "--id", id, "--members", &m.to_string()]);
    c.args(extra);
    Proc::spawn(c)
}

/// The live members `--list --json` reports: (id, pid, state), from its
/// `member` lines (after the `group` line).
fn listed(env: &Env, name: &str) -> Vec<(String, i32, String)> {
    let mut c = env.cmd("discover");
    c.args(["--list", "--json", "--name", name]);
    let out = run(c);
    assert!(out.status.success(), "--list: {}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines[0]["event"], "group", "{lines:?}");
    assert_eq!(lines[0]["present"], lines.len() - 1, "{lines:?}");
    lines[1..]
        .iter()
        .map(|v| {
            assert_eq!(v["event"], "member");
            (
                v["id"].as_str().unwrap().to_owned(),
                v["member_pid"].as_i64().unwrap() as i32,
                v["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until `--list` shows exactly `ids` (in its sorted order).
fn wait_listed(env: &Env, name: &str, ids: &[&str]) {
    wait_until(&format!("--list to show {ids:?}"), || {
        let got: Vec<String> = listed(env, name).into_iter().map(|m| m.0).collect();
        got == ids
    });
}

/// Waits until process `pid` sleeps in `poll(2)` (its main thread's wait
/// channel), i.e. it holds no lock and waits for a change.
fn wait_in_poll(pid: i32) {
    wait_until(&format!("pid {pid} to sleep in poll"), || {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if wchan.is_empty() || wchan == "0" {
            // A kernel that hides wait channels: settle for "sleeping".
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            return stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('S');
        }
        wchan.contains("poll")
    });
}

fn registry(env: &Env, name: &str) -> PathBuf {
    env.dir().join(format!("discover.{name}.reg"))
}

fn lockfile(env: &Env, name: &str) -> PathBuf {
    env.dir().join(format!("discover.{name}.lock"))
}

/// Asserts the member exited 0 and printed `ID found: [expected]`.
fn assert_found(out: &Output, id: &str, expected: &str) {
    assert!(
        out.status.success(),
        "{id} failed: {:?} {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), format!("{id} found: [{expected}]\n"));
}

/// Members started one after another in reverse order (each only once the
/// previous one is registered) all print the same naturally sorted list, and
/// the last one out removes the registry and lock files.
#[test]
fn members_in_reverse_order_print_the_same_sorted_list() {
    let env = Env::new();
    let name = unique_name("rev");
    let ids = ["m10", "m9", "m2", "m1"];
    let mut procs = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        procs.push((id, member(&env, &name, id, ids.len(), &[])));
        if k + 1 < ids.len() {
            let mut want: Vec<&str> = ids[..=k].to_vec();
            want.reverse();
            wait_listed(&env, &name, &want);
        }
    }
    for (id, p) in procs {
        assert_found(&p.finish(), id, "m1, m2, m9, m10");
    }
    assert!(!registry(&env, &name).exists(), "registry left behind");
    assert!(!lockfile(&env, &name).exists(), "lock file left behind");
}

/// Sixteen members started at once all meet and print the same 16 ids.
#[test]
fn sixteen_members_meet() {
    let env = Env::new();
    let name = unique_name("sixteen");
    let procs: Vec<Proc> = (0..16)
        .map(|i| member(&env, &name, &format!("p{i}"), 16, &["--timeout", "50s"]))
        .collect();
    let expected: Vec<String> = (0..16).map(|i| format!("p{i}")).collect();
    for (i, p) in procs.into_iter().enumerate() {
        assert_found(&p.finish(), &format!("p{i}"), &expected.join(", "));
    }
    assert!(!registry(&env, &name).exists());
}

/// A member killed with SIGKILL before the group is complete is pruned; a
/// replacement joins under its id and the group completes.
#[test]
fn a_killed_member_is_pruned_and_replaced() {
    let env = Env::new();
    let name = unique_name("kill");
    let a = member(&env, &name, "a", 3, &[]);
    let mut b = member(&env, &name, "b", 3, &[]);
    wait_listed(&env, &name, &["a", "b"]);
    b.kill9();
    b.wait_timeout(HANG);
    wait_listed(&env, &name, &["a"]);
    let b2 = member(&env, &name, "b", 3, &[]);
    wait_listed(&env, &name, &["a", "b"]);
    let c = member(&env, &name, "c", 3, &[]);
    for (id, p) in [("a", a), ("b", b2), ("c", c)] {
        assert_found(&p.finish(), id, "a, b, c");
    }
}

/// The same id twice while its first holder lives is refused (exit 1, a clear
/// message naming the holder); the first holder is undisturbed and meets.
#[test]
fn a_live_id_is_refused() {
    let env = Env::new();
    let name = unique_name("dup");
    let a = member(&env, &name, "a", 2, &[]);
    wait_listed(&env, &name, &["a"]);
    let dup = member(&env, &name, "a", 2, &[]).finish();
    assert_eq!(dup.status.code(), Some(1));
    let err = text(&dup.stderr);
    assert!(
        err.starts_with("discover: id a is already taken by pid ")
            && err.contains(&a.pid().to_string()),
        "{err}"
    );
    let b = member(&env, &name, "b", 2, &[]);
    assert_found(&a.finish(), "a", "a, b");
    assert_found(&b.finish(), "b", "a, b");
}

/// An entry whose pid is alive but belongs to another process (wrong start
/// time: a reused pid) is treated as dead; one with the right start time is
/// a live holder and its id is refused.
#[test]
fn a_reused_pid_is_not_mistaken_for_the_member() {
    let env = Env::new();
    let name = unique_name("reuse");
    let me = std::process::id();
    let start = start_time_of(me);
    let write = |start: u64| {
        std::fs::write(
            registry(&env, &name),
            format!("syncomm-discover registry v1\nmembers 2\ngroup -\nmember a {me} {start} waiting\nend\n"),
        )
        .unwrap();
    };
    // Our own pid with our real start time: a live holder of id a.
    write(start);
    let out = member(&env, &name, "a", 2, &[]).finish();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("taken by pid {me}")));
    // The same pid with another start time: a dead member whose pid was reused.
    write(start + 1);
    let a = member(&env, &name, "a", 2, &[]);
    let b = member(&env, &name, "b", 2, &[]);
    assert_found(&a.finish(), "a", "a, b");
    assert_found(&b.finish(), "b", "a, b");
}

/// `--list` shows the live members with their pids and states, in text and
/// JSON, and "no members" once the group has left.
#[test]
fn list_shows_the_live_members() {
    let env = Env::new();
    let name = unique_name("list");
    let b = member(&env, &name, "b", 3, &[]);
    let a = member(&env, &name, "a", 3, &[]);
    wait_listed(&env, &name, &["a", "b"]);
    let l = listed(&env, &name);
    assert_eq!(l[0], ("a".to_owned(), a.pid(), "waiting".to_owned()));
    assert_eq!(l[1], ("b".to_owned(), b.pid(), "waiting".to_owned()));
    let mut c = env.cmd("discover");
    c.args(["--list", "--name", &name]);
    let out = text(&run(c).stdout);
    assert!(
        out.starts_with(&format!("{name}: 2 of 3 members present")),
        "{out}"
    );
    assert!(
        out.contains(&format!("a\tpid {}\twaiting", a.pid())),
        "{out}"
    );
    let c3 = member(&env, &name, "c", 3, &[]);
    for (id, p) in [("a", a), ("b", b), ("c", c3)] {
        assert_found(&p.finish(), id, "a, b, c");
    }
    let mut c = env.cmd("discover");
    c.args(["--list", "--name", &name]);
    assert_eq!(text(&run(c).stdout), format!("{name}: no members\n"));
}

/// The barrier: once the group is complete, members that have seen it stay
/// registered while another member has not yet (it is stopped with SIGSTOP);
/// when it resumes, all leave with the same list. A member killed at that
/// point does not hold the others up.
#[test]
fn the_barrier_holds_members_until_all_have_seen_the_group() {
    for kill in [false, true] {
        let env = Env::new();
        let name = unique_name("barrier");
        let a = member(&env, &name, "a", 3, &[]);
        let b = member(&env, &name, "b", 3, &[]);
        wait_listed(&env, &name, &["a", "b"]);
        wait_in_poll(b.pid());
        b.signal(Signal::SIGSTOP);
        let c = member(&env, &name, "c", 3, &[]);
        wait_until("a and c to have seen the group", || {
            let states: Vec<String> = listed(&env, &name).into_iter().map(|m| m.2).collect();
            states == ["seen", "waiting", "seen"]
        });
        let (mut a, mut c) = (a, c);
        assert!(
            a.is_running() && c.is_running(),
            "a member left before b saw the group"
        );
        if kill {
            b.kill9();
        } else {
            b.signal(Signal::SIGCONT);
            assert_found(&b.finish(), "b", "a, b, c");
        }
        assert_found(&a.finish(), "a", "a, b, c");
        assert_found(&c.finish(), "c", "a, b, c");
        assert!(!registry(&env, &name).exists());
    }
}

/// `--timeout` ends the wait with exit 1 and a message saying who was
/// missing, and the member's entry is removed; SIGINT and SIGTERM remove the
/// entry too and exit 128+N, as the other programs do.
#[test]
fn timeout_exits_1_and_signals_exit_128_plus_n_and_remove_the_entry() {
    let env = Env::new();
    let name = unique_name("timeout");
    let b = member(&env, &name, "b", 3, &[]);
    wait_listed(&env, &name, &["b"]);
    let out = member(&env, &name, "a", 3, &["--timeout", "300ms"]).finish();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("discover: timed out after 300ms: only 2 of 3 members"),
        "{err}"
    );
    assert!(err.contains("(a, b)"), "{err}");
    wait_listed(&env, &name, &["b"]);

    b.signal(Signal::SIGINT);
    let out = b.finish();
    assert_eq!(out.status.code(), Some(130));
    assert!(text(&out.stderr).starts_with("discover: interrupted by SIGINT"));
    assert!(
        !registry(&env, &name).exists(),
        "entry not removed on SIGINT"
    );
    assert!(!lockfile(&env, &name).exists());

    let c = member(&env, &name, "c", 3, &[]);
    wait_listed(&env, &name, &["c"]);
    c.signal(Signal::SIGTERM);
    let out = c.finish();
    assert_eq!(out.status.code(), Some(143));
    assert!(text(&out.stderr).starts_with("discover: interrupted by SIGTERM"));
    assert!(
        !registry(&env, &name).exists(),
        "entry not removed on SIGTERM"
    );
}

/// A group that has left makes room for a later group of another size under
/// the same name; a member asking for a different size than the group now
/// waiting is refused with the size it has. (`--json` prints the group as JSON.)
#[test]
fn later_groups_and_size_mismatch() {
    let env = Env::new();
    let name = unique_name("later");
    let x = member(&env, &name, "x", 2, &[]);
    let y = member(&env, &name, "y", 2, &["--json"]);
    assert_found(&x.finish(), "x", "x, y");
    let out = y.finish();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(v["event"], "found");
    assert_eq!(v["id"], "y");
    assert_eq!(v["found"], serde_json::json!(["x", "y"]));
    let a = member(&env, &name, "a", 3, &[]);
    wait_listed(&env, &name, &["a"]);
    let out = member(&env, &name, "z", 2, &[]).finish();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("waiting for 3 members, not 2"),
        "{}",
        text(&out.stderr)
    );
    let b = member(&env, &name, "b", 3, &[]);
    let c = member(&env, &name, "c", 3, &[]);
    for (id, p) in [("a", a), ("b", b), ("c", c)] {
        assert_found(&p.finish(), id, "a, b, c");
    }
}

/// A registry full of garbage (text, binary, or cut short) is moved aside to
/// `.reg.corrupt` with a one-line notice, and the group meets; `--list` on
/// garbage is a clear error; garbage in the lock file does not matter (only
/// its `flock` counts). Never a panic or a hang.
#[test]
fn a_garbage_registry_is_repaired() {
    for garbage in [
        &b"hello\nworld\n"[..],
        &[0xff, 0x00, 0x13, 0x37, 0xfe][..],
        &b"syncomm-discover registry v1\nmembers 2\n"[..],
    ] {
        let env = Env::new();
        let name = unique_name("garbage");
        std::fs::write(registry(&env, &name), garbage).unwrap();
        std::fs::write(lockfile(&env, &name), garbage).unwrap();
        let mut c = env.cmd("discover");
        c.args(["--list", "--name", &name]);
        let out = run(c);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).starts_with("discover: registry: cannot parse"),
            "{}",
            text(&out.stderr)
        );

        let a = member(&env, &name, "a", 2, &[]);
        let b = member(&env, &name, "b", 2, &[]);
        let (oa, ob) = (a.finish(), b.finish());
        assert_found(&oa, "a", "a, b");
        assert_found(&ob, "b", "a, b");
        let notices = text(&oa.stderr) + &text(&ob.stderr);
        assert_eq!(notices.matches("was corrupt").count(), 1, "{notices}");
        let kept = env.dir().join(format!("discover.{name}.reg.corrupt"));
        assert_eq!(std::fs::read(kept).unwrap(), garbage);
        assert!(!notices.contains("panicked"));
    }
}

/// Registry or lock files that are symlinks, FIFOs or directories are refused
/// with a clear one-line error (exit 1), never followed and never a hang; an
/// unreadable registry is a clear error too.
#[test]
fn hostile_registry_and_lock_files_are_refused() {
    let env = Env::new();
    let target = env.dir().join("victim");
    std::fs::write(&target, b"precious\n").unwrap();
    for (which, kind, says) in [
        ("reg", "symlink", "is a symlink"),
        ("lock", "symlink", "is a symlink"),
        ("reg", "fifo", "is a FIFO"),
        ("lock", "fifo", "is a FIFO"),
        ("reg", "dir", "is a directory"),
        ("lock", "dir", "is a directory"),
    ] {
        let name = unique_name("hostile");
        let path = if which == "reg" {
            registry(&env, &name)
        } else {
            lockfile(&env, &name)
        };
        match kind {
            "symlink" => std::os::unix::fs::symlink(&target, &path).unwrap(),
            "fifo" => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap(),
            _ => std::fs::create_dir(&path).unwrap(),
        }
        let out = member(&env, &name, "a", 1, &["--timeout", "20s"]).finish();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{which}: {err}");
        assert!(
            err.starts_with("discover: registry: ") && err.contains(says),
            "{which}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"precious\n",
        "a symlink was followed"
    );

    // Unreadable: chmod 000 only stops a process without CAP_DAC_OVERRIDE.
    if nix::unistd::geteuid().is_root() {
        eprintln!("skipping the chmod 000 sub-case: running as root, which reads any file (the directory and FIFO cases above cover an unreadable registry as root)");
        return;
    }
    let name = unique_name("unreadable");
    let path = registry(&env, &name);
    std::fs::write(&path, b"x").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = member(&env, &name, "a", 1, &[]).finish();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );
}

/// Bad names, ids, sizes and durations are usage errors: exit 2, one line.
#[test]
fn bad_arguments_exit_2() {
    let env = Env::new();
    for args in [
        &["--name", "a/b", "--id", "x", "--members", "2"][..],
        &["--name", "..", "--list"],
        &["--id", "x y", "--members", "2"],
        &["--id", "", "--members", "2"],
        &["--id", "x", "--members", "0"],
        &["--id", "x", "--members", "5000"],
        &["--id", "x", "--members", "2", "--timeout", "soon"],
        &["--members", "2"],
    ] {
        let mut c = env.cmd("discover");
        c.args(args);
        let out = run(c);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

/// A process that holds the registry lock and never lets go (as a member
/// stopped with SIGSTOP mid-update would) cannot keep a member past its
/// `--timeout` (exit 1), nor past SIGINT (exit 130): both name the holder. Once the lock
/// is free the group meets.
#[test]
fn a_stuck_lock_holder_does_not_hang_members() {
    use nix::fcntl::{Flock, FlockArg};
    let env = Env::new();
    let name = unique_name("stuck");
    let file = std::fs::File::create(lockfile(&env, &name)).unwrap();
    let held = Flock::lock(file, FlockArg::LockExclusive).expect("flock");
    let me = std::process::id();

    let out = member(&env, &name, "a", 2, &["--timeout", "300ms"]).finish();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("discover: timed out after 300ms: the registry lock"),
        "{err}"
    );
    assert!(err.contains(&format!("held by pid {me}")), "{err}");

    let a = member(&env, &name, "a", 2, &[]);
    let lock = lockfile(&env, &name);
    // While the test holds the lock, a member with the lock file open waits
    // for it (non-blocking attempts paced by poll(2): /proc/locks lists no
    // blocked request).
    wait_until("a to wait for the lock", || has_open(a.pid(), &lock));
    a.signal(Signal::SIGINT);
    let out = a.finish();
    assert_eq!(out.status.code(), Some(130));
    assert!(text(&out.stderr).starts_with("discover: interrupted by SIGINT: the registry lock"));

    drop(held);
    let a = member(&env, &name, "a", 2, &[]);
    let b = member(&env, &name, "b", 2, &[]);
    assert_found(&a.finish(), "a", "a, b");
    assert_found(&b.finish(), "b", "a, b");
}

/// A member that arrives while a complete group is still finishing (one of its
/// members, stopped, has not yet seen it) does not slip into that group: it
/// waits, and forms the next group under the same name with later arrivals.
#[test]
fn a_newcomer_waits_for_the_next_group() {
    let env = Env::new();
    let name = unique_name("next");
    let a = member(&env, &name, "a", 3, &[]);
    let b = member(&env, &name, "b", 3, &[]);
    wait_listed(&env, &name, &["a", "b"]);
    wait_in_poll(b.pid());
    b.signal(Signal::SIGSTOP);
    let c = member(&env, &name, "c", 3, &[]);
    wait_until("a and c to have seen the group", || {
        let states: Vec<String> = listed(&env, &name).into_iter().map(|m| m.2).collect();
        states == ["seen", "waiting", "seen"]
    });
    let d = member(&env, &name, "d", 3, &[]);
    wait_in_poll(d.pid());
    wait_listed(&env, &name, &["a", "b", "c"]);
    b.signal(Signal::SIGCONT);
    for (id, p) in [("a", a), ("b", b), ("c", c)] {
        assert_found(&p.finish(), id, "a, b, c");
    }
    let e = member(&env, &name, "e", 3, &[]);
    let f = member(&env, &name, "f", 3, &[]);
    for (id, p) in [("d", d), ("e", e), ("f", f)] {
        assert_found(&p.finish(), id, "d, e, f");
    }
}

/// Chaos: while a group of 6 forms, members are killed with SIGKILL at random
/// moments (often in the middle of joining, i.e. while writing the registry)
/// and replaced under the same id. The registry is never left corrupt, once
/// the sixth member arrives all six print the same list, and afterwards the
/// runtime directory is empty (no registry, lock or stray temp file).
#[test]
fn sigkill_at_random_moments_never_corrupts_the_registry() {
    use rand::Rng;
    let env = Env::new();
    let name = unique_name("chaos");
    let mut rng = rand::thread_rng();
    let mut procs: Vec<Proc> = (0..5)
        .map(|i| member(&env, &name, &format!("m{i}"), 6, &[]))
        .collect();
    for _ in 0..40 {
        // Not synchronisation: a random delay so kills land in every phase
        // (starting up, joining, writing the registry, waiting).
        std::thread::sleep(std::time::Duration::from_micros(rng.gen_range(0..3000)));
        let i = rng.gen_range(0..5);
        procs[i].kill9();
        procs[i].wait_timeout(HANG);
        procs[i] = member(&env, &name, &format!("m{i}"), 6, &[]);
    }
    procs.push(member(&env, &name, "m5", 6, &[]));
    for (i, p) in procs.into_iter().enumerate() {
        let out = p.finish();
        assert!(
            !text(&out.stderr).contains("corrupt"),
            "{}",
            text(&out.stderr)
        );
        assert_found(&out, &format!("m{i}"), "m0, m1, m2, m3, m4, m5");
    }
    let left: Vec<_> = std::fs::read_dir(env.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "left behind (a .corrupt file means a torn registry): {left:?}"
    );
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`).
fn start_time_of(pid: u32) -> u64 {
    syncomm_sys::proc::start_time(pid as i32).unwrap().unwrap()
}

/// Under a descriptor limit far too low for a pidfd per member
/// (`prlimit --nofile=24`, hard limit too, so it cannot be raised), 20
/// members started at once all meet and print the same list, and nothing is
/// left behind. (Before: a member that ran out of descriptors took the
/// members it could not check for dead and pruned them; most failed with
/// "our entry vanished" or a timeout.)
#[test]
fn twenty_members_meet_under_a_descriptor_limit_of_24() {
    let env = Env::new();
    let name = unique_name("nofile");
    let mut procs = Vec::new();
    for i in 0..20 {
        let Some(mut c) = under_nofile_limit(&env, 24, "discover") else {
            return;
        };
        let id = format!("p{i}");
        c.args(["--name", &name, "--id", &id, "--members", "20"]);
        c.args(["--timeout", "50s"]);
        procs.push((id, Proc::spawn(c)));
    }
    let expected: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    let expected = expected.join(", ");
    for (id, p) in procs {
        let out = p.finish();
        assert_found(&out, &id, &expected);
        // The only notice allowed: no inotify instance left (a per-user
        // limit other programs share), which discover survives by polling.
        let err = text(&out.stderr);
        assert!(
            err.lines().all(|l| l.contains("cannot watch")),
            "{id}: {err}"
        );
    }
    assert!(!registry(&env, &name).exists(), "registry left behind");
    assert!(!lockfile(&env, &name).exists(), "lock file left behind");
}

/// The lock file is not left behind when two members race to clear a
/// finished group (the cause of a stray `discover.NAME.lock` in 3 of 150
/// rounds): a, b and c form a group, b (stopped) has not seen it, and the
/// test holds the registry lock. b is killed; a and c both find it dead,
/// see that the group is then finished and queue for the lock to clear it.
/// When the lock is released, the first clears the registry and removes the
/// lock file; the second then re-created the lock file, found no registry,
/// and left. Now both print the group and the directory is empty.
#[test]
fn racing_to_clear_a_finished_group_leaves_no_lock_file() {
    use nix::fcntl::{Flock, FlockArg};
    for _round in 0..3 {
        let env = Env::new();
        let name = unique_name("clear");
        let a = member(&env, &name, "a", 3, &[]);
        let b = member(&env, &name, "b", 3, &[]);
        wait_listed(&env, &name, &["a", "b"]);
        wait_in_poll(b.pid());
        b.signal(Signal::SIGSTOP);
        let c = member(&env, &name, "c", 3, &[]);
        wait_until("a and c to have seen the group", || {
            let states: Vec<String> = listed(&env, &name).into_iter().map(|m| m.2).collect();
            states == ["seen", "waiting", "seen"]
        });
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(lockfile(&env, &name))
            .unwrap();
        let held = Flock::lock(file, FlockArg::LockExclusive).expect("flock");
        b.kill9();
        let mut b = b;
        b.wait_timeout(HANG);
        let lock = lockfile(&env, &name);
        wait_until("a and c to queue for the lock", || {
            has_open(a.pid(), &lock) && has_open(c.pid(), &lock)
        });
        drop(held);
        assert_found(&a.finish(), "a", "a, b, c");
        assert_found(&c.finish(), "c", "a, b, c");
        let left: Vec<_> = std::fs::read_dir(env.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

/// Registry and lock files owned by another user (uid 65534, as root can
/// plant them) are refused with one line (exit 1) and left untouched, even
/// though we run as root and could read and replace them; `--list` refuses
/// a foreign registry too. (Only runs as root: nobody else can chown.)
#[test]
fn files_of_another_user_are_refused() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot plant files of another user; skipped");
        return;
    }
    let env = Env::new();
    let me = std::process::id();
    let foreign = |path: &std::path::Path, content: &str| {
        std::fs::write(path, content).unwrap();
        std::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    };
    // A well-formed registry naming a live process (this test) as member x.
    let reg_text = format!(
        "syncomm-discover registry v1\nmembers 2\ngroup -\nmember x {me} {} waiting\nend\n",
        start_time_of(me)
    );
    for which in ["reg", "lock"] {
        let name = unique_name("foreign");
        let path = if which == "reg" {
            registry(&env, &name)
        } else {
            lockfile(&env, &name)
        };
        let content = if which == "reg" {
            reg_text.as_str()
        } else {
            ""
        };
        foreign(&path, content);
        let out = member(&env, &name, "a", 2, &["--timeout", "20s"]).finish();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{which}: {err}");
        assert!(
            err.starts_with("discover: registry: ") && err.contains("owned by uid 65534"),
            "{which}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let meta = std::fs::symlink_metadata(&path).expect("the foreign file is still there");
        assert_eq!(meta.uid(), 65534);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
        if which == "reg" {
            let mut c = env.cmd("discover");
            c.args(["--list", "--name", &name]);
            let out = run(c);
            assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
            assert!(text(&out.stderr).contains("owned by uid 65534"));
        }
        std::fs::remove_file(&path).unwrap();
    }
}
