//! End-to-end tests of `worker`: the real binary serving, real children on
//! real pipes, real faults (abort, SIGKILL, panics, timeouts, garbage bytes,
//! stale sockets, SIGTERM), checked through the CLI and the library client.
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use common::*;
use nix::sys::signal::Signal;
use syncomm_common::frame;
use syncomm_worker::{CallErrorKind, Client, ToClient, Value};

/// A running `worker serve` and what it printed at start.
struct Pool {
    proc: Proc,
    lines: Lines,
    name: String,
    path: PathBuf,
    /// Child pids by slot (index 0 is worker 1).
    pids: Vec<i32>,
}

impl Pool {
    fn start(env: &Env, workers: usize, extra: &[&str]) -> Pool {
        Pool::start_named(env, &unique_name("pool"), workers, extra)
    }

    fn start_named(env: &Env, name: &str, workers: usize, extra: &[&str]) -> Pool {
        let mut cmd = env.cmd("worker");
        cmd.args(["serve", "--name", name, "--workers", &workers.to_string()]);
        cmd.args(extra);
        let mut proc = Proc::spawn(cmd);
        let lines = proc.stdout_lines();
        let mut pids = Vec::new();
        loop {
            let line = lines.next_line().expect("serve printed its start");
            if let Some(pid) = started_pid(&line) {
                pids.push(pid);
            }
            if line.starts_with("serving ") {
                break;
            }
        }
        assert_eq!(pids.len(), workers);
        Pool {
            proc,
            lines,
            name: name.to_owned(),
            path: env.dir().join(format!("worker.{name}.sock")),
            pids,
        }
    }

    fn client(&self) -> Client {
        Client::connect_path(&self.path).expect("connect to the pool")
    }

    /// Waits for the server to report a new child in slot `index`; returns its pid.
    fn wait_started(&self, index: usize) -> i32 {
        let prefix = format!("worker {index} started (pid ");
        let line = self.lines.wait_for(|l| l.starts_with(&prefix));
        started_pid(&line).unwrap()
    }
}

/// The pid in "worker N started (pid P)".
fn started_pid(line: &str) -> Option<i32> {
    let rest = line.split(" started (pid ").nth(1)?;
    rest.trim_end_matches(')').parse().ok()
}

fn int(i: i64) -> Value {
    Value::Int(i)
}

/// Waits until process `pid` sleeps in the kernel (a `sleep_ms` call is running).
fn wait_sleeping(pid: i32) {
    wait_until("the child to be sleeping", || {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        // clock_nanosleep / nanosleep on x86_64 (230, 35) and aarch64 (115, 101).
        wchan.contains("nanosleep")
            || ["230 ", "35 ", "115 ", "101 "]
                .iter()
                .any(|n| syscall.starts_with(n))
    });
}

/// `worker call` prints results on stdout, `--json` one object, errors one
/// line `worker: FUNCTION failed: why` with exit 1; `worker list` shows the
/// registry's signatures.
#[test]
fn call_prints_results_and_errors() {
    let env = Env::new();
    let pool = Pool::start(&env, 2, &[]);
    let call = |args: &[&str]| {
        let mut c = env.cmd("worker");
        c.args(["call", "--name", &pool.name]).args(args);
        run(c)
    };
    let out = call(&["add", "2", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "5\n");
    assert_eq!(text(&call(&["fib", "93"]).stdout), "12200160415121876738\n");
    assert_eq!(text(&call(&["factor", "360"]).stdout), "2 2 2 3 3 5\n");
    assert_eq!(text(&call(&["upper", "42 apples"]).stdout), "42 APPLES\n");
    assert_eq!(text(&call(&["neg", "-7"]).stdout), "7\n");

    let out = call(&["--json", "factor", "12"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["event"], "result");
    assert_eq!(v["function"], "factor");
    assert_eq!(v["result"], serde_json::json!([2, 2, 3]));

    let out = call(&["div", "1", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "worker: div failed: division by zero\n");
    let out = call(&["fib", "94"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("worker: fib failed: fib 94 does not fit"));

    let mut c = env.cmd("worker");
    c.args(["list", "--name", &pool.name]);
    let out = run(c);
    assert!(out.status.success());
    let listing = text(&out.stdout);
    for sig in [
        "add(a: int, b: int) -> int",
        "fib(n: uint) -> uint",
        "upper(text: text) -> text",
    ] {
        assert!(listing.contains(sig), "{sig} in {listing}");
    }
    assert_eq!(
        listing.lines().count(),
        syncomm_worker::registry::FUNCTIONS.len()
    );
}

/// Without a server, `worker call` says so in one line and exits 1; a bad
/// name is a usage error.
#[test]
fn call_without_server_fails_clearly() {
    let env = Env::new();
    let mut c = env.cmd("worker");
    c.args(["call", "--name", "nobody-here", "add", "1", "2"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("worker: ") && err.contains("no server is serving nobody-here"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    let mut c = env.cmd("worker");
    c.args(["call", "--name", "../x", "add", "1", "2"]);
    assert_eq!(run(c).status.code(), Some(2));
}

/// Unknown function, wrong number or types of arguments: an error result
/// naming what was expected; the connection stays usable.
#[test]
fn bad_calls_name_what_was_expected() {
    let env = Env::new();
    let pool = Pool::start(&env, 1, &[]);
    let mut c = pool.client();
    let e = c.call("frobnicate", &[]).unwrap().unwrap_err();
    assert_eq!(e.kind, CallErrorKind::UnknownFunction);
    assert!(e.message.contains("unknown function \"frobnicate\"") && e.message.contains("add"));
    let e = c.call("add", &[int(1)]).unwrap().unwrap_err();
    assert_eq!(e.kind, CallErrorKind::BadArguments);
    assert!(
        e.message
            .contains("expected 2 arguments (add(a: int, b: int) -> int), got 1"),
        "{e}"
    );
    let e = c
        .call("add", &[int(1), Value::Text("two".into())])
        .unwrap()
        .unwrap_err();
    assert!(
        e.message
            .contains("argument b must be an int, got text \"two\""),
        "{e}"
    );
    let e = c.call("fib", &[int(-1)]).unwrap().unwrap_err();
    assert!(e.message.contains("argument n must be an uint"), "{e}");
    assert_eq!(c.call("add", &[int(1), int(2)]).unwrap(), Ok(int(3)));
}

/// A child that aborts mid-call: its caller gets "worker 1 (pid N) died from
/// signal 6 while running abort", the calls queued behind it on the same
/// child are answered (re-sent to the replacement), and a new child appears.
#[test]
fn abort_is_reported_others_answered_child_replaced() {
    let env = Env::new();
    let pool = Pool::start(&env, 1, &[]);
    let old = pool.pids[0];
    let mut c = pool.client();
    let before: Vec<u64> = (0..3)
        .map(|i| c.send("add", &[int(i), int(100)]).unwrap())
        .collect();
    let abort = c.send("abort", &[]).unwrap();
    let after: Vec<u64> = (0..20)
        .map(|i| c.send("mul", &[int(i), int(3)]).unwrap())
        .collect();
    let mut answers = HashMap::new();
    for _ in 0..24 {
        let (id, r) = c.recv().unwrap();
        assert!(answers.insert(id, r).is_none(), "answer {id} twice");
    }
    let e = answers[&abort].clone().unwrap_err();
    assert_eq!(e.kind, CallErrorKind::WorkerDied);
    assert_eq!(
        e.message,
        format!("worker 1 (pid {old}) died from signal 6 while running abort")
    );
    for (i, id) in before.iter().enumerate() {
        assert_eq!(answers[id], Ok(int(i as i64 + 100)));
    }
    for (i, id) in after.iter().enumerate() {
        assert_eq!(answers[id], Ok(int(i as i64 * 3)));
    }
    let fresh = pool.wait_started(1);
    assert_ne!(fresh, old);
    assert!(pid_alive(fresh));
    assert_eq!(c.call("pid", &[]).unwrap(), Ok(Value::UInt(fresh as u64)));
}

/// `kill -9` of a child from outside while it runs a call: that caller gets
/// the death message, every other call (on both children) is answered, and
/// a replacement child serves afterwards.
#[test]
fn child_killed_mid_call_is_reported_and_replaced() {
    let env = Env::new();
    let pool = Pool::start(&env, 2, &[]);
    let victim = pool.pids[0];
    let mut c = pool.client();
    // The first call goes to worker 1 (both idle, lowest slot first).
    let sleeper = c.send("sleep_ms", &[int(600_000)]).unwrap();
    c.flush().unwrap();
    wait_sleeping(victim);
    let others: Vec<u64> = (0..30)
        .map(|i| c.send("add", &[int(i), int(i)]).unwrap())
        .collect();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let mut answers = HashMap::new();
    for _ in 0..31 {
        let (id, r) = c.recv().unwrap();
        assert!(answers.insert(id, r).is_none());
    }
    let e = answers[&sleeper].clone().unwrap_err();
    assert_eq!(
        e.message,
        format!("worker 1 (pid {victim}) died from signal 9 while running sleep_ms")
    );
    for (i, id) in others.iter().enumerate() {
        assert_eq!(answers[id], Ok(int(2 * i as i64)));
    }
    let fresh = pool.wait_started(1);
    assert!(pid_alive(fresh) && !pid_alive(victim));
}

/// A panic inside a function is an error result; the child lives on (same pid).
#[test]
fn panic_is_an_error_and_the_child_lives_on() {
    let env = Env::new();
    let pool = Pool::start(&env, 1, &[]);
    let mut c = pool.client();
    let pid = pool.pids[0] as u64;
    assert_eq!(c.call("pid", &[]).unwrap(), Ok(Value::UInt(pid)));
    let e = c.call("panic", &[]).unwrap().unwrap_err();
    assert_eq!(e.kind, CallErrorKind::Panicked);
    assert!(e.message.contains("panicked"), "{e}");
    assert_eq!(c.call("pid", &[]).unwrap(), Ok(Value::UInt(pid)));
    let mut cmd = env.cmd("worker");
    cmd.args(["call", "--name", &pool.name, "panic"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("worker: panic failed: panicked"));
}

/// A call past --task-timeout: the caller gets a timeout error, the child is
/// killed and replaced, the call queued behind it is still answered.
#[test]
fn task_timeout_kills_and_replaces_the_child() {
    let env = Env::new();
    let pool = Pool::start(&env, 1, &["--task-timeout", "300ms"]);
    let old = pool.pids[0];
    let mut c = pool.client();
    let slow = c.send("sleep_ms", &[int(600_000)]).unwrap();
    let quick = c.send("add", &[int(1), int(2)]).unwrap();
    let e = c.wait_for(slow).unwrap().unwrap_err();
    assert_eq!(e.kind, CallErrorKind::Timeout);
    assert!(e.message.starts_with("timed out after 300ms"), "{e}");
    assert_eq!(c.wait_for(quick).unwrap(), Ok(int(3)));
    let fresh = pool.wait_started(1);
    assert_ne!(fresh, old);
    wait_until("the timed-out child to be gone", || !pid_alive(old));
    assert_eq!(c.call("pid", &[]).unwrap(), Ok(Value::UInt(fresh as u64)));
}

/// A caller that disconnects with calls in flight: the server drops their
/// answers and keeps serving everyone else.
#[test]
fn caller_leaving_with_calls_in_flight_does_not_hurt_the_server() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 1, &[]);
    {
        let mut gone = pool.client();
        for _ in 0..5 {
            gone.send("sleep_ms", &[int(100)]).unwrap();
        }
        for i in 0..200 {
            gone.send("add", &[int(i), int(1)]).unwrap();
        }
        gone.flush().unwrap();
        wait_sleeping(pool.pids[0]);
    } // dropped: the connection closes with 205 calls in flight
    let mut c = pool.client();
    assert_eq!(c.call("add", &[int(20), int(22)]).unwrap(), Ok(int(42)));
    assert!(pool.proc.is_running());
    assert_eq!(
        c.call("pid", &[]).unwrap(),
        Ok(Value::UInt(pool.pids[0] as u64))
    );
}

/// Garbage bytes, a frame over --max-frame, and a body that does not decode:
/// each such connection gets an error and is closed; a caller connected all
/// along is served before and after.
#[test]
fn garbage_oversize_and_undecodable_frames_close_only_that_connection() {
    let env = Env::new();
    let pool = Pool::start(&env, 1, &["--max-frame", "1024"]);
    let mut good = pool.client();
    assert_eq!(good.call("add", &[int(1), int(1)]).unwrap(), Ok(int(2)));

    let mut s = UnixStream::connect(&pool.path).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let why = expect_connection_error(s);
    assert!(why.contains("over the limit of 1024 bytes"), "{why}");

    let mut s = UnixStream::connect(&pool.path).unwrap();
    s.write_all(&2000u32.to_le_bytes()).unwrap();
    let why = expect_connection_error(s);
    assert!(
        why.contains("frame of 2000 bytes is over the limit"),
        "{why}"
    );

    let mut s = UnixStream::connect(&pool.path).unwrap();
    let mut bad = 5u32.to_le_bytes().to_vec();
    bad.extend_from_slice(&[0xff; 5]);
    s.write_all(&bad).unwrap();
    let why = expect_connection_error(s);
    assert!(why.contains("malformed frame body"), "{why}");

    // A frame cut short by a half-closed caller.
    let mut s = UnixStream::connect(&pool.path).unwrap();
    s.write_all(&[10, 0, 0, 0, 1, 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let why = expect_connection_error(s);
    assert!(why.contains("stream ended inside a frame"), "{why}");

    assert_eq!(good.call("add", &[int(2), int(2)]).unwrap(), Ok(int(4)));
    assert_eq!(
        good.call("pid", &[]).unwrap(),
        Ok(Value::UInt(pool.pids[0] as u64))
    );
}

/// `kill -9` of the server: its children die with it (PR_SET_PDEATHSIG), and
/// the socket file it left is taken over by the next server on that name.
#[test]
fn killed_server_takes_children_along_and_its_stale_socket_is_taken_over() {
    let env = Env::new();
    let name = unique_name("stale");
    let first = Pool::start_named(&env, &name, 2, &[]);
    let mode = std::fs::metadata(&first.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket is private");
    first.proc.kill9();
    for pid in &first.pids {
        wait_until("the children to die with the server", || !pid_alive(*pid));
    }
    assert!(
        first.path.exists(),
        "the killed server left its socket behind"
    );
    drop(first);
    let mut cmd = env.cmd("worker");
    cmd.args(["serve", "--name", &name, "--workers", "1"]);
    let mut second = Proc::spawn(cmd);
    let lines = second.stdout_lines();
    let line =
        lines.wait_for(|l| l.starts_with("removed stale socket") || l.starts_with("serving"));
    assert!(line.starts_with("removed stale socket"), "{line}");
    lines.wait_for(|l| l.starts_with("serving"));
    let mut c = Client::connect_path(&env.dir().join(format!("worker.{name}.sock"))).unwrap();
    assert_eq!(c.call("add", &[int(40), int(2)]).unwrap(), Ok(int(42)));
    assert!(second.is_running());
}

/// `serve` on a name a live server holds: refused, naming the live server's
/// pid; the live server keeps serving.
#[test]
fn second_server_on_a_live_name_is_refused() {
    let env = Env::new();
    let pool = Pool::start(&env, 1, &[]);
    let mut cmd = env.cmd("worker");
    cmd.args(["serve", "--name", &pool.name, "--workers", "1"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "a server is already serving {} (pid {})",
            pool.name,
            pool.proc.pid()
        )),
        "{err}"
    );
    assert_eq!(pool.client().call("neg", &[int(5)]).unwrap(), Ok(int(-5)));
}

/// SIGTERM: the server stops accepting, finishes the calls in flight
/// (their callers get the answers), stops its children, removes its
/// socket and exits 0.
#[test]
fn sigterm_finishes_calls_in_flight_then_cleans_up() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 3, &[]);
    let mut c = pool.client();
    let slow: Vec<u64> = (0..2)
        .map(|_| c.send("sleep_ms", &[int(1500)]).unwrap())
        .collect();
    let quick = c.send("add", &[int(1), int(1)]).unwrap();
    // Answered only after the server has read (and accepted) everything before it.
    assert_eq!(
        c.call("word_count", &[Value::Text("a b c".into())])
            .unwrap(),
        Ok(Value::UInt(3))
    );
    pool.proc.signal(Signal::SIGTERM);
    for id in &slow {
        assert_eq!(c.wait_for(*id).unwrap(), Ok(Value::UInt(1500)));
    }
    assert_eq!(c.wait_for(quick).unwrap(), Ok(int(2)));
    let status = pool.proc.wait_timeout(HANG);
    assert_eq!(status.code(), Some(0));
    let rest = pool.lines.rest();
    assert!(
        rest.iter().any(|l| l.starts_with("stopping (SIGTERM)")),
        "{rest:?}"
    );
    assert!(rest.iter().any(|l| l == "stopped"), "{rest:?}");
    assert!(!pool.path.exists(), "socket removed");
    for pid in &pool.pids {
        wait_until("children to be reaped", || !pid_alive(*pid));
    }
}

/// A second signal while the server drains ends it at once (130 for
/// SIGINT), skipping every destructor; nothing of it may be left behind:
/// its status record goes when the drain begins, its socket too.
#[test]
fn second_signal_during_the_drain_leaves_no_status_record() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 2, &["--drain-timeout", "60s"]);
    let status = env.dir().join(format!("worker.{}.status", pool.name));
    wait_until("the status record", || status.exists());
    let mut c = pool.client();
    let slow = c.send("sleep_ms", &[int(60_000)]).unwrap();
    // Answered only after the server has read (and accepted) the slow call.
    assert_eq!(c.call("add", &[int(1), int(1)]).unwrap(), Ok(int(2)));
    pool.proc.signal(Signal::SIGTERM);
    pool.lines.wait_for(|l| l.starts_with("stopping (SIGTERM)"));
    wait_until("the status record to go", || !status.exists());
    assert!(pool.proc.is_running(), "still draining the slow call");
    pool.proc.signal(Signal::SIGINT);
    assert_eq!(pool.proc.wait_timeout(HANG).code(), Some(130));
    assert!(!status.exists(), "status record left");
    assert!(!pool.path.exists(), "socket left");
    let _ = slow;
    for pid in &pool.pids {
        wait_until("the child to go with its server", || !pid_alive(*pid));
    }
}

/// Load: 8 clients × 10,000 pipelined calls at once; every answer is
/// correct, none lost, none duplicated.
#[test]
fn eight_clients_ten_thousand_pipelined_calls_each() {
    let env = Env::new();
    let pool = Pool::start(&env, 2, &[]);
    const CALLS: i64 = 10_000;
    const WINDOW: usize = 64;
    let handles: Vec<_> = (0..8i64)
        .map(|k| {
            let mut c = pool.client();
            std::thread::spawn(move || {
                let mut expect: HashMap<u64, i64> = HashMap::new();
                let mut seen = 0i64;
                let mut next = 0i64;
                while seen < CALLS {
                    while next < CALLS && c.in_flight() < WINDOW {
                        let id = c.send("add", &[int(next), int(k * 1_000_000)]).unwrap();
                        expect.insert(id, next + k * 1_000_000);
                        next += 1;
                    }
                    let (id, r) = c.recv().unwrap();
                    let want = expect
                        .remove(&id)
                        .unwrap_or_else(|| panic!("unknown or duplicate answer {id}"));
                    assert_eq!(r, Ok(int(want)));
                    seen += 1;
                }
                assert!(expect.is_empty());
                seen
            })
        })
        .collect();
    let total: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 8 * CALLS);
}

/// `worker call --timeout`: a call that outlasts it fails with one line and
/// exit 1 (the pool is unaffected).
#[test]
fn call_timeout_gives_up_with_one_line() {
    let env = Env::new();
    let pool = Pool::start(&env, 1, &[]);
    let mut c = env.cmd("worker");
    c.args([
        "call",
        "--name",
        &pool.name,
        "--timeout",
        "200ms",
        "sleep_ms",
        "3000",
    ]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "worker: sleep_ms failed: no answer within 200ms\n"
    );
    assert_eq!(
        pool.client().call("add", &[int(1), int(1)]).unwrap(),
        Ok(int(2))
    );
}

/// A caller that writes its requests and shuts down its sending side still
/// gets every answer, then the end of the stream.
#[test]
fn half_closed_caller_still_gets_its_answers() {
    let env = Env::new();
    let pool = Pool::start(&env, 2, &[]);
    let mut s = UnixStream::connect(&pool.path).unwrap();
    let mut wire = Vec::new();
    for i in 0..50u64 {
        let req = syncomm_worker::Request {
            id: i,
            function: "neg".into(),
            args: vec![int(i as i64)],
        };
        frame::encode_frame_into(&req, &mut wire).unwrap();
    }
    s.write_all(&wire).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut seen = std::collections::HashSet::new();
    while let Some(msg) = frame::read_frame::<_, ToClient>(&mut s, 1 << 20).unwrap() {
        match msg {
            ToClient::Answer(r) => {
                assert_eq!(r.result, Ok(int(-(r.id as i64))));
                assert!(seen.insert(r.id));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen.len(), 50);
}

/// Something at the socket path that is not a socket (a user's file) is
/// never removed: `serve` refuses and says what to do.
#[test]
fn a_file_at_the_socket_path_is_not_clobbered() {
    let env = Env::new();
    let name = unique_name("file");
    let path = env.dir().join(format!("worker.{name}.sock"));
    std::fs::write(&path, b"precious").unwrap();
    let mut cmd = env.cmd("worker");
    cmd.args(["serve", "--name", &name, "--workers", "1"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("exists and is not a socket"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

/// A child busy with a long call is passed over: while worker 1 sleeps for
/// ten minutes, a burst of pipelined calls is all answered by worker 2
/// instead of queueing behind the sleeper.
#[test]
fn calls_do_not_queue_behind_a_long_call() {
    let env = Env::new();
    let pool = Pool::start(&env, 2, &[]);
    let mut sleeper = pool.client();
    sleeper.send("sleep_ms", &[int(600_000)]).unwrap();
    sleeper.flush().unwrap();
    wait_sleeping(pool.pids[0]);
    let mut c = pool.client();
    // A failure must not wait ten minutes for the sleeper.
    c.set_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // Runs on worker 2 (idle); when it returns, worker 1's call has run
    // longer than server::SLOW_CALL.
    assert_eq!(c.call("sleep_ms", &[int(5)]).unwrap(), Ok(Value::UInt(5)));
    let ids: Vec<u64> = (0..40).map(|_| c.send("pid", &[]).unwrap()).collect();
    for id in ids {
        assert_eq!(
            c.wait_for(id).unwrap(),
            Ok(Value::UInt(pool.pids[1] as u64))
        );
    }
}

/// A process's resident memory in KiB and CPU time in clock ticks, from
/// /proc (None once it has exited).
fn rss_and_cpu(pid: i32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let cpu = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
    Some((rss, cpu))
}

/// A caller that sends many calls and never reads its answers: the server
/// stops taking its calls once about a megabyte of its answers waits unread
/// (back-pressure), instead of holding every answer in memory; others are
/// served meanwhile; when the caller finally reads, it gets every answer.
#[test]
fn a_caller_that_never_reads_is_held_back_not_buffered_without_bound() {
    let env = Env::new();
    let pool = Pool::start(&env, 2, &[]);
    // `functions` answers about 1 KiB to a 17-byte call: 20,000 of them
    // would hold some 20 MiB of answers in an unbounded server.
    let calls = 20_000;
    let req = syncomm_worker::Request {
        id: 7,
        function: "functions".into(),
        args: vec![],
    };
    let one = frame::encode_frame(&req).unwrap();
    let s = UnixStream::connect(&pool.path).unwrap();
    let mut writer = s.try_clone().unwrap();
    let burst = one.repeat(calls);
    let sender = std::thread::spawn(move || {
        writer.write_all(&burst).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    // Wait for the server to settle: its CPU time stops moving (a timeout
    // only stops a hang). Meanwhile its memory must stay bounded.
    let server = pool.proc.pid();
    let (rss0, _) = rss_and_cpu(server).unwrap();
    let mut last = (0, u64::MAX);
    let mut still = 0;
    let deadline = std::time::Instant::now() + HANG;
    while still < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never settled"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (rss, cpu) = rss_and_cpu(server).unwrap();
        assert!(
            rss < rss0 + 8 * 1024,
            "the server grew from {rss0} KiB to {rss} KiB holding answers nobody reads"
        );
        still = if cpu == last.1 { still + 1 } else { 0 };
        last = (rss, cpu);
    }
    // Others are served meanwhile.
    let mut other = pool.client();
    assert_eq!(other.call("add", &[int(20), int(22)]).unwrap(), Ok(int(42)));
    // Now read: every call is answered once, then the stream ends.
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut answers = 0;
    let mut r = std::io::BufReader::new(&s);
    while let Some(msg) = frame::read_frame::<_, ToClient>(&mut r, 1 << 20).unwrap() {
        match msg {
            ToClient::Answer(a) if a.id == 7 && a.result.is_ok() => answers += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    sender.join().unwrap();
    assert_eq!(answers, calls, "every call sent is answered once");
}

/// SIGTERM while two callers flood the pool with calls, one reading its
/// answers and one never reading: the server refuses the calls that arrive
/// after the signal, keeps its memory bounded (a buffer that never fully
/// empties used to grow for as long as the connection lived), and still
/// exits 0 with its socket removed.
#[test]
fn sigterm_under_a_flood_of_calls_stays_bounded_and_ends() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 2, &[]);
    let req = syncomm_worker::Request {
        id: 1,
        function: "add".into(),
        args: vec![int(2), int(3)],
    };
    let burst = frame::encode_frame(&req).unwrap().repeat(4096);
    let mut threads = Vec::new();
    for reads in [true, false] {
        let s = UnixStream::connect(&pool.path).unwrap();
        if reads {
            let mut r = s.try_clone().unwrap();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(std::io::Read::read(&mut r, &mut buf), Ok(n) if n > 0) {}
            }));
        }
        let mut w = s;
        let burst = burst.clone();
        // Until the server closes the connection.
        threads.push(std::thread::spawn(
            move || while w.write_all(&burst).is_ok() {},
        ));
    }
    let pid = pool.proc.pid();
    // Under way: the reader has had answers.
    let mut c = pool.client();
    assert_eq!(c.call("add", &[int(1), int(1)]).unwrap(), Ok(int(2)));
    let (rss0, _) = rss_and_cpu(pid).unwrap();
    pool.proc.signal(Signal::SIGTERM);
    let deadline = std::time::Instant::now() + HANG;
    while pool.proc.is_running() {
        if let Some((rss, _)) = rss_and_cpu(pid) {
            assert!(
                rss < rss0 + 32 * 1024,
                "the draining server grew from {rss0} KiB to {rss} KiB"
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(pool.proc.wait_timeout(HANG).code(), Some(0));
    assert!(!pool.path.exists(), "socket removed");
    for t in threads {
        t.join().unwrap();
    }
}

/// `kill -9` of children in the middle of a pipelined burst (4,000 calls,
/// half of them `sleep_ms 1` so the children are busy, 256 in flight, three
/// kills): every call is answered exactly once, each answer is either the
/// right result or "died from signal 9 while running ...", and each kill
/// costs at most the one call its child was running (the calls queued
/// behind it go to the replacement).
#[test]
fn children_killed_during_a_pipelined_burst_lose_and_repeat_nothing() {
    let env = Env::new();
    let pool = Pool::start(&env, 2, &[]);
    let mut c = pool.client();
    // A lost answer fails the test instead of hanging it.
    c.set_timeout(Some(HANG)).unwrap();
    const CALLS: i64 = 4_000;
    const WINDOW: usize = 256;
    let kill = |pid: i32| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap()
    };
    let mut expect: HashMap<u64, Value> = HashMap::new();
    let (mut seen, mut next, mut died, mut kills) = (0i64, 0i64, 0, 0);
    while seen < CALLS {
        while next < CALLS && c.in_flight() < WINDOW {
            let (id, want) = if next % 2 == 0 {
                (c.send("add", &[int(next), int(1)]).unwrap(), int(next + 1))
            } else {
                (c.send("sleep_ms", &[int(1)]).unwrap(), Value::UInt(1))
            };
            expect.insert(id, want);
            next += 1;
        }
        let (id, r) = c.recv().unwrap();
        let want = expect
            .remove(&id)
            .unwrap_or_else(|| panic!("unknown or duplicate answer {id}"));
        match r {
            Ok(v) => assert_eq!(v, want),
            Err(e) => {
                assert_eq!(e.kind, CallErrorKind::WorkerDied, "{e:?}");
                assert!(
                    e.message.contains("died from signal 9 while running"),
                    "{e:?}"
                );
                died += 1;
            }
        }
        seen += 1;
        match seen {
            1_000 => kill(pool.pids[0]),
            2_000 => kill(pool.pids[1]),
            3_000 => kill(pool.wait_started(1)),
            _ => continue,
        }
        kills += 1;
    }
    assert!(expect.is_empty());
    assert_eq!(kills, 3);
    assert!(died <= kills, "{died} calls lost to {kills} kills");
    assert_eq!(c.call("add", &[int(1), int(1)]).unwrap(), Ok(int(2)));
}

/// Out of file descriptors (the server run under `prlimit --nofile=30`,
/// then 60 connections at once): the server rests its listener instead of
/// spinning on `accept` (it used to burn a CPU and log a warning per
/// attempt), keeps serving the callers it has, and takes newcomers again
/// once descriptors free up.
#[test]
fn running_out_of_descriptors_neither_spins_nor_stops_serving() {
    let env = Env::new();
    let name = unique_name("fds");
    let Some(mut cmd) = under_nofile_limit(&env, 30, "worker") else {
        return;
    };
    cmd.args(["serve", "--name", &name, "--workers", "1"]);
    let mut proc = Proc::spawn(cmd);
    let lines = proc.stdout_lines();
    lines.wait_for(|l| l.starts_with("serving "));
    let path = env.dir().join(format!("worker.{name}.sock"));
    let mut c = Client::connect_path(&path).unwrap();
    c.set_timeout(Some(HANG)).unwrap();
    assert_eq!(c.call("add", &[int(1), int(1)]).unwrap(), Ok(int(2)));
    let flood: Vec<UnixStream> = (0..60)
        .map(|_| UnixStream::connect(&path).expect("connect (the backlog takes it)"))
        .collect();
    // The callers it has are served even now.
    assert_eq!(c.call("add", &[int(2), int(2)]).unwrap(), Ok(int(4)));
    // Spinning shows as CPU time: a spinning server spends most of this
    // second on the CPU, a resting one almost none. (A loaded machine can
    // only make a spinning server pass, never a resting one fail.)
    let (_, before) = rss_and_cpu(proc.pid()).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (_, after) = rss_and_cpu(proc.pid()).unwrap();
    assert!(
        after - before < 20,
        "the server spent {} ticks of one second on the CPU",
        after - before
    );
    assert_eq!(c.call("add", &[int(3), int(3)]).unwrap(), Ok(int(6)));
    drop(flood);
    wait_until("the server to serve a newcomer again", || {
        Client::connect_path(&path)
            .and_then(|mut c| c.call("add", &[int(4), int(4)]))
            .is_ok_and(|r| r == Ok(int(8)))
    });
    assert!(proc.is_running());
}

/// A server that vanishes under a caller (it accepts, then resets the
/// connection) makes `worker call` fail with one line and exit 1 — never exit
/// 0 with no output: a broken pipe on the socket is not the quiet `| head -1`
/// case, which is only for stdout. (Found by the chaos soak: before the fix,
/// 21 of 30 such calls exited 0 silently.)
#[test]
fn a_server_that_resets_the_connection_is_an_error_not_a_quiet_success() {
    use std::os::unix::net::UnixListener;
    let env = Env::new();
    let sock = env.dir().join("worker.reset.sock");
    let listener = UnixListener::bind(&sock).expect("bind the fake server");
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    let rounds = 30;
    let server = std::thread::spawn(move || {
        for _ in 0..rounds {
            let Ok((conn, _)) = listener.accept() else {
                return;
            };
            // SO_LINGER 0: close sends a reset, as a killed server's kernel does.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            nix::sys::socket::setsockopt(&conn, nix::sys::socket::sockopt::Linger, &linger)
                .expect("SO_LINGER");
            drop(conn);
        }
    });
    for round in 0..rounds {
        let mut cmd = env.cmd("worker");
        cmd.args(["call", "--name", "reset", "add", "1", "2"]);
        let out = run(cmd);
        let err = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "round {round}: stdout {:?}, stderr {err:?}",
            text(&out.stdout)
        );
        assert!(
            out.stdout.is_empty(),
            "round {round}: {:?}",
            text(&out.stdout)
        );
        assert_eq!(err.lines().count(), 1, "round {round}: {err}");
        assert!(err.starts_with("worker: "), "round {round}: {err}");
    }
    server.join().expect("fake server");
}
