//! One file per scenario: what it promises, the faults it suffers, the checks.
//!
//! Each `run` loops while [`Ctx::running`](crate::ctx::Ctx::running): it keeps
//! the scenario's operations going, draws faults from the scenario's random
//! stream, restarts killed roles, and checks the invariants as outcomes come
//! in; then it winds down cleanly and checks what must be gone. The driver
//! adds the common end checks (no marked process, empty runtime directory).

use std::time::Duration;

use crate::ctx::Ctx;

pub mod board;
pub mod discover;
pub mod filter;
pub mod gate;
pub mod guard;
pub mod ping;
pub mod scribe;
pub mod worker;

/// A scenario's entry point.
pub type RunFn = fn(&mut Ctx);

/// Every scenario, by name.
pub const ALL: &[(&str, RunFn)] = &[
    ("board", board::run),
    ("worker", worker::run),
    ("scribe", scribe::run),
    ("gate", gate::run),
    ("discover", discover::run),
    ("ping", ping::run),
    ("filter", filter::run),
    ("guard", guard::run),
];

/// How long a participant may overrun its own timeout before it counts as
/// hung: generous, the machine is small and loaded. Never a performance
/// figure, only "did it ever end".
pub const HANG_BOUND: Duration = Duration::from_secs(30);

/// A rendezvous name unique to this driver process.
pub fn unique(what: &str) -> String {
    format!("chaos-{}-{what}", std::process::id())
}
