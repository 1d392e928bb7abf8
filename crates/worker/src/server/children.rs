//! The children: starting them, reading their answers, replacing one that dies or hangs.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::epoll::EpollFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use syncomm_common::duration::format_duration;
use syncomm_common::frame;

use super::dispatch::Job;
use super::{Config, LogEvent, ServeError, Server, READ_LIMIT, SHUTDOWN_GRACE};
use crate::protocol::{CallError, CallErrorKind, Response};
use crate::wire::{Fill, InBuf, OutBuf};

/// One child process and its two pipes.
pub(super) struct Worker {
    /// 1-based slot number, kept by replacements ("worker 2").
    pub(super) index: usize,
    pub(super) pid: i32,
    pub(super) process: Child,
    pub(super) stdin: ChildStdin,
    pub(super) stdout: ChildStdout,
    pub(super) inbuf: InBuf,
    pub(super) outbuf: OutBuf,
    /// Jobs sent to it, oldest first; the front one is running.
    pub(super) running: VecDeque<Job>,
    /// When the front job started running.
    pub(super) head_since: Instant,
    /// Unique to this child in the server's life (slots are reused).
    pub(super) serial: u64,
    /// What its stdout and stdin are registered for (see `readiness`).
    pub(super) stdout_watched: Option<EpollFlags>,
    pub(super) stdin_watched: Option<EpollFlags>,
}

/// How a child left.
pub(super) enum Ending {
    /// Its stdout ended (it died or exited on its own).
    Ended,
    /// We killed it: its front job ran past the task timeout.
    TimedOut {
        /// The limit.
        limit: Duration,
        /// The job that ran past it.
        job: u64,
    },
    /// It sent something that is not a response to its front job.
    Misbehaved(String),
}

impl Server {
    /// Reads what child `i` has written and passes its answers on. Returns
    /// how the read ended and, if the child broke the protocol, how.
    pub(super) fn read_answers(&mut self, i: usize) -> (io::Result<Fill>, Option<String>) {
        let max_answer = crate::protocol::max_answer(self.cfg.max_frame);
        let now = self.now;
        let w = &mut self.workers[i];
        let fill = w.inbuf.fill(&mut w.stdout, READ_LIMIT);
        let mut done = Vec::new();
        let mut bad = None;
        loop {
            match w.inbuf.next_frame(max_answer) {
                Ok(None) => break,
                Ok(Some(body)) => match frame::decode_body::<Response>(body) {
                    Ok(resp) if w.running.front().is_some_and(|j| j.req.id == resp.id) => {
                        let job = w.running.pop_front().expect("front checked");
                        // The next job starts now.
                        w.head_since = now;
                        done.push((job, resp.result));
                    }
                    Ok(resp) => {
                        bad = Some(format!("answered job {} out of turn", resp.id));
                        break;
                    }
                    Err(e) => {
                        bad = Some(e.to_string());
                        break;
                    }
                },
                Err(e) => {
                    bad = Some(e.to_string());
                    break;
                }
            }
        }
        for (job, result) in done {
            self.answer(job, result);
        }
        (fill, bad)
    }

    pub(super) fn worker_readable(&mut self, i: usize) -> Result<(), ServeError> {
        match self.read_answers(i) {
            (_, Some(why)) => self.replace(i, Ending::Misbehaved(why)),
            (Ok(Fill::Eof) | Err(_), None) => self.replace(i, Ending::Ended),
            (Ok(_), None) => Ok(()),
        }
    }

    pub(super) fn check_timeouts(&mut self) -> Result<(), ServeError> {
        let Some(limit) = self.cfg.task_timeout else {
            return Ok(());
        };
        let overdue = |w: &Worker, now: Instant| {
            !w.running.is_empty() && now.duration_since(w.head_since) >= limit
        };
        for i in 0..self.workers.len() {
            if overdue(&self.workers[i], self.now) {
                // An answer may have arrived since the wait returned: take it
                // first (a child replaced meanwhile is not overdue).
                self.worker_readable(i)?;
                if overdue(&self.workers[i], self.now) {
                    let job = self.workers[i].running[0].req.id;
                    self.replace(i, Ending::TimedOut { limit, job })?;
                }
            }
        }
        Ok(())
    }

    /// Reaps the child in slot `i`, settles its jobs and starts another.
    pub(super) fn replace(&mut self, i: usize, ending: Ending) -> Result<(), ServeError> {
        let w = &mut self.workers[i];
        // Already dead, or closed its stdout, or overdue: make sure it is gone.
        let _ = kill(Pid::from_raw(w.pid), Signal::SIGKILL);
        let (worker_signal, worker_exit_code, reap_error) = match w.process.wait() {
            Ok(status) => (status.signal(), status.code(), None),
            Err(e) => (None, None, Some(e.to_string())),
        };
        if !matches!(ending, Ending::Misbehaved(_)) {
            // Answers it wrote before it died are still in the pipe: they
            // count (the pipe ends now that the child is gone).
            while let (Ok(Fill::Limit), None) = self.read_answers(i) {}
        }
        let w = &mut self.workers[i];
        let who = format!("worker {} (pid {})", w.index, w.pid);
        let mut jobs = std::mem::take(&mut w.running);
        let (index, worker_pid) = (w.index, w.pid);
        let mut front = jobs.pop_front();
        if let (Ending::TimedOut { job, .. }, Some(f)) = (&ending, &front) {
            if f.req.id != *job {
                // The overdue job answered just before the kill; the one
                // after it had barely started: it goes round again.
                jobs.push_front(front.take().expect("checked"));
            }
        }
        // The others had not started: back to the front of the queue, in order.
        for job in jobs.into_iter().rev() {
            self.pending.push_front(job);
        }
        let event = match (&ending, front) {
            (Ending::TimedOut { limit, .. }, Some(job)) => {
                let event = LogEvent::TaskTimeout {
                    index,
                    worker_pid,
                    function: job.req.function.clone(),
                    task_timeout: *limit,
                };
                let msg = format!(
                    "timed out after {} ({who} was killed and replaced)",
                    format_duration(*limit)
                );
                self.answer(job, Err(CallError::new(CallErrorKind::Timeout, msg)));
                event
            }
            (Ending::Misbehaved(why), front) => {
                if let Some(job) = front {
                    let msg = format!(
                        "{who} broke the protocol while running {}: {why}",
                        job.req.function
                    );
                    self.answer(job, Err(CallError::new(CallErrorKind::WorkerDied, msg)));
                }
                LogEvent::WorkerMisbehaved {
                    index,
                    worker_pid,
                    reason: why.clone(),
                }
            }
            (_, front) => {
                let event = LogEvent::WorkerEnded {
                    index,
                    worker_pid,
                    function: front.as_ref().map(|job| job.req.function.clone()),
                    worker_exit_code,
                    worker_signal,
                    reap_error,
                };
                if let Some(job) = front {
                    // The caller is told what the log says.
                    let msg = event.to_string();
                    self.answer(job, Err(CallError::new(CallErrorKind::WorkerDied, msg)));
                }
                event
            }
        };
        self.say(event);
        let fresh = spawn_worker(&self.cfg, index)?;
        self.say(LogEvent::WorkerStarted {
            index,
            worker_pid: fresh.pid,
        });
        self.workers[i] = fresh;
        // Starting a child takes a while: the turn's clock moves on.
        self.now = Instant::now();
        Ok(())
    }

    /// Closes every child's stdin (they exit at the end of their input) and
    /// reaps them, killing any that does not exit within the grace period.
    pub(super) fn stop_children(&mut self) {
        let workers = std::mem::take(&mut self.workers);
        let mut procs = Vec::new();
        for w in workers {
            drop(w.stdin);
            procs.push((w.index, w.pid, w.process));
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        for (index, pid, mut p) in procs {
            loop {
                match p.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        tracing::warn!("worker {index} (pid {pid}) did not exit: killing it");
                        let _ = p.kill();
                        let _ = p.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        }
    }
}

/// The next child's serial number.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// Starts the child for slot `index`: the child command with its stdin and
/// stdout as pipes, killed by the kernel if this process dies.
pub(super) fn spawn_worker(cfg: &Config, index: usize) -> Result<Worker, ServeError> {
    let spawn_err = |source| ServeError::Spawn { index, source };
    let (program, args) = cfg
        .child_command
        .split_first()
        .ok_or_else(|| spawn_err(io::Error::other("empty child command")))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Killed by the kernel if we die, even by SIGKILL.
    syncomm_sys::spawn::kill_child_with_us(&mut cmd);
    let mut process = cmd.spawn().map_err(spawn_err)?;
    let stdin = process.stdin.take().expect("piped");
    let stdout = process.stdout.take().expect("piped");
    for fd in [stdin.as_fd(), stdout.as_fd()] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| spawn_err(e.into()))?;
    }
    Ok(Worker {
        index,
        pid: process.id() as i32,
        process,
        stdin,
        stdout,
        inbuf: InBuf::default(),
        outbuf: OutBuf::default(),
        running: VecDeque::new(),
        head_since: Instant::now(),
        serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        stdout_watched: None,
        stdin_watched: None,
    })
}
