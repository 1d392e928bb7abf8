//! The layout of a board segment: one `#[repr(C)]` struct followed by the ring.
//!
//! ```text
//! +-------------------------------+  offset 0
//! | header: magic, layout, sizes  |  magic is stored LAST (release) by the creator
//! | pthread_mutex_t (shared,robust)|
//! | wake: futex word (condition)  |  bumped + FUTEX_WAKE to notify waiters
//! | lock-only state: waiting[101], |  read and written only under the mutex
//! |   pending value + number,      |
//! |   notify time                  |
//! | reader_req (own cache line)   |  a monitor asking the producer for a window
//! | seq (own cache line)          |  the sequence counter (odd = write in progress)
//! | seqlock state: total, active, |  written under the mutex inside a seq section,
//! |   producer pid, repairs,      |  read lock-free by monitors
//! |   counts[101], first[101]     |
//! +-------------------------------+  size_of::<Shared>()
//! | ring: capacity × u8           |  ring[(n - 1) % capacity] is value number n
//! +-------------------------------+  total_size
//! ```
//!
//! Every field is an atomic or a pthread object initialised with the
//! process-shared attribute, so several processes may map it at once.
//!
//! The layout is checked, not trusted: compile-time assertions pin what
//! every build must agree on (the magic and the layout fingerprint at fixed
//! offsets, the futex word's alignment, the cache-line fields), and the
//! header carries [`LAYOUT`], a fingerprint computed at compile time from
//! the sizes and offsets of the shared structs. A build whose layout
//! differs in any way computes another fingerprint, and each refuses the
//! other's segments with one line; no version number to remember to bump.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// The magic bytes at offset 0 of every board segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SYNCBRD\x01");

/// The layout fingerprint stored in every segment's header: FNV-1a over
/// the sizes, alignments and field offsets of [`Shared`] and [`WaiterSlot`]
/// (and of the pthread mutex in them), computed at compile time.
pub const LAYOUT: u32 = layout_fingerprint();

/// Values are 0..=100, so there are 101 of them.
pub const VALUES: usize = 101;

/// The largest value a producer appends.
pub const MAX_VALUE: u8 = 100;

/// The default ring capacity (how many recent values a board remembers).
pub const DEFAULT_CAPACITY: u32 = 64;

/// The largest ring capacity accepted.
pub const MAX_CAPACITY: u32 = 1 << 20;

/// Types that may be placed in a shared-memory segment and viewed through a
/// shared reference from several processes at once.
///
/// # Safety
/// An implementor promises that the type
/// - is `#[repr(C)]` and holds no pointers, references or file descriptors
///   (they mean nothing in another address space);
/// - is valid when all of its bytes are zero (a fresh segment is zeroed);
/// - is only ever read and written through atomics, or through pthread
///   objects initialised as process-shared, so concurrent access from other
///   processes is never a data race;
/// - has the same layout in every process that maps it (guarded by the
///   header's version and size fields).
pub unsafe trait ShmSafe: Sized {}

/// How many waiters the slot table tracks (more still work, but a killed
/// one beyond the table is not reaped).
pub const WAITER_SLOTS: usize = 64;

/// One registered waiter (touched only under the mutex).
#[repr(C)]
pub struct WaiterSlot {
    /// The waiter's pid; 0: free.
    pub pid: AtomicI32,
    /// The value it waits for.
    pub value: AtomicU32,
    /// Its start time, so a reused pid is not taken for it.
    pub start: AtomicU64,
}

/// A value on its own cache line, so a reader polling it does not slow the
/// writer of its neighbours.
#[repr(C, align(64))]
pub struct CacheLine<T>(pub T);

/// The fixed part of a board segment (the ring follows it).
#[repr(C)]
pub struct Shared {
    // ---- header: written once by the creator, magic last ----
    /// [`MAGIC`], stored last with release ordering.
    pub magic: AtomicU64,
    /// [`LAYOUT`], the fingerprint of the layout that wrote the segment.
    pub layout: AtomicU32,
    /// `size_of::<Shared>()` in the creating process.
    pub header_size: AtomicU32,
    /// Size of the whole segment: header plus ring.
    pub total_size: AtomicU64,
    /// Ring capacity in values.
    pub capacity: AtomicU32,
    /// Number of distinct values ([`VALUES`]).
    pub values: AtomicU32,

    // ---- synchronisation ----
    /// Process-shared, robust mutex guarding every write.
    pub mutex: UnsafeCell<libc::pthread_mutex_t>,
    /// The condition consumers wait on: a wake-up sequence number used as a
    /// futex word. A notifier bumps it and calls `FUTEX_WAKE`; a waiter reads
    /// it under the mutex, unlocks, and sleeps in `FUTEX_WAIT` only while it
    /// is unchanged. Unlike glibc's process-shared `pthread_cond_t` it keeps
    /// no per-waiter state, so a waiter killed in its sleep leaves nothing
    /// behind that could block the next notifier.
    pub wake: AtomicU32,

    // ---- state only touched under the mutex ----
    /// How many consumers wait for each value: the producer broadcasts only
    /// when someone waits for the value it just appended.
    pub waiting: [AtomicU32; VALUES],
    /// Who waits for what: a waiter claims a free slot (pid 0) beside its
    /// `waiting` count, so the registrations of a waiter killed in its sleep
    /// can be found and reaped.
    pub waiter_slots: [WaiterSlot; WAITER_SLOTS],
    /// The value being appended (a redo record for repair after a crash).
    pub pending: AtomicU32,
    /// The number (1-based) the pending value gets: while `total` is below
    /// it, the append is unfinished; once `total` reached it, it is done.
    pub pending_n: AtomicU64,
    /// CLOCK_MONOTONIC nanoseconds of the last broadcast for a value (for
    /// measuring wake-up latency across processes).
    pub notify_ns: AtomicU64,

    // ---- reader fairness ----
    /// 1: a monitor failed to read a snapshot and asks the producer for a
    /// short pause; 2: the producer is pausing; 0: idle.
    pub reader_req: CacheLine<AtomicU32>,

    // ---- the sequence counter and the state it protects ----
    /// Even: stable. Odd: a writer is inside a write section.
    pub seq: CacheLine<AtomicU64>,
    /// Values appended since the board was created.
    pub total: AtomicU64,
    /// The seed's `remainActive`: 1 while a producer runs.
    pub active: AtomicU32,
    /// The pid of the producer that runs (or last ran) the board; 0 for none.
    pub producer_pid: AtomicI32,
    /// That producer's start time (`/proc/PID/stat`), so a reused pid is
    /// not mistaken for it.
    pub producer_start: AtomicU64,
    /// How many times a locker repaired the board after a holder died.
    pub repairs: AtomicU64,
    /// How many times each value has appeared.
    pub counts: [AtomicU64; VALUES],
    /// For each value, the number (1-based) of its first appearance; 0: never.
    pub first: [AtomicU64; VALUES],
}

// SAFETY: `Shared` is repr(C); it holds only atomics (valid when zero) and
// pthread objects that `init` sets up as process-shared before the magic is
// published; it holds no pointers or descriptors; its layout is pinned by
// the assertions below and checked by `LAYOUT` and `header_size`.
unsafe impl ShmSafe for Shared {}

// SAFETY: the ring is an array of atomics, valid when zero, no pointers.
unsafe impl ShmSafe for AtomicU8 {}

// What every build must agree on, checked at compile time.
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    // An opener reads these two before trusting anything else: they never
    // move, whatever else changes.
    assert!(offset_of!(Shared, magic) == 0);
    assert!(offset_of!(Shared, layout) == 8);
    // The futex word is an aligned u32; the mutex sits at its alignment.
    assert!(offset_of!(Shared, wake) % 4 == 0);
    assert!(offset_of!(Shared, mutex) % align_of::<libc::pthread_mutex_t>() == 0);
    // The reader-request word and the sequence counter each own a cache
    // line (a polling monitor must not slow the producer's other writes).
    assert!(size_of::<CacheLine<AtomicU32>>() == 64);
    assert!(offset_of!(Shared, reader_req) % 64 == 0);
    assert!(offset_of!(Shared, seq) % 64 == 0);
    assert!(offset_of!(Shared, seq) >= offset_of!(Shared, reader_req) + 64);
    assert!(offset_of!(Shared, total) >= offset_of!(Shared, seq) + 64);
    // The ring starts right after the fixed part, which holds no padding
    // an opener could misread as a field.
    assert!(size_of::<Shared>() % align_of::<Shared>() == 0);
    assert!(size_of::<WaiterSlot>() == 16);
    assert!(LAYOUT != 0);
};

/// FNV-1a (32 bits) over the layout facts of the shared structs: any change
/// of a size, an alignment or a field offset changes it.
const fn layout_fingerprint() -> u32 {
    use std::mem::{align_of, offset_of, size_of};
    let facts: [usize; 38] = [
        size_of::<Shared>(),
        align_of::<Shared>(),
        offset_of!(Shared, magic),
        offset_of!(Shared, layout),
        offset_of!(Shared, header_size),
        offset_of!(Shared, total_size),
        offset_of!(Shared, capacity),
        offset_of!(Shared, values),
        offset_of!(Shared, mutex),
        size_of::<libc::pthread_mutex_t>(),
        offset_of!(Shared, wake),
        offset_of!(Shared, waiting),
        offset_of!(Shared, waiter_slots),
        offset_of!(Shared, pending),
        offset_of!(Shared, pending_n),
        offset_of!(Shared, notify_ns),
        offset_of!(Shared, reader_req),
        offset_of!(Shared, seq),
        offset_of!(Shared, total),
        offset_of!(Shared, active),
        offset_of!(Shared, producer_pid),
        offset_of!(Shared, producer_start),
        offset_of!(Shared, repairs),
        offset_of!(Shared, counts),
        offset_of!(Shared, first),
        size_of::<WaiterSlot>(),
        offset_of!(WaiterSlot, pid),
        offset_of!(WaiterSlot, value),
        offset_of!(WaiterSlot, start),
        size_of::<CacheLine<AtomicU64>>(),
        VALUES,
        WAITER_SLOTS,
        MAX_VALUE as usize,
        size_of::<AtomicU8>(),
        // The byte order and word size the numbers are read in.
        1usize.to_le() ^ 1,
        size_of::<usize>(),
        (MAGIC & 0xffff_ffff) as usize,
        (MAGIC >> 32) as usize,
    ];
    let mut hash: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < facts.len() {
        let bytes = (facts[i] as u64).to_le_bytes();
        let mut j = 0;
        while j < bytes.len() {
            hash ^= bytes[j] as u32;
            hash = hash.wrapping_mul(0x0100_0193);
            j += 1;
        }
        i += 1;
    }
    hash
}

/// The size of a segment with `capacity` ring slots.
pub fn segment_size(capacity: u32) -> usize {
    std::mem::size_of::<Shared>() + capacity as usize
}

/// Why a mapped segment is not a board this program can use.
pub fn check_header(s: &Shared, map_len: usize) -> Result<u32, String> {
    let magic = s.magic.load(Ordering::Acquire);
    if magic != MAGIC {
        return Err(if magic == 0 {
            "its header is empty (not a board, or a creator died half-way)".to_owned()
        } else {
            format!("wrong magic {magic:#018x}")
        });
    }
    let layout = s.layout.load(Ordering::Relaxed);
    if layout != LAYOUT {
        return Err(format!(
            "its layout fingerprint is {layout:#010x}, this build's is {LAYOUT:#010x} (made by another build of syncomm)"
        ));
    }
    let header = s.header_size.load(Ordering::Relaxed) as usize;
    if header != std::mem::size_of::<Shared>() {
        return Err(format!(
            "header of {header} bytes, expected {}",
            std::mem::size_of::<Shared>()
        ));
    }
    if s.values.load(Ordering::Relaxed) as usize != VALUES {
        return Err("wrong number of values".to_owned());
    }
    let capacity = s.capacity.load(Ordering::Relaxed);
    if capacity == 0 || capacity > MAX_CAPACITY {
        return Err(format!("ring capacity {capacity} out of range"));
    }
    let total = s.total_size.load(Ordering::Relaxed);
    if total != segment_size(capacity) as u64 || (total as usize) > map_len {
        return Err(format!(
            "segment size {total} does not match capacity {capacity} (mapped {map_len})"
        ));
    }
    Ok(capacity)
}

/// Initialises a zeroed segment in place: the mutex, then the header, the
/// magic last with release ordering.
///
/// # Safety
/// `s` must point into a fresh, zeroed, writable mapping of at least
/// `segment_size(capacity)` bytes that no other process has seen yet.
pub unsafe fn init(s: &Shared, capacity: u32) -> Result<(), std::io::Error> {
    let mut attr = MutexAttr::new()?;
    attr.set(
        libc::pthread_mutexattr_setpshared,
        libc::PTHREAD_PROCESS_SHARED,
        "pthread_mutexattr_setpshared",
    )?;
    attr.set(
        libc::pthread_mutexattr_setrobust,
        libc::PTHREAD_MUTEX_ROBUST,
        "pthread_mutexattr_setrobust",
    )?;
    // SAFETY: the mutex lives in the mapping that the caller promises is
    // ours alone until the magic is published; the attribute is initialised.
    let rc = unsafe { libc::pthread_mutex_init(s.mutex.get(), attr.as_ptr()) };
    check(rc, "pthread_mutex_init")?;
    drop(attr);
    s.layout.store(LAYOUT, Ordering::Relaxed);
    s.header_size
        .store(std::mem::size_of::<Shared>() as u32, Ordering::Relaxed);
    s.total_size
        .store(segment_size(capacity) as u64, Ordering::Relaxed);
    s.capacity.store(capacity, Ordering::Relaxed);
    s.values.store(VALUES as u32, Ordering::Relaxed);
    // Published last: an opener that sees the magic sees everything above.
    s.magic.store(MAGIC, Ordering::Release);
    Ok(())
}

/// A pthread return code as an error naming the call.
fn check(rc: libc::c_int, what: &str) -> Result<(), std::io::Error> {
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::from_raw_os_error(rc);
    Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// A `pthread_mutexattr_t`, destroyed on every path (drop).
struct MutexAttr(Box<std::mem::MaybeUninit<libc::pthread_mutexattr_t>>);

impl MutexAttr {
    /// `pthread_mutexattr_init`, in a place of its own that never moves.
    fn new() -> Result<MutexAttr, std::io::Error> {
        let mut attr = Box::new(std::mem::MaybeUninit::uninit());
        // SAFETY: a valid place for the attribute object.
        let rc = unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) };
        check(rc, "pthread_mutexattr_init")?;
        Ok(MutexAttr(attr))
    }

    /// One `pthread_mutexattr_set*` call.
    fn set(
        &mut self,
        setter: unsafe extern "C" fn(*mut libc::pthread_mutexattr_t, libc::c_int) -> libc::c_int,
        value: libc::c_int,
        what: &str,
    ) -> Result<(), std::io::Error> {
        // SAFETY: the attribute object was initialised by `new`.
        check(unsafe { setter(self.0.as_mut_ptr(), value) }, what)
    }

    fn as_ptr(&self) -> *const libc::pthread_mutexattr_t {
        self.0.as_ptr()
    }
}

impl Drop for MutexAttr {
    fn drop(&mut self) {
        // SAFETY: initialised by `new` (a failed init makes no MutexAttr),
        // destroyed once.
        unsafe { libc::pthread_mutexattr_destroy(self.0.as_mut_ptr()) };
    }
}
