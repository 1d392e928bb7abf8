//! # syncomm-gate
//!
//! A counting semaphore for processes and shell scripts: at most S processes
//! hold a slot of the semaphore NAME at any moment, and a holder that dies in
//! any way (even `kill -9`) gives its slot back at once, because the kernel
//! does it. This is the seed's "Limited access" example across real processes.
//!
//! ## The mechanism: one System V semaphore set per name
//! The set has `S + 2` semaphores:
//!
//! | index | role | value |
//! |---|---|---|
//! | 0 | the counter: free slots | `S` minus the holders |
//! | 1 | the size marker | always `S` (tells a later `--slots` what the current count is) |
//! | 2 + i | slot i, a binary semaphore | 1 free, 0 held |
//!
//! Taking a slot is two `semop(2)` calls, each with `SEM_UNDO`:
//!
//! 1. counter −1: blocks *in the kernel* (`semtimedop(2)` for `--timeout`)
//!    until a slot is free. Never more than S processes get past this.
//! 2. the first slot semaphore that is 1, −1 with `IPC_NOWAIT`: one is always
//!    free for a process past step 1. Its `sempid` (`semctl GETPID`) then
//!    names the holder, which is how `gate --status` shows who holds what.
//!
//! `SEM_UNDO` makes the kernel record each adjustment per process and reverse
//! all of them, for the whole set at once, when the process exits — however
//! it exits. A holder killed with SIGKILL therefore frees its counter unit and
//! its slot together, and the kernel wakes the next waiter.
//!
//! The undo record survives `execve(2)`. So `gate -- COMMAND` takes the slot
//! and then *becomes* COMMAND (no fork): the command itself is the holder, the
//! kernel releases the slot the moment the command ends, its exit status is
//! gate's exit status, and signals reach it directly. There is no window in
//! which a slot is free while the command still runs.
//!
//! After the slots come the set's *attribution record* (see
//! [`syncomm_common::attribution`]): one semaphore holding the record's
//! length L, then L semaphores holding one byte each — the runtime directory
//! and the name. So a set whose runtime directory was deleted can still be
//! traced (`syncomm ls` shows it as an orphan, `syncomm clean` removes it when
//! nobody holds a slot). Keys of our sets are `0x53xxxxxx` ([`KEY_TAG`]):
//! `ipcs -s` shows at a glance which sets are ours.
//!
//! ## Finding the set: the runtime file
//! A System V set is named by an integer key. The key is chosen at random
//! (under [`KEY_TAG`]) when the set is created and stored in the runtime file `gate.NAME.sem`
//! (`syncomm-gate 1 key=K`). Every process opens that file and takes an
//! exclusive `flock` on it while it looks the set up or creates it, so exactly
//! one process creates and initialises a set (`IPC_CREAT | IPC_EXCL`, then
//! `SETALL`) before anyone can read its key: the classic System V
//! initialisation race cannot happen.
//!
//! ## Faults
//! - A stale file (its set no longer exists, e.g. after a reboot, or the key
//!   now names a set that is not ours) is repaired: a new set is created.
//!   Nobody can hold a slot of a set that does not exist, so this is safe.
//! - A gate killed between creating its set and initialising it leaves a set
//!   of zeros under the key in the file: the next gate removes that
//!   half-made set (nobody can hold a slot of it) and creates a new one.
//! - A file that is a symlink, is not a regular file, cannot be read, or holds
//!   garbage is a clear error, never a repair: gates could still be holding
//!   slots of the set it named, and a second set would break the limit.
//! - `gate --remove` deletes the set and the file only when no slot is held:
//!   it takes all S units at once with `IPC_NOWAIT` before `IPC_RMID`.
#![deny(missing_docs)]

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use syncomm_common::attribution::Origin;
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::Name;
use syncomm_sys::flock;
use syncomm_sys::openfile::{self, Access, OpenError};

/// The most slots a semaphore may have.
pub const MAX_SLOTS: u16 = 1000;

/// The slot count given to a new semaphore when `--slots` is not given.
pub const DEFAULT_SLOTS: u16 = 3;

/// Index of the counter semaphore.
const COUNTER: u16 = 0;
/// Index of the size marker.
const SIZE: u16 = 1;
/// Index of the first slot semaphore.
const FIRST_SLOT: u16 = 2;

/// The top byte of every key we create (`'S'`): `key & KEY_MASK == KEY_TAG`.
pub const KEY_TAG: libc::key_t = 0x5300_0000;
/// The bits of a key that [`KEY_TAG`] fixes.
pub const KEY_MASK: libc::key_t = 0x7f00_0000u32 as libc::key_t;

/// The most semaphores a set of ours may have: counter, size marker, slots,
/// record length, record bytes.
const MAX_NSEMS: usize = MAX_SLOTS as usize + 3 + syncomm_common::attribution::MAX_RECORD;

/// The first word of a runtime file, and its format version.
const MAGIC: &str = "syncomm-gate 1";

/// What went wrong with a gate.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The runtime file is a symlink.
    #[error("runtime file {0} is a symlink; refusing it (remove it)")]
    Symlink(PathBuf),
    /// The runtime file belongs to another user.
    #[error("runtime file {path} is owned by uid {owner}, not by us (uid {me}); refusing it (if no other user's gate is using it, remove it)")]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        me: u32,
    },
    /// The runtime file is not a regular file.
    #[error("runtime file {0} is not a regular file (remove it)")]
    NotRegular(PathBuf),
    /// The runtime file holds something else than a gate key.
    #[error("runtime file {path} is not a gate file (it holds {content:?}); if no gate named {name} is running, remove it")]
    Garbage {
        /// The file.
        path: PathBuf,
        /// The semaphore's name.
        name: String,
        /// The start of what it holds.
        content: String,
    },
    /// Reading, writing or locking the runtime file failed.
    #[error("runtime file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The runtime file's lock stayed held past the deadline (a holder that
    /// is stopped, say).
    #[error("timed out after {waited}: the lock on runtime file {path} is held by {holder}, which does not release it (is it stopped?)")]
    FileLocked {
        /// The file.
        path: PathBuf,
        /// How long we waited, as written (`300ms`).
        waited: String,
        /// Who holds the lock: `pid N`, or `another process`.
        holder: String,
    },
    /// A shutdown signal arrived while waiting for the runtime file's lock.
    #[error("interrupted while waiting for the lock on runtime file {0}")]
    Interrupted(PathBuf),
    /// The semaphore exists with another slot count.
    #[error("semaphore {name} has {current} slots, not {asked} (its count is fixed while it exists; use --slots {current}, another --name, or gate --remove --name {name} when it is idle)")]
    SlotsDiffer {
        /// The semaphore's name.
        name: String,
        /// Its slot count.
        current: u16,
        /// The count asked for.
        asked: u16,
    },
    /// A System V call failed.
    #[error("{call} on semaphore {name}: {source}")]
    Sys {
        /// The call.
        call: &'static str,
        /// The semaphore's name.
        name: String,
        /// Why.
        source: nix::Error,
    },
    /// `--remove` while slots are held or processes wait.
    #[error(
        "semaphore {name} is in use ({held} of {slots} slots held, {waiting} waiting); not removed"
    )]
    InUse {
        /// The semaphore's name.
        name: String,
        /// Slots held.
        held: u16,
        /// Slot count.
        slots: u16,
        /// Processes waiting.
        waiting: u32,
    },
    /// Every slot semaphore was taken although the counter let us in (cannot
    /// happen while every process uses this library).
    #[error("semaphore {0} has no free slot although its counter let us in (was it changed by another program?)")]
    Inconsistent(String),
    /// The set holds values no gate leaves (see [`status_from`]).
    #[error("semaphore {0} holds values no gate leaves (was it changed by another program?); gate --remove --name {0} when it is idle")]
    Tampered(String),
}

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

/// One holder in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    /// The slot, 0-based.
    pub slot: u16,
    /// The process that holds it.
    pub pid: i32,
    /// Its command line, if it can be read.
    pub command: Option<String>,
}

/// A snapshot of a semaphore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The semaphore's name.
    pub name: String,
    /// Its slot count.
    pub slots: u16,
    /// Free slots (the counter's value).
    pub free: u16,
    /// Who holds which slot.
    pub holders: Vec<Holder>,
    /// Processes blocked waiting for a slot.
    pub waiting: u32,
}

/// The runtime file of semaphore `name`: `{rundir}/gate.NAME.sem`.
pub fn runtime_file(dir: &RunDir, name: &Name) -> PathBuf {
    dir.file("gate", name, "sem")
}

// ---------------------------------------------------------------------------
// Thin wrappers over the System V calls (all unsafe code of the crate).
// ---------------------------------------------------------------------------

fn sem_get(key: libc::key_t, nsems: libc::c_int, flags: libc::c_int) -> nix::Result<libc::c_int> {
    // SAFETY: semget(2) takes plain integers and touches no memory of ours.
    let id = unsafe { libc::semget(key, nsems, flags) };
    nix::Error::result(id)
}

/// semctl for the commands whose fourth argument is unused or an int.
fn sem_ctl(semid: libc::c_int, num: u16, cmd: libc::c_int) -> nix::Result<libc::c_int> {
    // SAFETY: GETVAL, GETPID, GETNCNT and IPC_RMID read no fourth argument;
    // we pass a zero int anyway, so the variadic read is defined.
    let rc = unsafe { libc::semctl(semid, libc::c_int::from(num), cmd, 0 as libc::c_int) };
    nix::Error::result(rc)
}

fn sem_setall(semid: libc::c_int, values: &mut [u16]) -> nix::Result<()> {
    // SAFETY: SETALL reads `sem_nsems` values from the array; the caller
    // passes exactly that many (the set was created with values.len() semaphores).
    let rc = unsafe { libc::semctl(semid, 0, libc::SETALL, values.as_mut_ptr()) };
    nix::Error::result(rc).map(drop)
}

fn sem_getall(semid: libc::c_int, nsems: usize) -> nix::Result<Vec<u16>> {
    let mut values = vec![0u16; nsems];
    // SAFETY: GETALL writes `sem_nsems` values; the vector holds that many
    // (nsems comes from IPC_STAT of this set, whose size never changes).
    let rc = unsafe { libc::semctl(semid, 0, libc::GETALL, values.as_mut_ptr()) };
    nix::Error::result(rc).map(|_| values)
}

fn sem_stat(semid: libc::c_int) -> nix::Result<libc::semid_ds> {
    // SAFETY: semid_ds is plain data; all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one semid_ds through the pointer, which points
    // to a live, writable semid_ds.
    let rc = unsafe { libc::semctl(semid, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) };
    nix::Error::result(rc).map(|_| ds)
}

extern "C" {
    // In glibc and musl, but not declared by the libc crate.
    fn semtimedop(
        semid: libc::c_int,
        sops: *mut libc::sembuf,
        nsops: libc::size_t,
        timeout: *const libc::timespec,
    ) -> libc::c_int;
}

/// `semtimedop(2)` on `ops`; `timeout` None waits forever.
fn sem_op(
    semid: libc::c_int,
    ops: &mut [libc::sembuf],
    timeout: Option<Duration>,
) -> nix::Result<()> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `ops` is a live slice of sembuf of the length passed; `ts_ptr`
    // is null or points to a timespec that outlives the call.
    let rc = unsafe { semtimedop(semid, ops.as_mut_ptr(), ops.len(), ts_ptr) };
    nix::Error::result(rc).map(drop)
}

fn op(num: u16, delta: i16, flags: libc::c_int) -> libc::sembuf {
    libc::sembuf {
        sem_num: num,
        sem_op: delta,
        sem_flg: flags as libc::c_short,
    }
}

// ---------------------------------------------------------------------------
// The runtime file
// ---------------------------------------------------------------------------

/// The runtime file, open and `flock`ed (released when dropped).
struct KeyFile {
    file: File,
    path: PathBuf,
}

/// What ends a wait for the runtime file's lock besides getting it.
#[derive(Clone, Copy, Default)]
struct Until<'a> {
    /// When to give up, and the `--timeout` it came from (for the message).
    deadline: Option<(Instant, Duration)>,
    /// A shutdown request ends the wait.
    shutdown: Option<&'a Shutdown>,
}

impl KeyFile {
    /// Opens (creating if `create`) and locks the runtime file; `Ok(None)` if
    /// it does not exist and `create` is false. The wait for the lock ends
    /// at `until`'s deadline or shutdown (`syncomm_sys::flock`).
    fn lock(
        path: &Path,
        create: bool,
        exclusive: bool,
        until: Until<'_>,
    ) -> Result<Option<KeyFile>, GateError> {
        let file_err = |source| GateError::File {
            path: path.to_owned(),
            source,
        };
        loop {
            let access = if create {
                Access::Create(0o600)
            } else {
                Access::Read
            };
            // Never through a symlink, never blocking on a FIFO, only a
            // regular file of ours: another user's file could name any set,
            // and a repair would write into it.
            let file = match openfile::open_regular(path, access) {
                Ok(f) => f,
                Err(OpenError::NotFound(_)) if !create => return Ok(None),
                Err(OpenError::Symlink(_)) => return Err(GateError::Symlink(path.to_owned())),
                Err(OpenError::NotRegular { .. }) => {
                    return Err(GateError::NotRegular(path.to_owned()))
                }
                Err(OpenError::ForeignOwner { owner, me, .. }) => {
                    return Err(GateError::Foreign {
                        path: path.to_owned(),
                        owner,
                        me,
                    })
                }
                Err(OpenError::Io { source, .. }) => return Err(file_err(source)),
                Err(e) => return Err(file_err(io::Error::other(e.reason()))),
            };
            let meta = file.metadata().map_err(file_err)?;
            let mode = if exclusive {
                flock::Mode::Exclusive
            } else {
                flock::Mode::Shared
            };
            let interrupt = until.shutdown.map(|s| s as &dyn flock::Interrupt);
            let deadline = until.deadline.map(|(d, _)| d);
            match flock::lock(&file, mode, deadline, interrupt).map_err(file_err)? {
                flock::Outcome::Locked => {}
                flock::Outcome::Interrupted => return Err(GateError::Interrupted(path.to_owned())),
                flock::Outcome::TimedOut => {
                    let holder = syncomm_sys::proc::flock_holder(meta.ino())
                        .map_or("another process".to_owned(), |pid| format!("pid {pid}"));
                    let waited = until.deadline.map(|(_, t)| t).unwrap_or_default();
                    return Err(GateError::FileLocked {
                        path: path.to_owned(),
                        waited: syncomm_common::duration::format_duration(waited),
                        holder,
                    });
                }
            }
            // `gate --remove` unlinks the file while holding the lock: if that
            // happened while we waited, our file is no longer the named one.
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {
                    return Ok(Some(KeyFile {
                        file,
                        path: path.to_owned(),
                    }))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if create {
                        continue;
                    }
                    return Ok(None);
                }
                Err(e) => return Err(file_err(e)),
            }
        }
    }

    /// The key stored in the file: `Ok(None)` if the file is empty.
    fn read_key(&mut self, name: &Name) -> Result<Option<libc::key_t>, GateError> {
        let mut buf = Vec::new();
        (&self.file)
            .take(MAX_KEY_FILE)
            .read_to_end(&mut buf)
            .map_err(|source| GateError::File {
                path: self.path.clone(),
                source,
            })?;
        parse_key_file(&buf).map_err(|e| GateError::Garbage {
            path: self.path.clone(),
            name: name.to_string(),
            content: e.start,
        })
    }

    fn write_key(&mut self, key: libc::key_t) -> Result<(), GateError> {
        let file_err = |source| GateError::File {
            path: self.path.clone(),
            source,
        };
        self.file.set_len(0).map_err(file_err)?;
        self.file.rewind().map_err(file_err)?;
        self.file
            .write_all(render_key_file(key).as_bytes())
            .map_err(file_err)
    }
}

/// The most bytes of a runtime file that are read: a gate file is one
/// short line, so anything longer is garbage.
pub const MAX_KEY_FILE: u64 = 4096;

/// Runtime file contents that are not a gate file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAKeyFile {
    /// The start of what it holds (at most 40 bytes, lossily decoded), for messages.
    pub start: String,
}

/// Parses the contents of a runtime file: exactly `syncomm-gate 1 key=K\n`
/// with K a positive decimal `key_t` written without sign or leading zero
/// (as [`render_key_file`] writes it), or nothing at all (`Ok(None)`: a gate
/// died between creating the file and writing the key).
pub fn parse_key_file(bytes: &[u8]) -> Result<Option<libc::key_t>, NotAKeyFile> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let garbage = || NotAKeyFile {
        start: String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned(),
    };
    let digits = std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| t.strip_suffix('\n'))
        .and_then(|t| t.strip_prefix(MAGIC))
        .and_then(|t| t.strip_prefix(" key="))
        .ok_or_else(garbage)?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !canonical {
        return Err(garbage());
    }
    let key = digits.parse::<libc::key_t>().map_err(|_| garbage())?;
    Ok(Some(key))
}

/// The contents of a runtime file holding `key`.
pub fn render_key_file(key: libc::key_t) -> String {
    format!("{MAGIC} key={key}\n")
}

// ---------------------------------------------------------------------------
// The semaphore
// ---------------------------------------------------------------------------

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

impl GateError {
    /// Whether the error says the set was removed while we used it.
    pub fn is_removed(&self) -> bool {
        matches!(
            self,
            GateError::Sys {
                source: nix::Error::EIDRM | nix::Error::EINVAL,
                ..
            }
        )
    }
}

/// Removes the set of `key` if it is a gate set whose creator died before
/// initialising it: ours, of a gate's size, never operated on (`sem_otime`
/// 0) and with its SIZE value still 0 (`SETALL` sets it to the slot count).
/// No gate attaches to such a set ([`Gate::attach`] checks SIZE), so nobody
/// holds a slot of it. Anything else under the key is left alone.
fn remove_half_made(key: libc::key_t) {
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

/// The key of the set named by runtime file `path` (read without locking:
/// the file is written once, under the lock, before anyone reads it).
pub fn key_in_file(path: &Path) -> Result<Option<libc::key_t>, String> {
    match syncomm_sys::openfile::read_regular(path, MAX_KEY_FILE as usize) {
        Ok(bytes) => parse_key_file(&bytes).map_err(|e| format!("not a gate file ({:?})", e.start)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.reason()),
    }
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

/// The holder records of a set, as the kernel reports them, turned into a
/// [`Status`]: `values` from `GETALL` (counter, size marker, one per slot),
/// `waiting` from `GETNCNT`, and `holder_pid(slot)` from `GETPID` of a held
/// slot. Values no gate could have left (a counter above the slot count,
/// a slot semaphore other than 0 or 1, more slots held than counter units
/// taken, a wrong marker or length: another program changed the set) are
/// [`GateError::Tampered`], never a panic or a nonsensical status.
pub fn status_from(
    name: &str,
    slots: u16,
    values: &[u16],
    waiting: i32,
    mut holder_pid: impl FnMut(u16) -> Result<i32, GateError>,
) -> Result<Status, GateError> {
    let bad = || GateError::Tampered(name.to_owned());
    if values.len() != usize::from(slots) + 2 || values[usize::from(SIZE)] != slots {
        return Err(bad());
    }
    let free = values[usize::from(COUNTER)];
    let slot_values = &values[usize::from(FIRST_SLOT)..];
    if free > slots || slot_values.iter().any(|&v| v > 1) {
        return Err(bad());
    }
    // Taking a slot is two steps (counter, then slot), so for a moment a
    // taker holds a counter unit but no slot yet; never the other way round.
    let held = slot_values.iter().filter(|&&v| v == 0).count();
    if held > usize::from(slots - free) {
        return Err(bad());
    }
    let waiting = u32::try_from(waiting).map_err(|_| bad())?;
    let mut holders = Vec::with_capacity(held);
    for (slot, _) in (0..slots).zip(slot_values).filter(|(_, &v)| v == 0) {
        let pid = holder_pid(slot)?;
        holders.push(Holder {
            slot,
            pid,
            command: command_line(pid),
        });
    }
    Ok(Status {
        name: name.to_owned(),
        slots,
        free,
        holders,
        waiting,
    })
}

/// The command line of process `pid`, from `/proc`, if readable.
fn command_line(pid: i32) -> Option<String> {
    parse_cmdline(&syncomm_sys::proc::cmdline(pid)?)
}

/// A command line as shown by `--status`, from the contents of
/// `/proc/PID/cmdline` (arguments separated by NUL bytes): the non-empty
/// arguments joined by spaces, invalid UTF-8 replaced; `None` when there
/// are none (a kernel thread, a zombie).
pub fn parse_cmdline(raw: &[u8]) -> Option<String> {
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
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

    #[test]
    fn key_file_text_is_canonical() {
        assert_eq!(parse_key_file(b""), Ok(None));
        for key in [1, 42, libc::key_t::MAX] {
            let text = render_key_file(key);
            assert_eq!(parse_key_file(text.as_bytes()), Ok(Some(key)));
        }
        for bad in [
            &b"syncomm-gate 1 key=0\n"[..],
            b"syncomm-gate 1 key=007\n",
            b"syncomm-gate 1 key=+7\n",
            b"syncomm-gate 1 key=-7\n",
            b"syncomm-gate 1 key=7",
            b"syncomm-gate 1 key=\n",
            b"syncomm-gate 1 key=99999999999\n",
            b"\xff",
        ] {
            assert!(parse_key_file(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn holder_records_no_gate_leaves_are_refused() {
        let pid = |s: u16| Ok(1000 + i32::from(s));
        // 3 slots, slot 1 held, one taker between its two steps.
        let st = status_from("t", 3, &[1, 3, 1, 0, 1], 2, pid).unwrap();
        assert_eq!((st.free, st.waiting), (1, 2));
        assert_eq!(st.holders.len(), 1);
        assert_eq!((st.holders[0].slot, st.holders[0].pid), (1, 1001));
        for (values, waiting) in [
            (&[4u16, 3, 1, 1, 1][..], 0), // counter above the slot count
            (&[3, 3, 1, 2, 1], 0),        // a slot semaphore at 2
            (&[3, 3, 0, 1, 1], 0),        // a slot held with every unit free
            (&[1, 2, 1, 1, 1], 0),        // wrong size marker
            (&[1, 3, 1, 1], 0),           // wrong length
            (&[1, 3, 1, 1, 1], -1),       // negative waiter count
        ] {
            assert!(
                matches!(
                    status_from("t", 3, values, waiting, pid),
                    Err(GateError::Tampered(_))
                ),
                "{values:?}"
            );
        }
        assert_eq!(
            parse_cmdline(b"sh\0-c\0\0echo hi\0"),
            Some("sh -c echo hi".into())
        );
        assert_eq!(parse_cmdline(b"\0\0"), None);
    }

    #[test]
    fn key_file_round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.x.sem");
        let name = Name::new("x").unwrap();
        let mut kf = KeyFile::lock(&path, true, true, Until::default())
            .unwrap()
            .unwrap();
        assert_eq!(kf.read_key(&name).unwrap(), None);
        kf.write_key(12345).unwrap();
        drop(kf);
        let mut kf = KeyFile::lock(&path, false, false, Until::default())
            .unwrap()
            .unwrap();
        assert_eq!(kf.read_key(&name).unwrap(), Some(12345));
        drop(kf);
        std::fs::write(&path, b"\xffgarbage").unwrap();
        let mut kf = KeyFile::lock(&path, false, false, Until::default())
            .unwrap()
            .unwrap();
        assert!(matches!(kf.read_key(&name), Err(GateError::Garbage { .. })));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            KeyFile::lock(&link, true, true, Until::default()),
            Err(GateError::Symlink(_))
        ));
    }
}
