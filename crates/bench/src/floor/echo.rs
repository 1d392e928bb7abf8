//! The pipe, Unix socket and TCP floors: one byte echoed by the peer (for
//! TCP also through an epoll loop, the floor of an event-loop server).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Instant;

use anyhow::Context;

use super::{peer_command, FloorKind, Peer, PeerSpec};

/// Pipe, Unix socket and TCP: the peer echoes what it reads on stdin to stdout.
pub(super) fn measure_echo(
    kind: FloorKind,
    peer_exe: &PeerSpec,
    warmup: usize,
    rounds: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut cmd = peer_command(peer_exe, kind);
    let (mut tx, mut rx, _peer): (Box<dyn Write>, Box<dyn Read>, Peer) = match kind {
        FloorKind::Pipe => {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
            let mut child = cmd.spawn().context("starting the pipe peer")?;
            let w = child.stdin.take().context("peer stdin")?;
            let r = child.stdout.take().context("peer stdout")?;
            (Box::new(w), Box::new(r), Peer(child))
        }
        FloorKind::Unix => {
            let (mine, theirs) = UnixStream::pair().context("socketpair")?;
            let theirs: OwnedFd = theirs.into();
            cmd.stdin(Stdio::from(theirs.try_clone()?))
                .stdout(Stdio::from(theirs));
            let child = cmd.spawn().context("starting the unix-socket peer")?;
            let r = mine.try_clone()?;
            (Box::new(mine), Box::new(r), Peer(child))
        }
        FloorKind::Tcp | FloorKind::TcpEpoll => {
            let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
            let mine = TcpStream::connect(listener.local_addr()?).context("connecting")?;
            let (theirs, _) = listener.accept().context("accepting")?;
            mine.set_nodelay(true)?;
            theirs.set_nodelay(true)?;
            let theirs: OwnedFd = theirs.into();
            cmd.stdin(Stdio::from(theirs.try_clone()?))
                .stdout(Stdio::from(theirs));
            let child = cmd.spawn().context("starting the TCP peer")?;
            let r = mine.try_clone()?;
            (Box::new(mine), Box::new(r), Peer(child))
        }
        _ => unreachable!("the futex floors have their own loops"),
    };
    let mut samples = Vec::with_capacity(rounds);
    let mut byte = [0u8; 1];
    for i in 0..warmup + rounds {
        let t = Instant::now();
        tx.write_all(&[i as u8])?;
        rx.read_exact(&mut byte).context("the peer went away")?;
        let dt = t.elapsed();
        if i >= warmup {
            samples.push(dt.as_secs_f64() * 1e6);
        }
    }
    // Dropping `tx` closes our end: the peer reads end of input and exits.
    drop(tx);
    drop(rx);
    Ok(samples)
}

/// Echo: read from fd 0, write the same bytes to fd 1, until end of input.
pub(super) fn peer_echo() -> anyhow::Result<()> {
    echo_loop(|| Ok(()))
}

/// Echo as a one-thread event-loop server does it: fd 0 non-blocking, and
/// before each read an `epoll_wait` with a timeout (a server's idle timers
/// need one; the kernel arms a timer on every such wait). What this costs
/// above [`peer_echo`] is the floor of any such server, `ping-server` among
/// them.
pub(super) fn peer_echo_epoll() -> anyhow::Result<()> {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    let stdin = std::io::stdin();
    let input = stdin.as_fd();
    let flags = nix::fcntl::fcntl(input, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(input, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(input, EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
    let mut events = [EpollEvent::empty(); 1];
    echo_loop(|| loop {
        match epoll.wait(&mut events, EpollTimeout::from(1000u16)) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    })
}

/// Reads fd 0 and writes what it read to fd 1 until end of input, calling
/// `ready` before each read.
fn echo_loop(mut ready: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let (input, output) = (stdin.as_fd(), stdout.as_fd());
    let mut buf = [0u8; 64];
    loop {
        ready()?;
        let n = match nix::unistd::read(input, &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut off = 0;
        while off < n {
            match nix::unistd::write(output, &buf[off..n]) {
                Ok(w) => off += w,
                // (fd 1 shares fd 0's socket, non-blocking in the epoll floor.)
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(nix::errno::Errno::EPIPE) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
