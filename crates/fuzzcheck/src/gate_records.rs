//! Fuzz check: gate's runtime key file (`gate.NAME.sem`) and its holder
//! records (the semaphore values, waiter count and holder pids the kernel
//! reports, and `/proc/PID/cmdline`), through the functions `gate` itself
//! uses: [`parse_key_file`], [`status_from`], [`parse_cmdline`].
//!
//! The input feeds all three:
//! - key file: the whole input (as `gate` reads at most [`MAX_KEY_FILE`]
//!   bytes): a key that parses is positive and renders back to the same
//!   bytes; an error quotes at most 40 bytes of the input.
//! - holder records: the input read as little-endian `u16` values (the
//!   first is the waiter count, the rest `GETALL`'s values, so the slot
//!   count follows the length) with holder pids made up from the slot: a
//!   status either is refused or is coherent (free ≤ slots, each held slot
//!   named once, in order, no more holders than units taken).
//! - cmdline: the input as `/proc/PID/cmdline`: the result has no NUL, no
//!   empty word, and is bounded by the input (3 bytes per input byte at
//!   most, for replacement characters).

use syncomm_gate::{parse_cmdline, parse_key_file, render_key_file, status_from, MAX_KEY_FILE};

/// Runs the parsers on `data` and asserts their invariants.
pub fn check(data: &[u8]) {
    key_file(&data[..data.len().min(MAX_KEY_FILE as usize)]);
    holder_records(data);
    cmdline(data);
}

fn key_file(data: &[u8]) {
    match parse_key_file(data) {
        Ok(None) => assert!(data.is_empty()),
        Ok(Some(key)) => {
            assert!(key > 0);
            assert_eq!(render_key_file(key).as_bytes(), data);
        }
        Err(e) => {
            assert!(!data.is_empty());
            // Lossy decoding turns each bad byte into at most 3 bytes.
            assert!(e.start.len() <= 40 * 3);
        }
    }
}

fn holder_records(data: &[u8]) {
    let words: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let Some((&waiting, values)) = words.split_first() else {
        return;
    };
    let Some(slots) = values.len().checked_sub(2) else {
        return;
    };
    let Ok(slots) = u16::try_from(slots) else {
        return;
    };
    // Negative counts from the kernel are possible in principle: map the
    // top half of u16 onto them.
    let waiting = i32::from(waiting as i16);
    let mut asked = Vec::new();
    let got = status_from("fuzz", slots, values, waiting, |slot| {
        asked.push(slot);
        Ok(-1 - i32::from(slot)) // no such process: no command line read
    });
    let Ok(st) = got else {
        return;
    };
    assert_eq!(st.slots, slots);
    assert!(st.free <= st.slots);
    assert!(st.holders.len() <= usize::from(st.slots - st.free));
    assert!(st.holders.windows(2).all(|w| w[0].slot < w[1].slot));
    assert_eq!(asked, st.holders.iter().map(|h| h.slot).collect::<Vec<_>>());
    for h in &st.holders {
        assert!(h.slot < st.slots);
        assert_eq!(values[2 + usize::from(h.slot)], 0);
        assert_eq!(h.pid, -1 - i32::from(h.slot));
        assert_eq!(h.command, None);
    }
    assert_eq!(i64::from(st.waiting), i64::from(waiting));
}

fn cmdline(data: &[u8]) {
    match parse_cmdline(data) {
        None => assert!(data.iter().all(|&b| b == 0)),
        Some(s) => {
            assert!(!s.is_empty());
            assert!(!s.contains('\0'));
            assert!(s.len() <= data.len() * 3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed seeds and regression inputs pass; the key files copied
    /// from real runs parse.
    #[test]
    fn seeds_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut keys = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(rd) = std::fs::read_dir(root.join(dir).join("gate_records")) else {
                continue;
            };
            for f in rd.map(|e| e.unwrap().path()) {
                let data = std::fs::read(&f).unwrap();
                check(&data);
                if f.extension().is_some_and(|e| e == "sem") {
                    assert!(matches!(parse_key_file(&data), Ok(Some(_))), "{f:?}");
                    keys += 1;
                }
            }
        }
        assert!(keys >= 2);
    }
}
