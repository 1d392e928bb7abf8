//! The board: a named shared-memory segment, its robust lock, and the three
//! ways to touch it: append (producer), wait (consumer), snapshot (monitor).
//!
//! This module holds [`Board`] itself (open, create, remove); its parts live
//! in submodules: `link` (the link file naming a board's segment), `lock`
//! (the robust lock, its [`Guard`] and the repair after a holder's death),
//! `seqlock` (write sections and lock-free snapshots) and `condvar`
//! (waiting for and waking on the board).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::*};

use serde::Serialize;
use syncomm_common::rundir::RunDir;
use syncomm_common::Name;

use crate::error::BoardError;
use syncomm_common::attribution::Origin as Attribution;

use crate::liveness;
use crate::mapped::{self, Mapping, Segment};
pub use crate::mapped::{Snapshot, SnapshotError};
use crate::segment::{self, Shared, MAX_CAPACITY};

mod condvar;
mod link;
mod lock;
mod seqlock;

pub use condvar::wake_all;
use link::{board_dir, open_err, publish_link, read_link, sweep_orphans};
pub use link::{link_path, valid_os_id, OS_ID_PREFIX};
pub use lock::{Guard, LOCK_SLICE};

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
}

#[cfg(test)]
mod test_support {
    //! What the unit tests of the board's modules share.
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    use syncomm_common::rundir::RunDir;
    use syncomm_common::Name;

    /// A test's private runtime directory, removed when the test drops it
    /// (a shared static one would never be dropped, and leak).
    pub(in crate::board) struct Scratch {
        _tmp: tempfile::TempDir,
        dir: RunDir,
    }

    impl std::ops::Deref for Scratch {
        type Target = RunDir;
        fn deref(&self) -> &RunDir {
            &self.dir
        }
    }

    pub(in crate::board) fn dir() -> Scratch {
        let tmp = tempfile::Builder::new()
            .prefix("syncomm-board-test-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .unwrap();
        let dir = RunDir::open(tmp.path()).unwrap();
        Scratch { _tmp: tmp, dir }
    }

    pub(in crate::board) fn name(prefix: &str) -> Name {
        static N: AtomicU32 = AtomicU32::new(0);
        Name::new(&format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Relaxed)
        ))
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
