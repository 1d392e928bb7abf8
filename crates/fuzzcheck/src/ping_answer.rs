//! Fuzz check: an answer as `ping-client` checks it.
//!
//! Runs the client's own [`check_answer`] (what `ping-client` and the flood
//! mode run on the bytes of each answer) as its read loop does: the bytes
//! arrive in pieces, the check runs after each, the first decision stands;
//! at end of stream [`verdict_at_eof`] decides. Asserts:
//! - a match only when exactly the expected answer came, and always when it
//!   came (in any pieces);
//! - the decision taken at the first `\n` depends only on that line:
//!   `error: server busy` → busy, `error: idle timeout` → idle, anything
//!   but the expected answer → unexpected; a decision before any `\n` only
//!   for a line already longer than any answer the server gives (so how the
//!   bytes are split never changes the verdict);
//! - the client never holds more than the longest answer plus one piece;
//! - the message shows the start of what came, at most `SHOWN` bytes.
//!
//! Input layout: byte 0 = payload bytes of the ping (`-s`), byte 1 = piece
//! size (1..=255), the rest = the bytes the server sends.

use syncomm_ping::client::{
    check_answer, longest_answer, verdict_at_eof, PingError, Verdict, SHOWN,
};
use syncomm_ping::protocol::{self, expected_pong, make_payload};

/// Runs the check on `data`.
pub fn check(data: &[u8]) {
    let [len, piece, stream @ ..] = data else {
        return;
    };
    let expected = expected_pong(&make_payload(*len as usize));
    let piece = (*piece as usize).max(1);
    let longest = longest_answer(&expected);
    let lossy = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(SHOWN)]).into_owned();

    let mut buf = Vec::new();
    let mut verdict = Verdict::Incomplete;
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        assert!(
            buf.len() <= longest + piece,
            "the client holds {} bytes",
            buf.len()
        );
        verdict = check_answer(&buf, &expected);
        if verdict != Verdict::Incomplete {
            break;
        }
    }
    if stream == expected.as_slice() {
        assert_eq!(verdict, Verdict::Match, "the right answer was not taken");
    }
    let first_nl = stream.iter().position(|&b| b == b'\n');
    match (&verdict, buf.iter().position(|&b| b == b'\n')) {
        (Verdict::Incomplete, _) => {
            // Only undecided when no line came and it could still be a right one.
            assert_eq!(first_nl, None);
            assert!(stream.len() <= longest);
            match verdict_at_eof(&buf) {
                Err(PingError::Busy) => assert!(buf.starts_with(b"error: server busy")),
                Err(PingError::Closed) => assert!(buf.is_empty()),
                Err(PingError::Unexpected(shown)) => {
                    assert!(!buf.is_empty());
                    assert_eq!(shown, lossy(&buf));
                }
                other => panic!("at end of stream: {other:?}"),
            }
        }
        (v, Some(end)) => {
            // Decided at the first line: by that line alone.
            assert_eq!(Some(end), first_nl);
            let line = &buf[..=end];
            let want = if line == expected.as_slice() {
                if buf.len() == end + 1 {
                    Verdict::Match
                } else {
                    Verdict::Unexpected(lossy(&line[..end]))
                }
            } else if line == protocol::BUSY {
                Verdict::Busy
            } else if line == protocol::IDLE {
                Verdict::Idle
            } else {
                Verdict::Unexpected(lossy(&line[..end]))
            };
            assert_eq!(*v, want);
        }
        (v, None) => {
            // Decided before any \n: the line is already too long to be an answer.
            assert!(buf.len() > longest, "decided on {} bytes", buf.len());
            assert!(first_nl.map_or(true, |e| e + 1 > longest));
            assert_eq!(*v, Verdict::Unexpected(lossy(&buf)));
        }
    }
    if let Verdict::Match = verdict {
        assert_eq!(buf, expected);
    }
}
