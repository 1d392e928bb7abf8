//! Verifying: reading a shared file back and checking that every line is
//! well formed and every writer's counters run 0, 1, 2, ... in order.

use std::collections::HashMap;
use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};

use syncomm_sys::openfile::{kind_of, open_no_symlinks};

use crate::write::{symlink_error, valid_id, WriteError};
use crate::MARKER;

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
    use crate::format_line;

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
}
