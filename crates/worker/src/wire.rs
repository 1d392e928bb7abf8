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

/// A buffer emptied with more room than this gives it back, so a connection
/// that once sent (or was sent) a large frame does not keep its memory.
pub const KEEP_CAPACITY: usize = 64 * 1024;

/// Bytes read per `read(2)`.
const CHUNK: usize = 64 * 1024;

thread_local! {
    /// The chunk each `read(2)` lands in, zeroed once per thread: a fresh
    /// zeroed 64 KiB array per fill cost a 64 KiB memset per call (and
    /// flushed the L1 cache) for reads of a few dozen bytes.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; CHUNK].into_boxed_slice());
}

/// Bytes read from a descriptor, not yet taken as frames.
///
/// Memory follows what arrived: bytes are read into a scratch chunk and
/// appended, so no room is committed for bytes a frame header only promises.
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
    /// Reads what `r` (non-blocking) has, at most `limit` bytes (0: none,
    /// and [`Fill::Limit`] is returned). A read that returns less than asked
    /// ends it ([`Fill::Drained`]): the descriptor had no more.
    pub fn fill<R: Read>(&mut self, r: &mut R, limit: usize) -> io::Result<Fill> {
        self.compact();
        SCRATCH.with_borrow_mut(|chunk| {
            let mut got = 0;
            loop {
                let want = CHUNK.min(limit - got);
                if want == 0 {
                    return Ok(Fill::Limit);
                }
                match r.read(&mut chunk[..want]) {
                    Ok(0) => return Ok(Fill::Eof),
                    Ok(n) => {
                        self.buf.extend_from_slice(&chunk[..n]);
                        got += n;
                        if n < want {
                            // A short read emptied the pipe or socket:
                            // another read would only say EAGAIN (an end
                            // of stream is seen at the next readiness).
                            return Ok(Fill::Drained);
                        }
                    }
                    Err(e) => match e.kind() {
                        io::ErrorKind::WouldBlock => return Ok(Fill::Drained),
                        io::ErrorKind::Interrupted => {}
                        _ => return Err(e),
                    },
                }
            }
        })
    }

    /// Drops the bytes already taken as frames (when they are at least half
    /// the buffer), and gives back a large allocation once all is taken.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.start = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        } else if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Bytes this buffer holds: what was read and not yet given back
    /// (room allocated beyond it is never written, so it costs no memory).
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Bytes still to come of a frame whose header (within `max`) is in
    /// and whose body is not complete; `None` otherwise.
    pub fn missing(&self, max: u32) -> Option<usize> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_LEN {
            return None;
        }
        let len = u32::from_le_bytes(avail[..HEADER_LEN].try_into().expect("4 bytes"));
        let end = HEADER_LEN + len as usize;
        (len <= max && avail.len() < end).then(|| end - avail.len())
    }

    /// The next whole frame's body, if it has fully arrived. A length over
    /// `max` is refused as soon as the 4-byte header is in.
    pub fn next_frame(&mut self, max: u32) -> Result<Option<&[u8]>, FrameError> {
        if self.start > 0 && self.start == self.buf.len() {
            self.compact();
        }
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

    /// Forgets everything buffered, and gives its memory back.
    pub fn clear(&mut self) {
        self.buf = Vec::new();
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

    /// Bytes this buffer holds (written ones not yet dropped included).
    pub fn held(&self) -> usize {
        self.buf.len()
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
            self.start = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
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

    /// A read limit is exact, and a buffer emptied of a large frame gives
    /// its memory back.
    #[test]
    fn limit_is_exact_and_memory_is_given_back() {
        let big = vec![7u8; 300_000];
        let mut wire = Vec::new();
        frame::encode_frame_into(&big, &mut wire).unwrap();
        let mut inbuf = InBuf::default();
        let mut r = &wire[..];
        assert_eq!(inbuf.fill(&mut r, 1000).unwrap(), Fill::Limit);
        assert_eq!(inbuf.pending(), 1000);
        assert_eq!(inbuf.missing(u32::MAX), Some(wire.len() - 1000));
        assert_eq!(inbuf.missing(1000), None);
        assert_eq!(inbuf.fill(&mut r, 0).unwrap(), Fill::Limit);
        // The rest arrives, the last read short; the end shows next time.
        assert_eq!(inbuf.fill(&mut r, usize::MAX).unwrap(), Fill::Drained);
        assert_eq!(inbuf.fill(&mut r, usize::MAX).unwrap(), Fill::Eof);
        let body = inbuf.next_frame(u32::MAX).unwrap().unwrap().to_vec();
        assert_eq!(frame::decode_body::<Vec<u8>>(&body).unwrap(), big);
        assert!(inbuf.held() > KEEP_CAPACITY);
        assert!(inbuf.next_frame(u32::MAX).unwrap().is_none());
        assert_eq!((inbuf.held(), inbuf.buf.capacity()), (0, 0));
    }

    /// A descriptor with `left` bytes that says EAGAIN once they are read,
    /// counting the reads.
    struct Pipe {
        left: usize,
        reads: usize,
    }

    impl Read for Pipe {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            if self.left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
    }

    /// A read shorter than asked ends the fill: no second read that could
    /// only say EAGAIN (the server made two per call).
    #[test]
    fn a_short_read_is_the_last_one() {
        let mut inbuf = InBuf::default();
        let mut pipe = Pipe { left: 24, reads: 0 };
        assert_eq!(inbuf.fill(&mut pipe, usize::MAX).unwrap(), Fill::Drained);
        assert_eq!((inbuf.pending(), pipe.reads), (24, 1));
        // A full chunk may be followed by more: read on.
        let mut pipe = Pipe {
            left: CHUNK + 5,
            reads: 0,
        };
        assert_eq!(inbuf.fill(&mut pipe, usize::MAX).unwrap(), Fill::Drained);
        assert_eq!(pipe.reads, 2);
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
