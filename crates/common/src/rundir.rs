//! The runtime directory: where sockets, registries and link files live.
//!
//! Chosen as `$SYNCOMM_DIR`, else `$XDG_RUNTIME_DIR/syncomm`, else
//! `/tmp/syncomm-$UID` ([`choose`]; the binaries read the environment, once)
//! and handed to the libraries as a checked [`RunDir`]. A missing directory is created with mode 0700 (its
//! missing parents 0755). The directory must be private to us, and it is
//! checked, never repaired: a directory we did not create is never changed.
//! It is refused (one line saying why and what to do) when
//! - it is a symlink, however the path is spelled: trailing slashes and `.`
//!   components are dropped first, so `link/` and `link/.` name the link
//!   itself, which is opened with `O_NOFOLLOW | O_DIRECTORY` and compared
//!   (`fstat` against `lstat`) with what the path names;
//! - it is not a directory;
//! - it belongs to another uid, also when we run as root (another user
//!   could place or read our sockets and files there);
//! - its mode gives any access to group or others (0755, a shared 1777
//!   directory, ...): fix it with `chmod 700 DIR` if it is yours alone, or
//!   point `SYNCOMM_DIR` at a private directory.

use std::ffi::OsStr;
use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::name::Name;

/// The environment variable that overrides the runtime directory.
pub const ENV_VAR: &str = "SYNCOMM_DIR";

/// Why the runtime directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// The path is a symbolic link.
    #[error("runtime directory {0} is a symlink; refusing it (remove it or set SYNCOMM_DIR)")]
    Symlink(PathBuf),
    /// The path exists and is not a directory.
    #[error("runtime directory {0} is not a directory")]
    NotDirectory(PathBuf),
    /// The directory belongs to another user.
    #[error("runtime directory {path} belongs to uid {owner}, not to us (uid {me}); refusing it (set SYNCOMM_DIR to a directory of your own)")]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        me: u32,
    },
    /// The directory gives access to group or others.
    #[error("runtime directory {path} is open to other users (mode {mode:04o}); refusing it (if it is yours alone: chmod 700 {path}; else set SYNCOMM_DIR to a private directory)")]
    Loose {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path named another object by the time it was checked.
    #[error("runtime directory {0} changed while it was being checked; refusing it")]
    Changed(PathBuf),
    /// Creating or inspecting the directory failed.
    #[error("runtime directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// The runtime directory a program uses, given the values of `SYNCOMM_DIR`
/// and `XDG_RUNTIME_DIR` (an empty value counts as unset): `$SYNCOMM_DIR`,
/// else `$XDG_RUNTIME_DIR/syncomm`, else `/tmp/syncomm-$UID`. Reading the
/// environment is the binaries' business (`syncomm-cli`); libraries are
/// given a [`RunDir`].
pub fn choose(syncomm_dir: Option<&OsStr>, xdg_runtime_dir: Option<&OsStr>) -> PathBuf {
    if let Some(dir) = syncomm_dir.filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = xdg_runtime_dir.filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("syncomm");
    }
    PathBuf::from(format!("/tmp/syncomm-{}", nix::unistd::geteuid().as_raw()))
}

/// A runtime directory that has been created if missing and checked (see
/// the module documentation): the value every library entry point that
/// names a runtime file is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `path` (0700) if needed and checks it with [`ensure`]. The
    /// path kept is `path` without trailing slashes or `.` components.
    pub fn open(path: impl AsRef<Path>) -> Result<RunDir, RunDirError> {
        let path = normalize(path.as_ref());
        ensure(&path)?;
        Ok(RunDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of a runtime file for `kind` and `name`, such as
    /// `worker.default.sock`: `{rundir}/{kind}.{name}.{ext}`.
    pub fn file(&self, kind: &str, name: &Name, ext: &str) -> PathBuf {
        self.path.join(format!("{kind}.{name}.{ext}"))
    }
}

impl AsRef<Path> for RunDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// `path` without trailing slashes and `.` components (`a/./b/.` is
/// `a/b`), so that its last component is the directory itself: `link/` or
/// `link/.` would make the kernel follow `link` even under `O_NOFOLLOW`.
pub fn normalize(path: &Path) -> PathBuf {
    path.components().collect()
}

/// Creates `path` as a 0700 directory if missing, then checks that it is a
/// real directory (never a symlink, however spelled) owned by our uid with
/// no access for group or others. Changes nothing it did not create.
pub fn ensure(path: &Path) -> Result<(), RunDirError> {
    let path = &normalize(path);
    let io_err = |source| RunDirError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(io_err)?;
        }
    }
    let created = match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io_err(e)),
    };
    // The directory itself, never what a symlink points to.
    let dir = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(dir) => dir,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::ELOOP | nix::libc::ENOTDIR)
            ) =>
        {
            let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            return Err(if is_link {
                RunDirError::Symlink(path.to_owned())
            } else {
                RunDirError::NotDirectory(path.to_owned())
            });
        }
        Err(e) => return Err(io_err(e)),
    };
    let opened = dir.metadata().map_err(io_err)?;
    let named = std::fs::symlink_metadata(path).map_err(io_err)?;
    if named.file_type().is_symlink() {
        return Err(RunDirError::Symlink(path.to_owned()));
    }
    if (opened.dev(), opened.ino()) != (named.dev(), named.ino()) {
        return Err(RunDirError::Changed(path.to_owned()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if opened.uid() != me {
        return Err(RunDirError::ForeignOwner {
            path: path.to_owned(),
            owner: opened.uid(),
            me,
        });
    }
    let mode = opened.mode() & 0o7777;
    if created && mode != 0o700 {
        // Ours, just made (a umask can only have taken bits away).
        dir.set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(io_err)?;
    } else if mode & 0o077 != 0 {
        return Err(RunDirError::Loose {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn creates_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/run");
        ensure(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        ensure(&dir).unwrap();
        ensure(&tmp.path().join("a/b/run/")).unwrap();
        ensure(&tmp.path().join("a/b/run/.")).unwrap();
    }

    #[test]
    fn refuses_loose_permissions_and_leaves_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        for loose in [0o777, 0o1777, 0o750, 0o701] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(loose)).unwrap();
            let err = ensure(&dir).unwrap_err();
            assert!(matches!(err, RunDirError::Loose { .. }), "{err}");
            assert!(err.to_string().contains("chmod 700"), "{err}");
            assert_eq!(mode(&dir), loose);
        }
    }

    #[test]
    fn refuses_symlink_however_spelled_and_file() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        for tail in ["", "/", "/.", "//", "/./", "/./."] {
            let spelled = PathBuf::from(format!("{}{tail}", link.display()));
            let err = ensure(&spelled).unwrap_err();
            assert!(matches!(err, RunDirError::Symlink(_)), "{tail:?}: {err}");
        }
        assert_eq!(mode(&real), 0o755);
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(ensure(&file), Err(RunDirError::NotDirectory(_))));
        assert!(matches!(
            ensure(&file.join(".")),
            Err(RunDirError::NotDirectory(_))
        ));
    }

    #[test]
    fn run_dir_value_is_checked_and_normalized() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::open(tmp.path().join("run/.")).unwrap();
        assert_eq!(dir.path(), tmp.path().join("run"));
        let name = Name::new("n").unwrap();
        assert_eq!(
            dir.file("worker", &name, "sock"),
            tmp.path().join("run/worker.n.sock")
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            RunDir::open(dir.path()),
            Err(RunDirError::Loose { .. })
        ));
    }

    #[test]
    fn choice_of_directory() {
        let os = |s| Some(OsStr::new(s));
        assert_eq!(choose(os("/a"), os("/x")), PathBuf::from("/a"));
        assert_eq!(choose(os(""), os("/x")), PathBuf::from("/x/syncomm"));
        assert_eq!(
            choose(None, os("")),
            PathBuf::from(format!("/tmp/syncomm-{}", nix::unistd::geteuid().as_raw()))
        );
    }

    #[test]
    fn normalizes_spellings() {
        for (given, want) in [
            ("/a/b/", "/a/b"),
            ("/a/b/.", "/a/b"),
            ("/a/./b//./", "/a/b"),
            ("rel/", "rel"),
            ("./rel/.", "./rel"),
        ] {
            assert_eq!(normalize(Path::new(given)), PathBuf::from(want), "{given}");
        }
    }
}
