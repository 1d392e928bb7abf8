//! Binding a server's Unix socket at a path, taking over a stale one, with
//! exactly one winner when several servers start at once.
//!
//! A server that dies without cleaning up (`kill -9`) leaves its socket file
//! behind; the next server must replace it. Doing that as probe (connect:
//! refused?), remove, bind lets two servers started together both see the
//! stale file, both remove "it" and both bind, the first one then listening
//! on a socket nobody can reach. [`bind`] serializes the three steps with a
//! lock file beside the socket (`PATH.lock`, `flock(2)`), held only for
//! probe-remove-bind:
//!
//! 1. take the lock (bounded wait: [`LOCK_WAIT`]);
//! 2. look at what is at PATH without following links: nothing, or a socket
//!    owned by our uid (anything else is refused, whoever we are — even as
//!    root a file of another user is not ours to replace);
//! 3. probe it with a non-blocking connect: accepted (or the backlog is
//!    full) means a live server — refuse; refused means stale;
//! 4. remove it only if it is still the same file ([`FileId`]: device,
//!    inode and change time);
//! 5. bind (and listen), set the mode, note the new file's identity;
//! 6. remove the lock file and release the lock.
//!
//! Removing the lock file is safe because only a holder removes it, and a
//! process that gets the lock checks that the path still names the file it
//! locked (else it starts over on the new one). So no lock file is left
//! behind, and nothing else needs to know about it.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::flock::{self, Mode, Outcome};
use nix::fcntl::OFlag;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};

/// How long [`bind`] waits for another process's probe-remove-bind.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// How long [`remove_if_ours`] waits for the lock before removing anyway.
pub const REMOVE_LOCK_WAIT: Duration = Duration::from_secs(1);

/// Why a socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A server answers on the socket.
    #[error("a server is already listening on {path}")]
    Live {
        /// The socket path.
        path: PathBuf,
        /// The live server's pid, when the kernel told us.
        pid: Option<i32>,
    },
    /// Something that is not a socket is at the path.
    #[error("{path} exists and is not a socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The file at the path (socket or lock) belongs to another user.
    #[error("{path} belongs to uid {owner}, not to us (uid {me}); refusing it")]
    NotOurs {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        me: u32,
    },
    /// Another process held the lock for too long.
    #[error("{path} is held by another process for over {}s", LOCK_WAIT.as_secs())]
    LockBusy {
        /// The lock file.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> BindError + 'p {
    move |source| BindError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The identity of a file: device, inode and change time. The inode alone
/// is not enough: a file system reuses the number of a removed file at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
}

impl FileId {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The identity of the file at `path` (not following a link), if any.
    pub fn at(path: &Path) -> Option<FileId> {
        std::fs::symlink_metadata(path).ok().map(|m| FileId::of(&m))
    }
}

/// A bound, listening socket and the identity of its file.
#[derive(Debug)]
pub struct Bound {
    /// The listener (blocking; set it non-blocking if needed).
    pub listener: UnixListener,
    /// The socket file's identity, for [`remove_if_ours`].
    pub id: FileId,
    /// Whether a stale socket file was replaced.
    pub took_over: bool,
}

/// The lock file beside the socket: `PATH.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Refuses a file that another user owns.
fn check_owner(path: &Path, meta: &Metadata) -> Result<(), BindError> {
    if meta.uid() != me() {
        return Err(BindError::NotOurs {
            path: path.to_owned(),
            owner: meta.uid(),
            me: me(),
        });
    }
    Ok(())
}

/// The lock of probe-remove-bind for one socket path; removes its file and
/// releases on drop.
struct SocketLock {
    lock: Option<File>,
    path: PathBuf,
}

impl SocketLock {
    /// Takes the lock for `socket`, waiting at most `wait`.
    fn acquire(socket: &Path, wait: Duration) -> Result<SocketLock, BindError> {
        let path = lock_path(socket);
        let deadline = Instant::now() + wait;
        loop {
            // Never follow a planted link, never block on a planted FIFO.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
                .open(&path)
                .map_err(io_err("opening lock file", &path))?;
            let meta = file
                .metadata()
                .map_err(io_err("reading lock file", &path))?;
            check_owner(&path, &meta)?;
            if !meta.file_type().is_file() {
                return Err(BindError::Io {
                    what: "opening lock file",
                    path,
                    source: io::Error::other("not a regular file"),
                });
            }
            match flock::lock(&file, Mode::Exclusive, Some(deadline), None) {
                Ok(Outcome::Locked) => {
                    // Still the file at the path? (Its holder removes it
                    // before releasing it; then start over on the new one.)
                    let same = FileId::at(&path) == Some(FileId::of(&meta));
                    if same {
                        return Ok(SocketLock {
                            lock: Some(file),
                            path,
                        });
                    }
                }
                Ok(_) => return Err(BindError::LockBusy { path }),
                Err(e) => return Err(io_err("locking", &path)(e)),
            }
        }
    }
}

impl Drop for SocketLock {
    fn drop(&mut self) {
        // Remove the file while still holding the lock, then release.
        let _ = std::fs::remove_file(&self.path);
        drop(self.lock.take());
    }
}

/// What a connect to the socket file found.
enum Probe {
    /// A server accepted (or would, its backlog is full); its pid if known.
    Live(Option<i32>),
    /// Nobody listens: a stale file.
    Stale,
    /// The file went away meanwhile.
    Gone,
}

/// A non-blocking connect to `path` (never waits on a busy server).
fn probe(path: &Path) -> Result<Probe, BindError> {
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| io_err("probing", path)(e.into()))?;
    let addr = UnixAddr::new(path).map_err(|e| io_err("probing", path)(e.into()))?;
    match socket::connect(fd.as_raw_fd(), &addr) {
        Ok(()) => {
            let pid = socket::getsockopt(&fd, socket::sockopt::PeerCredentials)
                .ok()
                .map(|c| c.pid());
            Ok(Probe::Live(pid))
        }
        // The listener's queue is full: it is alive, just busy.
        Err(Errno::EAGAIN) => Ok(Probe::Live(None)),
        Err(Errno::ECONNREFUSED) => Ok(Probe::Stale),
        Err(Errno::ENOENT) => Ok(Probe::Gone),
        Err(e) => Err(io_err("probing", path)(e.into())),
    }
}

/// Binds a listening Unix socket at `path` with permissions `mode`,
/// replacing a stale socket file (see the module documentation).
///
/// Exactly one of several processes binding the same path at once succeeds
/// (given a stale file or none); the others get [`BindError::Live`].
pub fn bind(path: &Path, mode: u32) -> Result<Bound, BindError> {
    let _lock = SocketLock::acquire(path, LOCK_WAIT)?;
    let mut took_over = false;
    // A few turns only if the file changes under us (a process that does
    // not take the lock); each turn looks afresh.
    for _ in 0..3 {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(io_err("looking at", path)(e)),
        };
        if !meta.file_type().is_socket() {
            return Err(BindError::NotASocket {
                path: path.to_owned(),
            });
        }
        check_owner(path, &meta)?;
        match probe(path)? {
            Probe::Live(pid) => {
                return Err(BindError::Live {
                    path: path.to_owned(),
                    pid,
                })
            }
            Probe::Gone => continue,
            Probe::Stale => {
                if FileId::at(path) == Some(FileId::of(&meta)) {
                    match std::fs::remove_file(path) {
                        Ok(()) => took_over = true,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err("removing stale socket", path)(e)),
                    }
                }
                // Else it was replaced meanwhile: look again.
            }
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => BindError::Live {
            path: path.to_owned(),
            pid: None,
        },
        _ => io_err("listening on", path)(e),
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("setting the mode of", path))?;
    let meta = std::fs::symlink_metadata(path).map_err(io_err("looking at", path))?;
    Ok(Bound {
        listener,
        id: FileId::of(&meta),
        took_over,
    })
}

/// Removes the socket file at `path` if it is still the one with identity
/// `id` (see [`Bound::id`]): a server leaving never removes a successor's
/// socket. Takes the same lock as [`bind`] (waiting at most
/// [`REMOVE_LOCK_WAIT`], then removing anyway); returns whether it removed it.
pub fn remove_if_ours(path: &Path, id: FileId) -> bool {
    let ours = |p: &Path| FileId::at(p) == Some(id);
    if !ours(path) {
        return false;
    }
    let _lock = SocketLock::acquire(path, REMOVE_LOCK_WAIT).ok();
    ours(path) && std::fs::remove_file(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_takes_over_stale_refuses_live_and_leaves_no_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(UnixListener::bind(&path).unwrap());
        let a = bind(&path, 0o600).unwrap();
        assert!(a.took_over);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        match bind(&path, 0o600) {
            Err(BindError::Live { pid, .. }) => assert_eq!(pid, Some(std::process::id() as i32)),
            other => panic!("{other:?}"),
        }
        assert!(!lock_path(&path).exists());
        assert!(remove_if_ours(&path, a.id));
        assert!(!path.exists());
        assert!(!lock_path(&path).exists());
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        std::fs::write(&path, b"data").unwrap();
        assert!(matches!(
            bind(&path, 0o600),
            Err(BindError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[test]
    fn remove_leaves_a_successor_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let a = bind(&path, 0o600).unwrap();
        drop(a.listener);
        // A successor starts later than the timestamp granularity (a
        // jiffy): its file differs in change time even with the same inode.
        std::thread::sleep(Duration::from_millis(30));
        let b = bind(&path, 0o600).unwrap();
        assert!(b.took_over);
        assert!(!remove_if_ours(&path, a.id));
        assert!(path.exists());
    }

    #[test]
    fn concurrent_binds_have_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..50 {
            let path = dir.path().join(format!("r{round}.sock"));
            drop(UnixListener::bind(&path).unwrap());
            let won: Vec<_> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4).map(|_| s.spawn(|| bind(&path, 0o600))).collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners: Vec<_> = won.into_iter().filter_map(Result::ok).collect();
            assert_eq!(winners.len(), 1, "round {round}");
        }
    }
}
