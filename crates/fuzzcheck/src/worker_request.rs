//! Fuzz check: a caller's (or the server's) `Request` frame body, as the server and a child decode it.

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    let _ = data; // TODO(fuzz): fill in this target's check
}
