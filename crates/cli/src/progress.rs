//! A progress line for long work: one status line on stderr, redrawn in place
//! a few times a second while the work runs, erased when it ends — only when
//! stderr is a terminal. Piped or redirected, a program stays quiet, so its
//! output (and its stderr) is the same as without progress.
//!
//! The work counts what it did in a shared [`AtomicU64`] (a relaxed store or
//! add: no lock, no system call in the hot loop); a thread of this module
//! reads it and draws.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the line is redrawn.
const REDRAW: Duration = Duration::from_millis(250);

/// A counter for the work to count into, when there is a terminal to show
/// it on (stderr); `None` otherwise, so that work whose output goes to a
/// pipe or a file pays nothing for progress in its loop.
pub fn counter() -> Option<Arc<AtomicU64>> {
    std::io::stderr().is_terminal().then(Arc::default)
}

/// A running progress line; erased and stopped on [`ProgressLine::finish`] or drop.
pub struct ProgressLine {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressLine {
    /// Starts drawing `PROGRAM: N UNIT (RATE UNIT/s)`, or `N/TOTAL` when the
    /// total is known, from `done`; draws nothing when stderr is not a terminal.
    pub fn start(
        program: &'static str,
        unit: &'static str,
        total: Option<u64>,
        done: Arc<AtomicU64>,
    ) -> ProgressLine {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return ProgressLine { stop, thread: None };
        }
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let start = Instant::now();
                let mut drawn = false;
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(REDRAW);
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    let n = done.load(Ordering::Relaxed);
                    let line = line(program, unit, n, total, start.elapsed());
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[K{line}");
                    let _ = err.flush();
                    drawn = true;
                }
                if drawn {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[K");
                    let _ = err.flush();
                }
            })
            .ok();
        ProgressLine { stop, thread }
    }

    /// Stops drawing and erases the line.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.end();
    }
}

/// A status line for work made of named steps (the benchmark suite): each
/// step replaces the last in place on a terminal and is not shown
/// elsewhere; a note (a warning) is always printed, on a line of its own.
pub struct StatusLine {
    terminal: bool,
    drawn: bool,
}

impl StatusLine {
    /// A status line on stderr.
    pub fn stderr() -> StatusLine {
        StatusLine {
            terminal: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    /// Shows `text` as the current step (on a terminal only).
    pub fn step(&mut self, text: &str) {
        if self.terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{text}");
            let _ = err.flush();
            self.drawn = true;
        }
    }

    /// Prints `text` on a line of its own, terminal or not.
    pub fn note(&mut self, text: &str) {
        self.clear();
        eprintln!("{text}");
    }

    /// Erases the current step.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The text of the line: `producer: 1.25 M values, 2.10 M values/s, 0.6s`.
pub fn line(program: &str, unit: &str, n: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let count = match total {
        Some(t) if t > 0 => format!(
            "{}/{} {unit} ({:.0}%)",
            human(n as f64),
            human(t as f64),
            100.0 * n as f64 / t as f64
        ),
        _ => format!("{} {unit}", human(n as f64)),
    };
    format!("{program}: {count}, {} {unit}/s, {secs:.1}s", human(rate))
}

/// A count or rate in short form: `950`, `12.3 k`, `4.56 M` (the unit follows).
pub fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_count_rate_and_share() {
        let l = line("scribe", "lines", 500, Some(2000), Duration::from_secs(2));
        assert_eq!(l, "scribe: 500/2.0 k lines (25%), 250 lines/s, 2.0s");
        let l = line(
            "producer",
            "values",
            3_000_000,
            None,
            Duration::from_secs(1),
        );
        assert_eq!(l, "producer: 3.00 M values, 3.00 M values/s, 1.0s");
    }
}
