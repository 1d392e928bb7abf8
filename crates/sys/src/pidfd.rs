//! A process file descriptor (`pidfd_open(2)`): a handle on one process that
//! can never come to mean another one.
//!
//! A pid is only a number; once its process ends and is reaped the kernel may
//! hand the number to a new, unrelated process, and `kill(pid, ..)` would hit
//! the stranger. A pidfd refers to the process itself: it becomes readable
//! (for `poll(2)`) when that process ends, and `pidfd_send_signal(2)` on it
//! fails with `ESRCH` instead of signalling a successor. `guard` uses one for
//! its command and one for a process it watches with `--pid`; a consumer
//! for the producer it waits on; `discover` for each member it watches.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;

/// A handle on one process.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: Pid,
}

impl PidFd {
    /// Opens a handle on the running process `pid` (close-on-exec).
    /// `ESRCH`: there is no such process (any more); `ENOSYS`: an old kernel.
    pub fn open(pid: Pid) -> io::Result<PidFd> {
        let raw = rustix::process::Pid::from_raw(pid.as_raw())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
        let fd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())?;
        Ok(PidFd { fd, pid })
    }

    /// Whether the process has ended (the descriptor is readable), without
    /// waiting.
    pub fn has_ended(&self) -> bool {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Blocks until the process ends or `wake` (say a shutdown descriptor)
    /// becomes readable. Returns whether the process ended.
    pub fn wait_exit(&self, wake: Option<BorrowedFd<'_>>) -> bool {
        loop {
            let mut fds = vec![PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            if let Some(w) = wake {
                fds.push(PollFd::new(w, PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {
                    return fds[0]
                        .revents()
                        .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return false,
            }
        }
    }

    /// The process id this handle was opened on.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends signal number `sig` to exactly this process (never to a
    /// successor that got the same pid). A raw number, so that real-time
    /// signals (which rustix's `Signal` may not carry for sending) work too.
    pub fn send_signal(&self, sig: i32) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal(fd, sig, info, flags) with a null info
        // behaves like kill(2); `self.fd` is a valid pidfd for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reaps the process (it must be our child and must have ended: the
    /// descriptor was readable) and returns how it ended.
    pub fn reap(&self) -> io::Result<Ended> {
        use std::os::fd::AsRawFd;
        match wait_raw(
            libc::P_PIDFD,
            self.fd.as_raw_fd() as libc::id_t,
            libc::WEXITED,
        )? {
            Some((_, ended)) => Ok(ended),
            // Without WNOHANG, waitid returns only once a child has ended.
            None => Err(io::Error::from_raw_os_error(libc::ECHILD)),
        }
    }
}

/// How a process ended. The signal is a plain number: `nix`'s `WaitStatus`
/// holds a `Signal`, which cannot represent the real-time signals (34..=64),
/// so reaping a process killed by one of those failed with EINVAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It called `exit` with this code.
    Exited(i32),
    /// It was killed by signal number `signal`.
    Signaled {
        /// The signal number.
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
}

/// `waitid(2)` for ended children: `idtype`/`id` as the call takes them
/// (`P_PIDFD`, `P_PID`, `P_ALL`), `flags` with `WEXITED` and optionally
/// `WNOHANG`/`WNOWAIT`. Returns the pid and how it ended, or `None` when
/// `WNOHANG` found nothing yet. Retries on EINTR.
pub fn wait_raw(
    idtype: libc::idtype_t,
    id: libc::id_t,
    flags: libc::c_int,
) -> io::Result<Option<(Pid, Ended)>> {
    loop {
        // SAFETY: siginfo_t is plain data; all-zero is a valid value (and a
        // zero si_pid is how WNOHANG reports "nothing yet").
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes one siginfo_t through the pointer, which
        // points to a live, writable siginfo_t.
        let rc = unsafe { libc::waitid(idtype, id, &mut info, flags) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled in a SIGCHLD siginfo (or left it zeroed), for
        // which si_pid and si_status are the valid fields.
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        let ended = match info.si_code {
            libc::CLD_EXITED => Ended::Exited(status),
            code => Ended::Signaled {
                signal: status,
                core_dumped: code == libc::CLD_DUMPED,
            },
        };
        return Ok(Some((Pid::from_raw(pid), ended)));
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::zombie_processes)] // reaped through the pidfd
    fn a_child_is_seen_to_end_and_is_reaped_with_its_status() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let fd = PidFd::open(Pid::from_raw(child.id() as i32)).unwrap();
        assert!(fd.wait_exit(None));
        assert!(fd.has_ended());
        assert_eq!(fd.reap().unwrap(), Ended::Exited(7));
        assert!(PidFd::open(Pid::from_raw(0)).is_err());
    }
}
