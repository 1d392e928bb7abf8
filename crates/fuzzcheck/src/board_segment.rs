//! Fuzz check: a board segment's bytes (header and ring) as `monitor`/`consumer` read them.
//!
//! The bytes are copied into an aligned buffer of their own length and go
//! through the very code a reader runs on a mapped segment of another
//! process: the header check ([`Segment::from_bytes`] → `check_header`),
//! then the monitor's lock-free snapshot and the consumer's ring reads.

use std::time::Duration;

use syncomm_board::mapped::{Segment, SnapshotError};
use syncomm_board::segment::{self, Shared, LAYOUT, MAGIC, MAX_CAPACITY, MAX_VALUE, VALUES};

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    let Ok(seg) = Segment::from_bytes(data) else {
        return;
    };
    // An accepted header is consistent with itself and with the bytes.
    let cap = seg.capacity();
    assert!((1..=MAX_CAPACITY).contains(&cap), "capacity {cap}");
    assert!(
        segment::segment_size(cap) <= data.len(),
        "ring past the end"
    );
    let word = |off: usize, n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&data[off..off + n]);
        u64::from_le_bytes(b)
    };
    let s = std::mem::offset_of!(Shared, magic);
    assert_eq!(word(s, 8), MAGIC);
    assert_eq!(word(std::mem::offset_of!(Shared, layout), 4), LAYOUT as u64);
    assert_eq!(
        word(std::mem::offset_of!(Shared, header_size), 4),
        std::mem::size_of::<Shared>() as u64
    );
    assert_eq!(
        word(std::mem::offset_of!(Shared, total_size), 8),
        segment::segment_size(cap) as u64
    );
    assert_eq!(word(std::mem::offset_of!(Shared, values), 4), VALUES as u64);

    // The monitor's snapshot: refused, or one that keeps every invariant.
    match seg.snapshot(Duration::ZERO) {
        Ok(snap) => {
            assert_eq!(snap.counts.len(), VALUES);
            assert_eq!(snap.counts.iter().sum::<u64>(), snap.total);
            assert_eq!(snap.recent.len() as u64, snap.total.min(cap as u64));
            assert!(snap.recent.iter().all(|&v| v <= MAX_VALUE));
        }
        Err(SnapshotError::Inconsistent(why)) => assert!(!why.is_empty()),
        Err(SnapshotError::Busy(..) | SnapshotError::WriterDied { .. }) => {}
    }

    // The consumer's reads: bounded by the ring, whatever the numbers say.
    let total = seg.total();
    for v in [0, 22, MAX_VALUE, data[data.len() / 2] % (MAX_VALUE + 1)] {
        let recent = seg.found_recent(v);
        assert!(recent.len() <= cap as usize);
        let _ = (seg.count(v), seg.first(v));
    }
    for (from, to) in [(1, total), (0, u64::MAX), (total, total), (u64::MAX, 1)] {
        assert!(seg.values(from, to).len() <= cap as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds are real segments: accepted, with snapshots that hold the
    /// invariants (except the one killed mid-append, whose writer died);
    /// each survives the check, and so does every bit-flipped copy of them.
    #[test]
    fn real_segments_are_accepted_and_flips_are_survived() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/board_segment");
        let mut seen = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("real-") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let seg = Segment::from_bytes(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
            match seg.snapshot(Duration::ZERO) {
                Ok(s) => assert!(s.total > 0, "{name}"),
                Err(e) => assert!(name.contains("killed"), "{name}: {e}"),
            }
            check(&data);
            for i in (0..data.len()).step_by(7) {
                let mut d = data.clone();
                d[i] ^= 0x5a;
                check(&d);
            }
            check(&data[..data.len() - 1]);
            seen += 1;
        }
        assert!(seen >= 4);
    }
}
