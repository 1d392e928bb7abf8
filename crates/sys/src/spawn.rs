//! A child that dies with its parent.
//!
//! `prctl(PR_SET_PDEATHSIG, SIGKILL)` in the child, before it execs, makes
//! the kernel kill it when its parent dies, even by SIGKILL. The parent may
//! die between `fork` and that `prctl`; then the child has already been
//! reparented and no signal will come. So the child checks afterwards that
//! `getppid()` is still the parent that started it, and gives up if not.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// In a freshly forked child (before `exec`): asks for SIGKILL when the
/// parent `parent` dies, and fails with `ESRCH` if it already has.
///
/// Async-signal-safe: two plain system calls, no allocation (the error is a
/// raw OS error), no lock; so it may run in a `pre_exec` closure or in a
/// `clone`d child that shares its parent's memory.
pub fn die_with_parent(parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG, sig) takes two integers and touches
    // no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getppid(2) takes no argument and cannot fail.
    if unsafe { libc::getppid() } != parent {
        // The parent died before the line above took effect.
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// Makes the child that `cmd` will start die with this process: SIGKILL as
/// its parent-death signal, and no child at all (spawn fails with `ESRCH`)
/// if this process died before that was set.
pub fn kill_child_with_us(cmd: &mut Command) -> &mut Command {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only
    // `die_with_parent`, which is async-signal-safe (see there).
    unsafe { cmd.pre_exec(move || die_with_parent(parent)) }
}

/// Makes descriptor `fd` (close-on-exec here) stay open in the program the
/// child of `cmd` executes: `fcntl(F_SETFD, 0)` in the child, between fork
/// and exec, so this process's copy stays close-on-exec and no other child
/// inherits it.
pub fn keep_fd_across_exec(cmd: &mut Command, fd: std::os::fd::RawFd) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec and makes one
    // async-signal-safe system call (fcntl); it allocates nothing (a raw OS
    // error carries no heap data) and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// In a child started with [`keep_fd_across_exec`]: takes ownership of the
/// descriptor number `raw` its parent passed down (on the command line,
/// say), if it is open; `None` if it is not.
///
/// # Safety
/// Nothing else in this process may own or use descriptor `raw`.
pub unsafe fn adopt_inherited_fd(raw: std::os::fd::RawFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD reads the descriptor's flags and touches no memory;
    // on a closed number it fails with EBADF.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open (checked above) and, by the caller's
    // contract, owned by nothing else in this process.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) })
}
