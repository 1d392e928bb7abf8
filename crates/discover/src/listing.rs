//! The read-only view of a name's registry that `--list` shows.

use std::io;

use syncomm_common::rundir::RunDir;
use syncomm_common::Name;
use syncomm_sys::proc::Liveness;

use crate::registry::{self, Entry, FileError, Loaded, Paths, Registry};
use crate::Error;

/// A live member as `--list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    /// Its id.
    pub id: String,
    /// Its pid.
    pub pid: i32,
    /// `waiting` or `seen`.
    pub state: &'static str,
}

/// The registry of a name as `--list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// M (0 when nobody is registered).
    pub members: usize,
    /// Whether the group is complete and finishing.
    pub closed: bool,
    /// The live members.
    pub live: Vec<Listed>,
}

/// The live members registered under `name` (read-only: nothing is pruned).
pub fn list(dir: &RunDir, name: &Name) -> Result<Listing, Error> {
    let paths = Paths::in_dir(dir.path(), name);
    let reg = match registry::read(&paths)? {
        Loaded::Missing => Registry::new(0),
        Loaded::Found(reg) => reg,
        Loaded::Corrupt(why) => {
            return Err(Error::File(FileError::Io {
                what: "parse",
                path: paths.registry,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{why} (the next member to arrive will move it aside)"),
                ),
            }))
        }
    };
    // A member whose state cannot be read is listed: only the known dead are not.
    let mut live: Vec<&Entry> = reg
        .entries
        .iter()
        .filter(|e| !matches!(e.stamp.liveness(), Liveness::Dead))
        .collect();
    live.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Listing {
        members: if live.is_empty() { 0 } else { reg.members },
        closed: reg.is_closed() && !live.is_empty(),
        live: live
            .into_iter()
            .map(|e| Listed {
                id: e.id.to_string(),
                pid: e.stamp.pid,
                state: if e.seen { "seen" } else { "waiting" },
            })
            .collect(),
    })
}
