//! A child: `worker --stdio`. The seed's `workProcess(inQueue, outQueue)`.
//!
//! It reads [`Request`] frames from its stdin pipe (the in-queue), runs each
//! through the registry, and writes one [`Response`] frame per request to its
//! stdout pipe (the out-queue), in the order the requests came.
//!
//! Answers are written in batches: while another whole request is already
//! read (the server pipelines calls), the answer waits in a buffer, and the
//! buffer is written with one `write(2)` once no whole request remains to
//! run (a pipelined burst costs one write per read, not one per call).
//! Only answers of calls that cannot block or end the process wait so
//! (`holds_back`): before any other call starts, every answer is written,
//! so the server always knows which request a dead or overdue child was
//! running: the oldest one without an answer. (A child killed from outside
//! in the middle of a burst of quick calls loses the answers it had not
//! yet written; the server answers the oldest of those calls with the
//! child's death and runs the rest again.)
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
///
/// # Process-wide effects
/// This takes over the whole process, as its name says: it sets SIGINT and
/// SIGTERM to be ignored and replaces the panic hook, for every thread, and
/// owns stdin and stdout. Call it only from the `worker --stdio` child's
/// `main`, never from a process that has other work.
pub fn take_over_process_as_child(max_frame: u32) -> Result<(), ChildError> {
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
    let flush = |out: &mut Vec<u8>| -> Result<(), ChildError> {
        let res = write_all(out_fd, out).map_err(ChildError::Write);
        out.clear();
        res
    };
    loop {
        // About to block for the next request: the answers so far go out.
        if !out.is_empty() && !whole_frame(input.buffer()) {
            flush(&mut out)?;
        }
        let read = frame::read_frame_body(&mut input, max_frame, &mut body);
        let req = match read.map(|more| more.then(|| frame::decode_body::<Request>(&body))) {
            Ok(Some(Ok(req))) => req,
            Ok(None) => return flush(&mut out),
            Ok(Some(Err(e))) | Err(e) => {
                // The answers before the bad frame still count.
                let _ = flush(&mut out);
                return Err(ChildError::Read(e));
            }
        };
        if !out.is_empty() && (!holds_back(&req.function) || out.len() >= OUT_BATCH) {
            flush(&mut out)?;
        }
        let response = Response {
            id: req.id,
            result: run_caught(&req),
        };
        frame::encode_frame_into(&response, &mut out).map_err(ChildError::Encode)?;
    }
}

/// Buffered answers beyond this are written before the next call.
const OUT_BATCH: usize = 64 * 1024;

/// Whether `buf` starts with a whole frame (header and body).
fn whole_frame(buf: &[u8]) -> bool {
    buf.len() >= frame::HEADER_LEN && {
        let len = u32::from_le_bytes(buf[..frame::HEADER_LEN].try_into().expect("4 bytes"));
        buf.len() - frame::HEADER_LEN >= len as usize
    }
}

/// Whether the answers before a call of `function` may wait in the buffer
/// while it runs: only for functions that neither block, nor run long, nor
/// end the process. Every other call (`sleep_ms`, `abort`, `is_prime` and
/// `factor` of large numbers, a function added later) starts with nothing
/// held back, so its death or its timeout is charged to it alone.
fn holds_back(function: &str) -> bool {
    matches!(
        function,
        "add"
            | "sub"
            | "mul"
            | "div"
            | "neg"
            | "fib"
            | "upper"
            | "word_count"
            | "pid"
            | "panic"
            | "functions"
    )
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
