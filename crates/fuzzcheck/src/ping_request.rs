//! Fuzz check: request lines as `ping-server` reads and answers them.
//!
//! Runs the server's own [`answer_lines`] (the code its event loop runs on
//! each connection's input buffer) over the input delivered in pieces, with
//! an answer budget, the way the loop does: answer, take the answers away,
//! answer the lines that waited, read the next piece; at end of stream a
//! partial line is answered as a line. Asserts against a plain model of the
//! protocol:
//! - the answers are exactly the model's, whatever the pieces and budget:
//!   `ping` → `pong`, `ping X` → `pong X` (X echoed exactly), anything else
//!   `error: unknown request`, and a line over `MAX_LINE` bytes ends
//!   everything with `error: line too long`;
//! - the input buffer never holds more than `MAX_LINE` bytes plus one piece,
//!   and no complete line after a call that answered everything;
//! - the answers of one call never exceed the budget plus one answer;
//! - one request is counted per answered line.
//!
//! Input layout: byte 0 = piece size (1..=255), byte 1 = options (bit 0: pad
//! the first 0xFE byte into a run of about `MAX_LINE` bytes, so lines at and
//! just past the limit are reached; bits 1-5: the run's offset from the
//! limit; bits 6-7: the budget), the rest = the bytes a client sends.

use syncomm_ping::protocol::{self, MAX_LINE};
use syncomm_ping::server::{answer_lines, Lines, OUT_BUDGET};

/// Runs the check on `data`.
pub fn check(data: &[u8]) {
    let [piece, opts, rest @ ..] = data else {
        return;
    };
    let piece = (*piece as usize).max(1);
    let budget = [OUT_BUDGET, 1, 100, usize::MAX][(*opts >> 6) as usize];
    let stream = build_stream(*opts, rest);
    let got = serve(&stream, piece, budget);
    assert_eq!(got, model(&stream), "answers differ from the protocol's");
}

/// The bytes sent, with the optional run of about `MAX_LINE` bytes.
fn build_stream(opts: u8, rest: &[u8]) -> Vec<u8> {
    let mut stream = rest.to_vec();
    if opts & 1 == 1 {
        if let Some(i) = stream.iter().position(|&b| b == 0xFE) {
            let len = MAX_LINE - 16 + ((opts >> 1) & 31) as usize;
            stream.splice(i..=i, std::iter::repeat(b'x').take(len));
        }
    }
    stream
}

/// The server's code over the stream, delivered `piece` bytes at a time.
fn serve(stream: &[u8], piece: usize, budget: usize) -> Vec<u8> {
    let mut inbuf = Vec::new();
    let mut scanned = 0;
    let mut answers = Vec::new();
    let mut out = Vec::new();
    let mut call = |inbuf: &mut Vec<u8>, scanned: &mut usize, answers: &mut Vec<u8>| -> bool {
        loop {
            let mut requests = 0usize;
            let r = answer_lines(inbuf, scanned, &mut out, budget, |_| requests += 1);
            assert!(*scanned <= inbuf.len(), "scanned past the buffer");
            // It stops once the budget is reached: at most one answer past it.
            assert!(
                out.len() <= budget.saturating_add(MAX_LINE),
                "one call queued {} bytes of answers (budget {budget})",
                out.len()
            );
            let lines = out.iter().filter(|&&b| b == b'\n').count();
            match r {
                Lines::TooLong => {
                    assert!(out.ends_with(protocol::TOO_LONG));
                    assert_eq!(lines, requests + 1);
                    assert!(inbuf.is_empty());
                }
                Lines::Ok | Lines::Paused => {
                    // Answers end in \n and echo no \n: one line per request.
                    assert_eq!(lines, requests, "one answer line per request");
                    // What was left (a partial line) plus one piece, at most.
                    assert!(inbuf.len() <= MAX_LINE + piece + 1);
                }
            }
            if r == Lines::Ok {
                assert!(!inbuf.contains(&b'\n'), "a complete line left unanswered");
                assert!(inbuf.len() <= MAX_LINE, "a partial line over MAX_LINE kept");
            }
            answers.append(&mut out);
            match r {
                Lines::Paused => continue,
                Lines::Ok => return true,
                Lines::TooLong => return false,
            }
        }
    };
    for chunk in stream.chunks(piece) {
        inbuf.extend_from_slice(chunk);
        if !call(&mut inbuf, &mut scanned, &mut answers) {
            return answers;
        }
    }
    if !inbuf.is_empty() {
        // End of stream: the partial line is answered as a line.
        inbuf.push(b'\n');
        call(&mut inbuf, &mut scanned, &mut answers);
    }
    answers
}

/// The protocol, plainly.
fn model(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut lines: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    // The piece after the last \n: a partial line (answered at end of stream) or nothing.
    let tail = lines.pop().unwrap_or_default();
    if !tail.is_empty() {
        lines.push(tail);
    }
    for line in lines {
        if line.len() > MAX_LINE {
            out.extend_from_slice(protocol::TOO_LONG);
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"ping" {
            out.extend_from_slice(b"pong\n");
        } else if let Some(payload) = line.strip_prefix(b"ping ") {
            out.extend_from_slice(b"pong ");
            out.extend_from_slice(payload);
            out.push(b'\n');
        } else {
            out.extend_from_slice(protocol::UNKNOWN);
        }
    }
    out
}
