//! The board: a named shared-memory segment, its robust lock, and the three
//! ways to touch it: append (producer), wait (consumer), snapshot (monitor).

use std::io::{self, Write};
use std::marker::PhantomData;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::time::{Duration, Instant};

use serde::Serialize;
use syncomm_common::rundir::RunDir;
use syncomm_common::Name;
use syncomm_sys::openfile::{self, Access, OpenError};

use crate::error::BoardError;
use syncomm_common::attribution::Origin as Attribution;

use crate::liveness;
use crate::mapped::{self, Mapping, Segment};
pub use crate::mapped::{Snapshot, SnapshotError};
use crate::segment::{self, Shared, MAX_CAPACITY, VALUES};

/// Prefix of every board's shared-memory object name (`/dev/shm/syncomm.board.*`).
pub const OS_ID_PREFIX: &str = "/syncomm.board.";

/// The link file in the runtime directory that names a board's segment:
/// `{rundir}/board.NAME.shm`, holding the segment's os id.
pub fn link_path(dir: &RunDir, name: &Name) -> PathBuf {
    dir.file("board", name, "shm")
}

/// A mapped board.
pub struct Board {
    seg: Segment,
    os_id: String,
    name: Name,
    link: PathBuf,
    capacity: u32,
    /// When this process last looked for dead waiters (CLOCK_MONOTONIC ns).
    reaped_at: AtomicU64,
    /// A wake-up this process issued for an awaited value found nobody
    /// asleep: the next append looks for dead waiters (under the lock).
    idle_wake: AtomicBool,
}

// SAFETY: the mapping is shared memory that every process touches only
// through atomics and process-shared pthread objects (see `ShmSafe`), so
// threads of one process may share it just as processes do. `Mapping` is not
// Send/Sync only because it holds a raw pointer.
unsafe impl Send for Board {}
// SAFETY: as above.
unsafe impl Sync for Board {}

/// How a producer got its board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A new segment was created.
    Created,
    /// An existing board was attached to.
    Attached,
}

impl Board {
    fn shared(&self) -> &Shared {
        self.seg.shared()
    }

    fn ring(&self, i: u64) -> &AtomicU8 {
        self.seg.ring(i)
    }

    /// The checked segment (the lock-free reads).
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The board's rendezvous name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The ring capacity.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The shared-memory object's name (under `/dev/shm`).
    pub fn os_id(&self) -> &str {
        &self.os_id
    }

    /// The link file naming this board.
    pub fn link(&self) -> &Path {
        &self.link
    }

    /// Opens the board called `name`. A missing link, or a link whose segment
    /// is gone (left by a crash), is [`BoardError::NotFound`]; a segment that
    /// is not a board is [`BoardError::Foreign`].
    pub fn open(dir: &RunDir, name: &Name) -> Result<Board, BoardError> {
        let link = link_path(dir, name);
        let os_id = read_link(&link, name)?;
        Board::open_os_id(name, link, &os_id)
    }

    fn open_os_id(name: &Name, link: PathBuf, os_id: &str) -> Result<Board, BoardError> {
        let foreign = |why: String| BoardError::Foreign {
            path: link.clone(),
            why: format!("segment {os_id}: {why}"),
        };
        let map = match Mapping::open(os_id) {
            Ok(map) => map,
            Err(e) if e.is_not_found() => {
                return Err(BoardError::NotFound {
                    name: name.to_string(),
                    dir: board_dir(&link),
                })
            }
            // A FIFO, a symlink, another user's object, an empty one...
            Err(e) => return Err(foreign(e.reason())),
        };
        let seg = Segment::new(map).map_err(foreign)?;
        Ok(Board {
            capacity: seg.capacity(),
            seg,
            os_id: os_id.to_owned(),
            name: name.clone(),
            link,
            reaped_at: AtomicU64::new(0),
            idle_wake: AtomicBool::new(false),
        })
    }

    /// Creates a new board segment and publishes its link. Fails with
    /// `AlreadyExists` (as [`BoardError::Os`]) if a link appeared meanwhile.
    fn create(dir: &RunDir, name: &Name, capacity: u32) -> Result<Board, BoardError> {
        let link = link_path(dir, name);
        let os_id = format!(
            "{OS_ID_PREFIX}{name}.{}.{:x}",
            std::process::id(),
            rand::random::<u32>()
        );
        // The segment outlives this mapping (and a crashed producer) on
        // purpose: the producer that ends the board removes it.
        let dir = board_dir(&link);
        let trailer = crate::record::encode(&Attribution::new(&dir, name.as_str()));
        let map = Mapping::create(&os_id, segment::segment_size(capacity), &trailer)
            .map_err(|e| open_err(format!("creating segment {os_id}"), e))?;
        let board = Board {
            seg: Segment::new_unchecked(map, capacity),
            os_id: os_id.clone(),
            name: name.clone(),
            link,
            capacity,
            reaped_at: AtomicU64::new(0),
            idle_wake: AtomicBool::new(false),
        };
        let unlink_on_err = |e: BoardError| {
            let _ = nix::sys::mman::shm_unlink(os_id.as_str());
            e
        };
        // SAFETY: the segment was just created by us (O_EXCL), is zeroed by
        // ftruncate, and its name is not yet published in any link file.
        unsafe { segment::init(board.shared(), capacity) }.map_err(|e| {
            unlink_on_err(BoardError::Os {
                what: "initialising the board's lock".into(),
                source: e,
            })
        })?;
        publish_link(&board.link, &os_id).map_err(unlink_on_err)?;
        Ok(board)
    }

    /// What a producer does: attach to the board called `name`, creating it
    /// if needed. A stale link (its segment gone) is replaced. With `fresh`,
    /// an existing board (or a foreign segment under the name) is replaced by
    /// a new one, unless a live producer still runs it. `capacity` is the ring
    /// size for a new board; for an existing one it must match if given.
    pub fn open_or_create(
        dir: &RunDir,
        name: &Name,
        capacity: Option<u32>,
        fresh: bool,
    ) -> Result<(Board, Origin), BoardError> {
        let want = capacity.unwrap_or(segment::DEFAULT_CAPACITY);
        if want == 0 || want > MAX_CAPACITY {
            return Err(BoardError::Usage(format!(
                "capacity {want} out of range 1..={MAX_CAPACITY}"
            )));
        }
        let link = link_path(dir, name);
        sweep_orphans(name, &link);
        for _ in 0..8 {
            let opened = match read_link(&link, name)
                .and_then(|os_id| Board::open_os_id(name, link.clone(), &os_id))
            {
                Ok(board) => Ok(Some(board)),
                Err(BoardError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            };
            match opened {
                Ok(Some(board)) => {
                    if let Some(pid) = board.live_producer() {
                        if pid != std::process::id() as i32 {
                            return Err(BoardError::HasProducer {
                                name: name.to_string(),
                                pid,
                            });
                        }
                    }
                    if fresh {
                        tracing::info!("replacing board {name} (--fresh)");
                        board.remove();
                        continue;
                    }
                    if capacity.is_some_and(|c| c != board.capacity) {
                        return Err(BoardError::Usage(format!(
                            "board {name:?} exists with capacity {}, not {want} (use --fresh to recreate it)",
                            board.capacity
                        )));
                    }
                    return Ok((board, Origin::Attached));
                }
                Ok(None) => {
                    // No link, or a stale link whose segment is gone.
                    if link.exists() {
                        tracing::warn!("removing stale board link {}", link.display());
                        let _ = std::fs::remove_file(&link);
                    }
                    match Board::create(dir, name, want) {
                        Ok(b) => return Ok((b, Origin::Created)),
                        Err(BoardError::Os { source, .. })
                            if source.kind() == io::ErrorKind::AlreadyExists =>
                        {
                            continue; // another producer won the race; attach to it
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(BoardError::Foreign { path, why }) if fresh => {
                    tracing::warn!("replacing foreign board link {}: {why}", path.display());
                    // The segment it names goes too, but only if it is ours:
                    // another user's segment is never removed.
                    if let Ok(id) = read_link(&path, name) {
                        mapped::unlink_if_ours(&id);
                    }
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(BoardError::Os {
            what: format!("creating board {name:?}"),
            source: io::Error::other("the board kept changing under us"),
        })
    }

    /// Removes the board's name: the shared-memory object, then the link
    /// (if it still names this segment). In that order, so that a process
    /// killed in between (a second Ctrl-C) leaves a stale link, which the
    /// next producer replaces, never a segment that nothing names.
    /// Processes that mapped it keep their view.
    pub fn remove(&self) {
        let _ = nix::sys::mman::shm_unlink(self.os_id());
        if read_link(&self.link, &self.name).is_ok_and(|id| id == self.os_id()) {
            let _ = std::fs::remove_file(&self.link);
        }
    }

    /// The pid of the producer that runs the board, if it is alive and the
    /// board is active.
    pub fn live_producer(&self) -> Option<i32> {
        let s = self.shared();
        let pid = s.producer_pid.load(Acquire);
        let start = s.producer_start.load(Acquire);
        (s.active.load(Acquire) != 0 && liveness::alive_as(pid, start)).then_some(pid)
    }

    /// Whether the board is active (a producer runs it).
    pub fn active(&self) -> bool {
        self.shared().active.load(Relaxed) != 0
    }

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

    /// Reads a consistent snapshot without taking the lock (see
    /// [`Segment::snapshot`]).
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
    fn wake_sleepers(&self) -> i64 {
        syncomm_sys::futex::wake(&self.shared().wake, u32::MAX) as i64
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
    board: &'a Board,
    /// The wake sequence was bumped under the lock: `FUTEX_WAKE` once the
    /// mutex is released, so the woken do not block again on it.
    wake: bool,
    /// `!Send` and `!Sync`: the mutex belongs to this thread.
    _thread: PhantomData<*const ()>,
}

impl<'a> Guard<'a> {
    fn s(&self) -> &Shared {
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

    /// Bumps the wake sequence (under the lock, so a waiter that read it
    /// under the lock cannot miss it) and records that the sleepers are to
    /// be woken once the lock is released.
    fn notify(&mut self) {
        self.s().wake.fetch_add(1, Release);
        self.wake = true;
    }

    /// Releases the mutex, then wakes the sleepers if a notification is
    /// pending. Used by `Drop` and by [`Guard::wait`].
    fn release(&mut self) {
        let s = self.board.shared();
        // SAFETY: a Guard exists only while this thread holds the mutex
        // (it is !Send, and every path that loses the lock consumes it).
        let rc = unsafe { libc::pthread_mutex_unlock(s.mutex.get()) };
        debug_assert_eq!(rc, 0, "unlocking the board");
        if std::mem::take(&mut self.wake) && self.board.wake_sleepers() == 0 {
            self.board.idle_wake.store(true, Relaxed);
        }
    }

    /// Opens a write section: the sequence counter becomes odd.
    #[inline]
    fn begin(&self) -> u64 {
        let seq = &self.s().seq.0;
        let v = seq.load(Relaxed);
        seq.store(v | 1, Relaxed);
        fence(Release);
        v | 1
    }

    /// Closes a write section: the sequence counter becomes even again.
    #[inline]
    fn end(&self, odd: u64) {
        self.s().seq.0.store(odd.wrapping_add(1), Release);
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

    /// Writes value number `total + 1` (inside an open write section).
    #[inline]
    fn write_value(&self, total: u64, v: u8) {
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
    fn begin_append(&self, v: u8) -> (u64, u64) {
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

    /// What a consumer that found `v` reports (see [`Segment::found_recent`]).
    pub fn found_recent(&self, v: u8) -> Vec<u8> {
        self.board.seg.found_recent(v)
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

/// Removes what producers of board `name` that died half-way left behind
/// and nothing names: segments `syncomm.board.NAME.PID.RAND` whose creator
/// PID is gone and that the link does not name (a producer killed between
/// creating its segment and publishing the link), and their temporary link
/// files. Only regular files of ours are touched; a live creator's segment
/// (about to be published) is left alone.
fn sweep_orphans(name: &Name, link: &Path) {
    let named = read_link(link, name).ok();
    let prefix = format!("{}{name}.", &OS_ID_PREFIX[1..]);
    let creator = |rest: &str| -> Option<i32> {
        let (pid, tag) = rest.split_once('.')?;
        (!tag.is_empty() && tag.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| pid.parse::<i32>().ok())
            .flatten()
            .filter(|&p| p > 0)
    };
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for entry in dir.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let Some(pid) = file.strip_prefix(&prefix).and_then(creator) else {
                continue;
            };
            let os_id = format!("/{file}");
            if named.as_deref() == Some(os_id.as_str()) || liveness::alive(pid) {
                continue;
            }
            if mapped::unlink_if_ours(&os_id) {
                tracing::warn!(
                    "removed segment {os_id}: its producer (pid {pid}) died before naming it"
                );
            }
        }
    }
    // Temporary link files `board.NAME.shm.tmp.PID` of dead producers.
    let (Some(dir), Some(base)) = (link.parent(), link.file_name().and_then(|f| f.to_str())) else {
        return;
    };
    let tmp_prefix = format!("{base}.tmp.");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for entry in rd.flatten() {
            let file = entry.file_name();
            let Some(pid) = file
                .to_str()
                .and_then(|f| f.strip_prefix(&tmp_prefix))
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if pid > 0 && !liveness::alive(pid) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// A failed safe open as a board error (keeping "exists already" and "not
/// found" recognisable by their kind).
fn open_err(what: String, e: OpenError) -> BoardError {
    let source = match e {
        OpenError::Io { source, .. } => source,
        OpenError::Exists(_) => io::Error::new(io::ErrorKind::AlreadyExists, e.reason()),
        OpenError::NotFound(_) => io::Error::new(io::ErrorKind::NotFound, e.reason()),
        e => io::Error::other(e.reason()),
    };
    BoardError::Os { what, source }
}

/// The runtime directory a link file lives in.
fn board_dir(link: &Path) -> PathBuf {
    link.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_owned)
}

/// Whether `id` looks like an os id we create.
pub fn valid_os_id(id: &str) -> bool {
    id.len() < 200
        && id.starts_with(OS_ID_PREFIX)
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Reads a link file: the os id of the board's segment.
fn read_link(link: &Path, name: &Name) -> Result<String, BoardError> {
    // Never blocks (a FIFO planted there), never follows a symlink, and
    // trusts only a regular file of ours.
    let text = match openfile::read_regular(link, 256) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => {
            return Err(BoardError::NotFound {
                name: name.to_string(),
                dir: board_dir(link),
            })
        }
        Err(e) => {
            return Err(BoardError::Foreign {
                path: link.to_owned(),
                why: e.reason(),
            })
        }
    };
    match std::str::from_utf8(&text) {
        Ok(id) if valid_os_id(id.trim()) => Ok(id.trim().to_owned()),
        _ => Err(BoardError::Foreign {
            path: link.to_owned(),
            why: "the link file does not name a board segment".to_owned(),
        }),
    }
}

/// Publishes a link atomically: written to a temporary file, then hard-linked
/// into place (`link(2)` fails if the name exists, so two racing producers
/// never overwrite each other's board).
fn publish_link(link: &Path, os_id: &str) -> Result<(), BoardError> {
    let tmp = link.with_extension(format!("shm.tmp.{}", std::process::id()));
    let os = |what: &str, source| BoardError::Os {
        what: format!("{what} {}", link.display()),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = openfile::open_regular(&tmp, Access::CreateNew(0o600))
        .map_err(|e| open_err(format!("writing {}", tmp.display()), e))?;
    f.write_all(os_id.as_bytes())
        .map_err(|e| os("writing", e))?;
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
    drop(f);
    let res = std::fs::hard_link(&tmp, link);
    let _ = std::fs::remove_file(&tmp);
    res.map_err(|e| os("publishing", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// All unit tests share one private runtime directory.
    fn dir() -> RunDir {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        let dir = DIR.get_or_init(|| {
            tempfile::Builder::new()
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .tempdir()
                .unwrap()
        });
        RunDir::open(dir.path()).unwrap()
    }

    fn name(prefix: &str) -> Name {
        static N: AtomicU32 = AtomicU32::new(0);
        Name::new(&format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Relaxed)
        ))
        .unwrap()
    }

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
    fn append_then_snapshot_is_consistent() {
        let n = name("snap");
        let (b, origin) = Board::open_or_create(&dir(), &n, Some(8), false).unwrap();
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
        let b2 = Board::open(&dir(), &n).unwrap();
        assert_eq!(b2.capacity(), 8);
        assert!(matches!(
            Board::open_or_create(&dir(), &n, Some(16), false),
            Err(BoardError::Usage(_))
        ));
        b.remove();
        assert!(matches!(
            Board::open(&dir(), &n),
            Err(BoardError::NotFound { .. })
        ));
    }

    #[test]
    fn holder_dying_mid_append_is_repaired_by_next_locker() {
        let n = name("dead");
        let (b, _) = Board::open_or_create(&dir(), &n, None, false).unwrap();
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
        let n = name("done");
        let (b, _) = Board::open_or_create(&dir(), &n, None, false).unwrap();
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
        let n = name("wake");
        let (b, _) = Board::open_or_create(&dir(), &n, None, false).unwrap();
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

    #[test]
    fn zeroed_segment_header_is_refused() {
        let layout = std::alloc::Layout::new::<Shared>();
        // SAFETY: a zeroed allocation is a valid `Shared` (ShmSafe contract).
        let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut Shared;
        // SAFETY: just allocated, properly aligned, zeroed.
        let s = unsafe { &*p };
        assert!(segment::check_header(s, layout.size())
            .unwrap_err()
            .contains("empty"));
        s.magic.store(segment::MAGIC, Relaxed);
        s.layout.store(99, Relaxed);
        assert!(segment::check_header(s, layout.size())
            .unwrap_err()
            .contains("fingerprint is 0x00000063"));
        // SAFETY: allocated above with the same layout.
        unsafe { std::alloc::dealloc(p as *mut u8, layout) };
    }

    #[test]
    fn os_ids_are_checked() {
        assert!(valid_os_id("/syncomm.board.x.1.ab"));
        assert!(!valid_os_id("/etc/passwd"));
        assert!(!valid_os_id("/syncomm.board./../x"));
    }
}
