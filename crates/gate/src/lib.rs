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
//!
//! ## Modules
//! - `gate`: [`Gate`] (open or create a set, take and give back a slot,
//!   status, remove) and [`open_and_acquire`].
//! - `sysv`: thin wrappers over the System V calls (all unsafe code of the crate).
//! - `keyfile`: the runtime file that holds a set's key.
//! - `status`: [`Status`], who holds which slot.
//! - `sets`: every set of ours, for `syncomm ls` and `syncomm clean`.
//! - `error`: [`GateError`].
#![deny(missing_docs)]

use std::path::PathBuf;

use syncomm_common::rundir::RunDir;
use syncomm_common::Name;

mod error;
mod gate;
mod keyfile;
mod sets;
mod status;
mod sysv;

pub use error::GateError;
pub use gate::{open_and_acquire, Acquire, Gate};
pub use keyfile::{key_in_file, parse_key_file, render_key_file, NotAKeyFile, MAX_KEY_FILE};
pub use sets::{inspect_key, list_sets, remove_set_if_idle, SetInfo};
pub use status::{parse_cmdline, status_from, Holder, Status};

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

/// The runtime file of semaphore `name`: `{rundir}/gate.NAME.sem`.
pub fn runtime_file(dir: &RunDir, name: &Name) -> PathBuf {
    dir.file("gate", name, "sem")
}
