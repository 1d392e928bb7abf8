//! Benchmarks of the worker scenario, each in trials alternating with a
//! floor that has the same hops:
//!
//! - **call round trip** (`worker.call`): one `add` at a time through
//!   `worker serve` (caller → local socket → server → pipe → child and back).
//!   Floor: a relay process doing only that forwarding — caller → Unix socket
//!   → relay → pipe → echo child → pipe → relay → socket → caller — with a
//!   24-byte message, about the size of an `add` frame ([`floor::FloorKind::Relay`]).
//! - **pipelined calls/s** (`worker.pipelined`): 4 callers × 16 calls in
//!   flight (64 in all) of `add`. Floor: the same window of 24-byte messages
//!   through one relay process and an echo child per caller.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use syncomm_worker::{Client, Value};

use crate::floor::{self, FloorKind, PeerSpec, Relay};
use crate::{trials, Ctx, Figure, Target, Unit};

const CLIENTS: usize = 4;
const WINDOW: usize = 16;
/// The size of one `add` request frame, roughly; the raw floors move as much.
const MSG: usize = 24;

/// Measures the worker scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let rtt_iters = ctx.iters(4_000, 600);
    let pipelined_calls = ctx.iters(100_000, 16_000);
    let peer = PeerSpec::of(ctx);

    let pool = PoolProc::start(ctx, 2)?;
    let mut client = pool.client()?;
    for i in 0..200 {
        client.call("add", &[Value::Int(i), Value::Int(1)])?.ok();
    }
    let paired = trials::interleave(
        ctx.trials(),
        |_| floor::measure(FloorKind::Relay, &peer, rtt_iters / 10, rtt_iters),
        |_| calls(&mut client, rtt_iters),
    )?;
    let mut call = paired
        .figure(
            "worker",
            "call round trip (add, one at a time)",
            Unit::Micros,
            FloorKind::Relay.name(),
            FloorKind::Relay.hops(),
        )
        .with_id("worker.call")
        .with_python("worker_call_us");
    let r = call.pair_ratio.unwrap_or(f64::INFINITY);
    call.target = Some(Target::new("≤ 1.3 × floor", r <= 1.3));

    let paired = trials::interleave(
        ctx.trials(),
        |_| Ok(vec![relay_pipelined_rate(&peer, CLIENTS, pipelined_calls)?]),
        |_| {
            Ok(vec![pipelined_rate(
                &pool,
                CLIENTS,
                WINDOW,
                pipelined_calls,
            )?])
        },
    )?;
    let mut pipelined = paired
        .figure(
            "worker",
            format!(
                "pipelined add calls/s ({} in flight from {CLIENTS} clients, 2 workers)",
                CLIENTS * WINDOW
            ),
            Unit::PerSec,
            format!("same window through a relay, {CLIENTS} callers"),
            format!("{CLIENTS} callers →socket→ relay →pipe→ echo child per caller, and back"),
        )
        .with_id("worker.pipelined")
        .with_python("worker_calls_per_s");
    pipelined.target = Some(Target::new("≥ 300 k/s", pipelined.median >= 300_000.0));
    Ok(vec![call, pipelined])
}

/// `n` add calls one at a time: µs each.
fn calls(client: &mut Client, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n as i64 {
        let t = Instant::now();
        let r = client.call("add", &[Value::Int(i), Value::Int(1)])?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        if r != Ok(Value::Int(i + 1)) {
            bail!("add {i} 1 answered {r:?}");
        }
    }
    Ok(samples)
}

/// A `worker serve` started for the benchmark, stopped on drop.
pub(crate) struct PoolProc {
    child: std::process::Child,
    path: std::path::PathBuf,
}

impl PoolProc {
    /// Starts `worker serve --workers N` on the other side's CPUs.
    pub(crate) fn start(ctx: &Ctx, workers: usize) -> anyhow::Result<PoolProc> {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("bench-{}-{seq}", std::process::id());
        let mut child = ctx
            .cmd("worker")
            .args(["serve", "--name", &name, "--workers", &workers.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting worker serve")?;
        let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        loop {
            line.clear();
            if std::io::BufRead::read_line(&mut out, &mut line)? == 0 {
                let _ = child.kill();
                let _ = child.wait();
                bail!("worker serve ended before serving");
            }
            if line.starts_with("serving ") {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Ok(PoolProc {
            child,
            path: ctx.work_dir.join(format!("worker.{name}.sock")),
        })
    }

    /// A new connection.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect_path(&self.path)?)
    }
}

impl Drop for PoolProc {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `total` add calls from `clients` callers, `window` in flight each: calls/s.
pub(crate) fn pipelined_rate(
    pool: &PoolProc,
    clients: usize,
    window: usize,
    total: usize,
) -> anyhow::Result<f64> {
    let per = total / clients;
    let mut conns = (0..clients)
        .map(|_| pool.client())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    let handles: Vec<_> = conns
        .drain(..)
        .map(|mut c| {
            std::thread::spawn(move || -> anyhow::Result<()> {
                let (mut sent, mut got) = (0usize, 0usize);
                while got < per {
                    while sent < per && c.in_flight() < window {
                        c.send("add", &[Value::Int(sent as i64), Value::Int(1)])?;
                        sent += 1;
                    }
                    let (_, r) = c.recv()?;
                    if r.is_err() {
                        bail!("add failed: {r:?}");
                    }
                    got += 1;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    }
    Ok((per * clients) as f64 / start.elapsed().as_secs_f64())
}

/// The floor of the pipelined figure: the same number of MSG-byte messages,
/// same window, through a relay process with an echo child per caller.
fn relay_pipelined_rate(peer: &PeerSpec, clients: usize, total: usize) -> anyhow::Result<f64> {
    let relay = Relay::start(peer, clients)?;
    let per = total / clients;
    let conns: Vec<UnixStream> = relay
        .conns
        .iter()
        .map(UnixStream::try_clone)
        .collect::<std::io::Result<_>>()?;
    let start = Instant::now();
    let handles: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || -> std::io::Result<()> {
                let msg = [7u8; MSG];
                let mut buf = vec![0u8; MSG * WINDOW];
                let (mut sent, mut got_bytes) = (0usize, 0usize);
                let mut out = Vec::with_capacity(MSG * WINDOW);
                while got_bytes < per * MSG {
                    let in_flight = sent - got_bytes / MSG;
                    out.clear();
                    for _ in 0..(WINDOW - in_flight).min(per - sent) {
                        out.extend_from_slice(&msg);
                        sent += 1;
                    }
                    s.write_all(&out)?;
                    let n = s.read(&mut buf)?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    got_bytes += n;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("relay caller panicked"))??;
    }
    let rate = (per * clients) as f64 / start.elapsed().as_secs_f64();
    drop(relay);
    Ok(rate)
}
