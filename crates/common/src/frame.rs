//! Frames on pipes and sockets: a little-endian `u32` body length, then a
//! bincode 2 body (serde, standard configuration).
//!
//! Reading tells three outcomes apart: a clean end of stream before a frame
//! starts (`Ok(None)`), a stream cut inside a frame ([`FrameError::Truncated`]),
//! and a body that does not decode ([`FrameError::Malformed`]). A length over
//! the limit is refused before anything is allocated ([`FrameError::TooLarge`]).
//!
//! ## Decoding is bounded by what was received
//! Every body, from a caller, a child or a server, is decoded by
//! [`decode_body`] and nowhere else. It runs bincode with a byte limit
//! derived from the body's own length ([`decode_limit`]: the next power of
//! two of [`CLAIM_FACTOR`] × the length, at least [`MIN_DECODE_LIMIT`]), so a
//! body that *declares* a string or byte vector longer than it can hold is
//! refused before the allocation: what decoding allocates for strings is at
//! most 2 × [`CLAIM_FACTOR`] × the body length + [`MIN_DECODE_LIMIT`]. The
//! factor is the most bincode claims per byte received (a one-byte varint
//! `u64` counts as 8). Reading a frame allocates only as its bytes arrive, so
//! a length prefix that promises 16 MiB costs what was actually sent.
//!
//! Sequences decoded through serde are not claimed by bincode, and serde's
//! own `Vec` preallocates up to 1 MiB from the declared length: message types
//! with sequences or recursion must cap both themselves (the worker's `Value`
//! does: a depth limit and a capped initial capacity). A body breaking any of
//! these limits is [`FrameError::Malformed`], a protocol error.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The default largest body accepted: 16 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024 * 1024;

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

/// What went wrong with a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The announced body is larger than the limit.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// Announced body length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes received of the frame (header included).
        got: usize,
        /// Bytes the frame needed (header included).
        expected: usize,
    },
    /// The body is not a valid encoding of the expected message.
    #[error("malformed frame body: {0}")]
    Malformed(String),
    /// The message could not be encoded.
    #[error("cannot encode frame: {0}")]
    Encode(String),
}

impl FrameError {
    /// Whether the error is a problem with the bytes received (as opposed to
    /// the I/O itself): the peer sent something that is not a frame.
    pub fn is_protocol_error(&self) -> bool {
        !matches!(self, FrameError::Io(_) | FrameError::Encode(_))
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// The most bytes bincode counts against its limit per byte of body: a
/// varint `u64` of one byte claims 8 (`size_of::<u64>()`), and nothing
/// claims more per byte received.
pub const CLAIM_FACTOR: usize = 8;

/// The smallest decode limit (small bodies share one instantiation).
pub const MIN_DECODE_LIMIT: usize = 4096;

/// The bincode byte limit used to decode a body of `len` bytes: the next
/// power of two of `CLAIM_FACTOR * len`, at least [`MIN_DECODE_LIMIT`].
pub fn decode_limit(len: usize) -> usize {
    len.saturating_mul(CLAIM_FACTOR)
        .max(MIN_DECODE_LIMIT)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
}

/// Decodes with a compile-time bincode limit of `N` bytes.
fn decode_limited<T: DeserializeOwned, const N: usize>(body: &[u8]) -> Result<T, FrameError> {
    let cfg = bincode::config::standard().with_limit::<N>();
    let (msg, used) = bincode::serde::decode_from_slice(body, cfg).map_err(|e| {
        FrameError::Malformed(match e {
            bincode::error::DecodeError::LimitExceeded => format!(
                "it declares more data than its {} bytes can hold",
                body.len()
            ),
            bincode::error::DecodeError::OtherString(why) => why,
            other => other.to_string(),
        })
    })?;
    if used != body.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the message",
            body.len() - used
        )));
    }
    Ok(msg)
}

/// Picks the instantiation of [`decode_limited`] whose limit is `limit`
/// (a power of two from 2^12 to 2^35: bodies up to 4 GiB).
macro_rules! decode_with_limit {
    ($limit:expr, $body:expr, $($shift:literal)*) => {
        match $limit {
            $(l if l <= 1usize << $shift => decode_limited::<T, { 1usize << $shift }>($body),)*
            _ => Err(FrameError::Malformed(format!(
                "a body of {} bytes is too large to decode",
                $body.len()
            ))),
        }
    };
}

/// Encodes `msg` as a whole frame (length prefix included), ready for one `write(2)`.
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = Vec::new();
    encode_frame_into(msg, &mut buf)?;
    Ok(buf)
}

/// Appends the frame for `msg` to `buf` (which may already hold other frames).
pub fn encode_frame_into<T: Serialize + ?Sized>(
    msg: &T,
    buf: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER_LEN]);
    bincode::serde::encode_into_std_write(msg, buf, config())
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = buf.len() - start - HEADER_LEN;
    let len = u32::try_from(len)
        .map_err(|_| FrameError::Encode(format!("body of {len} bytes is over 4 GiB")))?;
    buf[start..start + HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Decodes a frame body (without its length prefix); trailing bytes are an
/// error. Allocation is bounded by the body's length (see the module docs):
/// a body declaring more than it holds is [`FrameError::Malformed`].
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    decode_with_limit!(
        decode_limit(body.len()),
        body,
        12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35
    )
}

/// Writes `msg` as one frame with a single `write_all`.
pub fn write_frame<W: Write + ?Sized, T: Serialize + ?Sized>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let buf = encode_frame(msg)?;
    w.write_all(&buf)?;
    Ok(())
}

/// Reads exactly `buf.len()` bytes; returns how many were read before a clean EOF.
fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads one frame body into `body` (reusing its allocation).
///
/// Returns `Ok(false)` on a clean end of stream before the frame started.
pub fn read_frame_body<R: Read + ?Sized>(
    r: &mut R,
    max: u32,
    body: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Ok(false);
    }
    if got < HEADER_LEN {
        return Err(FrameError::Truncated {
            got,
            expected: HEADER_LEN,
        });
    }
    let len = u32::from_le_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    // Grow only as bytes arrive: a prefix promising more than is sent
    // costs what was sent, not what was promised.
    body.clear();
    let got = r.take(u64::from(len)).read_to_end(body)?;
    if got < len as usize {
        return Err(FrameError::Truncated {
            got: HEADER_LEN + got,
            expected: HEADER_LEN + len as usize,
        });
    }
    Ok(true)
}

/// Reads and decodes one frame. `Ok(None)` is a clean end of stream.
pub fn read_frame<R: Read + ?Sized, T: DeserializeOwned>(
    r: &mut R,
    max: u32,
) -> Result<Option<T>, FrameError> {
    let mut body = Vec::new();
    if !read_frame_body(r, max, &mut body)? {
        return Ok(None);
    }
    decode_body(&body).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Msg {
        id: u64,
        text: String,
    }

    #[test]
    fn round_trip_and_clean_eof() {
        let mut wire = Vec::new();
        let a = Msg {
            id: 1,
            text: "hello".into(),
        };
        let b = Msg {
            id: 2,
            text: "".into(),
        };
        write_frame(&mut wire, &a).unwrap();
        encode_frame_into(&b, &mut wire).unwrap();
        let mut r = &wire[..];
        assert_eq!(read_frame::<_, Msg>(&mut r, 1024).unwrap(), Some(a));
        assert_eq!(read_frame::<_, Msg>(&mut r, 1024).unwrap(), Some(b));
        assert_eq!(read_frame::<_, Msg>(&mut r, 1024).unwrap(), None);
    }

    #[test]
    fn cut_frame_is_truncated() {
        let wire = encode_frame(&Msg {
            id: 7,
            text: "abc".into(),
        })
        .unwrap();
        for cut in 1..wire.len() {
            let mut r = &wire[..cut];
            let err = read_frame::<_, Msg>(&mut r, 1024).unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { .. }),
                "cut {cut}: {err}"
            );
        }
    }

    #[test]
    fn oversized_is_refused_before_reading() {
        let wire = u32::MAX.to_le_bytes();
        let err = read_frame::<_, Msg>(&mut &wire[..], 1024).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: u32::MAX,
                max: 1024
            }
        ));
    }

    /// A body of a few bytes declaring a string of 2^60 bytes: refused by
    /// the limit before anything is allocated (it used to abort the process).
    #[test]
    fn declared_huge_string_is_malformed_not_allocated() {
        // id 1, then the string's length as a varint u64 (0xfd + 8 bytes LE).
        let mut body = vec![1u8, 0xfd];
        body.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let err = decode_body::<Msg>(&body).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
        assert!(err.to_string().contains("declares more data"), "{err}");
        // Same for a byte vector, and for a length just past what remains.
        let mut body = vec![0xfd];
        body.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(decode_body::<serde_bytes_like::Bytes>(&body).is_err());
        let body = [1u8, 200, b'a', b'b'];
        assert!(matches!(
            decode_body::<Msg>(&body),
            Err(FrameError::Malformed(_))
        ));
    }

    /// Real messages are never refused by the limit: a long string, and the
    /// densest claims (one-byte varints, each counted as 8 bytes).
    #[test]
    fn real_messages_fit_their_limit() {
        let big = Msg {
            id: u64::MAX,
            text: "x".repeat(3 << 20),
        };
        let wire = encode_frame(&big).unwrap();
        assert_eq!(decode_body::<Msg>(&wire[HEADER_LEN..]).unwrap(), big);
        for n in [0usize, 1, 7, 250, 251, 10_000, 300_000] {
            let zeros = vec![0u64; n];
            let wire = encode_frame(&zeros).unwrap();
            assert_eq!(decode_body::<Vec<u64>>(&wire[HEADER_LEN..]).unwrap(), zeros);
        }
        let one = encode_frame(&0u64).unwrap();
        assert_eq!(decode_body::<u64>(&one[HEADER_LEN..]).unwrap(), 0);
    }

    #[test]
    fn decode_limit_is_a_power_of_two_over_the_claims() {
        assert_eq!(decode_limit(0), MIN_DECODE_LIMIT);
        assert_eq!(decode_limit(512), MIN_DECODE_LIMIT);
        assert_eq!(decode_limit(513), 8192);
        for len in [1usize, 1000, 1 << 20, (16 << 20) + 4096, u32::MAX as usize] {
            let l = decode_limit(len);
            assert!(
                l.is_power_of_two()
                    && l >= CLAIM_FACTOR * len
                    && l < 2 * CLAIM_FACTOR * len.max(512)
            );
        }
    }

    /// A length prefix promising far more than is sent costs what was sent:
    /// the body buffer grows with the bytes that arrive.
    #[test]
    fn reading_allocates_only_what_arrives() {
        let mut wire = (DEFAULT_MAX_FRAME).to_le_bytes().to_vec();
        wire.extend_from_slice(&[0u8; 10]);
        let mut body = Vec::new();
        let err = read_frame_body(&mut &wire[..], DEFAULT_MAX_FRAME, &mut body).unwrap_err();
        assert!(
            matches!(err, FrameError::Truncated { got: 14, .. }),
            "{err}"
        );
        assert!(body.capacity() < 1 << 20, "{}", body.capacity());
    }

    /// A byte vector encoded the way serde_bytes would (for the test only).
    mod serde_bytes_like {
        #[derive(Debug)]
        pub struct Bytes(#[allow(dead_code)] pub Vec<u8>);
        impl<'de> serde::Deserialize<'de> for Bytes {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = Bytes;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                        Ok(Bytes(v))
                    }
                    fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                        Ok(Bytes(v.to_vec()))
                    }
                }
                d.deserialize_byte_buf(V)
            }
        }
    }

    #[test]
    fn garbage_body_is_malformed() {
        let mut wire = 3u32.to_le_bytes().to_vec();
        wire.extend_from_slice(&[0xff, 0xff, 0xff]);
        let err = read_frame::<_, Msg>(&mut &wire[..], 1024).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
        assert!(err.is_protocol_error());
    }
}
