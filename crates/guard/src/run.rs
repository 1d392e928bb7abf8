//! The watch loop: run a command (or watch a process) until it ends or its
//! deadline passes, passing signals on, then clean up what it left.
//!
//! One `ppoll(2)` waits for whichever comes first, with no polling:
//! - the command's pidfd becomes readable: it ended;
//! - the signal inbox becomes readable: a signal to pass on, or SIGCHLD from
//!   an orphan that needs reaping;
//! - the timeout (the time left until the deadline) expires: send the signal,
//!   and with `--kill-after` arm a second deadline for SIGKILL.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::signal::Signal;
use nix::sys::time::TimeSpec;
use nix::unistd::Pid;

use crate::pidfd::{Ended, PidFd};
use crate::signals::{self, signal_name, Inbox, FORWARDED, JOB_CONTROL};
use crate::{spawn, tree};
use crate::{Ending, GuardError, Options, Outcome};

/// What woke the loop.
enum Wake {
    /// The watched process ended.
    Ended,
    /// A signal is waiting in the inbox.
    Signal,
    /// The current deadline passed.
    Deadline,
}

/// Waits until `pidfd` is readable, `inbox` (if any) is readable, or `until`.
fn wait(pidfd: &PidFd, inbox: Option<&Inbox>, until: Option<Instant>) -> Result<Wake, Errno> {
    loop {
        let left = match until {
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Wake::Deadline);
                }
                Some(TimeSpec::from(left))
            }
            None => None,
        };
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if let Some(inbox) = inbox {
            fds.push(PollFd::new(inbox.as_fd(), PollFlags::POLLIN));
        }
        match ppoll(&mut fds, left, None) {
            Ok(0) => continue, // the timeout: re-checked at the top against the clock
            Ok(_) => {
                if fds[0].any().unwrap_or(false) {
                    return Ok(Wake::Ended);
                }
                return Ok(Wake::Signal);
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The deadline state shared by both modes, exactly as `timeout(1)` keeps it.
struct Clock {
    /// When to act next (None: never).
    due: Option<Instant>,
    /// The signal to send when `due` passes: the chosen one, then KILL.
    next: i32,
    /// `--kill-after`, until it has been armed (once).
    kill_after: Option<Duration>,
    /// Whether a deadline passed (as opposed to only forwarded signals).
    timed_out: bool,
}

impl Clock {
    fn new(opts: &Options, start: Instant) -> Clock {
        Clock {
            due: opts.duration.and_then(|d| start.checked_add(d)),
            next: opts.signal,
            kill_after: opts.kill_after,
            timed_out: false,
        }
    }

    /// The deadline passed: which signal to send now.
    fn expire(&mut self) -> i32 {
        self.timed_out = true;
        self.due = None;
        self.next
    }

    /// A signal is being sent (by deadline or forwarded): like timeout(1),
    /// the first one arms `--kill-after`, which then replaces the deadline.
    fn sent(&mut self) {
        if let Some(k) = self.kill_after.take() {
            self.next = libc::SIGKILL;
            self.due = Instant::now().checked_add(k);
        }
    }
}

/// One line on stderr. A write error (stderr closed, a reader gone) must
/// not stop guard from doing its job, so it is ignored, not a panic.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "{line}");
}

fn verbose_send(opts: &Options, sig: i32, target: &str) {
    if opts.verbose {
        say(format_args!(
            "guard: sending signal {} to {target}",
            signal_name(sig)
        ));
    }
}

/// `-v`: the seed's last words.
fn verbose_result(opts: &Options, killed: bool) {
    if opts.verbose {
        say(format_args!(
            "{}",
            if killed {
                "Process killed..."
            } else {
                "Process finished..."
            }
        ));
    }
}

fn display_name(command: &[OsString]) -> String {
    command
        .first()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs `command` under `opts` and says how it went and how `guard` should end.
///
/// Meant for the `guard` process itself: it changes process-wide state
/// (signal mask and dispositions, subreaper) and forks, so call it from a
/// single-threaded program.
pub fn run_command(command: &[OsString], opts: &Options) -> Result<Outcome, GuardError> {
    let name = display_name(command);
    let sys = |what: &'static str| move |e: Errno| GuardError::System(what, e.into());

    // An inherited "ignore SIGCHLD" would make the kernel reap the command
    // behind our back; the default lets us collect its status.
    // SAFETY: restoring the default disposition installs no handler code.
    unsafe { nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigDfl) }
        .map_err(sys("resetting SIGCHLD"))?;

    // Block the forwarded signals before the command exists, so none is lost
    // (or kills guard) in between; the child unblocks them before exec.
    let mut wanted: Vec<Signal> = FORWARDED.into_iter().chain(JOB_CONTROL).collect();
    // What guard's parent told it to ignore stays ignored (the command
    // inherits that too): a blocked signal would reach the inbox regardless.
    wanted.retain(|s| !signals::is_ignored(*s));
    if opts.tree {
        tree::become_subreaper().map_err(sys("becoming the subreaper"))?;
        wanted.push(Signal::SIGCHLD);
    }
    let mut inbox = Inbox::open(&wanted).map_err(sys("opening the signal inbox"))?;

    // The deadline counts from the moment guard starts the command.
    let start = Instant::now();
    let pid = spawn::start(command, opts.foreground)?;
    // Our unreaped child: its pid cannot be reused, so opening by pid is safe.
    let pidfd =
        PidFd::open(pid).map_err(|e| GuardError::System("opening the command's pidfd", e))?;
    let group = (!opts.foreground).then_some(pid);

    let mut clock = Clock::new(opts, start);
    let mut sent = Vec::new();
    let target = format!("command '{name}'");
    let deliver = |sig: i32| {
        // The command itself, in case it made itself a group leader elsewhere.
        let _ = pidfd.send_signal(sig);
        if let Some(g) = group {
            let _ = signals::send_group(g, sig);
            if opts.tree {
                // Orphans that left the group (setsid) get it too.
                for c in tree::my_children() {
                    if c.pid != pid && c.pgid != g {
                        let _ = signals::send(c.pid, sig);
                    }
                }
            }
            // Wake stopped processes so they can act on it, as timeout(1) does.
            if sig != libc::SIGKILL && sig != libc::SIGCONT {
                let _ = pidfd.send_signal(libc::SIGCONT);
                let _ = signals::send_group(g, libc::SIGCONT);
            }
        }
    };

    loop {
        match wait(&pidfd, Some(&inbox), clock.due).map_err(sys("waiting"))? {
            Wake::Ended => break,
            Wake::Deadline => {
                let sig = clock.expire();
                verbose_send(opts, sig, &target);
                clock.sent();
                sent.push(sig);
                deliver(sig);
            }
            Wake::Signal => {
                while let Some(sig) = inbox.take() {
                    if sig == libc::SIGCHLD {
                        tree::reap_ended_orphans(pid);
                        continue;
                    }
                    if sig == libc::SIGTSTP || sig == libc::SIGCONT {
                        // Ctrl-Z reached guard (the shell's job), not the
                        // command in its own group: stop the command, then
                        // stop as the shell expects. `fg` continues guard,
                        // and the SIGCONT it then finds here wakes the command.
                        let _ = pidfd.send_signal(sig);
                        if let Some(g) = group {
                            let _ = signals::send_group(g, sig);
                        }
                        if sig == libc::SIGTSTP {
                            let _ = nix::sys::signal::raise(Signal::SIGSTOP);
                        }
                        continue;
                    }
                    verbose_send(opts, sig, &target);
                    clock.sent();
                    sent.push(sig);
                    deliver(sig);
                }
            }
        }
    }

    // The command has ended but is not reaped yet, so its pid (= the group
    // id) cannot have been reused: killing the group now is race-free.
    if opts.tree {
        if let Some(g) = group {
            let _ = signals::send_group(g, libc::SIGKILL);
        }
    }
    let status = pidfd
        .reap()
        .map_err(|e| GuardError::System("collecting the command's status", e))?;
    let elapsed = start.elapsed();
    if opts.tree {
        tree::kill_leftovers();
    }
    verbose_result(opts, clock.timed_out);
    Ok(Outcome {
        ending: ending(status, clock.timed_out, opts.preserve_status),
        pid: pid.as_raw(),
        status: Some(status),
        timed_out: clock.timed_out,
        signals_sent: sent,
        elapsed,
    })
}

/// timeout(1)'s rules for its own exit status.
fn ending(status: Ended, timed_out: bool, preserve: bool) -> Ending {
    let mut preserve = preserve;
    let code = match status {
        Ended::Exited(code) => code,
        Ended::Signaled {
            signal: sig,
            core_dumped,
        } => {
            if core_dumped {
                say(format_args!("guard: the monitored command dumped core"));
            }
            if !timed_out {
                // Die the same way, so a shell loop sees "killed by SIGINT".
                return Ending::Raise(sig);
            }
            // A SIGKILL at the deadline shows as 137, not 124.
            if sig == libc::SIGKILL {
                preserve = true;
            }
            128 + sig
        }
    };
    if timed_out && !preserve {
        Ending::Exit(crate::EXIT_TIMEDOUT)
    } else {
        Ending::Exit(code as u8)
    }
}

/// Watches the running process `pid` (not our child) under `opts`.
///
/// Ends with 0 if it ended in time, 124 if it had to be signalled.
pub fn watch_pid(pid: Pid, opts: &Options) -> Result<Outcome, GuardError> {
    if pid == Pid::this() {
        return Err(GuardError::Watch(
            pid,
            io::Error::from_raw_os_error(libc::EDEADLK),
        ));
    }
    let pidfd = PidFd::open(pid).map_err(|e| GuardError::Watch(pid, e))?;
    let start = Instant::now();
    let mut clock = Clock::new(opts, start);
    let mut sent = Vec::new();
    let target = format!("process {pid}");
    loop {
        match wait(&pidfd, None, clock.due).map_err(|e| GuardError::System("waiting", e.into()))? {
            Wake::Ended => break,
            Wake::Signal => {}
            Wake::Deadline => {
                let sig = clock.expire();
                verbose_send(opts, sig, &target);
                clock.sent();
                match pidfd.send_signal(sig) {
                    Ok(()) => sent.push(sig),
                    // It ended just now, on its own.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => break,
                    Err(e) => return Err(GuardError::Watch(pid, e)),
                }
            }
        }
    }
    verbose_result(opts, clock.timed_out);
    Ok(Outcome {
        ending: Ending::Exit(if clock.timed_out {
            crate::EXIT_TIMEDOUT
        } else {
            0
        }),
        pid: pid.as_raw(),
        status: None,
        timed_out: clock.timed_out,
        signals_sent: sent,
        elapsed: start.elapsed(),
    })
}
