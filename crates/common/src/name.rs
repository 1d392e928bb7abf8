//! Rendezvous names: the `--name NAME` by which peers find each other.
//!
//! A name matches `[A-Za-z0-9._-]{1,64}` and is neither `.` nor `..`, so it is
//! always safe as one path component and as part of a shared-memory object name.

use std::fmt;
use std::str::FromStr;

/// The name used when `--name` is not given.
pub const DEFAULT_NAME: &str = "default";

/// The longest name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// A validated rendezvous name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid name {given:?}: {why} (allowed: 1 to 64 of A-Z a-z 0-9 . _ -, not \".\" or \"..\")"
)]
pub struct NameError {
    given: String,
    why: &'static str,
}

impl Name {
    /// Validates `s` as a name.
    pub fn new(s: &str) -> Result<Self, NameError> {
        let fail = |why| {
            Err(NameError {
                given: s.to_owned(),
                why,
            })
        };
        if s.is_empty() {
            return fail("it is empty");
        }
        if s.len() > MAX_NAME_LEN {
            return fail("it is longer than 64 characters");
        }
        if s == "." || s == ".." {
            return fail("it is a relative directory name");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return fail("it has a character that is not allowed");
        }
        Ok(Name(s.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Name {
    fn default() -> Self {
        Name(DEFAULT_NAME.to_owned())
    }
}

impl FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Name::new(s)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["default", "a", "A.b_c-9", &"x".repeat(64), "..."] {
            assert_eq!(Name::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_bad_names() {
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(65), "a\0"] {
            let err = Name::new(bad).unwrap_err().to_string();
            assert!(err.contains("allowed"), "{err}");
        }
    }
}
