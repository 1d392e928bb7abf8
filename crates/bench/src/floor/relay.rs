//! The relay floor: a worker call's hops (socket → relay → pipe → child and
//! back) without the worker.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use super::{peer_command, FloorKind, Peer, PeerSpec, PEER_FLAG};

// ---- relay: a worker call's hops without the worker ------------------------------------

/// The environment variable telling a relay peer where to listen.
const RELAY_SOCK: &str = "SYNCOMM_BENCH_RELAY_SOCK";
/// The environment variable telling a relay peer how many callers to accept.
const RELAY_CONNS: &str = "SYNCOMM_BENCH_RELAY_CONNS";

/// A relay peer and the callers' connections to it.
pub struct Relay {
    /// One connection per caller.
    pub conns: Vec<UnixStream>,
    _peer: Peer,
    _dir: tempfile::TempDir,
}

impl Relay {
    /// Starts a relay peer accepting `conns` callers, each relayed by pipe to
    /// an echo child of its own, and connects them.
    pub fn start(peer_spec: &PeerSpec, conns: usize) -> anyhow::Result<Relay> {
        let dir = tempfile::Builder::new()
            .prefix("syncomm-relay-")
            .tempdir()?;
        let path = dir.path().join("relay.sock");
        let mut cmd = peer_command(peer_spec, FloorKind::Relay);
        cmd.env(RELAY_SOCK, &path)
            .env(RELAY_CONNS, conns.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().context("starting the relay peer")?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
            &mut line,
        )?;
        let peer = Peer(child);
        if line.trim() != "ready" {
            bail!("the relay peer said {line:?}");
        }
        let conns = (0..conns)
            .map(|_| UnixStream::connect(&path))
            .collect::<std::io::Result<Vec<_>>>()
            .context("connecting to the relay")?;
        Ok(Relay {
            conns,
            _peer: peer,
            _dir: dir,
        })
    }
}

/// Relay: accept the callers, start an echo child (`--floor-peer pipe`) per
/// caller, then forward caller → child and child → caller as bytes arrive
/// (one thread, poll(2)), until every caller has gone.
pub(super) fn peer_relay() -> anyhow::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::unix::net::UnixListener;
    let path = std::env::var_os(RELAY_SOCK).context("no relay socket")?;
    let n: usize = std::env::var(RELAY_CONNS)
        .ok()
        .and_then(|v| v.parse().ok())
        .context("no relay connection count")?;
    let listener = UnixListener::bind(&path).context("binding the relay socket")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
    }
    let exe = std::env::current_exe()?;
    let mut legs = Vec::new();
    for _ in 0..n {
        let (conn, _) = listener.accept()?;
        let mut child = Command::new(&exe)
            .arg(PEER_FLAG)
            .arg(FloorKind::Pipe.key())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the relay's child")?;
        let to_child = child.stdin.take().expect("piped");
        let from_child = child.stdout.take().expect("piped");
        legs.push((conn, to_child, from_child, Peer(child)));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut closed = vec![false; n];
    while closed.iter().any(|c| !c) {
        let live: Vec<usize> = (0..n).filter(|&i| !closed[i]).collect();
        let mut fds = Vec::with_capacity(2 * live.len());
        for &i in &live {
            fds.push(PollFd::new(legs[i].0.as_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(legs[i].2.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        for (j, &i) in live.iter().enumerate() {
            let leg = &mut legs[i];
            if ready[2 * j] {
                let k = leg.0.read(&mut buf).unwrap_or(0);
                if k == 0 {
                    closed[i] = true;
                    continue;
                }
                leg.1.write_all(&buf[..k])?;
            }
            if ready[2 * j + 1] {
                let k = leg.2.read(&mut buf)?;
                if k == 0 {
                    closed[i] = true;
                } else {
                    leg.0.write_all(&buf[..k]).ok();
                }
            }
        }
    }
    Ok(())
}
