//! Is a process alive, and tell me when it dies (pidfd, no polling).

use std::os::fd::{FromRawFd, OwnedFd};

/// `PF_EXITING` in `/proc/PID/stat`'s flags: the process has begun to die.
/// The kernel sets it before it releases the robust mutexes the process
/// held, so the locker that gets `EOWNERDEAD` already sees the holder as dead.
const PF_EXITING: u64 = 0x4;

/// Whether process `pid` exists and is not dying or a zombie.
pub fn alive(pid: i32) -> bool {
    alive_as(pid, 0)
}

/// Whether process `pid` is alive (not dying, not a zombie) and is the same
/// process that had start time `start`, so a reused pid is not mistaken for
/// it. A `start` of 0 (unknown) checks the pid only.
pub fn alive_as(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|st| {
        st.state != 'Z'
            && st.state != 'X'
            && st.flags & PF_EXITING == 0
            && (start == 0 || st.start == start)
    })
}

/// The start time of process `pid` (clock ticks since boot), if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|st| st.start)
}

struct Stat {
    state: char,
    flags: u64,
    start: u64,
}

/// State, flags and start time from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the parenthesised command name, numbered as in
    // proc(5): 3 state, ..., 9 flags, ..., 22 starttime.
    let rest: Vec<&str> = line.rsplit(')').next()?.split_whitespace().collect();
    Some(Stat {
        state: rest.first()?.chars().next()?,
        flags: rest.get(6)?.parse().ok()?,
        start: rest.get(19)?.parse().ok()?,
    })
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of the board's timed waits).
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
