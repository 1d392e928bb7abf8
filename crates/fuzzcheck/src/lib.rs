//! # syncomm-fuzzcheck
//!
//! One check per parser of outside input. Each check takes arbitrary bytes,
//! runs the parser, and asserts the parser's own invariants (no panic, a
//! successful decode re-encodes to the same bytes where the format allows,
//! lengths bounded by the input). A check panics when an invariant breaks.
//!
//! The same checks run in two places:
//! - `fuzz/` (cargo-fuzz, nightly): each libFuzzer target calls one check;
//! - `tests/fuzz_corpus.rs` (stable, part of `cargo test --workspace`):
//!   replays every committed seed and regression input through it.
#![deny(missing_docs)]

pub mod board_segment;
pub mod discover_registry;
pub mod duration;
pub mod filter_input;
pub mod filter_spec;
pub mod gate_records;
pub mod name;
pub mod ping_answer;
pub mod ping_request;
pub mod scribe_verify;
pub mod worker_request;
pub mod worker_response;
pub mod worker_stream;
pub mod worker_to_client;

/// A fuzz target: its name (the folder under `fuzz/corpus/` and
/// `fuzz/regressions/`) and its check.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order `./launch fuzz` runs them.
pub const TARGETS: &[Target] = &[
    ("worker_request", worker_request::check),
    ("worker_response", worker_response::check),
    ("worker_to_client", worker_to_client::check),
    ("worker_stream", worker_stream::check),
    ("ping_request", ping_request::check),
    ("ping_answer", ping_answer::check),
    ("board_segment", board_segment::check),
    ("discover_registry", discover_registry::check),
    ("gate_records", gate_records::check),
    ("filter_spec", filter_spec::check),
    ("filter_input", filter_input::check),
    ("duration", duration::check),
    ("name", name::check),
    ("scribe_verify", scribe_verify::check),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().copied().find(|(n, _)| *n == name)
}
