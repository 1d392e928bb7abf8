//! Attribution records: what every kernel object a syncomm program creates
//! outside the runtime directory carries, so that it can be traced to its
//! runtime directory and name even after that directory is gone (`syncomm ls`
//! lists such objects as orphans, `syncomm clean` removes them).
//!
//! The record is the same bytes everywhere: `syncomm-origin 1`, NUL, the
//! runtime directory as an absolute path, NUL, the rendezvous name. A board
//! segment keeps it after its ring; a gate's System V set keeps it in extra
//! semaphores after its slots, one byte per semaphore.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The first bytes of a record.
pub const MAGIC: &[u8] = b"syncomm-origin 1";

/// The longest record accepted (a path of `PATH_MAX` plus a name).
pub const MAX_RECORD: usize = 4096 + 256;

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    /// The runtime directory, absolute.
    pub dir: PathBuf,
    /// The rendezvous name.
    pub name: String,
}

impl Origin {
    /// The origin of an object named `name` in the runtime directory `dir`
    /// (made absolute, symlinks resolved when possible).
    pub fn new(dir: &Path, name: &str) -> Origin {
        Origin {
            dir: absolute_dir(dir),
            name: name.to_owned(),
        }
    }

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(MAGIC.len() + self.name.len() + 64);
        v.extend_from_slice(MAGIC);
        v.push(0);
        v.extend_from_slice(self.dir.as_os_str().as_bytes());
        v.push(0);
        v.extend_from_slice(self.name.as_bytes());
        v
    }

    /// Parses a record: `None` unless it is exactly what [`Origin::encode`]
    /// writes (magic, an absolute directory, a non-empty UTF-8 name, no
    /// further NUL).
    pub fn decode(bytes: &[u8]) -> Option<Origin> {
        if bytes.len() > MAX_RECORD {
            return None;
        }
        let rest = bytes.strip_prefix(MAGIC)?.strip_prefix(&[0u8])?;
        let mut parts = rest.split(|&b| b == 0);
        let dir = parts.next()?;
        let name = parts.next()?;
        if parts.next().is_some() || !dir.starts_with(b"/") || name.is_empty() {
            return None;
        }
        Some(Origin {
            dir: PathBuf::from(std::ffi::OsString::from_vec(dir.to_vec())),
            name: std::str::from_utf8(name).ok()?.to_owned(),
        })
    }
}

/// `dir` as an absolute path: canonical if it exists, else joined to the
/// current directory.
pub fn absolute_dir(dir: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(dir) {
        return c;
    }
    if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(dir))
            .unwrap_or_else(|_| dir.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let o = Origin {
            dir: "/tmp/x y".into(),
            name: "demo".into(),
        };
        assert_eq!(Origin::decode(&o.encode()), Some(o.clone()));
        assert_eq!(Origin::decode(b"syncomm-origin 1\0rel\0n"), None);
        assert_eq!(Origin::decode(b"syncomm-origin 1\0/d\0"), None);
        assert_eq!(Origin::decode(b"syncomm-origin 1\0/d\0n\0x"), None);
        assert_eq!(Origin::decode(b"other"), None);
    }
}
