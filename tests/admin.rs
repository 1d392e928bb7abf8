//! `syncomm ls|clean|top` on the real binaries: every object kind appears
//! with the right state while live, after `kill -9` and after its runtime
//! directory is deleted; `clean` removes exactly the stale and orphaned
//! objects and never a live one; `top` shows live objects and rates in a real
//! terminal (tmux) and as JSON lines otherwise; the leak check finds what a
//! run left.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `clean` and the orphan listing are system-wide for orphans (objects whose
/// runtime directory is gone): the tests of this file run one at a time so
/// that one test's clean does not remove another's orphans under its eyes.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `syncomm ls --json` in `env`: the header and the objects.
fn ls(env: &Env) -> (Value, Vec<Value>) {
    let out = run({
        let mut c = env.cmd("syncomm");
        c.args(["ls", "--json"]);
        c
    });
    assert!(out.status.success(), "ls failed: {}", text(&out.stderr));
    let mut lines = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect::<Vec<_>>();
    let head = lines.remove(0);
    (head, lines)
}

/// The state of object `kind`/`name` as `ls` shows it ("absent" if not listed).
fn state_of(objects: &[Value], kind: &str, name: &str) -> String {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["name"] == name)
        .map_or("absent".into(), |o| o["state"].as_str().unwrap().to_owned())
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not listed in {objects:#?}"))
}

fn wait_state(env: &Env, kind: &str, name: &str, want: &str) {
    wait_until(&format!("{kind} {name} {want}"), || {
        state_of(&ls(env).1, kind, name) == want
    });
}

fn clean(env: &Env, extra: &[&str]) -> std::process::Output {
    let mut c = env.cmd("syncomm");
    c.arg("clean").args(extra);
    run(c)
}

/// The participants of every kind, started in `env`.
struct Crowd {
    producer: Proc,
    gate: Proc,
    discover: Proc,
    worker: Proc,
    ping: Proc,
}

fn start_crowd(env: &Env, n: &str) -> Crowd {
    let spawn = |prog: &str, args: &[&str]| {
        let mut c = env.cmd(prog);
        c.args(args).stdin(Stdio::null());
        Proc::spawn(c)
    };
    let crowd = Crowd {
        producer: spawn("producer", &["--name", n, "--interval", "5ms"]),
        gate: spawn("gate", &["--name", n, "--slots", "2", "--", "sleep", "60"]),
        discover: spawn(
            "discover",
            &[
                "--name",
                n,
                "--id",
                "a",
                "--members",
                "2",
                "--timeout",
                "60s",
            ],
        ),
        worker: spawn("worker", &["serve", "--name", n, "--workers", "1"]),
        ping: spawn("ping-server", &["--no-tcp", "--local", n, "-q"]),
    };
    for kind in ["board", "gate", "discover", "worker", "ping"] {
        wait_until(&format!("{kind} live"), || {
            let (_, objs) = ls(env);
            state_of(&objs, kind, n) == "live"
                && (kind != "gate" || object(&objs, kind, n)["info"]["held"] == 1)
        });
    }
    crowd
}

/// Every kind is listed live with its figures; after kill -9 the board,
/// discover group, worker pool and ping server are stale (the gate's slot was
/// given back by the kernel: its named set stays, live and idle); after the
/// runtime directory is deleted the board segment and gate set are orphans,
/// traced by their record; `clean` removes them and exits 0.
#[test]
fn every_kind_live_then_stale_then_orphan_then_cleaned() {
    let _s = serial();
    let env = Env::new();
    let n = unique_name("k");
    let crowd = start_crowd(&env, &n);
    let (head, objs) = ls(&env);
    assert_eq!(head["event"], "dir");
    assert_eq!(head["dir_source"], "syncomm_dir");
    assert_eq!(Path::new(head["dir"].as_str().unwrap()), env.dir());
    let board = object(&objs, "board", &n);
    assert_eq!(board["event"], "object");
    assert_eq!(board["owner_pid"], crowd.producer.pid());
    assert_eq!(board["info"]["producer_pid"], crowd.producer.pid());
    assert_eq!(board["info"]["producer_alive"], true);
    let gate = object(&objs, "gate", &n);
    assert_eq!(gate["info"]["holders"][0]["command"], "sleep 60");
    assert_eq!(gate["info"]["slots"], 2);
    let disc = object(&objs, "discover", &n);
    assert_eq!(disc["info"]["members"][0]["pid"], crowd.discover.pid());
    assert_eq!(disc["info"]["members"][0]["alive"], true);
    // The servers' status records: pid, workers, calls served; transport, address.
    let mut c = env.cmd("worker");
    c.args(["call", "--name", &n, "add", "2", "3"]);
    assert!(run(c).status.success());
    wait_until("the worker's record counts the call", || {
        let (_, objs) = ls(&env);
        let w = object(&objs, "worker", &n);
        w["owner_pid"] == crowd.worker.pid() && w["info"]["workers"] == 1 && w["info"]["calls"] == 1
    });
    let ping = object(&objs, "ping", &n);
    assert_eq!(ping["owner_pid"], crowd.ping.pid());
    assert_eq!(ping["info"]["transport"], "local");
    assert!(ping["info"]["address"].as_str().unwrap().ends_with(".sock"));

    for p in [
        &crowd.producer,
        &crowd.gate,
        &crowd.discover,
        &crowd.worker,
        &crowd.ping,
    ] {
        p.kill9();
    }
    for kind in ["board", "discover", "worker", "ping"] {
        wait_state(&env, kind, &n, "stale");
    }
    let (_, objs) = ls(&env);
    assert_eq!(state_of(&objs, "gate", &n), "live");
    assert_eq!(object(&objs, "gate", &n)["info"]["held"], 0);
    drop(crowd);

    // The runtime directory goes: its kernel objects become orphans.
    std::fs::remove_dir_all(env.dir()).unwrap();
    let (head, objs) = ls(&env);
    assert_eq!(head["dir_exists"], false);
    assert_eq!(state_of(&objs, "board", &n), "orphan");
    assert_eq!(state_of(&objs, "gate", &n), "orphan");
    let out = clean(&env, &["--name", &n]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let said = text(&out.stdout);
    assert!(said.contains("removed: orphan board"), "{said}");
    assert!(said.contains("removed: orphan gate"), "{said}");
    let (_, objs) = ls(&env);
    assert_eq!(state_of(&objs, "board", &n), "absent");
    assert_eq!(state_of(&objs, "gate", &n), "absent");
}

/// A file whose kernel object is gone is an orphan: a board link whose
/// segment was unlinked, a gate file whose set was removed with ipcrm.
#[test]
fn files_whose_kernel_object_is_gone_are_orphans() {
    let _s = serial();
    let env = Env::new();
    let n = unique_name("f");
    let mut c = env.cmd("producer");
    c.args(["--name", &n, "--count", "3", "--keep"]);
    assert!(run(c).status.success());
    let mut c = env.cmd("gate");
    c.args(["--name", &n, "--hold", "0s", "--id", "x"]);
    assert!(run(c).status.success());
    let (_, objs) = ls(&env);
    assert_eq!(state_of(&objs, "board", &n), "stale");
    assert_eq!(state_of(&objs, "gate", &n), "live");
    let seg = object(&objs, "board", &n)["kernel"]
        .as_str()
        .unwrap()
        .to_owned();
    let semid = object(&objs, "gate", &n)["kernel"]
        .as_str()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    std::fs::remove_file(&seg).unwrap();
    let rc = Command::new("ipcrm").args(["-s", &semid]).status().unwrap();
    assert!(rc.success());
    let (_, objs) = ls(&env);
    assert_eq!(state_of(&objs, "board", &n), "orphan");
    assert_eq!(state_of(&objs, "gate", &n), "orphan");
    let out = clean(&env, &[]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(std::fs::read_dir(env.dir()).unwrap().next().is_none());
}

/// `clean` during operation removes the stale objects and none of the live
/// ones: the producer goes on producing, the gate holder keeps its slot, the
/// waiting discover member still meets its group, the worker pool still
/// answers, the ping server still pongs.
#[test]
fn clean_removes_stale_and_never_a_live_object() {
    let _s = serial();
    let env = Env::new();
    let n = unique_name("live");
    let dead = unique_name("dead");
    // Stale objects of every kind, under another name.
    let crowd = start_crowd(&env, &dead);
    for p in [
        &crowd.producer,
        &crowd.gate,
        &crowd.discover,
        &crowd.worker,
        &crowd.ping,
    ] {
        p.kill9();
    }
    drop(crowd);
    let mut crowd = start_crowd(&env, &n);
    let before = ls(&env).1;
    assert_eq!(state_of(&before, "board", &dead), "stale");

    let out = clean(&env, &[]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let (_, after) = ls(&env);
    for kind in ["board", "discover", "worker", "ping"] {
        assert_eq!(state_of(&after, kind, &dead), "absent", "{kind}");
        assert_eq!(state_of(&after, kind, &n), "live", "{kind}");
    }
    assert_eq!(object(&after, "gate", &n)["info"]["held"], 1);
    for p in [
        &mut crowd.producer,
        &mut crowd.gate,
        &mut crowd.discover,
        &mut crowd.worker,
        &mut crowd.ping,
    ] {
        assert!(p.is_running(), "{} died", p.name);
    }
    // The board still grows.
    let total = |objs: &[Value]| object(objs, "board", &n)["info"]["total"].as_u64().unwrap();
    let t0 = total(&after);
    wait_until("board grows", || total(&ls(&env).1) > t0);
    // The worker pool answers, the ping server pongs.
    let mut c = env.cmd("worker");
    c.args(["call", "--name", &n, "add", "2", "3"]);
    let out = run(c);
    assert_eq!(text(&out.stdout).trim(), "5", "{}", text(&out.stderr));
    let mut c = env.cmd("ping-client");
    c.args(["--local", &n, "-c", "1"]);
    let out = run(c);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The discover member meets its group.
    let mut c = env.cmd("discover");
    c.args([
        "--name",
        &n,
        "--id",
        "b",
        "--members",
        "2",
        "--timeout",
        "30s",
    ]);
    let out = run(c);
    assert!(
        text(&out.stdout).contains("found: [a, b]"),
        "{}",
        text(&out.stdout)
    );
    let out = std::mem::replace(&mut crowd.discover, Proc::spawn(Command::new("true"))).finish();
    assert!(out.status.success());
}

/// `top` with stdout not a terminal prints one JSON snapshot per interval,
/// with the live board and its rate of values per second.
#[test]
fn top_prints_json_lines_when_not_a_terminal() {
    let _s = serial();
    let env = Env::new();
    let n = unique_name("tj");
    let mut c = env.cmd("producer");
    c.args(["--name", &n, "--interval", "2ms"]);
    let _p = Proc::spawn(c);
    wait_state(&env, "board", &n, "live");
    let mut c = env.cmd("syncomm");
    c.args(["top", "--interval", "200ms", "--count", "3", "--name", &n]);
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let frames: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2]["event"], "frame");
    let row = &frames[2]["live"][0];
    assert_eq!(row["kind"], "board");
    assert_eq!(row["rate_of"], "values");
    assert!(row["rate_per_s"].as_f64().unwrap() > 0.0, "{row}");
}

/// `top` in a real terminal (tmux): the live board appears with a rate that
/// changes between refreshes, and `q` quits.
#[test]
fn top_in_a_terminal_shows_live_objects_and_rates_and_quits_on_q() {
    let _s = serial();
    let env = Env::new();
    let Some(t) = Tmux::server(&env) else {
        return;
    };
    let n = unique_name("tt");
    let mut c = env.cmd("producer");
    c.args(["--name", &n, "--interval", "1ms"]);
    let _p = Proc::spawn(c);
    wait_state(&env, "board", &n, "live");
    let session = unique_name("syncomm-top");
    let cmd = format!(
        "SYNCOMM_DIR='{}' '{}' top --interval 300ms",
        env.dir().display(),
        bin("syncomm").display()
    );
    t.session(&session, 200, 40, &cmd);
    let capture = || t.screen(&session);
    let rate_of = |screen: &str| -> Option<String> {
        let line = screen
            .lines()
            .find(|l| l.contains("board") && l.contains(&n))?;
        let r = line.rsplit('[').next()?;
        r.contains("values/s").then(|| r.to_owned())
    };
    let mut first = None;
    wait_until("a board line with a rate", || {
        let s = capture();
        first = rate_of(&s).filter(|r| !r.starts_with('-'));
        first.is_some() && s.contains("live")
    });
    wait_until("the rate changes", || {
        rate_of(&capture()).is_some_and(|r| Some(&r) != first.as_ref() && !r.starts_with('-'))
    });
    t.run(&["send-keys", "-t", &session, "q"]);
    wait_until("top quits on q", || {
        !t.run(&["has-session", "-t", &session]).status.success()
    });
}

/// Another user's segment under a board's name is listed as foreign and
/// never removed (needs root to make one).
#[test]
fn foreign_objects_are_listed_and_never_touched() {
    let _s = serial();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot make another user's segment; skipped");
        return;
    }
    let env = Env::new();
    let id = unique_name("foreign");
    let path = format!("/dev/shm/syncomm.board.{id}.1.abc");
    std::fs::write(&path, b"not a board").unwrap();
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _rm = Rm(path.clone());
    nix::unistd::chown(
        Path::new(&path),
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
    )
    .unwrap();
    let name = format!("syncomm.board.{id}.1.abc");
    let (_, objs) = ls(&env);
    assert_eq!(state_of(&objs, "board", &name), "foreign");
    let out = clean(&env, &[]);
    assert!(!text(&out.stdout).contains(&name), "{}", text(&out.stdout));
    assert!(Path::new(&path).exists());
}

/// The leak check's own code finds a gate set whose runtime directory is
/// gone (the end-of-suite check uses it), and the harness's clean-up on drop
/// removes it.
#[test]
fn leak_check_finds_an_orphaned_set_and_the_harness_removes_it() {
    let _s = serial();
    let env = Env::new();
    let n = unique_name("leak");
    let mut c = env.cmd("gate");
    c.args(["--name", &n, "--hold", "0s", "--id", "x"]);
    assert!(run(c).status.success());
    let dir = syncomm_common::attribution::absolute_dir(env.dir());
    std::fs::remove_dir_all(&dir).unwrap();
    let found = syncomm_admin::leaks::leaks(&|d| d == dir);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].what, "semaphore set");
    assert!(found[0].to_string().contains(&n));
    drop(env);
    assert!(syncomm_admin::leaks::leaks(&|d| d == dir).is_empty());
}

/// `--help` names SYNCOMM_DIR.
#[test]
fn help_mentions_the_runtime_directory() {
    let out = run({
        let mut c = Command::new(bin("syncomm"));
        c.arg("--help");
        c
    });
    assert!(text(&out.stdout).contains("SYNCOMM_DIR"));
    let _ = Duration::ZERO;
}

/// Waiting programs tell where they look: every not-found or timeout message
/// names the runtime directory; with stderr not a terminal they print no
/// "waiting for" line; `--help` of each describes SYNCOMM_DIR.
#[test]
fn timeouts_and_not_found_name_the_runtime_directory() {
    let env = Env::new();
    let n = unique_name("where");
    let dir = env.dir().display().to_string();
    let check = |prog: &str, args: &[&str]| {
        let mut c = env.cmd(prog);
        c.args(args);
        let out = run(c);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{prog}: {err}");
        assert!(err.contains(&dir), "{prog} does not name {dir}: {err}");
        assert!(!err.contains("waiting for board"), "{prog}: {err}");
        assert!(!err.contains("Ctrl-C to stop"), "{prog}: {err}");
    };
    check("consumer", &["--name", &n, "--timeout", "200ms"]);
    check("monitor", &["--name", &n, "--timeout", "200ms"]);
    check("monitor", &["--name", &n, "--once"]);
    check("gate", &["--name", &n, "--status"]);
    check(
        "discover",
        &[
            "--name",
            &n,
            "--id",
            "a",
            "--members",
            "2",
            "--timeout",
            "200ms",
        ],
    );
    let mut c = env.cmd("gate");
    c.args(["--name", &n, "--slots", "1", "--", "sleep", "30"]);
    let _holder = Proc::spawn(c);
    wait_until("the slot is held", || {
        let mut c = env.cmd("gate");
        c.args(["--name", &n, "--status", "--json"]);
        let out = run(c);
        serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|v| v["free"] == 0)
    });
    check("gate", &["--name", &n, "--timeout", "200ms", "--", "true"]);
    for prog in [
        "producer", "consumer", "monitor", "gate", "discover", "syncomm",
    ] {
        let mut c = env.cmd(prog);
        c.arg("--help");
        let out = run(c);
        assert!(text(&out.stdout).contains("SYNCOMM_DIR"), "{prog} --help");
    }
}

/// On a terminal (tmux), consumer, monitor, gate and discover each print
/// one line when they start waiting, naming what and where.
#[test]
fn on_a_terminal_waiting_programs_say_what_and_where() {
    let env = Env::new();
    let Some(t) = Tmux::server(&env) else {
        return;
    };
    let n = unique_name("tty");
    let dir = env.dir().display().to_string();
    let mut c = env.cmd("gate");
    c.args(["--name", &n, "--slots", "1", "--", "sleep", "60"]);
    let _holder = Proc::spawn(c);
    wait_until("the slot is held", || {
        let mut c = env.cmd("gate");
        c.args(["--name", &n, "--status", "--json"]);
        let out = run(c);
        serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|v| v["free"] == 0)
    });
    let cases = [
        (
            "consumer",
            format!("--name {n}"),
            format!("waiting for board \"{n}\" in {dir} (Ctrl-C to stop)"),
        ),
        (
            "monitor",
            format!("--name {n}"),
            format!("waiting for board \"{n}\" in {dir} (Ctrl-C to stop)"),
        ),
        (
            "gate",
            format!("--name {n} -- true"),
            format!("waiting for a slot of gate \"{n}\" in {dir} (Ctrl-C to stop)"),
        ),
        (
            "discover",
            format!("--name {n} --as a --members 2"),
            format!("waiting for 2 members of group \"{n}\" in {dir} (Ctrl-C to stop)"),
        ),
    ];
    for (i, (prog, args, want)) in cases.iter().enumerate() {
        let session = format!("s{i}");
        let cmd = format!(
            "SYNCOMM_DIR='{dir}' '{}' {args}; sleep 60",
            bin(prog).display()
        );
        t.session(&session, 250, 20, &cmd);
        wait_until(&format!("{prog} says where it waits"), || {
            t.screen(&session).contains(want.as_str())
        });
    }
}
