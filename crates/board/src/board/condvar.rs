//! The board's condition variable: the robust lock plus a futex word (the
//! wake sequence). Notifying, waking, waiting, and the registrations of
//! waiting consumers.

use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};

use super::{Board, Guard};
use crate::error::BoardError;
use crate::liveness;
use crate::segment::VALUES;

impl Board {
    /// How many consumers are registered as waiting for `v` (informational:
    /// read without the lock).
    pub fn waiting(&self, v: u8) -> u32 {
        self.shared().waiting[v as usize].load(Relaxed)
    }

    /// CLOCK_MONOTONIC nanoseconds of the last broadcast for an awaited value.
    pub fn notify_ns(&self) -> u64 {
        self.shared().notify_ns.load(Acquire)
    }

    /// `FUTEX_WAKE`s every sleeper on the wake sequence (in every process:
    /// a shared, not private, futex). Returns how many were woken. The
    /// sequence must have been bumped first ([`Guard::notify`]).
    pub(super) fn wake_sleepers(&self) -> i64 {
        syncomm_sys::futex::wake(&self.shared().wake, u32::MAX) as i64
    }
}

impl<'a> Guard<'a> {
    /// Bumps the wake sequence (under the lock, so a waiter that read it
    /// under the lock cannot miss it) and records that the sleepers are to
    /// be woken once the lock is released.
    pub(super) fn notify(&mut self) {
        self.s().wake.fetch_add(1, Release);
        self.wake = true;
    }
    /// Registers (+1) or unregisters (-1) this process as a waiter for `v`:
    /// the count the producer checks, and a slot naming this process so the
    /// registration can be reaped if it dies while waiting.
    pub fn add_waiter(&mut self, v: u8, delta: i32) {
        let s = self.s();
        let w = &s.waiting[v as usize];
        w.store(w.load(Relaxed).saturating_add_signed(delta), Relaxed);
        let me = std::process::id() as i32;
        if delta > 0 {
            self.reap_dead_waiters();
            if let Some(slot) = s.waiter_slots.iter().find(|x| x.pid.load(Relaxed) == 0) {
                slot.value.store(v as u32, Relaxed);
                slot.start
                    .store(liveness::start_time(me).unwrap_or(0), Relaxed);
                slot.pid.store(me, Relaxed);
            }
        } else if let Some(slot) = s
            .waiter_slots
            .iter()
            .find(|x| x.pid.load(Relaxed) == me && x.value.load(Relaxed) == v as u32)
        {
            slot.pid.store(0, Relaxed);
        }
    }

    /// Drops the registrations of waiters that died while waiting (their
    /// process is gone): their values need no more wake-ups. Returns how
    /// many were reaped.
    pub fn reap_dead_waiters(&self) -> usize {
        let s = self.s();
        let mut reaped = 0;
        for slot in &s.waiter_slots {
            let pid = slot.pid.load(Relaxed);
            if pid != 0 && !liveness::alive_as(pid, slot.start.load(Relaxed)) {
                let v = (slot.value.load(Relaxed) as usize).min(VALUES - 1);
                let w = &s.waiting[v];
                w.store(w.load(Relaxed).saturating_sub(1), Relaxed);
                slot.pid.store(0, Relaxed);
                reaped += 1;
            }
        }
        if reaped > 0 {
            tracing::info!("reaped {reaped} waiter(s) that died while waiting");
        }
        reaped
    }

    /// Waits on the board's condition until woken or `deadline`: reads the
    /// wake sequence under the lock, unlocks (waking the sleepers first if
    /// this guard notified), sleeps in `FUTEX_WAIT` while the sequence is
    /// unchanged (a notification between the unlock and the sleep makes it
    /// return at once: no lost wake-up), and locks again (repairing if a
    /// holder died meanwhile). The caller re-checks its predicate: wake-ups
    /// may be spurious.
    ///
    /// The re-lock gives up at `deadline` or when `stop()` says so (see
    /// [`Board::lock_until`]): then it returns `Ok(None)`, and the guard,
    /// which no longer holds the lock, is gone with it.
    pub fn wait(
        mut self,
        deadline: Option<Instant>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Guard<'a>>, BoardError> {
        let board = self.board;
        let s = board.shared();
        let seen = s.wake.load(Acquire);
        self.release();
        // Released above: the guard must not unlock a second time.
        std::mem::forget(self);
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left != Some(Duration::ZERO) {
            syncomm_sys::futex::wait(&s.wake, seen, left);
        }
        board.lock_until(deadline, stop)
    }
}

/// Wakes every waiter of `board` safely from another thread: takes the lock
/// (repairing if needed), bumps the wake sequence, unlocks and wakes. The
/// caller has already set the state the waiters will re-check.
pub fn wake_all(board: &Board) {
    if let Ok(mut g) = board.lock() {
        g.notify();
    } else {
        board.shared().wake.fetch_add(1, Release);
        board.wake_sleepers();
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{dir, name};
    use crate::board::Board;
    use std::time::{Duration, Instant};

    /// Whether thread `tid` of this process sleeps in the kernel.
    fn sleeping(tid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
            .ok()
            .and_then(|l| {
                l.rsplit(')')
                    .next()
                    .map(|r| r.trim_start().starts_with('S'))
            })
            .unwrap_or(false)
    }

    /// A waiter asleep on the board is woken by an append for its value
    /// (the wake is issued after the unlock), and by the next locker when
    /// a holder bumped the wake sequence and died before its unlock, so
    /// before its `FUTEX_WAKE`.
    #[test]
    fn sleepers_are_woken_after_the_unlock_even_if_the_notifier_died() {
        let d = dir(); // removed, with what the test made in it, at the end
        let n = name("wake");
        let (b, _) = Board::open_or_create(&d, &n, None, false).unwrap();
        b.lock().unwrap().start_producing(std::process::id() as i32);
        let hang = Duration::from_secs(20);
        for notifier_dies in [false, true] {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::scope(|sc| {
                let waiter = sc.spawn(|| {
                    let tx = tx;
                    let mut g = b.lock().unwrap();
                    g.add_waiter(9, 1);
                    tx.send(nix::unistd::gettid().as_raw()).unwrap();
                    // One wait: returns once woken, or at the deadline
                    // (which only stops a hang).
                    let deadline = Instant::now() + hang;
                    let mut g = g.wait(Some(deadline), &|| false).unwrap().unwrap();
                    g.add_waiter(9, -1);
                    Instant::now() < deadline
                });
                let tid = rx.recv().unwrap();
                let t = Instant::now();
                while !sleeping(tid) && t.elapsed() < hang {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if notifier_dies {
                    sc.spawn(|| {
                        let mut g = b.lock().unwrap();
                        g.append(9);
                        std::mem::forget(g); // dies holding the lock, wake pending
                    })
                    .join()
                    .unwrap();
                    drop(b.lock().unwrap()); // EOWNERDEAD: repairs and wakes
                } else {
                    b.lock().unwrap().append(9);
                }
                assert!(
                    waiter.join().unwrap(),
                    "never woken (dies: {notifier_dies})"
                );
            });
        }
        b.remove();
    }
}
