//! The futex floor: a shared-memory word and `futex(2)` wait/wake, and the
//! shared page it (and the wake floor) lives in.

use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::process::Stdio;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{peer_command, FloorKind, Peer, PeerSpec};

/// The futex word's value that tells the peer to exit.
pub(super) const STOP: u32 = u32::MAX;

/// A shared, read-write mapping of one page of a memfd, unmapped on drop.
pub(super) struct SharedPage {
    ptr: NonNull<libc::c_void>,
}

pub(super) const PAGE: usize = 4096;

impl SharedPage {
    pub(super) fn map(fd: impl AsFd) -> anyhow::Result<SharedPage> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let len = NonZeroUsize::new(PAGE).expect("non-zero");
        // SAFETY: we map a fresh shared mapping of a file we own (no existing
        // memory is aliased); the pointer is only used through `word`, which
        // stays inside the page, and the mapping is removed only on drop.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .context("mmap of the futex page")?;
        Ok(SharedPage { ptr })
    }

    /// The futex word at the start of the page.
    pub(super) fn word(&self) -> &AtomicU32 {
        self.u32_at(0)
    }

    /// The 32-bit word at byte `off` (a multiple of 4, inside the page).
    pub(super) fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= PAGE);
        // SAFETY: the mapping is page-aligned and `off` a multiple of 4 inside
        // it (checked above), so the word is aligned and in bounds; it lives as
        // long as `self` and is only ever accessed atomically (by us and by
        // the peer, which maps the same page).
        unsafe { &*(self.ptr.as_ptr().cast::<u8>().add(off) as *const AtomicU32) }
    }

    /// The 64-bit word at byte `off` (a multiple of 8, inside the page).
    pub(super) fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= PAGE);
        // SAFETY: as in `u32_at`, with 8-byte alignment checked above.
        unsafe { &*(self.ptr.as_ptr().cast::<u8>().add(off) as *const AtomicU64) }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from our own successful mmap of PAGE bytes, and no
        // reference from `word` outlives `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr, PAGE) };
    }
}

/// FUTEX_WAIT on a shared (not process-private) word: sleeps while
/// `word == expected`, at most `timeout`. Spurious returns are fine: every
/// caller re-checks the word in a loop.
pub(super) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned u32 in a shared mapping; FUTEX_WAIT
    // only reads it, and `ts` outlives the call. The remaining arguments are
    // ignored by FUTEX_WAIT.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// FUTEX_WAKE: wakes one process sleeping on `word`.
pub(super) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32 in a shared mapping; FUTEX_WAKE
    // does not touch memory beyond looking the word's address up.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            1i32,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Futex: we store an odd number and wake the peer; it stores the next even
/// number and wakes us. A round trip is two futex wakes and two sleeps.
pub(super) fn measure_futex(
    peer_exe: &PeerSpec,
    warmup: usize,
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(c"syncomm-bench-futex", MFdFlags::empty()).context("memfd")?;
    nix::unistd::ftruncate(&fd, PAGE as libc::off_t).context("ftruncate")?;
    let page = SharedPage::map(&fd)?;
    let word = page.word();
    word.store(0, Ordering::SeqCst);
    let mut cmd = peer_command(peer_exe, FloorKind::Futex);
    cmd.stdin(Stdio::from(fd)).stdout(Stdio::null());
    let mut peer = Peer(cmd.spawn().context("starting the futex peer")?);
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..(warmup + rounds) as u32 {
        let ask = 2 * i + 1;
        let t = Instant::now();
        word.store(ask, Ordering::SeqCst);
        futex_wake(word);
        let mut waited = Duration::ZERO;
        while word.load(Ordering::SeqCst) == ask {
            futex_wait(word, ask, Duration::from_millis(100));
            // Only on a slow path: is the peer still there?
            if t.elapsed() > waited + Duration::from_millis(100) {
                waited = t.elapsed();
                if let Some(status) = peer.0.try_wait()? {
                    bail!("the futex peer exited ({status})");
                }
                if waited > Duration::from_secs(10) {
                    bail!("the futex peer did not answer within 10 s");
                }
            }
        }
        let dt = t.elapsed();
        if i as usize >= warmup {
            samples.push(dt.as_secs_f64() * 1e6);
        }
    }
    word.store(STOP, Ordering::SeqCst);
    futex_wake(word);
    let _ = peer.0.wait();
    Ok(samples)
}

/// Futex: wait for an odd number, answer with the next even one.
pub(super) fn peer_futex() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let page = SharedPage::map(stdin.as_fd())?;
    let word = page.word();
    let mut last = 0u32;
    loop {
        let v = word.load(Ordering::SeqCst);
        if v == STOP {
            return Ok(());
        }
        if v == last {
            futex_wait(word, last, Duration::from_millis(500));
            continue;
        }
        last = v.wrapping_add(1);
        word.store(last, Ordering::SeqCst);
        futex_wake(word);
    }
}
