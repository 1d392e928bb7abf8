//! What every scenario works with: its random stream, its own runtime
//! directory, a way to start participants, and the tally of faults,
//! operations, checks, violations and leaks.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::os::{self, Proc};
use crate::rng::Rng;

/// The environment variable every participant inherits: how leaked processes
/// are found at the end, whatever started them.
pub const MARK_VAR: &str = "SYNCOMM_CHAOS_MARK";

/// Kinds of faults, the table's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `kill -9` of a participant at a random moment.
    Kill9,
    /// `kill -9` at one of the worst moments (holding a lock or a slot,
    /// mid-call, mid-line, a stage of a running chain).
    Kill9Worst,
    /// SIGSTOP for a random while, then SIGCONT.
    Stop,
    /// SIGTERM, SIGINT or SIGHUP.
    Signal,
    /// Garbage written to a socket or handed to a parser.
    Garbage,
    /// A client that trickles bytes or sits idle.
    Slow,
    /// A participant (re)started under a low RLIMIT_NOFILE.
    Nofile,
    /// A killed role restarted so the scenario goes on.
    Restart,
}

impl Fault {
    /// Every kind, in table order.
    pub const ALL: [Fault; 8] = [
        Fault::Kill9,
        Fault::Kill9Worst,
        Fault::Stop,
        Fault::Signal,
        Fault::Garbage,
        Fault::Slow,
        Fault::Nofile,
        Fault::Restart,
    ];

    /// The column name.
    pub fn key(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill9",
            Fault::Kill9Worst => "kill9_worst",
            Fault::Stop => "stop",
            Fault::Signal => "term_int_hup",
            Fault::Garbage => "garbage",
            Fault::Slow => "slow",
            Fault::Nofile => "nofile",
            Fault::Restart => "restart",
        }
    }
}

/// One scenario's figures.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Faults injected, by kind.
    pub faults: BTreeMap<Fault, u64>,
    /// Operations completed (calls answered, lines written, groups met, ...).
    pub ops: u64,
    /// Invariant checks made.
    pub checks: u64,
    /// Broken promises, each one line (with the time into the run).
    pub violations: Vec<String>,
    /// Things left behind at the end.
    pub leaks: Vec<String>,
    /// Documented behaviour worth knowing about (not a violation).
    pub notes: Vec<String>,
}

/// A scenario's world.
pub struct Ctx {
    /// The scenario's name.
    pub name: &'static str,
    /// Its random stream (the schedule).
    pub rng: Rng,
    /// The figures.
    pub tally: Tally,
    bins: PathBuf,
    rundir: tempfile::TempDir,
    work: tempfile::TempDir,
    mark: String,
    start: Instant,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    pending_cont: Vec<(i32, Instant)>,
    seq: u64,
}

impl Ctx {
    /// A scenario world: fresh runtime and work directories, marker
    /// `run_tag/name`, running for `seconds` unless `stop` is raised.
    pub fn new(
        name: &'static str,
        seed: u64,
        bins: &Path,
        run_tag: &str,
        seconds: u64,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Ctx> {
        // Private (0700) whatever the umask: the programs refuse a runtime
        // directory open to others.
        let tmp = |what: &str| -> io::Result<tempfile::TempDir> {
            use std::os::unix::fs::PermissionsExt;
            let d = tempfile::Builder::new()
                .prefix(&format!("syncomm-chaos-{name}-{what}-"))
                .tempdir()?;
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700))?;
            Ok(d)
        };
        let start = Instant::now();
        Ok(Ctx {
            name,
            rng: Rng::for_scenario(seed, name),
            tally: Tally::default(),
            bins: bins.to_owned(),
            rundir: tmp("run")?,
            work: tmp("work")?,
            mark: format!("{run_tag}/{name}"),
            start,
            deadline: start + Duration::from_secs(seconds),
            stop,
            pending_cont: Vec::new(),
            seq: 0,
        })
    }

    /// Whether the scenario should go on (time left, no Ctrl-C).
    pub fn running(&self) -> bool {
        Instant::now() < self.deadline && !self.interrupted()
    }

    /// Whether the driver was asked to stop (Ctrl-C, SIGTERM).
    pub fn interrupted(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Seconds since the scenario started.
    pub fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The scenario's runtime directory (its `SYNCOMM_DIR`).
    pub fn rundir(&self) -> &Path {
        self.rundir.path()
    }

    /// A directory for the scenario's own files (outputs, shared files).
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// The marker value of this scenario's participants.
    pub fn mark(&self) -> &str {
        &self.mark
    }

    /// A command for one of the release binaries, in this scenario's
    /// runtime directory, marked, stdin null.
    pub fn cmd(&self, bin: &str) -> Command {
        let mut c = Command::new(self.bins.join(bin));
        c.env("SYNCOMM_DIR", self.rundir.path())
            .env(MARK_VAR, &self.mark)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        c
    }

    /// Starts `cmd` (from [`Ctx::cmd`]); `nofile` runs it under that
    /// descriptor limit. `None` (and a note) if it cannot be started at all.
    pub fn spawn(&mut self, mut cmd: Command, what: &str, nofile: Option<u64>) -> Option<Proc> {
        os::prepare(&mut cmd, nofile);
        self.seq += 1;
        let tag = format!("{what}-{}", self.seq);
        match Proc::spawn(cmd, self.work.path(), &tag) {
            Ok(p) => Some(p),
            Err(e) => {
                self.violation(format!("could not start {what}: {e}"));
                None
            }
        }
    }

    /// As [`Ctx::spawn`], with a pipe on stdin.
    pub fn spawn_piped(
        &mut self,
        mut cmd: Command,
        what: &str,
        nofile: Option<u64>,
    ) -> Option<Proc> {
        os::prepare(&mut cmd, nofile);
        self.seq += 1;
        let tag = format!("{what}-{}", self.seq);
        match Proc::spawn_piped(cmd, self.work.path(), &tag) {
            Ok(p) => Some(p),
            Err(e) => {
                self.violation(format!("could not start {what}: {e}"));
                None
            }
        }
    }

    /// Counts one injected fault.
    pub fn fault(&mut self, kind: Fault) {
        if std::env::var_os("SYNCOMM_CHAOS_DEBUG").is_some() {
            eprintln!("{} t={:.2}s fault {}", self.name, self.t(), kind.key());
        }
        *self.tally.faults.entry(kind).or_default() += 1;
    }

    /// Counts one completed operation.
    pub fn op(&mut self) {
        self.tally.ops += 1;
    }

    /// Counts one invariant check; a failed one is a violation.
    pub fn check(&mut self, ok: bool, why: impl FnOnce() -> String) -> bool {
        self.tally.checks += 1;
        if !ok {
            self.violation(why());
        }
        ok
    }

    /// Records a broken promise.
    pub fn violation(&mut self, what: String) {
        let line = format!("t={:.1}s: {what}", self.t());
        if std::env::var_os("SYNCOMM_CHAOS_DEBUG").is_some() {
            eprintln!("{} t={:.2}s VIOLATION {what}", self.name, self.t());
        }
        if self.tally.violations.len() < 200 {
            self.tally.violations.push(line);
        }
    }

    /// Records something left behind.
    pub fn leak(&mut self, what: String) {
        self.tally.leaks.push(what);
    }

    /// Records a documented behaviour worth a line in the report.
    pub fn note(&mut self, what: String) {
        if !self.tally.notes.contains(&what) {
            self.tally.notes.push(what);
        }
    }

    /// Stops `pid` (SIGSTOP) now and schedules its SIGCONT after `dur`.
    pub fn stall(&mut self, pid: i32, dur: Duration) {
        os::kill(pid, Signal::SIGSTOP);
        self.fault(Fault::Stop);
        self.pending_cont.push((pid, Instant::now() + dur));
    }

    /// Whether `pid` is stopped by us right now.
    pub fn stalled(&self, pid: i32) -> bool {
        self.pending_cont.iter().any(|&(p, _)| p == pid)
    }

    /// Sends the SIGCONTs that are due, then sleeps `ms` milliseconds.
    pub fn tick(&mut self, ms: u64) {
        let now = Instant::now();
        self.pending_cont.retain(|&(pid, at)| {
            if at <= now {
                os::kill(pid, Signal::SIGCONT);
                false
            } else {
                true
            }
        });
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// Continues every stopped participant now.
    pub fn cont_all(&mut self) {
        for (pid, _) in self.pending_cont.drain(..) {
            os::kill(pid, Signal::SIGCONT);
        }
    }

    /// Checks a finished participant did not crash (panic, abort, segfault).
    pub fn check_no_crash(&mut self, p: &mut Proc) {
        if let Some(st) = p.poll() {
            let err = p.stderr();
            let crash = os::crashed(st, &err);
            let tag = p.tag.clone();
            self.check(crash.is_none(), || {
                format!("{tag} crashed: {}", crash.unwrap_or_default())
            });
        }
    }

    /// A random one of SIGTERM, SIGINT, SIGHUP (counted as a fault).
    pub fn polite_signal(&mut self) -> Signal {
        self.fault(Fault::Signal);
        *self
            .rng
            .pick(&[Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP])
    }

    /// The end-of-run checks common to every scenario: no marked process
    /// outlives the scenario (waited for up to `bound`), the runtime
    /// directory is empty. Survivors are killed.
    pub fn final_leak_checks(&mut self, bound: Duration) {
        self.cont_all();
        let end = Instant::now() + bound;
        let mut left = os::marked(MARK_VAR, &self.mark);
        while !left.is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
            left = os::marked(MARK_VAR, &self.mark);
        }
        self.tally.checks += 1;
        for pid in left {
            let what = os::cmdline(pid);
            os::kill(pid, Signal::SIGKILL);
            self.leak(format!(
                "process {pid} ({what}) still running after {bound:?}"
            ));
        }
        self.tally.checks += 1;
        for f in os::dir_entries(self.rundir.path()) {
            self.leak(format!("file {f} left in the runtime directory"));
        }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.cont_all();
        for pid in os::marked(MARK_VAR, &self.mark) {
            os::kill(pid, Signal::SIGKILL);
        }
    }
}
