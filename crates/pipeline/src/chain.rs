//! The chain: one child process per stage, joined by `pipe(2)`, supervised
//! by the parent.
//!
//! ```text
//!  stdin ─▶ [stage 1] ─pipe─▶ [stage 2] ─pipe─▶ [stage 3] ─▶ stdout
//!              │ report         │ report          │ report
//!              └────────────────┴────────────────┴──▶ parent (poll)
//! ```
//!
//! Each child is this same program (`/proc/self/exe`) in its hidden
//! single-stage mode, `filter --report-fd N -- SPEC`. No shell is involved:
//! the parent makes the pipes itself and hands their ends to the children as
//! stdin and stdout. Every descriptor is created close-on-exec, so each child
//! holds exactly its own two data ends and its report pipe; when a stage
//! exits, the next one sees end-of-file and the previous one `EPIPE`.
//!
//! ## The report pipe: how the parent learns what happened
//! Each child has its own report pipe. When it ends it writes one line there
//! ([`write_report`]): `ok IN OUT`, `left IN OUT` (its reader went away) or
//! `failed IN OUT REASON`, and exits 0, 3 or 1. The parent polls all report
//! pipes at once; end-of-file on one means that child is gone (whatever
//! killed it), so the parent reaps it then and combines its exit status with
//! its line: a child killed by a signal wrote no line.
//!
//! ## Failure, early readers, signals
//! - A stage that fails or is killed dooms everything upstream of it, so the
//!   parent stops (SIGTERM) the stages before it; stages after it drain what
//!   they already have and end at end-of-file. The whole command fails
//!   (like `set -o pipefail`) and names the stage.
//! - A stage whose reader left (`filter ... | head -1`) ends the same way,
//!   quietly: that is a success.
//! - SIGINT/SIGTERM to the parent stop every stage; the parent reaps them all.
//! - Each child asks the kernel for SIGKILL when its parent dies
//!   (`PR_SET_PDEATHSIG`), so even a SIGKILLed parent leaves no stage behind.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{pipe2, Pid};
use serde::Serialize;
use syncomm_common::shutdown::Shutdown;

use crate::stage::StageSpec;
use crate::stream::{self, Counts, End};

/// Child exit code: the stage's input ended and everything was written.
pub const EXIT_OK: i32 = 0;
/// Child exit code: the stage failed (its report line says why).
pub const EXIT_FAILED: i32 = 1;
/// Child exit code: the stage's reader went away; a quiet end.
pub const EXIT_READER_LEFT: i32 = 3;

/// Bytes a pipe between two stages may hold (`F_SETPIPE_SZ`), to cut context
/// switches; the kernel's default is 64 KiB.
pub const PIPE_SIZE: i32 = 1024 * 1024;

/// How one stage ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// Input ended; everything processed and written.
    Ok,
    /// Its reader went away; ended quietly.
    ReaderLeft,
    /// It failed; `error` says why.
    Failed {
        /// The reason, e.g. `line 3: "abc" is not an integer`.
        error: String,
    },
    /// It was killed by a signal it did not expect.
    Killed {
        /// The signal number.
        signal: i32,
    },
    /// The parent stopped it because a later stage had ended or on SIGINT/SIGTERM.
    Stopped,
}

/// What one stage did.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// 1-based position in the chain.
    pub stage: usize,
    /// The spec as given.
    pub spec: String,
    /// Records read, when the stage reported them.
    #[serde(rename = "in")]
    pub records_in: Option<u64>,
    /// Records written, when the stage reported them.
    #[serde(rename = "out")]
    pub records_out: Option<u64>,
    /// How it ended.
    #[serde(flatten)]
    pub status: Status,
}

impl StageReport {
    /// The one-line complaint about this stage, if it did not succeed.
    pub fn complaint(&self) -> Option<String> {
        let who = format!("stage {} '{}'", self.stage, self.spec);
        match &self.status {
            Status::Failed { error } => Some(format!("{who} failed: {error}")),
            Status::Killed { signal } => {
                let name = Signal::try_from(*signal).map_or("?", |s| s.as_str());
                Some(format!("{who} was killed by signal {signal} ({name})"))
            }
            _ => None,
        }
    }
}

/// The whole run: every stage's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether every stage succeeded (or ended quietly because the reader left).
    pub ok: bool,
    /// The signal (SIGINT 2, SIGTERM 15) that stopped the run, if one did.
    pub interrupted: Option<i32>,
    /// One entry per stage, in chain order.
    pub stages: Vec<StageReport>,
}

impl Report {
    /// A report over `stages`; `ok` unless a stage failed or a signal interrupted.
    pub fn new(stages: Vec<StageReport>, interrupted: Option<i32>) -> Report {
        let ok = interrupted.is_none() && stages.iter().all(|s| s.complaint().is_none());
        Report {
            ok,
            interrupted,
            stages,
        }
    }

    /// One line per stage that did not succeed.
    pub fn complaints(&self) -> Vec<String> {
        self.stages
            .iter()
            .filter_map(StageReport::complaint)
            .collect()
    }

    /// The exit code: 0 all good, 128+N interrupted by signal N, else 1.
    pub fn exit_code(&self) -> u8 {
        match self.interrupted {
            Some(sig) => 128u8.saturating_add(sig as u8),
            None if self.ok => 0,
            None => 1,
        }
    }
}

/// Why the chain could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// `pipe(2)` failed.
    #[error("creating a pipe: {0}")]
    Pipe(#[source] Errno),
    /// A stage's process could not be started.
    #[error("starting stage {stage}: {source}")]
    Spawn {
        /// 1-based stage number.
        stage: usize,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Waiting for the stages failed.
    #[error("waiting for the stages: {0}")]
    Wait(#[source] io::Error),
}

// ---------------------------------------------------------------- one stage

/// Runs one stage in this process on stdin and stdout.
pub fn run_here(spec: &StageSpec, stage_number: usize) -> StageReport {
    let mut counts = Counts::default();
    let result = (|| {
        let mut input = File::from(io::stdin().as_fd().try_clone_to_owned()?);
        let mut output = File::from(io::stdout().as_fd().try_clone_to_owned()?);
        Ok::<_, io::Error>(stream::run(
            &spec.stage,
            &mut input,
            &mut output,
            &mut counts,
        ))
    })();
    let status = match result {
        Err(e) => Status::Failed {
            error: format!("opening stdin/stdout: {e}"),
        },
        Ok(Ok(End::Done)) => Status::Ok,
        Ok(Ok(End::ReaderLeft)) => Status::ReaderLeft,
        Ok(Err(e)) => Status::Failed {
            error: e.to_string().replace('\n', " "),
        },
    };
    StageReport {
        stage: stage_number,
        spec: spec.text.clone(),
        records_in: Some(counts.records_in),
        records_out: Some(counts.records_out),
        status,
    }
}

/// The hidden child mode: runs one stage, writes its report line to
/// `report_fd`, and returns the exit code the parent expects.
///
/// # Raw descriptor
/// As its name says, this takes ownership of descriptor number `report_fd`
/// and closes it: it must be the one the parent passed down for this child
/// alone (`--report-fd`, see `spawn_stage`), never a descriptor something
/// else in the process owns.
pub fn run_child_owning_fd(spec: &StageSpec, report_fd: RawFd) -> u8 {
    // Exec'ing `/proc/self/exe` names the process "exe" in `ps` and `top`;
    // show "filter" there, as for the parent (best effort: only a label).
    let _ = nix::sys::prctl::set_name(c"filter");
    let report = run_here(spec, 0);
    // The parent gave us this descriptor (see `spawn_stage`); it is taken
    // only if it is open.
    // SAFETY: nothing else in this process uses the descriptor: the parent
    // created it for this child alone and only this function touches it, once.
    if let Some(fd) = unsafe { syncomm_sys::spawn::adopt_inherited_fd(report_fd) } {
        let _ = File::from(fd).write_all(write_report(&report).as_bytes());
    }
    let code = match report.status {
        Status::Ok => EXIT_OK,
        Status::ReaderLeft => EXIT_READER_LEFT,
        _ => EXIT_FAILED,
    };
    code as u8
}

/// The report line a child writes when it ends.
pub fn write_report(r: &StageReport) -> String {
    let (i, o) = (r.records_in.unwrap_or(0), r.records_out.unwrap_or(0));
    match &r.status {
        Status::Ok => format!("ok {i} {o}\n"),
        Status::ReaderLeft => format!("left {i} {o}\n"),
        Status::Failed { error } => format!("failed {i} {o} {}\n", error.replace('\n', " ")),
        _ => format!("failed {i} {o} unexpected status\n"),
    }
}

/// Reads a report line back: status word, counts, and the rest (the reason).
fn read_report(line: &str) -> Option<(&str, u64, u64, &str)> {
    let mut parts = line.trim_end_matches('\n').splitn(4, ' ');
    let word = parts.next()?;
    let i = parts.next()?.parse().ok()?;
    let o = parts.next()?.parse().ok()?;
    Some((word, i, o, parts.next().unwrap_or("")))
}

// ---------------------------------------------------------------- the chain

/// A started stage as the parent sees it.
struct Running {
    child: Child,
    /// Read end of its report pipe; `None` once it hit end-of-file.
    report: Option<File>,
    line: Vec<u8>,
    /// Whether the parent sent it SIGTERM.
    stopped: bool,
    outcome: Option<StageReport>,
}

/// Runs `specs` (two or more) as a chain of child processes, the first
/// reading this process's stdin and the last writing its stdout, and waits
/// for all of them. SIGINT/SIGTERM seen by `shutdown` stop the chain.
pub fn run_chain(specs: &[StageSpec], shutdown: &Shutdown) -> Result<Report, ChainError> {
    let mut stages: Vec<Running> = Vec::with_capacity(specs.len());
    // Read end of the pipe the previous stage writes to (None: our stdin).
    let mut upstream: Option<OwnedFd> = None;
    for (i, spec) in specs.iter().enumerate() {
        let last = i + 1 == specs.len();
        let (next_read, stdout) = if last {
            (None, None)
        } else {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(ChainError::Pipe)?;
            // Best effort: a bigger pipe means fewer switches between stages.
            let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
            (Some(r), Some(w))
        };
        match spawn_stage(spec, upstream.take(), stdout) {
            Ok((child, report)) => stages.push(Running {
                child,
                report: Some(report),
                line: Vec::new(),
                stopped: false,
                outcome: None,
            }),
            Err(source) => {
                for s in &mut stages {
                    let _ = s.child.kill();
                    let _ = s.child.wait();
                }
                return Err(ChainError::Spawn {
                    stage: i + 1,
                    source,
                });
            }
        }
        upstream = next_read;
    }
    supervise(specs, &mut stages, shutdown)?;
    let interrupted = shutdown.signal().filter(|_| shutdown.requested());
    let mut reports: Vec<StageReport> = stages
        .into_iter()
        .map(|s| s.outcome.expect("every stage reaped"))
        .collect();
    if interrupted.is_some() {
        // Ctrl-C reaches the whole process group: stages that died of the
        // same signal were stopped by the user, not failed.
        for r in &mut reports {
            if let Status::Killed { signal } = r.status {
                if signal == libc::SIGINT || signal == libc::SIGTERM {
                    r.status = Status::Stopped;
                }
            }
        }
    }
    Ok(Report::new(reports, interrupted))
}

/// Starts one stage: this same program in single-stage mode. `stdin`/`stdout`
/// `None` means inherit ours. Returns the child and its report pipe.
fn spawn_stage(
    spec: &StageSpec,
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
) -> io::Result<(Child, File)> {
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC)?;
    let report_fd = report_write.as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("filter")
        .arg("--report-fd")
        .arg(report_fd.to_string())
        .arg("--")
        .arg(&spec.text)
        .stdin(stdin.map_or_else(Stdio::inherit, Stdio::from))
        .stdout(stdout.map_or_else(Stdio::inherit, Stdio::from))
        .stderr(Stdio::inherit());
    // Die with the parent, even if it is SIGKILLed (and never start at all
    // if it died already).
    syncomm_sys::spawn::kill_child_with_us(&mut cmd);
    // Keep the report pipe's write end across exec (it is close-on-exec).
    syncomm_sys::spawn::keep_fd_across_exec(&mut cmd, report_fd);
    let child = cmd.spawn()?;
    // `cmd` and `report_write` drop here: our copies of the child's ends close,
    // so end-of-file reaches the right process when the child exits.
    drop(cmd);
    drop(report_write);
    Ok((child, File::from(report_read)))
}

/// Polls the report pipes (and the shutdown descriptor) until every stage is
/// reaped.
fn supervise(
    specs: &[StageSpec],
    stages: &mut [Running],
    shutdown: &Shutdown,
) -> Result<(), ChainError> {
    let mut stopping_all = false;
    loop {
        let open: Vec<usize> = (0..stages.len())
            .filter(|&i| stages[i].report.is_some())
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let mut fds = vec![PollFd::new(shutdown.wake_fd(), PollFlags::POLLIN)];
        for &i in &open {
            let f = stages[i].report.as_ref().expect("open");
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(e) => return Err(ChainError::Wait(e.into())),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(true)).collect();
        drop(fds);
        if ready[0] || (shutdown.requested() && !stopping_all) {
            shutdown.drain();
            if shutdown.requested() && !stopping_all {
                stopping_all = true;
                for s in stages.iter_mut() {
                    stop(s);
                }
            }
        }
        for (k, &i) in open.iter().enumerate() {
            if !ready[k + 1] {
                continue;
            }
            if read_report_pipe(&mut stages[i]).map_err(ChainError::Wait)? {
                let report = reap(&specs[i], i + 1, &mut stages[i]).map_err(ChainError::Wait)?;
                let doomed = !matches!(report.status, Status::Ok);
                stages[i].outcome = Some(report);
                if doomed {
                    // Nothing upstream of a stage that ended can reach the end.
                    for s in stages[..i].iter_mut() {
                        stop(s);
                    }
                }
            }
        }
    }
}

/// Sends SIGTERM to a stage still running.
fn stop(s: &mut Running) {
    if s.outcome.is_none() && !s.stopped {
        s.stopped = true;
        let _ = kill(Pid::from_raw(s.child.id() as i32), Signal::SIGTERM);
    }
}

/// Reads what is available on a stage's report pipe; true at end-of-file.
fn read_report_pipe(s: &mut Running) -> io::Result<bool> {
    let mut buf = [0u8; 4096];
    let file = s.report.as_mut().expect("open report pipe");
    let n = loop {
        match file.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r?,
        }
    };
    if n == 0 {
        s.report = None;
        return Ok(true);
    }
    // A report is one short line; refuse to hoard more than a little.
    if s.line.len() < 64 * 1024 {
        s.line.extend_from_slice(&buf[..n]);
    }
    Ok(false)
}

/// Waits for a stage whose report pipe closed, and combines its exit status
/// with its report line.
fn reap(spec: &StageSpec, number: usize, s: &mut Running) -> io::Result<StageReport> {
    let status = loop {
        match s.child.wait() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r?,
        }
    };
    let line = String::from_utf8_lossy(&s.line).into_owned();
    let parsed = read_report(&line);
    let counts = parsed.map(|(_, i, o, _)| (i, o));
    let status = match (status.code(), status.signal(), parsed) {
        (Some(EXIT_OK), _, Some(("ok", ..))) => Status::Ok,
        (_, _, _) if s.stopped => Status::Stopped,
        (Some(EXIT_READER_LEFT), _, Some(("left", ..))) => Status::ReaderLeft,
        (Some(EXIT_FAILED), _, Some(("failed", _, _, why))) => Status::Failed {
            error: why.to_owned(),
        },
        (_, Some(signal), _) => Status::Killed { signal },
        (code, _, _) => Status::Failed {
            error: format!(
                "exited with status {} without reporting",
                code.map_or("?".to_owned(), |c| c.to_string())
            ),
        },
    };
    Ok(StageReport {
        stage: number,
        spec: spec.text.clone(),
        records_in: counts.map(|c| c.0),
        records_out: counts.map(|c| c.1),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_round_trip() {
        let r = StageReport {
            stage: 2,
            spec: "mul 2".into(),
            records_in: Some(3),
            records_out: Some(2),
            status: Status::Failed {
                error: "line 3: \"abc\" is not an integer".into(),
            },
        };
        let line = write_report(&r);
        assert_eq!(
            read_report(&line),
            Some(("failed", 3, 2, "line 3: \"abc\" is not an integer"))
        );
        assert_eq!(
            r.complaint().unwrap(),
            "stage 2 'mul 2' failed: line 3: \"abc\" is not an integer"
        );
    }

    #[test]
    fn killed_stage_is_named_with_its_signal() {
        let r = StageReport {
            stage: 1,
            spec: "add 1".into(),
            records_in: None,
            records_out: None,
            status: Status::Killed { signal: 9 },
        };
        assert_eq!(
            r.complaint().unwrap(),
            "stage 1 'add 1' was killed by signal 9 (SIGKILL)"
        );
        let report = Report::new(vec![r], None);
        assert_eq!(report.exit_code(), 1);
    }
}
