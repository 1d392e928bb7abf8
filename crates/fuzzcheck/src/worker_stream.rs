//! Fuzz check: a byte stream cut anywhere, split into frames by the server's
//! input buffer (`syncomm_worker::wire::InBuf`), as it reads callers'
//! sockets and children's pipes.
//!
//! Input layout: byte 0 picks the frame size limit (`16 × (byte 0 + 1)`),
//! byte 1 is how many of the next bytes are chunk sizes (at most 16, cycled;
//! 0 stands for 1); the rest is the stream. The stream is fed to an `InBuf`
//! chunk by chunk, taking every frame as soon as it is ready, and the result
//! must equal a one-shot split of the whole stream: the same bodies, the same
//! refusal of an oversized header at the same place, the same bytes left
//! pending (and `frame_ready` must agree with `next_frame` at every step).

use syncomm_common::frame::{FrameError, HEADER_LEN};
use syncomm_worker::wire::InBuf;

/// How a stream splits: its bodies, then a refusal or the bytes left over.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    bodies: Vec<Vec<u8>>,
    too_large: Option<u32>,
    pending: usize,
}

/// The reference: split the whole stream at once.
fn one_shot(stream: &[u8], max: u32) -> Split {
    let mut bodies = Vec::new();
    let mut at = 0;
    loop {
        let rest = &stream[at..];
        if rest.len() < HEADER_LEN {
            break;
        }
        let len = u32::from_le_bytes(rest[..HEADER_LEN].try_into().unwrap());
        if len > max {
            return Split {
                bodies,
                too_large: Some(len),
                pending: rest.len(),
            };
        }
        let end = HEADER_LEN + len as usize;
        if rest.len() < end {
            break;
        }
        bodies.push(rest[HEADER_LEN..end].to_vec());
        at += end;
    }
    Split {
        bodies,
        too_large: None,
        pending: stream.len() - at,
    }
}

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let max = 16 * (u32::from(data[0]) + 1);
    let n = usize::from(data[1] % 17).min(data.len() - 2);
    let sizes: Vec<usize> = data[2..2 + n]
        .iter()
        .map(|&b| usize::from(b).max(1))
        .collect();
    let stream = &data[2 + n..];
    let want = one_shot(stream, max);

    let mut inbuf = InBuf::default();
    let mut got = Split {
        bodies: Vec::new(),
        too_large: None,
        pending: 0,
    };
    let mut fed = 0;
    let mut turn = 0;
    'feed: while fed < stream.len() {
        let size = sizes
            .get(turn % sizes.len().max(1))
            .copied()
            .unwrap_or(stream.len());
        turn += 1;
        let chunk = &stream[fed..(fed + size).min(stream.len())];
        fed += chunk.len();
        inbuf
            .fill(&mut &chunk[..], usize::MAX)
            .expect("reading a slice");
        loop {
            let ready = inbuf.frame_ready(max);
            match inbuf.next_frame(max) {
                Ok(Some(body)) => {
                    assert!(ready, "frame_ready said no, next_frame gave a frame");
                    got.bodies.push(body.to_vec());
                }
                Ok(None) => {
                    assert!(!ready, "frame_ready said yes, next_frame gave nothing");
                    break;
                }
                Err(FrameError::TooLarge { len, max: m }) => {
                    assert!(ready && m == max);
                    got.too_large = Some(len);
                    // What the server has not consumed (it closes the
                    // connection here); the rest of the stream never arrives.
                    got.pending = inbuf.pending() + (stream.len() - fed);
                    break 'feed;
                }
                Err(e) => panic!("next_frame: {e}"),
            }
        }
        assert!(inbuf.pending() <= fed);
    }
    if got.too_large.is_none() {
        got.pending = inbuf.pending();
        if got.pending > 0 {
            // The stream ended inside a frame: the error says how far.
            match inbuf.truncated() {
                FrameError::Truncated { got: g, expected } => {
                    assert_eq!(g, got.pending);
                    assert!(expected > g);
                }
                e => panic!("truncated() gave {e}"),
            }
        }
    }
    assert_eq!(got, want);
}
