//! The terminal's size (`TIOCGWINSZ`, through rustix's `tcgetwinsize`), for
//! programs that draw a screen or a line in place.

use std::os::fd::AsFd;

/// The (columns, rows) of the terminal `fd` is, or 80x24 when it is not a
/// terminal or does not say.
pub fn size(fd: impl AsFd) -> (usize, usize) {
    match rustix::termios::tcgetwinsize(fd) {
        Ok(ws) if ws.ws_row > 0 && ws.ws_col > 0 => {
            (usize::from(ws.ws_col), usize::from(ws.ws_row))
        }
        _ => (80, 24),
    }
}
