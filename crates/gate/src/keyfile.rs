//! The runtime file `gate.NAME.sem` that holds a set's key: locking it,
//! reading and writing the key, and its text format.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::GateError;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::Name;
use syncomm_sys::flock;
use syncomm_sys::openfile::{self, Access, OpenError};

/// The first word of a runtime file, and its format version.
const MAGIC: &str = "syncomm-gate 1";

/// The runtime file, open and `flock`ed (released when dropped).
pub(crate) struct KeyFile {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
}

/// What ends a wait for the runtime file's lock besides getting it.
#[derive(Clone, Copy, Default)]
pub(crate) struct Until<'a> {
    /// When to give up, and the `--timeout` it came from (for the message).
    pub(crate) deadline: Option<(Instant, Duration)>,
    /// A shutdown request ends the wait.
    pub(crate) shutdown: Option<&'a Shutdown>,
}

impl KeyFile {
    /// Opens (creating if `create`) and locks the runtime file; `Ok(None)` if
    /// it does not exist and `create` is false. The wait for the lock ends
    /// at `until`'s deadline or shutdown (`syncomm_sys::flock`).
    pub(crate) fn lock(
        path: &Path,
        create: bool,
        exclusive: bool,
        until: Until<'_>,
    ) -> Result<Option<KeyFile>, GateError> {
        let file_err = |source| GateError::File {
            path: path.to_owned(),
            source,
        };
        loop {
            let access = if create {
                Access::Create(0o600)
            } else {
                Access::Read
            };
            // Never through a symlink, never blocking on a FIFO, only a
            // regular file of ours: another user's file could name any set,
            // and a repair would write into it.
            let file = match openfile::open_regular(path, access) {
                Ok(f) => f,
                Err(OpenError::NotFound(_)) if !create => return Ok(None),
                Err(OpenError::Symlink(_)) => return Err(GateError::Symlink(path.to_owned())),
                Err(OpenError::NotRegular { .. }) => {
                    return Err(GateError::NotRegular(path.to_owned()))
                }
                Err(OpenError::ForeignOwner { owner, me, .. }) => {
                    return Err(GateError::Foreign {
                        path: path.to_owned(),
                        owner,
                        me,
                    })
                }
                Err(OpenError::Io { source, .. }) => return Err(file_err(source)),
                Err(e) => return Err(file_err(io::Error::other(e.reason()))),
            };
            let meta = file.metadata().map_err(file_err)?;
            let mode = if exclusive {
                flock::Mode::Exclusive
            } else {
                flock::Mode::Shared
            };
            let interrupt = until.shutdown.map(|s| s as &dyn flock::Interrupt);
            let deadline = until.deadline.map(|(d, _)| d);
            match flock::lock(&file, mode, deadline, interrupt).map_err(file_err)? {
                flock::Outcome::Locked => {}
                flock::Outcome::Interrupted => return Err(GateError::Interrupted(path.to_owned())),
                flock::Outcome::TimedOut => {
                    let holder = syncomm_sys::proc::flock_holder(meta.ino())
                        .map_or("another process".to_owned(), |pid| format!("pid {pid}"));
                    let waited = until.deadline.map(|(_, t)| t).unwrap_or_default();
                    return Err(GateError::FileLocked {
                        path: path.to_owned(),
                        waited: syncomm_common::duration::format_duration(waited),
                        holder,
                    });
                }
            }
            // `gate --remove` unlinks the file while holding the lock: if that
            // happened while we waited, our file is no longer the named one.
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {
                    return Ok(Some(KeyFile {
                        file,
                        path: path.to_owned(),
                    }))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if create {
                        continue;
                    }
                    return Ok(None);
                }
                Err(e) => return Err(file_err(e)),
            }
        }
    }

    /// The key stored in the file: `Ok(None)` if the file is empty.
    pub(crate) fn read_key(&mut self, name: &Name) -> Result<Option<libc::key_t>, GateError> {
        let mut buf = Vec::new();
        (&self.file)
            .take(MAX_KEY_FILE)
            .read_to_end(&mut buf)
            .map_err(|source| GateError::File {
                path: self.path.clone(),
                source,
            })?;
        parse_key_file(&buf).map_err(|e| GateError::Garbage {
            path: self.path.clone(),
            name: name.to_string(),
            content: e.start,
        })
    }

    pub(crate) fn write_key(&mut self, key: libc::key_t) -> Result<(), GateError> {
        let file_err = |source| GateError::File {
            path: self.path.clone(),
            source,
        };
        self.file.set_len(0).map_err(file_err)?;
        self.file.rewind().map_err(file_err)?;
        self.file
            .write_all(render_key_file(key).as_bytes())
            .map_err(file_err)
    }
}

/// The most bytes of a runtime file that are read: a gate file is one
/// short line, so anything longer is garbage.
pub const MAX_KEY_FILE: u64 = 4096;

/// Runtime file contents that are not a gate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAKeyFile {
    /// The start of what it holds (at most 40 bytes, lossily decoded), for messages.
    pub start: String,
}

/// Parses the contents of a runtime file: exactly `syncomm-gate 1 key=K\n`
/// with K a positive decimal `key_t` written without sign or leading zero
/// (as [`render_key_file`] writes it), or nothing at all (`Ok(None)`: a gate
/// died between creating the file and writing the key).
pub fn parse_key_file(bytes: &[u8]) -> Result<Option<libc::key_t>, NotAKeyFile> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let garbage = || NotAKeyFile {
        start: String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned(),
    };
    let digits = std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| t.strip_suffix('\n'))
        .and_then(|t| t.strip_prefix(MAGIC))
        .and_then(|t| t.strip_prefix(" key="))
        .ok_or_else(garbage)?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !canonical {
        return Err(garbage());
    }
    let key = digits.parse::<libc::key_t>().map_err(|_| garbage())?;
    Ok(Some(key))
}

/// The contents of a runtime file holding `key`.
pub fn render_key_file(key: libc::key_t) -> String {
    format!("{MAGIC} key={key}\n")
}

/// The key of the set named by runtime file `path` (read without locking:
/// the file is written once, under the lock, before anyone reads it).
pub fn key_in_file(path: &Path) -> Result<Option<libc::key_t>, String> {
    match syncomm_sys::openfile::read_regular(path, MAX_KEY_FILE as usize) {
        Ok(bytes) => parse_key_file(&bytes).map_err(|e| format!("not a gate file ({:?})", e.start)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.reason()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_text_is_canonical() {
        assert_eq!(parse_key_file(b""), Ok(None));
        for key in [1, 42, libc::key_t::MAX] {
            let text = render_key_file(key);
            assert_eq!(parse_key_file(text.as_bytes()), Ok(Some(key)));
        }
        for bad in [
            &b"syncomm-gate 1 key=0\n"[..],
            b"syncomm-gate 1 key=007\n",
            b"syncomm-gate 1 key=+7\n",
            b"syncomm-gate 1 key=-7\n",
            b"syncomm-gate 1 key=7",
            b"syncomm-gate 1 key=\n",
            b"syncomm-gate 1 key=99999999999\n",
            b"\xff",
        ] {
            assert!(parse_key_file(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_file_round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.x.sem");
        let name = Name::new("x").unwrap();
        let mut kf = KeyFile::lock(&path, true, true, Until::default())
            .unwrap()
            .unwrap();
        assert_eq!(kf.read_key(&name).unwrap(), None);
        kf.write_key(12345).unwrap();
        drop(kf);
        let mut kf = KeyFile::lock(&path, false, false, Until::default())
            .unwrap()
            .unwrap();
        assert_eq!(kf.read_key(&name).unwrap(), Some(12345));
        drop(kf);
        std::fs::write(&path, b"\xffgarbage").unwrap();
        let mut kf = KeyFile::lock(&path, false, false, Until::default())
            .unwrap()
            .unwrap();
        assert!(matches!(kf.read_key(&name), Err(GateError::Garbage { .. })));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            KeyFile::lock(&link, true, true, Until::default()),
            Err(GateError::Symlink(_))
        ));
    }
}
