//! The raw floors: the cheapest possible round trip between two processes
//! through each kernel mechanism, measured in the same run as the figures.
//!
//! Four round-trip floors, each a one-byte ping-pong between this process and
//! a peer process that does nothing else, and two floors shaped like a figure:
//!
//! | floor | mechanism | hops |
//! |---|---|---|
//! | pipe | two `pipe(2)`s: the peer reads a byte from one and writes it to the other | A → B → A |
//! | unix | a Unix-domain stream `socketpair(2)` | A → B → A |
//! | tcp | a TCP connection over loopback (`TCP_NODELAY` on both ends) | A → B → A |
//! | futex | a shared-memory word and `futex(2)` wait/wake, no spinning | A → B → A |
//! | wake | one `FUTEX_WAKE` of a process sleeping in `FUTEX_WAIT` on a shared word: one way, stamped like notify's figure | A → B |
//! | relay | a caller's message over a Unix socket to a relay process, by pipe to its child, and back: a worker call's hops | A → B → C → B → A |
//!
//! Every peer is started pinned to the other side's CPUs of the configuration
//! ([`crate::cpu`]); each trial starts a fresh peer.
//!
//! The peer is the bench binary itself, re-executed in a hidden mode
//! ([`PEER_FLAG`] `KIND`): a fresh process with no threads and no state, whose
//! only job is the loop in [`peer_main`]. Its descriptors are handed over as its
//! stdin and stdout (for the futex floor, stdin is a `memfd` that both map).
//! The peer dies with its parent (`PR_SET_PDEATHSIG`) and ends at end of input.

//!
//! ## Files
//! - `echo`: the pipe, unix and tcp floors.
//! - `futex`: the futex floor and the shared page.
//! - `wake`: the one-way wake floor.
//! - `relay`: the relay floor.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::Context;

use crate::{Figure, Unit};

mod echo;
mod futex;
mod relay;
mod wake;

use echo::{measure_echo, peer_echo, peer_echo_epoll};
use futex::{measure_futex, peer_futex};
use relay::peer_relay;
pub use relay::Relay;
use wake::{measure_wake, peer_wake};
pub use wake::{now_ns, sleeping};

/// The hidden command-line flag that turns the bench binary into a floor peer.
pub const PEER_FLAG: &str = "--floor-peer";

/// One of the floors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorKind {
    /// Round trip through two pipes.
    Pipe,
    /// Round trip through a Unix-domain stream socket.
    Unix,
    /// Round trip through a loopback TCP connection.
    Tcp,
    /// The same, the peer waiting in `epoll_wait` (with a timeout) before each
    /// read, as a one-thread event-loop server does.
    TcpEpoll,
    /// Round trip through a futex word in shared memory.
    Futex,
    /// One-way futex wake of another process.
    Wake,
    /// Caller → relay (Unix socket) → child (pipe) and back.
    Relay,
}

impl FloorKind {
    /// The floors the table shows as rows of their own, in order.
    pub const ALL: [FloorKind; 7] = [
        FloorKind::Pipe,
        FloorKind::Unix,
        FloorKind::Tcp,
        FloorKind::TcpEpoll,
        FloorKind::Futex,
        FloorKind::Wake,
        FloorKind::Relay,
    ];

    /// The short name used on the command line (`pipe`, `unix`, `tcp`, `futex`).
    pub fn key(self) -> &'static str {
        match self {
            FloorKind::Pipe => "pipe",
            FloorKind::Unix => "unix",
            FloorKind::Tcp => "tcp",
            FloorKind::TcpEpoll => "tcp-epoll",
            FloorKind::Futex => "futex",
            FloorKind::Wake => "wake",
            FloorKind::Relay => "relay",
        }
    }

    /// The hop structure, for the table.
    pub fn hops(self) -> &'static str {
        match self {
            FloorKind::Pipe => "A →pipe→ B →pipe→ A (2 processes)",
            FloorKind::Unix => "A →socket→ B →socket→ A (2 processes)",
            FloorKind::Tcp => "A →TCP→ B →TCP→ A (2 processes)",
            FloorKind::TcpEpoll => "A →TCP→ B (epoll_wait, 1 s timeout) →TCP→ A (2 processes)",
            FloorKind::Futex => "A →futex→ B →futex→ A (2 processes, shared memory)",
            FloorKind::Wake => "A →FUTEX_WAKE→ B runs (2 processes, shared memory, one way)",
            FloorKind::Relay => {
                "A →socket→ relay B →pipe→ child C →pipe→ B →socket→ A (3 processes)"
            }
        }
    }

    /// The name shown in the table, also usable as a [`crate::Floor`] name.
    pub fn name(self) -> &'static str {
        match self {
            FloorKind::Pipe => "pipe round trip",
            FloorKind::Unix => "unix socket round trip",
            FloorKind::Tcp => "TCP loopback round trip",
            FloorKind::TcpEpoll => "TCP loopback round trip through an epoll loop",
            FloorKind::Futex => "futex wake round trip",
            FloorKind::Wake => "futex wake of another process, one way",
            FloorKind::Relay => "socket → relay → pipe → child round trip",
        }
    }

    /// Parses [`FloorKind::key`].
    pub fn parse(s: &str) -> Option<FloorKind> {
        FloorKind::ALL.into_iter().find(|k| k.key() == s)
    }
}

/// How many round trips to time: `(warm-up, measured)`.
pub fn rounds(quick: bool) -> (usize, usize) {
    if quick {
        (200, 2_000)
    } else {
        (2_000, 50_000)
    }
}

/// Where a floor's peer comes from and where it runs.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// The bench binary, re-executed as the peer.
    pub exe: std::path::PathBuf,
    /// The CPUs the peer is pinned to.
    pub cpus: Vec<usize>,
}

impl PeerSpec {
    /// The peer of `ctx`'s configuration.
    pub fn of(ctx: &crate::Ctx) -> PeerSpec {
        PeerSpec {
            exe: ctx.bench_exe(),
            cpus: ctx.peer_cpus(),
        }
    }
}

/// Measures one floor: `rounds` timed round trips (after `warmup` untimed ones)
/// between this process and a fresh peer. Returns one sample per round trip
/// (one way for [`FloorKind::Wake`]), in microseconds.
pub fn measure(
    kind: FloorKind,
    peer: &PeerSpec,
    warmup: usize,
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
    match kind {
        FloorKind::Futex => measure_futex(peer, warmup, rounds),
        FloorKind::Wake => measure_wake(peer, warmup, rounds),
        FloorKind::Relay => {
            let relay = Relay::start(peer, 1)?;
            let mut conn = relay.conns.into_iter().next().context("no connection")?;
            let msg = [1u8; 24];
            let mut back = [0u8; 24];
            let mut samples = Vec::with_capacity(rounds);
            for i in 0..warmup + rounds {
                let t = Instant::now();
                conn.write_all(&msg)?;
                conn.read_exact(&mut back).context("the relay went away")?;
                if i >= warmup {
                    samples.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            Ok(samples)
        }
        _ => measure_echo(kind, peer, warmup, rounds),
    }
}

/// Measures `kind` in trials and summarises it as a table row (scenario `floor`).
pub fn figure(ctx: &crate::Ctx, kind: FloorKind) -> anyhow::Result<Figure> {
    let (warmup, n) = rounds(ctx.quick);
    // A wake sample waits for the peer to fall asleep first: fewer of them.
    let (warmup, n) = if kind == FloorKind::Wake {
        (warmup / 10, n / 20)
    } else {
        (warmup, n)
    };
    let peer = PeerSpec::of(ctx);
    let side = crate::trials::alone(ctx.trials(), |_| {
        measure(kind, &peer, warmup, n)
            .with_context(|| format!("measuring the {} floor", kind.key()))
    })?;
    let mut f = Figure::new("floor", kind.name(), Unit::Micros, side.median());
    f.p99 = side.p99();
    f.spread = Some(side.spread());
    f.trials = side.medians.len();
    f.floor = None;
    let mut what = f.what.clone();
    what.push_str(&format!(" [{}]", kind.hops()));
    f.what = what;
    Ok(f)
}

fn peer_command(peer: &PeerSpec, kind: FloorKind) -> Command {
    let mut c = Command::new(&peer.exe);
    c.arg(PEER_FLAG).arg(kind.key()).stderr(Stdio::inherit());
    crate::cpu::pin_command(&mut c, &peer.cpus);
    c
}

/// Kills (if still running) and reaps the peer when the measurement ends,
/// however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The peer's side: runs in the re-executed bench binary (`--floor-peer KIND`)
/// until its input ends (or the word says stop). Nothing else happens in this
/// process.
pub fn peer_main(kind: &str) -> anyhow::Result<()> {
    // If the bench dies, so do we: never a stray peer.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    if kind == BOARD_WAITER {
        return crate::scenarios::notify::peer_board_waiter();
    }
    let kind = FloorKind::parse(kind).with_context(|| format!("unknown floor {kind:?}"))?;
    match kind {
        FloorKind::Futex => peer_futex(),
        FloorKind::Wake => peer_wake(),
        FloorKind::Relay => peer_relay(),
        FloorKind::TcpEpoll => peer_echo_epoll(),
        _ => peer_echo(),
    }
}

/// The peer kind of notify's long-lived board waiter (not a floor).
pub const BOARD_WAITER: &str = "board-waiter";

/// A command re-executing the bench binary as peer `kind`, pinned like a floor's peer.
pub fn peer_cmd(peer: &PeerSpec, kind: &str) -> Command {
    let mut c = Command::new(&peer.exe);
    c.arg(PEER_FLAG).arg(kind).stderr(Stdio::inherit());
    crate::cpu::pin_command(&mut c, &peer.cpus);
    c
}
