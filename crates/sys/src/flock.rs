//! `flock(2)` that Ctrl-C and a deadline can both end.
//!
//! A blocking `flock(LOCK_EX)` waits in the kernel; a signal handler
//! installed with `SA_RESTART` (as signal-hook's are) restarts that wait, so
//! a process queued behind a holder that never lets go (stopped with
//! SIGSTOP, say) would not see Ctrl-C, and no timeout could end the wait.
//! The syncomm programs used four different cures (stripping `SA_RESTART`
//! process-wide, a helper thread in a blocking `flock`, `EINTR` retried
//! forever, fixed slices). This module is the one design:
//!
//! **`LOCK_NB` attempts, paced by `poll(2)` on the shutdown descriptor.**
//! Each attempt is one non-blocking `flock`; between attempts the caller
//! sleeps in `poll` on its [`Interrupt`]'s wake-up descriptor, for a pause
//! that starts at [`FIRST_PAUSE`] and doubles up to [`MAX_PAUSE`] (and never
//! past the deadline). A shutdown signal makes the descriptor readable and
//! ends the wait at once; the deadline ends it within one pause. Nothing is
//! process-wide, no thread is started, and an uncontended lock costs one
//! system call, as before. The price is that a waiter notices a release up
//! to [`MAX_PAUSE`] late, instead of being woken by the kernel.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::fs::FlockOperation;

/// The first pause between two attempts.
pub const FIRST_PAUSE: Duration = Duration::from_micros(50);

/// The longest pause between two attempts.
pub const MAX_PAUSE: Duration = Duration::from_millis(10);

/// Shared (readers) or exclusive (one writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `LOCK_SH`.
    Shared,
    /// `LOCK_EX`.
    Exclusive,
}

/// How a wait for the lock ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The lock is ours.
    Locked,
    /// The deadline passed first.
    TimedOut,
    /// The interrupt (a shutdown request) came first.
    Interrupted,
}

/// What can end a lock wait early: a descriptor that becomes readable when
/// it should (a shutdown signal's wake-up descriptor), and the flag behind
/// it (still set when someone else already drained the descriptor).
pub trait Interrupt {
    /// Readable once the wait should end.
    fn wake_fd(&self) -> BorrowedFd<'_>;
    /// Whether the wait should end.
    fn requested(&self) -> bool;
}

/// One non-blocking attempt: `Ok(true)` if the lock is now ours, `Ok(false)`
/// if another open file holds it. `EINTR` counts as "held" (try again).
pub fn try_lock(fd: impl AsFd, mode: Mode) -> io::Result<bool> {
    let op = match mode {
        Mode::Shared => FlockOperation::NonBlockingLockShared,
        Mode::Exclusive => FlockOperation::NonBlockingLockExclusive,
    };
    match rustix::fs::flock(fd, op) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Takes the lock on `fd`'s open file, waiting as the module docs say until
/// `deadline` (`None`: no limit) or until `interrupt` fires (`None`: only the
/// deadline ends the wait). The lock is released by [`unlock`] or when the
/// last descriptor of the open file closes.
pub fn lock(
    fd: impl AsFd,
    mode: Mode,
    deadline: Option<Instant>,
    interrupt: Option<&dyn Interrupt>,
) -> io::Result<Outcome> {
    let fd = fd.as_fd();
    let mut pause = FIRST_PAUSE;
    loop {
        // A free lock is taken even after an interrupt (the caller may be
        // shutting down and need it one last time); a held one is not
        // waited for then.
        if try_lock(fd, mode)? {
            return Ok(Outcome::Locked);
        }
        if interrupt.is_some_and(|i| i.requested()) {
            return Ok(Outcome::Interrupted);
        }
        let now = Instant::now();
        let nap = match deadline {
            Some(d) if now >= d => return Ok(Outcome::TimedOut),
            Some(d) => pause.min(d - now),
            None => pause,
        };
        match interrupt {
            Some(i) => {
                if wait_readable(i.wake_fd(), nap) {
                    return Ok(Outcome::Interrupted);
                }
            }
            None => std::thread::sleep(nap),
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Releases the lock (`LOCK_UN`).
pub fn unlock(fd: impl AsFd) -> io::Result<()> {
    Ok(rustix::fs::flock(fd, FlockOperation::Unlock)?)
}

/// Waits up to `d` for `fd` to become readable; returns whether it is.
fn wait_readable(fd: BorrowedFd<'_>, d: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let ts = Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    };
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    // EINTR: a signal; the caller looks at its flag and tries again.
    matches!(poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flag(UnixStream, AtomicBool);
    impl Interrupt for Flag {
        fn wake_fd(&self) -> BorrowedFd<'_> {
            self.0.as_fd()
        }
        fn requested(&self) -> bool {
            self.1.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn held_elsewhere_times_out_or_is_interrupted_then_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let a = std::fs::File::create(&path).unwrap();
        let b = std::fs::File::open(&path).unwrap();
        assert_eq!(
            lock(&a, Mode::Exclusive, None, None).unwrap(),
            Outcome::Locked
        );
        assert!(!try_lock(&b, Mode::Shared).unwrap());
        let soon = Some(Instant::now() + Duration::from_millis(20));
        assert_eq!(
            lock(&b, Mode::Shared, soon, None).unwrap(),
            Outcome::TimedOut
        );

        let (r, mut w) = UnixStream::pair().unwrap();
        let flag = Flag(r, AtomicBool::new(false));
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                flag.1.store(true, Ordering::SeqCst);
                std::io::Write::write_all(&mut w, b"x").unwrap();
            });
            let got = lock(&b, Mode::Exclusive, None, Some(&flag)).unwrap();
            assert_eq!(got, Outcome::Interrupted);
        });

        unlock(&a).unwrap();
        assert_eq!(
            lock(&b, Mode::Exclusive, soon, None).unwrap(),
            Outcome::Locked
        );
    }
}
