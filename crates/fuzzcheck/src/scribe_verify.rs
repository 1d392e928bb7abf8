//! Fuzz check: the shared file as `scribe --verify` reads it
//! ([`syncomm_scribe::verify_bytes`], the same line loop `verify_file` runs,
//! and [`syncomm_scribe::parse_line`]).
//!
//! Invariants:
//! - it never panics;
//! - a line that parses is exactly `format_line` of what it parsed to;
//! - the verdict matches a model written here independently: the file is
//!   good when every line ends with a newline, is at most 8192 bytes, parses,
//!   and each writer's counters run 0, 1, 2, ...; the summary then counts
//!   exactly the input's lines and distinct writers;
//! - a problem names a line that exists (1 ..= the number of lines);
//! - a good file also passes with its own writer count (and line count, when
//!   every writer has the same), and fails with one more writer or one line
//!   fewer expected.

use std::collections::HashMap;

use syncomm_scribe::{format_line, parse_line, verify_bytes, Expect, Problem};

/// The verifier's longest line (a longer one is malformed).
const MAX_LINE: usize = 8192;

/// What the model says: per writer the number of lines, or `None` when the
/// file is bad.
fn model(data: &[u8]) -> Option<(u64, HashMap<String, u64>)> {
    let mut next: HashMap<String, u64> = HashMap::new();
    if data.is_empty() {
        return Some((0, next));
    }
    // A file that does not end with a newline ends with a torn line.
    let body = data.strip_suffix(b"\n")?;
    let mut lines = 0u64;
    for line in body.split(|&b| b == b'\n') {
        lines += 1;
        if line.len() > MAX_LINE {
            return None;
        }
        let p = parse_line(line)?;
        let n = next.entry(p.id.to_owned()).or_insert(0);
        if p.k != *n {
            return None;
        }
        *n += 1;
    }
    Some((lines, next))
}

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    let newlines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    let pieces = newlines + u64::from(!data.is_empty() && !data.ends_with(b"\n"));

    for line in data.split(|&b| b == b'\n') {
        if let Some(p) = parse_line(line) {
            let mut buf = Vec::new();
            format_line(&mut buf, p.id, p.message, p.k);
            assert_eq!(&buf[..buf.len() - 1], line, "parse then format round trip");
        }
    }

    let verdict = verify_bytes(data, Expect::default());
    match (&verdict, model(data)) {
        (Ok(s), Some((lines, writers))) => {
            assert_eq!(s.lines, lines);
            assert_eq!(s.lines, newlines, "every line of a good file is counted");
            assert_eq!(s.writers, writers.len() as u64);
            check_expectations(data, s.writers, &writers);
        }
        (Err(p), None) => {
            if let Some(line) = problem_line(p) {
                assert!(
                    (1..=pieces).contains(&line),
                    "problem at line {line} of {pieces}: {p}"
                );
            }
            assert!(!p.to_string().contains('\n'), "one line: {p}");
        }
        (v, m) => panic!("verifier says {v:?}, the model says {m:?}"),
    }
}

fn problem_line(p: &Problem) -> Option<u64> {
    match p {
        Problem::Malformed { line, .. }
        | Problem::Torn { line, .. }
        | Problem::Skipped { line, .. }
        | Problem::Repeated { line, .. }
        | Problem::TooMany { line, .. } => Some(*line),
        Problem::TooFew { .. } | Problem::Writers { .. } => None,
    }
}

/// A good file checked against expectations taken from itself.
fn check_expectations(data: &[u8], writers: u64, per_writer: &HashMap<String, u64>) {
    let with = |writers, count| verify_bytes(data, Expect { writers, count });
    assert!(with(Some(writers), None).is_ok());
    assert!(
        matches!(with(Some(writers + 1), None), Err(Problem::Writers { .. })),
        "one writer more expected"
    );
    let mut counts: Vec<u64> = per_writer.values().copied().collect();
    counts.sort_unstable();
    counts.dedup();
    if let [n] = counts[..] {
        assert!(with(Some(writers), Some(n)).is_ok(), "each writer has {n}");
        assert!(
            matches!(with(None, Some(n + 1)), Err(Problem::TooFew { .. })),
            "one line more expected"
        );
        if n > 0 {
            assert!(
                matches!(with(None, Some(n - 1)), Err(Problem::TooMany { .. })),
                "one line fewer expected"
            );
        }
    }
}
