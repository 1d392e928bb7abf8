//! Answering the complete lines of an input buffer: the pure heart of the server, with its tests.

use crate::protocol::{self, Request, MAX_LINE};

/// What [`answer_lines`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Every complete line was answered; a partial line may remain.
    Ok,
    /// The answers reached the budget: the lines after them are kept in
    /// the input buffer, unanswered, for a later call.
    Paused,
    /// A line is over [`MAX_LINE`]: `error: line too long` was appended, the
    /// input was discarded, and the connection must close.
    TooLong,
}

/// The heart of the server: answers each complete line of `inbuf` into
/// `outbuf`, calling `each` per request, and keeps a trailing partial line.
/// `scanned` remembers how far `inbuf` is known to hold no `\n`, so a long
/// line arriving in pieces is scanned once. Once `outbuf` holds `budget`
/// bytes or more, it stops and keeps the remaining lines ([`Lines::Paused`]);
/// so `outbuf` grows to at most `budget` plus one answer (`MAX_LINE + 1`).
pub fn answer_lines(
    inbuf: &mut Vec<u8>,
    scanned: &mut usize,
    outbuf: &mut Vec<u8>,
    budget: usize,
    mut each: impl FnMut(Request<'_>),
) -> Lines {
    let mut start = 0;
    loop {
        if outbuf.len() >= budget {
            inbuf.drain(..start);
            *scanned -= start;
            return Lines::Paused;
        }
        match inbuf[*scanned..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = *scanned + i;
                let line = &inbuf[start..end];
                if line.len() > MAX_LINE {
                    break;
                }
                let req = protocol::parse_request(line);
                protocol::write_reply(req, outbuf);
                each(req);
                start = end + 1;
                *scanned = start;
            }
            None => {
                *scanned = inbuf.len();
                if inbuf.len() - start <= MAX_LINE {
                    inbuf.drain(..start);
                    *scanned -= start;
                    return Lines::Ok;
                }
                break;
            }
        }
    }
    inbuf.clear();
    *scanned = 0;
    outbuf.extend_from_slice(protocol::TOO_LONG);
    Lines::TooLong
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, Vec<u8>, Lines) {
        let mut inbuf = input.to_vec();
        let mut scanned = 0;
        let mut out = Vec::new();
        let r = answer_lines(&mut inbuf, &mut scanned, &mut out, usize::MAX, |_| {});
        (inbuf, out, r)
    }

    #[test]
    fn answers_complete_lines_and_keeps_the_rest() {
        let (rest, out, r) = run(b"ping\nping x\nfoo\npi");
        assert_eq!(out, b"pong\npong x\nerror: unknown request\n");
        assert_eq!(rest, b"pi");
        assert_eq!(r, Lines::Ok);
    }

    #[test]
    fn a_long_line_in_pieces_is_refused() {
        let mut inbuf = Vec::new();
        let mut scanned = 0;
        let mut out = Vec::new();
        let piece = vec![b'x'; 1000];
        let mut result = Lines::Ok;
        for _ in 0..70 {
            inbuf.extend_from_slice(&piece);
            result = answer_lines(&mut inbuf, &mut scanned, &mut out, usize::MAX, |_| {});
            if result == Lines::TooLong {
                break;
            }
        }
        assert_eq!(result, Lines::TooLong);
        assert_eq!(out, protocol::TOO_LONG);
    }

    #[test]
    fn exactly_max_line_is_accepted() {
        let mut line = b"ping ".to_vec();
        line.resize(MAX_LINE, b'a');
        line.push(b'\n');
        let (_, out, r) = run(&line);
        assert_eq!(r, Lines::Ok);
        assert_eq!(out.len(), MAX_LINE + 1);
        line.insert(0, b'p');
        let (_, out, r) = run(&line);
        assert_eq!(r, Lines::TooLong);
        assert_eq!(out, protocol::TOO_LONG);
    }

    #[test]
    fn a_budget_pauses_and_resumes_with_the_same_answers() {
        let input = b"\n\nping a\nping b\n\nx\nping c\npar".repeat(50);
        let (_, whole, _) = run(&input);
        let mut inbuf = input.clone();
        let mut scanned = 0;
        let mut out = Vec::new();
        let mut turns = 0;
        loop {
            let mut chunk = Vec::new();
            let r = answer_lines(&mut inbuf, &mut scanned, &mut chunk, 40, |_| {});
            assert!(chunk.len() < 40 + 30, "{}", chunk.len());
            out.extend_from_slice(&chunk);
            turns += 1;
            if r == Lines::Ok {
                break;
            }
            assert_eq!(r, Lines::Paused);
        }
        assert!(turns > 10);
        assert_eq!(out, whole);
        assert_eq!(inbuf, b"par");
    }
}
