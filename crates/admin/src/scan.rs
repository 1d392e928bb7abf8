//! Finding every object and telling its state.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use syncomm_board::record::{self as board_record, SegmentInfo};
use syncomm_common::attribution::absolute_dir;
use syncomm_common::{rundir, status};
use syncomm_discover::registry::{self, Loaded, Paths};
use syncomm_gate::SetInfo;

use crate::model::{Kind, Listing, Object, Removal, State};

/// What to look at.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The runtime directory.
    pub dir: PathBuf,
    /// Where it came from (for the header line).
    pub dir_source: &'static str,
    /// Only objects of this name.
    pub name: Option<String>,
    /// Also kernel objects of ours whose runtime directory is gone
    /// (system-wide orphans of the current user) and foreign ones.
    pub system: bool,
}

impl Scope {
    /// The runtime directory the programs would use, given the values of
    /// `SYNCOMM_DIR` and `XDG_RUNTIME_DIR` (the binary reads them).
    pub fn new(syncomm_dir: Option<&OsStr>, xdg_runtime_dir: Option<&OsStr>) -> Scope {
        let source = if syncomm_dir.is_some_and(|v| !v.is_empty()) {
            "SYNCOMM_DIR"
        } else if xdg_runtime_dir.is_some_and(|v| !v.is_empty()) {
            "XDG_RUNTIME_DIR"
        } else {
            "fallback"
        };
        Scope {
            dir: rundir::normalize(&rundir::choose(syncomm_dir, xdg_runtime_dir)),
            dir_source: source,
            name: None,
            system: true,
        }
    }
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Files of one object found in the runtime directory.
#[derive(Default, Debug)]
struct Group {
    files: Vec<PathBuf>,
}

/// Splits `KIND.NAME.EXT[.tmp.PID]` into (kind, name, suffix).
fn classify(file: &str) -> Option<(&'static str, String, &'static str)> {
    const KINDS: [&str; 5] = ["board", "gate", "discover", "worker", "ping"];
    const EXTS: [&str; 10] = [
        ".shm",
        ".sem",
        ".reg",
        ".reg.tmp",
        ".reg.corrupt",
        ".lock",
        ".sock",
        ".status",
        ".shm.tmp",
        ".status.tmp",
    ];
    for kind in KINDS {
        let Some(rest) = file.strip_prefix(kind).and_then(|r| r.strip_prefix('.')) else {
            continue;
        };
        // A temp file with a pid: `...shm.tmp.PID`, `...status.tmp.PID`.
        let (rest, tmp_pid) = match rest.rsplit_once(".tmp.") {
            Some((head, pid)) if pid.bytes().all(|b| b.is_ascii_digit()) && !pid.is_empty() => {
                (head, true)
            }
            _ => (rest, false),
        };
        for ext in EXTS {
            if let Some(name) = rest.strip_suffix(ext) {
                if name.is_empty() || (tmp_pid && ext.ends_with(".tmp")) {
                    continue;
                }
                let ext = if tmp_pid {
                    match ext {
                        ".shm" => ".shm.tmp",
                        ".status" => ".status.tmp",
                        _ => continue,
                    }
                } else {
                    ext
                };
                return Some((kind, name.to_owned(), ext));
            }
        }
    }
    None
}

/// Enumerates every object in `scope`.
pub fn scan(scope: &Scope) -> Listing {
    let dir_exists = scope.dir.is_dir();
    let abs = absolute_dir(&scope.dir);
    let mut objects = Vec::new();
    let segments = board_record::list_segments();
    let sets = syncomm_gate::list_sets();
    let mut named_segments = Vec::new();
    let mut named_sets = Vec::new();

    if dir_exists {
        match std::fs::symlink_metadata(&scope.dir) {
            Ok(m) if m.uid() != me() => {
                let mut o = Object::new(
                    Kind::File,
                    "-",
                    State::Foreign,
                    format!("the runtime directory belongs to uid {}", m.uid()),
                );
                o.dir = Some(abs.clone());
                objects.push(o);
            }
            _ => scan_dir(
                &scope.dir,
                &abs,
                &segments,
                &sets,
                &mut objects,
                &mut named_segments,
                &mut named_sets,
            ),
        }
    }

    // Kernel objects not named by a file in this directory.
    for seg in &segments {
        if named_segments.contains(&seg.os_id) {
            continue;
        }
        if let Some(o) = segment_object(seg, &abs, scope.system) {
            objects.push(o);
        }
    }
    for set in &sets {
        if named_sets.contains(&set.semid) {
            continue;
        }
        if let Some(o) = set_object(set, &abs, scope.system) {
            objects.push(o);
        }
    }
    if let Some(n) = &scope.name {
        objects.retain(|o| &o.name == n);
    }
    objects.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    Listing {
        dir: scope.dir.clone(),
        dir_source: scope.dir_source,
        dir_exists,
        objects,
    }
}

fn scan_dir(
    dir: &Path,
    abs: &Path,
    segments: &[SegmentInfo],
    sets: &[SetInfo],
    objects: &mut Vec<Object>,
    named_segments: &mut Vec<String>,
    named_sets: &mut Vec<i32>,
) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut groups: BTreeMap<(&'static str, String), Group> = BTreeMap::new();
    let mut temps = Vec::new();
    let mut sockets = Vec::new();
    for entry in rd.flatten() {
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        let path = entry.path();
        match classify(fname) {
            Some((_, name, ext @ (".shm.tmp" | ".status.tmp"))) => temps.push((path, name, ext)),
            Some((kind, name, _)) => groups.entry((kind, name)).or_default().files.push(path),
            None => {
                if entry.file_type().is_ok_and(|t| t.is_socket()) {
                    sockets.push(path);
                }
            }
        }
    }
    for ((kind, name), g) in groups {
        let mut o = match kind {
            "board" => board_object(&name, &g, segments, named_segments),
            "gate" => gate_object(&name, &g, sets, named_sets),
            "discover" => discover_object(dir, &name),
            "worker" => server_object(Kind::Worker, &name, &g),
            _ => server_object(Kind::Ping, &name, &g),
        };
        o.dir = Some(abs.to_owned());
        o.files = g.files.clone();
        objects.push(o);
    }
    for (path, name, _) in temps {
        let pid = path
            .to_str()
            .and_then(|p| p.rsplit('.').next())
            .and_then(|p| p.parse::<i32>().ok())
            .unwrap_or(0);
        let alive = syncomm_board::liveness::alive(pid);
        let mut o = Object::new(
            Kind::File,
            &name,
            if alive { State::Live } else { State::Stale },
            if alive {
                format!("temporary file of running pid {pid}")
            } else {
                format!("temporary file of pid {pid}, which is gone")
            },
        );
        o.pid = Some(pid);
        o.dir = Some(abs.to_owned());
        o.files = vec![path.clone()];
        if !alive {
            o.removal = Removal::Files(vec![path]);
        }
        objects.push(o);
    }
    for path in sockets {
        let name = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (state, why) = probe(&path);
        let mut o = Object::new(Kind::Socket, &name, state, why);
        o.dir = Some(abs.to_owned());
        o.files = vec![path.clone()];
        if state == State::Stale {
            o.removal = Removal::Files(vec![path]);
        }
        objects.push(o);
    }
}

/// Whether a Unix socket has a listener: `live` if a connect succeeds,
/// `stale` if it is refused (nobody listens: its owner died).
pub fn probe(path: &Path) -> (State, String) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.uid() != me() => {
            return (State::Foreign, format!("socket of uid {}", m.uid()));
        }
        Ok(m) if !m.file_type().is_socket() => {
            return (State::Foreign, "not a socket".to_owned());
        }
        Err(e) => return (State::Stale, format!("cannot inspect: {e}")),
        Ok(_) => {}
    }
    match UnixStream::connect(path) {
        Ok(_) => (State::Live, "a server accepts connections".to_owned()),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => (
            State::Stale,
            "nobody listens on the socket (its server died)".to_owned(),
        ),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => (
            State::Live,
            "a server listens (its backlog is full)".to_owned(),
        ),
        Err(e) => (State::Stale, format!("connect failed: {e}")),
    }
}

fn board_info(o: &mut Object, seg: &SegmentInfo) {
    o.kernel = Some(seg.path.display().to_string());
    if let Some(b) = &seg.board {
        o.info.insert("total".into(), json!(b.total));
        o.info.insert("active".into(), json!(b.active));
        o.info.insert("producer_pid".into(), json!(b.producer_pid));
        o.info
            .insert("producer_alive".into(), json!(b.producer_alive));
        o.info.insert("waiters".into(), json!(b.waiters));
        o.info.insert("repairs".into(), json!(b.repairs));
        if b.producer_pid > 0 {
            o.pid = Some(b.producer_pid);
        }
    }
    if o.pid.is_none() && seg.creator_alive {
        o.pid = seg.creator_pid;
    }
}

fn board_object(
    name: &str,
    g: &Group,
    segments: &[SegmentInfo],
    named: &mut Vec<String>,
) -> Object {
    let link = g
        .files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "shm"));
    let Some(link) = link else {
        return Object::new(Kind::Board, name, State::Stale, "no link file");
    };
    let os_id = match syncomm_sys::openfile::read_regular(link, 256) {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(e) => {
            return Object::new(Kind::Board, name, State::Foreign, e.reason());
        }
    };
    if !syncomm_board::board::valid_os_id(&os_id) {
        return Object::new(
            Kind::Board,
            name,
            State::Foreign,
            "the link file does not name a board segment",
        );
    }
    named.push(os_id.clone());
    let removal = Removal::Board {
        os_id: Some(os_id.clone()),
        link: Some(link.clone()),
    };
    let Some(seg) = segments.iter().find(|s| s.os_id == os_id) else {
        let mut o = Object::new(
            Kind::Board,
            name,
            State::Orphan,
            format!("the link names segment {os_id}, which is gone"),
        );
        o.removal = removal;
        return o;
    };
    if seg.uid != me() {
        return Object::new(
            Kind::Board,
            name,
            State::Foreign,
            format!("segment of uid {}", seg.uid),
        );
    }
    let mut o = if seg.has_live_owner() {
        Object::new(Kind::Board, name, State::Live, "")
    } else {
        let mut o = Object::new(
            Kind::Board,
            name,
            State::Stale,
            match &seg.board {
                Some(b) if b.producer_pid > 0 => {
                    format!("its producer (pid {}) is gone", b.producer_pid)
                }
                _ => "its creator is gone".to_owned(),
            },
        );
        o.removal = removal;
        o
    };
    board_info(&mut o, seg);
    if let Some(e) = &seg.error {
        o.why = format!("{} (segment: {e})", o.why);
    }
    o
}

/// A segment no link in our directory names.
fn segment_object(seg: &SegmentInfo, abs: &Path, system: bool) -> Option<Object> {
    let name = seg
        .origin
        .as_ref()
        .map(|o| o.name.clone())
        .unwrap_or_else(|| seg.os_id.trim_start_matches('/').to_owned());
    if seg.uid != me() {
        if !system {
            return None;
        }
        let mut o = Object::new(
            Kind::Board,
            &name,
            State::Foreign,
            format!("segment of uid {}", seg.uid),
        );
        o.kernel = Some(seg.path.display().to_string());
        return Some(o);
    }
    let Some(origin) = &seg.origin else {
        if !system {
            return None;
        }
        let mut o = Object::new(
            Kind::Board,
            &name,
            State::Foreign,
            "no attribution record (made by an older syncomm?); not touched",
        );
        board_info(&mut o, seg);
        return Some(o);
    };
    let here = origin.dir == abs;
    let dir_gone = !origin.dir.is_dir();
    if !(here || (system && dir_gone)) {
        return None; // another runtime directory's business
    }
    let mut o = if seg.has_live_owner() {
        Object::new(
            Kind::Board,
            &name,
            State::Live,
            if dir_gone {
                "its runtime directory is gone, but its producer runs"
            } else {
                "not (yet) named by a link, but its producer runs"
            },
        )
    } else {
        let mut o = Object::new(
            Kind::Board,
            &name,
            State::Orphan,
            if dir_gone {
                "its runtime directory is gone"
            } else {
                "no link file names it"
            },
        );
        o.removal = Removal::Board {
            os_id: Some(seg.os_id.clone()),
            link: None,
        };
        o
    };
    o.dir = Some(origin.dir.clone());
    board_info(&mut o, seg);
    Some(o)
}

fn gate_info(o: &mut Object, set: &SetInfo) {
    o.kernel = Some(format!("sem key {:#010x} id {}", set.key, set.semid));
    if let Some(st) = &set.status {
        o.info.insert("slots".into(), json!(st.slots));
        o.info.insert("held".into(), json!(st.slots - st.free));
        o.info.insert("waiting".into(), json!(st.waiting));
        let holders: Vec<Value> = st
            .holders
            .iter()
            .map(|h| json!({"slot": h.slot, "pid": h.pid, "command": h.command}))
            .collect();
        o.info.insert("holders".into(), Value::Array(holders));
    }
}

fn set_in_use(set: &SetInfo) -> bool {
    set.status
        .as_ref()
        .is_some_and(|st| st.free < st.slots || st.waiting > 0)
}

fn gate_object(name: &str, g: &Group, sets: &[SetInfo], named: &mut Vec<i32>) -> Object {
    let Some(file) = g.files.first() else {
        return Object::new(Kind::Gate, name, State::Stale, "no file");
    };
    let key = match syncomm_gate::key_in_file(file) {
        Ok(k) => k,
        Err(why) if why.contains("owned by uid") || why.contains("belongs") => {
            return Object::new(Kind::Gate, name, State::Foreign, why)
        }
        Err(why) => {
            let mut o = Object::new(Kind::Gate, name, State::Orphan, why);
            o.removal = Removal::Files(vec![file.clone()]);
            return o;
        }
    };
    let removal = Removal::GateFile {
        path: file.clone(),
        name: name.to_owned(),
    };
    let Some(key) = key else {
        let mut o = Object::new(
            Kind::Gate,
            name,
            State::Orphan,
            "the file names no set (its creator died half-way)",
        );
        o.removal = removal;
        return o;
    };
    let set = sets
        .iter()
        .find(|s| s.key == key)
        .cloned()
        .or_else(|| syncomm_gate::inspect_key(key));
    let Some(set) = set else {
        let mut o = Object::new(
            Kind::Gate,
            name,
            State::Orphan,
            format!("the file names key {key:#010x}, which has no set"),
        );
        o.removal = removal;
        return o;
    };
    named.push(set.semid);
    if set.uid != me() {
        return Object::new(
            Kind::Gate,
            name,
            State::Foreign,
            format!("its key names a set of uid {}", set.uid),
        );
    }
    let why = match &set.status {
        Some(st) if st.free == st.slots && st.waiting == 0 => "idle (a named semaphore persists)",
        Some(_) => "",
        None => "its set is not a well-formed gate set",
    };
    let mut o = Object::new(Kind::Gate, name, State::Live, why);
    gate_info(&mut o, &set);
    o
}

/// A gate set no file in our directory names.
fn set_object(set: &SetInfo, abs: &Path, system: bool) -> Option<Object> {
    let name = set.origin.as_ref().map_or("?", |o| o.name.as_str());
    if set.uid != me() || set.origin.is_none() {
        if !system {
            return None;
        }
        let why = if set.uid != me() {
            format!("set of uid {}", set.uid)
        } else {
            "no attribution record; not touched".to_owned()
        };
        let mut o = Object::new(Kind::Gate, name, State::Foreign, why);
        o.kernel = Some(format!("sem key {:#010x} id {}", set.key, set.semid));
        return Some(o);
    }
    let origin = set.origin.as_ref()?;
    let here = origin.dir == abs;
    let dir_gone = !origin.dir.is_dir();
    if !(here || (system && dir_gone)) {
        return None;
    }
    let mut o = if set_in_use(set) {
        Object::new(
            Kind::Gate,
            name,
            State::Live,
            "no file names it any more, but a slot is held",
        )
    } else {
        let mut o = Object::new(
            Kind::Gate,
            name,
            State::Orphan,
            if dir_gone {
                "its runtime directory is gone"
            } else {
                "no gate file names it"
            },
        );
        o.removal = Removal::GateSet {
            key: set.key,
            semid: set.semid,
        };
        o
    };
    o.dir = Some(origin.dir.clone());
    gate_info(&mut o, set);
    Some(o)
}

fn discover_object(dir: &Path, name: &str) -> Object {
    let removal = Removal::Discover {
        dir: dir.to_owned(),
        name: name.to_owned(),
    };
    let Ok(n) = syncomm_common::Name::new(name) else {
        return Object::new(Kind::Discover, name, State::Foreign, "not a valid name");
    };
    let paths = Paths::in_dir(dir, &n);
    let mut o = match registry::read(&paths) {
        Ok(Loaded::Found(reg)) => {
            let members: Vec<Value> = reg
                .entries
                .iter()
                .map(|e| {
                    json!({"id": e.id.to_string(), "pid": e.stamp.pid,
                           "alive": e.stamp.is_alive()})
                })
                .collect();
            let alive = reg.entries.iter().filter(|e| e.stamp.is_alive()).count();
            let mut o = if alive > 0 {
                Object::new(Kind::Discover, name, State::Live, "")
            } else {
                Object::new(
                    Kind::Discover,
                    name,
                    State::Stale,
                    "every registered member is gone",
                )
            };
            o.info.insert("size".into(), json!(reg.members));
            o.info.insert("alive".into(), json!(alive));
            o.info.insert("members".into(), Value::Array(members));
            o
        }
        Ok(Loaded::Corrupt(e)) => Object::new(
            Kind::Discover,
            name,
            State::Stale,
            format!("the registry is not a registry ({e})"),
        ),
        Ok(Loaded::Missing) => match registry::lock_holder(&paths) {
            Some(pid) => {
                let mut o = Object::new(Kind::Discover, name, State::Live, "its lock is held");
                o.pid = Some(pid);
                o
            }
            None => Object::new(
                Kind::Discover,
                name,
                State::Stale,
                "files left without a registry or lock holder",
            ),
        },
        Err(e) => Object::new(Kind::Discover, name, State::Foreign, e.to_string()),
    };
    if o.state == State::Stale {
        o.removal = removal;
    }
    o
}

fn server_object(kind: Kind, name: &str, g: &Group) -> Object {
    let sock = g
        .files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "sock"));
    let stat = g
        .files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "status"));
    let record = stat.map(|p| status::read(p));
    let mut o = match record {
        Some(Ok(Some(st))) => {
            let alive = syncomm_board::liveness::alive_as(st.pid, st.start);
            let mut o = if alive {
                Object::new(kind, name, State::Live, "")
            } else {
                Object::new(
                    kind,
                    name,
                    State::Stale,
                    format!("its server (pid {}) is gone", st.pid),
                )
            };
            o.pid = Some(st.pid);
            let mut info: Map<String, Value> = st.stats.clone();
            info.insert("updated_ts_ms".into(), json!(st.updated_ms));
            o.info = info;
            o
        }
        Some(Err(e)) => Object::new(kind, name, State::Foreign, e.reason()),
        Some(Ok(None)) | None => match sock {
            Some(s) => {
                let (state, why) = probe(s);
                Object::new(kind, name, state, format!("{why} (no status record)"))
            }
            None => Object::new(kind, name, State::Stale, "an unreadable status record"),
        },
    };
    if o.state == State::Stale {
        o.removal = Removal::Files(g.files.clone());
    }
    o
}
