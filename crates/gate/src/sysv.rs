//! Thin wrappers over the System V semaphore calls (all unsafe code of the crate).

use std::time::Duration;

pub(crate) fn sem_get(
    key: libc::key_t,
    nsems: libc::c_int,
    flags: libc::c_int,
) -> nix::Result<libc::c_int> {
    // SAFETY: semget(2) takes plain integers and touches no memory of ours.
    let id = unsafe { libc::semget(key, nsems, flags) };
    nix::Error::result(id)
}

/// semctl for the commands whose fourth argument is unused or an int.
pub(crate) fn sem_ctl(semid: libc::c_int, num: u16, cmd: libc::c_int) -> nix::Result<libc::c_int> {
    // SAFETY: GETVAL, GETPID, GETNCNT and IPC_RMID read no fourth argument;
    // we pass a zero int anyway, so the variadic read is defined.
    let rc = unsafe { libc::semctl(semid, libc::c_int::from(num), cmd, 0 as libc::c_int) };
    nix::Error::result(rc)
}

pub(crate) fn sem_setall(semid: libc::c_int, values: &mut [u16]) -> nix::Result<()> {
    // SAFETY: SETALL reads `sem_nsems` values from the array; the caller
    // passes exactly that many (the set was created with values.len() semaphores).
    let rc = unsafe { libc::semctl(semid, 0, libc::SETALL, values.as_mut_ptr()) };
    nix::Error::result(rc).map(drop)
}

pub(crate) fn sem_getall(semid: libc::c_int, nsems: usize) -> nix::Result<Vec<u16>> {
    let mut values = vec![0u16; nsems];
    // SAFETY: GETALL writes `sem_nsems` values; the vector holds that many
    // (nsems comes from IPC_STAT of this set, whose size never changes).
    let rc = unsafe { libc::semctl(semid, 0, libc::GETALL, values.as_mut_ptr()) };
    nix::Error::result(rc).map(|_| values)
}

pub(crate) fn sem_stat(semid: libc::c_int) -> nix::Result<libc::semid_ds> {
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
pub(crate) fn sem_op(
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

pub(crate) fn op(num: u16, delta: i16, flags: libc::c_int) -> libc::sembuf {
    libc::sembuf {
        sem_num: num,
        sem_op: delta,
        sem_flg: flags as libc::c_short,
    }
}
