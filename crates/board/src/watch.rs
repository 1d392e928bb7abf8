//! Is the board's producer alive, asked at every snapshot: cheaply.
//!
//! Reading `/proc/PID/stat` costs several microseconds (open, read, parse,
//! close), more than the rest of a snapshot. So the first answer for a
//! producer (pid and start time) comes from `/proc`, and a pidfd opened on
//! it is kept: later answers are one `poll(2)` with a zero timeout on it,
//! which becomes readable when that very process exits (a reused pid cannot
//! fool it).

use std::os::fd::AsFd;
use std::sync::Mutex;

use syncomm_sys::pidfd::PidFd;

use crate::liveness;

/// A kept pidfd on the producer last asked about.
#[derive(Debug, Default)]
pub(crate) struct ProducerWatch {
    watched: Mutex<Option<Watched>>,
}

#[derive(Debug)]
struct Watched {
    pid: i32,
    start: u64,
    /// `None`: seen dead (it stays dead).
    fd: Option<PidFd>,
}

impl ProducerWatch {
    /// Whether process `pid` with start time `start` is alive (see
    /// [`liveness::alive_as`]; `start` 0 checks the pid only).
    pub(crate) fn alive(&self, pid: i32, start: u64) -> bool {
        if pid <= 0 {
            return false;
        }
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = watched
            .as_mut()
            .filter(|w| w.pid == pid && w.start == start)
        {
            let Some(fd) = &w.fd else {
                return false;
            };
            return match exited(fd) {
                Some(false) => true,
                Some(true) => {
                    w.fd = None;
                    false
                }
                // poll failed (EINTR, ENOMEM): ask /proc instead.
                None => liveness::alive_as(pid, start),
            };
        }
        // A producer not asked about before: open the pidfd first, then ask
        // /proc, so the descriptor is known to be that very process.
        let fd = PidFd::open(nix::unistd::Pid::from_raw(pid)).ok();
        let alive = liveness::alive_as(pid, start);
        *watched = match (alive, fd) {
            (true, Some(fd)) => Some(Watched {
                pid,
                start,
                fd: Some(fd),
            }),
            // Dead for good: a process with this start time never returns.
            (false, _) if start != 0 => Some(Watched {
                pid,
                start,
                fd: None,
            }),
            _ => None,
        };
        alive
    }
}

/// Whether the process behind `fd` has exited (the pidfd is readable);
/// `None` if poll failed.
fn exited(fd: &PidFd) -> Option<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => Some(false),
        Ok(_) => Some(
            fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP)),
        ),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept pidfd notices the death of the very process it was opened
    /// on, and a start time that is not the process's is never alive.
    #[test]
    fn a_watched_process_is_seen_to_die() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let start = liveness::start_time(pid).unwrap();
        let watch = ProducerWatch::default();
        assert!(watch.alive(pid, start));
        assert!(watch.alive(pid, start), "asked again: the kept pidfd");
        assert!(!watch.alive(pid, start + 1), "another start time");
        assert!(watch.alive(pid, start));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!watch.alive(pid, start));
        assert!(!watch.alive(pid, start), "stays dead");
        assert!(!watch.alive(0, 0) && !watch.alive(-1, 0));
    }
}
