//! Hostile input against the real `worker serve` (issue 11): frames that
//! declare more than they hold, values nested a million deep, cut frames,
//! frames at and past the size limit, a caller sending one byte at a time,
//! a thousand idle connections, a child and a server that answer with such
//! frames. Each test then shows that a normal caller is still answered
//! correctly and that the server's memory (VmHWM from /proc) stayed bounded.
mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use common::*;
use syncomm_common::frame;
use syncomm_worker::{CallErrorKind, Client, ToClient, Value};

/// A running `worker serve` and its log.
struct Pool {
    proc: Proc,
    lines: Lines,
    path: PathBuf,
    /// Child pids by slot (index 0 is worker 1).
    pids: Vec<i32>,
}

impl Pool {
    fn start(env: &Env, workers: usize, extra: &[&str]) -> Pool {
        Pool::start_cmd(env, workers, extra, |_| {})
    }

    fn start_cmd(
        env: &Env,
        workers: usize,
        extra: &[&str],
        tweak: impl FnOnce(&mut std::process::Command),
    ) -> Pool {
        let name = unique_name("hostile");
        let mut cmd = env.cmd("worker");
        cmd.args(["serve", "--name", &name, "--workers", &workers.to_string()]);
        cmd.args(extra);
        tweak(&mut cmd);
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
        Pool {
            proc,
            lines,
            path: env.dir().join(format!("worker.{name}.sock")),
            pids,
        }
    }

    fn client(&self) -> Client {
        Client::connect_path(&self.path).expect("connect to the pool")
    }

    /// A normal call is answered correctly.
    fn still_serves(&mut self) {
        assert!(self.proc.is_running(), "the server died");
        let mut c = self.client();
        c.set_timeout(Some(HANG)).unwrap();
        assert_eq!(
            c.call("add", &[Value::Int(20), Value::Int(22)]).unwrap(),
            Ok(Value::Int(42))
        );
        assert_eq!(
            c.call("upper", &[Value::Text("still here".into())])
                .unwrap(),
            Ok(Value::Text("STILL HERE".into()))
        );
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.path).expect("connect");
        s.set_read_timeout(Some(HANG)).unwrap();
        s
    }
}

/// The pid in "worker N started (pid P)".
fn started_pid(line: &str) -> Option<i32> {
    let rest = line.split_once(" started (pid ")?.1;
    rest.strip_suffix(')')?.parse().ok()
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

/// `VmHWM` or `VmRSS` of process `pid`, in bytes.
fn mem(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

const MIB: u64 = 1 << 20;

/// A frame around `body`.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A varint `u64` the way bincode writes a length past 2^32: 0xfd + 8 bytes.
fn huge_len(n: u64) -> Vec<u8> {
    let mut v = vec![0xfd];
    v.extend_from_slice(&n.to_le_bytes());
    v
}

/// A Request frame of 14 bytes whose function name declares 2^60 bytes.
fn declared_huge_string() -> Vec<u8> {
    let mut body = vec![1u8]; // id
    body.extend(huge_len(1 << 60));
    framed(&body)
}

/// A Request frame whose one argument is `levels` lists deep (2 bytes a level).
fn deep_nesting(levels: usize) -> Vec<u8> {
    let mut body = vec![1u8, 3, b'n', b'e', b'g', 1]; // id, "neg", one argument
    for _ in 0..levels {
        body.extend_from_slice(&[4, 1]); // List of one item
    }
    body.extend_from_slice(&[1, 0]); // Int 0
    framed(&body)
}

/// A frame of 14 bytes declaring a 2^60-byte string: that connection gets
/// an error and is closed, the server logs one line naming the peer, and a
/// normal caller is answered (the server used to abort trying to allocate).
#[test]
fn declared_huge_string_closes_only_that_connection() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 1, &[]);
    let frame = declared_huge_string();
    assert!(frame.len() < 20);
    let mut s = pool.connect();
    s.write_all(&frame).unwrap();
    let why = expect_connection_error(s);
    assert!(why.contains("declares more data"), "{why}");
    let line = pool.lines.wait_for(|l| l.contains("broke the protocol"));
    assert!(
        line.contains(&format!("pid {}", std::process::id()))
            && line.contains("declares more data"),
        "{line}"
    );
    pool.still_serves();
    let hwm = mem(pool.proc.pid(), "VmHWM");
    assert!(hwm < 64 * MIB, "peak RSS {hwm}");
}

/// A ~1 MB frame of values nested 500,000 lists deep: a protocol error for
/// that connection (the server used to overflow its stack and abort).
#[test]
fn deep_nesting_closes_only_that_connection() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 1, &[]);
    let frame = deep_nesting(500_000);
    assert!(frame.len() > 1_000_000);
    let mut s = pool.connect();
    s.write_all(&frame).unwrap();
    let why = expect_connection_error(s);
    assert!(why.contains("nested deeper than 64 levels"), "{why}");
    pool.lines.wait_for(|l| l.contains("broke the protocol"));
    // 64 levels is allowed (and answered: neg wants an int, so it is refused
    // politely).
    let mut c = pool.client();
    let mut v = Value::Int(1);
    for _ in 1..64 {
        v = Value::List(vec![v]);
    }
    let refused = c.call("neg", &[v]).unwrap().unwrap_err();
    assert_eq!(refused.kind, CallErrorKind::BadArguments);
    pool.still_serves();
}

/// A child (here a script standing in for one) that answers its first call
/// with a frame declaring a 2^60-byte text: the call fails with a clear
/// error, the child is killed and replaced, and the pool keeps serving.
#[test]
fn hostile_child_answer_is_treated_like_a_dead_child() {
    let env = Env::new();
    let script = env.dir().join("bad-child.sh");
    let marker = env.dir().join("bad-child.done");
    // Response { id: 1, result: Ok(Text(<2^60 bytes>)) } as octal escapes.
    let body: Vec<u8> = [vec![1u8, 0, 3], huge_len(1 << 60)].concat();
    let escaped: String = framed(&body).iter().map(|b| format!("\\{b:03o}")).collect();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ -e '{m}' ]; then exec \"$REAL_WORKER\" \"$@\"; fi\n\
             touch '{m}'\n\
             head -c 4 >/dev/null\n\
             printf '{escaped}'\n\
             exec cat >/dev/null\n",
            m = marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut pool = Pool::start_cmd(
        &env,
        1,
        &["--child-program", script.to_str().unwrap()],
        |c| {
            c.env("REAL_WORKER", bin("worker"));
        },
    );
    let mut c = pool.client();
    let err = c
        .call("add", &[Value::Int(1), Value::Int(2)])
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind, CallErrorKind::WorkerDied, "{err}");
    assert!(
        err.message.contains("broke the protocol while running add")
            && err.message.contains("declares more data"),
        "{err}"
    );
    pool.lines.wait_for(|l| l.contains("broke the protocol"));
    pool.lines.wait_for(|l| l.starts_with("worker 1 started"));
    pool.still_serves();
}

/// A fake server that answers each connection's first request with `answer`.
fn fake_server(path: &Path, answer: Vec<u8>) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut header = [0u8; 4];
            let _ = s.read_exact(&mut header);
            let mut body = vec![0u8; u32::from_le_bytes(header) as usize];
            let _ = s.read_exact(&mut body);
            let _ = s.write_all(&answer);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
    })
}

/// `worker call` against a server that answers with a frame declaring a
/// 2^60-byte text, or with values nested 100,000 deep: one line, exit 1
/// (it used to abort).
#[test]
fn worker_call_refuses_a_hostile_answer_in_one_line() {
    let env = Env::new();
    let answers = [
        // ToClient::Answer(Response { id: 1, result: Ok(Text(<2^60 bytes>)) })
        (
            framed(&[vec![0u8, 1, 0, 3], huge_len(1 << 60)].concat()),
            "declares more data",
        ),
        (
            framed(&[vec![0u8, 1, 0], [4u8, 1].repeat(100_000), vec![1, 0]].concat()),
            "nested deeper than 64 levels",
        ),
        // A prefix of 2^32-1: over the answer limit, refused unread.
        (u32::MAX.to_le_bytes().to_vec(), "over the limit"),
    ];
    for (answer, why) in answers {
        let name = unique_name("fake");
        let path = env.dir().join(format!("worker.{name}.sock"));
        let server = fake_server(&path, answer);
        let mut cmd = env.cmd("worker");
        cmd.args(["call", "--name", &name, "add", "1", "2"]);
        let out = run(cmd);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("worker: add failed: the server sent a bad answer: ")
                && err.contains(why),
            "{err}"
        );
        server.join().unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}

/// A frame cut short: by a caller that half-closes (it gets the error), and
/// by one that vanishes (nothing to tell); the server serves on.
#[test]
fn truncated_frames_close_only_their_connection() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 1, &[]);
    let mut s = pool.connect();
    let mut cut = 1000u32.to_le_bytes().to_vec();
    cut.extend_from_slice(&[7u8; 10]);
    s.write_all(&cut).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let why = expect_connection_error(s);
    assert!(
        why.contains("stream ended inside a frame (14 of 1004 bytes)"),
        "{why}"
    );
    let line = pool.lines.wait_for(|l| l.contains("broke the protocol"));
    assert!(line.contains("stream ended inside a frame"), "{line}");
    // Only a part of a header, then gone.
    let mut s = pool.connect();
    s.write_all(&[5, 0]).unwrap();
    drop(s);
    let mut s = pool.connect();
    s.write_all(&cut).unwrap();
    drop(s);
    pool.still_serves();
}

/// A request body of exactly `--max-frame` bytes is served; one byte more is
/// refused at its header, before its body is read.
#[test]
fn a_frame_of_exactly_the_limit_is_served_one_more_byte_is_refused() {
    const LIMIT: usize = 65536;
    let env = Env::new();
    let mut pool = Pool::start(&env, 1, &["--max-frame", &LIMIT.to_string()]);
    let request = |body_len: usize| {
        let mut text_len = body_len;
        loop {
            let req = syncomm_worker::Request {
                id: 1,
                function: "upper".into(),
                args: vec![Value::Text("a".repeat(text_len))],
            };
            let wire = frame::encode_frame(&req).unwrap();
            match (wire.len() - 4).cmp(&body_len) {
                std::cmp::Ordering::Equal => return (wire, text_len),
                std::cmp::Ordering::Greater => text_len -= 1,
                std::cmp::Ordering::Less => unreachable!("shrinks by one byte a step"),
            }
        }
    };
    let (at_limit, n) = request(LIMIT);
    assert_eq!(u32::from_le_bytes(at_limit[..4].try_into().unwrap()), 65536);
    let mut s = pool.connect();
    s.write_all(&at_limit).unwrap();
    match frame::read_frame::<_, ToClient>(&mut s, 1 << 20).unwrap() {
        Some(ToClient::Answer(r)) => assert_eq!(r.result, Ok(Value::Text("A".repeat(n)))),
        other => panic!("expected an answer, got {other:?}"),
    }
    let (over, _) = request(LIMIT + 1);
    let mut s = pool.connect();
    s.write_all(&over[..4]).unwrap(); // the header alone is refused
    let why = expect_connection_error(s);
    assert!(
        why.contains("frame of 65537 bytes is over the limit of 65536 bytes"),
        "{why}"
    );
    pool.still_serves();
}

/// A caller sending its request one byte at a time (a slowloris) holds up
/// nobody: others are answered meanwhile, and it gets its own answer.
#[test]
fn one_byte_at_a_time_holds_up_nobody() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 1, &[]);
    let req = syncomm_worker::Request {
        id: 77,
        function: "neg".into(),
        args: vec![Value::Int(5)],
    };
    let wire = frame::encode_frame(&req).unwrap();
    let mut slow = pool.connect();
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let mut slow = slow.try_clone().unwrap();
        std::thread::spawn(move || {
            for (i, b) in wire.iter().enumerate() {
                slow.write_all(&[*b]).unwrap();
                if i == wire.len() / 2 {
                    tx.send(()).unwrap(); // halfway: let the others go
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    rx.recv().unwrap();
    pool.still_serves();
    writer.join().unwrap();
    match frame::read_frame::<_, ToClient>(&mut slow, 1 << 20).unwrap() {
        Some(ToClient::Answer(r)) => {
            assert_eq!((r.id, r.result), (77, Ok(Value::Int(-5))));
        }
        other => panic!("expected the answer, got {other:?}"),
    }
}

/// Raises this process's soft open-file limit toward `want` (the hard limit
/// caps it); returns the limit now in force.
fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let new = want.min(hard).max(soft);
    setrlimit(Resource::RLIMIT_NOFILE, new, hard).unwrap();
    new
}

/// A thousand idle connections (each sends nothing, or half a header): a
/// normal caller is still answered, and the server's memory stays small.
#[test]
fn a_thousand_idle_connections_starve_nobody() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 1, &[]);
    let limit = raise_nofile(4096);
    let n = 1000.min(limit as usize - 64);
    let idle: Vec<UnixStream> = (0..n)
        .map(|i| {
            let mut s = pool.connect();
            if i % 2 == 0 {
                s.write_all(&[9, 0]).unwrap();
            }
            s
        })
        .collect();
    // The server has them all (its descriptors), and still answers.
    wait_until("the server to accept them all", || {
        std::fs::read_dir(format!("/proc/{}/fd", pool.proc.pid()))
            .map(|d| d.count() >= n)
            .unwrap_or(false)
    });
    pool.still_serves();
    let hwm = mem(pool.proc.pid(), "VmHWM");
    assert!(hwm < 64 * MIB, "peak RSS {hwm}");
    drop(idle);
    pool.still_serves();
}

/// Every hostile class at once against one server — declared-huge strings
/// and lists, a million-deep nesting, cut frames, oversize headers, garbage —
/// 20 connections of each: every one is refused, the server answers a
/// normal caller, and its peak RSS stays within a bound proportional to
/// what it was sent (not to what the frames declared).
#[test]
fn every_hostile_class_at_once_leaves_memory_bounded() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 2, &[]);
    let idle_rss = mem(pool.proc.pid(), "VmRSS");
    let mut huge_list = vec![1u8, 1, b'f'];
    huge_list.extend(huge_len(1 << 60));
    let mut nested_huge = vec![1u8, 1, b'f', 1];
    for _ in 0..200 {
        nested_huge.push(4);
        nested_huge.extend(huge_len(1 << 58));
    }
    let classes: Vec<Vec<u8>> = vec![
        declared_huge_string(),
        framed(&huge_list),
        framed(&nested_huge),
        deep_nesting(1_000_000),
        u32::MAX.to_le_bytes().to_vec(),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    let mut threads = Vec::new();
    for class in classes {
        for _ in 0..20 {
            let mut s = pool.connect();
            let bytes = class.clone();
            threads.push(std::thread::spawn(move || {
                let _ = s.write_all(&bytes);
                expect_connection_error(s)
            }));
        }
    }
    for t in threads {
        let why = t.join().unwrap();
        assert!(!why.is_empty());
    }
    pool.still_serves();
    let hwm = mem(pool.proc.pid(), "VmHWM");
    eprintln!("idle RSS {} KiB, peak {} KiB", idle_rss >> 10, hwm >> 10);
    // 20 x 2 MB of nesting arrived; decoding one allocates a few MiB.
    assert!(hwm < idle_rss + 96 * MIB, "idle {idle_rss}, peak {hwm}");
}

// ---- issue 12: resource limits and shutdown ---------------------------------

/// Writers pushing `bytes` on each stream from their own threads, counting
/// what they got written; a stream the server stops reading blocks its
/// writer until [`Flood::stop`] shuts the streams down.
struct Flood {
    streams: Vec<UnixStream>,
    written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(streams: Vec<UnixStream>, bytes: std::sync::Arc<Vec<u8>>) -> Flood {
        use std::sync::atomic::Ordering;
        let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads = streams
            .iter()
            .map(|s| {
                let mut s = s.try_clone().unwrap();
                let (bytes, written) = (bytes.clone(), written.clone());
                std::thread::spawn(move || {
                    for piece in bytes.chunks(64 * 1024) {
                        if s.write_all(piece).is_err() {
                            return;
                        }
                        written.fetch_add(piece.len() as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Flood {
            streams,
            written,
            threads,
        }
    }

    /// Waits until the writers make no more progress (all blocked or done):
    /// the server has taken all it will take.
    fn settle(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let mut last = u64::MAX;
        let mut still = 0;
        let start = std::time::Instant::now();
        loop {
            let now = self.written.load(Ordering::Relaxed);
            if self.threads.iter().all(|t| t.is_finished()) {
                return now;
            }
            if now == last {
                still += 1;
                if still >= 5 {
                    return now;
                }
            } else {
                still = 0;
                last = now;
            }
            assert!(start.elapsed() < HANG, "writers never settled");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn stop(self) {
        for s in &self.streams {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// Issue 12 item 10, first case (scaled down): 40 callers each send 3.5 MiB
/// of a 4 MiB frame and stall. With `--max-buffered 8MiB` the server stops
/// reading them at the bound: its peak RSS stays within a few bounds of its
/// idle RSS (it used to read all 140 MiB), and a small call still gets
/// through meanwhile.
#[test]
fn unfinished_frames_cannot_exceed_max_buffered() {
    let env = Env::new();
    let mut pool = Pool::start(
        &env,
        1,
        &["--max-buffered", "8MiB", "--max-frame", "4194304"],
    );
    let idle = mem(pool.proc.pid(), "VmRSS");
    let mut partial = (4u32 << 20).to_le_bytes().to_vec();
    partial.extend(vec![0u8; 7 << 19]);
    let streams: Vec<UnixStream> = (0..40).map(|_| pool.connect()).collect();
    let flood = Flood::start(streams, std::sync::Arc::new(partial));
    let written = flood.settle();
    pool.still_serves();
    let hwm = mem(pool.proc.pid(), "VmHWM");
    eprintln!(
        "sent {} MiB; idle RSS {} KiB, peak {} KiB",
        written >> 20,
        idle >> 10,
        hwm >> 10
    );
    assert!(hwm < idle + 32 * MIB, "idle {idle}, peak {hwm}");
    flood.stop();
    pool.still_serves();
}

/// Issue 12 item 10, second case (scaled down): one caller queues 24 valid
/// calls of 4 MB while the only child is busy. The server stops reading at
/// `--max-buffered 8MiB` (it used to decode and queue all 96 MB), and
/// once the child is free every call is answered, correctly and in full.
#[test]
fn queued_calls_cannot_exceed_max_buffered() {
    let env = Env::new();
    let pool = Pool::start(
        &env,
        1,
        &["--max-buffered", "8MiB", "--max-frame", "4194304"],
    );
    let idle = mem(pool.proc.pid(), "VmRSS");
    let mut busy = pool.client();
    let sleeping = busy.send("sleep_ms", &[Value::UInt(1500)]).unwrap();
    busy.flush().unwrap();
    wait_sleeping(pool.pids[0]);
    let text = "abc ".repeat(1_000_000);
    let mut wire = Vec::new();
    for id in 0..24u64 {
        let req = syncomm_worker::Request {
            id,
            function: "word_count".into(),
            args: vec![Value::Text(text.clone())],
        };
        frame::encode_frame_into(&req, &mut wire).unwrap();
    }
    let caller = pool.connect();
    let flood = Flood::start(vec![caller.try_clone().unwrap()], std::sync::Arc::new(wire));
    flood.settle();
    let hwm = mem(pool.proc.pid(), "VmHWM");
    eprintln!("idle RSS {} KiB, peak {} KiB", idle >> 10, hwm >> 10);
    assert!(hwm < idle + 32 * MIB, "idle {idle}, peak {hwm}");
    assert_eq!(busy.wait_for(sleeping).unwrap(), Ok(Value::UInt(1500)));
    let mut r = caller;
    let mut ids = Vec::new();
    for _ in 0..24 {
        match frame::read_frame::<_, ToClient>(&mut r, 1 << 20).unwrap() {
            Some(ToClient::Answer(resp)) => {
                assert_eq!(resp.result, Ok(Value::UInt(1_000_000)));
                ids.push(resp.id);
            }
            other => panic!("expected an answer, got {other:?}"),
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..24).collect::<Vec<u64>>());
    flood.stop();
}

/// Issue 12 item 11: under `prlimit --nofile=32`, 40 idle connections. Those
/// past the places the limit allows are told "server busy" at once; the
/// idle ones are closed after `--idle-timeout`; then a normal `worker call`
/// is answered, and the server never logged a stream of accept warnings
/// (it used to warn every 100 ms while newcomers waited forever).
#[test]
fn idle_connections_under_a_low_descriptor_limit_starve_nobody() {
    let env = Env::new();
    let name = unique_name("nofile");
    let Some(mut cmd) = under_nofile_limit(&env, 32, "worker") else {
        return;
    };
    cmd.args([
        "serve",
        "--name",
        &name,
        "--workers",
        "1",
        "--idle-timeout",
        "1s",
    ]);
    let mut proc = Proc::spawn(cmd);
    let lines = proc.stdout_lines();
    lines.wait_for(|l| l.starts_with("serving "));
    let path = env.dir().join(format!("worker.{name}.sock"));
    let idle: Vec<UnixStream> = (0..40)
        .map(|_| {
            let s = UnixStream::connect(&path).unwrap();
            s.set_read_timeout(Some(HANG)).unwrap();
            s
        })
        .collect();
    // The last one is past every place: told at once.
    let why = expect_connection_error(idle.last().unwrap().try_clone().unwrap());
    assert!(why.starts_with("server busy"), "{why}");
    // The first one had a place, and lost it to the idle timeout.
    let why = expect_connection_error(idle[0].try_clone().unwrap());
    assert!(why.starts_with("idle timeout"), "{why}");
    lines.wait_for(|l| l.starts_with("closed ") && l.contains("idle connection"));
    let mut call = env.cmd("worker");
    call.args(["call", "--name", &name, "--timeout", "20s", "add", "1", "2"]);
    let out = run(call);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "3\n");
    proc.signal(nix::sys::signal::Signal::SIGTERM);
    let done = proc.finish();
    assert_eq!(done.status.code(), Some(0));
    let warnings = text(&done.stderr);
    assert!(
        warnings.lines().filter(|l| l.contains("accept")).count() <= 1,
        "{warnings}"
    );
    drop(idle);
}

/// Issue 12 item 19: a caller sends 16 long calls to 2 children and leaves;
/// on SIGTERM the server kills the children running calls nobody waits for
/// and exits at once (it used to run all 16: 8 minutes here).
#[test]
fn sigterm_drops_calls_whose_caller_left() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 2, &[]);
    let mut c = pool.client();
    for _ in 0..16 {
        c.send("sleep_ms", &[Value::UInt(60_000)]).unwrap();
    }
    c.flush().unwrap();
    for pid in &pool.pids {
        wait_sleeping(*pid);
    }
    drop(c);
    pool.proc.signal(nix::sys::signal::Signal::SIGTERM);
    let status = pool.proc.wait_timeout(HANG);
    assert_eq!(status.code(), Some(0));
    let rest = pool.lines.rest();
    let killed = rest
        .iter()
        .filter(|l| l.contains("killed: the callers of its"))
        .count();
    assert_eq!(killed, 2, "{rest:?}");
    assert!(rest.iter().any(|l| l == "stopped"), "{rest:?}");
    for pid in &pool.pids {
        wait_until("children to be gone", || !pid_alive(*pid));
    }
}

/// Issue 12 item 19: the drain is bounded: a call still running after
/// `--drain-timeout` is answered with a "shutting down" error, its child is
/// killed, and the server exits 0 (it used to wait for the call, however
/// long).
#[test]
fn sigterm_drain_is_bounded() {
    let env = Env::new();
    let mut pool = Pool::start(&env, 1, &["--drain-timeout", "1s"]);
    let mut c = pool.client();
    let id = c.send("sleep_ms", &[Value::UInt(600_000)]).unwrap();
    c.flush().unwrap();
    wait_sleeping(pool.pids[0]);
    pool.proc.signal(nix::sys::signal::Signal::SIGTERM);
    let err = c.wait_for(id).unwrap().unwrap_err();
    assert_eq!(err.kind, CallErrorKind::ShuttingDown, "{err}");
    assert!(err.message.contains("--drain-timeout 1s"), "{err}");
    assert_eq!(pool.proc.wait_timeout(HANG).code(), Some(0));
    let rest = pool.lines.rest();
    assert!(
        rest.iter().any(|l| l.contains("1 call abandoned")),
        "{rest:?}"
    );
    wait_until("the child to be gone", || !pid_alive(pool.pids[0]));
}

/// Issue 12 item 3 (the rule for servers: keep serving when stdout closes):
/// `worker serve` with its stdout closed after start keeps answering, also
/// through events that log (a child dying, a protocol error), and exits 0
/// on SIGTERM.
#[test]
fn serve_keeps_serving_when_its_stdout_closes() {
    use std::io::BufRead;
    let env = Env::new();
    let name = unique_name("noout");
    let mut cmd = env.cmd("worker");
    cmd.args(["serve", "--name", &name, "--workers", "1"]);
    let mut proc = Proc::spawn(cmd);
    let mut out = std::io::BufReader::new(proc.child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("serving ") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "serve printed its start"
        );
    }
    drop(out); // `worker serve | head -1`
    let path = env.dir().join(format!("worker.{name}.sock"));
    let mut c = Client::connect_path(&path).unwrap();
    for round in 0..3 {
        let died = c.call("abort", &[]).unwrap().unwrap_err();
        assert_eq!(died.kind, CallErrorKind::WorkerDied, "{died}");
        let mut s = UnixStream::connect(&path).unwrap();
        s.set_read_timeout(Some(HANG)).unwrap();
        s.write_all(b"garbage garbage").unwrap();
        expect_connection_error(s);
        assert_eq!(
            c.call("add", &[Value::Int(round), Value::Int(1)]).unwrap(),
            Ok(Value::Int(round + 1))
        );
    }
    assert!(proc.is_running());
    proc.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(proc.wait_timeout(HANG).code(), Some(0));
}
