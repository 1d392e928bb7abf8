//! `syncomm top`: every live object, refreshed in place, with rates.
//!
//! On a terminal it redraws the screen (plain ANSI: alternate screen, cursor
//! home, clear) every interval and quits on `q` or Ctrl-C, restoring the
//! terminal. With stdout not a terminal (or with `--json`) it prints one JSON
//! line per interval, a `frame` event of `syncomm` (see docs/JSON.md):
//! `{"program":"syncomm","event":"frame",…,"dir":…,"live":[…],"stale":N,"orphan":N,"foreign":N}`.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, LocalFlags, SetArg};
use serde::Serialize;
use serde_json::json;
use syncomm_common::jsonl::Line;
use syncomm_common::shutdown::Shutdown;

use crate::model::{Kind, Listing, Object, State};
use crate::scan::{scan, Scope};

/// How `top` runs.
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// What to watch.
    pub scope: Scope,
    /// Time between refreshes.
    pub interval: Duration,
    /// Stop after this many refreshes (none: until `q`, Ctrl-C or SIGTERM).
    pub count: Option<u64>,
    /// JSON lines even on a terminal (they are the output whenever stdout
    /// is not a terminal).
    pub json: bool,
}

/// The counter whose growth `top` shows as a rate, per kind: what it
/// counts (`values`, `calls`, `pings`) and its value.
fn counter(o: &Object) -> Option<(&'static str, f64)> {
    let get = |k: &str| o.info.get(k).and_then(|v| v.as_f64());
    match o.kind {
        Kind::Board => get("total").map(|v| ("values", v)),
        Kind::Worker => get("calls").map(|v| ("calls", v)),
        Kind::Ping => get("pings").map(|v| ("pings", v)),
        _ => None,
    }
}

/// One live object with its rate.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The object.
    #[serde(flatten)]
    pub object: Object,
    /// Its rate per second since the last refresh (rounded to 0.1).
    pub rate_per_s: Option<f64>,
    /// What the rate counts: `values`, `calls` or `pings`.
    pub rate_of: Option<&'static str>,
}

/// One refresh.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    /// The runtime directory.
    pub dir: PathBuf,
    /// Every live object.
    pub live: Vec<Row>,
    /// How many stale objects there are.
    pub stale: usize,
    /// How many orphans.
    pub orphan: usize,
    /// How many foreign objects.
    pub foreign: usize,
}

/// Turns successive listings into frames with rates.
#[derive(Default)]
pub struct Rates {
    last: HashMap<(Kind, String, Option<PathBuf>), (Instant, f64)>,
}

impl Rates {
    /// The frame for `listing`, taken at `now`.
    pub fn frame(&mut self, listing: Listing, now: Instant) -> Frame {
        let count = |s| listing.objects.iter().filter(|o| o.state == s).count();
        let (stale, orphan, foreign) = (
            count(State::Stale),
            count(State::Orphan),
            count(State::Foreign),
        );
        let mut live = Vec::new();
        let mut seen = HashMap::new();
        for o in listing
            .objects
            .into_iter()
            .filter(|o| o.state == State::Live)
        {
            let key = (o.kind, o.name.clone(), o.dir.clone());
            let (mut rate, mut unit) = (None, None);
            if let Some((u, v)) = counter(&o) {
                if let Some((t, prev)) = self.last.get(&key) {
                    let dt = now.duration_since(*t).as_secs_f64();
                    if dt > 0.0 && v >= *prev {
                        rate = Some(syncomm_common::jsonl::round((v - prev) / dt, 1));
                    }
                }
                unit = Some(u);
                seen.insert(key, (now, v));
            }
            live.push(Row {
                object: o,
                rate_per_s: rate,
                rate_of: unit,
            });
        }
        self.last = seen;
        Frame {
            dir: listing.dir,
            live,
            stale,
            orphan,
            foreign,
        }
    }
}

/// The screen for a frame (lines, no escape codes).
pub fn render(f: &Frame, interval: Duration) -> Vec<String> {
    let mut v = vec![
        format!(
            "syncomm top — {} — every {:?} — q or Ctrl-C quits",
            f.dir.display(),
            interval
        ),
        format!(
            "{} live, {} stale, {} orphan, {} foreign (syncomm ls shows all, syncomm clean removes stale and orphans)",
            f.live.len(),
            f.stale,
            f.orphan,
            f.foreign
        ),
        String::new(),
    ];
    if f.live.is_empty() {
        v.push("(no live objects)".into());
    }
    for r in &f.live {
        let mut line = r.object.line();
        if let Some(u) = r.rate_of {
            match r.rate_per_s {
                Some(rate) => line = format!("{line}  [{rate:.1} {u}/s]"),
                None => line = format!("{line}  [- {u}/s]"),
            }
        }
        v.push(line);
    }
    v
}

/// Restores the terminal when dropped.
struct RawMode {
    saved: Option<termios::Termios>,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> RawMode {
        let saved = termios::tcgetattr(fd).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            raw.local_flags
                .remove(LocalFlags::ICANON | LocalFlags::ECHO);
            let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &raw);
        }
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"\x1b[?1049h\x1b[?25l");
        let _ = out.flush();
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
    }
}

/// Runs `top` until `q`, a shutdown signal, or `count` refreshes.
pub fn run(opts: &TopOptions, shutdown: &Shutdown) -> io::Result<()> {
    let tty = io::stdout().is_terminal() && !opts.json;
    let stdin_tty = io::stdin().is_terminal();
    let _raw = (tty && stdin_tty).then(|| RawMode::enter(io::stdin().as_fd()));
    let mut rates = Rates::default();
    let mut n = 0u64;
    loop {
        let frame = rates.frame(scan(&opts.scope), Instant::now());
        let mut out = io::stdout().lock();
        if tty {
            let (_, rows) = syncomm_sys::tty::size(io::stdout());
            let mut screen = String::from("\x1b[H\x1b[2J");
            for line in render(&frame, opts.interval)
                .into_iter()
                .take(rows.max(3) - 1)
            {
                screen.push_str(&line);
                screen.push_str("\r\n");
            }
            out.write_all(screen.as_bytes())?;
        } else {
            let line = Line::new("syncomm", "frame").fields(&frame).into_string();
            out.write_all(line.as_bytes())?;
        }
        out.flush()?;
        drop(out);
        n += 1;
        if opts.count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        if wait_key(opts.interval, stdin_tty && tty, shutdown)? {
            return Ok(());
        }
    }
}

/// Waits `d`; true when the user asked to quit (`q`, Ctrl-C, a signal).
fn wait_key(d: Duration, keys: bool, shutdown: &Shutdown) -> io::Result<bool> {
    let deadline = Instant::now() + d;
    loop {
        if shutdown.requested() {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        let stdin = io::stdin();
        let mut fds = vec![PollFd::new(shutdown.wake_fd(), PollFlags::POLLIN)];
        if keys {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if keys && fds[1].any().unwrap_or(false) {
            let mut b = [0u8; 16];
            let n = nix::unistd::read(stdin.as_fd(), &mut b).unwrap_or(0);
            if n == 0 || b[..n].iter().any(|&c| c == b'q' || c == b'Q' || c == 3) {
                return Ok(true);
            }
        }
    }
}

/// `frame` as the JSON object `top` prints (for tests and scripts).
pub fn frame_json(f: &Frame) -> serde_json::Value {
    json!(f)
}
