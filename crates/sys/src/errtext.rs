//! An OS error as one short line: the system's message without Rust's
//! `" (os error N)"` suffix (`No such process`, not
//! `No such process (os error 3)`).

use std::io;

/// The system's message for `e` (`strerror`), or `e`'s own text when it
/// carries no OS error number.
pub fn os_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_owned(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_error_number_in_the_text() {
        let e = io::Error::from_raw_os_error(libc::ESRCH);
        assert_eq!(os_reason(&e), "No such process");
        assert_eq!(os_reason(&io::Error::other("plain")), "plain");
    }
}
