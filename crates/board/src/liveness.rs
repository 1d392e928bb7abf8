//! Is a process alive, and tell me when it dies (pidfd, no polling).

use std::os::fd::{FromRawFd, OwnedFd};

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Whether process `pid` is alive and is the same process that had start
/// time `start` (so a reused pid is not mistaken for it). A `start` of 0
/// (unknown) checks the pid only.
pub fn alive_as(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|(state, st)| state != 'Z' && state != 'X' && (start == 0 || st == start))
}

/// The start time of process `pid` (clock ticks since boot), if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, st)| st)
}

/// State letter and start time from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is the first,
    // starttime (field 22 of the whole line) the 20th.
    let mut rest = stat.rsplit(')').next()?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let start = rest.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// CLOCK_MONOTONIC in nanoseconds (the clock the board's condvar uses).
pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// A descriptor that becomes readable when `pid` exits (`pidfd_open(2)`),
/// or `None` if the process is already gone.
pub fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Blocks until the process behind `fd` exits (or `wake` becomes readable).
/// Returns true if the process exited.
pub fn wait_exit(fd: &OwnedFd, wake: Option<std::os::fd::BorrowedFd<'_>>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    loop {
        let mut fds = vec![PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_tells_a_reused_pid_apart() {
        let me = std::process::id() as i32;
        let start = start_time(me).expect("our own start time");
        assert!(alive(me));
        assert!(alive_as(me, start));
        assert!(alive_as(me, 0));
        assert!(!alive_as(me, start + 1));
        assert!(!alive(0) && !alive(-1));
    }
}
