//! Frames over non-blocking descriptors: an input buffer that yields whole
//! frames as their bytes arrive, and an output buffer that many frames are
//! appended to and that is written with as few `write(2)` calls as the
//! descriptor allows.
//!
//! The blocking helpers in `syncomm_common::frame` suit a process that waits
//! on one descriptor (the child, the client). The server waits on many with
//! `poll(2)`, so it must never block on one: it reads what is there, keeps a
//! partial frame for later, and keeps unwritten bytes for the next POLLOUT.

use std::io::{self, Read, Write};

use serde::Serialize;
use syncomm_common::frame::{self, FrameError, HEADER_LEN};

/// Bytes read from a descriptor, not yet taken as frames.
#[derive(Debug, Default)]
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
}

/// What [`InBuf::fill`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The descriptor has nothing more for now.
    Drained,
    /// The read limit was reached; more may be waiting.
    Limit,
    /// End of stream.
    Eof,
}

impl InBuf {
    /// Reads what `r` (non-blocking) has, up to about `limit` bytes.
    pub fn fill<R: Read>(&mut self, r: &mut R, limit: usize) -> io::Result<Fill> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let mut got = 0;
        loop {
            let len = self.buf.len();
            self.buf.resize(len + 64 * 1024, 0);
            let res = r.read(&mut self.buf[len..]);
            match res {
                Ok(0) => {
                    self.buf.truncate(len);
                    return Ok(Fill::Eof);
                }
                Ok(n) => {
                    self.buf.truncate(len + n);
                    got += n;
                    if got >= limit {
                        return Ok(Fill::Limit);
                    }
                }
                Err(e) => {
                    self.buf.truncate(len);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return Ok(Fill::Drained),
                        io::ErrorKind::Interrupted => {}
                        _ => return Err(e),
                    }
                }
            }
        }
    }

    /// The next whole frame's body, if it has fully arrived. A length over
    /// `max` is refused as soon as the 4-byte header is in.
    pub fn next_frame(&mut self, max: u32) -> Result<Option<&[u8]>, FrameError> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes(avail[..HEADER_LEN].try_into().expect("4 bytes"));
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        let end = HEADER_LEN + len as usize;
        if avail.len() < end {
            return Ok(None);
        }
        let body = self.start + HEADER_LEN..self.start + end;
        self.start += end;
        Ok(Some(&self.buf[body]))
    }

    /// Whether [`InBuf::next_frame`] would return something now: a whole
    /// frame, or the error for a header over `max`.
    pub fn frame_ready(&self, max: u32) -> bool {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            return false;
        }
        let len = u32::from_le_bytes(avail[..HEADER_LEN].try_into().expect("4 bytes"));
        len > max || avail.len() >= HEADER_LEN + len as usize
    }

    /// Bytes received but not yet taken as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The error for a stream that ended with `pending()` bytes of a frame.
    pub fn truncated(&self) -> FrameError {
        let avail = &self.buf[self.start..];
        let expected = if avail.len() >= HEADER_LEN {
            HEADER_LEN
                + u32::from_le_bytes(avail[..HEADER_LEN].try_into().expect("4 bytes")) as usize
        } else {
            HEADER_LEN
        };
        FrameError::Truncated {
            got: avail.len(),
            expected,
        }
    }

    /// Forgets everything buffered.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }
}

/// Frames waiting to be written.
#[derive(Debug, Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    start: usize,
}

impl OutBuf {
    /// Appends `msg` as one frame.
    pub fn push<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), FrameError> {
        frame::encode_frame_into(msg, &mut self.buf)
    }

    /// Bytes not yet written.
    pub fn unsent(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether everything has been written.
    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    /// Writes as much as `w` (non-blocking) takes now.
    pub fn flush_to<W: Write>(&mut self, w: &mut W) -> io::Result<()> {
        while !self.is_empty() {
            match w.write(&self.buf[self.start..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.start += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.is_empty() {
            self.buf.clear();
            self.start = 0;
        } else if self.start * 2 >= self.buf.len() {
            // Never empty (a busy caller): drop the written half, or the
            // buffer would grow for as long as the connection lives.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_arrive_in_pieces() {
        let mut wire = Vec::new();
        frame::encode_frame_into(&"hello".to_owned(), &mut wire).unwrap();
        frame::encode_frame_into(&"world".to_owned(), &mut wire).unwrap();
        let mut inbuf = InBuf::default();
        let mut got = Vec::new();
        for byte in wire.chunks(3) {
            inbuf.fill(&mut &byte[..], usize::MAX).unwrap();
            while let Some(body) = inbuf.next_frame(1024).unwrap() {
                got.push(frame::decode_body::<String>(body).unwrap());
            }
        }
        assert_eq!(got, ["hello", "world"]);
        assert_eq!(inbuf.pending(), 0);
    }

    #[test]
    fn oversize_refused_at_the_header() {
        let mut inbuf = InBuf::default();
        inbuf
            .fill(&mut &u32::MAX.to_le_bytes()[..], usize::MAX)
            .unwrap();
        assert!(matches!(
            inbuf.next_frame(1024),
            Err(FrameError::TooLarge { .. })
        ));
    }

    /// A descriptor that takes at most `room` bytes per `flush_to`.
    struct Trickle {
        room: usize,
        taken: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.room - self.taken);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.taken += n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_buffer_that_never_empties_stays_bounded() {
        let mut out = OutBuf::default();
        out.push(&"first".to_owned()).unwrap();
        let frame_len = out.unsent();
        // Each turn one frame in, one frame's worth out: never empty.
        for _ in 0..10_000 {
            out.push(&"again".to_owned()).unwrap();
            let mut w = Trickle {
                room: frame_len,
                taken: 0,
            };
            out.flush_to(&mut w).unwrap();
            assert_eq!(out.unsent(), frame_len);
        }
        assert!(out.buf.len() <= 4 * frame_len, "grew to {}", out.buf.len());
    }
}
