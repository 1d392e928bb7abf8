//! Starting the command: `fork(2)`, set the child up, `execvp(3)`.
//!
//! Written out instead of using `std::process::Command`, for two reasons:
//! a learner sees every step the child takes before it becomes the command,
//! and `guard` does not wait for the `exec` to succeed (std blocks on a pipe
//! until it does), which saves a sleep-and-wake round trip per run. As in
//! `timeout(1)`, a failed `exec` is reported by the child itself, which
//! prints why and exits 127 (not found) or 126 (cannot run).

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{fork, getppid, setpgid, write, ForkResult, Pid};

use crate::signals;
use crate::{GuardError, EXIT_CANNOT_INVOKE, EXIT_ENOENT};

/// Starts `command` as a child of this process and returns its pid.
///
/// The child runs in a new process group of its own (unless `foreground`),
/// with every signal unblocked, SIGPIPE at its default action, and
/// SIGKILL as its parent-death signal.
///
/// Call only while this process is single-threaded (guard is): the child
/// of a multi-threaded fork may only make async-signal-safe calls, and
/// this one does.
pub fn start(command: &[OsString], foreground: bool) -> Result<Pid, GuardError> {
    let name = command
        .first()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nul = |_| GuardError::Spawn {
        command: name.clone(),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    };
    // Everything the child needs is prepared before the fork.
    let argv: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(nul)?;
    // The NULL-terminated pointer array execvp(3) takes, built here so the
    // child allocates nothing.
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let complaint = format!("guard: failed to run command '{name}': ");
    let guard_pid = Pid::this();

    // SAFETY: guard is single-threaded, so the child is a full copy with no
    // lock held by a vanished thread; it still only makes plain system calls
    // until exec or _exit.
    match unsafe { fork() } {
        Err(e) => Err(GuardError::Spawn {
            command: name,
            source: e.into(),
        }),
        Ok(ForkResult::Parent { child }) => {
            if !foreground {
                // Also from this side, so the group exists before we signal it,
                // whichever of the two runs first (EACCES once it has exec'd).
                let _ = setpgid(child, child);
            }
            Ok(child)
        }
        Ok(ForkResult::Child) => {
            if !foreground {
                // Its own process group: one killpg reaches it and its helpers.
                let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
            }
            // guard blocks the signals it forwards; the command must not.
            let _ = signals::unblock_all();
            // Rust ignores SIGPIPE in its own programs; a command must get
            // the default back, or `cmd | head` would leave cmd writing.
            // SAFETY: restoring a default action installs no code.
            let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
            // If guard dies, even by SIGKILL, the kernel kills the command.
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            if getppid() != guard_pid {
                // guard died before the line above took effect.
                // SAFETY: _exit ends this process without running anything.
                unsafe { libc::_exit(libc::SIGKILL + 128) };
            }
            // SAFETY: `argv_ptrs` is a NULL-terminated array of pointers to
            // NUL-terminated strings (`argv`), all alive until exec or _exit.
            unsafe { libc::execvp(argv_ptrs[0], argv_ptrs.as_ptr()) };
            // execvp returned: it failed, and errno says why.
            let err = Errno::last();
            let code = if err == Errno::ENOENT {
                EXIT_ENOENT
            } else {
                EXIT_CANNOT_INVOKE
            };
            let stderr = std::io::stderr();
            let _ = write(&stderr, complaint.as_bytes());
            let _ = write(&stderr, err.desc().as_bytes());
            let _ = write(&stderr, b"\n");
            // SAFETY: _exit ends the child without running guard's destructors
            // or flushing buffers that belong to the parent.
            unsafe { libc::_exit(code.into()) }
        }
    }
}
