//! What a run left behind: kernel objects (board segments, gate sets) whose
//! attribution record names a runtime directory chosen by a predicate, the
//! processes whose `SYNCOMM_DIR` is such a directory, and such directories
//! themselves. The test harness removes a test's orphans when it drops the
//! test's directory ([`clean_orphans_of`]); the end-of-suite check
//! (`tests/zz_leaks.rs`) fails naming whatever is still there.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use syncomm_common::attribution::absolute_dir;

use crate::clean;
use crate::model::{Kind, Object, Removal, State};

/// One leaked thing.
#[derive(Debug, Clone, Serialize)]
pub struct Leak {
    /// `segment`, `semaphore set`, `process` or `directory`.
    pub what: &'static str,
    /// Which (a path, a key, a pid and command line).
    pub id: String,
    /// The runtime directory it belongs to.
    pub dir: PathBuf,
}

impl std::fmt::Display for Leak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (runtime directory {})",
            self.what,
            self.id,
            self.dir.display()
        )
    }
}

/// Kernel objects of ours whose record names a directory `pred` accepts,
/// as `syncomm ls` objects (state orphan when the directory is gone and no
/// live process owns them, live otherwise).
pub fn kernel_objects(pred: &dyn Fn(&Path) -> bool) -> Vec<Object> {
    let me = nix::unistd::geteuid().as_raw();
    let mut out = Vec::new();
    for seg in syncomm_board::record::list_segments() {
        let Some(origin) = seg.origin.clone().filter(|o| seg.uid == me && pred(&o.dir)) else {
            continue;
        };
        let live = seg.has_live_owner();
        let mut o = Object::new(
            Kind::Board,
            &origin.name,
            if live { State::Live } else { State::Orphan },
            "",
        );
        o.kernel = Some(seg.path.display().to_string());
        o.dir = Some(origin.dir);
        if !live {
            o.removal = Removal::Board {
                os_id: Some(seg.os_id.clone()),
                link: None,
            };
        }
        out.push(o);
    }
    for set in syncomm_gate::list_sets() {
        let Some(origin) = set.origin.clone().filter(|o| set.uid == me && pred(&o.dir)) else {
            continue;
        };
        let held = set
            .status
            .as_ref()
            .is_some_and(|s| s.free < s.slots || s.waiting > 0);
        let mut o = Object::new(
            Kind::Gate,
            &origin.name,
            if held { State::Live } else { State::Orphan },
            "",
        );
        o.kernel = Some(format!("sem key {:#010x} id {}", set.key, set.semid));
        o.dir = Some(origin.dir);
        if !held {
            o.removal = Removal::GateSet {
                key: set.key,
                semid: set.semid,
            };
        }
        out.push(o);
    }
    out
}

/// Removes the kernel objects whose record names `dir` (which the caller
/// has just deleted) and that nobody uses; returns what is left (the ones a
/// live process still owns, or that could not be removed).
///
/// A process killed just before (a test's children) may take a moment to
/// die and let go: objects still live are looked at again for up to
/// `grace`.
pub fn clean_orphans_of(dir: &Path, grace: std::time::Duration) -> Vec<Object> {
    let abs = absolute_dir(dir);
    let deadline = std::time::Instant::now() + grace;
    loop {
        let mut left = Vec::new();
        for o in kernel_objects(&|d| d == abs || d == dir) {
            if o.state == State::Live || clean::remove(&o.removal).is_err() {
                left.push(o);
            }
        }
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Processes (other than this one) whose `SYNCOMM_DIR` is a directory
/// `pred` accepts: (pid, command line, directory).
pub fn processes(pred: &dyn Fn(&Path) -> bool) -> Vec<(i32, String, PathBuf)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me || !syncomm_board::liveness::alive(pid) {
            continue;
        }
        let Some(env) = syncomm_sys::proc::environ(pid) else {
            continue;
        };
        let Some(dir) = env
            .split(|&b| b == 0)
            .find_map(|v| v.strip_prefix(b"SYNCOMM_DIR="))
            .map(|d| PathBuf::from(std::ffi::OsStr::from_bytes(d)))
        else {
            continue;
        };
        if pred(&dir) {
            let cmd = syncomm_sys::proc::cmdline(pid)
                .and_then(|c| syncomm_gate::parse_cmdline(&c))
                .unwrap_or_default();
            out.push((pid, cmd, dir));
        }
    }
    out
}

/// Everything left of runs whose runtime directories `pred` accepts:
/// kernel objects, processes, and (listed by the caller) directories.
pub fn leaks(pred: &dyn Fn(&Path) -> bool) -> Vec<Leak> {
    let mut out: Vec<Leak> = kernel_objects(pred)
        .into_iter()
        .map(|o| Leak {
            what: if o.kind == Kind::Board {
                "segment"
            } else {
                "semaphore set"
            },
            id: format!(
                "{} of {:?} ({})",
                o.kernel.unwrap_or_default(),
                o.name,
                o.state.as_str()
            ),
            dir: o.dir.unwrap_or_default(),
        })
        .collect();
    for (pid, cmd, dir) in processes(pred) {
        out.push(Leak {
            what: "process",
            id: format!("{pid} ({cmd})"),
            dir,
        });
    }
    out
}
