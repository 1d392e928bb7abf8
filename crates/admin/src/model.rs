//! Objects as `syncomm ls` shows them.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

/// What an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A shared-memory board (link file and `/dev/shm` segment).
    Board,
    /// A worker pool (socket and status record).
    Worker,
    /// A ping server (socket and status record).
    Ping,
    /// A gate semaphore (runtime file and System V set).
    Gate,
    /// A discover group (registry and lock file).
    Discover,
    /// Another socket in the runtime directory.
    Socket,
    /// A temporary file a process left.
    File,
}

impl Kind {
    /// The kind's name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Board => "board",
            Kind::Worker => "worker",
            Kind::Ping => "ping",
            Kind::Gate => "gate",
            Kind::Discover => "discover",
            Kind::Socket => "socket",
            Kind::File => "file",
        }
    }
}

/// Whether an object is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// In use (or, for a gate, existing under its name: a named semaphore
    /// persists while idle).
    Live,
    /// Its owner died.
    Stale,
    /// A kernel object whose file (or runtime directory) is gone, or a file
    /// whose kernel object is gone.
    Orphan,
    /// Not ours (another user's, or without our attribution record): never touched.
    Foreign,
}

impl State {
    /// The state's name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Live => "live",
            State::Stale => "stale",
            State::Orphan => "orphan",
            State::Foreign => "foreign",
        }
    }
}

/// How to remove an object (re-checked at the moment of removal).
#[derive(Debug, Clone, Default)]
pub enum Removal {
    /// Never removed.
    #[default]
    Never,
    /// Files in the runtime directory (a socket, a status record, a temp file).
    Files(Vec<PathBuf>),
    /// A board: its segment (if any) and its link (if any).
    Board {
        /// The segment's os id.
        os_id: Option<String>,
        /// The link file.
        link: Option<PathBuf>,
    },
    /// A gate set by key and id.
    GateSet {
        /// Its key.
        key: i32,
        /// Its id.
        semid: i32,
    },
    /// A gate runtime file (and the set it names, if idle), under its lock.
    GateFile {
        /// The file.
        path: PathBuf,
        /// The gate's name.
        name: String,
    },
    /// A discover group's files, under its lock.
    Discover {
        /// The runtime directory.
        dir: PathBuf,
        /// The group's name.
        name: String,
    },
}

/// One object.
#[derive(Debug, Clone, Serialize)]
pub struct Object {
    /// What it is.
    pub kind: Kind,
    /// Its rendezvous name.
    pub name: String,
    /// Its state.
    pub state: State,
    /// Why it has that state.
    pub why: String,
    /// The runtime directory it belongs to (from its place or its record).
    pub dir: Option<PathBuf>,
    /// Its files in the runtime directory.
    pub files: Vec<PathBuf>,
    /// The kernel object, if any (`/dev/shm/...`, `sem key 0x... id N`).
    pub kernel: Option<String>,
    /// The process that owns it, if one does (`owner_pid` in JSON: `pid`
    /// is the process that writes a JSON line).
    #[serde(rename = "owner_pid")]
    pub pid: Option<i32>,
    /// Kind-specific figures.
    pub info: serde_json::Map<String, serde_json::Value>,
    /// How `clean` removes it.
    #[serde(skip)]
    pub removal: Removal,
}

impl Object {
    /// An object with nothing filled in but kind, name and state.
    pub fn new(kind: Kind, name: &str, state: State, why: impl Into<String>) -> Object {
        Object {
            kind,
            name: name.to_owned(),
            state,
            why: why.into(),
            dir: None,
            files: Vec::new(),
            kernel: None,
            pid: None,
            info: serde_json::Map::new(),
            removal: Removal::Never,
        }
    }

    /// One line of `syncomm ls`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{:<7} {:<8} {:<20}",
            self.state.as_str(),
            self.kind.as_str(),
            self.name
        );
        if let Some(pid) = self.pid {
            let _ = write!(s, " pid={pid}");
        }
        for (k, v) in &self.info {
            match v {
                serde_json::Value::String(t) => {
                    let _ = write!(s, " {k}={t}");
                }
                serde_json::Value::Array(a) => {
                    let items: Vec<String> = a
                        .iter()
                        .map(|i| match i {
                            serde_json::Value::Object(o) => o
                                .iter()
                                .map(|(k, v)| format!("{k}:{}", plain(v)))
                                .collect::<Vec<_>>()
                                .join(","),
                            other => plain(other),
                        })
                        .collect();
                    let _ = write!(s, " {k}=[{}]", items.join("; "));
                }
                other => {
                    let _ = write!(s, " {k}={}", plain(other));
                }
            }
        }
        if let Some(k) = &self.kernel {
            let _ = write!(s, " ({k})");
        }
        if !self.why.is_empty() {
            let _ = write!(s, " — {}", self.why);
        }
        s
    }
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(t) => t.clone(),
        other => other.to_string(),
    }
}

/// What `syncomm ls` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The runtime directory in use.
    pub dir: PathBuf,
    /// Where it came from: `SYNCOMM_DIR`, `XDG_RUNTIME_DIR` or `fallback`.
    pub dir_source: &'static str,
    /// Whether it exists.
    pub dir_exists: bool,
    /// Every object.
    pub objects: Vec<Object>,
}

impl Listing {
    /// The first line of `syncomm ls`.
    pub fn header(&self) -> String {
        format!(
            "runtime directory: {} (from {}{})",
            self.dir.display(),
            self.dir_source,
            if self.dir_exists {
                ""
            } else {
                "; it does not exist"
            }
        )
    }
}
