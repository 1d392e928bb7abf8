//! End-to-end tests of `ping-server` and `ping-client`: the real binaries,
//! real TCP and Unix-domain sockets, real faults (resets, kill -9, silence).
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use common::*;
use nix::sys::signal::Signal;

/// A running server and what it printed first.
struct Server {
    proc: Proc,
    out: Lines,
    port: u16,
}

impl Server {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    fn connect(&self) -> Conn {
        Conn::new(TcpStream::connect(self.addr()).expect("connect to server"))
    }
}

/// Starts `ping-server --tcp 127.0.0.1:0 ARGS` and reads the port it prints.
fn start(env: &Env, args: &[&str]) -> Server {
    let mut c = env.cmd("ping-server");
    c.args(["--tcp", "127.0.0.1:0"]).args(args);
    let mut proc = Proc::spawn(c);
    let out = proc.stdout_lines();
    let first = out.next_line().expect("server printed nothing");
    let port = first
        .strip_prefix("listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .expect("port");
    if args.contains(&"--local") {
        out.wait_for(|l| l.starts_with("listening on local socket"));
    }
    Server { proc, out, port }
}

fn sock_path(env: &Env, name: &str) -> PathBuf {
    env.dir().join(format!("ping.{name}.sock"))
}

/// A client connection with bounded reads.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    fn new(s: TcpStream) -> Conn {
        s.set_read_timeout(Some(HANG)).unwrap();
        Conn {
            r: BufReader::new(s),
        }
    }
    fn send(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).expect("send");
    }
    /// The next line, or "" at end of stream.
    fn line(&mut self) -> String {
        let mut v = Vec::new();
        self.r.read_until(b'\n', &mut v).expect("read answer");
        String::from_utf8_lossy(&v).into_owned()
    }
    fn ask(&mut self, req: &str) -> String {
        self.send(req.as_bytes());
        self.line()
    }
    /// Reads to end of stream; true if the server closed (EOF or reset).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.r.read_to_end(&mut rest) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn ping_client(env: &Env, args: &[&str]) -> std::process::Output {
    let mut c = env.cmd("ping-client");
    c.args(args);
    run(c)
}

/// `ping` → `pong`, `ping PAYLOAD` → `pong PAYLOAD`, an unknown line gets an
/// error and the connection stays open, many requests share one connection,
/// and each request is logged as the seed did.
#[test]
fn protocol_basics_and_request_log() {
    let env = Env::new();
    let server = start(&env, &[]);
    let mut c = server.connect();
    assert_eq!(c.ask("ping\n"), "pong\n");
    assert_eq!(c.ask("ping hello world\n"), "pong hello world\n");
    assert_eq!(c.ask("ping\r\n"), "pong\n", "CRLF (nc -C) is accepted");
    assert_eq!(c.ask("PONG\n"), "error: unknown request\n");
    assert_eq!(
        c.ask("ping\n"),
        "pong\n",
        "still open after an unknown request"
    );
    // Many requests in one write: every one answered, in order.
    let mut batch = String::new();
    for i in 0..1000 {
        batch.push_str(&format!("ping {i}\n"));
    }
    c.send(batch.as_bytes());
    for i in 0..1000 {
        assert_eq!(c.line(), format!("pong {i}\n"));
    }
    server
        .out
        .wait_for(|l| l.starts_with("Server received: ping from 127.0.0.1:"));
}

/// The local socket is created 0600 in the runtime directory and
/// `ping-client --local` gets its answers there, payload included.
#[test]
fn local_socket_serves_ping_client() {
    let env = Env::new();
    let name = unique_name("local");
    let _server = start(&env, &["--local", &name, "--quiet"]);
    let path = sock_path(&env, &name);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = ping_client(
        &env,
        &["--local", &name, "-c", "3", "-i", "10ms", "-s", "100"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("seq=3 time="), "{stdout}");
    assert!(stdout.contains("3 sent, 3 received, 0% loss, rtt min/avg/max/mdev = "));
}

/// A line over 64 KiB gets `error: line too long` and that connection is
/// closed; other connections are unaffected. A line of exactly 64 KiB is fine.
#[test]
fn too_long_line_is_refused_and_closed() {
    let env = Env::new();
    let server = start(&env, &["--quiet"]);
    let mut other = server.connect();
    let mut ok = server.connect();
    let mut max = b"ping ".to_vec();
    max.resize(64 * 1024, b'x');
    max.push(b'\n');
    ok.send(&max);
    assert_eq!(ok.line().len(), 64 * 1024 + 1);
    let mut c = server.connect();
    c.send(&vec![b'x'; 70 * 1024]);
    assert_eq!(c.line(), "error: line too long\n");
    assert!(c.closed());
    assert_eq!(other.ask("ping\n"), "pong\n");
}

/// 1,000 clients connected at the same time are all served.
#[test]
fn a_thousand_clients_at_once() {
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    if soft < hard {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
            .expect("setrlimit");
    }
    let env = Env::new();
    let server = start(&env, &["--quiet"]);
    let mut conns: Vec<Conn> = (0..1000).map(|_| server.connect()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.send(format!("ping {i}\n").as_bytes());
    }
    for (i, c) in conns.iter_mut().enumerate() {
        assert_eq!(c.line(), format!("pong {i}\n"));
    }
}

/// Past `--max-conns`, a newcomer gets `error: server busy` and is closed;
/// the connections already served keep being served.
#[test]
fn max_conns_refuses_with_busy() {
    let env = Env::new();
    let server = start(&env, &["--max-conns", "2", "--quiet"]);
    let mut a = server.connect();
    let mut b = server.connect();
    assert_eq!(a.ask("ping\n"), "pong\n");
    assert_eq!(b.ask("ping\n"), "pong\n");
    let mut c = server.connect();
    assert_eq!(c.line(), "error: server busy\n");
    assert!(c.closed());
    assert_eq!(a.ask("ping\n"), "pong\n");
    // A freed place is given to the next client.
    drop(b);
    wait_until("a place to free up", || {
        let mut d = server.connect();
        d.send(b"ping\n");
        d.line() == "pong\n"
    });
}

/// A client that sends nothing, and one that sends half a line, are dropped
/// after the idle timeout, while another client is served meanwhile.
#[test]
fn idle_clients_are_dropped_without_holding_others() {
    let env = Env::new();
    let server = start(&env, &["--idle-timeout", "2s", "--quiet", "--threads", "1"]);
    let mut silent = server.connect();
    let mut half = server.connect();
    half.send(b"pi");
    let mut busy = server.connect();
    assert_eq!(busy.ask("ping\n"), "pong\n");
    assert_eq!(silent.line(), "error: idle timeout\n");
    assert!(silent.closed());
    assert_eq!(half.line(), "error: idle timeout\n");
    assert!(half.closed());
    assert_eq!(server.connect().ask("ping\n"), "pong\n");
}

/// Garbage, binary bytes, NULs and a client that resets mid-line never
/// crash the server: it answers or drops that connection and goes on.
#[test]
fn garbage_binary_and_resets_are_survived() {
    let env = Env::new();
    let mut server = start(&env, &["--quiet"]);
    let mut c = server.connect();
    assert_eq!(c.ask("\x00\x01\x02\u{7f}\n"), "error: unknown request\n");
    c.send(&[0xff, 0xfe, 0x80, b'\n']);
    assert_eq!(c.line(), "error: unknown request\n");
    assert_eq!(c.ask("ping \u{0}\u{1}\n"), "pong \u{0}\u{1}\n");
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .map(|b| if b == b'\n' { b'x' } else { b })
        .collect();
    for _ in 0..20 {
        // Half a line, then a reset (SO_LINGER 0 makes close send RST).
        let s = TcpStream::connect(server.addr()).unwrap();
        (&s).write_all(b"ping half a li").unwrap();
        nix::sys::socket::setsockopt(
            &s,
            nix::sys::socket::sockopt::Linger,
            &libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        )
        .unwrap();
        drop(s);
        // Random bytes, then close without reading.
        let mut g = TcpStream::connect(server.addr()).unwrap();
        let _ = g.write_all(&noise[..4096]);
    }
    // 200 KB of noise without a newline: too long, answered and closed.
    let mut g = server.connect();
    let _ = g.r.get_mut().write_all(&noise);
    assert_eq!(g.line(), "error: line too long\n");
    assert!(g.closed());
    assert_eq!(c.ask("ping\n"), "pong\n");
    assert!(server.proc.is_running());
}

/// A socket file left by a server killed with SIGKILL is taken over by the next server.
#[test]
fn stale_local_socket_is_taken_over() {
    let env = Env::new();
    let name = unique_name("stale");
    let first = start(&env, &["--local", &name, "--quiet"]);
    first.proc.kill9();
    let mut first = first;
    first.proc.wait_timeout(HANG);
    let path = sock_path(&env, &name);
    assert!(path.exists(), "kill -9 leaves the socket file behind");
    let _second = start(&env, &["--local", &name, "--quiet"]);
    let mut s = UnixStream::connect(&path).expect("connect to the new server");
    s.write_all(b"ping\n").unwrap();
    let mut line = String::new();
    s.set_read_timeout(Some(HANG)).unwrap();
    BufReader::new(s).read_line(&mut line).unwrap();
    assert_eq!(line, "pong\n");
}

/// A second server on the same local name, or on the same TCP port, fails
/// with a clear message and exit 1; the first one keeps serving.
#[test]
fn live_server_is_not_displaced() {
    let env = Env::new();
    let name = unique_name("live");
    let first = start(&env, &["--local", &name, "--quiet"]);
    let mut c = env.cmd("ping-server");
    c.args(["--tcp", "127.0.0.1:0", "--local", &name]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("already running"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let mut c = env.cmd("ping-server");
    c.args(["--tcp", &first.addr()]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("address already in use"));
    assert!(sock_path(&env, &name).exists());
    assert_eq!(first.connect().ask("ping\n"), "pong\n");
    let ok = ping_client(&env, &["--local", &name, "-c", "1"]);
    assert!(ok.status.success());
}

/// SIGTERM: the server answers what was already sent, removes its local
/// socket and exits 0.
#[test]
fn sigterm_answers_in_flight_and_cleans_up() {
    let env = Env::new();
    let name = unique_name("term");
    let server = start(&env, &["--local", &name, "--threads", "1"]);
    let mut c = server.connect();
    assert_eq!(c.ask("ping\n"), "pong\n");
    c.send(b"ping last\n");
    server.proc.signal(Signal::SIGTERM);
    assert_eq!(c.line(), "pong last\n");
    assert!(c.closed());
    let mut proc = server.proc;
    let status = proc.wait_timeout(HANG);
    assert_eq!(status.code(), Some(0));
    assert!(!sock_path(&env, &name).exists(), "socket removed");
}

/// The server's resident memory in KiB.
fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// SIGTERM while clients keep sending pings and never read the answers:
/// the server answers only what had already arrived, gives up on clients
/// that do not read within its drain limit, and exits 0, with its memory
/// bounded all along (it used to read and answer without end, never exiting).
#[test]
fn sigterm_under_a_flood_of_unread_pings_still_ends() {
    let env = Env::new();
    let mut server = start(&env, &["--threads", "1", "--quiet"]);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            let sent = sent.clone();
            std::thread::spawn(move || {
                let burst = b"ping\n".repeat(16 * 1024);
                // Until the server closes the connection.
                while s.write_all(&burst).is_ok() {
                    sent.fetch_add(burst.len(), std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_until("the flooders to get going", || {
        sent.load(std::sync::atomic::Ordering::Relaxed) > 4 << 20
    });
    server.proc.signal(Signal::SIGTERM);
    let pid = server.proc.pid();
    let deadline = std::time::Instant::now() + HANG;
    while server.proc.is_running() {
        let rss = rss_kib(pid).unwrap_or(0);
        assert!(rss < 256 * 1024, "the draining server grew to {rss} KiB");
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not end while clients kept sending"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(server.proc.wait_timeout(HANG).code(), Some(0));
    for f in flooders {
        f.join().unwrap();
    }
}

/// Nothing listening: each ping is reported as refused and counted lost;
/// exit 1 with one clear error line.
#[test]
fn client_reports_connection_refused() {
    let env = Env::new();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let out = ping_client(&env, &["--tcp", &addr, "-c", "2", "-i", "10ms"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("seq=2: cannot connect: connection refused"),
        "{stdout}"
    );
    assert!(stdout.contains("2 sent, 0 received, 100% loss"), "{stdout}");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("ping-client: no reply from"), "{err}");
}

/// A server that accepts but never answers: each ping times out after -W,
/// is counted lost, and the client exits 1.
#[test]
fn client_times_out_on_silent_server() {
    let env = Env::new();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = ping_client(
        &env,
        &["--tcp", &addr, "-c", "2", "-i", "10ms", "-W", "200ms"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("seq=1: timed out after 200ms"), "{stdout}");
    assert!(stdout.contains("2 sent, 0 received, 100% loss"), "{stdout}");
}

/// A server that stops answering midway (SIGSTOP): the pings after it are
/// lost, the summary counts them, and the exit status is 1.
#[test]
fn client_counts_partial_loss() {
    let env = Env::new();
    let server = start(&env, &["--quiet"]);
    let mut c = env.cmd("ping-client");
    c.args([
        "--tcp",
        &server.addr(),
        "-c",
        "3",
        "-i",
        "1s",
        "-W",
        "300ms",
    ]);
    let mut client = Proc::spawn(c);
    let lines = client.stdout_lines();
    lines.wait_for(|l| l.contains("seq=1 time="));
    server.proc.signal(Signal::SIGSTOP);
    let rest = lines.rest();
    server.proc.signal(Signal::SIGCONT);
    let status = client.wait_timeout(HANG);
    assert_eq!(status.code(), Some(1), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("timed out")), "{rest:?}");
    assert!(rest.iter().any(|l| l.starts_with("3 sent, ")), "{rest:?}");
}

/// Flood mode prints requests/s and p50/p90/p99/max, over TCP and, with
/// --reconnect, over the local socket.
#[test]
fn flood_prints_its_figures() {
    let env = Env::new();
    let name = unique_name("flood");
    let server = start(&env, &["--local", &name, "--quiet"]);
    let out = ping_client(
        &env,
        &[
            "--tcp",
            &server.addr(),
            "--flood",
            "--clients",
            "4",
            "-c",
            "2000",
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("2000 requests in "), "{stdout}");
    assert!(stdout.contains("requests/s, 0 errors"), "{stdout}");
    assert!(stdout.contains("latency p50/p90/p99/max = "), "{stdout}");
    let out = ping_client(
        &env,
        &[
            "--local",
            &name,
            "--flood",
            "--reconnect",
            "--clients",
            "2",
            "-c",
            "200",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["event"], "flood");
    assert_eq!(v["requests"], 200);
    assert!(v["latency_p99_ms"].as_f64().unwrap() > 0.0);
}

/// Usage errors exit 2 with a message.
#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    for args in [
        &["-c", "0"][..],
        &["--bogus"],
        &["--local", "../x"],
        &["--tcp", "nowhere"],
        &["-s", "70000"],
        &["--reconnect"],
    ] {
        let out = ping_client(&env, args);
        assert_eq!(out.status.code(), Some(2), "ping-client {args:?}");
        assert!(!out.stderr.is_empty());
    }
    for args in [
        &["--max-conns", "0"][..],
        &["--local", "a/b"],
        &["--idle-timeout", "soon"],
    ] {
        let mut c = env.cmd("ping-server");
        c.args(args);
        let out = run(c);
        assert_eq!(out.status.code(), Some(2), "ping-server {args:?}");
    }
}

/// A reader of the request log that stops reading (a paused terminal, a
/// stuck pipe) does not stall the server: requests keep being answered and
/// the log lines that cannot be written are dropped and counted.
#[test]
fn a_stalled_log_reader_does_not_stall_the_server() {
    let env = Env::new();
    let mut c = env.cmd("ping-server");
    c.args(["--tcp", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut proc = Proc::spawn_raw(c);
    let mut out = BufReader::new(proc.child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port = first.trim().rsplit(':').next().unwrap().to_owned();
    // 20,000 log lines are about 900 KB: far more than a pipe holds unread.
    let mut conn = Conn::new(TcpStream::connect(format!("127.0.0.1:{port}")).unwrap());
    for _ in 0..20 {
        conn.send("ping\n".repeat(1000).as_bytes());
        for _ in 0..1000 {
            assert_eq!(conn.line(), "pong\n");
        }
    }
    // Now read the log: the gap is reported.
    proc.signal(Signal::SIGTERM);
    let mut log = String::new();
    out.read_to_string(&mut log).unwrap();
    assert!(
        log.contains("log lines dropped: output too slow"),
        "{}",
        &log[..log.len().min(300)]
    );
    assert_eq!(proc.wait_timeout(HANG).code(), Some(0));
}

/// A server restarted between two pings (SIGINT, then a new one on the same
/// local name) is picked up again: the client reconnects and loses nothing.
#[test]
fn client_rides_over_a_server_restart() {
    let env = Env::new();
    let name = unique_name("restart");
    let first = start(&env, &["--local", &name, "--quiet"]);
    let mut c = env.cmd("ping-client");
    c.args(["--local", &name, "-c", "4", "-i", "1s"]);
    let mut client = Proc::spawn(c);
    let lines = client.stdout_lines();
    lines.wait_for(|l| l.contains("seq=1 time="));
    first.proc.signal(Signal::SIGINT);
    let mut old = first.proc;
    assert_eq!(old.wait_timeout(HANG).code(), Some(0), "SIGINT exits 0");
    let _second = start(&env, &["--local", &name, "--quiet"]);
    let rest = lines.rest();
    let status = client.wait_timeout(HANG);
    assert!(rest.iter().any(|l| l.contains("seq=4 time=")), "{rest:?}");
    // Normally nothing is lost; on a badly stalled machine the restart may
    // outlast an interval, and then the lost ping must show in the status.
    let all = rest.iter().any(|l| l.starts_with("4 sent, 4 received"));
    assert_eq!(status.success(), all, "{rest:?}");
}

/// A client pinging less often than the server's idle timeout is dropped
/// between pings; it notices, reconnects, and loses no ping.
#[test]
fn client_pinging_slower_than_idle_timeout_loses_nothing() {
    let env = Env::new();
    let server = start(&env, &["--idle-timeout", "200ms", "--quiet"]);
    let out = ping_client(&env, &["--tcp", &server.addr(), "-c", "3", "-i", "700ms"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("3 sent, 3 received, 0% loss"), "{stdout}");
}

/// Out of file descriptors (the server run under `prlimit --nofile=80`, then
/// flooded with connections): it refuses or defers the excess, never spins
/// or crashes, and serves again once the flood is gone.
#[test]
fn running_out_of_descriptors_is_survived() {
    let env = Env::new();
    let Some(mut c) = under_nofile_limit(&env, 80, "ping-server") else {
        return;
    };
    c.args(["--tcp", "127.0.0.1:0", "--quiet", "--threads", "1"]);
    let mut proc = Proc::spawn(c);
    let out = proc.stdout_lines();
    let first = out.next_line().expect("server printed nothing");
    let addr = first
        .strip_prefix("listening on ")
        .expect("address")
        .to_owned();
    let mut flood: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(&addr).expect("connect (the backlog takes it)"))
        .collect();
    // The first ones are served even now.
    let mut first_conn = Conn::new(flood.remove(0));
    assert_eq!(first_conn.ask("ping\n"), "pong\n");
    drop(flood);
    wait_until("the server to serve a newcomer again", || {
        let mut c = Conn::new(TcpStream::connect(&addr).unwrap());
        c.send(b"ping\n");
        c.line() == "pong\n"
    });
    assert!(proc.is_running());
}

/// `--json`: the listening address, each request and the final tally come
/// as one JSON object per line.
#[test]
fn server_json_output() {
    let env = Env::new();
    let mut c = env.cmd("ping-server");
    c.args(["--tcp", "127.0.0.1:0", "--json", "--threads", "1"]);
    let mut proc = Proc::spawn(c);
    let out = proc.stdout_lines();
    let first: serde_json::Value = serde_json::from_str(&out.next_line().unwrap()).unwrap();
    assert_eq!(first["event"], "listening");
    assert_eq!(first["transport"], "tcp");
    let addr = first["address"].as_str().unwrap().to_owned();
    let mut conn = Conn::new(TcpStream::connect(&addr).unwrap());
    assert_eq!(conn.ask("ping abc\n"), "pong abc\n");
    let line: serde_json::Value = serde_json::from_str(&out.next_line().unwrap()).unwrap();
    assert_eq!(line["event"], "ping");
    assert_eq!(line["payload_bytes"], 3);
    assert_eq!(
        line["peer"],
        conn.r.get_ref().local_addr().unwrap().to_string()
    );
    proc.signal(Signal::SIGTERM);
    let last: serde_json::Value =
        serde_json::from_str(&out.wait_for(|l| l.contains("stopped"))).unwrap();
    assert_eq!(last["event"], "stopped");
    assert_eq!(last["requests"], 1);
    assert_eq!(proc.wait_timeout(HANG).code(), Some(0));
}
