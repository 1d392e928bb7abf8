//! Status records: servers (the worker pool, the ping server) publish what
//! they are doing in the runtime directory as `KIND.NAME.status`, one JSON
//! object rewritten atomically (temp file + `rename(2)`) about once a second.
//! `syncomm ls` and `syncomm top` read them. The record names the process by
//! pid *and* start time (`/proc/PID/stat` field 22), so the record of a server
//! that died, even one whose pid was reused since, reads as stale.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::name::Name;
use crate::rundir::RunDir;
use crate::shutdown::Shutdown;

/// The format tag of a status record.
pub const FORMAT: &str = "syncomm-status 1";

/// The largest status file read.
pub const MAX_STATUS: u64 = 64 * 1024;

/// One server's status.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// [`FORMAT`].
    pub format: String,
    /// `worker` or `ping`.
    pub kind: String,
    /// The rendezvous name.
    pub name: String,
    /// The server's pid.
    pub pid: i32,
    /// Its start time (`/proc/PID/stat` field 22).
    pub start: u64,
    /// When the record was written, ms since the Unix epoch.
    pub updated_ms: u64,
    /// Kind-specific figures (counters are totals since start, so a reader
    /// derives rates from two records).
    pub stats: serde_json::Map<String, serde_json::Value>,
}

/// The path of the status record of `kind` `name`: `{rundir}/KIND.NAME.status`.
pub fn path(dir: &RunDir, kind: &str, name: &Name) -> PathBuf {
    dir.file(kind, name, "status")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Status {
    /// A record for this process.
    pub fn own(kind: &str, name: &Name) -> Status {
        let pid = std::process::id() as i32;
        Status {
            format: FORMAT.to_owned(),
            kind: kind.to_owned(),
            name: name.to_string(),
            pid,
            start: syncomm_sys::proc::start_time(pid)
                .ok()
                .flatten()
                .unwrap_or(0),
            updated_ms: now_ms(),
            stats: serde_json::Map::new(),
        }
    }

    /// Parses a record's bytes (`None`: not a status record).
    pub fn parse(bytes: &[u8]) -> Option<Status> {
        let s: Status = serde_json::from_slice(bytes).ok()?;
        (s.format == FORMAT && s.pid > 0).then_some(s)
    }
}

/// Writes `status` to `path` atomically: a temp file beside it, then `rename(2)`.
pub fn write(path: &Path, status: &Status) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(&tmp)?;
    serde_json::to_writer(&mut f, status).map_err(io::Error::other)?;
    f.write_all(b"\n")?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// Reads the status record at `path`: `Ok(None)` when there is none or it is
/// not a status record; never blocks or follows a symlink, only our own file.
pub fn read(path: &Path) -> Result<Option<Status>, syncomm_sys::openfile::OpenError> {
    match syncomm_sys::openfile::read_regular(path, MAX_STATUS as usize) {
        Ok(bytes) => Ok(Status::parse(&bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A thread that rewrites a status record about once a second until the
/// server begins to shut down (or the publisher is dropped), then removes it.
///
/// The record goes when shutdown is *requested*, not when the process ends:
/// a server that is draining no longer serves, and a second signal during the
/// drain ends the process at once (see [`crate::shutdown`]), skipping every
/// destructor; a record removed only on drop would be left behind.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the publisher looks at the stop and shutdown flags.
const PUBLISHER_TICK: Duration = Duration::from_millis(20);

impl Publisher {
    /// Publishes `kind` `name` at `path`, filling `stats` with `fill` each
    /// time, until `shutdown` is requested.
    pub fn start(
        kind: &str,
        name: &Name,
        path: PathBuf,
        shutdown: &Shutdown,
        mut fill: impl FnMut(&mut serde_json::Map<String, serde_json::Value>) + Send + 'static,
    ) -> Publisher {
        let stop = Arc::new(AtomicBool::new(false));
        let mut status = Status::own(kind, name);
        let (stop2, path2, shutdown) = (stop.clone(), path.clone(), shutdown.clone());
        let thread = std::thread::Builder::new()
            .name("status".into())
            .spawn(move || {
                let done = || stop2.load(Ordering::Relaxed) || shutdown.requested();
                'publish: while !done() {
                    status.updated_ms = now_ms();
                    fill(&mut status.stats);
                    let _ = write(&path2, &status);
                    let next = std::time::Instant::now() + Duration::from_secs(1);
                    while std::time::Instant::now() < next {
                        if done() {
                            break 'publish;
                        }
                        std::thread::sleep(PUBLISHER_TICK);
                    }
                }
                remove_if_ours(&path2, &status);
            })
            .ok();
        Publisher { stop, thread }
    }
}

/// Removes the record at `path` if it is still the one `own` wrote: a
/// successor that started while this server drained may have replaced it.
fn remove_if_ours(path: &Path, own: &Status) {
    if let Ok(Some(s)) = read(path) {
        if s.pid == own.pid && s.start == own.start {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread removes the record as it ends (if none could be
        // started, no record was ever written).
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("worker.x.status");
        let name = Name::new("x").unwrap();
        let mut s = Status::own("worker", &name);
        s.stats.insert("calls".into(), 5.into());
        write(&p, &s).unwrap();
        assert_eq!(read(&p).unwrap(), Some(s));
        std::fs::write(&p, b"{}").unwrap();
        assert_eq!(read(&p).unwrap(), None);
    }
}
