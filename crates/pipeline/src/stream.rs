//! Running one stage over a byte stream: read big buffers, cut them into
//! lines in place, write big buffers.
//!
//! Memory is bounded: the input buffer starts at [`BUF_SIZE`] and grows only
//! to hold one line of up to [`MAX_LINE`] bytes; a longer line is an error
//! (except for `pass`, which never looks for lines and streams anything).
//! Output is written after every read, so a slow producer's records flow on at
//! once, while a fast producer's flow in large writes (as `cat` does).
//! A reader that went away (`EPIPE`) ends the stage quietly: [`End::ReaderLeft`].

use std::io::{self, Read, Write};

use crate::stage::{OutBuf, RecordError, Stage};

/// Size of the read buffer and of the output batches (bytes).
pub const BUF_SIZE: usize = 128 * 1024;
/// The longest line a line-cutting stage accepts (bytes, newline excluded).
pub const MAX_LINE: usize = 1024 * 1024;

/// Records read and written by a stage so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records (lines) read.
    pub records_in: u64,
    /// Records (lines) written.
    pub records_out: u64,
}

/// How a stage's stream ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Its input ended; everything was processed and written.
    Done,
    /// Its reader went away (`EPIPE`): nothing more can be delivered.
    ReaderLeft,
}

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A record could not be transformed.
    #[error("line {line}: {error}")]
    Record {
        /// 1-based line number in this stage's input.
        line: u64,
        /// Why.
        error: RecordError,
    },
    /// A line was longer than [`MAX_LINE`].
    #[error("line {line}: longer than {MAX_LINE} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: u64,
    },
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Read(#[source] io::Error),
    /// Writing the output failed (other than the reader leaving).
    #[error("writing output: {0}")]
    Write(#[source] io::Error),
}

/// Runs `stage` over `input` until it ends, writing to `output`; `counts`
/// is kept up to date even when the stage fails part-way.
pub fn run(
    stage: &Stage,
    input: &mut impl Read,
    output: &mut impl Write,
    counts: &mut Counts,
) -> Result<End, StreamError> {
    if *stage == Stage::Pass {
        return copy(input, output, counts);
    }
    let mut buf = vec![0u8; BUF_SIZE];
    let (mut start, mut end) = (0usize, 0usize);
    let mut out = OutBuf::with_capacity(BUF_SIZE * 2);
    // `delay` is for watching records move one by one: write each at once.
    let each = matches!(stage, Stage::Delay(_));
    loop {
        // Make room: drop consumed bytes, or grow for one long line.
        if start == end {
            (start, end) = (0, 0);
        } else if buf.len() - end < BUF_SIZE / 4 && start > 0 {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        } else if end == buf.len() {
            if buf.len() > MAX_LINE {
                flush(output, &mut out)?;
                return Err(StreamError::LineTooLong {
                    line: counts.records_in + 1,
                });
            }
            buf.resize((buf.len() * 2).min(MAX_LINE + 1), 0);
        }
        let n = read_some(input, &mut buf[end..]).map_err(StreamError::Read)?;
        if n == 0 {
            // End of input: a last line without its newline is still a record.
            if start < end {
                record(stage, &mut buf[start..end], &mut out, counts, output)?;
            }
            return flush(output, &mut out);
        }
        end += n;
        while let Some(nl) = buf[start..end].iter().position(|&b| b == b'\n') {
            record(stage, &mut buf[start..start + nl], &mut out, counts, output)?;
            start += nl + 1;
            if (each || out.len() >= BUF_SIZE) && flush(output, &mut out)? == End::ReaderLeft {
                return Ok(End::ReaderLeft);
            }
        }
        if start == end && buf.len() - end < BUF_SIZE / 4 {
            (start, end) = (0, 0);
        }
        if flush(output, &mut out)? == End::ReaderLeft {
            return Ok(End::ReaderLeft);
        }
    }
}

/// Applies the stage to one record, counting; on error, first delivers what
/// came before it.
#[inline]
fn record(
    stage: &Stage,
    rec: &mut [u8],
    out: &mut OutBuf,
    counts: &mut Counts,
    output: &mut impl Write,
) -> Result<(), StreamError> {
    counts.records_in += 1;
    match stage.apply(rec, out) {
        Ok(written) => {
            counts.records_out += u64::from(written);
            Ok(())
        }
        Err(error) => {
            let _ = flush(output, out);
            Err(StreamError::Record {
                line: counts.records_in,
                error,
            })
        }
    }
}

/// `pass`: copies whole buffers, only counting newlines.
fn copy(
    input: &mut impl Read,
    output: &mut impl Write,
    counts: &mut Counts,
) -> Result<End, StreamError> {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut last = b'\n';
    loop {
        let n = read_some(input, &mut buf).map_err(StreamError::Read)?;
        if n == 0 {
            if last != b'\n' {
                counts.records_in += 1;
                counts.records_out += 1;
            }
            return Ok(End::Done);
        }
        let chunk = &buf[..n];
        let lines = count_newlines(chunk);
        last = chunk[n - 1];
        match output.write_all(chunk) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(End::ReaderLeft),
            Err(e) => return Err(StreamError::Write(e)),
        }
        counts.records_in += lines;
        counts.records_out += lines;
    }
}

/// Counts `\n` bytes fast: per block of 255 bytes the count fits a `u8`,
/// which lets the compiler compare 16 or 32 bytes per instruction.
pub fn count_newlines(bytes: &[u8]) -> u64 {
    bytes
        .chunks(255)
        .map(|block| {
            let n = block
                .iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b == b'\n')));
            u64::from(n)
        })
        .sum()
}

/// One `read(2)`, retried on `EINTR`.
fn read_some(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match input.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Writes and empties `out`; the reader leaving is `Ok(ReaderLeft)`.
fn flush(output: &mut impl Write, out: &mut OutBuf) -> Result<End, StreamError> {
    if out.is_empty() {
        return Ok(End::Done);
    }
    let r = output.write_all(out.as_slice());
    out.clear();
    match r {
        Ok(()) => Ok(End::Done),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(End::ReaderLeft),
        Err(e) => Err(StreamError::Write(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::StageSpec;

    fn through(spec: &str, input: &[u8]) -> (Result<End, StreamError>, Vec<u8>, Counts) {
        let stage = StageSpec::parse(spec).unwrap().stage;
        let mut out = Vec::new();
        let mut counts = Counts::default();
        let r = run(&stage, &mut &input[..], &mut out, &mut counts);
        (r, out, counts)
    }

    #[test]
    fn integers_flow_and_are_counted() {
        let (r, out, c) = through("add 1", b"1\n2\n3");
        assert_eq!(r.unwrap(), End::Done);
        assert_eq!(out, b"2\n3\n4\n");
        assert_eq!(
            c,
            Counts {
                records_in: 3,
                records_out: 3
            }
        );
    }

    #[test]
    fn bad_record_names_its_line_after_delivering_the_good_ones() {
        let (r, out, _) = through("mul 2", b"1\n2\nabc\n4\n");
        assert_eq!(
            r.unwrap_err().to_string(),
            "line 3: \"abc\" is not an integer"
        );
        assert_eq!(out, b"2\n4\n");
    }

    #[test]
    fn newlines_are_counted_across_blocks() {
        let data: Vec<u8> = (0..10_000u32)
            .map(|i| if i % 3 == 0 { b'\n' } else { b'x' })
            .collect();
        assert_eq!(count_newlines(&data), 3334);
        assert_eq!(count_newlines(&[b'\n'; 1000]), 1000);
    }

    #[test]
    fn pass_is_byte_exact() {
        let data: Vec<u8> = (0..1_000_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let (r, out, _) = through("pass", &data);
        assert_eq!(r.unwrap(), End::Done);
        assert_eq!(out, data);
    }

    #[test]
    fn long_lines_are_bounded() {
        let mut data = vec![b'a'; MAX_LINE + 10];
        data.push(b'\n');
        let (r, _, _) = through("upper", &data);
        assert!(matches!(r, Err(StreamError::LineTooLong { line: 1 })));
        let mut ok = vec![b'a'; MAX_LINE];
        ok.push(b'\n');
        let (r, out, _) = through("upper", &ok);
        assert_eq!(r.unwrap(), End::Done);
        assert_eq!(out.len(), MAX_LINE + 1);
    }

    #[test]
    fn many_lines_across_buffer_edges() {
        let input: String = (0..200_000).map(|i| format!("{i}\n")).collect();
        let expect: String = (0..200_000).map(|i| format!("{}\n", -(i * 3))).collect();
        let (r, out, c) = through("mul -3", input.as_bytes());
        r.unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expect);
        assert_eq!(c.records_out, 200_000);
    }
}
