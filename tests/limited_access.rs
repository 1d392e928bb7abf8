//! limited-access: `gate`, a counting semaphore for processes whose slots
//! the kernel gives back when a holder dies.
mod common;

use std::collections::HashSet;
use std::process::Command;

use common::*;

/// A semaphore name in a private runtime directory; `gate --remove` on drop,
/// so no System V set outlives the test. Declare it before the processes, so
/// that they are killed (dropped) first.
struct Sem {
    env: Env,
    name: String,
}

impl Sem {
    fn new() -> Sem {
        Sem {
            env: Env::new(),
            name: unique_name("gate"),
        }
    }

    /// `gate --name NAME ARGS...`
    fn gate(&self, args: &[&str]) -> Command {
        let mut c = self.env.cmd("gate");
        c.args(["--name", &self.name]).args(args);
        c
    }

    /// `gate --status --json`, parsed.
    fn status(&self) -> serde_json::Value {
        let out = run(self.gate(&["--status", "--json"]));
        assert!(out.status.success(), "status: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    fn wait_for_waiters(&self, n: u64) {
        wait_until(&format!("{n} waiting"), || self.status()["waiting"] == n);
    }

    /// A holder that says `in` once it holds a slot and then holds it (as
    /// the same process, via exec) until killed.
    fn holder(&self, slots: &str) -> Proc {
        let mut p = Proc::spawn(self.gate(&[
            "--slots",
            slots,
            "--",
            "sh",
            "-c",
            "echo in; exec sleep 1000",
        ]));
        let lines = p.stdout_lines();
        assert_eq!(lines.next_line().as_deref(), Some("in"));
        p
    }

    fn sem_file(&self) -> std::path::PathBuf {
        self.env.dir().join(format!("gate.{}.sem", self.name))
    }
}

impl Drop for Sem {
    fn drop(&mut self) {
        let _ = run(self.gate(&["--remove"]));
    }
}

/// Ten gates over three slots, each command recording when it enters and
/// leaves: replaying the record, never more than three were inside at once,
/// and all ten ran.
#[test]
fn never_more_holders_than_slots() {
    let sem = Sem::new();
    let log = sem.env.dir().join("occupancy.log");
    let script = format!(
        "echo enter $$ >> '{0}'; sleep 0.2; echo exit $$ >> '{0}'",
        log.display()
    );
    let procs: Vec<Proc> = (0..10)
        .map(|_| Proc::spawn(sem.gate(&["--slots", "3", "--", "sh", "-c", &script])))
        .collect();
    for p in procs {
        let out = p.finish();
        assert!(out.status.success(), "gate failed: {}", text(&out.stderr));
    }
    let record = std::fs::read_to_string(&log).unwrap();
    let (mut inside, mut most, mut entered) = (HashSet::new(), 0, 0);
    for line in record.lines() {
        match line.split_once(' ') {
            Some(("enter", pid)) => {
                assert!(inside.insert(pid.to_owned()), "{pid} entered twice");
                entered += 1;
                most = most.max(inside.len());
            }
            Some(("exit", pid)) => assert!(inside.remove(pid), "{pid} left without entering"),
            _ => panic!("bad record line {line:?}"),
        }
    }
    assert!(most <= 3, "{most} inside at once:\n{record}");
    assert_eq!(entered, 10, "{record}");
    assert!(inside.is_empty());
    assert_eq!(sem.status()["free"], 3);
}

/// A holder killed with SIGKILL (it would hold for 1000 s): the kernel gives
/// its slot back and the blocked waiter gets in.
#[test]
fn killed_holder_frees_its_slot_at_once() {
    let sem = Sem::new();
    let holder = sem.holder("1");
    let mut waiter = Proc::spawn(sem.gate(&["--", "sh", "-c", "echo waiter in"]));
    let lines = waiter.stdout_lines();
    sem.wait_for_waiters(1);
    holder.kill9();
    assert_eq!(lines.next_line().as_deref(), Some("waiter in"));
    assert!(waiter.finish().status.success());
    assert_eq!(sem.status()["free"], 1);
}

/// `--timeout` gives up with its own exit status (75, EX_TEMPFAIL; `-E N`
/// chooses another, like flock -E) and a message saying why; `--timeout 0`
/// tries once. A command's own failure keeps its status.
#[test]
fn timeout_gives_up_with_a_clear_message() {
    let sem = Sem::new();
    let _holder = sem.holder("1");
    let out = run(sem.gate(&["--timeout", "300ms", "--", "true"]));
    assert_eq!(out.status.code(), Some(75));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "gate: timed out after 300ms waiting for a slot of {} (1 slot, all held; runtime directory {})",
            sem.name,
            sem.env.dir().display()
        )
    );
    let out = run(sem.gate(&["--timeout", "0", "--", "true"]));
    assert_eq!(out.status.code(), Some(75));
    let out = run(sem.gate(&["-E", "9", "--timeout", "0", "--", "true"]));
    assert_eq!(out.status.code(), Some(9), "{}", text(&out.stderr));
    let out = run(sem.gate(&["--conflict-exit-code", "0", "--", "true"]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "-E 0 is refused: {}",
        text(&out.stderr)
    );
    drop(_holder);
    let out = run(sem.gate(&["-E", "9", "--timeout", "5s", "--", "sh", "-c", "exit 1"]));
    assert_eq!(out.status.code(), Some(1), "the command's own status");
}

/// While the semaphore exists, a different `--slots` is a usage error that
/// says the current count; the same count is fine.
#[test]
fn different_slot_count_is_refused_naming_the_current_one() {
    let sem = Sem::new();
    let _holder = sem.holder("2");
    let out = run(sem.gate(&["--slots", "4", "--", "true"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("has 2 slots, not 4"), "{err}");
    assert!(run(sem.gate(&["--slots", "2", "--", "true"]))
        .status
        .success());
    assert!(run(sem.gate(&["--", "true"])).status.success());
}

/// `--status` names each holder's pid and command and counts the waiters.
#[test]
fn status_shows_holders_and_waiters() {
    let sem = Sem::new();
    let a = sem.holder("2");
    let b = sem.holder("2");
    let _w1 = Proc::spawn(sem.gate(&["--", "true"]));
    let _w2 = Proc::spawn(sem.gate(&["--", "true"]));
    sem.wait_for_waiters(2);
    let st = sem.status();
    assert_eq!(st["slots"], 2);
    assert_eq!(st["free"], 0);
    let pids: HashSet<i64> = st["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(pids, HashSet::from([a.pid() as i64, b.pid() as i64]));
    let out = run(sem.gate(&["--status"]));
    let human = text(&out.stdout);
    assert!(
        human.contains("2 slots, 2 held, 0 free, 2 waiting"),
        "{human}"
    );
    assert!(
        human.contains(&format!("pid {} (sleep 1000)", a.pid())),
        "{human}"
    );
    // An idle semaphore refuses nothing; a missing one is exit 1.
    let other = Sem::new();
    assert_eq!(run(other.gate(&["--status"])).status.code(), Some(1));
}

/// gate becomes COMMAND: its exit status is the command's, a command killed
/// by a signal shows as killed by that signal, a missing command is 127.
#[test]
fn exit_status_is_the_commands() {
    let sem = Sem::new();
    let out = run(sem.gate(&["--", "sh", "-c", "exit 7"]));
    assert_eq!(out.status.code(), Some(7));
    let out = run(sem.gate(&["--", "sh", "-c", "kill -TERM $$"]));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(15));
    let out = run(sem.gate(&["--", "no-such-command-here"]));
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).starts_with("gate: cannot run no-such-command-here"));
    // None of them kept its slot.
    assert_eq!(sem.status()["free"], 3);
}

/// Without a command, gate plays the seed's demonstration lines.
#[test]
fn demo_prints_the_seed_lines() {
    let sem = Sem::new();
    let out = run(sem.gate(&["--id", "7", "--hold", "10ms"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "7 starting critical section\n7 finished critical section\n"
    );
}

/// SIGTERM to a waiting gate ends it (143) and it no longer waits; SIGTERM
/// to a demo holder releases its slot.
#[test]
fn sigterm_while_waiting_or_holding_releases() {
    let sem = Sem::new();
    let mut demo = Proc::spawn(sem.gate(&["--slots", "1", "--id", "d", "--hold", "1000s"]));
    let lines = demo.stdout_lines();
    assert_eq!(
        lines.next_line().as_deref(),
        Some("d starting critical section")
    );
    let waiter = Proc::spawn(sem.gate(&["--", "true"]));
    sem.wait_for_waiters(1);
    waiter.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(waiter.finish().status.code(), Some(143));
    assert_eq!(sem.status()["waiting"], 0);
    demo.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(demo.finish().status.code(), Some(143));
    assert_eq!(sem.status()["free"], 1);
}

/// Runtime files that are garbage, symlinks or directories give a one-line
/// error (exit 1) at once; a stale file naming a set that no longer exists
/// is repaired.
#[test]
fn bad_runtime_files_are_reported_or_repaired() {
    let sem = Sem::new();
    let path = sem.sem_file();
    let expect_error = |want: &str| {
        let out = run(sem.gate(&["--timeout", "5s", "--", "true"]));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "expected {want:?} in {err:?}");
        assert_eq!(err.lines().count(), 1);
    };
    std::fs::write(&path, b"\x00\xffnot a key at all").unwrap();
    expect_error("is not a gate file");
    std::fs::write(&path, b"syncomm-gate 1 key=-5\n").unwrap();
    expect_error("is not a gate file");
    std::fs::remove_file(&path).unwrap();
    let target = sem.env.dir().join("elsewhere");
    std::fs::write(&target, b"").unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    expect_error("is a symlink");
    assert_eq!(std::fs::read(&target).unwrap(), b"");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    expect_error("is not a regular file");
    std::fs::remove_dir(&path).unwrap();
    // Unreadable (meaningful only when not root: root reads anything).
    if !nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        expect_error("Permission denied");
        std::fs::remove_file(&path).unwrap();
    }
    // Stale: a well-formed key whose set is gone (as after a reboot).
    std::fs::write(&path, b"syncomm-gate 1 key=2147483000\n").unwrap();
    let out = run(sem.gate(&["--slots", "2", "--", "true"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(sem.status()["slots"], 2);
}

/// The System V semaphore sets as `(key, semid)`, from `ipcs -s`.
fn sem_sets() -> Vec<(String, String)> {
    let mut c = Command::new("ipcs");
    c.arg("-s");
    let out = run(c);
    text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("0x"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[1].to_owned())
        })
        .collect()
}

/// A gate killed between creating its set and initialising it (`semget`
/// done, the key written, `SETALL` not yet) leaves a set of zeros under the
/// key in the runtime file. The next gate repairs the name and removes that
/// half-made set instead of leaking it until the next reboot.
#[test]
fn a_half_made_set_is_removed_not_leaked() {
    let sem = Sem::new();
    // The state such a gate leaves: a fresh set of 3 slots + 2 (all 0),
    // under a key gate could have drawn (ipcmk draws any 32 bits; gate 31).
    let (key, semid) = loop {
        let mut c = Command::new("ipcmk");
        c.args(["-S", "5", "-p", "0600"]);
        let out = run(c);
        assert!(out.status.success(), "ipcmk: {}", text(&out.stderr));
        let semid = text(&out.stdout)
            .split_whitespace()
            .last()
            .unwrap()
            .to_owned();
        let (key, _) = sem_sets()
            .into_iter()
            .find(|(_, id)| *id == semid)
            .expect("the new set in ipcs -s");
        let key = u32::from_str_radix(key.trim_start_matches("0x"), 16).unwrap();
        if key <= 0x7fff_ffff {
            break (key, semid);
        }
        let mut c = Command::new("ipcrm");
        c.args(["-s", &semid]);
        run(c);
    };
    std::fs::write(sem.sem_file(), format!("syncomm-gate 1 key={key}\n")).unwrap();

    let out = run(sem.gate(&["--slots", "2", "--", "true"]));
    let removed = !sem_sets().iter().any(|(_, id)| *id == semid);
    if !removed {
        let mut c = Command::new("ipcrm");
        c.args(["-s", &semid]);
        run(c);
    }
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(removed, "the half-made set {semid} was leaked");
    assert_eq!(sem.status()["slots"], 2);
}

/// `gate --remove` refuses while a slot is held, and removes an idle
/// semaphore (after which a new one can be made with another count).
#[test]
fn remove_only_when_idle() {
    let sem = Sem::new();
    let holder = sem.holder("2");
    let out = run(sem.gate(&["--remove"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("in use (1 of 2 slots held"));
    holder.kill9();
    drop(holder);
    let out = run(sem.gate(&["--remove"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!sem.sem_file().exists());
    assert!(run(sem.gate(&["--slots", "5", "--", "true"]))
        .status
        .success());
    assert_eq!(sem.status()["slots"], 5);
}

/// A runtime file owned by another user (uid 65534, planted by root) is
/// refused with one line (exit 1) by a taking gate, `--status` and
/// `--remove` alike, and left untouched — even though we run as root and
/// could read it, and before would have "repaired" it by writing a key of
/// our own into it. (Only runs as root: nobody else can chown.)
#[test]
fn a_runtime_file_of_another_user_is_refused() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot plant a file of another user; skipped");
        return;
    }
    let sem = Sem::new();
    let path = sem.sem_file();
    let content = "syncomm-gate 1 key=2147483001\n";
    std::fs::write(&path, content).unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    for args in [
        &["--timeout", "5s", "--", "true"][..],
        &["--status"],
        &["--remove"],
    ] {
        let out = run(sem.gate(args));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("is owned by uid 65534"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.uid(), 65534);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
    // Hand the file back to us, so that Sem's `gate --remove` cleans up
    // whatever an unfixed gate may have created.
    std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
}

/// Issue 13 item 1: a process that holds the runtime file's lock and never
/// lets go (a gate stopped with SIGSTOP while it opens the set would) cannot
/// keep a waiting `gate` past its `--timeout` (exit 75, naming the holder),
/// nor past SIGTERM (exit 143). The wait used to be a blocking `flock(2)`
/// retried after every signal: both hung until the holder let go.
#[test]
fn a_stuck_runtime_file_lock_does_not_hang_gate() {
    use nix::fcntl::{Flock, FlockArg};
    let sem = Sem::new();
    let _holder = sem.holder("1");
    let file = std::fs::File::open(sem.sem_file()).unwrap();
    let held = Flock::lock(file, FlockArg::LockExclusive).expect("flock");

    let mut timed = Proc::spawn(sem.gate(&["--timeout", "300ms", "--", "true"]));
    let status = timed.wait_timeout(std::time::Duration::from_secs(20));
    let out = timed.finish();
    assert_eq!(status.code(), Some(75), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.starts_with("gate: timed out after 300ms"), "{err}");
    assert!(
        err.contains(&format!("held by pid {}", std::process::id())),
        "{err}"
    );

    let waiter = Proc::spawn(sem.gate(&["--", "true"]));
    let sem_file = sem.sem_file();
    wait_until("the waiter to open the runtime file", || {
        has_open(waiter.pid(), &sem_file)
    });
    waiter.signal(nix::sys::signal::Signal::SIGTERM);
    let mut waiter = waiter;
    let status = waiter.wait_timeout(std::time::Duration::from_secs(20));
    assert_eq!(status.code(), Some(143));
    drop(held);
}
