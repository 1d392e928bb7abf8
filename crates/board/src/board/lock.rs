//! The board's robust lock: taking it (blocking or bounded), the [`Guard`]
//! that holds it, the repair after a holder died holding it, and the reads
//! made under it.

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};

use super::Board;
use crate::error::BoardError;
use crate::liveness;
use crate::segment::{Shared, VALUES};

impl Board {
    /// Takes the board's lock. If the previous holder died holding it
    /// (`EOWNERDEAD`), repairs the protected state first and marks the lock
    /// consistent again.
    pub fn lock(&self) -> Result<Guard<'_>, BoardError> {
        // SAFETY: the mutex was initialised process-shared by the creator
        // before the magic that `open` checked was published.
        let rc = unsafe { libc::pthread_mutex_lock(self.shared().mutex.get()) };
        Guard::acquired(self, rc)
    }

    /// Takes the board's lock like [`Board::lock`], but gives up one
    /// [`LOCK_SLICE`] after `deadline`, or as soon as `stop()` says so (checked every
    /// [`LOCK_SLICE`]): a holder that is alive but stalled (stopped with
    /// Ctrl-Z, say) must not make a `--timeout` or a Ctrl-C wait forever.
    /// `Ok(None)`: gave up.
    pub fn lock_until(
        &self,
        deadline: Option<Instant>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Guard<'_>>, BoardError> {
        // A lock that is merely busy (a flat-out producer) is had within a
        // slice: give up only one slice past the deadline.
        let deadline = deadline.and_then(|d| d.checked_add(LOCK_SLICE));
        loop {
            let mut slice = LOCK_SLICE;
            if let Some(d) = deadline {
                slice = slice.min(d.saturating_duration_since(Instant::now()));
            }
            let abs = realtime_after(slice);
            // SAFETY: the mutex was initialised process-shared and robust;
            // `abs` is a valid absolute CLOCK_REALTIME time.
            let rc = unsafe { libc::pthread_mutex_timedlock(self.shared().mutex.get(), &abs) };
            if rc != libc::ETIMEDOUT {
                return Guard::acquired(self, rc).map(Some);
            }
            if stop() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }
}

/// The board's lock, held: a `Guard` exists only while this thread holds
/// the mutex (a wait or a timed lock that gives up consumes it), and
/// dropping it unlocks.
///
/// A guard cannot leave its thread: a robust mutex is owned by a thread, and
/// an unlock from another one fails (`EPERM`), leaving the board locked.
/// So `Guard` is `!Send` (like `std::sync::MutexGuard`):
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// fn leak(g: syncomm_board::board::Guard<'static>) {
///     send(g); // error: `*const ()` cannot be sent between threads safely
/// }
/// ```
pub struct Guard<'a> {
    pub(super) board: &'a Board,
    /// The wake sequence was bumped under the lock: `FUTEX_WAKE` once the
    /// mutex is released, so the woken do not block again on it.
    pub(super) wake: bool,
    /// `!Send` and `!Sync`: the mutex belongs to this thread.
    _thread: PhantomData<*const ()>,
}

impl<'a> Guard<'a> {
    pub(super) fn s(&self) -> &Shared {
        self.board.shared()
    }

    /// The guard for a lock call that returned `rc`: `EOWNERDEAD` also hands
    /// us the mutex (then the board is repaired first); any other error
    /// does not, and no guard is made.
    fn acquired(board: &'a Board, rc: libc::c_int) -> Result<Guard<'a>, BoardError> {
        let mut guard = match rc {
            0 | libc::EOWNERDEAD => Guard {
                board,
                wake: false,
                _thread: PhantomData,
            },
            libc::ENOTRECOVERABLE => return Err(BoardError::Unrecoverable(rc)),
            rc => {
                return Err(BoardError::Os {
                    what: "locking the board".into(),
                    source: io::Error::from_raw_os_error(rc),
                })
            }
        };
        if rc == libc::EOWNERDEAD {
            guard.repair();
            // The dead holder may have bumped the wake sequence without
            // waking anyone (it dies before its unlock): wake everyone.
            guard.wake = true;
            // SAFETY: we hold the mutex (EOWNERDEAD means we acquired it).
            let rc = unsafe { libc::pthread_mutex_consistent(guard.s().mutex.get()) };
            if rc != 0 {
                // Dropping the guard unlocks without marking it consistent:
                // the lock becomes unrecoverable for everyone, as it must.
                return Err(BoardError::Unrecoverable(rc));
            }
        }
        Ok(guard)
    }
    /// Releases the mutex, then wakes the sleepers if a notification is
    /// pending. Used by `Drop` and by [`Guard::wait`].
    pub(super) fn release(&mut self) {
        let s = self.board.shared();
        // SAFETY: a Guard exists only while this thread holds the mutex
        // (it is !Send, and every path that loses the lock consumes it).
        let rc = unsafe { libc::pthread_mutex_unlock(s.mutex.get()) };
        debug_assert_eq!(rc, 0, "unlocking the board");
        if std::mem::take(&mut self.wake) && self.board.wake_sleepers() == 0 {
            self.board.idle_wake.store(true, Relaxed);
        }
    }
    /// The previous holder died holding the lock, possibly inside an append.
    /// An append is redone from its redo record (`pending`) so that the
    /// per-value counts always sum to the total.
    fn repair(&self) {
        let s = self.s();
        let seq = s.seq.0.load(Relaxed);
        let odd = if seq & 1 == 1 { seq } else { self.begin() };
        let total = s.total.load(Relaxed);
        let sum = s
            .counts
            .iter()
            .fold(0u64, |a, c| a.wrapping_add(c.load(Relaxed)));
        let v = s.pending.load(Relaxed) as usize;
        // An append was cut short if a write section was open and `total`
        // has not yet reached the number the pending value gets. (`total` is
        // stored last: once it is bumped the append is complete, even if the
        // holder died before closing the section; any other write section,
        // like `stop`, leaves `pending_n` at the current total.)
        let cut = seq & 1 == 1 && s.pending_n.load(Relaxed) == total.wrapping_add(1);
        if cut && sum == total && v < VALUES {
            // Died before counting the value: redo the whole append.
            tracing::warn!("repairing board: redoing the interrupted append of {v}");
            self.write_value(total, v as u8);
        } else if cut && sum == total.wrapping_add(1) {
            // Counted but the total not yet bumped: finish it.
            tracing::warn!("repairing board: finishing the interrupted append of {v}");
            s.total.store(total.wrapping_add(1), Relaxed);
        } else if sum != total {
            tracing::warn!(
                "repairing board: total {total} but counts sum to {sum}; trusting the counts"
            );
            s.total.store(sum, Relaxed);
        }
        s.repairs
            .store(s.repairs.load(Relaxed).wrapping_add(1), Relaxed);
        self.end(odd);
    }
    /// Values appended so far.
    pub fn total(&self) -> u64 {
        self.s().total.load(Relaxed)
    }

    /// Whether the board is active.
    pub fn active(&self) -> bool {
        self.s().active.load(Relaxed) != 0
    }

    /// The producer pid recorded on the board (0: none).
    pub fn producer_pid(&self) -> i32 {
        self.s().producer_pid.load(Relaxed)
    }

    /// Whether the board is active and its producer alive (the same process
    /// that attached, not a reused pid).
    pub fn producer_live(&self) -> bool {
        let s = self.s();
        self.active()
            && liveness::alive_as(s.producer_pid.load(Relaxed), s.producer_start.load(Relaxed))
    }

    /// How many times `v` has appeared.
    pub fn count(&self, v: u8) -> u64 {
        self.s().counts[v as usize].load(Relaxed)
    }

    /// The number (1-based) of `v`'s first appearance, 0 if never.
    pub fn first(&self, v: u8) -> u64 {
        self.s().first[v as usize].load(Relaxed)
    }

    /// The values numbered `from..=to` (1-based) that are still in the ring.
    pub fn values(&self, from: u64, to: u64) -> Vec<u8> {
        self.board.seg.values(from, to)
    }

    /// What a consumer that found `v` reports (see [`Segment::found_recent`](crate::mapped::Segment::found_recent)).
    pub fn found_recent(&self, v: u8) -> Vec<u8> {
        self.board.seg.found_recent(v)
    }
}

/// How often a bounded lock wait re-checks its deadline and its stop condition.
pub const LOCK_SLICE: Duration = Duration::from_millis(100);

/// The CLOCK_REALTIME time `d` from now, as `pthread_mutex_timedlock` wants it.
fn realtime_after(d: Duration) -> libc::timespec {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME)
        .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
        .unwrap_or_default();
    let at = now + d;
    libc::timespec {
        tv_sec: at.as_secs() as libc::time_t,
        tv_nsec: at.subsec_nanos() as libc::c_long,
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{dir, name};
    use super::*;
    use crate::board::Board;

    impl Guard<'_> {
        /// Half an append, as a holder killed in the middle leaves it.
        fn append_half(&mut self, v: u8) {
            let (_, total) = self.begin_append(v);
            self.board.ring(total).store(v, Relaxed);
        }

        /// A whole append whose holder dies before closing the write
        /// section (the sequence counter stays odd).
        fn append_unclosed(&mut self, v: u8) {
            let (_, total) = self.begin_append(v);
            self.write_value(total, v);
        }
    }

    #[test]
    fn holder_dying_mid_append_is_repaired_by_next_locker() {
        let d = dir(); // removed, with what the test made in it, at the end
        let n = name("dead");
        let (b, _) = Board::open_or_create(&d, &n, None, false).unwrap();
        b.lock().unwrap().append(5);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let mut g = b.lock().unwrap();
                g.append_half(42);
                // The thread ends holding the robust mutex: its owner died.
                std::mem::forget(g);
            });
        });
        let g = b.lock().unwrap();
        assert_eq!(g.total(), 2, "the interrupted append was redone");
        assert_eq!(g.count(42), 1);
        drop(g);
        let s = b.snapshot(Duration::from_secs(1)).unwrap();
        assert_eq!(s.repairs, 1);
        assert_eq!(s.recent, vec![5, 42]);
        b.remove();
    }

    /// A holder that died after completing an append but before closing
    /// the write section, or inside another write section (`stop`), must
    /// not have its last value appended a second time by the repair.
    #[test]
    fn repair_never_redoes_a_completed_append() {
        let d = dir(); // removed, with what the test made in it, at the end
        let n = name("done");
        let (b, _) = Board::open_or_create(&d, &n, None, false).unwrap();
        b.lock().unwrap().append(5);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                std::mem::forget({
                    let mut g = b.lock().unwrap();
                    g.append_unclosed(7);
                    g
                })
            });
        });
        let g = b.lock().unwrap();
        assert_eq!((g.total(), g.count(7)), (2, 1), "7 appended once");
        drop(g);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                std::mem::forget({
                    let g = b.lock().unwrap();
                    g.begin(); // dies inside a write section that is not an append
                    g
                })
            });
        });
        let g = b.lock().unwrap();
        assert_eq!((g.total(), g.count(7)), (2, 1), "nothing redone");
        drop(g);
        let s = b.snapshot(Duration::from_secs(1)).unwrap();
        assert_eq!((s.repairs, s.recent), (2, vec![5, 7]));
        b.remove();
    }
}
