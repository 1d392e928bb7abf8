//! The monitor: prints consistent snapshots read through the sequence
//! counter, never taking the lock.

use std::time::{Duration, Instant};

use serde::Serialize;
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::Name;

use crate::board::{Board, Snapshot, SnapshotError};
use crate::error::BoardError;
use crate::liveness;
use crate::wait::{self, Ended};

/// What the monitor is asked to do.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// The board's name.
    pub name: Name,
    /// The runtime directory where the board's link file lives.
    pub dir: RunDir,
    /// Time between snapshots.
    pub interval: Duration,
    /// Print one snapshot and exit (a missing board is an error).
    pub once: bool,
    /// Give up after this long.
    pub timeout: Option<Duration>,
}

/// One printed snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The board's name.
    pub name: String,
    /// Values appended per second since the previous snapshot (`None` for
    /// the first one).
    pub values_per_s: Option<f64>,
    /// The snapshot.
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

/// Why the monitor failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Opening or waiting for the board failed.
    #[error(transparent)]
    Board(#[from] BoardError),
    /// No consistent snapshot (`--once`).
    #[error("no consistent snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    /// Writing the output failed.
    #[error("writing the snapshot: {0}")]
    Output(#[from] std::io::Error),
}

/// How the monitor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorEnd {
    /// `--once` printed its snapshot.
    Once,
    /// The producer cleared `active`.
    Inactive,
    /// The producer died without clearing `active`.
    ProducerDied(i32),
    /// The timeout passed.
    TimedOut,
    /// SIGINT or SIGTERM.
    Interrupted,
}

/// Runs the monitor, handing each snapshot to `emit` (and each warning to `warn`).
pub fn monitor(
    opts: &MonitorOptions,
    shutdown: &Shutdown,
    mut emit: impl FnMut(&Report) -> std::io::Result<()>,
    mut warn: impl FnMut(&str),
) -> Result<MonitorEnd, MonitorError> {
    let deadline = opts.timeout.and_then(wait::after);
    let board = if opts.once {
        Board::open(&opts.dir, &opts.name)?
    } else {
        match wait::wait_for_board(&opts.dir, &opts.name, deadline, shutdown)? {
            Ok(b) => b,
            Err(Ended::TimedOut) => return Ok(MonitorEnd::TimedOut),
            Err(Ended::Interrupted) => return Ok(MonitorEnd::Interrupted),
        }
    };
    let limit = opts.interval.max(Duration::from_millis(200));
    // The producer this monitor watches: the one running the board when we
    // attached, or any that started after this monitor did — even if it
    // died before we got a snapshot of it alive (killed mid-update right
    // after it started, say). Only a producer that was already gone when
    // we attached is waited past (its board awaits the next producer).
    let my_start = liveness::start_time(std::process::id() as i32).unwrap_or(u64::MAX);
    let ours = |pid: i32, start: u64| pid > 0 && start != 0 && start >= my_start;
    let mut seen: Option<i32> = board.live_producer();
    let mut last: Option<(Instant, u64)> = None;
    let mut warned = false;
    loop {
        match board.snapshot(limit) {
            Ok(snap) => {
                let now = Instant::now();
                let values_per_s = match last {
                    Some((t, n)) => Some(
                        (snap.total.saturating_sub(n)) as f64
                            / now.duration_since(t).as_secs_f64().max(1e-9),
                    ),
                    None => None,
                };
                last = Some((now, snap.total));
                let live = snap.active && snap.producer_alive;
                let pid = snap.producer_pid;
                let active = snap.active;
                let watched = seen.or(ours(pid, snap.producer_start).then_some(pid));
                emit(&Report {
                    name: opts.name.to_string(),
                    values_per_s,
                    snapshot: snap,
                })?;
                if opts.once {
                    return Ok(MonitorEnd::Once);
                }
                if live {
                    seen = Some(pid);
                } else if let Some(p) = watched {
                    return Ok(if active {
                        MonitorEnd::ProducerDied(p)
                    } else {
                        MonitorEnd::Inactive
                    });
                }
            }
            Err(e @ SnapshotError::WriterDied { pid, start }) => {
                if opts.once {
                    return Err(e.into());
                }
                if seen.is_some() || ours(pid, start) {
                    return Ok(MonitorEnd::ProducerDied(pid));
                }
                if !warned {
                    warn(&e.to_string());
                    warned = true;
                }
            }
            Err(e @ SnapshotError::Inconsistent(_)) => return Err(e.into()),
            Err(e @ SnapshotError::Busy(..)) => {
                if opts.once {
                    return Err(e.into());
                }
                warn(&e.to_string());
            }
        }
        let wake = match (deadline, wait::after(opts.interval)) {
            (Some(d), Some(w)) => Some(d.min(w)),
            (d, w) => d.or(w),
        };
        match wait::sleep_until(wake, None, shutdown) {
            Some(Ended::Interrupted) => return Ok(MonitorEnd::Interrupted),
            _ if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(MonitorEnd::TimedOut),
            _ => {}
        }
    }
}

/// `monitor --stop`: clears `active` (taking the lock briefly: this is a
/// write) and wakes everyone; the producer sees it and stops. Returns the
/// producer's pid (0: none). Waits for the lock at most [`STOP_LOCK_WAIT`]:
/// a holder that is alive but stalled gets a clear error, not a hang.
pub fn stop(dir: &RunDir, name: &Name) -> Result<i32, BoardError> {
    let board = Board::open(dir, name)?;
    let deadline = Instant::now() + STOP_LOCK_WAIT;
    let Some(mut g) = board.lock_until(Some(deadline), &|| false)? else {
        return Err(BoardError::LockHeld {
            waited: syncomm_common::duration::format_duration(STOP_LOCK_WAIT),
            producer: board.live_producer(),
        });
    };
    g.stop();
    Ok(g.producer_pid())
}

/// How long `monitor --stop` waits for the board's lock.
pub const STOP_LOCK_WAIT: Duration = Duration::from_secs(5);
