//! Fuzz check: the input records of the numeric and text stages, as a
//! `filter` stage reads them from a pipe.
//!
//! The first byte picks a stage, the second how the input is cut into
//! `read(2)` results, the rest is the input stream. The stage runs over the
//! stream exactly as in `filter` ([`syncomm_pipeline::stream::run`]); a
//! reference model built from the standard library (`str::parse::<i64>`,
//! `to_uppercase`, ...) computes what it must write, line by line. The check
//! asserts that the output bytes, the counts and the failing line agree.

use std::io::{self, Read};

use syncomm_pipeline::stream::{self, Counts, End, StreamError};
use syncomm_pipeline::Stage;

/// A reader that returns at most `step` bytes per `read`, cycling through sizes.
struct Chunked<'a> {
    data: &'a [u8],
    steps: [usize; 4],
    turn: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let step = self.steps[self.turn % 4];
        self.turn += 1;
        let n = step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What the reference model says one record becomes: `Ok(Some(bytes))`
/// written, `Ok(None)` dropped, `Err(())` the stage fails on it.
fn model(stage: &Stage, rec: &[u8]) -> Result<Option<Vec<u8>>, ()> {
    let int = |op: &dyn Fn(i64) -> Option<i64>| -> Result<Option<Vec<u8>>, ()> {
        let text = std::str::from_utf8(rec).map_err(|_| ())?;
        let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r'));
        let v: i64 = trimmed.parse().map_err(|_| ())?;
        let r = op(v).ok_or(())?;
        Ok(Some(format!("{r}\n").into_bytes()))
    };
    let text = || std::str::from_utf8(rec).map_err(|_| ());
    let line = |s: &str| Some(format!("{s}\n").into_bytes());
    match stage {
        Stage::Add(n) => int(&|v| v.checked_add(*n)),
        Stage::Mul(n) => int(&|v| v.checked_mul(*n)),
        Stage::Neg => int(&i64::checked_neg),
        Stage::Square => int(&|v| v.checked_mul(v)),
        Stage::Upper => Ok(line(&text()?.to_uppercase())),
        Stage::Lower => Ok(line(&text()?.to_lowercase())),
        Stage::Trim => Ok(line(text()?.trim())),
        Stage::Grep(t) => Ok(text()?
            .contains(t.as_str())
            .then(|| line(text().unwrap()).unwrap())),
        Stage::Pass => {
            let mut v = rec.to_vec();
            v.push(b'\n');
            Ok(Some(v))
        }
        Stage::Delay(_) => unreachable!("not fuzzed: it sleeps"),
    }
}

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    let (Some(&pick), Some(&cut)) = (data.first(), data.get(1)) else {
        return;
    };
    let input = &data[2..];
    let stages = [
        Stage::Add(i64::from(cut as i8)),
        Stage::Mul(i64::from(cut as i8)),
        Stage::Add(i64::MAX),
        Stage::Mul(i64::MIN),
        Stage::Neg,
        Stage::Square,
        Stage::Upper,
        Stage::Lower,
        Stage::Trim,
        Stage::Grep("a".into()),
        Stage::Grep("é".into()),
        Stage::Pass,
    ];
    let stage = &stages[usize::from(pick) % stages.len()];
    let c = usize::from(cut);
    let mut reader = Chunked {
        data: input,
        steps: [1 + c % 7, 1 + c % 131, 1 + c, 4096],
        turn: 0,
    };
    let mut out = Vec::new();
    let mut counts = Counts::default();
    let result = stream::run(stage, &mut reader, &mut out, &mut counts);

    // The model: lines split on '\n'; a last line without one is a record too.
    let mut expected = Vec::new();
    let mut failed_at = None;
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if input.last().map_or(true, |&b| b == b'\n') {
        lines.pop(); // no record after the final newline (or in empty input)
    }
    let mut written = 0u64;
    for (i, rec) in lines.iter().enumerate() {
        match model(stage, rec) {
            Ok(Some(bytes)) => {
                expected.extend_from_slice(&bytes);
                written += 1;
            }
            Ok(None) => {}
            Err(()) => {
                failed_at = Some(i as u64 + 1);
                break;
            }
        }
    }
    if *stage == Stage::Pass {
        // pass is byte-exact: no newline is added to a last partial line.
        assert_eq!(out, input, "pass copies every byte");
        assert!(matches!(result, Ok(End::Done)));
        assert_eq!(counts.records_in, lines.len() as u64);
        return;
    }
    match (result, failed_at) {
        (Ok(End::Done), None) => {}
        (Err(StreamError::Record { line, .. }), Some(at)) => assert_eq!(line, at, "failing line"),
        (r, at) => panic!("stage {stage:?}: got {r:?}, model fails at {at:?}"),
    }
    assert_eq!(out, expected, "stage {stage:?} output");
    assert_eq!(counts.records_out, written);
    assert_eq!(counts.records_in, failed_at.unwrap_or(lines.len() as u64));
}
