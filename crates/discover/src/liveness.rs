//! Is a registered member still alive? A pid alone cannot say: the kernel
//! hands a dead process's pid to the next process that asks. So each entry
//! records the pid *and* the process's start time (field 22 of
//! `/proc/PID/stat`, in clock ticks since boot); a member is alive when a
//! process with that pid exists, is not a zombie, and started at that time.
//!
//! A dead process writes nothing, so change notification on the registry
//! cannot tell a waiter that a member died. A *pidfd* can: `pidfd_open(2)`
//! gives a descriptor that `poll(2)` reports readable when the process exits.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A process, told apart from any later process that reuses its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Process id.
    pub pid: i32,
    /// Start time: field 22 of `/proc/PID/stat`.
    pub start: u64,
}

/// What `/proc` says about a registered member.
#[derive(Debug)]
pub enum Liveness {
    /// Its process runs (same pid, same start time).
    Alive,
    /// No process has that pid, it is a zombie, or the pid now belongs to a
    /// process that started at another time.
    Dead,
    /// We cannot tell (e.g. no descriptor left to read `/proc` with). Never
    /// taken for dead: the caller looks again later.
    Unknown(io::Error),
}

impl Stamp {
    /// This process's stamp.
    pub fn own() -> io::Result<Stamp> {
        let pid = std::process::id() as i32;
        let start = start_time(pid)?.ok_or_else(|| {
            io::Error::other("cannot read our own start time from /proc/self/stat")
        })?;
        Ok(Stamp { pid, start })
    }

    /// Whether this process is still running, is gone, or cannot be told.
    pub fn liveness(&self) -> Liveness {
        if self.pid <= 0 {
            return Liveness::Dead;
        }
        match start_time(self.pid) {
            Ok(Some(start)) if start == self.start => Liveness::Alive,
            Ok(_) => Liveness::Dead,
            Err(e) => Liveness::Unknown(e),
        }
    }

    /// Whether this process is known to be running (same pid, same start
    /// time); `false` when it is gone *or* cannot be told.
    pub fn is_alive(&self) -> bool {
        matches!(self.liveness(), Liveness::Alive)
    }
}

/// The start time of process `pid`: `Ok(None)` when there is no such process
/// or it is a zombie (dead, not yet reaped by its parent), an error when
/// `/proc` cannot be read for another reason (no descriptor left, no memory):
/// then nobody can say whether the process lives.
pub fn start_time(pid: i32) -> io::Result<Option<u64>> {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => Ok(parse_start_time(&stat)),
        // No such process; or it exited while we read its file.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Field 22 of a `/proc/PID/stat` line, `None` for a zombie or dead process.
///
/// Field 2, the command name, is in parentheses and may itself hold spaces
/// and parentheses, so the fields are counted from the *last* `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (the state), so field 22 is fields[19].
    if matches!(fields.first(), Some(&"Z") | Some(&"X") | Some(&"x")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits.
///
/// `ESRCH` means there is no such process (any more); `ENOSYS` an old kernel.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and a flags word and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_field_22_past_a_tricky_command_name() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(line), Some(987654));
        let zombie = "42 (x) Z 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 0 0";
        assert_eq!(parse_start_time(zombie), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn we_are_alive_and_a_wrong_start_time_is_not() {
        let me = Stamp::own().unwrap();
        assert!(me.is_alive());
        let reused = Stamp {
            start: me.start + 1,
            ..me
        };
        assert!(!reused.is_alive());
    }
}
