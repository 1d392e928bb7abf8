//! `futex(2)` on a 32-bit word, shared between processes (the word lives in
//! shared memory; the kernel keys a shared futex by the physical page, so
//! every process mapping it meets there).

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

/// Sleeps while `word` holds `expected`, at most `timeout` (relative,
/// CLOCK_MONOTONIC), or until a [`wake`]. Every outcome — woken, the word
/// changed (`EAGAIN`), timed out, interrupted by a signal — means the same
/// to the caller: look at the state again. So nothing is returned.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| rustix::time::Timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: t.subsec_nanos().into(),
    });
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wakes up to `n` sleepers on `word` (in every process; `u32::MAX`: all);
/// returns how many were woken.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    // The kernel reads the count as an int: u32::MAX would be -1, which
    // wakes only one sleeper.
    let n = n.min(i32::MAX as u32);
    futex::wake(word, futex::Flags::empty(), n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_changed_word_does_not_sleep_and_a_timeout_ends() {
        let w = AtomicU32::new(1);
        wait(&w, 0, None); // the word is not 0: returns at once (EAGAIN)
        wait(&w, 1, Some(Duration::from_millis(1)));
        assert_eq!(wake(&w, 1), 0);
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                while w.load(Ordering::SeqCst) == 1 {
                    wait(&w, 1, Some(Duration::from_secs(5)));
                }
            });
            w.store(2, Ordering::SeqCst);
            wake(&w, u32::MAX);
            h.join().unwrap();
        });
    }
}
