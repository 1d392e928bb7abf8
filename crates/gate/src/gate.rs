//! The semaphore: [`Gate`] (open or create a set, take and give back a
//! slot, status, remove) and [`open_and_acquire`].

use std::path::Path;
use std::time::{Duration, Instant};

use syncomm_common::attribution::Origin;
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::Name;

use crate::error::GateError;
use crate::keyfile::{KeyFile, Until};
use crate::status::{status_from, Status};
use crate::sysv::{op, sem_ctl, sem_get, sem_getall, sem_op, sem_setall, sem_stat};
use crate::{
    runtime_file, COUNTER, DEFAULT_SLOTS, FIRST_SLOT, KEY_TAG, MAX_NSEMS, MAX_SLOTS, SIZE,
};

/// An open semaphore: the System V set of one name.
#[derive(Debug)]
pub struct Gate {
    name: Name,
    semid: libc::c_int,
    slots: u16,
    /// Semaphores in the set (slots + 2, plus the attribution record).
    nsems: usize,
}

/// How a wait for a slot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// We hold slot `n` (0-based).
    Slot(u16),
    /// The timeout passed first.
    TimedOut,
    /// A shutdown signal arrived first.
    Interrupted,
}

impl Gate {
    /// Opens semaphore `name`, creating it with `slots` (default
    /// [`DEFAULT_SLOTS`]) if it does not exist. A different `slots` than the
    /// existing count is [`GateError::SlotsDiffer`].
    pub fn open_or_create(
        dir: &RunDir,
        name: &Name,
        slots: Option<u16>,
    ) -> Result<Gate, GateError> {
        Gate::open_or_create_at(&runtime_file(dir, name), name, slots)
    }

    /// [`Gate::open_or_create`] with the runtime file at `path` instead of
    /// the runtime directory (for tests and benchmarks).
    pub fn open_or_create_at(
        path: &Path,
        name: &Name,
        slots: Option<u16>,
    ) -> Result<Gate, GateError> {
        Gate::open_or_create_until(path, name, slots, Until::default())
    }

    /// [`Gate::open_or_create_at`], giving up on the runtime file's lock at
    /// `until`.
    fn open_or_create_until(
        path: &Path,
        name: &Name,
        slots: Option<u16>,
        until: Until<'_>,
    ) -> Result<Gate, GateError> {
        let Some(mut kf) = KeyFile::lock(path, true, true, until)? else {
            unreachable!("lock with create returns a file")
        };
        if let Some(key) = kf.read_key(name)? {
            if let Some(gate) = Gate::attach(name, key)? {
                if let Some(asked) = slots {
                    if asked != gate.slots {
                        return Err(GateError::SlotsDiffer {
                            name: name.to_string(),
                            current: gate.slots,
                            asked,
                        });
                    }
                }
                return Ok(gate);
            }
            tracing::info!(
                "runtime file {} names no gate set: repairing",
                path.display()
            );
            remove_half_made(key);
        }
        Gate::create(name, slots.unwrap_or(DEFAULT_SLOTS), &mut kf)
    }

    /// Opens an existing semaphore; `Ok(None)` if there is none.
    pub fn open(dir: &RunDir, name: &Name) -> Result<Option<Gate>, GateError> {
        let path = runtime_file(dir, name);
        let Some(mut kf) = KeyFile::lock(&path, false, false, Until::default())? else {
            return Ok(None);
        };
        match kf.read_key(name)? {
            Some(key) => Gate::attach(name, key),
            None => Ok(None),
        }
    }

    /// Looks up the set of `key` and checks that it is a gate set of ours.
    fn attach(name: &Name, key: libc::key_t) -> Result<Option<Gate>, GateError> {
        let sys = |call, source| GateError::Sys {
            call,
            name: name.to_string(),
            source,
        };
        let semid = match sem_get(key, 0, 0) {
            Ok(id) => id,
            Err(nix::Error::ENOENT) => return Ok(None),
            Err(e) => return Err(sys("semget", e)),
        };
        let ds = match sem_stat(semid) {
            Ok(ds) => ds,
            Err(nix::Error::EINVAL | nix::Error::EIDRM) => return Ok(None),
            Err(e) => return Err(sys("semctl(IPC_STAT)", e)),
        };
        let me = nix::unistd::geteuid().as_raw();
        let nsems = ds.sem_nsems as usize;
        if ds.sem_perm.uid != me || !(3..=MAX_NSEMS).contains(&nsems) {
            return Ok(None);
        }
        // The size marker says how many slots; the rest is the record.
        match sem_ctl(semid, SIZE, libc::GETVAL) {
            Ok(v) if v >= 1 && v <= i32::from(MAX_SLOTS) && v as usize + 2 <= nsems => {
                Ok(Some(Gate {
                    name: name.clone(),
                    semid,
                    slots: v as u16,
                    nsems,
                }))
            }
            Ok(_) | Err(nix::Error::EINVAL | nix::Error::EIDRM) => Ok(None),
            Err(e) => Err(sys("semctl(GETVAL)", e)),
        }
    }

    /// Creates a new set with `slots` slots under a fresh random key, writes
    /// the key to the runtime file, then sets every value. Nobody reads the
    /// file before we release its lock; and if we are killed before `SETALL`,
    /// the next gate finds the half-made set by its key and removes it
    /// ([`remove_half_made`]) instead of leaking it.
    fn create(name: &Name, slots: u16, kf: &mut KeyFile) -> Result<Gate, GateError> {
        assert!((1..=MAX_SLOTS).contains(&slots), "slots out of range");
        let dir = kf.path.parent().unwrap_or(Path::new("/"));
        let record = Origin::new(dir, name.as_str()).encode();
        let nsems = usize::from(slots) + 3 + record.len();
        let semid = loop {
            let key: libc::key_t = KEY_TAG | (rand::random::<libc::key_t>() & 0x00ff_ffff);
            match sem_get(
                key,
                nsems as libc::c_int,
                libc::IPC_CREAT | libc::IPC_EXCL | 0o600,
            ) {
                Ok(id) => {
                    kf.write_key(key)?;
                    break id;
                }
                Err(nix::Error::EEXIST) => continue,
                Err(e) => {
                    return Err(GateError::Sys {
                        call: "semget",
                        name: name.to_string(),
                        source: e,
                    })
                }
            }
        };
        let mut values = vec![1u16; nsems];
        values[COUNTER as usize] = slots;
        values[SIZE as usize] = slots;
        let rec_at = usize::from(FIRST_SLOT + slots);
        values[rec_at] = record.len() as u16;
        for (v, b) in values[rec_at + 1..].iter_mut().zip(&record) {
            *v = u16::from(*b);
        }
        if let Err(e) = sem_setall(semid, &mut values) {
            let _ = sem_ctl(semid, 0, libc::IPC_RMID);
            return Err(GateError::Sys {
                call: "semctl(SETALL)",
                name: name.to_string(),
                source: e,
            });
        }
        Ok(Gate {
            name: name.clone(),
            semid,
            slots,
            nsems,
        })
    }

    /// The semaphore's slot count.
    pub fn slots(&self) -> u16 {
        self.slots
    }

    /// The semaphore's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    fn sys(&self, call: &'static str, source: nix::Error) -> GateError {
        GateError::Sys {
            call,
            name: self.name.to_string(),
            source,
        }
    }

    /// Waits (blocked in the kernel) for a free slot, at most `timeout`
    /// (None: forever). Returns [`GateError::Sys`] with `EIDRM`/`EINVAL` if the
    /// set was removed meanwhile (see [`GateError::is_removed`]).
    ///
    /// The slot is held with `SEM_UNDO`: the kernel gives it back when this
    /// process exits, even after an `execve(2)`.
    pub fn acquire(
        &self,
        timeout: Option<Duration>,
        shutdown: &Shutdown,
    ) -> Result<Acquire, GateError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        // 1. The counter: at most `slots` processes get past this.
        loop {
            if shutdown.requested() {
                return Ok(Acquire::Interrupted);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let flags = match left {
                Some(l) if l.is_zero() => libc::SEM_UNDO | libc::IPC_NOWAIT,
                _ => libc::SEM_UNDO,
            };
            match sem_op(self.semid, &mut [op(COUNTER, -1, flags)], left) {
                Ok(()) => break,
                Err(nix::Error::EAGAIN) => return Ok(Acquire::TimedOut),
                // A signal: a shutdown request, or one we ignore (SIGWINCH...).
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(self.sys("semop(take)", e)),
            }
        }
        // 2. A slot of our own, to tell who holds what. One is free for sure:
        // every slot holder is also one of the at most `slots` counter holders.
        for slot in 0..self.slots {
            let flags = libc::SEM_UNDO | libc::IPC_NOWAIT;
            match sem_op(self.semid, &mut [op(FIRST_SLOT + slot, -1, flags)], None) {
                Ok(()) => return Ok(Acquire::Slot(slot)),
                Err(nix::Error::EAGAIN) => continue,
                Err(e) => {
                    let _ = sem_op(self.semid, &mut [op(COUNTER, 1, libc::SEM_UNDO)], None);
                    return Err(self.sys("semop(slot)", e));
                }
            }
        }
        let _ = sem_op(self.semid, &mut [op(COUNTER, 1, libc::SEM_UNDO)], None);
        Err(GateError::Inconsistent(self.name.to_string()))
    }

    /// Gives slot `slot` back (both semaphores in one atomic `semop`).
    pub fn release(&self, slot: u16) -> Result<(), GateError> {
        let mut ops = [
            op(FIRST_SLOT + slot, 1, libc::SEM_UNDO),
            op(COUNTER, 1, libc::SEM_UNDO),
        ];
        sem_op(self.semid, &mut ops, None).map_err(|e| self.sys("semop(release)", e))
    }

    /// Who holds which slot, and how many wait.
    pub fn status(&self) -> Result<Status, GateError> {
        let mut values =
            sem_getall(self.semid, self.nsems).map_err(|e| self.sys("semctl(GETALL)", e))?;
        values.truncate(usize::from(self.slots) + 2);
        let waiting = sem_ctl(self.semid, COUNTER, libc::GETNCNT)
            .map_err(|e| self.sys("semctl(GETNCNT)", e))?;
        status_from(self.name.as_str(), self.slots, &values, waiting, |slot| {
            // The last process to operate on a held slot is its holder.
            sem_ctl(self.semid, FIRST_SLOT + slot, libc::GETPID)
                .map_err(|e| self.sys("semctl(GETPID)", e))
        })
    }

    /// Removes the set and its runtime file, only if no slot is held.
    pub fn remove(dir: &RunDir, name: &Name) -> Result<bool, GateError> {
        Gate::remove_at(&runtime_file(dir, name), name)
    }

    /// [`Gate::remove`] with the runtime file at `path`.
    pub fn remove_at(path: &Path, name: &Name) -> Result<bool, GateError> {
        let Some(mut kf) = KeyFile::lock(path, false, true, Until::default())? else {
            return Ok(false);
        };
        let gate = match kf.read_key(name)? {
            Some(key) => Gate::attach(name, key)?,
            None => None,
        };
        if let Some(gate) = gate {
            // Take every unit at once, or nothing: then nobody holds a slot.
            let all = gate.slots as i16;
            let flags = libc::SEM_UNDO | libc::IPC_NOWAIT;
            match sem_op(gate.semid, &mut [op(COUNTER, -all, flags)], None) {
                Ok(()) => {}
                Err(nix::Error::EAGAIN) => {
                    let st = gate.status()?;
                    return Err(GateError::InUse {
                        name: name.to_string(),
                        held: gate.slots - st.free,
                        slots: gate.slots,
                        waiting: st.waiting,
                    });
                }
                Err(e) => return Err(gate.sys("semop(take all)", e)),
            }
            sem_ctl(gate.semid, 0, libc::IPC_RMID).map_err(|e| gate.sys("semctl(IPC_RMID)", e))?;
        }
        std::fs::remove_file(&kf.path).map_err(|source| GateError::File {
            path: kf.path.clone(),
            source,
        })?;
        Ok(true)
    }
}

/// Removes the set of `key` if it is a gate set whose creator died before
/// initialising it: ours, of a gate's size, never operated on (`sem_otime`
/// 0) and with its SIZE value still 0 (`SETALL` sets it to the slot count).
/// No gate attaches to such a set ([`Gate::attach`] checks SIZE), so nobody
/// holds a slot of it. Anything else under the key is left alone.
pub(crate) fn remove_half_made(key: libc::key_t) {
    let Ok(semid) = sem_get(key, 0, 0) else {
        return;
    };
    let Ok(ds) = sem_stat(semid) else { return };
    let ours = ds.sem_perm.uid == nix::unistd::geteuid().as_raw();
    let size_ok = (3..=MAX_NSEMS).contains(&(ds.sem_nsems as usize));
    if ours && size_ok && ds.sem_otime == 0 && sem_ctl(semid, SIZE, libc::GETVAL) == Ok(0) {
        tracing::info!("removing the half-made gate set {semid} (key {key})");
        let _ = sem_ctl(semid, 0, libc::IPC_RMID);
    }
}

/// Opens or creates `name` and waits for a slot, re-opening if the set is
/// removed while waiting (by `gate --remove`, or `ipcrm`).
pub fn open_and_acquire(
    dir: &RunDir,
    name: &Name,
    slots: Option<u16>,
    timeout: Option<Duration>,
    shutdown: &Shutdown,
) -> Result<(Gate, Acquire), GateError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let until = Until {
        deadline: deadline.zip(timeout),
        shutdown: Some(shutdown),
    };
    let mut attempts = 0;
    loop {
        let gate = Gate::open_or_create_until(&runtime_file(dir, name), name, slots, until)?;
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match gate.acquire(left, shutdown) {
            Err(e) if e.is_removed() && attempts < 100 => attempts += 1,
            Err(e) => return Err(e),
            Ok(a) => return Ok((gate, a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_named_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.t.sem");
        let name = Name::new("t").unwrap();
        let sd = Shutdown::manual().unwrap();
        let gate = Gate::open_or_create_at(&path, &name, Some(2)).unwrap();
        assert_eq!(gate.acquire(None, &sd).unwrap(), Acquire::Slot(0));
        assert_eq!(gate.acquire(None, &sd).unwrap(), Acquire::Slot(1));
        let full = gate.acquire(Some(Duration::ZERO), &sd).unwrap();
        assert_eq!(full, Acquire::TimedOut);
        let full = gate.acquire(Some(Duration::from_millis(20)), &sd).unwrap();
        assert_eq!(full, Acquire::TimedOut);
        let st = gate.status().unwrap();
        assert_eq!((st.slots, st.free, st.waiting), (2, 0, 0));
        let me = std::process::id() as i32;
        assert!(st.holders.iter().all(|h| h.pid == me));
        assert!(matches!(
            Gate::open_or_create_at(&path, &name, Some(3)),
            Err(GateError::SlotsDiffer {
                current: 2,
                asked: 3,
                ..
            })
        ));
        assert!(matches!(
            Gate::remove_at(&path, &name),
            Err(GateError::InUse { .. })
        ));
        gate.release(0).unwrap();
        assert_eq!(gate.acquire(None, &sd).unwrap(), Acquire::Slot(0));
        gate.release(0).unwrap();
        gate.release(1).unwrap();
        assert!(Gate::remove_at(&path, &name).unwrap());
        assert!(!path.exists());
    }
}
