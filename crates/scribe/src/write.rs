//! Writing: appending whole lines to the shared file, each under an
//! exclusive `flock` and with one `write(2)`.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use syncomm_common::shutdown::Shutdown;
use syncomm_sys::flock::{self, Mode, Outcome};
use syncomm_sys::openfile::{kind_of, open_no_symlinks};

use crate::{MARKER, MAX_MESSAGE};

/// What went wrong while appending.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The path is a symbolic link.
    #[error("{0} is a symlink; refusing to follow it (give the real file)")]
    Symlink(PathBuf),
    /// A directory on the path is a symbolic link.
    #[error("{0} goes through a symlink; refusing to follow it (give the real path, e.g. from realpath)")]
    SymlinkOnPath(PathBuf),
    /// The path is not a regular file.
    #[error("{path} is not a regular file (it is a {kind})")]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// Opening the file failed.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Taking or releasing the lock failed.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Writing a line failed.
    #[error("cannot append line {k} to {path}: {source}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The line counter.
        k: u64,
        /// Why.
        source: io::Error,
    },
    /// The message cannot be written as one line.
    #[error("invalid message: {0}")]
    BadMessage(&'static str),
}

/// How one writer appends.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// The writer's id (validated by the caller, see [`valid_id`]).
    pub id: String,
    /// How many lines to append.
    pub count: u64,
    /// The message of each line.
    pub message: String,
    /// How long to keep the lock after each line.
    pub hold: Duration,
    /// Whether to `fdatasync(2)` each line before unlocking.
    pub fsync: bool,
    /// Where to count the lines written so far, for a progress display.
    pub progress: Option<Arc<AtomicU64>>,
}

/// How a writer run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Every line was appended.
    Done,
    /// A shutdown signal arrived; `written` lines were appended (each whole).
    Interrupted {
        /// Lines appended before stopping.
        written: u64,
    },
}

/// Whether `id` is a valid writer id: `[A-Za-z0-9._-]{1,64}`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks that `message` can be written as part of one line.
pub fn check_message(message: &str) -> Result<(), WriteError> {
    if message.len() > MAX_MESSAGE {
        return Err(WriteError::BadMessage("it is longer than 4096 bytes"));
    }
    if message.contains(['\n', '\r', '\0']) {
        return Err(WriteError::BadMessage(
            "it contains a newline, carriage return or NUL",
        ));
    }
    Ok(())
}

/// The error for `ELOOP` from [`open_no_symlinks`]: the path itself is a
/// symlink, or a directory on the way is.
pub(crate) fn symlink_error(path: &Path) -> WriteError {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => WriteError::Symlink(path.to_owned()),
        _ => WriteError::SymlinkOnPath(path.to_owned()),
    }
}

/// Opens `path` for appending: `O_WRONLY | O_APPEND | O_CREAT` (0644), never
/// through a symlink (see [`open_no_symlinks`]), and only if it is (or
/// becomes) a regular file.
pub fn open_shared(path: &Path) -> Result<File, WriteError> {
    // O_NONBLOCK: opening a FIFO planted at the path must not hang; it has
    // no effect on a regular file.
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NONBLOCK;
    let file =
        open_no_symlinks(path, flags, 0o644).map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => symlink_error(path),
            _ => WriteError::Open {
                path: path.to_owned(),
                source,
            },
        })?;
    let ft = file
        .metadata()
        .map_err(|source| WriteError::Open {
            path: path.to_owned(),
            source,
        })?
        .file_type();
    if !ft.is_file() {
        return Err(WriteError::NotRegular {
            path: path.to_owned(),
            kind: kind_of(&ft),
        });
    }
    Ok(file)
}

/// Formats line `k` of writer `id` into `buf` (cleared first): `ID mu: TEXT K\n`.
pub fn format_line(buf: &mut Vec<u8>, id: &str, message: &str, k: u64) {
    use std::io::Write;
    buf.clear();
    // Writing into a Vec cannot fail.
    let _ = writeln!(buf, "{id}{MARKER}{message} {k}");
}

/// Appends `opts.count` lines to `path`, each under an exclusive `flock` and
/// written with one `write(2)`. Stops between lines when `shutdown` is requested.
///
/// # Process-wide effects
/// To let Ctrl-C interrupt a `flock` wait, this clears `SA_RESTART` from the
/// SIGINT, SIGTERM and SIGHUP handlers, for the whole process and for good
/// (see `interrupt_flock_on_shutdown_signals`): call it from the `scribe`
/// program, not from a process whose other blocking calls rely on restarts.
pub fn append_lines(
    path: &Path,
    opts: &WriteOptions,
    shutdown: &Shutdown,
) -> Result<WriteOutcome, WriteError> {
    check_message(&opts.message)?;
    let file = open_shared(path)?;
    let lock_err = |source| WriteError::Lock {
        path: path.to_owned(),
        source,
    };
    let mut line = Vec::with_capacity(opts.id.len() + opts.message.len() + 32);
    for k in 0..opts.count {
        if shutdown.requested() {
            return Ok(WriteOutcome::Interrupted { written: k });
        }
        format_line(&mut line, &opts.id, &opts.message, k);
        // 1. Wait for the exclusive lock (`syncomm_sys::flock`: non-blocking
        //    attempts paced by poll(2) on the shutdown descriptor); a shutdown
        //    signal ends the wait, or else wins once we have the lock.
        let locked = flock::lock(&file, Mode::Exclusive, None, Some(shutdown)).map_err(lock_err)?;
        if locked != Outcome::Locked || shutdown.requested() {
            flock::unlock(&file).map_err(lock_err)?;
            return Ok(WriteOutcome::Interrupted { written: k });
        }
        // 2. One write(2) of the whole line: O_APPEND puts it at the end.
        let written = write_once(&file, &line).map_err(|source| WriteError::Write {
            path: path.to_owned(),
            k,
            source,
        });
        // 3. Make it durable before the next writer goes, if asked.
        let synced = match (&written, opts.fsync) {
            (Ok(()), true) => nix::unistd::fdatasync(&file).map_err(|e| WriteError::Write {
                path: path.to_owned(),
                k,
                source: e.into(),
            }),
            _ => Ok(()),
        };
        // 4. Keep the lock a while, to show contention.
        if !opts.hold.is_zero() && written.is_ok() {
            shutdown.sleep(opts.hold);
        }
        // 5. Release it (also released by the kernel if we die before this).
        flock::unlock(&file).map_err(lock_err)?;
        written?;
        synced?;
        if let Some(p) = &opts.progress {
            p.store(k + 1, Ordering::Relaxed);
        }
    }
    Ok(WriteOutcome::Done)
}

/// One `write(2)` of the whole buffer. A short write (disk full) is an error:
/// the line is then incomplete, and the verifier will say so.
fn write_once(file: &File, buf: &[u8]) -> io::Result<()> {
    loop {
        match nix::unistd::write(file.as_fd(), buf) {
            Ok(n) if n == buf.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write: {n} of {} bytes", buf.len()),
                ))
            }
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{verify_file, Expect};

    #[test]
    fn appends_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let opts = WriteOptions {
            id: "w".into(),
            count: 5,
            message: "m".into(),
            hold: Duration::ZERO,
            fsync: true,
            progress: None,
        };
        let sd = Shutdown::manual().unwrap();
        assert_eq!(append_lines(&path, &opts, &sd).unwrap(), WriteOutcome::Done);
        let s = verify_file(
            &path,
            Expect {
                writers: Some(1),
                count: Some(5),
            },
        )
        .unwrap();
        assert_eq!(s.lines, 5);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            append_lines(&link, &opts, &sd),
            Err(WriteError::Symlink(_))
        ));
        assert!(verify_file(&link, Expect::default()).is_err());
        assert!(matches!(
            append_lines(dir.path(), &opts, &sd),
            Err(WriteError::NotRegular { .. }) | Err(WriteError::Open { .. })
        ));
    }
}
