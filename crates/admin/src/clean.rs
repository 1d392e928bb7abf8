//! `syncomm clean`: remove stale and orphaned objects, never a live one.
//!
//! Each object is checked again at the moment it is removed, by the same
//! rule that made it removable: a board segment is inspected again (a live
//! producer or creator keeps it), a gate set is removed only after all of its
//! counter units were taken at once without waiting (so nobody holds a slot),
//! a discover group only under its lock with no live member, a socket only if
//! a connect is still refused and its status record (if any) names a dead
//! process.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use syncomm_common::Name;
use syncomm_discover::registry::{self, Loaded, Locked, Paths};

use crate::model::{Listing, Object, Removal, State};
use crate::scan::probe;

/// What clean did with one object.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The object (as listed before).
    pub object: Object,
    /// Whether it was removed (false with `--dry-run`).
    pub removed: bool,
    /// Why it could not be removed, if it could not.
    pub error: Option<String>,
}

/// Removes every stale and orphaned object of `listing` (nothing with
/// `dry_run`). Live and foreign objects are never touched.
pub fn clean(listing: &Listing, dry_run: bool) -> Vec<Outcome> {
    let mut out = Vec::new();
    for o in &listing.objects {
        if !matches!(o.state, State::Stale | State::Orphan) {
            continue;
        }
        if matches!(o.removal, Removal::Never) {
            out.push(Outcome {
                object: o.clone(),
                removed: false,
                error: Some("nothing we know how to remove".into()),
            });
            continue;
        }
        let result = if dry_run { Ok(()) } else { remove(&o.removal) };
        out.push(Outcome {
            object: o.clone(),
            removed: !dry_run && result.is_ok(),
            error: result.err(),
        });
    }
    out
}

fn rm(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Removes one object, checking again that it is not live.
pub fn remove(r: &Removal) -> Result<(), String> {
    match r {
        Removal::Never => Err("never removed".into()),
        Removal::Files(files) => {
            for f in files {
                if f.extension().is_some_and(|e| e == "sock") {
                    let (state, why) = probe(f);
                    if state == State::Live {
                        return Err(format!("{} came alive: {why}", f.display()));
                    }
                }
                if f.extension().is_some_and(|e| e == "status") {
                    if let Ok(Some(st)) = syncomm_common::status::read(f) {
                        if syncomm_board::liveness::alive_as(st.pid, st.start) {
                            return Err(format!("its server (pid {}) runs", st.pid));
                        }
                    }
                }
            }
            files.iter().try_for_each(|f| rm(f))
        }
        Removal::Board { os_id, link } => {
            if let Some(id) = os_id {
                let seg = syncomm_board::record::inspect(id);
                if seg
                    .error
                    .as_deref()
                    .map_or(true, |e| !e.contains("No such file"))
                {
                    if seg.has_live_owner() {
                        return Err(format!("segment {id} has a live producer"));
                    }
                    if seg.uid != nix::unistd::geteuid().as_raw() {
                        return Err(format!("segment {id} belongs to uid {}", seg.uid));
                    }
                    if seg.path.exists() && !syncomm_board::mapped::unlink_if_ours(id) {
                        return Err(format!("could not remove segment {id}"));
                    }
                }
            }
            if let Some(l) = link {
                // Only if it still names the segment we judged.
                let now = syncomm_sys::openfile::read_regular(l, 256)
                    .map(|b| String::from_utf8_lossy(&b).trim().to_owned());
                match (now, os_id) {
                    (Ok(n), Some(id)) if &n != id => {
                        return Err(format!("{} now names another segment", l.display()))
                    }
                    (Err(e), _) if e.is_not_found() => {}
                    _ => rm(l)?,
                }
            }
            Ok(())
        }
        Removal::GateSet { key, semid } => syncomm_gate::remove_set_if_idle(*key, *semid).map(drop),
        Removal::GateFile { path, name } => {
            let n = Name::new(name).map_err(|e| e.to_string())?;
            syncomm_gate::Gate::remove_at(path, &n)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Removal::Discover { dir, name } => {
            let n = Name::new(name).map_err(|e| e.to_string())?;
            remove_discover(&Paths::in_dir(dir, &n))
        }
    }
}

fn remove_discover(paths: &Paths) -> Result<(), String> {
    /// Nothing interrupts clean's short wait but its deadline.
    struct Never(std::os::unix::net::UnixStream);
    impl syncomm_sys::flock::Interrupt for Never {
        fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
            use std::os::fd::AsFd;
            self.0.as_fd()
        }
        fn requested(&self) -> bool {
            false
        }
    }
    let (wake_r, _wake_w) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
    let never = Never(wake_r);
    let deadline = Instant::now() + Duration::from_millis(500);
    let lock: Locked = registry::Locked::take_within(paths, Some(deadline), &never)
        .map_err(|e| e.to_string())?
        .ok_or("its lock is held (a member is busy)")?;
    match registry::read(paths).map_err(|e| e.to_string())? {
        Loaded::Found(reg) => {
            if let Some(e) = reg.entries.iter().find(|e| e.stamp.is_alive()) {
                return Err(format!("member {} (pid {}) runs", e.id, e.stamp.pid));
            }
        }
        Loaded::Corrupt(_) | Loaded::Missing => {}
    }
    rm(&paths.registry)?;
    rm(&paths.temp)?;
    rm(&paths.corrupt)?;
    lock.remove_file().map_err(|e| e.to_string())
}
