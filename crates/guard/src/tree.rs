//! The process tree a command leaves behind, and how `guard` ends all of it.
//!
//! A command may start helpers that outlive it. Some stay in its process
//! group (`sh -c 'sleep 100 &'`), which one `killpg(2)` reaches. Others move
//! to a new session or group (`setsid`, a daemon's double fork) and would be
//! reparented to `init`, out of reach. `guard` declares itself a *child
//! subreaper* (`prctl(PR_SET_CHILD_SUBREAPER)`): orphaned descendants are
//! reparented to it instead, so they become its own children, which it can
//! find (`/proc/*/stat`, parent pid = guard), signal without pid-reuse races
//! (an unreaped child's pid cannot be reused) and reap.
//!
//! Once the command has ended, every living descendant has a chain of
//! parents that ends at one of guard's children. So "kill all my children,
//! reap, repeat until `ECHILD`" leaves nothing behind.

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::signals::send;
use syncomm_sys::pidfd::wait_raw;
use syncomm_sys::proc;

/// Looks at (without reaping) any child that has ended.
const PEEK: libc::c_int = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;

/// Makes this process the reaper of its orphaned descendants.
pub fn become_subreaper() -> Result<(), Errno> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// One of our children, as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    /// Its pid.
    pub pid: Pid,
    /// Its process group.
    pub pgid: Pid,
}

/// The calling thread's children: the kernel's list in
/// `/proc/self/task/TID/children` (guard is single-threaded, so that is all
/// of them, orphans reparented to it included), else a walk of `/proc/*/stat`
/// for processes whose parent is us.
pub fn my_children() -> Vec<Child> {
    let tid = nix::unistd::gettid();
    let Some(pids) = proc::children_of_task(tid.as_raw()) else {
        return children_of(Pid::this());
    };
    pids.into_iter()
        .filter_map(|pid| {
            let st = proc::read_stat(pid).ok()??;
            Some(Child {
                pid: Pid::from_raw(pid),
                pgid: Pid::from_raw(st.pgrp),
            })
        })
        .collect()
}

/// The processes whose parent is `parent`, read from `/proc/*/stat`.
pub fn children_of(parent: Pid) -> Vec<Child> {
    proc::all_pids()
        .into_iter()
        .filter_map(|pid| {
            let st = proc::read_stat(pid).ok()??;
            (st.ppid == parent.as_raw()).then_some(Child {
                pid: Pid::from_raw(pid),
                pgid: Pid::from_raw(st.pgrp),
            })
        })
        .collect()
}

/// Reaps children other than `keep` that have already ended (orphans that
/// were reparented to us and then exited), so they do not linger as zombies
/// while the command runs. Never reaps `keep`: its status belongs to `guard`.
pub fn reap_ended_orphans(keep: Pid) {
    // WNOWAIT looks without reaping, so we can leave `keep` alone. The raw
    // wait (not nix's) also reports children killed by real-time signals.
    while let Ok(Some((pid, _))) = wait_raw(libc::P_ALL, 0, PEEK) {
        if pid == keep {
            break;
        }
        let _ = wait_raw(libc::P_PID, pid.as_raw() as libc::id_t, libc::WEXITED);
    }
}

/// Whether we have any child left at all (running or ended, not yet reaped).
fn have_children() -> bool {
    !matches!(wait_raw(libc::P_ALL, 0, PEEK), Err(e) if e.raw_os_error() == Some(Errno::ECHILD as i32))
}

/// Kills every descendant that was reparented to us, with SIGKILL, and
/// reaps them, until we have no child left.
///
/// Call it after the command itself was reaped (and its process group
/// killed). Returns how many processes were reaped here.
pub fn kill_leftovers() -> usize {
    let mut reaped = 0;
    // The common case, a command that left nothing: one syscall, no /proc walk.
    while have_children() {
        for child in my_children() {
            let _ = send(child.pid, libc::SIGKILL);
        }
        // Wait for one to end; its own children are now ours, killed next round.
        match wait_raw(libc::P_ALL, 0, libc::WEXITED) {
            Ok(_) => reaped += 1,
            Err(_) => break,
        }
        while let Ok(Some(_)) = wait_raw(libc::P_ALL, 0, libc::WEXITED | libc::WNOHANG) {
            reaped += 1;
        }
    }
    reaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = children_of(Pid::this());
        let listed = my_children();
        let pid = Pid::from_raw(child.id() as i32);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.iter().any(|c| c.pid == pid), "{found:?}");
        assert!(listed.iter().any(|c| c.pid == pid), "{listed:?}");
    }
}
