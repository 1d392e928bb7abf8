//! How many pidfds a member may hold.
//!
//! A member watches each other member's exit through a pidfd, one descriptor
//! per member. A group of up to [`MAX_MEMBERS`](crate::registry::MAX_MEMBERS)
//! would need more descriptors than the usual soft limit of 1,024 allows,
//! and under a low limit (`ulimit -n 24`) the pidfds would leave no
//! descriptor for the registry itself. So a member:
//! 1. raises its soft `RLIMIT_NOFILE` to the hard limit (allowed to any
//!    process, and harmless: discover runs no other program);
//! 2. keeps [`WORKING_SET`] descriptors free for its own work (the lock file,
//!    the registry, its temp file, the lock helper's socket pair, `/proc`
//!    reads) and opens pidfds only for as many members as the rest allows;
//! 3. checks the members beyond that by pid and start time in `/proc` every
//!    50 ms instead (a look that finds them alive changes nothing; one that
//!    cannot read `/proc` takes nobody for dead).

use nix::sys::resource::RLIM_INFINITY;

/// Descriptors kept free for a member's own work beyond those open when it
/// starts: lock file (plus the helper thread's own open of it), registry,
/// temp file, the helper's socket pair, a `/proc` read, `/proc/locks`, and
/// a spare.
pub const WORKING_SET: u64 = 10;

/// Raises the soft descriptor limit to the hard one (best effort) and
/// returns the soft limit now in force (`None`: unlimited).
pub fn raise_limit() -> Option<u64> {
    use syncomm_sys::rlimit::{nofile_limit, raise_nofile_limit};
    let soft = raise_nofile_limit().or_else(|_| nofile_limit()).ok()?;
    (soft != RLIM_INFINITY).then_some(soft)
}

/// The descriptors this process has open now, from `/proc/self/fd`
/// (`None` if it cannot be read).
pub fn open_now() -> Option<u64> {
    syncomm_sys::proc::open_fd_count()
}

/// How many pidfds fit: the soft limit (raised first) minus the descriptors
/// open now and the [`WORKING_SET`] (16 open are assumed when
/// `/proc/self/fd` cannot be read). Unlimited: no cap.
pub fn pidfd_budget() -> usize {
    let Some(limit) = raise_limit() else {
        return usize::MAX;
    };
    let open = open_now().unwrap_or(16);
    usize::try_from(limit.saturating_sub(open + WORKING_SET)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_the_working_set_free() {
        let open = open_now().expect("/proc/self/fd");
        assert!(open >= 3, "stdin, stdout and stderr at least: {open}");
        let budget = pidfd_budget();
        if let Some(limit) = raise_limit() {
            assert!(budget as u64 + open + WORKING_SET <= limit.max(open + WORKING_SET));
        }
    }
}
