//! ping: `ping-server` on loopback TCP and a Unix socket; raw pingers,
//! `ping-client`s, garbage and slow clients.
//!
//! Promises checked:
//! - every answer matches its request: `ping P` is answered `pong P` (our
//!   own pinger checks each line), over TCP and the local socket;
//! - `ping-client`'s count is honest: one line per ping, seq 1..=N each once,
//!   `sent` = N, `received` = the replies it printed, exit 0 exactly when
//!   none was lost;
//! - garbage (random bytes, NULs, an over-long line, unknown requests, a
//!   reset mid-line) and slow or idle clients never take the server down;
//!   an over-long line gets `error: line too long`, an unknown one
//!   `error: unknown request`;
//! - the server dies only when we kill it; on SIGTERM/SIGINT it exits 0
//!   within a bound and removes its local socket.
//!
//! Faults: kill -9 and SIGSTOP/SIGCONT of the server, SIGTERM/SIGINT/SIGHUP,
//! garbage and slow clients, the server restarted under RLIMIT_NOFILE=32.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value as J;

use super::{unique, HANG_BOUND};
use crate::ctx::{Ctx, Fault};
use crate::os::{self, Proc};
use crate::rng::Rng;

/// The answer past `--max-conns`, documented, before the server closes.
const BUSY: &str = "error: server busy";

struct Server {
    p: Proc,
    addr: Option<SocketAddr>,
    ended_by_us: bool,
    nofile: bool,
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn open(addr: Option<SocketAddr>, sock: &Path, tcp: bool) -> Option<Conn> {
        let t = Some(Duration::from_secs(2));
        if tcp {
            let s = TcpStream::connect_timeout(&addr?, Duration::from_secs(2)).ok()?;
            s.set_read_timeout(t).ok()?;
            s.set_write_timeout(t).ok()?;
            Some(Conn::Tcp(s))
        } else {
            let s = UnixStream::connect(sock).ok()?;
            s.set_read_timeout(t).ok()?;
            s.set_write_timeout(t).ok()?;
            Some(Conn::Unix(s))
        }
    }
    fn stream(&self) -> Box<dyn ReadWrite> {
        match self {
            Conn::Tcp(s) => Box::new(s.try_clone().expect("clone")),
            Conn::Unix(s) => Box::new(s.try_clone().expect("clone")),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Runs the scenario.
pub fn run(ctx: &mut Ctx) {
    let name = unique("ping");
    let sock = ctx.rundir().join(format!("ping.{name}.sock"));
    let mut server: Option<Server> = None;
    let mut clients: Vec<(Proc, u64)> = Vec::new();
    let mut slow: Vec<JoinHandle<Option<String>>> = Vec::new();
    let mut next_fault = Instant::now() + ctx.rng.ms(500, 1500);
    let mut restart_at = Instant::now();

    while ctx.running() {
        if server.as_mut().is_some_and(|s| s.p.poll().is_some()) {
            let mut s = server.take().unwrap();
            ended(ctx, &mut s, &sock);
            restart_at = Instant::now() + ctx.rng.ms(0, 500);
        }
        if server.is_none() && Instant::now() >= restart_at {
            server = start_server(ctx, &name, true);
        }
        if let Some(s) = server.as_mut() {
            if s.addr.is_none() {
                s.addr = s.p.stdout().lines().find_map(|l| {
                    l.strip_prefix("listening on ")
                        .and_then(|a| a.trim().parse().ok())
                });
            }
            let stalled = ctx.stalled(s.p.pid());
            if s.addr.is_some() && ctx.rng.chance(0.3) {
                let addr = s.addr;
                raw_pings(ctx, addr, &sock, stalled);
            }
        }
        clients.retain_mut(|(c, n)| !finish_client(ctx, c, *n));
        if clients.len() < 2 && ctx.rng.chance(0.1) {
            if let Some(addr) = server.as_ref().and_then(|s| s.addr) {
                if let Some(c) = start_client(ctx, addr, &name) {
                    clients.push(c);
                }
            }
        }
        slow.retain(|h| !h.is_finished());
        if Instant::now() >= next_fault {
            next_fault = Instant::now() + ctx.rng.ms(300, 1200);
            if let Some(s) = server.as_mut() {
                inject(ctx, s, &sock, &mut slow);
            }
        }
        ctx.tick(15);
    }

    ctx.cont_all();
    for (mut c, n) in clients.drain(..) {
        let _ = c.wait_for(HANG_BOUND);
        finish_client(ctx, &mut c, n);
    }
    for h in slow.drain(..) {
        if let Ok(Some(v)) = h.join() {
            ctx.violation(v);
        }
    }
    // End with a live server (a fresh one takes over the socket a killed one
    // left), then SIGTERM it: exit 0, socket removed.
    let mut s = match server.take() {
        Some(s) if s.p.status_known_running() => s,
        Some(mut s) => {
            ended(ctx, &mut s, &sock);
            match start_server(ctx, &name, false) {
                Some(s) => s,
                None => return,
            }
        }
        None => match start_server(ctx, &name, false) {
            Some(s) => s,
            None => return,
        },
    };
    let end = Instant::now() + HANG_BOUND;
    while !s.p.stdout().contains("local socket") && s.p.poll().is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    s.p.signal(Signal::SIGTERM);
    s.ended_by_us = true;
    let st = s.p.wait_for(HANG_BOUND);
    ctx.check(st.is_some(), || {
        format!("ping-server still running {HANG_BOUND:?} after SIGTERM")
    });
    ended(ctx, &mut s, &sock);
}

/// Starts `ping-server`. `faulty`: a restart of the scenario, with a short
/// idle timeout and sometimes a low descriptor limit; otherwise the
/// fault-free server of the end.
fn start_server(ctx: &mut Ctx, name: &str, faulty: bool) -> Option<Server> {
    let mut c = ctx.cmd("ping-server");
    c.args(["--tcp", "127.0.0.1:0", "--local", name, "--quiet"]);
    if faulty {
        c.args(["--idle-timeout", "3s"]);
        ctx.fault(Fault::Restart);
    }
    let nofile = faulty && ctx.rng.chance(0.1);
    if nofile {
        ctx.fault(Fault::Nofile);
    }
    let tag = if faulty {
        "ping-server"
    } else {
        "ping-server-last"
    };
    let p = ctx.spawn(c, tag, nofile.then_some(32))?;
    Some(Server {
        p,
        addr: None,
        ended_by_us: false,
        nofile,
    })
}

fn ended(ctx: &mut Ctx, s: &mut Server, sock: &Path) {
    ctx.check_no_crash(&mut s.p);
    let Some(st) = s.p.poll() else { return };
    let err = s.p.stderr();
    let clear_refusal = s.nofile && st.code() == Some(1) && err.lines().count() == 1;
    if !s.ended_by_us && !clear_refusal {
        ctx.violation(format!(
            "ping-server died on its own: {}; stderr: {}",
            os::describe(st),
            err.lines().last().unwrap_or("").trim()
        ));
    }
    if st.success() {
        ctx.check(!sock.exists(), || {
            "ping-server exited 0 but left its local socket".to_owned()
        });
    }
}

/// A few pings on one connection; every answer must match its request.
fn raw_pings(ctx: &mut Ctx, addr: Option<SocketAddr>, sock: &Path, stalled: bool) {
    let tcp = ctx.rng.chance(0.5);
    let Some(conn) = Conn::open(addr, sock, tcp) else {
        return;
    };
    let mut w = conn.stream();
    let mut r = BufReader::new(conn.stream());
    let n = ctx.rng.range(1, 5);
    for _ in 0..n {
        let len = ctx.rng.range(0, 64) as usize;
        let payload = ctx.rng.word(len);
        let (req, want) = if payload.is_empty() {
            ("ping\n".to_owned(), "pong".to_owned())
        } else {
            (format!("ping {payload}\n"), format!("pong {payload}"))
        };
        if w.write_all(req.as_bytes()).is_err() {
            return;
        }
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return, // lost (server killed, stopped, restarting)
            Ok(_) => {}
        }
        let got = line.trim_end_matches(['\n', '\r']);
        if got == BUSY {
            // Past --max-conns (low under a descriptor limit): a documented
            // refusal, and the server closes the connection.
            ctx.tally.checks += 1;
            return;
        }
        ctx.op();
        ctx.check(got == want, || {
            format!(
                "over {}: sent {:?}, answered {got:?}{}",
                if tcp { "TCP" } else { "the local socket" },
                req.trim_end(),
                if stalled { " (server was stopped)" } else { "" }
            )
        });
    }
}

fn start_client(ctx: &mut Ctx, addr: SocketAddr, name: &str) -> Option<(Proc, u64)> {
    let n = ctx.rng.range(3, 10);
    let mut c = ctx.cmd("ping-client");
    if ctx.rng.chance(0.5) {
        c.args(["--tcp", &addr.to_string()]);
    } else {
        c.args(["--local", name]);
    }
    c.args([
        "-c",
        &n.to_string(),
        "-i",
        "50ms",
        "-W",
        "1s",
        "-s",
        "16",
        "--json",
    ]);
    Some((ctx.spawn(c, "ping-client", None)?, n))
}

/// Checks a finished `ping-client -c N --json`: its count is honest.
fn finish_client(ctx: &mut Ctx, c: &mut Proc, n: u64) -> bool {
    let Some(st) = c.poll() else {
        if c.started.elapsed() > Duration::from_secs(n * 2) + HANG_BOUND {
            ctx.violation(format!("ping-client -c {n} -W 1s hung"));
            c.kill_now();
            return true;
        }
        return false;
    };
    ctx.check_no_crash(c);
    let out = c.stdout();
    let lines: Vec<J> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let per_ping: Vec<&J> = lines.iter().filter(|j| j.get("seq").is_some()).collect();
    let summary = lines.iter().find(|j| j.get("sent").is_some());
    let seqs: Vec<u64> = per_ping.iter().filter_map(|j| j["seq"].as_u64()).collect();
    let replies = per_ping
        .iter()
        .filter(|j| j.get("rtt_ms").is_some())
        .count() as u64;
    ctx.op();
    let Some(sum) = summary else {
        ctx.violation(format!(
            "ping-client -c {n} ({}) printed no summary: {out:?}",
            os::describe(st)
        ));
        return true;
    };
    let sent = sum["sent"].as_u64().unwrap_or(u64::MAX);
    let received = sum["received"].as_u64().unwrap_or(u64::MAX);
    ctx.check(seqs == (1..=n).collect::<Vec<_>>() && sent == n, || {
        format!("ping-client -c {n}: seqs {seqs:?}, sent {sent}")
    });
    ctx.check(received == replies, || {
        format!("ping-client -c {n}: says {received} received, printed {replies} replies")
    });
    ctx.check(st.success() == (received == sent), || {
        format!(
            "ping-client: {} with {received} of {sent} received",
            os::describe(st)
        )
    });
    ctx.tally.ops += received;
    true
}

fn inject(ctx: &mut Ctx, s: &mut Server, sock: &Path, slow: &mut Vec<JoinHandle<Option<String>>>) {
    match ctx.rng.below(10) {
        0 => {
            s.p.signal(Signal::SIGKILL);
            s.ended_by_us = true;
            ctx.fault(Fault::Kill9);
        }
        1 => {
            let sig = ctx.polite_signal();
            s.p.signal(sig);
            s.ended_by_us = true;
        }
        2 => {
            let pid = s.p.pid();
            if !ctx.stalled(pid) {
                let d = ctx.rng.ms(100, 2000);
                ctx.stall(pid, d);
            }
        }
        3..=6 => {
            ctx.fault(Fault::Garbage);
            garbage(ctx, s, sock);
        }
        _ => {
            ctx.fault(Fault::Slow);
            let (addr, sock, seed) = (s.addr, sock.to_owned(), ctx.rng.next_u64());
            slow.push(std::thread::spawn(move || slow_client(addr, &sock, seed)));
        }
    }
}

/// Sends one hostile input; checks the answer where one is promised, and
/// that the server is still there afterwards.
fn garbage(ctx: &mut Ctx, s: &mut Server, sock: &Path) {
    let tcp = ctx.rng.chance(0.5);
    let Some(conn) = Conn::open(s.addr, sock, tcp) else {
        return;
    };
    let stalled = ctx.stalled(s.p.pid());
    let mut w = conn.stream();
    let r = &mut ctx.rng;
    let (label, bytes, want): (&str, Vec<u8>, Option<&str>) = match r.below(6) {
        0 => ("random bytes", r.some_bytes(1, 500), None),
        1 => (
            "NULs and a newline",
            {
                let mut v = vec![0u8; r.range(1, 100) as usize];
                v.push(b'\n');
                v
            },
            Some("error: unknown request"),
        ),
        2 => (
            "a 70 KiB line",
            vec![b'x'; 70 * 1024],
            Some("error: line too long"),
        ),
        3 => (
            "an unknown request",
            b"PING\n".to_vec(),
            Some("error: unknown request"),
        ),
        4 => ("half a line, then a reset", b"ping abc".to_vec(), None),
        _ => ("a CRLF ping", b"ping x\r\n".to_vec(), Some("pong x")),
    };
    let wrote = w.write_all(&bytes).is_ok();
    if label.contains("reset") {
        if let Conn::Tcp(t) = &conn {
            let _ = nix::sys::socket::setsockopt(
                t,
                nix::sys::socket::sockopt::Linger,
                &libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                },
            );
        }
        drop(conn);
        drop(w);
    } else if let (Some(want), true, false) = (want, wrote, stalled) {
        let mut line = String::new();
        let got = BufReader::new(conn.stream()).read_line(&mut line);
        if got.is_ok_and(|n| n > 0) && line.trim_end() != BUSY {
            ctx.check(line.trim_end() == want, || {
                format!(
                    "garbage ({label}) answered {:?}, expected {want:?}",
                    line.trim_end()
                )
            });
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    if let Some(st) = s.p.poll() {
        if !s.ended_by_us {
            ctx.violation(format!(
                "ping-server died ({}) after garbage ({label}, {} bytes, starting {:02x?})",
                os::describe(st),
                bytes.len(),
                &bytes[..bytes.len().min(16)]
            ));
            s.ended_by_us = true;
        }
    }
}

/// A client that trickles a ping one byte at a time (answered, or dropped as
/// idle), or connects and says nothing (dropped after the idle timeout).
/// Returns a violation if the answer, when one comes, is wrong.
fn slow_client(addr: Option<SocketAddr>, sock: &Path, seed: u64) -> Option<String> {
    let mut r = Rng::new(seed);
    let conn = Conn::open(addr, sock, r.chance(0.5))?;
    let mut w = conn.stream();
    let trickle = r.chance(0.6);
    if trickle {
        for b in b"ping slow\n" {
            if w.write_all(&[*b]).is_err() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(r.range(50, 300)));
        }
    }
    let mut rd = conn.stream();
    let mut buf = Vec::new();
    let end = Instant::now() + Duration::from_secs(6);
    let mut chunk = [0u8; 256];
    while Instant::now() < end && !buf.contains(&b'\n') {
        match rd.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or("");
    let ok = line.is_empty()
        || line == BUSY
        || line == "error: idle timeout"
        || (trickle && line == "pong slow");
    (!ok).then(|| {
        format!(
            "a slow client ({}) was answered {line:?}",
            if trickle {
                "trickling 'ping slow'"
            } else {
                "idle"
            }
        )
    })
}
