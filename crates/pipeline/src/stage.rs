//! The stages: what one filter does to each record (line).
//!
//! A stage is written on the command line as one quoted spec, `'add 1'`,
//! parsed once by [`StageSpec::parse`]. [`Stage::apply`] then transforms one
//! record at a time, in place where it can, appending the result (and its
//! newline) to the output buffer. It never allocates for the integer stages
//! and for ASCII text.

use std::fmt;
use std::time::Duration;

use crate::int::{self, IntError};

/// One line of `filter --list`: the spec's shape and what it does.
pub const LIST: &[(&str, &str)] = &[
    ("add N", "adds the integer N to each integer record"),
    ("mul N", "multiplies each integer record by the integer N"),
    ("neg", "negates each integer record"),
    ("square", "squares each integer record"),
    ("upper", "upper-cases each line (UTF-8)"),
    ("lower", "lower-cases each line (UTF-8)"),
    (
        "trim",
        "removes leading and trailing whitespace from each line (UTF-8)",
    ),
    (
        "grep TEXT",
        "keeps only the lines that contain TEXT (UTF-8)",
    ),
    ("pass", "passes every byte through unchanged (identity)"),
    (
        "delay DUR",
        "sleeps DUR (250ms, 1s, ...) before passing each line on",
    ),
];

/// What a stage does to each record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// `add N`: integer + N.
    Add(i64),
    /// `mul N`: integer × N.
    Mul(i64),
    /// `neg`: −integer.
    Neg,
    /// `square`: integer².
    Square,
    /// `upper`: upper case.
    Upper,
    /// `lower`: lower case.
    Lower,
    /// `trim`: without surrounding whitespace.
    Trim,
    /// `grep TEXT`: keeps lines containing TEXT.
    Grep(String),
    /// `pass`: identity; copies whole buffers.
    Pass,
    /// `delay DUR`: sleeps per record.
    Delay(Duration),
}

/// A stage as the user wrote it, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSpec {
    /// The spec exactly as given (`"mul 2"`), used to name the stage in messages.
    pub text: String,
    /// The parsed stage.
    pub stage: Stage,
}

/// Why a stage spec is not valid (a usage error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad stage {spec:?}: {why}")]
pub struct SpecError {
    spec: String,
    why: String,
}

impl StageSpec {
    /// Parses one stage spec such as `"add 1"`, `"grep needle"` or `"neg"`.
    pub fn parse(text: &str) -> Result<StageSpec, SpecError> {
        let fail = |why: String| SpecError {
            spec: text.to_owned(),
            why,
        };
        let trimmed = text.trim();
        let (name, arg) = match trimmed.split_once(char::is_whitespace) {
            Some((n, a)) => (n, Some(a.trim())),
            None => (trimmed, None),
        };
        let int_arg = |what: &str| -> Result<i64, SpecError> {
            let a = arg.ok_or_else(|| {
                fail(format!(
                    "'{name}' needs {what} (quote each stage: filter '{name} 2')"
                ))
            })?;
            int::parse_i64(a.as_bytes()).map_err(|_| fail(format!("{a:?} is not a 64-bit integer")))
        };
        let no_arg = |stage: Stage| match arg {
            None => Ok(stage),
            Some(a) => Err(fail(format!("'{name}' takes no argument, got {a:?}"))),
        };
        let stage = match name {
            "add" => Stage::Add(int_arg("an integer N")?),
            "mul" => Stage::Mul(int_arg("an integer N")?),
            "neg" => no_arg(Stage::Neg)?,
            "square" => no_arg(Stage::Square)?,
            "upper" => no_arg(Stage::Upper)?,
            "lower" => no_arg(Stage::Lower)?,
            "trim" => no_arg(Stage::Trim)?,
            "pass" => no_arg(Stage::Pass)?,
            "grep" => match arg {
                Some(t) if !t.is_empty() => Stage::Grep(t.to_owned()),
                _ => return Err(fail("'grep' needs the TEXT to keep: 'grep error'".into())),
            },
            "delay" => {
                let a = arg.ok_or_else(|| fail("'delay' needs a duration: 'delay 250ms'".into()))?;
                Stage::Delay(syncomm_common::parse_duration(a).map_err(|e| fail(e.to_string()))?)
            }
            "" => return Err(fail("empty stage (see filter --list)".into())),
            other => {
                return Err(fail(format!(
                    "unknown stage '{other}' (stages: add, mul, neg, square, upper, lower, trim, grep, pass, delay; see filter --list)"
                )))
            }
        };
        Ok(StageSpec {
            text: text.to_owned(),
            stage,
        })
    }
}

impl fmt::Display for StageSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", self.text)
    }
}

/// Why one record could not be transformed. Shown after `line N: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record is not a decimal integer.
    #[error("{0} is not an integer")]
    NotAnInteger(String),
    /// The record is an integer outside the 64-bit range.
    #[error("{0} is outside the 64-bit integer range")]
    OutOfRange(String),
    /// The arithmetic overflowed.
    #[error("{0} overflows a 64-bit integer")]
    Overflow(String),
    /// A text stage met bytes that are not UTF-8.
    #[error("invalid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
}

/// The output batch a stage writes its records into.
///
/// Its bytes are always initialised (the buffer only grows), and `len`
/// marks how much is filled, so a record can be formatted straight into a
/// fixed-size slot at the end without a temporary copy or a fill.
#[derive(Debug, Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    len: usize,
}

impl OutBuf {
    /// An empty batch with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> OutBuf {
        OutBuf {
            buf: vec![0; capacity],
            len: 0,
        }
    }

    /// The filled bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Bytes filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the batch (keeps the memory).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    #[inline(always)]
    fn room(&mut self, n: usize) {
        if self.len + n > self.buf.len() {
            self.buf.resize((self.len + n).max(self.buf.len() * 2), 0);
        }
    }

    /// Appends bytes.
    #[inline]
    pub fn extend(&mut self, bytes: &[u8]) {
        self.room(bytes.len());
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, b: u8) {
        self.room(1);
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// Appends `v` in decimal and a newline, formatted in place.
    #[inline(always)]
    pub fn push_i64_line(&mut self, v: i64) {
        self.room(int::LINE_BUF);
        let slot: &mut [u8; int::LINE_BUF] = (&mut self.buf[self.len..self.len + int::LINE_BUF])
            .try_into()
            .expect("slot size");
        self.len += int::format_i64_line(v, slot);
    }
}

/// Quotes (part of) a record for an error message.
fn quote(record: &[u8]) -> String {
    const MAX: usize = 40;
    let shown = String::from_utf8_lossy(&record[..record.len().min(MAX)]);
    if record.len() > MAX {
        format!("{:?}...", shown)
    } else {
        format!("{:?}", shown)
    }
}

impl Stage {
    /// Transforms one record (without its newline). Appends the result and a
    /// newline to `out`, or nothing when the stage drops the record. Returns
    /// whether a record was written.
    pub fn apply(&self, record: &mut [u8], out: &mut OutBuf) -> Result<bool, RecordError> {
        match self {
            Stage::Add(n) => int_op(record, out, |v| v.checked_add(*n), |v| format!("{v} + {n}")),
            Stage::Mul(n) => int_op(record, out, |v| v.checked_mul(*n), |v| format!("{v} * {n}")),
            Stage::Neg => int_op(record, out, i64::checked_neg, |v| format!("-({v})")),
            Stage::Square => int_op(record, out, |v| v.checked_mul(v), |v| format!("{v}^2")),
            Stage::Upper | Stage::Lower => {
                let upper = matches!(self, Stage::Upper);
                let text = utf8(record)?;
                if text.is_ascii() {
                    if upper {
                        record.make_ascii_uppercase();
                    } else {
                        record.make_ascii_lowercase();
                    }
                    out.extend(record);
                } else if upper {
                    out.extend(text.to_uppercase().as_bytes());
                } else {
                    out.extend(text.to_lowercase().as_bytes());
                }
                out.push(b'\n');
                Ok(true)
            }
            Stage::Trim => {
                out.extend(utf8(record)?.trim().as_bytes());
                out.push(b'\n');
                Ok(true)
            }
            Stage::Grep(needle) => {
                if utf8(record)?.contains(needle.as_str()) {
                    out.extend(record);
                    out.push(b'\n');
                    Ok(true)
                } else {
                    Ok(false)
                }
            }
            Stage::Pass => {
                out.extend(record);
                out.push(b'\n');
                Ok(true)
            }
            Stage::Delay(d) => {
                std::thread::sleep(*d);
                out.extend(record);
                out.push(b'\n');
                Ok(true)
            }
        }
    }
}

/// Validates a text record.
fn utf8(record: &[u8]) -> Result<&str, RecordError> {
    std::str::from_utf8(record).map_err(|e| RecordError::InvalidUtf8(e.valid_up_to() + 1))
}

/// Parses an integer record, applies `op`, writes the result.
#[inline(always)]
fn int_op(
    record: &[u8],
    out: &mut OutBuf,
    op: impl Fn(i64) -> Option<i64>,
    describe: impl Fn(i64) -> String,
) -> Result<bool, RecordError> {
    let v = int::parse_i64(record).map_err(|e| match e {
        IntError::NotAnInteger => RecordError::NotAnInteger(quote(record)),
        IntError::OutOfRange => RecordError::OutOfRange(quote(record)),
    })?;
    let r = op(v).ok_or_else(|| RecordError::Overflow(describe(v)))?;
    out.push_i64_line(r);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: &str, record: &str) -> Result<String, RecordError> {
        let s = StageSpec::parse(spec).unwrap();
        let mut rec = record.as_bytes().to_vec();
        let mut out = OutBuf::default();
        s.stage.apply(&mut rec, &mut out)?;
        Ok(String::from_utf8(out.as_slice().to_vec()).unwrap())
    }

    #[test]
    fn each_stage_transforms() {
        assert_eq!(run("add 1", "41").unwrap(), "42\n");
        assert_eq!(run("add -5", "3").unwrap(), "-2\n");
        assert_eq!(run("mul 2", "-4").unwrap(), "-8\n");
        assert_eq!(run("neg", "7").unwrap(), "-7\n");
        assert_eq!(run("square", "-12").unwrap(), "144\n");
        assert_eq!(run("upper", "abc é").unwrap(), "ABC É\n");
        assert_eq!(run("lower", "ABC").unwrap(), "abc\n");
        assert_eq!(run("trim", "  x y \t").unwrap(), "x y\n");
        assert_eq!(run("grep b c", "abc d").unwrap(), "");
        assert_eq!(run("grep b c", "ab cd").unwrap(), "ab cd\n");
        assert_eq!(run("pass", "anything").unwrap(), "anything\n");
        assert_eq!(run("delay 1ms", "x").unwrap(), "x\n");
    }

    #[test]
    fn records_fail_with_reasons() {
        assert_eq!(
            run("mul 2", "abc").unwrap_err().to_string(),
            "\"abc\" is not an integer"
        );
        assert_eq!(
            run("add 1", "9223372036854775807").unwrap_err().to_string(),
            "9223372036854775807 + 1 overflows a 64-bit integer"
        );
        assert_eq!(
            run("neg", "-9223372036854775808").unwrap_err().to_string(),
            "-(-9223372036854775808) overflows a 64-bit integer"
        );
        let mut bad = b"ok\xff".to_vec();
        let err = Stage::Upper
            .apply(&mut bad, &mut OutBuf::default())
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid UTF-8 at byte 3");
    }

    #[test]
    fn specs_are_checked() {
        assert_eq!(StageSpec::parse(" add  3 ").unwrap().stage, Stage::Add(3));
        assert_eq!(
            StageSpec::parse("delay 250ms").unwrap().stage,
            Stage::Delay(Duration::from_millis(250))
        );
        for bad in [
            "",
            "add",
            "add x",
            "neg 1",
            "frobnicate",
            "grep",
            "delay soon",
        ] {
            assert!(StageSpec::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let e = StageSpec::parse("add").unwrap_err().to_string();
        assert!(e.contains("quote each stage"), "{e}");
    }
}
