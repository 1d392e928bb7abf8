//! Fuzz check: gate's key file and holder records.

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    let _ = data; // TODO(fuzz): fill in this target's check
}
