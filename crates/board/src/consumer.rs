//! The consumer: sleeps in the kernel until its value has appeared on the board.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::Name;

use crate::board::wake_all;
use crate::error::BoardError;
use crate::liveness;
use crate::wait::{self, Ended};

/// What the consumer waits for.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The board's name.
    pub name: Name,
    /// The runtime directory where the board's link file lives.
    pub dir: RunDir,
    /// The value awaited (0..=100).
    pub until: u8,
    /// Give up after this long (`None`: wait as long as the producer runs).
    pub timeout: Option<Duration>,
}

/// How the wait ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The value has appeared.
    Found {
        /// The value.
        value: u8,
        /// Its first appearance was value number `after` (1-based).
        after: u64,
        /// The recent values up to and including that appearance (those
        /// still in the ring), else the most recent values.
        recent: Vec<u8>,
        /// Nanoseconds from the producer's broadcast to this process running
        /// again, when this consumer was woken by that broadcast.
        wakeup_ns: Option<u64>,
    },
    /// The producer ended (or died) without the value.
    ProducerEnded {
        /// The value.
        value: u8,
        /// Values on the board when it ended.
        total: u64,
        /// The pid of the producer if it died instead of ending cleanly.
        died: Option<i32>,
    },
    /// The timeout passed.
    TimedOut {
        /// The value.
        value: u8,
        /// Values on the board so far (`None`: the board never appeared).
        total: Option<u64>,
    },
    /// The timeout passed while another process held the board's lock and
    /// did not let go (a producer stopped with Ctrl-Z, say).
    LockHeld {
        /// The value.
        value: u8,
        /// The board's producer, if it is alive.
        producer: Option<i32>,
    },
    /// SIGINT or SIGTERM.
    Interrupted,
}

/// Waits for `opts.until`: first for the board to appear, then for a live
/// producer, then for the value, blocked in the kernel throughout
/// (inotify, then the board's condition variable). Two helper threads turn
/// a shutdown signal and the producer's death (a pidfd) into a broadcast, so
/// the wait never has to poll.
pub fn consume(opts: &ConsumerOptions, shutdown: &Shutdown) -> Result<Outcome, BoardError> {
    let deadline = opts.timeout.and_then(wait::after);
    let v = opts.until;
    let board = match wait::wait_for_board(&opts.dir, &opts.name, deadline, shutdown)? {
        Ok(b) => Arc::new(b),
        Err(Ended::TimedOut) => {
            return Ok(Outcome::TimedOut {
                value: v,
                total: None,
            })
        }
        Err(Ended::Interrupted) => return Ok(Outcome::Interrupted),
    };
    {
        let board = Arc::clone(&board);
        let shutdown = shutdown.clone();
        std::thread::spawn(move || {
            while !wait::pause(Duration::from_secs(3600), &shutdown) {}
            wake_all(&board);
        });
    }

    tracing::info!("board {} found; taking its lock", opts.name);
    let stop = || shutdown.requested();
    let Some(mut g) = board.lock_until(deadline, &stop)? else {
        // A live holder kept the lock past our bound.
        return Ok(if shutdown.requested() {
            Outcome::Interrupted
        } else {
            Outcome::LockHeld {
                value: v,
                producer: board.live_producer(),
            }
        });
    };
    g.add_waiter(v, 1);
    let mut watched: Option<i32> = None;
    let mut woke_at: Option<u64> = None;
    let mut said_no_producer = false;
    let outcome = loop {
        if g.count(v) > 0 {
            let first = g.first(v);
            let recent = g.found_recent(v);
            let wakeup_ns = woke_at.map(|w| w.saturating_sub(board.notify_ns()));
            break Outcome::Found {
                value: v,
                after: first,
                recent,
                wakeup_ns,
            };
        }
        let pid = g.producer_pid();
        let live = g.producer_live();
        match watched {
            Some(p) if !live || p != pid => {
                break Outcome::ProducerEnded {
                    value: v,
                    total: g.total(),
                    died: (g.active() || p != pid).then_some(p),
                }
            }
            None if live => {
                tracing::info!(
                    "waiting for {v}: producer pid {pid} runs the board ({} values so far)",
                    g.total()
                );
                watched = Some(pid);
                let board = Arc::clone(&board);
                std::thread::spawn(move || {
                    let pid = nix::unistd::Pid::from_raw(pid);
                    if let Ok(fd) = syncomm_sys::pidfd::PidFd::open(pid) {
                        fd.wait_exit(None);
                    }
                    wake_all(&board);
                });
            }
            None if !said_no_producer => {
                tracing::info!("waiting for {v}: no producer runs the board yet");
                said_no_producer = true;
            }
            _ => {}
        }
        if shutdown.requested() {
            break Outcome::Interrupted;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Outcome::TimedOut {
                value: v,
                total: Some(g.total()),
            };
        }
        let Some(again) = g.wait(deadline, &stop)? else {
            // The lock stayed held past our bound: leave without it (our
            // waiter registration is reaped as a dead waiter's once we exit).
            return Ok(if shutdown.requested() {
                Outcome::Interrupted
            } else {
                Outcome::LockHeld {
                    value: v,
                    producer: board.live_producer(),
                }
            });
        };
        g = again;
        woke_at = Some(liveness::monotonic_ns());
    };
    g.add_waiter(v, -1);
    Ok(outcome)
}
