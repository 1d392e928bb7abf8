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

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{Figure, Unit};

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
    /// Round trip through a futex word in shared memory.
    Futex,
    /// One-way futex wake of another process.
    Wake,
    /// Caller → relay (Unix socket) → child (pipe) and back.
    Relay,
}

impl FloorKind {
    /// The floors the table shows as rows of their own, in order.
    pub const ALL: [FloorKind; 6] = [
        FloorKind::Pipe,
        FloorKind::Unix,
        FloorKind::Tcp,
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

/// Pipe, Unix socket and TCP: the peer echoes what it reads on stdin to stdout.
fn measure_echo(
    kind: FloorKind,
    peer_exe: &PeerSpec,
    warmup: usize,
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut cmd = peer_command(peer_exe, kind);
    let (mut tx, mut rx, _peer): (Box<dyn Write>, Box<dyn Read>, Peer) = match kind {
        FloorKind::Pipe => {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
            let mut child = cmd.spawn().context("starting the pipe peer")?;
            let w = child.stdin.take().context("peer stdin")?;
            let r = child.stdout.take().context("peer stdout")?;
            (Box::new(w), Box::new(r), Peer(child))
        }
        FloorKind::Unix => {
            let (mine, theirs) = UnixStream::pair().context("socketpair")?;
            let theirs: OwnedFd = theirs.into();
            cmd.stdin(Stdio::from(theirs.try_clone()?))
                .stdout(Stdio::from(theirs));
            let child = cmd.spawn().context("starting the unix-socket peer")?;
            let r = mine.try_clone()?;
            (Box::new(mine), Box::new(r), Peer(child))
        }
        FloorKind::Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
            let mine = TcpStream::connect(listener.local_addr()?).context("connecting")?;
            let (theirs, _) = listener.accept().context("accepting")?;
            mine.set_nodelay(true)?;
            theirs.set_nodelay(true)?;
            let theirs: OwnedFd = theirs.into();
            cmd.stdin(Stdio::from(theirs.try_clone()?))
                .stdout(Stdio::from(theirs));
            let child = cmd.spawn().context("starting the TCP peer")?;
            let r = mine.try_clone()?;
            (Box::new(mine), Box::new(r), Peer(child))
        }
        _ => unreachable!("the futex floors have their own loops"),
    };
    let mut samples = Vec::with_capacity(rounds);
    let mut byte = [0u8; 1];
    for i in 0..warmup + rounds {
        let t = Instant::now();
        tx.write_all(&[i as u8])?;
        rx.read_exact(&mut byte).context("the peer went away")?;
        let dt = t.elapsed();
        if i >= warmup {
            samples.push(dt.as_secs_f64() * 1e6);
        }
    }
    // Dropping `tx` closes our end: the peer reads end of input and exits.
    drop(tx);
    drop(rx);
    Ok(samples)
}

/// The futex word's value that tells the peer to exit.
const STOP: u32 = u32::MAX;

/// A shared, read-write mapping of one page of a memfd, unmapped on drop.
struct SharedPage {
    ptr: NonNull<libc::c_void>,
}

const PAGE: usize = 4096;

impl SharedPage {
    fn map(fd: impl AsFd) -> anyhow::Result<SharedPage> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let len = NonZeroUsize::new(PAGE).expect("non-zero");
        // SAFETY: we map a fresh shared mapping of a file we own (no existing
        // memory is aliased); the pointer is only used through `word`, which
        // stays inside the page, and the mapping is removed only on drop.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .context("mmap of the futex page")?;
        Ok(SharedPage { ptr })
    }

    /// The futex word at the start of the page.
    fn word(&self) -> &AtomicU32 {
        self.u32_at(0)
    }

    /// The 32-bit word at byte `off` (a multiple of 4, inside the page).
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= PAGE);
        // SAFETY: the mapping is page-aligned and `off` a multiple of 4 inside
        // it (checked above), so the word is aligned and in bounds; it lives as
        // long as `self` and is only ever accessed atomically (by us and by
        // the peer, which maps the same page).
        unsafe { &*(self.ptr.as_ptr().cast::<u8>().add(off) as *const AtomicU32) }
    }

    /// The 64-bit word at byte `off` (a multiple of 8, inside the page).
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= PAGE);
        // SAFETY: as in `u32_at`, with 8-byte alignment checked above.
        unsafe { &*(self.ptr.as_ptr().cast::<u8>().add(off) as *const AtomicU64) }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from our own successful mmap of PAGE bytes, and no
        // reference from `word` outlives `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr, PAGE) };
    }
}

/// FUTEX_WAIT on a shared (not process-private) word: sleeps while
/// `word == expected`, at most `timeout`. Spurious returns are fine: every
/// caller re-checks the word in a loop.
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a live, aligned u32 in a shared mapping; FUTEX_WAIT
    // only reads it, and `ts` outlives the call. The remaining arguments are
    // ignored by FUTEX_WAIT.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// FUTEX_WAKE: wakes one process sleeping on `word`.
fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32 in a shared mapping; FUTEX_WAKE
    // does not touch memory beyond looking the word's address up.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            1i32,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Futex: we store an odd number and wake the peer; it stores the next even
/// number and wakes us. A round trip is two futex wakes and two sleeps.
fn measure_futex(peer_exe: &PeerSpec, warmup: usize, rounds: usize) -> anyhow::Result<Vec<f64>> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(c"syncomm-bench-futex", MFdFlags::empty()).context("memfd")?;
    nix::unistd::ftruncate(&fd, PAGE as libc::off_t).context("ftruncate")?;
    let page = SharedPage::map(&fd)?;
    let word = page.word();
    word.store(0, Ordering::SeqCst);
    let mut cmd = peer_command(peer_exe, FloorKind::Futex);
    cmd.stdin(Stdio::from(fd)).stdout(Stdio::null());
    let mut peer = Peer(cmd.spawn().context("starting the futex peer")?);
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..(warmup + rounds) as u32 {
        let ask = 2 * i + 1;
        let t = Instant::now();
        word.store(ask, Ordering::SeqCst);
        futex_wake(word);
        let mut waited = Duration::ZERO;
        while word.load(Ordering::SeqCst) == ask {
            futex_wait(word, ask, Duration::from_millis(100));
            // Only on a slow path: is the peer still there?
            if t.elapsed() > waited + Duration::from_millis(100) {
                waited = t.elapsed();
                if let Some(status) = peer.0.try_wait()? {
                    bail!("the futex peer exited ({status})");
                }
                if waited > Duration::from_secs(10) {
                    bail!("the futex peer did not answer within 10 s");
                }
            }
        }
        let dt = t.elapsed();
        if i as usize >= warmup {
            samples.push(dt.as_secs_f64() * 1e6);
        }
    }
    word.store(STOP, Ordering::SeqCst);
    futex_wake(word);
    let _ = peer.0.wait();
    Ok(samples)
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

/// Echo: read from fd 0, write the same bytes to fd 1, until end of input.
fn peer_echo() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let (input, output) = (stdin.as_fd(), stdout.as_fd());
    let mut buf = [0u8; 64];
    loop {
        let n = match nix::unistd::read(input, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut off = 0;
        while off < n {
            match nix::unistd::write(output, &buf[off..n]) {
                Ok(w) => off += w,
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EPIPE) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Futex: wait for an odd number, answer with the next even one.
fn peer_futex() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let page = SharedPage::map(stdin.as_fd())?;
    let word = page.word();
    let mut last = 0u32;
    loop {
        let v = word.load(Ordering::SeqCst);
        if v == STOP {
            return Ok(());
        }
        if v == last {
            futex_wait(word, last, Duration::from_millis(500));
            continue;
        }
        last = v.wrapping_add(1);
        word.store(last, Ordering::SeqCst);
        futex_wake(word);
    }
}

// ---- wake: one-way futex wake of another process ---------------------------------------
//
// Layout of the shared page: seq (u32 at 0, the futex the peer sleeps on),
// stamp (u64 at 8, CLOCK_MONOTONIC ns taken just before FUTEX_WAKE), latency
// (u64 at 16, written by the peer), ack (u32 at 24, the futex we sleep on).

const SEQ: usize = 0;
const STAMP: usize = 8;
const LATENCY: usize = 16;
const ACK: usize = 24;

/// CLOCK_MONOTONIC in nanoseconds (the clock the consumer's figure uses too).
pub fn now_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// Is thread `pid` of process `pid` asleep (state S)?
pub fn sleeping(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('S')
        })
        .unwrap_or(false)
}

fn measure_wake(peer_spec: &PeerSpec, warmup: usize, rounds: usize) -> anyhow::Result<Vec<f64>> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let fd = memfd_create(c"syncomm-bench-wake", MFdFlags::empty()).context("memfd")?;
    nix::unistd::ftruncate(&fd, PAGE as libc::off_t).context("ftruncate")?;
    let page = SharedPage::map(&fd)?;
    let (seq, stamp, lat, ack) = (
        page.u32_at(SEQ),
        page.u64_at(STAMP),
        page.u64_at(LATENCY),
        page.u32_at(ACK),
    );
    let mut cmd = peer_command(peer_spec, FloorKind::Wake);
    cmd.stdin(Stdio::from(fd)).stdout(Stdio::null());
    let mut peer = Peer(cmd.spawn().context("starting the wake peer")?);
    let pid = peer.0.id();
    let mut samples = Vec::with_capacity(rounds);
    for i in 1..=(warmup + rounds) as u32 {
        // Let the peer fall asleep in FUTEX_WAIT (as notify's figure does).
        let t = Instant::now();
        loop {
            std::thread::sleep(Duration::from_micros(200));
            if sleeping(pid) || t.elapsed() > Duration::from_millis(50) {
                break;
            }
        }
        stamp.store(now_ns(), Ordering::SeqCst);
        seq.store(i, Ordering::SeqCst);
        futex_wake(seq);
        let t = Instant::now();
        while ack.load(Ordering::SeqCst) != i {
            futex_wait(ack, i - 1, Duration::from_millis(100));
            if t.elapsed() > Duration::from_secs(10) {
                bail!("the wake peer did not answer within 10 s");
            }
            if let Some(status) = peer.0.try_wait()? {
                bail!("the wake peer exited ({status})");
            }
        }
        if i as usize > warmup {
            samples.push(lat.load(Ordering::SeqCst) as f64 / 1e3);
        }
    }
    seq.store(STOP, Ordering::SeqCst);
    futex_wake(seq);
    let _ = peer.0.wait();
    Ok(samples)
}

/// Wake: sleep until seq changes, note how long after the stamp we run, ack.
fn peer_wake() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let page = SharedPage::map(stdin.as_fd())?;
    let (seq, stamp, lat, ack) = (
        page.u32_at(SEQ),
        page.u64_at(STAMP),
        page.u64_at(LATENCY),
        page.u32_at(ACK),
    );
    let mut last = 0u32;
    loop {
        let v = seq.load(Ordering::SeqCst);
        if v == STOP {
            return Ok(());
        }
        if v == last {
            futex_wait(seq, last, Duration::from_millis(500));
            continue;
        }
        let woke = now_ns();
        lat.store(
            woke.saturating_sub(stamp.load(Ordering::SeqCst)),
            Ordering::SeqCst,
        );
        last = v;
        ack.store(v, Ordering::SeqCst);
        futex_wake(ack);
    }
}

// ---- relay: a worker call's hops without the worker ------------------------------------

/// The environment variable telling a relay peer where to listen.
const RELAY_SOCK: &str = "SYNCOMM_BENCH_RELAY_SOCK";
/// The environment variable telling a relay peer how many callers to accept.
const RELAY_CONNS: &str = "SYNCOMM_BENCH_RELAY_CONNS";

/// A relay peer and the callers' connections to it.
pub struct Relay {
    /// One connection per caller.
    pub conns: Vec<UnixStream>,
    _peer: Peer,
    _dir: tempfile::TempDir,
}

impl Relay {
    /// Starts a relay peer accepting `conns` callers, each relayed by pipe to
    /// an echo child of its own, and connects them.
    pub fn start(peer_spec: &PeerSpec, conns: usize) -> anyhow::Result<Relay> {
        let dir = tempfile::Builder::new()
            .prefix("syncomm-relay-")
            .tempdir()?;
        let path = dir.path().join("relay.sock");
        let mut cmd = peer_command(peer_spec, FloorKind::Relay);
        cmd.env(RELAY_SOCK, &path)
            .env(RELAY_CONNS, conns.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().context("starting the relay peer")?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
            &mut line,
        )?;
        let peer = Peer(child);
        if line.trim() != "ready" {
            bail!("the relay peer said {line:?}");
        }
        let conns = (0..conns)
            .map(|_| UnixStream::connect(&path))
            .collect::<std::io::Result<Vec<_>>>()
            .context("connecting to the relay")?;
        Ok(Relay {
            conns,
            _peer: peer,
            _dir: dir,
        })
    }
}

/// Relay: accept the callers, start an echo child (`--floor-peer pipe`) per
/// caller, then forward caller → child and child → caller as bytes arrive
/// (one thread, poll(2)), until every caller has gone.
fn peer_relay() -> anyhow::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::unix::net::UnixListener;
    let path = std::env::var_os(RELAY_SOCK).context("no relay socket")?;
    let n: usize = std::env::var(RELAY_CONNS)
        .ok()
        .and_then(|v| v.parse().ok())
        .context("no relay connection count")?;
    let listener = UnixListener::bind(&path).context("binding the relay socket")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
    }
    let exe = std::env::current_exe()?;
    let mut legs = Vec::new();
    for _ in 0..n {
        let (conn, _) = listener.accept()?;
        let mut child = Command::new(&exe)
            .arg(PEER_FLAG)
            .arg(FloorKind::Pipe.key())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the relay's child")?;
        let to_child = child.stdin.take().expect("piped");
        let from_child = child.stdout.take().expect("piped");
        legs.push((conn, to_child, from_child, Peer(child)));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut closed = vec![false; n];
    while closed.iter().any(|c| !c) {
        let live: Vec<usize> = (0..n).filter(|&i| !closed[i]).collect();
        let mut fds = Vec::with_capacity(2 * live.len());
        for &i in &live {
            fds.push(PollFd::new(legs[i].0.as_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(legs[i].2.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        for (j, &i) in live.iter().enumerate() {
            let leg = &mut legs[i];
            if ready[2 * j] {
                let k = leg.0.read(&mut buf).unwrap_or(0);
                if k == 0 {
                    closed[i] = true;
                    continue;
                }
                leg.1.write_all(&buf[..k])?;
            }
            if ready[2 * j + 1] {
                let k = leg.2.read(&mut buf)?;
                if k == 0 {
                    closed[i] = true;
                } else {
                    leg.0.write_all(&buf[..k]).ok();
                }
            }
        }
    }
    Ok(())
}
