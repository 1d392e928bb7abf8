//! Opening a runtime file that another process may have planted: never
//! blocking, never following a symlink, and only a regular file of ours.
//!
//! A FIFO at the path would make a plain `open(2)` wait for a writer
//! forever (and a restarted system call swallows SIGTERM); a symlink could
//! redirect us to any file; an object of another user must never be trusted,
//! even when we run as root. So every open here uses `O_NONBLOCK` (cleared
//! again once the object is known to be a regular file), `O_NOFOLLOW` and
//! `O_NOCTTY`, then checks with `fstat` on the opened descriptor (no race
//! with a rename) that it is a regular file owned by our effective uid.
//! [`verify`] applies the same checks to a descriptor opened another way
//! (`shm_open`, say).
//!
//! [`open_no_symlinks`] is for a file the user names (scribe's shared file,
//! which may be anyone's): no symlink in *any* component of the path
//! (`openat2(2)` with `RESOLVE_NO_SYMLINKS`); the caller adds `O_NONBLOCK`
//! and checks the file type.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::{fstat, FileStat, SFlag};

/// How to open the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Create it (read and write) with this mode; fails if the name exists.
    CreateNew(u32),
    /// Read and write, creating it with this mode if it does not exist.
    Create(u32),
}

/// Why a runtime file was not opened. Its `Display` is one line naming the
/// path; [`OpenError::reason`] is the same without the path.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Nothing at the path.
    #[error("{}: no such file", .0.display())]
    NotFound(PathBuf),
    /// The path is a symbolic link (not followed).
    #[error("{}: it is a symlink; refusing to follow it", .0.display())]
    Symlink(PathBuf),
    /// The path is something other than a regular file.
    #[error("{}: it is a {kind}, not a regular file; refusing it", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is ("FIFO", "directory", ...).
        kind: &'static str,
    },
    /// The file belongs to another user.
    #[error("{}: it belongs to uid {owner}, not to us (uid {me}); refusing it", path.display())]
    ForeignOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        me: u32,
    },
    /// The name exists already ([`Access::CreateNew`]).
    #[error("{}: it exists already", .0.display())]
    Exists(PathBuf),
    /// Any other failure.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl OpenError {
    /// The reason alone, without the path (for messages that name it already).
    pub fn reason(&self) -> String {
        match self {
            OpenError::NotFound(_) => "no such file".to_owned(),
            OpenError::Symlink(_) => "it is a symlink; refusing to follow it".to_owned(),
            OpenError::NotRegular { kind, .. } => {
                format!("it is a {kind}, not a regular file; refusing it")
            }
            OpenError::ForeignOwner { owner, me, .. } => {
                format!("it belongs to uid {owner}, not to us (uid {me}); refusing it")
            }
            OpenError::Exists(_) => "it exists already".to_owned(),
            OpenError::Io { source, .. } => source.to_string(),
        }
    }

    /// Whether nothing was at the path.
    pub fn is_not_found(&self) -> bool {
        matches!(self, OpenError::NotFound(_))
    }

    /// The path concerned.
    pub fn path(&self) -> &Path {
        match self {
            OpenError::NotFound(p) | OpenError::Symlink(p) | OpenError::Exists(p) => p,
            OpenError::NotRegular { path, .. }
            | OpenError::ForeignOwner { path, .. }
            | OpenError::Io { path, .. } => path,
        }
    }
}

/// Opens `path` as described in the module docs: never blocks, never follows
/// a symlink in the last component, and returns only a regular file owned by
/// our effective uid (in blocking mode again).
pub fn open_regular(path: &Path, access: Access) -> Result<File, OpenError> {
    let mut o = OpenOptions::new();
    match access {
        Access::Read => o.read(true),
        Access::ReadWrite => o.read(true).write(true),
        Access::CreateNew(mode) => o.read(true).write(true).create_new(true).mode(mode),
        Access::Create(mode) => o.read(true).write(true).create(true).mode(mode),
    };
    o.custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY);
    let file = o.open(path).map_err(|e| classify(path, e))?;
    verify(file.as_fd(), path)?;
    Ok(file)
}

/// Reads the whole of a small runtime file opened with [`open_regular`]
/// ([`Access::Read`]); a file longer than `limit` bytes is an error (a
/// planted huge file cannot make us allocate without bound).
pub fn read_regular(path: &Path, limit: usize) -> Result<Vec<u8>, OpenError> {
    let file = open_regular(path, Access::Read)?;
    let mut buf = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|source| OpenError::Io {
            path: path.to_owned(),
            source,
        })?;
    if buf.len() > limit {
        return Err(OpenError::Io {
            path: path.to_owned(),
            source: io::Error::other(format!("longer than {limit} bytes")),
        });
    }
    Ok(buf)
}

/// Checks an open descriptor (named `path` in errors): a regular file owned
/// by our effective uid; then clears `O_NONBLOCK` on it. Returns its `fstat`.
pub fn verify(fd: BorrowedFd<'_>, path: &Path) -> Result<FileStat, OpenError> {
    let io_err = |e: nix::Error| OpenError::Io {
        path: path.to_owned(),
        source: e.into(),
    };
    let st = fstat(fd).map_err(io_err)?;
    let fmt = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if fmt != SFlag::S_IFREG {
        return Err(OpenError::NotRegular {
            path: path.to_owned(),
            kind: kind_of_mode(fmt),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return Err(OpenError::ForeignOwner {
            path: path.to_owned(),
            owner: st.st_uid,
            me,
        });
    }
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io_err)?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io_err)?;
    Ok(st)
}

/// Opens `path` with `flags` (`O_CLOEXEC` added; `mode` when creating)
/// without following a symlink in any component of the path: `openat2(2)`
/// with `RESOLVE_NO_SYMLINKS`, relative to the working directory. On a kernel
/// without openat2 (before Linux 5.6: `ENOSYS`) it falls back to `open(2)`
/// with `O_NOFOLLOW`, which checks the last component only. A symlink met
/// fails with `ELOOP` either way.
pub fn open_no_symlinks(path: &Path, flags: libc::c_int, mode: u32) -> io::Result<File> {
    use std::ffi::CString;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let flags = flags | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.mode = if flags & libc::O_CREAT != 0 {
        u64::from(mode)
    } else {
        0
    };
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: openat2(dirfd, path, how, size) reads the NUL-terminated path
    // and `size` bytes of `how`, both live for the call; it returns a new
    // descriptor or -1 with errno set.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel just returned this descriptor and nothing else owns it.
        return Ok(File::from(unsafe {
            OwnedFd::from_raw_fd(fd as libc::c_int)
        }));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    open_nofollow_last(path, flags, mode)
}

/// The fallback of [`open_no_symlinks`] before Linux 5.6: `open(2)` with
/// `O_NOFOLLOW`, which refuses a symlink as the last component only.
fn open_nofollow_last(path: &Path, flags: libc::c_int, mode: u32) -> io::Result<File> {
    let flags = flags | libc::O_NOFOLLOW;
    let acc = flags & libc::O_ACCMODE;
    OpenOptions::new()
        .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .append(flags & libc::O_APPEND != 0)
        .create(flags & libc::O_CREAT != 0)
        .mode(mode)
        .custom_flags(flags & !(libc::O_ACCMODE | libc::O_APPEND | libc::O_CREAT))
        .open(path)
}

/// Turns an `open(2)` error into an [`OpenError`]; errors that mean "not a
/// regular file" (a directory opened for writing, a FIFO or socket that
/// cannot be opened) look at the path to say what it is.
pub fn classify(path: &Path, e: io::Error) -> OpenError {
    match e.raw_os_error() {
        Some(nix::libc::ENOENT) => OpenError::NotFound(path.to_owned()),
        Some(nix::libc::EEXIST) => OpenError::Exists(path.to_owned()),
        Some(nix::libc::ELOOP) => OpenError::Symlink(path.to_owned()),
        Some(nix::libc::EISDIR | nix::libc::ENXIO | nix::libc::ENODEV | nix::libc::ETXTBSY) => {
            match std::fs::symlink_metadata(path) {
                Ok(m) if !m.is_file() => OpenError::NotRegular {
                    path: path.to_owned(),
                    kind: kind_of(&m.file_type()),
                },
                _ => OpenError::Io {
                    path: path.to_owned(),
                    source: e,
                },
            }
        }
        _ => OpenError::Io {
            path: path.to_owned(),
            source: e,
        },
    }
}

/// What a non-regular file is, in words ("FIFO", "directory", ...).
pub fn kind_of(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "special file"
    }
}

fn kind_of_mode(fmt: SFlag) -> &'static str {
    match fmt {
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFIFO => "FIFO",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        SFlag::S_IFLNK => "symlink",
        _ => "special file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_fifo_symlink_and_directory_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        for access in [Access::Read, Access::ReadWrite] {
            let e = open_regular(&fifo, access).unwrap_err();
            assert!(e.to_string().contains("FIFO"), "{e}");
        }
        let file = tmp.path().join("file");
        std::fs::write(&file, b"hello").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(
            open_regular(&link, Access::Read),
            Err(OpenError::Symlink(_))
        ));
        assert!(matches!(
            open_regular(tmp.path(), Access::ReadWrite),
            Err(OpenError::NotRegular {
                kind: "directory",
                ..
            })
        ));
        assert!(open_regular(&tmp.path().join("none"), Access::Read)
            .unwrap_err()
            .is_not_found());
        assert_eq!(read_regular(&file, 5).unwrap(), b"hello");
        assert!(read_regular(&file, 4).is_err());
        // The descriptor is blocking again.
        let f = open_regular(&file, Access::Read).unwrap();
        let fl = fcntl(&f, FcntlArg::F_GETFL).unwrap();
        assert_eq!(fl & nix::libc::O_NONBLOCK, 0);
        let new = tmp.path().join("new");
        open_regular(&new, Access::CreateNew(0o600)).unwrap();
        assert!(matches!(
            open_regular(&new, Access::CreateNew(0o600)),
            Err(OpenError::Exists(_))
        ));
    }

    #[test]
    fn refuses_another_users_file_even_as_root() {
        if !nix::unistd::geteuid().is_root() {
            return; // cannot give a file away
        }
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("theirs");
        std::fs::write(&file, b"x").unwrap();
        nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let e = open_regular(&file, Access::Read).unwrap_err();
        assert!(
            matches!(e, OpenError::ForeignOwner { owner: 65534, .. }),
            "{e}"
        );
    }

    #[test]
    fn no_symlink_anywhere_on_the_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("f"), b"").unwrap();
        let dirlink = dir.path().join("dirlink");
        std::os::unix::fs::symlink(&real, &dirlink).unwrap();
        let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT;
        match open_no_symlinks(&dirlink.join("f"), flags, 0o644) {
            // A kernel without openat2 checks the last component only.
            Ok(_) => assert!(std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap()
                .starts_with(['2', '3', '4', '5'])),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ELOOP)),
        }
        assert!(open_no_symlinks(&real.join("f"), flags, 0o644).is_ok());
        assert!(open_no_symlinks(&real.join("new"), flags, 0o600).is_ok());
        assert_eq!(
            std::fs::metadata(real.join("new"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // The fallback: the last component only.
        let e = open_nofollow_last(&dirlink, libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert!(open_nofollow_last(&dirlink.join("f"), libc::O_RDONLY, 0).is_ok());
    }
}
