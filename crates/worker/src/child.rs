//! A child: `worker --stdio`. The seed's `workProcess(inQueue, outQueue)`.
//!
//! It reads [`Request`] frames from its stdin pipe (the in-queue), runs each
//! through the registry, and writes one [`Response`] frame per request to its
//! stdout pipe (the out-queue), in the order the requests came. Each response
//! is written with one `write(2)` before the next request starts, so the
//! server always knows exactly which request a dead child was running: the
//! oldest one without an answer.
//!
//! A panic inside a function is caught and becomes an error result; the child
//! goes on. `abort` (or a signal from outside) ends the child for real, and
//! the server notices the end of its stdout pipe.

use std::io::{self, BufReader};
use std::os::fd::AsFd;
use std::panic::{self, AssertUnwindSafe};

use nix::sys::signal::{SigHandler, Signal};
use syncomm_common::frame::{self, FrameError};

use crate::protocol::{CallError, CallErrorKind, Request, Response};
use crate::registry;

/// Why a child stopped other than by a clean end of its input.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The request stream was broken (not a frame, or cut).
    #[error("reading a request from stdin: {0}")]
    Read(#[source] FrameError),
    /// Writing a response failed (the server went away).
    #[error("writing a response to stdout: {0}")]
    Write(#[source] io::Error),
    /// A response could not be encoded.
    #[error("encoding a response: {0}")]
    Encode(#[source] FrameError),
}

/// Runs the child loop until stdin ends (the server closed it: stop).
///
/// `max_frame` bounds the request bodies accepted.
pub fn run_stdio(max_frame: u32) -> Result<(), ChildError> {
    // Ctrl-C in a terminal signals the whole foreground process group, and
    // a service manager may SIGTERM the whole group: the server decides when
    // its children stop (it closes their stdin after the calls in flight),
    // so they ignore both. SIGKILL (from the server, from PR_SET_PDEATHSIG,
    // or from a user) still ends them at once.
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: SIG_IGN installs no handler code; nothing else in this
        // process relies on these signals.
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigIgn) };
    }
    // A panic is reported to the caller as an error result; the default hook
    // would also print it on the server's stderr.
    panic::set_hook(Box::new(|_| {}));

    let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let stdout = io::stdout();
    let out_fd = stdout.as_fd();
    let mut body = Vec::new();
    let mut out = Vec::with_capacity(4096);
    loop {
        match frame::read_frame_body(&mut input, max_frame, &mut body) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(ChildError::Read(e)),
        }
        let response = match frame::decode_body::<Request>(&body) {
            Ok(req) => Response {
                id: req.id,
                result: run_caught(&req),
            },
            Err(e) => return Err(ChildError::Read(e)),
        };
        out.clear();
        frame::encode_frame_into(&response, &mut out).map_err(ChildError::Encode)?;
        write_all(out_fd, &out).map_err(ChildError::Write)?;
    }
}

/// Runs one request, turning a panic into an error result.
fn run_caught(req: &Request) -> Result<crate::protocol::Value, CallError> {
    match panic::catch_unwind(AssertUnwindSafe(|| {
        registry::call(&req.function, &req.args)
    })) {
        Ok(result) => result,
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_owned());
            Err(CallError::new(
                CallErrorKind::Panicked,
                format!(
                    "panicked: {why} (worker pid {} lives on)",
                    std::process::id()
                ),
            ))
        }
    }
}

/// Writes all of `buf` with `write(2)` directly on the descriptor (no
/// user-space buffer to lose if the process dies right after).
fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
