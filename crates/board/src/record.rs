//! The board segment's attribution record, and reading segments for
//! `syncomm ls`.
//!
//! After the ring, a segment carries a trailer: `SYNCREC1`, the record's
//! length (`u32`, little-endian) and the record of
//! [`syncomm_common::attribution`] (the runtime directory and the name). The
//! header's `total_size` says where the board ends, so readers that only know
//! the board ignore the trailer; `syncomm ls` reads it to trace a segment
//! whose runtime directory (or link file) is gone.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;
use syncomm_common::attribution::{self, Origin};
use syncomm_sys::openfile;

use crate::board::OS_ID_PREFIX;
use crate::liveness;
use crate::mapped::{shm_path, Segment};
use crate::segment::{segment_size, MAX_CAPACITY};

/// The first bytes of the trailer.
pub const TRAILER_MAGIC: &[u8; 8] = b"SYNCREC1";

/// The trailer holding `origin`.
pub fn encode(origin: &Origin) -> Vec<u8> {
    let rec = origin.encode();
    let mut v = Vec::with_capacity(12 + rec.len());
    v.extend_from_slice(TRAILER_MAGIC);
    v.extend_from_slice(&(rec.len() as u32).to_le_bytes());
    v.extend_from_slice(&rec);
    v
}

/// The record in a trailer (the bytes after the board), if well-formed.
pub fn decode(trailer: &[u8]) -> Option<Origin> {
    let rest = trailer.strip_prefix(TRAILER_MAGIC)?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let rec = rest.get(4..)?;
    (rec.len() == len).then(|| Origin::decode(rec)).flatten()
}

/// A board as read from its segment.
#[derive(Debug, Clone, Serialize)]
pub struct BoardInfo {
    /// Ring capacity.
    pub capacity: u32,
    /// Values appended so far.
    pub total: u64,
    /// Whether a producer says it runs.
    pub active: bool,
    /// The producer that runs (or last ran) it; 0: none yet.
    pub producer_pid: i32,
    /// Whether that producer is alive (same pid and start time).
    pub producer_alive: bool,
    /// Consumers registered as waiting.
    pub waiters: u64,
    /// Repairs after a holder of the lock died.
    pub repairs: u64,
}

/// A `/dev/shm/syncomm.board.*` segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentInfo {
    /// Its os id (`/syncomm.board.NAME.PID.RAND`).
    pub os_id: String,
    /// Its path under `/dev/shm`.
    pub path: PathBuf,
    /// Its owner.
    pub uid: u32,
    /// The pid that created it (from its name).
    pub creator_pid: Option<i32>,
    /// Whether the creator is alive.
    pub creator_alive: bool,
    /// Where it came from, if it carries a record.
    pub origin: Option<Origin>,
    /// The board in it, if its header checks.
    pub board: Option<BoardInfo>,
    /// Why it could not be read, if it could not.
    pub error: Option<String>,
}

impl SegmentInfo {
    /// Whether a process runs it: its producer, or its creator (between
    /// creating it and starting to produce).
    pub fn has_live_owner(&self) -> bool {
        self.creator_alive || self.board.as_ref().is_some_and(|b| b.producer_alive)
    }
}

/// Every `syncomm.board.*` segment in `/dev/shm`.
pub fn list_segments() -> Vec<SegmentInfo> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut out: Vec<SegmentInfo> = dir
        .flatten()
        .filter_map(|e| {
            let f = e.file_name().to_str()?.to_owned();
            f.starts_with(&OS_ID_PREFIX[1..])
                .then(|| inspect(&format!("/{f}")))
        })
        .collect();
    out.sort_by(|a, b| a.os_id.cmp(&b.os_id));
    out
}

/// Reads segment `os_id` (never blocking or following a link; another
/// user's segment is only stat'ed).
pub fn inspect(os_id: &str) -> SegmentInfo {
    let path = shm_path(os_id);
    let creator_pid = os_id
        .strip_prefix(OS_ID_PREFIX)
        .and_then(|r| r.rsplit('.').nth(1))
        .and_then(|p| p.parse::<i32>().ok())
        .filter(|&p| p > 0);
    let mut info = SegmentInfo {
        os_id: os_id.to_owned(),
        path: path.clone(),
        uid: 0,
        creator_pid,
        creator_alive: creator_pid.is_some_and(liveness::alive),
        origin: None,
        board: None,
        error: None,
    };
    match std::fs::symlink_metadata(&path) {
        Ok(m) => info.uid = m.uid(),
        Err(e) => {
            info.error = Some(e.to_string());
            return info;
        }
    }
    if info.uid != nix::unistd::geteuid().as_raw() {
        return info;
    }
    let limit = segment_size(MAX_CAPACITY) + 12 + attribution::MAX_RECORD;
    let bytes = match openfile::read_regular(&path, limit) {
        Ok(b) => b,
        Err(e) => {
            info.error = Some(e.reason());
            return info;
        }
    };
    match Segment::from_bytes(&bytes) {
        Ok(seg) => {
            let end = segment_size(seg.capacity());
            info.origin = bytes.get(end..).and_then(decode);
            let s = seg.shared();
            let pid = s.producer_pid.load(Relaxed);
            let start = s.producer_start.load(Relaxed);
            info.board = Some(BoardInfo {
                capacity: seg.capacity(),
                total: s.total.load(Relaxed),
                active: s.active.load(Relaxed) != 0,
                producer_pid: pid,
                producer_alive: pid > 0 && liveness::alive_as(pid, start),
                waiters: s.waiting.iter().map(|w| u64::from(w.load(Relaxed))).sum(),
                repairs: s.repairs.load(Relaxed),
            });
        }
        Err(why) => info.error = Some(why),
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trip() {
        let o = Origin::new(std::path::Path::new("/run/x"), "b");
        assert_eq!(decode(&encode(&o)), Some(o));
        assert_eq!(decode(b"SYNCREC1\x05\0\0\0abc"), None);
        assert_eq!(decode(b""), None);
    }
}
