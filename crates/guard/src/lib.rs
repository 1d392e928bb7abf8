//! # syncomm-guard
//!
//! Run a command under a deadline, or watch a running process, and make
//! sure that when it is over nothing the command started is left behind.
//! `guard` is a drop-in superset of GNU `timeout(1)`: same options, same
//! exit codes, plus `--tree` (on by default) and `--pid`.
//!
//! ## The mechanism
//! - **pidfd** ([`pidfd`]): the command is watched through a process file
//!   descriptor. It becomes readable when the process ends, so `guard` sleeps
//!   in one `ppoll(2)` whose timeout is the time left until the deadline: no
//!   polling loop, and the kill lands within a millisecond of the deadline.
//!   Signals sent through it can never hit a process that reused the pid.
//! - **Process group** ([`tree`]): the command runs in its own group (unless
//!   `--foreground`), so one `killpg(2)` reaches it and the helpers it started.
//! - **Subreaper** ([`tree`]): helpers that escape the group (`setsid`, a
//!   daemon's double fork) are reparented to `guard` instead of `init`, so it
//!   can find them, kill them and reap them.
//! - **signalfd** ([`signals`]): INT, TERM, HUP, QUIT, USR1 and USR2 sent to
//!   `guard` are read from a descriptor in the same `ppoll` and passed on to
//!   the command; SIGCHLD there tells that an orphan ended; SIGTSTP and
//!   SIGCONT (Ctrl-Z, `fg`) stop and wake the command together with guard.
//! - **Parent-death signal**: the command is started with
//!   `PR_SET_PDEATHSIG = SIGKILL`, so if `guard` itself is killed with
//!   SIGKILL the kernel kills the command too.
//!
//! ## Exit status (as `timeout(1)`)
//! The command's own status; [`EXIT_TIMEDOUT`] (124) when the deadline passed
//! (unless `--preserve-status`); 125 `guard` itself failed; 126 the command
//! could not be run; 127 it was not found; 128+N when it was killed by signal
//! N after a deadline (SIGKILL gives 137). A command killed by a signal that
//! did not come from the deadline makes `guard` die of the same signal
//! ([`Ending::Raise`]), so a shell sees exactly what it would have seen.
//!
//! ## Modules
//! - [`run`]: the watch loop for a command and for `--pid`.
//! - [`spawn`]: `clone(CLONE_VM | CLONE_VFORK)`, set up the child, `execvp`.
//! - [`pidfd`]: `pidfd_open`, `pidfd_send_signal`, `waitid(P_PIDFD)`.
//! - [`tree`]: subreaper, finding and killing what the command left behind.
//! - [`signals`]: signal names and numbers, `kill`, the signalfd inbox.
#![deny(missing_docs)]

use std::io;
use std::time::Duration;

use nix::unistd::Pid;

pub use syncomm_sys::pidfd;
pub mod run;
pub mod signals;
pub mod spawn;
pub mod tree;

pub use run::{run_command, watch_pid};
pub use signals::{parse_signal, signal_name};
pub use syncomm_sys::pidfd::Ended;

/// Exit code: the deadline passed.
pub const EXIT_TIMEDOUT: u8 = 124;
/// Exit code: `guard` itself failed (bad arguments included).
pub const EXIT_FAILED: u8 = 125;
/// Exit code: the command was found but could not be run.
pub const EXIT_CANNOT_INVOKE: u8 = 126;
/// Exit code: the command was not found.
pub const EXIT_ENOENT: u8 = 127;

/// How to guard a command or a process.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time allowed before the signal is sent; `None` waits for ever.
    pub duration: Option<Duration>,
    /// The signal sent when the deadline passes (default SIGTERM).
    pub signal: i32,
    /// If still running this long after the first signal, send SIGKILL.
    pub kill_after: Option<Duration>,
    /// Exit with the command's status even when the deadline passed.
    pub preserve_status: bool,
    /// Leave the command in guard's process group (it may use the terminal);
    /// only the command itself is signalled.
    pub foreground: bool,
    /// Report each signal sent, and `Process killed...` / `Process finished...`.
    pub verbose: bool,
    /// Kill everything the command started when it ends (default on).
    pub tree: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: None,
            signal: libc::SIGTERM,
            kill_after: None,
            preserve_status: false,
            foreground: false,
            verbose: false,
            tree: true,
        }
    }
}

/// How `guard` should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Exit with this code.
    Exit(u8),
    /// Die of this signal, as the command did (see [`die_by_signal`]).
    Raise(i32),
}

/// How a guarded command (or watched process) went, for `guard --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// How `guard` should end.
    pub ending: Ending,
    /// The command's pid (with `--pid`, the watched process's).
    pub pid: i32,
    /// How the command ended (`None` with `--pid`: not our child, its
    /// status is its parent's to collect).
    pub status: Option<pidfd::Ended>,
    /// Whether the deadline passed.
    pub timed_out: bool,
    /// Every signal sent to it, in order: at the deadline, `--kill-after`'s
    /// KILL, and those passed on from guard's own (not the final clean-up
    /// of what it left behind).
    pub signals_sent: Vec<i32>,
    /// From its start (with `--pid`, from the start of the watch) to its end.
    pub elapsed: Duration,
}

/// What went wrong in `guard` itself.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// `-s` named no signal.
    #[error("'{0}': invalid signal (a name like TERM or HUP, or a number; see 'kill -l')")]
    BadSignal(String),
    /// A DURATION did not parse.
    #[error("invalid time interval '{0}' (a number with an optional unit: 250ms, 1.5s, 2m, 1h, 1d; 0 means no deadline)")]
    BadDuration(String),
    /// The command was not found or cannot be run (`exec` failed).
    #[error("failed to run command '{command}': {}", errno.desc())]
    Exec {
        /// The command as given.
        command: String,
        /// Why `exec` failed.
        errno: nix::errno::Errno,
    },
    /// No process could be created for the command (`clone` failed).
    #[error("cannot start command '{command}': {}", describe_io(source))]
    Spawn {
        /// The command as given.
        command: String,
        /// Why `exec` failed.
        #[source]
        source: io::Error,
    },
    /// `--pid`: the process cannot be watched or signalled.
    #[error("cannot watch process {pid}: {}", describe_io(.1), pid = .0)]
    Watch(Pid, io::Error),
    /// A system call `guard` needs failed.
    #[error("{what}: {}", describe_io(.1), what = .0)]
    System(&'static str, io::Error),
}

impl GuardError {
    /// The exit code `timeout(1)` uses for this failure: 127 command not
    /// found, 126 command cannot run, else 125 (guard failed).
    pub fn exit_code(&self) -> u8 {
        match self {
            GuardError::Exec { errno, .. } if *errno == nix::errno::Errno::ENOENT => EXIT_ENOENT,
            GuardError::Exec { .. } => EXIT_CANNOT_INVOKE,
            _ => EXIT_FAILED,
        }
    }
}

use syncomm_sys::errtext::os_reason as describe_io;

/// Reads a DURATION as `timeout(1)` does: a number with an optional unit
/// (`s` default, `m`, `h`, `d`, also `ms`...). `0` and `inf` mean no deadline.
///
/// The number is read by the shared parser
/// ([`syncomm_common::duration::parse_duration`]), so a fraction of a
/// nanosecond rounds up to 1 ns (a deadline that has passed at once, not "no
/// deadline"). Where `timeout(1)` clamps a huge value to the longest timer it
/// can set, guard takes anything longer than the parser's maximum (100 years)
/// as no deadline; `strtod` forms such as `1e3` are accepted as well.
pub fn parse_limit(text: &str) -> Result<Option<Duration>, GuardError> {
    use syncomm_common::duration::{parse_duration, MAX_DURATION};
    let t = text.trim();
    if matches!(t.to_ascii_lowercase().as_str(), "inf" | "infinity") {
        return Ok(None);
    }
    match parse_duration(t) {
        Ok(d) if d.is_zero() => Ok(None),
        Ok(d) => Ok(Some(d)),
        Err(e) if e.is_too_large() => Ok(None),
        Err(_) => {
            // Also accept what strtod reads, like "1e3" or "1e30".
            match t.parse::<f64>() {
                Ok(v) if v >= MAX_DURATION.as_secs_f64() => Ok(None),
                Ok(v) if v > 0.0 => Ok(Some(
                    Duration::from_secs_f64(v).max(Duration::from_nanos(1)),
                )),
                Ok(0.0) => Ok(None),
                _ => Err(GuardError::BadDuration(text.to_owned())),
            }
        }
    }
}

/// Makes `guard` die of signal `sig` the way the command did: default
/// action, no core dump. Returns 128+`sig` if the signal does not end the
/// process (its default action is to ignore it), to exit with instead.
pub fn die_by_signal(sig: i32) -> u8 {
    use nix::sys::resource::{setrlimit, Resource};
    let code = (128 + sig).clamp(0, 255) as u8;
    // Plain numbers, not nix's Signal: real-time signals (34..=64) too.
    if !(1..=libc::SIGRTMAX()).contains(&sig) {
        return code;
    }
    // The command may have dumped core; guard must not dump another.
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    // SAFETY: each call takes plain integers or a pointer to a local,
    // initialised sigset_t; installing the default action runs no code of
    // ours, and raise(3) in this single-threaded process hits guard itself.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit("0").unwrap(), None);
        assert_eq!(parse_limit("inf").unwrap(), None);
        assert_eq!(parse_limit("1e30").unwrap(), None);
        assert_eq!(parse_limit("9999999999999d").unwrap(), None);
        assert_eq!(parse_limit("9223372036854775000").unwrap(), None);
        assert_eq!(parse_limit("36526d").unwrap(), None);
        assert_eq!(
            parse_limit("36525d").unwrap(),
            Some(syncomm_common::duration::MAX_DURATION)
        );
        // Below a nanosecond is 1 ns, never "no deadline".
        for tiny in ["0.0000000001", "1e-10", "0.1ns"] {
            assert_eq!(
                parse_limit(tiny).unwrap(),
                Some(Duration::from_nanos(1)),
                "{tiny}"
            );
        }
        assert_eq!(
            parse_limit("1.5").unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_limit("2m").unwrap(), Some(Duration::from_secs(120)));
        assert_eq!(parse_limit("1e0").unwrap(), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_limit("250ms").unwrap(),
            Some(Duration::from_millis(250))
        );
        for bad in ["abc", "-1", "", "1x", "nan"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_are_one_line_without_os_error_numbers() {
        let e = GuardError::Watch(Pid::from_raw(7), io::Error::from_raw_os_error(libc::ESRCH));
        assert_eq!(e.to_string(), "cannot watch process 7: No such process");
        assert_eq!(e.exit_code(), EXIT_FAILED);
        let e = GuardError::Exec {
            command: "x".into(),
            errno: nix::errno::Errno::ENOENT,
        };
        assert_eq!(
            e.to_string(),
            "failed to run command 'x': No such file or directory"
        );
        assert_eq!(e.exit_code(), EXIT_ENOENT);
        let e = GuardError::Exec {
            command: "x".into(),
            errno: nix::errno::Errno::EACCES,
        };
        assert_eq!(e.exit_code(), EXIT_CANNOT_INVOKE);
    }
}
