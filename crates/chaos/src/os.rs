//! The OS calls the driver needs, each wrapped once: starting a participant
//! (parent-death signal, optional descriptor limit), signalling it, and
//! enumerating processes, shared-memory segments and semaphore sets.

use std::fs;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use syncomm_sys::proc;

/// Arranges for the child of `cmd` to be killed when the thread that starts it
/// ends (so even a crashed driver leaves no participant behind), and, with
/// `nofile`, to run under `RLIMIT_NOFILE = nofile` (soft and hard).
pub fn prepare(cmd: &mut Command, nofile: Option<u64>) {
    // SAFETY: the closure runs in the forked child before execve and only
    // makes two system calls (prctl, setrlimit), both async-signal-safe; it
    // allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            if let Some(n) = nofile {
                nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                    .map_err(io::Error::from)?;
            }
            Ok(())
        });
    }
}

/// Sends `sig` to `pid` (errors ignored: it may be gone already).
pub fn kill(pid: i32, sig: Signal) {
    let _ = signal::kill(Pid::from_raw(pid), sig);
}

/// Whether `pid` is a live process, by the one rule of `syncomm_sys::proc`
/// (zombie, dead or exiting is not alive; gone is not alive).
pub fn alive(pid: i32) -> bool {
    matches!(proc::read_stat(pid), Ok(Some(st)) if !st.is_dead())
}

fn pids() -> Vec<i32> {
    proc::all_pids()
}

/// The parent pid of `pid`.
pub fn ppid(pid: i32) -> Option<i32> {
    proc::read_stat(pid).ok().flatten().map(|st| st.ppid)
}

/// The live children of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|&p| ppid(p) == Some(pid) && alive(p))
        .collect()
}

/// A process's command line, spaces between the arguments.
pub fn cmdline(pid: i32) -> String {
    proc::cmdline(pid)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default()
}

/// Live processes whose environment holds `KEY=VALUE` (our marker: every
/// participant inherits it, and so does everything it starts).
pub fn marked(key: &str, value: &str) -> Vec<i32> {
    let needle = format!("{key}={value}\0");
    pids()
        .into_iter()
        .filter(|&p| {
            proc::environ(p).is_some_and(|env| {
                env.split_inclusive(|&b| b == 0)
                    .any(|kv| kv == needle.as_bytes())
            }) && alive(p)
        })
        .collect()
}

/// Names under /dev/shm that start with `prefix`.
pub fn shm_objects(prefix: &str) -> Vec<String> {
    fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a System V semaphore set with `key` exists (/proc/sysvipc/sem).
pub fn sem_key_exists(key: i64) -> bool {
    proc::sysv_sems().iter().any(|s| i64::from(s.key) == key)
}

/// Entries of a directory (names), empty when it cannot be read.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            let mut v: Vec<String> = rd
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default()
}

/// Signals we never send, so a participant dying of one crashed by itself.
const CRASH_SIGNALS: [Signal; 5] = [
    Signal::SIGABRT,
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGILL,
    Signal::SIGFPE,
];

/// How an exit status reads in a report: `exit 1`, `signal 9 (SIGKILL)`.
pub fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => match Signal::try_from(s) {
            Ok(sig) => format!("signal {s} ({})", sig.as_str()),
            Err(_) => format!("signal {s}"),
        },
        _ => format!("{st}"),
    }
}

/// `Some(why)` when a participant crashed rather than failing with a clear
/// error: exit 101 (a Rust panic), "panicked at" on stderr, or death by a
/// signal the driver never sends (abort, segfault, ...).
pub fn crashed(st: ExitStatus, stderr: &str) -> Option<String> {
    let by_signal = st
        .signal()
        .and_then(|s| Signal::try_from(s).ok())
        .is_some_and(|s| CRASH_SIGNALS.contains(&s));
    if st.code() == Some(101) || stderr.contains("panicked at") || by_signal {
        let telling = [
            "panicked",
            "memory allocation",
            "overflow",
            "fatal",
            "error",
        ];
        let first = stderr
            .lines()
            .find(|l| telling.iter().any(|t| l.contains(t)))
            .or_else(|| stderr.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or("");
        Some(format!("{} ({})", describe(st), first.trim()))
    } else {
        None
    }
}

/// The stderr line that best says why a process died: a panic, a failed
/// allocation, a stack overflow; else its last line.
pub fn telling_line(stderr: &str) -> &str {
    let telling = [
        "panicked",
        "memory allocation",
        "overflow",
        "fatal",
        "error",
    ];
    stderr
        .lines()
        .find(|l| telling.iter().any(|t| l.contains(t)))
        .or_else(|| stderr.lines().rfind(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim()
}

/// One participant: a child whose stdout and stderr go to files in the work
/// directory. Killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    child: Child,
    /// What it is, for reports.
    pub tag: String,
    out: PathBuf,
    err: PathBuf,
    /// When it was started.
    pub started: Instant,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` (already [`prepare`]d) with output to `WORK/TAG.out|.err`.
    pub fn spawn(mut cmd: Command, work: &Path, tag: &str) -> io::Result<Proc> {
        let out = work.join(format!("{tag}.out"));
        let err = work.join(format!("{tag}.err"));
        cmd.stdout(Stdio::from(fs::File::create(&out)?))
            .stderr(Stdio::from(fs::File::create(&err)?));
        let child = cmd.spawn()?;
        Ok(Proc {
            child,
            tag: tag.to_owned(),
            out,
            err,
            started: Instant::now(),
            status: None,
        })
    }

    /// Starts `cmd` with a pipe on its stdin (taken with [`Proc::take_stdin`]).
    pub fn spawn_piped(mut cmd: Command, work: &Path, tag: &str) -> io::Result<Proc> {
        cmd.stdin(Stdio::piped());
        Proc::spawn(cmd, work, tag)
    }

    /// The stdin pipe, if it was asked for.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal (nothing once it has been reaped).
    pub fn signal(&self, sig: Signal) {
        if self.status.is_none() {
            kill(self.pid(), sig);
        }
    }

    /// Its exit status, if it has exited (reaps it).
    pub fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Whether it still runs (checked without reaping: the next
    /// [`Proc::poll`] reports the exit).
    pub fn status_known_running(&self) -> bool {
        self.status.is_none() && alive(self.pid())
    }

    /// Waits at most `limit` for it to exit.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.poll() {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap.
    pub fn kill_now(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.status
    }

    /// What it wrote on stdout so far.
    pub fn stdout(&self) -> String {
        fs::read(&self.out)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        fs::read(&self.err)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The path of its stdout file.
    pub fn stdout_path(&self) -> &Path {
        &self.out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_now();
        let _ = fs::remove_file(&self.out);
        let _ = fs::remove_file(&self.err);
    }
}
