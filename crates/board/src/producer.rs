//! The producer: appends values to the board and wakes the consumers whose
//! value appeared.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::Name;

use crate::board::{Board, Origin};
use crate::error::BoardError;
use crate::values::Values;
use crate::wait;

/// What the producer is asked to do.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// The board's name.
    pub name: Name,
    /// The runtime directory where the board's link file lives.
    pub dir: RunDir,
    /// Stop after this many values (`None`: until stopped).
    pub count: Option<u64>,
    /// Pause between values (zero: flat out).
    pub interval: Duration,
    /// Seed for reproducible values.
    pub seed: Option<u64>,
    /// Ring capacity for a new board (must match an existing one if given).
    pub capacity: Option<u32>,
    /// Replace an existing board (or a foreign segment) with a new one.
    pub fresh: bool,
    /// Leave the board's name in place at exit.
    pub keep: bool,
    /// TESTING KNOB: after `.0` values, stall `.1` in the middle of the next
    /// append, holding the lock, so a test can kill the producer there.
    pub hold_lock: Option<(u64, Duration)>,
    /// Where to count the values appended so far, for a progress display.
    pub progress: Option<Arc<AtomicU64>>,
}

/// Why the producer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    /// `--count` values were appended.
    Count,
    /// SIGINT or SIGTERM.
    Signal,
    /// `monitor --stop` cleared `active`.
    Stopped,
}

/// What the producer did.
#[derive(Debug, Clone, Serialize)]
pub struct ProducerReport {
    /// The board's name.
    pub name: String,
    /// Whether it created the board or attached to one.
    pub origin: Origin,
    /// Values this producer appended.
    pub appended: u64,
    /// Values on the board in all.
    pub total: u64,
    /// Seconds spent appending.
    pub seconds: f64,
    /// Append rate.
    pub values_per_s: f64,
    /// Why it stopped.
    pub reason: StopReason,
}

/// Runs the producer. `ready` is called once the board is ours (the board,
/// whether it was created, its total so far); `holding` when the testing knob
/// stalls with the lock held.
pub fn produce(
    opts: &ProducerOptions,
    shutdown: &Shutdown,
    ready: impl FnOnce(&Board, Origin, u64),
    holding: impl FnOnce(),
) -> Result<ProducerReport, BoardError> {
    let (board, origin) = Board::open_or_create(&opts.dir, &opts.name, opts.capacity, opts.fresh)?;
    let me = std::process::id() as i32;
    let start_total = {
        let mut g = board.lock()?;
        // Checked again under the lock: two producers racing to attach.
        if g.producer_pid() != me && g.producer_live() {
            return Err(BoardError::HasProducer {
                name: opts.name.to_string(),
                pid: g.producer_pid(),
            });
        }
        g.start_producing(me);
        g.total()
    };
    ready(&board, origin, start_total);

    let result = run_loop(&board, opts, shutdown, holding);
    // Whatever happened, tell everyone we are gone.
    if let Ok(mut g) = board.lock() {
        if g.producer_pid() == me {
            g.stop();
        }
    }
    if !opts.keep {
        board.remove();
    }
    let (appended, seconds, reason) = result?;
    let total = board
        .lock()
        .map(|g| g.total())
        .unwrap_or(start_total + appended);
    Ok(ProducerReport {
        name: opts.name.to_string(),
        origin,
        appended,
        total,
        seconds,
        values_per_s: if seconds > 0.0 {
            appended as f64 / seconds
        } else {
            0.0
        },
        reason,
    })
}

fn run_loop(
    board: &Board,
    opts: &ProducerOptions,
    shutdown: &Shutdown,
    holding: impl FnOnce(),
) -> Result<(u64, f64, StopReason), BoardError> {
    let mut values = Values::new(opts.seed);
    let mut holding = Some(holding);
    let count = opts.count.unwrap_or(u64::MAX);
    let start = Instant::now();
    let mut n: u64 = 0;
    let reason = loop {
        if n >= count {
            break StopReason::Count;
        }
        if shutdown.requested() {
            break StopReason::Signal;
        }
        if !board.active() {
            break StopReason::Stopped;
        }
        let v = values.next_value();
        {
            let mut g = board.lock()?;
            match opts.hold_lock {
                Some((after, hold)) if after == n => {
                    let h = holding.take();
                    g.append_stalled(v, hold, || {
                        if let Some(h) = h {
                            h()
                        }
                    })
                }
                _ => g.append(v),
            }
        }
        n += 1;
        if let Some(p) = &opts.progress {
            p.store(n, Ordering::Relaxed);
        }
        board.yield_to_readers();
        if !opts.interval.is_zero() && wait::pause(opts.interval, shutdown) {
            break StopReason::Signal;
        }
    };
    Ok((n, start.elapsed().as_secs_f64(), reason))
}
