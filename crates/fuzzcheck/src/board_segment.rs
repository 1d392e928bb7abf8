//! Fuzz check: a board segment's bytes (header and ring) as `monitor`/`consumer` read them.

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    let _ = data; // TODO(fuzz): fill in this target's check
}
