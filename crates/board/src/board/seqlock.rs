//! The seqlock: every change to the board is a write section (the
//! sequence counter odd while it lasts), so snapshots read it without the
//! lock; and the producer's pause for a reader that keeps losing.

use std::sync::atomic::{fence, AtomicU32, Ordering::*};
use std::time::{Duration, Instant};

use super::{Board, Guard, Snapshot, SnapshotError};
use crate::liveness;

impl Board {
    /// Reads a consistent snapshot without taking the lock (see
    /// [`Segment::snapshot`](crate::mapped::Segment::snapshot)).
    pub fn snapshot(&self, limit: Duration) -> Result<Snapshot, SnapshotError> {
        self.seg.snapshot(limit)
    }

    /// Called by the producer between appends (lock not held): if a monitor
    /// keeps failing to read a snapshot, pause a few microseconds so it can.
    /// One relaxed load when nobody asks.
    #[inline]
    pub fn yield_to_readers(&self) {
        let req: &AtomicU32 = &self.shared().reader_req.0;
        if req.load(Relaxed) == 1 {
            req.store(2, Relaxed);
            let start = Instant::now();
            while req.load(Relaxed) == 2 && start.elapsed() < Duration::from_micros(50) {
                std::hint::spin_loop();
            }
            let _ = req.compare_exchange(2, 0, Relaxed, Relaxed);
        }
    }
}

impl Guard<'_> {
    /// Opens a write section: the sequence counter becomes odd.
    #[inline]
    pub(super) fn begin(&self) -> u64 {
        let seq = &self.s().seq.0;
        let v = seq.load(Relaxed);
        seq.store(v | 1, Relaxed);
        fence(Release);
        v | 1
    }

    /// Closes a write section: the sequence counter becomes even again.
    #[inline]
    pub(super) fn end(&self, odd: u64) {
        self.s().seq.0.store(odd.wrapping_add(1), Release);
    }
    /// Writes value number `total + 1` (inside an open write section).
    #[inline]
    pub(super) fn write_value(&self, total: u64, v: u8) {
        let s = self.s();
        self.board.ring(total).store(v, Relaxed);
        let c = &s.counts[v as usize];
        let n = c.load(Relaxed);
        if n == 0 {
            s.first[v as usize].store(total.wrapping_add(1), Relaxed);
        }
        c.store(n.wrapping_add(1), Relaxed);
        s.total.store(total.wrapping_add(1), Relaxed);
    }

    /// Writes the redo record for appending `v` (the value and the number it
    /// gets), then opens a write section. Returns the odd sequence number
    /// and the current total.
    #[inline]
    pub(super) fn begin_append(&self, v: u8) -> (u64, u64) {
        let s = self.s();
        let total = s.total.load(Relaxed);
        s.pending.store(v as u32, Relaxed);
        s.pending_n.store(total.wrapping_add(1), Relaxed);
        (self.begin(), total)
    }

    /// Appends `v` (0..=100) and, if consumers wait for it, notifies them:
    /// the wake sequence is bumped now and the sleepers are woken when the
    /// guard releases the lock (so they do not wake only to block on it).
    #[inline]
    pub fn append(&mut self, v: u8) {
        let s = self.s();
        let (odd, total) = self.begin_append(v);
        self.write_value(total, v);
        self.end(odd);
        if s.waiting[v as usize].load(Relaxed) != 0 {
            if self.board.idle_wake.swap(false, Relaxed) {
                // An earlier wake-up found nobody asleep: maybe the waiters
                // are dead (or just awake). Look at most every 100 ms: it
                // reads /proc.
                let now = liveness::monotonic_ns();
                let last = self.board.reaped_at.load(Relaxed);
                if now.saturating_sub(last) > 100_000_000 {
                    self.board.reaped_at.store(now, Relaxed);
                    self.reap_dead_waiters();
                }
            }
            if s.waiting[v as usize].load(Relaxed) != 0 {
                s.notify_ns.store(liveness::monotonic_ns(), Release);
                self.notify();
            }
        }
    }

    /// TESTING KNOB: appends `v` but stops half-way (counted, total not yet
    /// bumped, the sequence counter odd) and sleeps `hold` with the lock held,
    /// so a test can `kill -9` the holder at the worst moment.
    /// `on_hold` runs at the worst moment, just before the sleep.
    pub fn append_stalled(&mut self, v: u8, hold: Duration, on_hold: impl FnOnce()) {
        let s = self.s();
        let (odd, total) = self.begin_append(v);
        self.board.ring(total).store(v, Relaxed);
        let c = &s.counts[v as usize];
        c.store(c.load(Relaxed) + 1, Relaxed);
        on_hold();
        std::thread::sleep(hold);
        if s.first[v as usize].load(Relaxed) == 0 {
            s.first[v as usize].store(total + 1, Relaxed);
        }
        s.total.store(total + 1, Relaxed);
        self.end(odd);
        if s.waiting[v as usize].load(Relaxed) != 0 {
            self.notify();
        }
    }

    /// Makes `pid` the board's producer and sets `active`; wakes everyone
    /// (consumers waiting for a producer to appear).
    pub fn start_producing(&mut self, pid: i32) {
        let s = self.s();
        let start = liveness::start_time(pid).unwrap_or(0);
        let odd = self.begin();
        s.producer_pid.store(pid, Relaxed);
        s.producer_start.store(start, Relaxed);
        s.active.store(1, Relaxed);
        self.end(odd);
        self.notify();
    }

    /// Clears `active` and wakes every waiter.
    pub fn stop(&mut self) {
        let s = self.s();
        let odd = self.begin();
        s.active.store(0, Relaxed);
        self.end(odd);
        self.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{dir, name};
    use crate::board::{Board, Origin};
    use crate::error::BoardError;
    use std::time::Duration;

    #[test]
    fn append_then_snapshot_is_consistent() {
        let d = dir(); // removed, with what the test made in it, at the end
        let n = name("snap");
        let (b, origin) = Board::open_or_create(&d, &n, Some(8), false).unwrap();
        assert_eq!(origin, Origin::Created);
        {
            let mut g = b.lock().unwrap();
            for v in 0..20u8 {
                g.append(v % 101);
            }
            assert_eq!(g.first(3), 4);
            assert_eq!(g.values(1, 20), (12..20).collect::<Vec<u8>>());
        }
        let s = b.snapshot(Duration::from_secs(1)).unwrap();
        assert_eq!(s.total, 20);
        assert_eq!(s.counts.iter().sum::<u64>(), 20);
        assert_eq!(s.recent, (12..20).collect::<Vec<u8>>());
        // A second opener sees the same board; a capacity mismatch is refused.
        let b2 = Board::open(&d, &n).unwrap();
        assert_eq!(b2.capacity(), 8);
        assert!(matches!(
            Board::open_or_create(&d, &n, Some(16), false),
            Err(BoardError::Usage(_))
        ));
        b.remove();
        assert!(matches!(
            Board::open(&d, &n),
            Err(BoardError::NotFound { .. })
        ));
    }
}
