//! The raw floors: the cheapest possible round trip between two processes
//! through each kernel mechanism, measured in the same run as the figures.
//!
//! Four floors, each a one-byte ping-pong between this process and a peer
//! process that does nothing else:
//!
//! | floor | mechanism |
//! |---|---|
//! | pipe | two `pipe(2)`s: the peer reads a byte from one and writes it to the other |
//! | unix | a Unix-domain stream `socketpair(2)` |
//! | tcp | a TCP connection over loopback (`TCP_NODELAY` on both ends) |
//! | futex | a shared-memory word and `futex(2)` wait/wake, no spinning |
//!
//! The peer is the bench binary itself, re-executed in a hidden mode
//! ([`PEER_FLAG`] `KIND`): a fresh process with no threads and no state, whose
//! only job is the loop in [`peer_main`]. Its descriptors are handed over as its
//! stdin and stdout (for the futex floor, stdin is a `memfd` that both map).
//! The peer dies with its parent (`PR_SET_PDEATHSIG`) and ends at end of input.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{stats, Figure, Unit};

/// The hidden command-line flag that turns the bench binary into a floor peer.
pub const PEER_FLAG: &str = "--floor-peer";

/// One of the four floors.
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
}

impl FloorKind {
    /// All four, in the order the table shows them.
    pub const ALL: [FloorKind; 4] = [
        FloorKind::Pipe,
        FloorKind::Unix,
        FloorKind::Tcp,
        FloorKind::Futex,
    ];

    /// The short name used on the command line (`pipe`, `unix`, `tcp`, `futex`).
    pub fn key(self) -> &'static str {
        match self {
            FloorKind::Pipe => "pipe",
            FloorKind::Unix => "unix",
            FloorKind::Tcp => "tcp",
            FloorKind::Futex => "futex",
        }
    }

    /// The name shown in the table, also usable as a [`crate::Floor`] name.
    pub fn name(self) -> &'static str {
        match self {
            FloorKind::Pipe => "pipe round trip",
            FloorKind::Unix => "unix socket round trip",
            FloorKind::Tcp => "TCP loopback round trip",
            FloorKind::Futex => "futex wake round trip",
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
        (300, 5_000)
    } else {
        (2_000, 50_000)
    }
}

/// Measures one floor: `rounds` timed round trips (after `warmup` untimed ones)
/// between this process and a peer started from `peer_exe` (the bench binary).
/// Returns one sample per round trip, in microseconds.
pub fn measure(
    kind: FloorKind,
    peer_exe: &Path,
    warmup: usize,
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
    match kind {
        FloorKind::Futex => measure_futex(peer_exe, warmup, rounds),
        _ => measure_echo(kind, peer_exe, warmup, rounds),
    }
}

/// Measures `kind` and summarises it as a table row (scenario `floor`).
pub fn figure(kind: FloorKind, peer_exe: &Path, quick: bool) -> anyhow::Result<Figure> {
    let (warmup, n) = rounds(quick);
    let mut samples = measure(kind, peer_exe, warmup, n)
        .with_context(|| format!("measuring the {} floor", kind.key()))?;
    let (median, p99) = stats::summarize(&mut samples);
    Ok(Figure {
        scenario: "floor",
        what: kind.name().to_string(),
        unit: Unit::Micros,
        median,
        p99: Some(p99),
        floor: None,
        python_key: None,
        target: None,
    })
}

fn peer_command(peer_exe: &Path, kind: FloorKind) -> Command {
    let mut c = Command::new(peer_exe);
    c.arg(PEER_FLAG).arg(kind.key()).stderr(Stdio::inherit());
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
    peer_exe: &Path,
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
        FloorKind::Futex => unreachable!("the futex floor has its own loop"),
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
        // SAFETY: the mapping is page-aligned (so 4-byte aligned), at least 4
        // bytes long, lives as long as `self`, and is only ever accessed
        // atomically (by us and by the peer, which maps the same page).
        unsafe { &*(self.ptr.as_ptr() as *const AtomicU32) }
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
fn measure_futex(peer_exe: &Path, warmup: usize, rounds: usize) -> anyhow::Result<Vec<f64>> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let fd = memfd_create(c"syncomm-bench-futex", MemFdCreateFlag::empty()).context("memfd")?;
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
    let kind = FloorKind::parse(kind).with_context(|| format!("unknown floor {kind:?}"))?;
    // If the bench dies, so do we: never a stray peer.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    match kind {
        FloorKind::Futex => peer_futex(),
        _ => peer_echo(),
    }
}

/// Echo: read from fd 0, write the same bytes to fd 1, until end of input.
fn peer_echo() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let (input, output) = (stdin.as_fd(), stdout.as_fd());
    let mut buf = [0u8; 64];
    loop {
        let n = match nix::unistd::read(input.as_raw_fd(), &mut buf) {
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
