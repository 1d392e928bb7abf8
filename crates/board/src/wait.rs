//! Waiting without polling: for a board to appear (inotify on the runtime
//! directory), for a signal, or for a deadline.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::time::TimeSpec;
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::Name;

use crate::board::Board;
use crate::error::BoardError;

/// How a wait ended when it did not get what it waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The deadline passed.
    TimedOut,
    /// SIGINT or SIGTERM arrived.
    Interrupted,
}

/// How often a waiter that could not get an inotify watch looks again.
pub const FALLBACK_RECHECK: Duration = Duration::from_millis(50);

/// Waits until the board called `name` exists and opens it. Blocks in
/// `ppoll(2)` on an inotify descriptor watching the runtime directory (a
/// producer publishing the board's link wakes us) and on the shutdown
/// descriptor, bounded by `deadline`. When the kernel refuses an inotify
/// instance or watch (past the per-user `max_user_instances` or
/// `max_user_watches`, about 128 waiters by default, or out of
/// descriptors), it looks again every [`FALLBACK_RECHECK`] instead.
pub fn wait_for_board(
    dir: &RunDir,
    name: &Name,
    deadline: Option<Instant>,
    shutdown: &Shutdown,
) -> Result<Result<Board, Ended>, BoardError> {
    // Watch first, then look: a link published in between is not missed.
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).and_then(|ino| {
        ino.add_watch(
            dir.path(),
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
        )
        .map(|_| ino)
    });
    let ino = match ino {
        Ok(ino) => Some(ino),
        Err(
            e @ (nix::errno::Errno::EMFILE
            | nix::errno::Errno::ENFILE
            | nix::errno::Errno::ENOSPC
            | nix::errno::Errno::ENOMEM),
        ) => {
            tracing::info!(
                "cannot watch the runtime directory ({}); looking for board {name} every {:?} instead",
                e.desc(),
                FALLBACK_RECHECK
            );
            None
        }
        Err(e) => {
            return Err(BoardError::Os {
                what: "watching the runtime directory".to_owned(),
                source: e.into(),
            })
        }
    };
    let mut said = false;
    loop {
        match Board::open(dir, name) {
            Ok(b) => return Ok(Ok(b)),
            Err(BoardError::NotFound { .. }) if !said => {
                tracing::info!("waiting for board {name} to appear");
                let program = std::env::args()
                    .next()
                    .and_then(|a| a.rsplit('/').next().map(str::to_owned))
                    .unwrap_or_default();
                syncomm_common::waitnote::waiting(
                    &program,
                    &format!("board {:?}", name.as_str()),
                    dir.path(),
                );
                said = true;
            }
            Err(BoardError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match &ino {
            Some(ino) => match sleep_until(deadline, Some(ino), shutdown) {
                Some(end) => return Ok(Err(end)),
                None => while matches!(ino.read_events(), Ok(ev) if !ev.is_empty()) {},
            },
            None => {
                let recheck = after(FALLBACK_RECHECK);
                let wake = match (deadline, recheck) {
                    (Some(d), Some(r)) => Some(d.min(r)),
                    (d, r) => d.or(r),
                };
                match sleep_until(wake, None, shutdown) {
                    Some(Ended::Interrupted) => return Ok(Err(Ended::Interrupted)),
                    _ if deadline.is_some_and(|d| Instant::now() >= d) => {
                        return Ok(Err(Ended::TimedOut))
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Sleeps until `deadline`, a shutdown signal, or (if given) an inotify
/// event. Returns why it ended if that was the deadline or a signal, `None`
/// if something else woke it.
pub fn sleep_until(
    deadline: Option<Instant>,
    ino: Option<&Inotify>,
    shutdown: &Shutdown,
) -> Option<Ended> {
    loop {
        if shutdown.requested() {
            return Some(Ended::Interrupted);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Some(Ended::TimedOut);
        }
        let mut fds = vec![PollFd::new(shutdown.wake_fd(), PollFlags::POLLIN)];
        if let Some(i) = ino {
            fds.push(PollFd::new(i.as_fd(), PollFlags::POLLIN));
        }
        match ppoll(&mut fds, left.map(TimeSpec::from_duration), None) {
            Ok(0) => {} // deadline: checked at the top
            Ok(_) => {
                let ino_ready = fds
                    .get(1)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| r.contains(PollFlags::POLLIN));
                if shutdown.requested() {
                    return Some(Ended::Interrupted);
                }
                if ino_ready {
                    return None;
                }
                shutdown.drain();
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// Sleeps `d` or until a shutdown signal; true if interrupted.
pub fn pause(d: Duration, shutdown: &Shutdown) -> bool {
    sleep_until(after(d), None, shutdown) == Some(Ended::Interrupted)
}

/// The instant `d` from now; `None` (no deadline) when `d` is so large that
/// the clock cannot represent it (`Instant + Duration` would panic).
pub fn after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}
