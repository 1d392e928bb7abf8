//! End-to-end tests of the child's answer batching (`worker --stdio` writes
//! the answers of a pipelined burst with one `write(2)`): fewer writes than
//! answers, and still exact blame when a child stalls or dies behind a
//! burst of quick calls.
mod common;

use std::path::PathBuf;

use common::*;
use syncomm_worker::{CallErrorKind, Client, Value};

/// A running `worker serve` with one child.
struct Pool {
    _proc: Proc,
    path: PathBuf,
    child: i32,
}

impl Pool {
    fn start(env: &Env, extra: &[&str]) -> Pool {
        let name = unique_name("batch");
        let mut cmd = env.cmd("worker");
        cmd.args(["serve", "--name", &name, "--workers", "1"]);
        cmd.args(extra);
        let mut proc = Proc::spawn(cmd);
        let lines = proc.stdout_lines();
        let mut child = None;
        loop {
            let line = lines.next_line().expect("serve printed its start");
            if let Some(rest) = line.split(" started (pid ").nth(1) {
                child = rest.trim_end_matches(')').parse().ok();
            }
            if line.starts_with("serving ") {
                break;
            }
        }
        Pool {
            _proc: proc,
            path: env.dir().join(format!("worker.{name}.sock")),
            child: child.expect("a child started"),
        }
    }

    fn client(&self) -> Client {
        Client::connect_path(&self.path).expect("connect to the pool")
    }
}

fn int(i: i64) -> Value {
    Value::Int(i)
}

/// The `write(2)` calls process `pid` has made (`syscw` in /proc/PID/io).
fn writes(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
    io.lines()
        .find_map(|l| l.strip_prefix("syscw: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("syscw line")
}

/// A pipelined burst of quick calls to one child: every answer right, and
/// the child made fewer writes than it gave answers (it used to make one
/// write per answer).
#[test]
fn a_pipelined_burst_is_answered_with_fewer_writes_than_answers() {
    let env = Env::new();
    let pool = Pool::start(&env, &[]);
    let mut c = pool.client();
    c.set_timeout(Some(HANG)).unwrap();
    assert_eq!(c.call("add", &[int(1), int(1)]).unwrap(), Ok(int(2)));
    let before = writes(pool.child);
    const CALLS: i64 = 2_000;
    const WINDOW: usize = 64;
    let (mut sent, mut got) = (0i64, 0i64);
    let mut expect = std::collections::HashMap::new();
    while got < CALLS {
        while sent < CALLS && c.in_flight() < WINDOW {
            expect.insert(c.send("add", &[int(sent), int(7)]).unwrap(), sent + 7);
            sent += 1;
        }
        let (id, r) = c.recv().unwrap();
        assert_eq!(r, Ok(int(expect.remove(&id).expect("one answer per call"))));
        got += 1;
    }
    let made = writes(pool.child) - before;
    assert!(
        made < CALLS as u64,
        "{made} writes for {CALLS} answers: not batched"
    );
}

/// Quick calls queued in front of a call that stalls past --task-timeout
/// (all read by the child at once): their answers are written before the
/// stalling call starts, so they are answered and the timeout is charged to
/// the stalling call, not to the first of them.
#[test]
fn answers_held_back_are_written_before_a_call_that_may_stall() {
    let env = Env::new();
    let pool = Pool::start(&env, &["--task-timeout", "1s"]);
    let mut c = pool.client();
    c.set_timeout(Some(HANG)).unwrap();
    // The child is busy for a moment, so the next calls queue up in its
    // pipe and are read together.
    let first = c.send("sleep_ms", &[int(300)]).unwrap();
    let quick: Vec<u64> = (0..5)
        .map(|i| c.send("add", &[int(i), int(10)]).unwrap())
        .collect();
    let stall = c.send("sleep_ms", &[int(600_000)]).unwrap();
    assert_eq!(c.wait_for(first).unwrap(), Ok(Value::UInt(300)));
    for (i, id) in quick.iter().enumerate() {
        assert_eq!(c.wait_for(*id).unwrap(), Ok(int(i as i64 + 10)));
    }
    let e = c.wait_for(stall).unwrap().unwrap_err();
    assert_eq!(e.kind, CallErrorKind::Timeout, "{e}");
}
