//! The exit-code scheme and the runner every binary's `main` calls.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the job did not succeed: a condition not met, a timeout, a failed check |
//! | 2 | usage error: bad arguments, bad name |
//!
//! `guard` follows `timeout(1)` instead (124..=127, 128+N) and returns its
//! codes itself. Errors are printed as one line, `PROGRAM: what failed: why`;
//! with `--json` also as the last JSON line, an `error` event (see
//! [`crate::output`]).
//! A broken pipe is a quiet success when it is stdout that broke, so
//! `program | head -1` never complains; a broken pipe on anything else (a
//! socket to a server that went away, a pipe to a child) is an error like
//! any other.

use std::fmt;
use std::io;
use std::process::ExitCode;

/// Exit code: success.
pub const SUCCESS: u8 = 0;
/// Exit code: the job did not succeed (condition not met, timeout, failed check).
pub const FAILURE: u8 = 1;
/// Exit code: usage error.
pub const USAGE: u8 = 2;

/// An error that carries the exit code it maps to.
///
/// Binaries return it (through `anyhow`) when they know the code; any other
/// error exits with [`FAILURE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    /// The process exit code.
    pub code: u8,
    /// The one-line message, without the program name.
    pub message: String,
    /// Fields the `error` JSON line carries besides `error` and `exit_code`
    /// (snake_case keys: see docs/JSON.md).
    pub fields: Vec<(String, serde_json::Value)>,
}

impl Fail {
    /// A failure with exit code 1.
    pub fn failed(message: impl Into<String>) -> Self {
        Fail::with_code(FAILURE, message)
    }

    /// A usage error, exit code 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Fail::with_code(USAGE, message)
    }

    /// A failure with a chosen exit code.
    pub fn with_code(code: u8, message: impl Into<String>) -> Self {
        Fail {
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// Adds a field to the `error` JSON line.
    pub fn with_field(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.fields.push((key.to_owned(), value.into()));
        self
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

/// Whether any error in the chain is a broken pipe (the reader went away).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Whether stdout's reader has gone: `poll(2)` reports `POLLERR` on a pipe
/// whose read end is closed, and `POLLHUP` on a socket whose peer shut down.
/// A broken pipe elsewhere (a socket to a server that died) must not pass
/// for the quiet `| head -1` case.
pub fn stdout_is_broken() -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let stdout = io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)),
        Err(_) => false,
    }
}

/// The exit code and one-line message for an error chain.
pub fn describe(err: &anyhow::Error) -> (u8, String) {
    let code = err
        .chain()
        .find_map(|e| e.downcast_ref::<Fail>().map(|f| f.code))
        .unwrap_or(FAILURE);
    let parts: Vec<String> = err.chain().map(|e| e.to_string()).collect();
    // Drop a part that merely repeats the end of the one before it.
    let mut message = String::new();
    for part in parts {
        if message.ends_with(&part) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&part);
    }
    (code, message.replace('\n', " "))
}

/// Runs a binary's body and turns its outcome into an exit code.
///
/// `body` returns the exit code on success (usually 0). On error the chain is
/// printed as `program: a: b: c` and the process exits with the code of the
/// first [`Fail`] in the chain, else 1; with JSON output on
/// ([`crate::output::enable`]) the error is also written as an `error` line.
/// A broken pipe exits 0 silently when stdout's reader has gone
/// ([`stdout_is_broken`]).
pub fn run(program: &'static str, body: impl FnOnce() -> anyhow::Result<u8>) -> ExitCode {
    crate::output::set_program(program);
    crate::log::init_logging();
    match body() {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) && stdout_is_broken() => ExitCode::SUCCESS,
        Err(err) => {
            let (code, message) = describe(&err);
            eprintln!("{program}: {message}");
            let fields = err
                .chain()
                .find_map(|e| e.downcast_ref::<Fail>())
                .map(|f| f.fields.as_slice())
                .unwrap_or_default();
            crate::output::emit_error(&message, code, fields);
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn fail_code_is_found_under_context() {
        let err = anyhow::Error::new(Fail::usage("bad --count")).context("parsing arguments");
        let (code, msg) = describe(&err);
        assert_eq!(code, USAGE);
        assert_eq!(msg, "parsing arguments: bad --count");
    }

    #[test]
    fn other_errors_exit_one() {
        let err: anyhow::Error = io::Error::new(io::ErrorKind::NotFound, "gone").into();
        let err = err.context("opening board");
        assert_eq!(describe(&err), (FAILURE, "opening board: gone".to_owned()));
    }

    #[test]
    fn broken_pipe_is_recognised_deep_in_chain() {
        let res: Result<(), io::Error> = Err(io::ErrorKind::BrokenPipe.into());
        let err = res.context("writing").unwrap_err();
        assert!(is_broken_pipe(&err));
    }
}
