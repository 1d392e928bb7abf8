//! Signals by name or number, sending them, and the inbox through which
//! `guard` receives the signals it passes on.
//!
//! Signals are plain numbers here (`i32`), not `nix`'s enum, because `-s`
//! accepts every signal `kill -l` lists, realtime ones (`RTMIN+3`) included,
//! and `0` (send nothing, only check).

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::GuardError;

/// The signals `guard` passes on to the command when it receives them.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Job control: Ctrl-Z (SIGTSTP) stops the command and then guard itself;
/// `fg`/`bg` (SIGCONT, which wakes guard whatever its mask) wakes the command.
pub const JOB_CONTROL: [Signal; 2] = [Signal::SIGTSTP, Signal::SIGCONT];

/// Reads a signal as `kill -l` writes it: `TERM`, `SIGTERM`, `term`, `15`,
/// `RTMIN+2`, `RTMAX-1`, or `0`.
pub fn parse_signal(text: &str) -> Result<i32, GuardError> {
    let bad = || GuardError::BadSignal(text.to_owned());
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n: i32 = t.parse().map_err(|_| bad())?;
        return if n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if name == "EXIT" {
        return Ok(0);
    }
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return realtime(libc::SIGRTMIN(), rest, 1).ok_or_else(bad);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return realtime(libc::SIGRTMAX(), rest, -1).ok_or_else(bad);
    }
    let alias = match name {
        "IOT" => "ABRT",
        "CLD" => "CHLD",
        "POLL" => "IO",
        other => other,
    };
    Signal::iterator()
        .find(|s| &s.as_str()[3..] == alias)
        .map(|s| s as i32)
        .ok_or_else(bad)
}

/// `RTMIN`, `RTMIN+N` (direction 1) or `RTMAX`, `RTMAX-N` (direction -1).
fn realtime(base: i32, rest: &str, direction: i32) -> Option<i32> {
    let offset = match rest {
        "" => 0,
        _ => {
            let sign = if direction > 0 { '+' } else { '-' };
            rest.strip_prefix(sign)?.parse::<i32>().ok()?
        }
    };
    let sig = base + direction * offset;
    (libc::SIGRTMIN()..=libc::SIGRTMAX())
        .contains(&sig)
        .then_some(sig)
}

/// The name `timeout(1)` prints for a signal: `TERM`, `KILL`, `RTMIN+2`, or the number.
pub fn signal_name(sig: i32) -> String {
    if let Ok(s) = Signal::try_from(sig) {
        return s.as_str()[3..].to_owned();
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    match sig {
        s if s == min => "RTMIN".to_owned(),
        s if s == max => "RTMAX".to_owned(),
        s if (min..max).contains(&s) => format!("RTMIN+{}", s - min),
        s => s.to_string(),
    }
}

/// `kill(2)`: sends signal number `sig` to `pid` (a negative `pid` is a process group).
pub fn send(pid: Pid, sig: i32) -> Result<(), Errno> {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    Errno::result(unsafe { libc::kill(pid.as_raw(), sig) }).map(drop)
}

/// `killpg(2)`: sends signal number `sig` to every process in group `pgid`.
pub fn send_group(pgid: Pid, sig: i32) -> Result<(), Errno> {
    send(Pid::from_raw(-pgid.as_raw()), sig)
}

/// Signals delivered through a file descriptor instead of a handler.
///
/// Opening the inbox blocks its signals for this process, so they queue up
/// instead of acting; a `signalfd(2)` descriptor becomes readable while one is
/// pending, and `poll(2)` waits on it beside the command's pidfd. Nothing runs
/// in signal context, so nothing has to be async-signal-safe.
pub struct Inbox {
    fd: SignalFd,
}

impl Inbox {
    /// Blocks `signals` and opens a descriptor that receives them.
    pub fn open(signals: &[Signal]) -> Result<Inbox, Errno> {
        let mut mask = SigSet::empty();
        for s in signals {
            mask.add(*s);
        }
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Inbox { fd })
    }

    /// The next pending signal, if any.
    pub fn take(&mut self) -> Option<i32> {
        match self.fd.read_signal() {
            Ok(Some(info)) => Some(info.ssi_signo as i32),
            _ => None,
        }
    }
}

impl AsFd for Inbox {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether this process ignores `sig` (`SIG_IGN`, usually inherited: a shell
/// starts background jobs with INT and QUIT ignored, `nohup` ignores HUP).
/// guard leaves such a signal alone instead of catching it, as it would
/// have been ignored without guard too.
pub fn is_ignored(sig: Signal) -> bool {
    let mut old = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`,
    // a properly sized, writable sigaction.
    let rc = unsafe { libc::sigaction(sig as i32, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled in by the kernel on success.
    rc == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// In a freshly forked child, before `exec`: unblock every signal, so the
/// command does not inherit the mask `guard` uses for its [`Inbox`].
pub fn unblock_all() -> Result<(), Errno> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("sigterm").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("kill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("0").unwrap(), 0);
        assert_eq!(parse_signal("CLD").unwrap(), libc::SIGCHLD);
        assert_eq!(parse_signal("RTMIN+2").unwrap(), libc::SIGRTMIN() + 2);
        assert_eq!(parse_signal("RTMAX-1").unwrap(), libc::SIGRTMAX() - 1);
        for bad in ["FOO", "99", "-1", "", "RTMIN+99", "RTMIN-1", "SIG"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_round_trip() {
        for s in ["TERM", "KILL", "USR1", "RTMIN", "RTMIN+3", "RTMAX"] {
            assert_eq!(signal_name(parse_signal(s).unwrap()), s);
        }
        assert_eq!(signal_name(0), "0");
    }
}
