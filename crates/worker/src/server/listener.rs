//! The listening socket: binding it (with takeover of a stale one) and accepting callers.

use std::cell::Cell;
use std::io::{self, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

use syncomm_common::frame;
use syncomm_common::rundir::RunDir;
use syncomm_common::Name;

use super::config::io_err;
use super::connection::Conn;
use super::{ServeError, Server, ACCEPT_PAUSE, ACCEPT_WARN_EVERY};
use crate::protocol::ToClient;
use crate::wire::{InBuf, OutBuf};

/// The socket path for `name`: `{rundir}/worker.NAME.sock`.
pub fn socket_path(dir: &RunDir, name: &Name) -> PathBuf {
    dir.file("worker", name, "sock")
}

/// Binds the listening socket (mode 0600) at `path`, taking over a stale
/// socket file left by a crashed server and refusing when a server answers
/// (one winner among servers started at once: see
/// [`syncomm_sys::unixsock`]).
///
/// Returns the listener, whether a stale file was removed, and the new
/// file's identity (to remove it on the way out only while it is ours).
pub fn bind(
    name: &Name,
    path: &Path,
) -> Result<(UnixListener, bool, syncomm_sys::unixsock::FileId), ServeError> {
    use syncomm_sys::unixsock::{self, BindError};
    let bound = unixsock::bind(path, 0o600).map_err(|e| match e {
        BindError::Live { pid, .. } => ServeError::AlreadyServing {
            name: name.clone(),
            path: path.to_owned(),
            pid,
        },
        BindError::NotASocket { .. } => ServeError::NotASocket(path.to_owned()),
        BindError::Io { what, source, .. } => io_err(format!("{what} {}", path.display()))(source),
        other => io_err(format!("binding {}", path.display()))(io::Error::other(other.to_string())),
    })?;
    bound
        .listener
        .set_nonblocking(true)
        .map_err(io_err("making the listener non-blocking"))?;
    Ok((bound.listener, bound.took_over, bound.id))
}

impl Server {
    pub(super) fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.conns.len() >= self.cfg.max_conns {
                        // One small write to a fresh socket: it fits.
                        let busy = frame::encode_frame(&ToClient::ConnectionError(format!(
                            "server busy: {} connections open (--max-conns); try again later",
                            self.conns.len()
                        )));
                        if let Ok(bytes) = busy {
                            let _ = (&stream).write(&bytes);
                        }
                        continue;
                    }
                    self.next_conn += 1;
                    let peer = nix::sys::socket::getsockopt(
                        &stream,
                        nix::sys::socket::sockopt::PeerCredentials,
                    )
                    .ok()
                    .map(|c| (c.pid(), c.uid()));
                    self.conns.insert(
                        self.next_conn,
                        Conn {
                            stream,
                            peer,
                            inbuf: InBuf::default(),
                            outbuf: OutBuf::default(),
                            in_flight: 0,
                            read_closed: false,
                            doomed: false,
                            active: self.now,
                            watched: Cell::new(None),
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: keep serving those we have, and
                    // leave the listener alone a moment rather than spin on
                    // it; say so at most once per ACCEPT_WARN_EVERY.
                    let now = Instant::now();
                    self.accept_failures += 1;
                    if self
                        .accept_warned
                        .map_or(true, |t| now.duration_since(t) >= ACCEPT_WARN_EVERY)
                    {
                        let n = self.accept_failures;
                        let times = if n == 1 {
                            String::new()
                        } else {
                            format!(" ({n} failures since the last warning)")
                        };
                        tracing::warn!("accept: {e}; pausing new connections briefly{times}");
                        self.accept_warned = Some(now);
                        self.accept_failures = 0;
                    }
                    self.accept_paused = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }
}
