//! Telling a person at a terminal where a waiting program looks.
//!
//! A program that starts to wait (for a board, a slot, a group) prints one
//! line on stderr — `waiting for board "x" in DIR (Ctrl-C to stop)` — but only
//! when stderr is a terminal: scripts and logs stay quiet.

use std::io::{IsTerminal, Write};

/// The help paragraph every program shows about the runtime directory.
pub const RUNTIME_DIR_HELP: &str = "\
Runtime directory: $SYNCOMM_DIR, else $XDG_RUNTIME_DIR/syncomm, else
/tmp/syncomm-UID. Programs that should meet must use the same one;
`syncomm ls` lists what is in it, `syncomm clean` removes what is stale.";

/// Prints `{program}: waiting for {what} in {dir} (Ctrl-C to stop)` on
/// stderr if stderr is a terminal.
pub fn waiting(program: &str, what: &str, dir: &std::path::Path) {
    let err = std::io::stderr();
    if err.is_terminal() {
        let _ = writeln!(
            err.lock(),
            "{program}: waiting for {what} in {} (Ctrl-C to stop)",
            dir.display()
        );
    }
}
