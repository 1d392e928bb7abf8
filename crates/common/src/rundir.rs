//! The runtime directory: where sockets, registries and link files live.
//!
//! Chosen as `$SYNCOMM_DIR`, else `$XDG_RUNTIME_DIR/syncomm`, else
//! `/tmp/syncomm-$UID`. It is created with mode 0700. A directory that is a
//! symlink, is not a directory, or belongs to another user is refused: another
//! user must not be able to place or read our sockets. A directory of ours
//! with looser permissions is tightened to 0700.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
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
    #[error("runtime directory {path} belongs to uid {owner}, not to us (uid {me}); refusing it")]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        me: u32,
    },
    /// Creating or inspecting the directory failed.
    #[error("runtime directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// The runtime directory path as configured by the environment (not created).
pub fn configured_path() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("syncomm");
    }
    PathBuf::from(format!("/tmp/syncomm-{}", nix::unistd::geteuid().as_raw()))
}

/// Returns the runtime directory, creating it (0700) if needed and checking it.
pub fn runtime_dir() -> Result<PathBuf, RunDirError> {
    let path = configured_path();
    ensure(&path)?;
    Ok(path)
}

/// Creates `path` as a 0700 directory if missing, then checks it is a real
/// directory owned by us with no access for others.
pub fn ensure(path: &Path) -> Result<(), RunDirError> {
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
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(e)),
    }
    let meta = std::fs::symlink_metadata(path).map_err(io_err)?;
    if meta.file_type().is_symlink() {
        return Err(RunDirError::Symlink(path.to_owned()));
    }
    if !meta.is_dir() {
        return Err(RunDirError::NotDirectory(path.to_owned()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(RunDirError::ForeignOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io_err)?;
    }
    Ok(())
}

/// The path of a runtime file for `kind` and `name`, such as
/// `worker.default.sock`: `{rundir}/{kind}.{name}.{ext}`.
pub fn file_path(kind: &str, name: &Name, ext: &str) -> Result<PathBuf, RunDirError> {
    Ok(runtime_dir()?.join(format!("{kind}.{name}.{ext}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/run");
        ensure(&dir).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        ensure(&dir).unwrap();
    }

    #[test]
    fn tightens_loose_permissions() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn refuses_symlink_and_file() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(ensure(&link), Err(RunDirError::Symlink(_))));
        let file = tmp.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(ensure(&file), Err(RunDirError::NotDirectory(_))));
    }
}
