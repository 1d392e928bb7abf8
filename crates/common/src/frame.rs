//! Frames on pipes and sockets: a little-endian `u32` body length, then a
//! bincode 2 body (serde, standard configuration).
//!
//! Reading tells three outcomes apart: a clean end of stream before a frame
//! starts (`Ok(None)`), a stream cut inside a frame ([`FrameError::Truncated`]),
//! and a body that does not decode ([`FrameError::Malformed`]). A length over
//! the limit is refused before anything is allocated ([`FrameError::TooLarge`]).

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

/// Decodes a frame body (without its length prefix); trailing bytes are an error.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    let (msg, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the message",
            body.len() - used
        )));
    }
    Ok(msg)
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
    body.clear();
    body.resize(len as usize, 0);
    let got = read_full(r, body)?;
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

    #[test]
    fn garbage_body_is_malformed() {
        let mut wire = 3u32.to_le_bytes().to_vec();
        wire.extend_from_slice(&[0xff, 0xff, 0xff]);
        let err = read_frame::<_, Msg>(&mut &wire[..], 1024).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
        assert!(err.is_protocol_error());
    }
}
