//! What `/proc` says about a process, and the one rule for "dead".
//!
//! A pid alone cannot name a process: the kernel hands a dead process's pid
//! to the next process that asks. A [`Stamp`] is the pid *and* the process's
//! start time (field 22 of `/proc/PID/stat`, in clock ticks since boot); a
//! stamped process is alive while a process with that pid exists, is not
//! dead by [`Stat::is_dead`], and started at that time.
//!
//! **The rule for dead** ([`Stat::is_dead`]): a zombie (`Z`), a dead task
//! (`X`, or `x` on older kernels), or a process with `PF_EXITING` set (it has
//! begun to exit: the kernel sets the flag before it releases the robust
//! mutexes the process held, so a locker that gets `EOWNERDEAD` already sees
//! the holder as dead). A process we cannot look at (`/proc` unreadable: no
//! descriptor left, no memory) is [`Liveness::Unknown`], never dead: the
//! caller looks again later.

use std::io;

/// `PF_EXITING` in the flags field of `/proc/PID/stat`: the process has
/// begun to exit.
pub const PF_EXITING: u64 = 0x4;

/// The fields of one `/proc/PID/stat` line that syncomm uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: the state letter (`R`, `S`, `D`, `Z`, `X`...).
    pub state: char,
    /// Field 4: the parent's pid.
    pub ppid: i32,
    /// Field 5: the process group.
    pub pgrp: i32,
    /// Field 9: the kernel's flags word (`PF_*`).
    pub flags: u64,
    /// Field 22: the start time, in clock ticks since boot.
    pub start: u64,
}

impl Stat {
    /// The one rule for "dead": a zombie, a dead task, or exiting.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x') || self.flags & PF_EXITING != 0
    }
}

/// Parses a `/proc/PID/stat` line.
///
/// Field 2, the command name, is in parentheses and may itself hold spaces
/// and parentheses (`a) b (c`), so the fields are counted from the *last*
/// `)`. `None` for anything that is not such a line.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    // fields[0] is field 3 of proc(5), so field N is fields[N - 3].
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let mut state = fields.first()?.chars();
    let (state, None) = (state.next()?, state.next()) else {
        return None;
    };
    Some(Stat {
        state,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        flags: fields.get(6)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Reads `/proc/PID/stat`: `Ok(None)` when there is no such process (or
/// `pid` is not positive), an error when `/proc` cannot be read for another
/// reason (no descriptor left, no memory) or says something unreadable.
pub fn read_stat(pid: i32) -> io::Result<Option<Stat>> {
    if pid <= 0 {
        return Ok(None);
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(line) => parse_stat(&line)
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/PID/stat")),
        // No such process; or it exited (and was reaped) while we read.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The start time of process `pid`: `Ok(None)` when there is no such
/// process or it is dead by the rule; an error when `/proc` cannot be read.
pub fn start_time(pid: i32) -> io::Result<Option<u64>> {
    Ok(read_stat(pid)?
        .filter(|st| !st.is_dead())
        .map(|st| st.start))
}

/// What `/proc` says about a process.
#[derive(Debug)]
pub enum Liveness {
    /// It runs (and, when a start time was given, started then).
    Alive,
    /// No process has that pid, it is dead by the rule, or the pid now
    /// belongs to a process that started at another time.
    Dead,
    /// We cannot tell. Never taken for dead: the caller looks again later.
    Unknown(io::Error),
}

impl Liveness {
    /// Whether the process is known to be dead (`Unknown` is not).
    pub fn is_dead(&self) -> bool {
        matches!(self, Liveness::Dead)
    }
}

/// Whether process `pid` lives; with `start`, only if it is the process
/// that started at that time (not a later one that reused the pid).
pub fn liveness(pid: i32, start: Option<u64>) -> Liveness {
    match read_stat(pid) {
        Ok(Some(st)) if !st.is_dead() && start.map_or(true, |s| s == st.start) => Liveness::Alive,
        Ok(_) => Liveness::Dead,
        Err(e) => Liveness::Unknown(e),
    }
}

/// A process, told apart from any later process that reuses its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Process id.
    pub pid: i32,
    /// Start time: field 22 of `/proc/PID/stat`.
    pub start: u64,
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
        liveness(self.pid, Some(self.start))
    }

    /// Whether this process is known to be running; `false` when it is gone
    /// *or* cannot be told.
    pub fn is_alive(&self) -> bool {
        matches!(self.liveness(), Liveness::Alive)
    }
}

/// The pids of the children of thread `tid` of this process, from
/// `/proc/self/task/TID/children`; `None` when the kernel has no such file.
pub fn children_of_task(tid: i32) -> Option<Vec<i32>> {
    let list = std::fs::read_to_string(format!("/proc/self/task/{tid}/children")).ok()?;
    Some(
        list.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
    )
}

/// Every pid in `/proc` (empty when `/proc` cannot be read).
pub fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The raw contents of `/proc/PID/cmdline` (arguments separated by NUL
/// bytes), if readable.
pub fn cmdline(pid: i32) -> Option<Vec<u8>> {
    if pid <= 0 {
        return None;
    }
    std::fs::read(format!("/proc/{pid}/cmdline")).ok()
}

/// The raw contents of `/proc/PID/environ` (`KEY=VALUE` entries separated by
/// NUL bytes), if readable (our own processes, or any as root).
pub fn environ(pid: i32) -> Option<Vec<u8>> {
    if pid <= 0 {
        return None;
    }
    std::fs::read(format!("/proc/{pid}/environ")).ok()
}

/// One System V semaphore set, as `/proc/sysvipc/sem` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysvSem {
    /// Its IPC key.
    pub key: i32,
    /// Its identifier (`semid`).
    pub semid: i32,
    /// How many semaphores it has.
    pub nsems: usize,
    /// Its owner's uid.
    pub uid: u32,
}

/// Every System V semaphore set on the machine (empty when the table
/// cannot be read).
pub fn sysv_sems() -> Vec<SysvSem> {
    let Ok(text) = std::fs::read_to_string("/proc/sysvipc/sem") else {
        return Vec::new();
    };
    parse_sysv_sems(&text)
}

/// Parses the text of `/proc/sysvipc/sem` (a header line, then
/// `key semid perms nsems uid ...` per set).
pub fn parse_sysv_sems(text: &str) -> Vec<SysvSem> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            Some(SysvSem {
                key: w.first()?.parse().ok()?,
                semid: w.get(1)?.parse().ok()?,
                nsems: w.get(3)?.parse().ok()?,
                uid: w.get(4)?.parse().ok()?,
            })
        })
        .collect()
}

/// The pid holding a `flock(2)` on the file with inode `ino`, from
/// `/proc/locks` (for messages; `None` when nobody or unreadable).
pub fn flock_holder(ino: u64) -> Option<i32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    parse_flock_holder(&locks, ino)
}

/// The pid of the `FLOCK` on inode `ino` in the text of `/proc/locks`.
pub fn parse_flock_holder(locks: &str, ino: u64) -> Option<i32> {
    // "1: FLOCK  ADVISORY  WRITE 4242 00:1f:123456 0 EOF"
    locks.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let (kind, pid, dev_ino) = (w.get(1)?, w.get(4)?, w.get(5)?);
        let file_ino: u64 = dev_ino.rsplit(':').next()?.parse().ok()?;
        (*kind == "FLOCK" && file_ino == ino).then(|| pid.parse().ok())?
    })
}

/// How many descriptors this process has open, from `/proc/self/fd`
/// (`None` when it cannot be read, e.g. no descriptor left to read it with).
pub fn open_fd_count() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    // The directory's own descriptor is listed too while we read it.
    Some((dir.count() as u64).saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str =
        "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";

    #[test]
    fn parses_past_a_tricky_command_name() {
        let st = parse_stat(LINE).unwrap();
        assert_eq!((st.state, st.ppid, st.pgrp), ('S', 1, 42));
        assert_eq!((st.flags, st.start), (4194560, 987654));
        assert!(!st.is_dead());
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn zombie_dead_and_exiting_are_dead() {
        for state in ["Z", "X", "x"] {
            let line = LINE.replace(") S ", &format!(") {state} "));
            assert!(parse_stat(&line).unwrap().is_dead(), "{state}");
        }
        let exiting = LINE.replace(" 4194560 ", " 4194564 ");
        assert!(parse_stat(&exiting).unwrap().is_dead());
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
        assert!(liveness(0, None).is_dead() && liveness(-1, None).is_dead());
        assert!(matches!(liveness(me.pid, None), Liveness::Alive));
    }

    #[test]
    fn flock_holder_from_proc_locks_text() {
        let text = "1: POSIX  ADVISORY  WRITE 7 00:1f:99 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4242 00:1f:123456 0 EOF\n";
        assert_eq!(parse_flock_holder(text, 123456), Some(4242));
        assert_eq!(parse_flock_holder(text, 99), None);
    }
}
