//! Fuzz check: a byte stream cut anywhere, split into frames by the server's input buffer.

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    let _ = data; // TODO(fuzz): fill in this target's check
}
