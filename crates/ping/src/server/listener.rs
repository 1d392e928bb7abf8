//! The listeners: binding the TCP and local sockets, accepting connections on them, closing them.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::socket::{getsockopt, sockopt};
use syncomm_sys::unixsock::{self, BindError, FileId};

use super::connection::{refuse_busy, register, Peer, State};
use super::event_loop::Ctx;
use super::slab::Slab;
use super::{LiveStats, ServerConfig, ServerError};
use crate::Endpoint;

// Tokens in `epoll_event.data`: a connection's slot number, or one of these.
pub(super) const WAKE: u64 = u64::MAX;
pub(super) const TCP_LISTENER: u64 = u64::MAX - 1;
pub(super) const LOCAL_LISTENER: u64 = u64::MAX - 2;

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    pub(super) live: Arc<LiveStats>,
    pub(super) config: ServerConfig,
    pub(super) tcp: Option<TcpListener>,
    pub(super) local: Option<(UnixListener, PathBuf, FileId)>,
}

impl Server {
    /// Opens the listeners: TCP (`bind` + `listen`) and the local socket file.
    ///
    /// A local socket file left by a dead server (connecting to it is
    /// refused) is replaced; one that a live server answers on is an error,
    /// as is a TCP port already in use.
    pub fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let tcp = match config.tcp {
            Some(addr) => Some(bind_tcp(addr)?),
            None => None,
        };
        let local = match &config.local {
            Some((dir, name)) => Some(bind_local(&Endpoint::local_path(dir, name))?),
            None => None,
        };
        Ok(Server {
            live: Arc::new(LiveStats::default()),
            config,
            tcp,
            local,
        })
    }

    /// The server's live figures (for its status record).
    pub fn live(&self) -> Arc<LiveStats> {
        self.live.clone()
    }

    /// The TCP address actually bound (with the port chosen for `:0`).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The local socket's path.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        self.local.as_ref().map(|(_, p, _)| p.as_path())
    }
    /// Accepts every waiting connection on one listener. Returns true when
    /// the listener had to be paused (out of file descriptors).
    pub(super) fn accept_all(&self, token: u64, ctx: &mut Ctx<'_>, conns: &mut Slab) -> bool {
        // Bounded, so one busy listener cannot starve the connections. With
        // several loops, take one connection per wake-up and leave the rest
        // to whichever loop wakes next: a burst of clients is spread over the
        // loops instead of landing all on the first one awake.
        let batch = if self.config.threads > 1 { 1 } else { 256 };
        for _ in 0..batch {
            let accepted = match token {
                TCP_LISTENER => match self.tcp.as_ref().map(|l| l.accept()) {
                    Some(Ok((s, addr))) => {
                        let _ = s.set_nodelay(true);
                        s.set_nonblocking(true)
                            .map(|()| (OwnedFd::from(s), Peer::Tcp(addr)))
                    }
                    Some(Err(e)) => Err(e),
                    None => return false,
                },
                _ => match self.local.as_ref().map(|(l, _, _)| l.accept()) {
                    Some(Ok((s, _))) => {
                        let pid = getsockopt(&s, sockopt::PeerCredentials)
                            .map(|c| c.pid())
                            .unwrap_or(0);
                        s.set_nonblocking(true)
                            .map(|()| (OwnedFd::from(s), Peer::Local(pid)))
                    }
                    Some(Err(e)) => Err(e),
                    None => return false,
                },
            };
            let (fd, peer) = match accepted {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // Out of descriptors: stop listening until the next sweep,
                    // or level-triggered epoll would report the listener forever.
                    tracing::warn!("accept: {e}; pausing new connections briefly");
                    return self.listen(ctx, false).is_ok();
                }
                Err(e) => {
                    // ECONNABORTED and friends: that one connection is gone.
                    tracing::debug!("accept: {e}");
                    continue;
                }
            };
            ctx.stats.accepted += 1;
            ctx.live.accepted.fetch_add(1, Ordering::Relaxed);
            // Take a place among the --max-conns (shared by all loops), if one is free.
            let max = self.config.max_conns;
            let placed = ctx
                .open
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok();
            if !placed {
                ctx.stats.busy += 1;
                refuse_busy(fd, peer, ctx, conns);
                continue;
            }
            let deadline = ctx.idle.map(|d| ctx.now + d);
            if !register(fd, peer, State::Open, deadline, ctx, conns) {
                ctx.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
        false
    }

    /// Adds the listeners to (or removes them from) this loop's epoll set.
    /// `EPOLLEXCLUSIVE`: a new connection wakes one waiting loop, not all.
    pub(super) fn listen(&self, ctx: &Ctx<'_>, on: bool) -> nix::Result<()> {
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE;
        if let Some(l) = &self.tcp {
            match on {
                true => ctx.epoll.add(l, EpollEvent::new(flags, TCP_LISTENER))?,
                false => ctx.epoll.delete(l)?,
            }
        }
        if let Some((l, _, _)) = &self.local {
            match on {
                true => ctx.epoll.add(l, EpollEvent::new(flags, LOCAL_LISTENER))?,
                false => ctx.epoll.delete(l)?,
            }
        }
        Ok(())
    }

    fn close_listeners(&mut self) {
        self.tcp = None;
        if let Some((listener, path, id)) = self.local.take() {
            drop(listener);
            unixsock::remove_if_ours(&path, id);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close_listeners();
    }
}

/// Raises a listener's queue of connections not yet accepted to the system
/// maximum (`listen(2)` again on a listening socket only changes the queue),
/// so a thousand clients connecting at once are not made to retry.
fn deepen_backlog<F: std::os::fd::AsFd>(listener: &F) {
    let _ = nix::sys::socket::listen(listener, nix::sys::socket::Backlog::MAXCONN);
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            // Who holds it? If a ping server answers, say so plainly.
            ServerError::Listen {
                what: addr.to_string(),
                why: "address already in use (is another ping-server running? \
                      `--tcp 127.0.0.1:0` picks a free port)"
                    .into(),
            }
        } else {
            ServerError::Listen {
                what: addr.to_string(),
                why: crate::describe_io(&e),
            }
        }
    })?;
    deepen_backlog(&listener);
    Ok(listener)
}

/// Binds the local socket at `path`, replacing a stale one (one winner
/// among servers started at once: see [`syncomm_sys::unixsock`]).
fn bind_local(path: &std::path::Path) -> Result<(UnixListener, PathBuf, FileId), ServerError> {
    let what = path.display().to_string();
    let bound = unixsock::bind(path, 0o600).map_err(|e| match e {
        BindError::Live { .. } => ServerError::InUse { what: what.clone() },
        BindError::NotASocket { .. } => ServerError::Listen {
            what: what.clone(),
            why: "the path exists and is not a socket".into(),
        },
        BindError::Io {
            what: doing,
            source,
            ..
        } => ServerError::Listen {
            what: what.clone(),
            why: format!("{doing}: {}", crate::describe_io(&source)),
        },
        other => ServerError::Listen {
            what: what.clone(),
            why: other.to_string(),
        },
    })?;
    if bound.took_over {
        tracing::info!("replaced stale socket {what}");
    }
    deepen_backlog(&bound.listener);
    Ok((bound.listener, path.to_owned(), bound.id))
}
