//! Clean shutdown on SIGINT, SIGTERM and SIGHUP.
//!
//! [`Shutdown::install`] replaces the default "die at once" action of SIGINT
//! and SIGTERM with three cheap, async-signal-safe effects (via `signal-hook`):
//! a flag that loops check, the number of the signal, and a byte written to a
//! socket pair whose read end any `poll(2)` loop can wait on beside its other
//! descriptors. The program then releases what it holds and removes what it
//! created. A second signal while shutting down exits at once (status 128+N, as a shell reports a death by signal N),
//! so a stuck cleanup never traps the user.

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals that request a clean shutdown: Ctrl-C, `kill`, and the hang-up
/// a program gets when its terminal (or tmux pane) closes.
pub const SHUTDOWN_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// A shutdown request flag fed by SIGINT, SIGTERM and SIGHUP.
#[derive(Clone, Debug)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
    wake: Arc<UnixStream>,
}

impl Shutdown {
    /// Installs the handlers for SIGINT, SIGTERM and SIGHUP.
    ///
    /// # Process-wide effects
    /// Signal dispositions belong to the process: this replaces the
    /// handlers of those three signals for every thread (with `SA_RESTART`),
    /// and a second signal of them ends the process at once. Call it once,
    /// from a program's `main`; a library never calls it.
    pub fn install() -> io::Result<Shutdown> {
        let flag = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        for sig in SHUTDOWN_SIGNALS {
            // Registered first, so it sees the flag as the previous signal left it.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&flag))?;
            signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)?;
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(Shutdown {
            flag,
            signal,
            wake: Arc::new(read),
        })
    }

    /// A flag that is never set by a signal: for library code driven by tests
    /// or by a caller that handles signals itself.
    pub fn manual() -> io::Result<Shutdown> {
        let (read, _write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        Ok(Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            signal: Arc::new(AtomicUsize::new(0)),
            wake: Arc::new(read),
        })
    }

    /// Whether shutdown was requested.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Requests shutdown from inside the program.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// The signal that requested shutdown, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }

    /// The exit status of a program that stopped because of the request:
    /// 128+N for signal N, as a shell reports a death by that signal (130 for
    /// Ctrl-C, 143 for `kill`); 130 when requested without a signal.
    pub fn exit_code(&self) -> u8 {
        128u8.saturating_add(self.signal().unwrap_or(SIGINT) as u8)
    }

    /// A descriptor that becomes readable when a shutdown signal arrives; add
    /// it to a `poll(2)` set. Call [`Shutdown::drain`] after it fires.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The raw form of [`Shutdown::wake_fd`].
    pub fn wake_raw_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Sleeps for `d`, or less if shutdown is requested (a signal wakes it at
    /// once: it waits in `poll(2)` on the wake-up descriptor). Returns whether
    /// the whole duration passed.
    pub fn sleep(&self, d: std::time::Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let deadline = std::time::Instant::now() + d;
        loop {
            if self.requested() {
                return false;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            let mut fds = [PollFd::new(self.wake_fd(), PollFlags::POLLIN)];
            let _ = poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            );
        }
    }

    /// Empties the wake-up descriptor. Only one loop may drain it: when several
    /// threads poll the same descriptor, the first to drain hides the wake-up
    /// from the others (they should check [`Shutdown::requested`] instead).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&*self.wake).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// A flag that SIGQUIT (Ctrl-\\ on a terminal) sets: a request for the
/// statistics so far, as `ping(8)` answers it. It replaces SIGQUIT's default
/// action (end with a core dump) for the whole process; the program clears
/// the flag when it has answered. Call it once, from a program's `main`.
pub fn info_requests() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGQUIT, Arc::clone(&flag))?;
    Ok(flag)
}

/// A shutdown request ends a `syncomm_sys::flock::lock` wait.
impl syncomm_sys::flock::Interrupt for Shutdown {
    fn wake_fd(&self) -> BorrowedFd<'_> {
        Shutdown::wake_fd(self)
    }
    fn requested(&self) -> bool {
        Shutdown::requested(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_request_sets_flag() {
        let s = Shutdown::manual().unwrap();
        assert!(!s.requested());
        s.request();
        assert!(s.requested());
        assert_eq!(s.signal(), None);
        assert_eq!(s.exit_code(), 130);
    }
}
