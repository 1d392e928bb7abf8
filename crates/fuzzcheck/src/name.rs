//! Fuzz check: a rendezvous name (`--name`), validated by
//! [`syncomm_common::Name::new`].
//!
//! Invariants: it never panics; it accepts exactly the documented rule (1 to
//! 64 of `A-Z a-z 0-9 . _ -`, not `.` or `..`), written out here
//! independently; an accepted name reads back unchanged (`as_str`, `Display`,
//! `FromStr`); a refusal is one line.

use syncomm_common::name::{Name, MAX_NAME_LEN};

/// The documented rule, independently of the parser.
fn allowed(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len())
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
}

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    let lossy = String::from_utf8_lossy(data);
    for s in [lossy.as_ref(), lossy.trim()] {
        match Name::new(s) {
            Ok(name) => {
                assert!(allowed(s), "accepted {s:?}, which the rule refuses");
                assert_eq!(name.as_str(), s);
                assert_eq!(name.to_string(), s);
                assert_eq!(s.parse::<Name>().as_ref(), Ok(&name));
                assert_eq!(Name::new(name.as_str()).as_ref(), Ok(&name));
            }
            Err(e) => {
                assert!(!allowed(s), "refused {s:?}, which the rule allows: {e}");
                assert!(!e.to_string().contains('\n'), "one line: {e}");
            }
        }
    }
}
