//! Raising the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit,
//! which any process may do: a server that holds one descriptor per client
//! should not stop at the default soft limit of 1024.

use std::io;

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Lifts the soft open-file limit to the hard one; returns the soft limit
/// now in force.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// The soft open-file limit in force now.
pub fn nofile_limit() -> io::Result<u64> {
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}
