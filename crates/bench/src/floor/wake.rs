//! The wake floor: one `FUTEX_WAKE` of a process sleeping in `FUTEX_WAIT`,
//! timed one way.

use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::futex::{futex_wait, futex_wake, SharedPage, PAGE, STOP};
use super::{peer_command, FloorKind, Peer, PeerSpec};

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

pub(super) fn measure_wake(
    peer_spec: &PeerSpec,
    warmup: usize,
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
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
pub(super) fn peer_wake() -> anyhow::Result<()> {
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
