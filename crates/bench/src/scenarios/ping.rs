//! Benchmarks of the ping scenario, each in trials alternating with a
//! raw-socket floor:
//!
//! | figure | ours | floor |
//! |---|---|---|
//! | round trip, TCP (`ping.rtt_tcp`) | `ping-server` (release), one connection, one ping at a time | a 1-byte TCP echo by a peer process ([`FloorKind::Tcp`]) |
//! | round trip, local (`ping.rtt_local`) | the same over its local socket | a 1-byte Unix-socket echo by a peer process ([`FloorKind::Unix`]) |
//! | flood, 32 clients (`ping.flood`) | `ping-client --flood --clients 32` against `ping-server` | the same client against a minimal thread-per-connection server |
//! | flood --reconnect (`ping.reconnect`) | `ping-client --flood --reconnect --clients 8` | the same client against a minimal accept-answer-close loop |
//!
//! The floors' servers are threads of this process pinned to the other
//! side's CPUs; the flood client runs on the measuring side.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use syncomm_ping::client::{ping_once, Stream};

use crate::floor::{self, FloorKind, PeerSpec};
use crate::{trials, Ctx, Figure, Target, Unit};

/// A `ping-server` child, stopped with SIGTERM when dropped.
pub(crate) struct ServerProc {
    child: Child,
    /// Its TCP port on 127.0.0.1.
    pub(crate) port: u16,
    name: String,
}

impl ServerProc {
    /// Starts `ping-server` on the other side's CPUs.
    pub(crate) fn start(ctx: &Ctx) -> anyhow::Result<ServerProc> {
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
pub(crate) fn flood(ctx: &Ctx, addr: &str, args: &[&str], secs: &str) -> anyhow::Result<f64> {
    flood_json(ctx, addr, args, secs)?["requests_per_s"]
        .as_f64()
        .context("no requests_per_s in the flood report")
}

/// `ping-client --flood ARGS --json` against `addr`, on the measuring side: its report.
pub(crate) fn flood_json(
    ctx: &Ctx,
    addr: &str,
    args: &[&str],
    secs: &str,
) -> anyhow::Result<serde_json::Value> {
    let out = ctx
        .main_cmd("ping-client")
        .args(["--tcp", addr, "--flood", "--duration", secs, "--json"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("running ping-client --flood")?;
    // The `flood` line (an `error` line may follow it when nothing was answered).
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "flood")
        .with_context(|| {
            format!(
                "reading ping-client --json ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            )
        })
}

/// Measures the ping scenario's figures.
pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let n = ctx.iters(5_000, 1_000);
    let secs = if ctx.quick { "0.5s" } else { "1.5s" };
    let server = ServerProc::start(ctx)?;
    let addr = format!("127.0.0.1:{}", server.port);
    let peer = PeerSpec::of(ctx);
    let mut figures = Vec::new();

    // One ping at a time over TCP, beside a raw TCP echo process.
    let s = TcpStream::connect(&addr)?;
    s.set_nodelay(true)?;
    let mut ours = Stream::Tcp(s);
    let mut scratch = Vec::new();
    rtt_block(&mut ours, n / 10, b"pong\n", &mut scratch)?;
    let paired = trials::interleave(
        ctx.trials(),
        |_| floor::measure(FloorKind::Tcp, &peer, n / 10, n),
        |_| {
            let mut v = Vec::with_capacity(n);
            rtt_block(&mut ours, n, b"pong\n", &mut v)?;
            Ok(v)
        },
    )?;
    figures.push(rtt_target(
        paired
            .figure(
                "ping",
                "round trip, one ping at a time, TCP",
                Unit::Micros,
                FloorKind::Tcp.name(),
                FloorKind::Tcp.hops(),
            )
            .with_id("ping.rtt_tcp")
            .with_python("ping_rtt_us"),
    ));

    // The same over the local socket, beside a raw Unix-socket echo process.
    let sock = ctx.work_dir.join(format!("ping.{}.sock", server.name));
    let mut ours = Stream::Local(UnixStream::connect(&sock)?);
    rtt_block(&mut ours, n / 10, b"pong\n", &mut scratch)?;
    let paired = trials::interleave(
        ctx.trials(),
        |_| floor::measure(FloorKind::Unix, &peer, n / 10, n),
        |_| {
            let mut v = Vec::with_capacity(n);
            rtt_block(&mut ours, n, b"pong\n", &mut v)?;
            Ok(v)
        },
    )?;
    figures.push(rtt_target(
        paired
            .figure(
                "ping",
                "round trip, one ping at a time, local socket",
                Unit::Micros,
                FloorKind::Unix.name(),
                FloorKind::Unix.hops(),
            )
            .with_id("ping.rtt_local"),
    ));

    // Flood: 32 connections, beside the same client against a minimal
    // thread-per-connection server (threads on the other side's CPUs).
    let raw = TcpListener::bind("127.0.0.1:0")?;
    let raw_addr = raw.local_addr()?.to_string();
    let c = ctx.clone();
    std::thread::spawn(move || {
        c.pin_peer_thread();
        for s in raw.incoming().flatten() {
            std::thread::spawn(move || pong_conn(s));
        }
    });
    let paired = trials::interleave(
        ctx.trials(),
        |_| Ok(vec![flood(ctx, &raw_addr, &["--clients", "32"], secs)?]),
        |_| Ok(vec![flood(ctx, &addr, &["--clients", "32"], secs)?]),
    )?;
    let mut f = paired
        .figure(
            "ping",
            "flood, 32 connections",
            Unit::PerSec,
            "same client, thread-per-connection raw server",
            "32 client connections →TCP→ 1 server process, a thread each",
        )
        .with_id("ping.flood");
    f.target = Some(Target::new("≥ 100 K/s", f.median >= 100_000.0));
    figures.push(f);

    // Flood with a new connection per ping, beside an accept-answer-close loop.
    let raw = TcpListener::bind("127.0.0.1:0")?;
    let raw_addr = raw.local_addr()?.to_string();
    let c = ctx.clone();
    std::thread::spawn(move || {
        c.pin_peer_thread();
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
    let args = ["--clients", "8", "--reconnect"];
    let paired = trials::interleave(
        ctx.trials(),
        |_| Ok(vec![flood(ctx, &raw_addr, &args, secs)?]),
        |_| Ok(vec![flood(ctx, &addr, &args, secs)?]),
    )?;
    let mut f = paired
        .figure(
            "ping",
            "flood --reconnect, 8 clients (a connection per ping)",
            Unit::PerSec,
            "same client, raw accept/answer/close loop",
            "8 clients, a TCP connection per ping →TCP→ 1 server thread",
        )
        .with_id("ping.reconnect")
        .with_python("ping_reconnect_per_s");
    f.target = Some(Target::new("≥ 10 K/s", f.median >= 10_000.0));
    figures.push(f);
    drop(server);
    Ok(figures)
}

fn rtt_target(mut f: Figure) -> Figure {
    let r = f.pair_ratio.unwrap_or(f64::INFINITY);
    f.target = Some(Target::new("≤ 1.1 × floor", r <= 1.1));
    f
}
