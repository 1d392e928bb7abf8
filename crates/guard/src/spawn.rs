//! Starting the command: a child that shares guard's memory until it calls
//! `execvp(3)` (`clone(CLONE_VM | CLONE_VFORK)`, what `posix_spawn(3)` does
//! inside), set up on the way.
//!
//! Written out instead of using `std::process::Command` because the child
//! needs one step std cannot express without a full `fork(2)`: the
//! parent-death signal. And a learner sees every step the child takes
//! before it becomes the command:
//! 1. `setpgid(0, 0)`: a process group of its own (unless `--foreground`),
//!    so one `killpg(2)` reaches it and everything it starts in it;
//! 2. an empty signal mask: guard blocks the signals it reads from its
//!    signalfd, the command must not inherit that;
//! 3. SIGPIPE back to its default action (Rust ignores it in its programs);
//! 4. `PR_SET_PDEATHSIG = SIGKILL`: if guard dies, even by SIGKILL, the
//!    kernel kills the command;
//! 5. `execvp`: search `PATH`, become the command.
//!
//! Sharing memory instead of copying it (no page tables to copy, no
//! copy-on-write faults) is most of what makes `guard 10 true` as cheap as
//! `timeout 10 true`. With `CLONE_VFORK` guard is suspended until the child
//! has called `exec` or `_exit`, so the child can leave the `exec` error in
//! guard's memory, and guard reports it (127 not found, 126 cannot run).

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::GuardError;

/// Stack for the child until it calls `exec` (execvp builds the candidate
/// paths on it), plus room for a copy of `argv` (execvp copies it there to
/// run a script without `#!` through `/bin/sh`). Only the pages it touches
/// are ever allocated.
const CHILD_STACK: usize = 256 * 1024;

/// What the child reads (and writes back) in the memory it shares with guard.
struct Setup {
    /// NULL-terminated `argv` for execvp.
    argv: *const *const libc::c_char,
    /// Whether to stay in guard's process group.
    foreground: bool,
    /// guard's pid, to notice that guard died before PDEATHSIG was set.
    parent: libc::pid_t,
    /// Set by the child when `exec` failed: its errno.
    exec_errno: AtomicI32,
}

/// The child, from `clone` to `exec`. It runs on its own stack in guard's
/// memory while guard is suspended, so it makes only plain system calls:
/// no allocation, no locks, no unwinding.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the `Setup` that `start` keeps alive, and
    // untouched, until this child has exec'd or exited.
    let setup = unsafe { &*(arg as *const Setup) };
    // SAFETY: each call below is a thin wrapper around one system call, on
    // values owned here or by `setup`; none allocates or takes a lock.
    unsafe {
        if !setup.foreground {
            libc::setpgid(0, 0);
        }
        let mut empty = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if syncomm_sys::spawn::die_with_parent(setup.parent).is_err() {
            // guard died before the parent-death signal took effect.
            libc::_exit(128 + libc::SIGKILL);
        }
        libc::execvp(*setup.argv, setup.argv);
        // Still here: exec failed.
        setup
            .exec_errno
            .store(*libc::__errno_location(), Ordering::SeqCst);
        libc::_exit(127)
    }
}

/// Starts `command` as a child of this process and returns its pid once it
/// runs the command; or the reason it could not ([`GuardError::Exec`]).
///
/// The child runs in a new process group of its own (unless `foreground`),
/// with every signal unblocked, SIGPIPE at its default action, and SIGKILL
/// as its parent-death signal.
pub fn start(command: &[OsString], foreground: bool) -> Result<Pid, GuardError> {
    let name = command
        .first()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Everything the child needs is prepared here, before it exists.
    let argv: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| GuardError::Exec {
            command: name.clone(),
            errno: Errno::EINVAL,
        })?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let setup = Setup {
        argv: argv_ptrs.as_ptr(),
        foreground,
        parent: std::process::id() as libc::pid_t,
        exec_errno: AtomicI32::new(0),
    };
    let size = CHILD_STACK + (argv_ptrs.len() + 2) * std::mem::size_of::<*const libc::c_char>();
    let mut stack = vec![0u8; size];
    // The stack grows down: pass its 16-byte aligned top.
    let top = (stack.as_mut_ptr() as usize + size) & !15;

    // SAFETY: `child` only makes plain system calls (see there); `top` is the
    // aligned top of a live, writable buffer; `setup`, `argv` and `stack`
    // stay alive and unmoved until clone returns, which with CLONE_VFORK is
    // after the child has exec'd or exited.
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &setup as *const Setup as *mut libc::c_void,
        )
    };
    drop(stack);
    if pid < 0 {
        return Err(GuardError::Spawn {
            command: name,
            source: std::io::Error::last_os_error(),
        });
    }
    let pid = Pid::from_raw(pid);
    if !foreground {
        // The child did it before exec; repeated here so the group certainly
        // exists once we return (EACCES now that it has exec'd is fine).
        let _ = nix::unistd::setpgid(pid, pid);
    }
    match setup.exec_errno.load(Ordering::SeqCst) {
        0 => Ok(pid),
        errno => {
            // The child has exited; collect it.
            let _ = waitpid(pid, None);
            Err(GuardError::Exec {
                command: name,
                errno: Errno::from_raw(errno),
            })
        }
    }
}
