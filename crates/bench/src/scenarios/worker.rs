//! Benchmarks of the worker scenario.
//!
//! - **call round trip**: one `add` at a time through `worker serve` (caller →
//!   local socket → server → pipe → child and back), beside its floor: one raw
//!   local-socket round trip (an echo thread) plus one raw pipe round trip
//!   (through `cat`), measured here in the same run.
//! - **pipelined calls/s**: 4 callers × 16 calls in flight (64 in all) of
//!   `add`, beside the same traffic echoed raw over 4 local sockets.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use syncomm_worker::{Client, Value};

use crate::{stats, Ctx, Figure, Floor, Target, Unit};

const CLIENTS: usize = 4;
const WINDOW: usize = 16;
/// The size of one `add` request frame, roughly; the raw floors move as much.
const MSG: usize = 24;

/// Measures the worker scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let rtt_iters = ctx.iters(20_000, 2_000);
    let pipelined_calls = ctx.iters(400_000, 40_000);

    let sock_rtt = socket_round_trips(rtt_iters)?;
    let pipe_rtt = pipe_round_trips(rtt_iters)?;
    let floor_us = stats::median(&mut sock_rtt.clone()) + stats::median(&mut pipe_rtt.clone());

    let pool = PoolProc::start(ctx, 2)?;
    let mut client = pool.client()?;
    for i in 0..200 {
        client.call("add", &[Value::Int(i), Value::Int(1)])?.ok();
    }
    let mut samples = Vec::with_capacity(rtt_iters);
    for i in 0..rtt_iters as i64 {
        let t = Instant::now();
        let r = client.call("add", &[Value::Int(i), Value::Int(1)])?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        if r != Ok(Value::Int(i + 1)) {
            bail!("add {i} 1 answered {r:?}");
        }
    }
    let (median, p99) = stats::summarize(&mut samples);
    let call = Figure {
        scenario: "worker",
        what: "call round trip (add, one at a time)".into(),
        unit: Unit::Micros,
        median,
        p99: Some(p99),
        floor: Some(Floor {
            name: "raw local-socket + pipe round trip".into(),
            median: floor_us,
        }),
        python_key: Some("worker_call_us"),
        target: Some(Target {
            text: "≤ 60 µs".into(),
            met: median <= 60.0,
        }),
    };

    let runs = if ctx.quick { 1 } else { 3 };
    let mut rates = Vec::new();
    let mut raw_rates = Vec::new();
    for _ in 0..runs {
        rates.push(pipelined_rate(&pool, pipelined_calls)?);
        raw_rates.push(raw_pipelined_rate(pipelined_calls)?);
    }
    let rate = stats::median(&mut rates);
    let pipelined = Figure {
        scenario: "worker",
        what: format!(
            "pipelined add calls/s ({} in flight from {CLIENTS} clients)",
            CLIENTS * WINDOW
        ),
        unit: Unit::PerSec,
        median: rate,
        p99: None,
        floor: Some(Floor {
            name: format!("raw echo over {CLIENTS} local sockets, same window"),
            median: stats::median(&mut raw_rates),
        }),
        python_key: Some("worker_calls_per_s"),
        target: Some(Target {
            text: "≥ 100 K/s".into(),
            met: rate >= 100_000.0,
        }),
    };
    Ok(vec![call, pipelined])
}

/// A `worker serve` started for the benchmark, stopped on drop.
struct PoolProc {
    child: std::process::Child,
    path: std::path::PathBuf,
}

impl PoolProc {
    fn start(ctx: &Ctx, workers: usize) -> anyhow::Result<PoolProc> {
        let name = format!("bench-{}", std::process::id());
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

    fn client(&self) -> anyhow::Result<Client> {
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

/// `total` add calls from CLIENTS callers, WINDOW in flight each: calls/s.
fn pipelined_rate(pool: &PoolProc, total: usize) -> anyhow::Result<f64> {
    let per = total / CLIENTS;
    let mut clients = (0..CLIENTS)
        .map(|_| pool.client())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = Instant::now();
    let handles: Vec<_> = clients
        .drain(..)
        .map(|mut c| {
            std::thread::spawn(move || -> anyhow::Result<()> {
                let (mut sent, mut got) = (0usize, 0usize);
                while got < per {
                    while sent < per && c.in_flight() < WINDOW {
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
    Ok((per * CLIENTS) as f64 / start.elapsed().as_secs_f64())
}

/// The raw floor for the pipelined figure: the same number of MSG-byte
/// messages, same window, echoed by a thread over CLIENTS socket pairs.
fn raw_pipelined_rate(total: usize) -> anyhow::Result<f64> {
    let per = total / CLIENTS;
    let mut pairs = Vec::new();
    for _ in 0..CLIENTS {
        let (a, b) = UnixStream::pair()?;
        std::thread::spawn(move || echo(b));
        pairs.push(a);
    }
    let start = Instant::now();
    let handles: Vec<_> = pairs
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
            .map_err(|_| anyhow::anyhow!("raw client panicked"))??;
    }
    Ok((per * CLIENTS) as f64 / start.elapsed().as_secs_f64())
}

fn echo(mut s: UnixStream) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// One MSG-byte message to an echo thread and back over a local socket, µs each.
fn socket_round_trips(iters: usize) -> anyhow::Result<Vec<f64>> {
    let (mut a, b) = UnixStream::pair()?;
    std::thread::spawn(move || echo(b));
    let msg = [1u8; MSG];
    let mut back = [0u8; MSG];
    let mut samples = Vec::with_capacity(iters);
    for i in 0..iters + 100 {
        let t = Instant::now();
        a.write_all(&msg)?;
        a.read_exact(&mut back)?;
        if i >= 100 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(samples)
}

/// One MSG-byte message through `cat` (its stdin pipe, its stdout pipe), µs each.
fn pipe_round_trips(iters: usize) -> anyhow::Result<Vec<f64>> {
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cat")?;
    let mut input = cat.stdin.take().expect("piped");
    let mut output = cat.stdout.take().expect("piped");
    let msg = [2u8; MSG];
    let mut back = [0u8; MSG];
    let mut samples = Vec::with_capacity(iters);
    for i in 0..iters + 100 {
        let t = Instant::now();
        input.write_all(&msg)?;
        output.read_exact(&mut back)?;
        if i >= 100 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(input);
    let _ = cat.wait();
    Ok(samples)
}
