//! # syncomm-scribe
//!
//! Several processes append lines to one shared file, and no line is ever torn,
//! lost or interleaved with another. This is the seed's "Access shared file"
//! example, done with the kernel's own tools.
//!
//! ## The mechanism
//! Each writer opens the file with `O_APPEND` (so every `write(2)` lands at the
//! current end of the file, atomically with respect to the file offset) and,
//! for each line:
//!
//! 1. `flock(fd, LOCK_EX)`: wait until no other writer holds the lock
//!    (`syncomm_sys::flock`: `LOCK_NB` attempts paced by `poll(2)` on the
//!    shutdown descriptor, so Ctrl-C ends the wait);
//! 2. one `write(2)` of the whole line, newline included;
//! 3. optionally `fdatasync(2)`, so the line is on disk before the next writer goes;
//! 4. optionally hold the lock a while (`--hold`, to make contention visible);
//! 5. `flock(fd, LOCK_UN)`.
//!
//! A writer killed with SIGKILL while it holds the lock loses its descriptor,
//! and with it the lock: the kernel releases a `flock` when the last descriptor
//! of the open file description is closed, so the others simply go on. Because
//! a line is written with a single `write(2)`, a killed writer leaves either the
//! whole line or none of it.
//!
//! ## Lines
//! A line is `ID mu: TEXT K`, as the seed wrote it: the writer's id, the fixed
//! marker `mu:`, the message, and the writer's line counter `K` (0, 1, 2, ...).
//! [`verify_file`] reads a file back and checks that every line is well formed
//! and that each writer's counters run 0, 1, 2, ... with none missing, repeated
//! or out of order.
//!
//! ## Choices
//! - The shared file must be a regular file, reached without any symlink: a
//!   writer is often pointed at a path in a shared directory such as `/tmp`,
//!   where a planted symlink would redirect its appends. The path is resolved
//!   with `openat2(2)` and `RESOLVE_NO_SYMLINKS` (Linux 5.6 and later), so a
//!   symlink in any component is refused, the last one (`/tmp/link`) and a
//!   parent directory (`/tmp/dirlink/file`) alike. On an older kernel only the
//!   last component is checked (`O_NOFOLLOW`). `--verify` reads the same way.
//! - Ids are rendezvous-name shaped (`[A-Za-z0-9._-]{1,64}`) and messages are one
//!   line, so every line written can be parsed back unambiguously.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use syncomm_common::shutdown::Shutdown;
use syncomm_sys::flock::{self, Mode, Outcome};
use syncomm_sys::openfile::{kind_of, open_no_symlinks};

/// The marker between the writer's id and its message.
pub const MARKER: &str = " mu: ";

/// The longest message accepted, in bytes (keeps a line far below any write limit).
pub const MAX_MESSAGE: usize = 4096;

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
fn symlink_error(path: &Path) -> WriteError {
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

// ---------------------------------------------------------------------------
// Verifying
// ---------------------------------------------------------------------------

/// What the verifier found wrong, with the 1-based line number where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A line that is not `ID mu: TEXT K`.
    #[error("line {line}: not a scribe line (expected `ID mu: TEXT K`): {text:?}")]
    Malformed {
        /// Line number.
        line: u64,
        /// The line (shortened).
        text: String,
    },
    /// The file ends without a newline: the last line is incomplete.
    #[error("line {line}: torn line at the end of the file (no newline): {text:?}")]
    Torn {
        /// Line number.
        line: u64,
        /// The line (shortened).
        text: String,
    },
    /// A writer's counter jumped forward.
    #[error("line {line}: writer {id} wrote line {found}, expected {expected} (missing or out of order)")]
    Skipped {
        /// Line number.
        line: u64,
        /// The writer.
        id: String,
        /// The counter expected.
        expected: u64,
        /// The counter found.
        found: u64,
    },
    /// A writer's counter went back: a line repeated (or out of order).
    #[error("line {line}: writer {id} wrote line {found} again, expected {expected} (repeated or out of order)")]
    Repeated {
        /// Line number.
        line: u64,
        /// The writer.
        id: String,
        /// The counter expected.
        expected: u64,
        /// The counter found.
        found: u64,
    },
    /// A writer has fewer lines than `--count`.
    #[error("writer {id} has {found} lines, expected {expected} (its last line is missing)")]
    TooFew {
        /// The writer.
        id: String,
        /// Lines expected.
        expected: u64,
        /// Lines found.
        found: u64,
    },
    /// A writer has more lines than `--count`.
    #[error("line {line}: writer {id} has more than the expected {expected} lines")]
    TooMany {
        /// Line number of the first extra line.
        line: u64,
        /// The writer.
        id: String,
        /// Lines expected.
        expected: u64,
    },
    /// The number of writers differs from `--writers`.
    #[error("found {found} writers, expected {expected}")]
    Writers {
        /// Writers expected.
        expected: u64,
        /// Writers found.
        found: u64,
    },
}

/// What a verification expects beyond well-formedness.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect {
    /// The number of distinct writers, if known.
    pub writers: Option<u64>,
    /// The number of lines of each writer, if known.
    pub count: Option<u64>,
}

/// The summary of a file that verified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Lines in the file.
    pub lines: u64,
    /// Distinct writers.
    pub writers: u64,
}

/// What went wrong while verifying.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is readable and something in it is wrong.
    #[error("{path}: {problem}")]
    Bad {
        /// The path.
        path: PathBuf,
        /// The first problem found.
        problem: Problem,
    },
}

/// A parsed line: the writer's id and its counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The writer's id.
    pub id: &'a str,
    /// The message.
    pub message: &'a str,
    /// The counter.
    pub k: u64,
}

/// Parses one line (without its newline) as `ID mu: TEXT K`.
pub fn parse_line(line: &[u8]) -> Option<Parsed<'_>> {
    let line = std::str::from_utf8(line).ok()?;
    let (id, rest) = line.split_once(MARKER)?;
    if !valid_id(id) {
        return None;
    }
    let (message, k) = rest.rsplit_once(' ')?;
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) || (k.len() > 1 && k.starts_with('0'))
    {
        return None;
    }
    Some(Parsed {
        id,
        message,
        k: k.parse().ok()?,
    })
}

fn shorten(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    if line.len() > 80 {
        s + "..."
    } else {
        s
    }
}

/// Checks file contents held in memory; returns the summary or the first problem.
pub fn verify_bytes(data: &[u8], expect: Expect) -> Result<Summary, Problem> {
    match verify_reader(data, expect) {
        Ok(outcome) => outcome,
        Err(e) => unreachable!("reading a byte slice cannot fail: {e}"),
    }
}

/// The longest line the verifier reads whole; a longer one is malformed
/// (a scribe line is at most an id, a 4096-byte message and a counter).
const MAX_LINE: usize = 8192;

/// Checks the lines of `r` one at a time (memory stays small however large
/// the file): the outer error is an I/O error, the inner one the first problem.
pub fn verify_reader<R: BufRead>(mut r: R, expect: Expect) -> io::Result<Result<Summary, Problem>> {
    // Each writer's next expected counter.
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut lineno = 0u64;
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        let n = (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let Some(line) = buf.strip_suffix(b"\n") else {
            let text = shorten(&buf);
            return Ok(Err(if buf.len() > MAX_LINE {
                Problem::Malformed { line: lineno, text }
            } else {
                Problem::Torn { line: lineno, text }
            }));
        };
        let Some(p) = parse_line(line) else {
            return Ok(Err(Problem::Malformed {
                line: lineno,
                text: shorten(line),
            }));
        };
        if !next.contains_key(p.id) {
            next.insert(p.id.to_owned(), 0);
        }
        let expected = next.get_mut(p.id).expect("inserted above");
        if let Some(count) = expect.count {
            if p.k >= count && *expected >= count {
                return Ok(Err(Problem::TooMany {
                    line: lineno,
                    id: p.id.to_owned(),
                    expected: count,
                }));
            }
        }
        if p.k > *expected {
            return Ok(Err(Problem::Skipped {
                line: lineno,
                id: p.id.to_owned(),
                expected: *expected,
                found: p.k,
            }));
        }
        if p.k < *expected {
            return Ok(Err(Problem::Repeated {
                line: lineno,
                id: p.id.to_owned(),
                expected: *expected,
                found: p.k,
            }));
        }
        *expected += 1;
    }
    if let Some(w) = expect.writers {
        if next.len() as u64 != w {
            return Ok(Err(Problem::Writers {
                expected: w,
                found: next.len() as u64,
            }));
        }
    }
    if let Some(count) = expect.count {
        let mut short: Vec<(&String, u64)> = next
            .iter()
            .filter(|(_, &n)| n < count)
            .map(|(id, &n)| (id, n))
            .collect();
        short.sort();
        if let Some((id, n)) = short.first() {
            return Ok(Err(Problem::TooFew {
                id: (*id).clone(),
                expected: count,
                found: *n,
            }));
        }
    }
    Ok(Ok(Summary {
        lines: lineno,
        writers: next.len() as u64,
    }))
}

/// Reads `path` (never through a symlink, see [`open_no_symlinks`]) and verifies it.
pub fn verify_file(path: &Path, expect: Expect) -> Result<Summary, VerifyError> {
    let read_err = |source| VerifyError::Read {
        path: path.to_owned(),
        source,
    };
    let file = open_no_symlinks(path, libc::O_RDONLY | libc::O_NONBLOCK, 0).map_err(|e| match e
        .raw_os_error()
    {
        Some(libc::ELOOP) => read_err(io::Error::other(match symlink_error(path) {
            WriteError::Symlink(_) => "it is a symlink; refusing to follow it",
            _ => "it goes through a symlink; refusing to follow it (give the real path)",
        })),
        _ => read_err(e),
    })?;
    let ft = file.metadata().map_err(read_err)?.file_type();
    if !ft.is_file() {
        return Err(read_err(io::Error::other(format!(
            "it is a {}, not a regular file",
            kind_of(&ft)
        ))));
    }
    let outcome = verify_reader(io::BufReader::with_capacity(1 << 16, file), expect);
    outcome
        .map_err(read_err)?
        .map_err(|problem| VerifyError::Bad {
            path: path.to_owned(),
            problem,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[(&str, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for (id, k) in v {
            format_line(&mut buf, id, "hello world", *k);
            out.extend_from_slice(&buf);
        }
        out
    }

    #[test]
    fn formats_and_parses_back() {
        let mut buf = Vec::new();
        format_line(&mut buf, "3", "a b: c", 12);
        assert_eq!(buf, b"3 mu: a b: c 12\n");
        let p = parse_line(&buf[..buf.len() - 1]).unwrap();
        assert_eq!((p.id, p.message, p.k), ("3", "a b: c", 12));
        format_line(&mut buf, "x", "", 0);
        assert_eq!(parse_line(&buf[..buf.len() - 1]).unwrap().k, 0);
    }

    #[test]
    fn good_interleaving_verifies() {
        let d = lines(&[("a", 0), ("b", 0), ("a", 1), ("b", 1)]);
        let s = verify_bytes(
            &d,
            Expect {
                writers: Some(2),
                count: Some(2),
            },
        )
        .unwrap();
        assert_eq!(
            s,
            Summary {
                lines: 4,
                writers: 2
            }
        );
        assert_eq!(verify_bytes(b"", Expect::default()).unwrap().lines, 0);
    }

    #[test]
    fn finds_each_kind_of_problem() {
        let e = Expect::default();
        let d = lines(&[("a", 0), ("a", 2)]);
        assert!(matches!(
            verify_bytes(&d, e),
            Err(Problem::Skipped { line: 2, .. })
        ));
        let d = lines(&[("a", 0), ("a", 1), ("a", 1)]);
        assert!(matches!(
            verify_bytes(&d, e),
            Err(Problem::Repeated { line: 3, .. })
        ));
        let mut d = lines(&[("a", 0)]);
        d.extend_from_slice(b"\xff\xfe garbage\n");
        assert!(matches!(
            verify_bytes(&d, e),
            Err(Problem::Malformed { line: 2, .. })
        ));
        let mut d = lines(&[("a", 0)]);
        d.extend_from_slice(b"a mu: hel");
        assert!(matches!(
            verify_bytes(&d, e),
            Err(Problem::Torn { line: 2, .. })
        ));
        let long = vec![b'a'; 20_000];
        assert!(matches!(
            verify_bytes(&long, e),
            Err(Problem::Malformed { line: 1, .. })
        ));
        let d = lines(&[("a", 0), ("b", 0)]);
        let want = Expect {
            writers: Some(3),
            count: None,
        };
        assert!(matches!(
            verify_bytes(&d, want),
            Err(Problem::Writers { .. })
        ));
        let want = Expect {
            writers: None,
            count: Some(2),
        };
        assert!(matches!(
            verify_bytes(&d, want),
            Err(Problem::TooFew { .. })
        ));
        let d = lines(&[("a", 0), ("a", 1)]);
        let want = Expect {
            writers: None,
            count: Some(1),
        };
        assert!(matches!(
            verify_bytes(&d, want),
            Err(Problem::TooMany { line: 2, .. })
        ));
        for bad in [
            &b"a mu: x 01"[..],
            b"a mu: x",
            b"a b mu: x 1",
            b" mu: x 1",
            b"a mu: x -1",
        ] {
            assert!(
                parse_line(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

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
