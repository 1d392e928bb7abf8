//! A process file descriptor (`pidfd_open(2)`): a handle on one process that
//! can never come to mean another one.
//!
//! A pid is only a number; once its process ends and is reaped the kernel may
//! hand the number to a new, unrelated process, and `kill(pid, ..)` would hit
//! the stranger. A pidfd refers to the process itself: it becomes readable
//! (for `poll(2)`) when that process ends, and `pidfd_send_signal(2)` on it
//! fails with `ESRCH` instead of signalling a successor. `guard` uses one for
//! its command and one for a process it watches with `--pid`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// A handle on one process.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    pid: Pid,
}

impl PidFd {
    /// Opens a handle on the running process `pid` (close-on-exec).
    pub fn open(pid: Pid) -> io::Result<PidFd> {
        // SAFETY: pidfd_open(pid, flags) takes two integers; it returns a new
        // descriptor or -1 with errno set.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us and nothing
        // else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(PidFd { fd, pid })
    }

    /// The process id this handle was opened on.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends signal number `sig` to exactly this process (never to a
    /// successor that got the same pid).
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
    pub fn reap(&self) -> nix::Result<WaitStatus> {
        loop {
            match waitid(Id::PIDFd(self.fd.as_fd()), WaitPidFlag::WEXITED) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => return other,
            }
        }
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
