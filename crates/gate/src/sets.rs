//! Every System V set of ours, as `syncomm ls` and `syncomm clean` see
//! them: listing, inspecting and removing idle sets.

use crate::error::GateError;
use crate::status::{status_from, Status};
use crate::sysv::{op, sem_ctl, sem_get, sem_getall, sem_op, sem_stat};
use crate::{COUNTER, FIRST_SLOT, KEY_MASK, KEY_TAG, MAX_NSEMS, MAX_SLOTS, SIZE};
use syncomm_common::attribution::Origin;

/// A System V set with our key tag, as `syncomm ls` sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SetInfo {
    /// The set's key.
    pub key: libc::key_t,
    /// Its id.
    pub semid: libc::c_int,
    /// Its owner.
    pub uid: u32,
    /// Semaphores in it.
    pub nsems: usize,
    /// Where it came from (its attribution record), if it carries one.
    pub origin: Option<Origin>,
    /// Its slots and holders, if it is a well-formed gate set.
    pub status: Option<Status>,
}

/// Every System V set whose key carries [`KEY_TAG`], from
/// `/proc/sysvipc/sem`, with its record and status read where we may.
pub fn list_sets() -> Vec<SetInfo> {
    syncomm_sys::proc::sysv_sems()
        .into_iter()
        .filter(|s| s.key & KEY_MASK == KEY_TAG)
        .map(|s| inspect_set(s.key, s.semid, s.nsems, s.uid))
        .collect()
}

/// The set under `key`, whatever its key's tag (a set made before keys
/// were tagged), if there is one.
pub fn inspect_key(key: libc::key_t) -> Option<SetInfo> {
    let semid = sem_get(key, 0, 0).ok()?;
    let ds = sem_stat(semid).ok()?;
    Some(inspect_set(
        key,
        semid,
        ds.sem_nsems as usize,
        ds.sem_perm.uid,
    ))
}

/// Reads the record and status of set `semid` (only of our own sets).
fn inspect_set(key: libc::key_t, semid: libc::c_int, nsems: usize, uid: u32) -> SetInfo {
    let mut info = SetInfo {
        key,
        semid,
        uid,
        nsems,
        origin: None,
        status: None,
    };
    if uid != nix::unistd::geteuid().as_raw() || !(3..=MAX_NSEMS).contains(&nsems) {
        return info;
    }
    let Ok(values) = sem_getall(semid, nsems) else {
        return info;
    };
    let slots = values[usize::from(SIZE)];
    if slots == 0 || slots > MAX_SLOTS || usize::from(slots) + 2 > nsems {
        return info;
    }
    // A set made before sets carried a record ends after its slots.
    let rec_at = usize::from(FIRST_SLOT + slots);
    let len = values.get(rec_at).map_or(0, |&l| usize::from(l));
    if rec_at < nsems && rec_at + 1 + len == nsems && values[rec_at + 1..].iter().all(|&v| v <= 255)
    {
        let bytes: Vec<u8> = values[rec_at + 1..].iter().map(|&v| v as u8).collect();
        info.origin = Origin::decode(&bytes);
    }
    let name = info
        .origin
        .as_ref()
        .map_or("?", |o| o.name.as_str())
        .to_owned();
    let waiting = sem_ctl(semid, COUNTER, libc::GETNCNT).unwrap_or(0);
    info.status = status_from(&name, slots, &values[..rec_at], waiting, |slot| {
        sem_ctl(semid, FIRST_SLOT + slot, libc::GETPID).map_err(|e| GateError::Sys {
            call: "semctl(GETPID)",
            name: name.clone(),
            source: e,
        })
    })
    .ok();
    info
}

/// Removes set `semid` (which must still have key `key` and be ours) unless
/// a slot is held: it takes every counter unit at once with `IPC_NOWAIT`
/// first, as `gate --remove` does. `Ok(false)`: it is gone already.
pub fn remove_set_if_idle(key: libc::key_t, semid: libc::c_int) -> Result<bool, String> {
    let Some(info) = list_sets()
        .into_iter()
        .find(|i| i.semid == semid && i.key == key)
    else {
        return Ok(false);
    };
    if info.uid != nix::unistd::geteuid().as_raw() {
        return Err(format!("set {semid} belongs to uid {}", info.uid));
    }
    let Some(st) = info.status else {
        return Err(format!(
            "set {semid} is not a well-formed gate set; left alone"
        ));
    };
    let all = st.slots as i16;
    match sem_op(
        semid,
        &mut [op(COUNTER, -all, libc::SEM_UNDO | libc::IPC_NOWAIT)],
        None,
    ) {
        Ok(()) => {}
        Err(nix::Error::EAGAIN) => {
            return Err(format!(
                "set {semid} is in use ({} of {} slots held)",
                st.slots - st.free,
                st.slots
            ))
        }
        Err(nix::Error::EINVAL | nix::Error::EIDRM) => return Ok(false),
        Err(e) => return Err(format!("semop on set {semid}: {e}")),
    }
    match sem_ctl(semid, 0, libc::IPC_RMID) {
        Ok(_) => Ok(true),
        Err(nix::Error::EINVAL | nix::Error::EIDRM) => Ok(false),
        Err(e) => Err(format!("semctl(IPC_RMID) on set {semid}: {e}")),
    }
}
