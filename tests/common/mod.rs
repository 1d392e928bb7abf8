//! Support shared by the end-to-end tests: run the real binaries in a private
//! runtime directory, and never leave a child behind.
//!
//! Each test file does `mod common;` and uses what it needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest any single wait in a test may take before the test is declared hung.
pub const HANG: Duration = Duration::from_secs(60);

/// Path of one of the package's binaries.
pub fn bin(name: &str) -> PathBuf {
    let p = match name {
        "producer" => env!("CARGO_BIN_EXE_producer"),
        "consumer" => env!("CARGO_BIN_EXE_consumer"),
        "monitor" => env!("CARGO_BIN_EXE_monitor"),
        "filter" => env!("CARGO_BIN_EXE_filter"),
        "worker" => env!("CARGO_BIN_EXE_worker"),
        "ping-server" => env!("CARGO_BIN_EXE_ping-server"),
        "ping-client" => env!("CARGO_BIN_EXE_ping-client"),
        "guard" => env!("CARGO_BIN_EXE_guard"),
        "scribe" => env!("CARGO_BIN_EXE_scribe"),
        "gate" => env!("CARGO_BIN_EXE_gate"),
        "discover" => env!("CARGO_BIN_EXE_discover"),
        "syncomm-bench" => env!("CARGO_BIN_EXE_syncomm-bench"),
        "syncomm" => env!("CARGO_BIN_EXE_syncomm"),
        "syncomm-chaos" => env!("CARGO_BIN_EXE_syncomm-chaos"),
        other => panic!("unknown binary {other}"),
    };
    PathBuf::from(p)
}

/// A private runtime directory (`SYNCOMM_DIR`) for one test, removed at the
/// end together with the kernel objects whose record names it (a gate's set,
/// a board's segment: see `syncomm_admin::leaks`). Its name
/// `syncomm-test-CARGO_PID-PID-…` tells which `cargo test` run made it, so the
/// end-of-suite leak check (`tests/zz_leaks.rs`) looks only at its own run.
pub struct Env {
    dir: Option<tempfile::TempDir>,
}

/// The prefix of the runtime directories of this `cargo test` run (the
/// test binaries are children of one cargo process).
pub fn run_prefix() -> String {
    format!("syncomm-test-{}-", nix::unistd::getppid())
}

impl Env {
    /// A fresh runtime directory.
    pub fn new() -> Env {
        Env {
            dir: Some(
                tempfile::Builder::new()
                    .prefix(&format!("{}{}-", run_prefix(), std::process::id()))
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .tempdir()
                    .expect("create temp dir"),
            ),
        }
    }

    /// The runtime directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("env alive").path()
    }

    /// A command for binary `name` with `SYNCOMM_DIR` set to this environment.
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env("SYNCOMM_DIR", self.dir());
        c.env_remove("RUST_LOG");
        c
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            let path = d.path().to_owned();
            let abs = syncomm_common::attribution::absolute_dir(&path);
            drop(d);
            // What the test's programs left outside the directory: remove
            // what nobody uses; the leak check reports anything still there.
            let _ = syncomm_admin::leaks::clean_orphans_of(&abs, Duration::from_secs(5));
        }
    }
}

/// A command for binary `name` run under `prlimit --nofile=LIMIT:LIMIT`
/// (util-linux, which `.ci/run` installs), with this environment's
/// `SYNCOMM_DIR`: for testing what a program does when it runs out of file
/// descriptors. `None` (and a note on stderr) when prlimit is missing.
pub fn under_nofile_limit(env: &Env, limit: u32, name: &str) -> Option<Command> {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("prlimit(1) not installed: skipped");
        return None;
    }
    let mut c = Command::new("prlimit");
    c.env("SYNCOMM_DIR", env.dir())
        .env_remove("RUST_LOG")
        .arg(format!("--nofile={limit}:{limit}"))
        .arg(bin(name));
    Some(c)
}

/// A name no other test (or test process) uses: `prefix-PID-N`.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running child that is killed (SIGKILL) and reaped when dropped, so a
/// failing test leaves nothing behind.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr piped (stdin null unless set).
    pub fn spawn(mut cmd: Command) -> Proc {
        let name = format!("{:?}", cmd.get_program());
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { child, name }
    }

    /// Starts `cmd` as it is configured (the caller sets the stdio).
    pub fn spawn_raw(mut cmd: Command) -> Proc {
        let name = format!("{:?}", cmd.get_program());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { child, name }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// Sends SIGKILL.
    pub fn kill9(&self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
    }

    /// Takes the stdout pipe as a line reader. Keep the reader alive while the
    /// child runs: dropping it closes the pipe, and the child's next write then
    /// fails with EPIPE (`p.stdout_lines().wait_for(..)` as a temporary is a bug).
    pub fn stdout_lines(&mut self) -> Lines {
        Lines::new(self.child.stdout.take().expect("stdout piped"))
    }

    /// Takes the stderr pipe as a line reader.
    pub fn stderr_lines(&mut self) -> Lines {
        Lines::new(self.child.stderr.take().expect("stderr piped"))
    }

    /// Waits for exit, at most `limit`; panics (after killing) on a hang.
    pub fn wait_timeout(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not exit within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for exit (bounded by [`HANG`]) and collects the rest of stdout and stderr.
    pub fn finish(mut self) -> Output {
        let out = self.child.stdout.take().map(drain_in_thread);
        let err = self.child.stderr.take().map(drain_in_thread);
        let status = self.wait_timeout(HANG);
        let stdout = out.map(|h| h.join().unwrap()).unwrap_or_default();
        let stderr = err.map(|h| h.join().unwrap()).unwrap_or_default();
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn drain_in_thread<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Lines from a child's pipe, read on a thread so waits can be bounded.
pub struct Lines {
    rx: mpsc::Receiver<String>,
}

impl Lines {
    fn new<R: Read + Send + 'static>(r: R) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        Lines { rx }
    }

    /// The next line, or `None` at end of stream; panics after `limit`.
    pub fn next_within(&self, limit: Duration) -> Option<String> {
        match self.rx.recv_timeout(limit) {
            Ok(l) => Some(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no line within {limit:?}"),
        }
    }

    /// The next line (bounded by [`HANG`]).
    pub fn next_line(&self) -> Option<String> {
        self.next_within(HANG)
    }

    /// Reads lines until one satisfies `pred` and returns it; panics at end of
    /// stream or after [`HANG`].
    pub fn wait_for(&self, mut pred: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + HANG;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left) {
                Some(l) if pred(&l) => return l,
                Some(l) => seen.push(l),
                None => panic!("stream ended before the expected line; it said: {seen:#?}"),
            }
        }
    }

    /// Every remaining line until end of stream (bounded by [`HANG`]).
    pub fn rest(&self) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(l) = self.next_line() {
            v.push(l);
        }
        v
    }
}

/// Runs `cmd` to completion (stdin null), bounded by [`HANG`].
pub fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null());
    Proc::spawn(cmd).finish()
}

/// Polls `cond` every few milliseconds until it holds; panics after [`HANG`].
/// For waiting on state that has no notification (a file appearing).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > HANG {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether process `pid` has the file at `path` open (a link in
/// `/proc/PID/fd` names it).
pub fn has_open(pid: i32, path: &std::path::Path) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.filter_map(Result::ok)
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == path))
}

/// Whether process `pid` lives, by the one rule of `syncomm_sys::proc`
/// (a zombie, a dead or an exiting process is not alive).
pub fn pid_alive(pid: i32) -> bool {
    matches!(
        syncomm_sys::proc::liveness(pid, None),
        syncomm_sys::proc::Liveness::Alive
    )
}

/// The worker server's reply on a raw connection that broke the protocol:
/// one `ConnectionError` (returned), then the end of the stream.
pub fn expect_connection_error(mut s: std::os::unix::net::UnixStream) -> String {
    use syncomm_common::frame;
    use syncomm_worker::ToClient;
    s.set_read_timeout(Some(HANG)).unwrap();
    let msg = match frame::read_frame::<_, ToClient>(&mut s, 1 << 20).expect("a reply frame") {
        Some(ToClient::ConnectionError(why)) => why,
        other => panic!("expected a connection error, got {other:?}"),
    };
    assert!(
        frame::read_frame::<_, ToClient>(&mut s, 1 << 20)
            .unwrap()
            .is_none(),
        "closed after the error"
    );
    msg
}

/// A tmux server of the test's own (its socket in the test's runtime
/// directory), for programs that must see a terminal; killed on drop.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// A server for `env`; `None` (the test is skipped, and says so) when
    /// tmux is not installed.
    pub fn server(env: &Env) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("tmux not installed: skipped");
            return None;
        }
        Some(Tmux {
            socket: env.dir().join("tmux.sock"),
        })
    }

    /// Runs `tmux ARGS` against this server.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux")
    }

    /// Starts `cmd` (a shell command line) in a new detached session of
    /// `width` x `height`.
    pub fn session(&self, name: &str, width: u16, height: u16, cmd: &str) {
        let (w, h) = (width.to_string(), height.to_string());
        let out = self.run(&["new-session", "-d", "-s", name, "-x", &w, "-y", &h, cmd]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            text(&out.stderr)
        );
    }

    /// What session `name` shows, as text.
    pub fn screen(&self, name: &str) -> String {
        text(&self.run(&["capture-pane", "-p", "-t", name]).stdout)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
