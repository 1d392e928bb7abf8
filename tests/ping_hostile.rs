//! Hostile input against the real `ping-server` (issue 11 items 5 and 6):
//! every class of bad input — lines at and past the 64 KiB limit, over-long
//! lines with no end, truncated lines, garbage bytes, slowloris clients, a
//! thousand idle connections, a hundred connections flooding the input that
//! costs the most — and after each, a normal `ping-client` is answered
//! correctly and the server's peak RSS (VmHWM, from /proc) stayed bounded.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;

/// The longest request line, as `syncomm_ping::protocol::MAX_LINE`.
const MAX_LINE: usize = syncomm_ping::protocol::MAX_LINE;

/// A running server: TCP on 127.0.0.1 (port 0) and a local socket.
struct Server {
    proc: Proc,
    _out: Lines,
    addr: String,
    name: String,
}

impl Server {
    fn start(env: &Env, extra: &[&str]) -> Server {
        let name = unique_name("hostile");
        let mut c = env.cmd("ping-server");
        c.args(["--tcp", "127.0.0.1:0", "--local", &name, "--quiet"])
            .args(extra);
        let mut proc = Proc::spawn(c);
        let out = proc.stdout_lines();
        let first = out.next_line().expect("listening line");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{first}"))
            .to_owned();
        out.wait_for(|l| l.starts_with("listening on local socket"));
        Server {
            proc,
            _out: out,
            addr,
            name,
        }
    }

    fn tcp(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(HANG)).unwrap();
        s
    }

    /// Peak resident memory so far, in KiB.
    fn peak_kib(&self) -> u64 {
        status_kib(self.proc.pid(), "VmHWM:")
    }

    /// A normal `ping-client` over TCP and over the local socket is answered
    /// correctly, and the server still runs.
    fn still_serves(&mut self, env: &Env) {
        for target in [["--tcp", &self.addr], ["--local", &self.name]] {
            let mut c = env.cmd("ping-client");
            c.args(target).args(["-c", "3", "-i", "10ms", "-s", "100"]);
            let out = run(c);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
            assert!(text(&out.stdout).contains("3 received"));
        }
        assert!(self.proc.is_running());
    }
}

fn status_kib(pid: i32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("field in /proc status")
}

fn read_line(r: &mut impl BufRead) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_until(b'\n', &mut v).expect("read");
    v
}

/// Reads to end of stream; true if the server closed (EOF or reset).
fn closed(s: &mut impl Read) -> bool {
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// Bound for a server that was attacked but not flooded, in KiB.
const PEAK_LIMIT_KIB: u64 = 48 * 1024;

/// A line of exactly MAX_LINE bytes is answered in full; one byte more is
/// refused (`error: line too long`) and the connection closed; so is a
/// megabyte with no newline at all, over TCP and over the local socket.
#[test]
fn line_limit_exactly_and_past_it() {
    let env = Env::new();
    let mut server = Server::start(&env, &[]);
    let mut line = b"ping ".to_vec();
    line.resize(MAX_LINE, b'x');
    line.push(b'\n');
    let mut s = BufReader::new(server.tcp());
    s.get_mut().write_all(&line).unwrap();
    let answer = read_line(&mut s);
    assert_eq!(answer.len(), MAX_LINE + 1);
    assert!(answer.starts_with(b"pong xxx") && answer.ends_with(b"x\n"));
    // Same connection, one byte more: refused, closed.
    line.insert(5, b'y');
    s.get_mut().write_all(&line).unwrap();
    assert_eq!(read_line(&mut s), b"error: line too long\n");
    assert!(closed(&mut s));
    // A megabyte with no newline, over the local socket.
    let path = env.dir().join(format!("ping.{}.sock", server.name));
    let mut u = UnixStream::connect(&path).unwrap();
    u.set_read_timeout(Some(HANG)).unwrap();
    let _ = u.write_all(&vec![b'p'; 1 << 20]);
    let mut u = BufReader::new(u);
    assert_eq!(read_line(&mut u), b"error: line too long\n");
    assert!(closed(&mut u));
    server.still_serves(&env);
    assert!(
        server.peak_kib() < PEAK_LIMIT_KIB,
        "{} KiB",
        server.peak_kib()
    );
}

/// Truncated lines (the client stops sending mid-line: the part is answered
/// as a line, then the connection closes), resets mid-line, and garbage —
/// NULs, bytes over 0x7f, lone `\r`, empty lines — get answers or a close,
/// never a crash.
#[test]
fn truncated_lines_resets_and_garbage() {
    let env = Env::new();
    let mut server = Server::start(&env, &[]);
    // Truncated: "ping abc" and no newline, then the client's end of stream.
    let s = server.tcp();
    (&s).write_all(b"ping abc").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_line(&mut r), b"pong abc\n");
    assert!(closed(&mut r));
    // Reset mid-line.
    for _ in 0..20 {
        let s = server.tcp();
        (&s).write_all(b"ping half a li").unwrap();
        let _ = nix::sys::socket::setsockopt(
            &s,
            nix::sys::socket::sockopt::Linger,
            &libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        );
        drop(s);
    }
    // Garbage: every byte value, in lines and not.
    let mut seed = 0x2545_f491_u32;
    let mut garbage = Vec::new();
    for _ in 0..200_000 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        garbage.push((seed >> 24) as u8);
    }
    let lines = garbage.iter().filter(|&&b| b == b'\n').count();
    let s = server.tcp();
    let writer = {
        let mut w = s.try_clone().unwrap();
        let g = garbage.clone();
        std::thread::spawn(move || {
            let _ = w.write_all(&g);
            let _ = w.write_all(b"\nping done\n");
        })
    };
    let mut r = BufReader::new(s);
    let mut answered = 0;
    loop {
        let l = read_line(&mut r);
        assert!(!l.is_empty(), "closed after {answered} answers");
        if l == b"pong done\n" {
            break;
        }
        assert!(
            l == b"error: unknown request\n" || l.starts_with(b"pong"),
            "{:?}",
            String::from_utf8_lossy(&l)
        );
        answered += 1;
    }
    writer.join().unwrap();
    assert_eq!(answered, lines + 1);
    server.still_serves(&env);
    assert!(
        server.peak_kib() < PEAK_LIMIT_KIB,
        "{} KiB",
        server.peak_kib()
    );
}

/// Slowloris: a client sending whole requests one byte at a time is served;
/// one dribbling a line that never ends, one byte at a time, is dropped by
/// the idle timeout (bytes alone do not keep a connection alive); meanwhile
/// a normal client is answered at once.
#[test]
fn slowloris_one_byte_at_a_time() {
    let env = Env::new();
    let mut server = Server::start(&env, &["--idle-timeout", "500ms"]);
    let mut good = BufReader::new(server.tcp());
    let bad = server.tcp();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut dropped = false;
    let mut answers = 0;
    for i in 0.. {
        for &b in b"ping\n" {
            good.get_mut().write_all(&[b]).unwrap();
            if (&bad).write_all(b"x").is_err() {
                dropped = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(read_line(&mut good), b"pong\n", "request {i}");
        answers += 1;
        if dropped || Instant::now() > deadline {
            break;
        }
    }
    assert!(answers > 1);
    let mut r = BufReader::new(bad);
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(
        dropped || rest.ends_with(b"error: idle timeout\n"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    server.still_serves(&env);
    assert!(
        server.peak_kib() < PEAK_LIMIT_KIB,
        "{} KiB",
        server.peak_kib()
    );
}

/// Raises this process's open-file limit to the hard limit; returns it.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    getrlimit(Resource::RLIMIT_NOFILE).unwrap().0
}

/// A thousand idle connections (each having sent half a line) cost little
/// memory and hold nobody up; a normal client is answered.
#[test]
fn a_thousand_idle_connections() {
    let limit = raise_nofile();
    let n = 1000.min(limit.saturating_sub(100) as usize);
    let env = Env::new();
    let mut server = Server::start(&env, &[]);
    let idle: Vec<TcpStream> = (0..n)
        .map(|i| {
            let s = server.tcp();
            if i % 2 == 0 {
                (&s).write_all(b"ping half").unwrap();
            }
            s
        })
        .collect();
    // The last one is served: all were accepted and none holds anyone up.
    let mut last = BufReader::new(server.tcp());
    last.get_mut().write_all(b"ping\n").unwrap();
    assert_eq!(read_line(&mut last), b"pong\n");
    server.still_serves(&env);
    assert!(
        server.peak_kib() < PEAK_LIMIT_KIB,
        "{} KiB",
        server.peak_kib()
    );
    drop(idle);
}

/// Issue 11 item 6: 100 connections at once send the input that costs the
/// server most — empty lines, each answered with a 23-byte error, 23 times
/// its size — as fast as they can and never read. Each connection's
/// answers waiting to be sent are bounded, so the peak RSS stays bounded
/// (it used to grow by about 1.5 MB per connection). Prints the idle and
/// peak figures.
#[test]
fn worst_case_input_from_100_connections_stays_bounded() {
    raise_nofile();
    let env = Env::new();
    let mut server = Server::start(&env, &[]);
    let idle_kib = status_kib(server.proc.pid(), "VmRSS:");
    let conns: Vec<TcpStream> = (0..100)
        .map(|_| {
            let s = server.tcp();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let block = vec![b'\n'; 64 * 1024];
    let mut sent = vec![0usize; conns.len()];
    // Keep sending until no connection takes more (the server stopped reading).
    let mut stalled_rounds = 0;
    let start = Instant::now();
    while stalled_rounds < 20 && start.elapsed() < Duration::from_secs(15) {
        let mut progress = false;
        for (i, mut s) in conns.iter().enumerate() {
            if sent[i] >= 64 << 20 {
                continue;
            }
            if let Ok(n) = s.write(&block) {
                sent[i] += n;
                progress |= n > 0;
            }
        }
        if progress {
            stalled_rounds = 0;
        } else {
            stalled_rounds += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let peak = server.peak_kib();
    let total: usize = sent.iter().sum();
    eprintln!(
        "ping-server under 100 worst-case connections: idle RSS {idle_kib} KiB, peak RSS {peak} KiB \
         ({} MiB sent in all)",
        total >> 20
    );
    drop(conns);
    server.still_serves(&env);
    assert!(
        peak < PEAK_LIMIT_KIB,
        "peak {peak} KiB (idle {idle_kib} KiB)"
    );
}
