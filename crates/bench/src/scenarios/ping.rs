//! Benchmarks of the ping scenario, each beside a raw-socket floor measured
//! in the same run:
//!
//! | figure | ours | floor |
//! |---|---|---|
//! | round trip, TCP | `ping-server` (release), one connection, one ping at a time | a blocking echo thread on a plain TCP socket |
//! | round trip, local | the same over its local socket | a blocking echo thread on a plain Unix socket |
//! | flood, 32 clients | `ping-client --flood --clients 32` against `ping-server` | the same client against a minimal thread-per-connection server |
//! | flood --reconnect | `ping-client --flood --reconnect --clients 8` | the same client against a minimal accept-answer-close loop |

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use syncomm_ping::client::{ping_once, Stream};

use crate::{stats, Ctx, Figure, Floor, Target, Unit};

/// A `ping-server` child, stopped with SIGTERM when dropped.
struct ServerProc {
    child: Child,
    port: u16,
    name: String,
}

impl ServerProc {
    fn start(ctx: &Ctx) -> anyhow::Result<ServerProc> {
        let name = format!("bench-{}", std::process::id());
        let mut child = ctx
            .cmd("ping-server")
            .args(["--tcp", "127.0.0.1:0", "--local", &name, "--quiet"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting ping-server")?;
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        out.read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok());
        let mut local = String::new();
        out.read_line(&mut local)?;
        let server = ServerProc {
            child,
            port: port.unwrap_or(0),
            name,
        };
        if server.port == 0 || !local.starts_with("listening on local socket") {
            bail!("ping-server printed {line:?} {local:?}");
        }
        Ok(server)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Round trips of `ping` on one connection, one at a time, in microseconds.
/// `want` is the answer: `pong\n` from the server, `ping\n` from an echo.
fn rtt_block(s: &mut Stream, n: usize, want: &[u8], out: &mut Vec<f64>) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        ping_once(s, b"ping\n", want, &mut buf, None, Duration::ZERO)?;
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(())
}

/// `n` round trips on each of `ours` and `floor`, taken in alternating
/// blocks so that a change in machine load weighs on both alike.
fn rtt_pair(mut ours: Stream, mut floor: Stream, n: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut scratch = Vec::new();
    rtt_block(&mut ours, n / 10, b"pong\n", &mut scratch)?; // warm-up
    rtt_block(&mut floor, n / 10, b"ping\n", &mut scratch)?;
    let block = 200.min(n);
    while a.len() < n {
        rtt_block(&mut ours, block, b"pong\n", &mut a)?;
        rtt_block(&mut floor, block, b"ping\n", &mut b)?;
    }
    Ok((a, b))
}

/// Serves one connection: echo back whatever arrives (the floor's server).
fn echo<S: Read + Write>(mut s: S) {
    let mut b = [0u8; 4096];
    while let Ok(n) = s.read(&mut b) {
        if n == 0 || s.write_all(&b[..n]).is_err() {
            return;
        }
    }
}

/// Answers every `\n` with `pong\n`: a minimal blocking ping server per connection.
fn pong_conn(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut b = [0u8; 4096];
    while let Ok(n) = s.read(&mut b) {
        if n == 0 {
            return;
        }
        let lines = b[..n].iter().filter(|&&c| c == b'\n').count();
        if s.write_all(&b"pong\n".repeat(lines)).is_err() {
            return;
        }
    }
}

/// `ping-client --flood ARGS --json` against `addr`: requests/s.
fn flood(ctx: &Ctx, addr: &str, args: &[&str], secs: &str) -> anyhow::Result<f64> {
    let out = ctx
        .cmd("ping-client")
        .args(["--tcp", addr, "--flood", "--duration", secs, "--json"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("running ping-client --flood")?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading ping-client --json")?;
    v["requests_per_s"]
        .as_f64()
        .context("no requests_per_s in the flood report")
}

fn rtt_figure(
    what: &str,
    ours: &mut [f64],
    floor: &mut [f64],
    floor_name: &str,
    key: Option<&'static str>,
) -> Figure {
    let (median, p99) = stats::summarize(ours);
    let floor_median = stats::median(floor);
    Figure {
        scenario: "ping",
        what: what.into(),
        unit: Unit::Micros,
        median,
        p99: Some(p99),
        floor: Some(Floor {
            name: floor_name.into(),
            median: floor_median,
        }),
        python_key: key,
        target: Some(Target {
            text: "≤ 1.5 × floor".into(),
            met: median <= 1.5 * floor_median,
        }),
    }
}

fn rate_figure(
    what: &str,
    ours: &mut [f64],
    floor: &mut [f64],
    floor_name: &str,
    key: Option<&'static str>,
    min: f64,
    text: &str,
) -> Figure {
    let median = stats::median(ours);
    Figure {
        scenario: "ping",
        what: what.into(),
        unit: Unit::PerSec,
        median,
        p99: None,
        floor: Some(Floor {
            name: floor_name.into(),
            median: stats::median(floor),
        }),
        python_key: key,
        target: Some(Target {
            text: text.into(),
            met: median >= min,
        }),
    }
}

/// Measures the ping scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let n = ctx.iters(20_000, 2_000);
    let runs = ctx.iters(3, 1);
    let secs = if ctx.quick { "0.7s" } else { "2s" };
    let server = ServerProc::start(ctx)?;
    let addr = format!("127.0.0.1:{}", server.port);
    let mut figures = Vec::new();

    // One ping at a time over TCP, beside a raw TCP echo.
    let raw = TcpListener::bind("127.0.0.1:0")?;
    let raw_addr = raw.local_addr()?;
    std::thread::spawn(move || {
        for s in raw.incoming().flatten() {
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || echo(s));
        }
    });
    let connect_tcp = |a: &str| -> anyhow::Result<Stream> {
        let s = TcpStream::connect(a)?;
        s.set_nodelay(true)?;
        Ok(Stream::Tcp(s))
    };
    let (mut ours, mut floor) =
        rtt_pair(connect_tcp(&addr)?, connect_tcp(&raw_addr.to_string())?, n)?;
    figures.push(rtt_figure(
        "round trip, one ping at a time, TCP",
        &mut ours,
        &mut floor,
        "blocking TCP echo round trip",
        Some("ping_rtt_us"),
    ));

    // The same over the local socket, beside a raw Unix-socket echo.
    let dir = tempfile::tempdir()?;
    let raw_path = dir.path().join("echo.sock");
    let raw = UnixListener::bind(&raw_path)?;
    std::thread::spawn(move || {
        for s in raw.incoming().flatten() {
            std::thread::spawn(move || echo(s));
        }
    });
    let sock = ctx.work_dir.join(format!("ping.{}.sock", server.name));
    let (mut ours, mut floor) = rtt_pair(
        Stream::Local(UnixStream::connect(&sock)?),
        Stream::Local(UnixStream::connect(&raw_path)?),
        n,
    )?;
    figures.push(rtt_figure(
        "round trip, one ping at a time, local socket",
        &mut ours,
        &mut floor,
        "blocking Unix-socket echo round trip",
        None,
    ));

    // Flood: 32 connections, beside the same client against a minimal
    // thread-per-connection server.
    let raw = TcpListener::bind("127.0.0.1:0")?;
    let raw_addr = raw.local_addr()?.to_string();
    std::thread::spawn(move || {
        for s in raw.incoming().flatten() {
            std::thread::spawn(move || pong_conn(s));
        }
    });
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        floor.push(flood(ctx, &raw_addr, &["--clients", "32"], secs)?);
        ours.push(flood(ctx, &addr, &["--clients", "32"], secs)?);
    }
    figures.push(rate_figure(
        "flood, 32 connections",
        &mut ours,
        &mut floor,
        "same client, thread-per-connection raw server",
        None,
        100_000.0,
        "≥ 100 K/s",
    ));

    // Flood with a new connection per ping, beside an accept-answer-close loop.
    let raw = TcpListener::bind("127.0.0.1:0")?;
    let raw_addr = raw.local_addr()?.to_string();
    std::thread::spawn(move || {
        for s in raw.incoming().flatten() {
            let mut s = s;
            let mut b = [0u8; 64];
            if let Ok(n) = s.read(&mut b) {
                if n > 0 {
                    let _ = s.write_all(b"pong\n");
                }
            }
        }
    });
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        floor.push(flood(
            ctx,
            &raw_addr,
            &["--clients", "8", "--reconnect"],
            secs,
        )?);
        ours.push(flood(ctx, &addr, &["--clients", "8", "--reconnect"], secs)?);
    }
    figures.push(rate_figure(
        "flood --reconnect, 8 clients (a connection per ping)",
        &mut ours,
        &mut floor,
        "same client, raw accept/answer/close loop",
        Some("ping_reconnect_per_s"),
        10_000.0,
        "≥ 10 K/s",
    ));
    drop(server);
    Ok(figures)
}
