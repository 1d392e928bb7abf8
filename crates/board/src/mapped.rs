//! A board segment as a reader sees it: the bytes (a shared-memory mapping,
//! or a plain buffer for the fuzz check), the header check, and the reads
//! that never take the lock — the monitor's snapshot and the consumer's
//! `values`. The same code runs on a live segment and on arbitrary bytes.
//!
//! Opening a segment goes through [`syncomm_sys::openfile::verify`]:
//! `shm_open` with `O_NOFOLLOW | O_NONBLOCK`, then only a regular file that
//! belongs to us is mapped (a FIFO, a link, another user's segment are
//! refused, even when we run as root).

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicU8, Ordering::*};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::mman::{MapFlags, ProtFlags};
use nix::sys::stat::Mode;
use serde::Serialize;
use syncomm_sys::openfile::{self, OpenError};

use crate::liveness;
use crate::segment::{self, Shared, ShmSafe, MAX_CAPACITY, MAX_VALUE, VALUES};
use crate::watch::ProducerWatch;

/// Where `shm_open` keeps the object named `os_id` (for messages and listing).
pub fn shm_path(os_id: &str) -> PathBuf {
    PathBuf::from("/dev/shm").join(os_id.trim_start_matches('/'))
}

/// Mapped bytes: a shared mapping of a segment, or a private buffer.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// `Some(layout)`: a heap buffer to free with it; `None`: an mmap.
    heap: Option<std::alloc::Layout>,
}

/// The alignment of a heap-backed mapping: that of [`Shared`] (its
/// cache-line fields), which mmap's page alignment also satisfies.
const HEAP_ALIGN: usize = std::mem::align_of::<Shared>();

impl Mapping {
    /// Creates the segment `os_id` (`O_EXCL`, 0600) of `len` bytes, zeroed,
    /// followed by `trailer` (the attribution record, see [`crate::record`]),
    /// and maps its first `len` bytes.
    pub fn create(os_id: &str, len: usize, trailer: &[u8]) -> Result<Mapping, OpenError> {
        let path = shm_path(os_id);
        let fd = nix::sys::mman::shm_open(
            os_id,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_NOFOLLOW,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| openfile::classify(&path, e.into()))?;
        let made = openfile::verify(fd.as_fd(), &path)
            .and_then(|_| {
                nix::unistd::ftruncate(&fd, (len + trailer.len()) as i64).map_err(|e| {
                    OpenError::Io {
                        path: path.clone(),
                        source: e.into(),
                    }
                })
            })
            .and_then(|_| {
                write_all_at(&fd, trailer, len as i64).map_err(|e| OpenError::Io {
                    path: path.clone(),
                    source: e.into(),
                })
            })
            .and_then(|_| map(&fd, len, &path));
        if made.is_err() {
            let _ = nix::sys::mman::shm_unlink(os_id);
        }
        made
    }

    /// Opens and maps the existing segment `os_id`: never blocking, never
    /// following a link, only a regular file of ours. At most the size of
    /// the largest board is mapped.
    pub fn open(os_id: &str) -> Result<Mapping, OpenError> {
        let path = shm_path(os_id);
        let fd = nix::sys::mman::shm_open(
            os_id,
            OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| openfile::classify(&path, e.into()))?;
        let st = openfile::verify(fd.as_fd(), &path)?;
        let len = (st.st_size.max(0) as u64).min(segment::segment_size(MAX_CAPACITY) as u64);
        if len == 0 {
            return Err(OpenError::Io {
                path,
                source: io::Error::other("it is empty"),
            });
        }
        map(&fd, len as usize, &path)
    }

    /// A private, suitably aligned copy of `bytes` (for checking arbitrary
    /// bytes with the readers' own code).
    pub fn from_bytes(bytes: &[u8]) -> Mapping {
        let size = bytes.len().max(1).next_multiple_of(HEAP_ALIGN);
        let layout = std::alloc::Layout::from_size_align(size, HEAP_ALIGN).expect("valid layout");
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(p) else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: `ptr` is a fresh allocation of `size >= bytes.len()` bytes
        // that nothing else references; the source does not overlap it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), bytes.len()) };
        Mapping {
            ptr,
            len: bytes.len(),
            heap: Some(layout),
        }
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is mapped (never true for a mapping that exists).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A shared reference to a `T` at `offset`; panics if out of bounds.
    fn view<T: ShmSafe>(&self, offset: usize) -> &T {
        assert!(
            offset
                .checked_add(std::mem::size_of::<T>())
                .is_some_and(|end| end <= self.len),
            "view out of the mapping"
        );
        // SAFETY: in bounds (asserted); the base is page-aligned (mmap) or
        // HEAP_ALIGN-aligned, and every offset we use is a multiple of T's
        // alignment (Shared at 0, u8 anywhere); `ShmSafe` promises T is valid
        // for any bytes and only accessed through atomics / process-shared
        // pthread objects.
        unsafe {
            let p = self.ptr.as_ptr().add(offset);
            debug_assert_eq!(p as usize % std::mem::align_of::<T>(), 0);
            &*(p as *const T)
        }
    }
}

/// Writes all of `buf` at `offset` of `fd`.
fn write_all_at(fd: &impl AsFd, mut buf: &[u8], mut offset: i64) -> nix::Result<()> {
    while !buf.is_empty() {
        match nix::sys::uio::pwrite(fd, buf, offset) {
            Ok(0) => return Err(nix::Error::EIO),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as i64;
            }
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Maps `len` bytes of `fd` shared, read-write.
fn map(fd: &impl AsFd, len: usize, path: &std::path::Path) -> Result<Mapping, OpenError> {
    let n = NonZeroUsize::new(len).ok_or_else(|| OpenError::Io {
        path: path.to_owned(),
        source: io::Error::other("it is empty"),
    })?;
    // SAFETY: a fresh mapping chosen by the kernel (no address hint), so it
    // aliases nothing of ours; it is unmapped only in `Drop`.
    let p = unsafe {
        nix::sys::mman::mmap(
            None,
            n,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            fd,
            0,
        )
    }
    .map_err(|e| OpenError::Io {
        path: path.to_owned(),
        source: e.into(),
    })?;
    Ok(Mapping {
        ptr: p.cast(),
        len,
        heap: None,
    })
}

impl Drop for Mapping {
    fn drop(&mut self) {
        match self.heap {
            // SAFETY: allocated in `from_bytes` with this very layout.
            Some(layout) => unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) },
            None => {
                // SAFETY: mapped in `map` with this length; every reference
                // into it borrows `self`, so none outlives the unmapping.
                let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
            }
        }
    }
}

/// Unlinks the segment `os_id` only if it is a regular file that belongs to
/// us: a segment of another user under a board's name is never removed.
/// Returns whether it was removed.
pub fn unlink_if_ours(os_id: &str) -> bool {
    let path = shm_path(os_id);
    let Ok(fd) = nix::sys::mman::shm_open(
        os_id,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
        Mode::empty(),
    ) else {
        return false;
    };
    openfile::verify(fd.as_fd(), &path).is_ok() && nix::sys::mman::shm_unlink(os_id).is_ok()
}

/// A mapping whose header passed [`segment::check_header`]: every read
/// below stays inside it.
pub struct Segment {
    map: Mapping,
    capacity: u32,
    /// The producer's liveness, asked at every snapshot.
    producer: ProducerWatch,
}

/// One consistent view of the board, read through the sequence counter.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    /// Values appended since the board was created.
    pub total: u64,
    /// Whether a producer runs (the seed's `remainActive`).
    pub active: bool,
    /// The pid of the producer that runs or last ran it (0: none yet).
    pub producer_pid: i32,
    /// That producer's start time (clock ticks since boot; 0: unknown).
    #[serde(skip)]
    pub producer_start: u64,
    /// Whether that producer is alive (checked when the snapshot was read).
    pub producer_alive: bool,
    /// How many times a locker repaired the board after a holder died.
    pub repairs: u64,
    /// The most recent values, oldest first (at most the ring capacity).
    pub recent: Vec<u8>,
    /// How many times each value 0..=100 has appeared.
    pub counts: Vec<u64>,
}

/// Why no consistent snapshot could be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The writer died inside a write section; the next locker repairs it.
    #[error("the producer (pid {pid}) died in the middle of an update; the next producer repairs the board")]
    WriterDied {
        /// The dead producer.
        pid: i32,
        /// Its start time (clock ticks since boot; 0: unknown).
        start: u64,
    },
    /// A live writer kept the board mid-update for the whole limit.
    #[error("the board stayed mid-update for {0:?} (pid {1} holds it)")]
    Busy(Duration, i32),
    /// A stable read broke the board's invariants: a process other than a
    /// producer wrote the segment.
    #[error("the board's state is inconsistent ({0}): it was not written by a producer")]
    Inconsistent(String),
}

impl Segment {
    /// Checks the header of `map` (see [`segment::check_header`]); `Err`
    /// says, in a few words, why these bytes are not a board.
    pub fn new(map: Mapping) -> Result<Segment, String> {
        if map.len() < std::mem::size_of::<Shared>() {
            return Err(format!("{} bytes, too small for a board header", map.len()));
        }
        let capacity = segment::check_header(map.view::<Shared>(0), map.len())?;
        Ok(Segment {
            map,
            capacity,
            producer: ProducerWatch::default(),
        })
    }

    /// A segment we just created, before its header is written.
    pub(crate) fn new_unchecked(map: Mapping, capacity: u32) -> Segment {
        assert!(map.len() >= segment::segment_size(capacity));
        Segment {
            map,
            capacity,
            producer: ProducerWatch::default(),
        }
    }

    /// [`Segment::new`] over a private copy of `bytes`: what the fuzz check
    /// runs, the same code as for a live segment.
    pub fn from_bytes(bytes: &[u8]) -> Result<Segment, String> {
        Segment::new(Mapping::from_bytes(bytes))
    }

    /// The fixed part.
    pub fn shared(&self) -> &Shared {
        self.map.view::<Shared>(0)
    }

    /// The ring slot of value number `i + 1`.
    pub fn ring(&self, i: u64) -> &AtomicU8 {
        let off = std::mem::size_of::<Shared>() + (i % self.capacity as u64) as usize;
        self.map.view::<AtomicU8>(off)
    }

    /// The ring capacity (checked: 1..=[`MAX_CAPACITY`], inside the mapping).
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The mapped length.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never, once checked).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Values appended so far.
    pub fn total(&self) -> u64 {
        self.shared().total.load(Relaxed)
    }

    /// How many times `v` has appeared (0 for a value out of range).
    pub fn count(&self, v: u8) -> u64 {
        self.shared()
            .counts
            .get(v as usize)
            .map_or(0, |c| c.load(Relaxed))
    }

    /// The number (1-based) of `v`'s first appearance, 0 if never.
    pub fn first(&self, v: u8) -> u64 {
        self.shared()
            .first
            .get(v as usize)
            .map_or(0, |c| c.load(Relaxed))
    }

    /// The values numbered `from..=to` (1-based) that are still in the ring:
    /// at most the capacity, whatever the numbers.
    pub fn values(&self, from: u64, to: u64) -> Vec<u8> {
        let total = self.total();
        let to = to.min(total);
        let oldest = total.saturating_sub(self.capacity as u64).saturating_add(1);
        (from.max(oldest).max(1)..=to)
            .map(|n| self.ring(n - 1).load(Relaxed))
            .collect()
    }

    /// What a consumer that found `v` prints: the values up to `v`'s first
    /// appearance still in the ring, or (when that left the ring) the most
    /// recent values. At most the capacity.
    pub fn found_recent(&self, v: u8) -> Vec<u8> {
        let first = self.first(v);
        let cap = self.capacity as u64;
        let recent = self.values(first.saturating_sub(cap - 1).max(1), first);
        if recent.last() == Some(&v) {
            return recent;
        }
        let total = self.total();
        self.values(total.saturating_sub(cap - 1).max(1), total)
    }

    /// Reads a consistent snapshot without taking the lock: retries while a
    /// write is in progress, asking the producer for a short pause when it
    /// keeps losing, for at most `limit`. A stable read that breaks the
    /// board's invariants (counts that do not sum to the total, a value out
    /// of range) is [`SnapshotError::Inconsistent`].
    pub fn snapshot(&self, limit: Duration) -> Result<Snapshot, SnapshotError> {
        let s = self.shared();
        let cap = self.capacity as u64;
        let mut snap = Snapshot {
            total: 0,
            active: false,
            producer_pid: 0,
            producer_start: 0,
            producer_alive: false,
            repairs: 0,
            recent: Vec::with_capacity(cap as usize),
            counts: vec![0; VALUES],
        };
        let start = Instant::now();
        let mut tries: u64 = 0;
        loop {
            let s1 = s.seq.0.load(Acquire);
            if s1 & 1 == 0 {
                snap.total = s.total.load(Relaxed);
                snap.active = s.active.load(Relaxed) != 0;
                snap.producer_pid = s.producer_pid.load(Relaxed);
                snap.producer_start = s.producer_start.load(Relaxed);
                snap.repairs = s.repairs.load(Relaxed);
                for (c, a) in snap.counts.iter_mut().zip(&s.counts) {
                    *c = a.load(Relaxed);
                }
                snap.recent.clear();
                let n = snap.total.min(cap);
                for i in snap.total - n..snap.total {
                    snap.recent.push(self.ring(i).load(Relaxed));
                }
                fence(Acquire);
                if s.seq.0.load(Relaxed) == s1 {
                    if s.reader_req.0.load(Relaxed) != 0 {
                        s.reader_req.0.store(0, Relaxed);
                    }
                    check_snapshot(&snap)?;
                    snap.producer_alive =
                        self.producer.alive(snap.producer_pid, snap.producer_start);
                    return Ok(snap);
                }
            }
            tries += 1;
            if tries >= 4 {
                // Ask a flat-out producer to leave us a window (see `Board::yield_to_readers`).
                s.reader_req.0.store(1, Relaxed);
            }
            if tries % 64 == 0 {
                // Past the first millisecond the writer is not merely busy
                // (stalled, or dead holding the lock): wait without burning
                // a core.
                if start.elapsed() > Duration::from_millis(1) {
                    std::thread::sleep(Duration::from_micros(200));
                } else {
                    std::thread::yield_now();
                }
                let waited = start.elapsed();
                let pid = s.producer_pid.load(Relaxed);
                let pstart = s.producer_start.load(Relaxed);
                let alive = liveness::alive_as(pid, pstart);
                if s1 & 1 == 1 && waited > Duration::from_millis(20) && !alive {
                    return Err(SnapshotError::WriterDied { pid, start: pstart });
                }
                if waited > limit {
                    return Err(SnapshotError::Busy(limit, pid));
                }
            }
        }
    }

    /// The reader-fairness word (see `Board::yield_to_readers`).
    pub fn reader_req(&self) -> &AtomicU32 {
        &self.shared().reader_req.0
    }
}

/// The invariants every snapshot of a board written by producers holds.
fn check_snapshot(snap: &Snapshot) -> Result<(), SnapshotError> {
    let bad = |why: String| Err(SnapshotError::Inconsistent(why));
    let sum = snap.counts.iter().try_fold(0u64, |a, &c| a.checked_add(c));
    if sum != Some(snap.total) {
        return bad(match sum {
            Some(sum) => format!("counts sum to {sum}, total is {}", snap.total),
            None => "counts overflow".to_owned(),
        });
    }
    if let Some(v) = snap.recent.iter().find(|&&v| v > MAX_VALUE) {
        return bad(format!("value {v} in the ring"));
    }
    Ok(())
}
