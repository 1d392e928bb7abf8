//! Is a board process alive, by the one rule of `syncomm_sys::proc` (zombie,
//! dead or exiting is dead; a process `/proc` cannot tell about is *not*
//! dead, so a lock or a slot is never repaired on a guess). Waiting for a
//! process to end uses `syncomm_sys::pidfd::PidFd`.

use syncomm_sys::proc::{self, Liveness};

/// Whether process `pid` may still be alive: `false` only when it is known
/// to be dead (gone, zombie, exiting).
pub fn alive(pid: i32) -> bool {
    !proc::liveness(pid, None).is_dead()
}

/// Whether process `pid` may still be the process that had start time
/// `start` (a reused pid is dead to us). A `start` of 0 (unknown) checks the
/// pid only. `false` only when it is known to be dead.
pub fn alive_as(pid: i32, start: u64) -> bool {
    !matches!(
        proc::liveness(pid, (start != 0).then_some(start)),
        Liveness::Dead
    )
}

/// The start time of process `pid` (clock ticks since boot), if it exists
/// and can be read.
pub fn start_time(pid: i32) -> Option<u64> {
    proc::start_time(pid).ok().flatten()
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of the board's timed waits).
pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
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
