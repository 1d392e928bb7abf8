//! Member ids (`--id ID`): validated once, ordered the way people count.
//!
//! An id is 1 to 64 of `A-Z a-z 0-9 . _ -`. That keeps it one word in the
//! registry's text format (no spaces, no newlines) and safe to print.
//! Ids sort "naturally": runs of digits compare by their value, so
//! `w2` comes before `w10`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The longest id accepted.
pub const MAX_ID_LEN: usize = 64;

/// A validated member id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberId(String);

/// Why a string is not a valid [`MemberId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {given:?}: {why} (allowed: 1 to 64 of A-Z a-z 0-9 . _ -)")]
pub struct IdError {
    given: String,
    why: &'static str,
}

impl MemberId {
    /// Validates `s` as an id.
    pub fn new(s: &str) -> Result<Self, IdError> {
        let fail = |why| {
            Err(IdError {
                given: s.to_owned(),
                why,
            })
        };
        if s.is_empty() {
            return fail("it is empty");
        }
        if s.len() > MAX_ID_LEN {
            return fail("it is longer than 64 characters");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return fail("it has a character that is not allowed");
        }
        Ok(MemberId(s.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MemberId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MemberId::new(s)
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for MemberId {
    fn cmp(&self, other: &Self) -> Ordering {
        natural_cmp(&self.0, &other.0).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for MemberId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two ASCII strings, runs of digits by numeric value.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let run = |s: &[u8], mut k: usize| {
                while k < s.len() && s[k] == b'0' {
                    k += 1;
                }
                let start = k;
                while k < s.len() && s[k].is_ascii_digit() {
                    k += 1;
                }
                (start, k)
            };
            let ((sa, ea), (sb, eb)) = (run(a, i), run(b, j));
            // Without leading zeros, the longer run is the larger number.
            let ord = (ea - sa)
                .cmp(&(eb - sb))
                .then_with(|| a[sa..ea].cmp(&b[sb..eb]));
            if ord != Ordering::Equal {
                return ord;
            }
            i = ea;
            j = eb;
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_refuses_others() {
        for ok in ["a", "w-1", "A.b_c", &"x".repeat(64)] {
            assert!(MemberId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a\nb", "a/b", "é", &"x".repeat(65), "a\0"] {
            let err = MemberId::new(bad).unwrap_err().to_string();
            assert!(err.contains("allowed"), "{err}");
        }
    }

    #[test]
    fn sorts_naturally() {
        let mut ids: Vec<MemberId> = ["w10", "w2", "b", "w1", "a", "w02", "10", "9"]
            .iter()
            .map(|s| MemberId::new(s).unwrap())
            .collect();
        ids.sort();
        let got: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        assert_eq!(got, ["9", "10", "a", "b", "w1", "w02", "w2", "w10"]);
    }
}
