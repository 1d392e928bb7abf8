//! The link file in the runtime directory that names a board's segment:
//! reading it, publishing it atomically, and sweeping what half-done
//! producers left behind.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use syncomm_common::rundir::RunDir;
use syncomm_common::Name;
use syncomm_sys::openfile::{self, Access, OpenError};

use crate::error::BoardError;
use crate::liveness;
use crate::mapped;

/// Prefix of every board's shared-memory object name (`/dev/shm/syncomm.board.*`).
pub const OS_ID_PREFIX: &str = "/syncomm.board.";

/// The link file in the runtime directory that names a board's segment:
/// `{rundir}/board.NAME.shm`, holding the segment's os id.
pub fn link_path(dir: &RunDir, name: &Name) -> PathBuf {
    dir.file("board", name, "shm")
}

/// Removes what producers of board `name` that died half-way left behind
/// and nothing names: segments `syncomm.board.NAME.PID.RAND` whose creator
/// PID is gone and that the link does not name (a producer killed between
/// creating its segment and publishing the link), and their temporary link
/// files. Only regular files of ours are touched; a live creator's segment
/// (about to be published) is left alone.
pub(super) fn sweep_orphans(name: &Name, link: &Path) {
    let named = read_link(link, name).ok();
    let prefix = format!("{}{name}.", &OS_ID_PREFIX[1..]);
    let creator = |rest: &str| -> Option<i32> {
        let (pid, tag) = rest.split_once('.')?;
        (!tag.is_empty() && tag.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| pid.parse::<i32>().ok())
            .flatten()
            .filter(|&p| p > 0)
    };
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for entry in dir.flatten() {
            let file = entry.file_name();
            let Some(file) = file.to_str() else { continue };
            let Some(pid) = file.strip_prefix(&prefix).and_then(creator) else {
                continue;
            };
            let os_id = format!("/{file}");
            if named.as_deref() == Some(os_id.as_str()) || liveness::alive(pid) {
                continue;
            }
            if mapped::unlink_if_ours(&os_id) {
                tracing::warn!(
                    "removed segment {os_id}: its producer (pid {pid}) died before naming it"
                );
            }
        }
    }
    // Temporary link files `board.NAME.shm.tmp.PID` of dead producers.
    let (Some(dir), Some(base)) = (link.parent(), link.file_name().and_then(|f| f.to_str())) else {
        return;
    };
    let tmp_prefix = format!("{base}.tmp.");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for entry in rd.flatten() {
            let file = entry.file_name();
            let Some(pid) = file
                .to_str()
                .and_then(|f| f.strip_prefix(&tmp_prefix))
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if pid > 0 && !liveness::alive(pid) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// A failed safe open as a board error (keeping "exists already" and "not
/// found" recognisable by their kind).
pub(super) fn open_err(what: String, e: OpenError) -> BoardError {
    let source = match e {
        OpenError::Io { source, .. } => source,
        OpenError::Exists(_) => io::Error::new(io::ErrorKind::AlreadyExists, e.reason()),
        OpenError::NotFound(_) => io::Error::new(io::ErrorKind::NotFound, e.reason()),
        e => io::Error::other(e.reason()),
    };
    BoardError::Os { what, source }
}

/// The runtime directory a link file lives in.
pub(super) fn board_dir(link: &Path) -> PathBuf {
    link.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_owned)
}

/// Whether `id` looks like an os id we create.
pub fn valid_os_id(id: &str) -> bool {
    id.len() < 200
        && id.starts_with(OS_ID_PREFIX)
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Reads a link file: the os id of the board's segment.
pub(super) fn read_link(link: &Path, name: &Name) -> Result<String, BoardError> {
    // Never blocks (a FIFO planted there), never follows a symlink, and
    // trusts only a regular file of ours.
    let text = match openfile::read_regular(link, 256) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => {
            return Err(BoardError::NotFound {
                name: name.to_string(),
                dir: board_dir(link),
            })
        }
        Err(e) => {
            return Err(BoardError::Foreign {
                path: link.to_owned(),
                why: e.reason(),
            })
        }
    };
    match std::str::from_utf8(&text) {
        Ok(id) if valid_os_id(id.trim()) => Ok(id.trim().to_owned()),
        _ => Err(BoardError::Foreign {
            path: link.to_owned(),
            why: "the link file does not name a board segment".to_owned(),
        }),
    }
}

/// Publishes a link atomically: written to a temporary file, then hard-linked
/// into place (`link(2)` fails if the name exists, so two racing producers
/// never overwrite each other's board).
pub(super) fn publish_link(link: &Path, os_id: &str) -> Result<(), BoardError> {
    let tmp = link.with_extension(format!("shm.tmp.{}", std::process::id()));
    let os = |what: &str, source| BoardError::Os {
        what: format!("{what} {}", link.display()),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = openfile::open_regular(&tmp, Access::CreateNew(0o600))
        .map_err(|e| open_err(format!("writing {}", tmp.display()), e))?;
    f.write_all(os_id.as_bytes())
        .map_err(|e| os("writing", e))?;
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
    drop(f);
    let res = std::fs::hard_link(&tmp, link);
    let _ = std::fs::remove_file(&tmp);
    res.map_err(|e| os("publishing", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_ids_are_checked() {
        assert!(valid_os_id("/syncomm.board.x.1.ab"));
        assert!(!valid_os_id("/etc/passwd"));
        assert!(!valid_os_id("/syncomm.board./../x"));
    }
}
