//! # syncomm-scribe
//!
//! Several processes append lines to one shared file, and no line is ever torn,
//! lost or interleaved with another. This is the seed's "Access shared file"
//! example, done with the kernel's own tools.
//!
//! ## The mechanism
//! Each writer opens the file with `O_APPEND` (so every `write(2)` lands at the
//! current end of the file, atomically with respect to the file offset) and,
//! for each line:
//!
//! 1. `flock(fd, LOCK_EX)`: wait until no other writer holds the lock
//!    (`syncomm_sys::flock`: `LOCK_NB` attempts paced by `poll(2)` on the
//!    shutdown descriptor, so Ctrl-C ends the wait);
//! 2. one `write(2)` of the whole line, newline included;
//! 3. optionally `fdatasync(2)`, so the line is on disk before the next writer goes;
//! 4. optionally hold the lock a while (`--hold`, to make contention visible);
//! 5. `flock(fd, LOCK_UN)`.
//!
//! A writer killed with SIGKILL while it holds the lock loses its descriptor,
//! and with it the lock: the kernel releases a `flock` when the last descriptor
//! of the open file description is closed, so the others simply go on. Because
//! a line is written with a single `write(2)`, a killed writer leaves either the
//! whole line or none of it.
//!
//! ## Lines
//! A line is `ID mu: TEXT K`, as the seed wrote it: the writer's id, the fixed
//! marker `mu:`, the message, and the writer's line counter `K` (0, 1, 2, ...).
//! [`verify_file`] reads a file back and checks that every line is well formed
//! and that each writer's counters run 0, 1, 2, ... with none missing, repeated
//! or out of order.
//!
//! ## Choices
//! - The shared file must be a regular file, reached without any symlink: a
//!   writer is often pointed at a path in a shared directory such as `/tmp`,
//!   where a planted symlink would redirect its appends. The path is resolved
//!   with `openat2(2)` and `RESOLVE_NO_SYMLINKS` (Linux 5.6 and later), so a
//!   symlink in any component is refused, the last one (`/tmp/link`) and a
//!   parent directory (`/tmp/dirlink/file`) alike. On an older kernel only the
//!   last component is checked (`O_NOFOLLOW`). `--verify` reads the same way.
//! - Ids are rendezvous-name shaped (`[A-Za-z0-9._-]{1,64}`) and messages are one
//!   line, so every line written can be parsed back unambiguously.
#![deny(missing_docs)]

mod verify;
mod write;

pub use verify::{
    parse_line, verify_bytes, verify_file, verify_reader, Expect, Parsed, Problem, Summary,
    VerifyError,
};
pub use write::{
    append_lines, check_message, format_line, open_shared, valid_id, WriteError, WriteOptions,
    WriteOutcome,
};

/// The marker between the writer's id and its message.
pub const MARKER: &str = " mu: ";

/// The longest message accepted, in bytes (keeps a line far below any write limit).
pub const MAX_MESSAGE: usize = 4096;
