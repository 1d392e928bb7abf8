//! Logging set-up: `tracing` events of the libraries go to stderr.
//!
//! Libraries only emit `tracing` events; which of them are shown, and where,
//! is decided here, once, by the binary.

use std::io;

/// Installs the stderr log subscriber (`RUST_LOG`, default `warn`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_target(false)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        // A closed stderr must never turn a log line into a panic.
        .log_internal_errors(false)
        .try_init();
}
