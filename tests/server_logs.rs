//! Servers never block on their own output (issue 12, items 1-3): the real
//! `worker serve` and `ping-server` with a log reader that stalls (a pipe
//! nobody reads) or goes away (`| head -1`). The rule for both: keep
//! serving, drop and count the log lines that cannot be written, and never
//! let shutdown wait on output.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use syncomm_worker::{CallErrorKind, Client, Value};

/// How long a test waits for a process that should exit promptly; only stops a hang.
const PROMPT: Duration = Duration::from_secs(20);

/// Shrinks a pipe to one page, so a stalled reader shows in a few lines.
fn shrink_pipe(out: &ChildStdout) {
    let _ = nix::fcntl::fcntl(out, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096));
}

/// Reads lines from `r` until one starts with `prefix`; returns it.
fn read_until_prefix(r: &mut impl BufRead, prefix: &str) -> String {
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).expect("read") > 0,
            "no {prefix:?} line"
        );
        if line.starts_with(prefix) {
            return line;
        }
    }
}

/// Starts `worker serve --name NAME --workers 2` with stdout on a pipe; reads
/// its start lines (up to `serving`) and returns the process and the pipe.
fn start_worker(env: &Env, name: &str) -> (Proc, BufReader<ChildStdout>, PathBuf) {
    let mut c = env.cmd("worker");
    c.args(["serve", "--name", name, "--workers", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn_raw(c);
    let out = proc.child.stdout.take().unwrap();
    shrink_pipe(&out);
    let mut out = BufReader::new(out);
    read_until_prefix(&mut out, "serving ");
    (proc, out, env.dir().join(format!("worker.{name}.sock")))
}

/// `abort` calls `n` times (each kills a child: two log lines), then checks
/// that a normal call is still answered.
fn abort_calls_then_add(path: &Path, n: usize) {
    let mut client = Client::connect_path(path).expect("connect to the pool");
    client.set_timeout(Some(PROMPT)).unwrap();
    for i in 0..n {
        match client.call("abort", &[]) {
            Ok(Err(e)) => assert_eq!(e.kind, CallErrorKind::WorkerDied, "call {i}: {e}"),
            other => panic!("call {i}: abort answered {other:?}"),
        }
    }
    let r = client
        .call("add", &[Value::Int(2), Value::Int(3)])
        .expect("add answered");
    assert_eq!(r.expect("add succeeded"), Value::Int(5));
}

/// Issue 12 item 1: `worker serve` with stdout on a pipe that nobody reads
/// (shrunk to one page) answers 1,000 failing calls — each logs two lines,
/// far more than the pipe and the log backlog hold — and then a normal one.
/// It used to freeze after the pipe filled (every caller timed out). At
/// SIGTERM it exits 0 without waiting on the stalled pipe and reports the
/// dropped lines on stderr.
#[test]
fn worker_serve_with_an_unread_stdout_keeps_answering() {
    let env = Env::new();
    let name = unique_name("stall");
    let (mut proc, out, path) = start_worker(&env, &name);
    abort_calls_then_add(&path, 1000);
    proc.signal(Signal::SIGTERM);
    let mut err = proc.child.stderr.take().unwrap();
    assert_eq!(proc.wait_timeout(PROMPT).code(), Some(0));
    let mut msg = String::new();
    err.read_to_string(&mut msg).unwrap();
    assert!(msg.contains("log lines dropped"), "stderr: {msg}");
    drop(out);
}

/// Issue 12 item 2: `ping-server` whose log reader stalls (a pipe never read)
/// keeps answering, and on SIGTERM exits promptly with its usual status 0
/// (it used to wait for the log thread, blocked writing, until the reader
/// drained); the count of dropped lines goes to stderr.
#[test]
fn ping_server_with_a_stalled_reader_exits_on_sigterm() {
    let env = Env::new();
    let mut c = env.cmd("ping-server");
    c.args(["--tcp", "127.0.0.1:0", "--threads", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn_raw(c);
    let out = proc.child.stdout.take().unwrap();
    shrink_pipe(&out);
    let mut out = BufReader::new(out);
    let first = read_until_prefix(&mut out, "listening on ");
    let port = first.trim().rsplit(':').next().unwrap().to_owned();
    let s = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    s.set_read_timeout(Some(PROMPT)).unwrap();
    let mut conn = BufReader::new(s);
    // 20,000 log lines, about 900 KB: far more than the pipe and the backlog.
    for _ in 0..20 {
        conn.get_mut()
            .write_all("ping\n".repeat(1000).as_bytes())
            .unwrap();
        for _ in 0..1000 {
            let mut line = String::new();
            conn.read_line(&mut line).unwrap();
            assert_eq!(line, "pong\n");
        }
    }
    proc.signal(Signal::SIGTERM);
    let mut err = proc.child.stderr.take().unwrap();
    assert_eq!(proc.wait_timeout(PROMPT).code(), Some(0));
    let mut msg = String::new();
    err.read_to_string(&mut msg).unwrap();
    assert!(msg.contains("log lines dropped"), "stderr: {msg}");
    drop(out);
}

/// Pings over a fresh connection each time; panics on a wrong or missing answer.
fn ping_n(connect: impl Fn() -> std::io::Result<Box<dyn ReadWrite>>, n: usize) {
    for i in 0..n {
        let mut s = connect().unwrap_or_else(|e| panic!("ping {i}: connect: {e}"));
        s.write_all(format!("ping {i}\n").as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, format!("pong {i}\n"), "ping {i}");
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Issue 12 item 3, `ping-server | head -1`: once its stdout is closed after
/// the first line, the server keeps serving (it used to exit 0 at the first
/// log line, and clients then got "connection refused"); SIGTERM still exits 0.
#[test]
fn ping_server_keeps_serving_after_its_stdout_closes() {
    let env = Env::new();
    let mut c = env.cmd("ping-server");
    c.args(["--tcp", "127.0.0.1:0", "--threads", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn_raw(c);
    let mut out = BufReader::new(proc.child.stdout.take().unwrap());
    let first = read_until_prefix(&mut out, "listening on ");
    drop(out); // `head -1` exits
    let port = first.trim().rsplit(':').next().unwrap().to_owned();
    let addr = format!("127.0.0.1:{port}");
    ping_n(
        || {
            let s = TcpStream::connect(&addr)?;
            s.set_read_timeout(Some(PROMPT))?;
            Ok(Box::new(s))
        },
        50,
    );
    assert!(proc.is_running());
    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait_timeout(PROMPT).code(), Some(0));
}

/// The same with the local socket and stdout closed before anything was
/// written (the `listening on` lines themselves hit a closed pipe).
#[test]
fn ping_server_local_with_stdout_closed_from_the_start_serves() {
    let env = Env::new();
    let name = unique_name("closed");
    let mut c = env.cmd("ping-server");
    c.args(["--no-tcp", "--local", &name, "--threads", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn_raw(c);
    drop(proc.child.stdout.take());
    let path = env.dir().join(format!("ping.{name}.sock"));
    wait_until("the socket or an exit", || {
        UnixStream::connect(&path).is_ok() || !proc.is_running()
    });
    ping_n(
        || {
            let s = UnixStream::connect(&path)?;
            s.set_read_timeout(Some(PROMPT))?;
            Ok(Box::new(s))
        },
        50,
    );
    assert!(proc.is_running());
    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait_timeout(PROMPT).code(), Some(0));
    assert!(!path.exists(), "the socket is removed at exit");
}

/// Issue 12 item 3 for `worker serve`: its stdout closed after the start
/// lines, it keeps serving (calls that log lines included) and exits 0 on
/// SIGTERM — the same rule as ping-server.
#[test]
fn worker_serve_keeps_serving_after_its_stdout_closes() {
    let env = Env::new();
    let name = unique_name("closed");
    let (mut proc, out, path) = start_worker(&env, &name);
    drop(out);
    abort_calls_then_add(&path, 20);
    assert!(proc.is_running());
    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait_timeout(PROMPT).code(), Some(0));
}
