//! Two servers started at once on a stale socket (issue 12 item 12): exactly
//! one wins and serves, the other exits 1 with one line. Both used to probe
//! the stale file, both remove it and both bind, the first one then
//! listening on an unlinked socket forever (2 in 250 ping-server rounds, 2
//! in 130 worker serve rounds). Pairs of the real `ping-server` and `worker
//! serve` are raced on a stale socket file, a few hundred rounds in all.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// Leaves a stale socket file at `path`: bound but never listening, then
/// closed. (Not `UnixListener::bind`, which listens: a process another test
/// thread forks at that moment inherits the listener until it execs, and a
/// server probing the file then finds it alive — both racers refused.)
fn plant_stale(path: &Path) {
    use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    let addr = UnixAddr::new(path).expect("socket path");
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).expect("bind the stale socket");
    drop(fd);
    assert!(path.exists());
}

/// Starts both commands at once; returns, for each, whether it came up
/// (printed a line starting with `up`) and the process.
fn race(a: Command, b: Command, up: &str) -> Vec<(bool, Proc, String)> {
    let mut procs: Vec<(Proc, Lines, Lines)> = [a, b]
        .into_iter()
        .map(|mut c| {
            c.stdin(Stdio::null());
            let mut p = Proc::spawn(c);
            let out = p.stdout_lines();
            let err = p.stderr_lines();
            (p, out, err)
        })
        .collect();
    procs
        .drain(..)
        .map(|(p, out, err)| {
            let mut came_up = false;
            while let Some(line) = out.next_line() {
                if line.starts_with(up) {
                    came_up = true;
                    break;
                }
            }
            let mut errors = String::new();
            if !came_up {
                for l in err.rest() {
                    errors.push_str(&l);
                    errors.push('\n');
                }
            }
            (came_up, p, errors)
        })
        .collect()
}

/// Checks one raced pair: exactly one came up, the other exited 1 with one
/// line saying a server is already there; returns the survivor.
fn one_winner(mut results: Vec<(bool, Proc, String)>, round: usize, already: &str) -> Proc {
    let winners = results.iter().filter(|r| r.0).count();
    assert_eq!(
        winners,
        1,
        "round {round}: {winners} servers came up: {:?}",
        results.iter().map(|r| &r.2).collect::<Vec<_>>()
    );
    let loser = results.iter().position(|r| !r.0).unwrap();
    let (_, mut lp, errors) = results.remove(loser);
    assert_eq!(lp.wait_timeout(HANG).code(), Some(1), "round {round}");
    assert_eq!(errors.lines().count(), 1, "round {round}: {errors}");
    assert!(errors.contains(already), "round {round}: {errors}");
    results.pop().unwrap().1
}

/// Runs `rounds` rounds on each of `threads` threads.
fn in_parallel(threads: usize, rounds: usize, f: impl Fn(usize) + Sync) {
    std::thread::scope(|s| {
        for t in 0..threads {
            let f = &f;
            s.spawn(move || {
                for r in 0..rounds {
                    f(t * rounds + r);
                }
            });
        }
    });
}

/// 600 rounds of two `ping-server --local NAME` started at once on a stale
/// socket: one serves (and answers a ping), the other exits 1 with
/// "already running".
#[test]
fn two_ping_servers_on_a_stale_socket_one_wins() {
    let env = Env::new();
    in_parallel(4, 150, |round| {
        let name = unique_name("race");
        let path = env.dir().join(format!("ping.{name}.sock"));
        plant_stale(&path);
        let cmd = || {
            let mut c = env.cmd("ping-server");
            c.args(["--no-tcp", "--local", &name, "--threads", "1", "--quiet"]);
            c
        };
        let results = race(cmd(), cmd(), "listening on local socket");
        let mut winner = one_winner(results, round, "already running");
        let mut s = UnixStream::connect(&path).expect("connect to the survivor");
        s.set_read_timeout(Some(HANG)).unwrap();
        s.write_all(b"ping\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert_eq!(line, "pong\n", "round {round}");
        winner.signal(Signal::SIGTERM);
        assert_eq!(winner.wait_timeout(HANG).code(), Some(0));
        assert!(!path.exists(), "round {round}: the socket is removed");
    });
    let left: Vec<_> = std::fs::read_dir(env.dir()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// 300 rounds of two `worker serve --name NAME` started at once on a stale
/// socket: one serves (and answers a call), the other exits 1 with
/// "already serving".
#[test]
fn two_worker_servers_on_a_stale_socket_one_wins() {
    let env = Env::new();
    in_parallel(4, 75, |round| {
        let name = unique_name("race");
        let path = env.dir().join(format!("worker.{name}.sock"));
        plant_stale(&path);
        let cmd = || {
            let mut c = env.cmd("worker");
            c.args(["serve", "--name", &name, "--workers", "1"]);
            c
        };
        let results = race(cmd(), cmd(), "serving ");
        let mut winner = one_winner(results, round, "already serving");
        let mut client = syncomm_worker::Client::connect_path(&path).expect("connect");
        client.set_timeout(Some(Duration::from_secs(20))).unwrap();
        let r = client
            .call(
                "add",
                &[syncomm_worker::Value::Int(2), syncomm_worker::Value::Int(3)],
            )
            .expect("call answered");
        assert_eq!(
            r.expect("add"),
            syncomm_worker::Value::Int(5),
            "round {round}"
        );
        drop(client);
        winner.signal(Signal::SIGTERM);
        assert_eq!(winner.wait_timeout(HANG).code(), Some(0));
        assert!(!path.exists(), "round {round}: the socket is removed");
    });
    let left: Vec<_> = std::fs::read_dir(env.dir()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Issue 12 item 16 for the server sockets: a stale socket file (or a lock
/// file) owned by another user is refused with one line, even as root, and
/// left in place; it used to be removed and replaced. (Needs root to plant
/// another user's file; skipped otherwise.)
#[test]
fn another_users_socket_or_lock_is_refused_even_as_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot plant another user's file; skipped");
        return;
    }
    let nobody = Some(nix::unistd::Uid::from_raw(65534));
    let env = Env::new();
    for (kind, lock) in [
        ("ping", false),
        ("ping", true),
        ("worker", false),
        ("worker", true),
    ] {
        let name = unique_name("foreign");
        let path = env.dir().join(format!("{kind}.{name}.sock"));
        plant_stale(&path);
        let planted = if lock {
            let mut l = path.as_os_str().to_owned();
            l.push(".lock");
            let l = std::path::PathBuf::from(l);
            std::fs::write(&l, b"").unwrap();
            l
        } else {
            path.clone()
        };
        nix::unistd::chown(&planted, nobody, None).unwrap();
        let mut c = env.cmd(if kind == "ping" {
            "ping-server"
        } else {
            "worker"
        });
        if kind == "ping" {
            c.args(["--no-tcp", "--local", &name, "--quiet"]);
        } else {
            c.args(["serve", "--name", &name, "--workers", "1"]);
        }
        let out = run(c);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{kind} lock={lock}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("belongs to uid 65534"), "{err}");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::symlink_metadata(&path).unwrap().uid(),
            if lock { 0 } else { 65534 }
        );
        assert_eq!(std::fs::symlink_metadata(&planted).unwrap().uid(), 65534);
    }
}

/// Issue 13 item 1: a `worker serve` that shuts down removes its socket file
/// only while it is still its own. Here a successor took the path over
/// (removed the file and bound its own); the old server's shutdown used to
/// remove the successor's socket unconditionally.
#[test]
fn a_worker_leaving_keeps_a_successors_socket() {
    let env = Env::new();
    let name = unique_name("succ");
    let path = env.dir().join(format!("worker.{name}.sock"));
    let mut c = env.cmd("worker");
    c.args(["serve", "--name", &name, "--workers", "1"])
        .stdin(Stdio::null());
    let mut server = Proc::spawn(c);
    let out = server.stdout_lines();
    let mut up = false;
    while let Some(line) = out.next_line() {
        if line.starts_with("serving ") {
            up = true;
            break;
        }
    }
    assert!(up, "worker serve came up");
    std::fs::remove_file(&path).unwrap();
    let successor = UnixListener::bind(&path).expect("the successor binds");
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_timeout(HANG).code(), Some(0));
    assert!(path.exists(), "the successor's socket was removed");
    UnixStream::connect(&path).expect("the successor still answers");
    drop(successor);
    std::fs::remove_file(&path).unwrap();
}
