//! The runtime directory (`SYNCOMM_DIR`), on the real binaries: a directory
//! we did not create is never changed. One open to other users (a loose mode,
//! a shared 1777 directory) is refused with one line saying how to fix it and
//! is left exactly as it was; a symlink is refused however the path is
//! spelled (`link/`, `link/.`), and its target is left untouched; a directory
//! owned by another uid is refused even when we run as root.
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use common::{run, text};

/// `program args` with `SYNCOMM_DIR` set to `dir` (spelled exactly as given).
fn with_dir(dir: &str, program: &str, args: &[&str]) -> Output {
    let mut c = Command::new(common::bin(program));
    c.env("SYNCOMM_DIR", dir).env_remove("RUST_LOG").args(args);
    run(c)
}

/// Two programs that use the runtime directory and do nothing else with
/// it on a name that does not exist.
fn probes(dir: &str) -> Vec<(String, Output)> {
    vec![
        (
            "gate --status".to_owned(),
            with_dir(dir, "gate", &["--status", "--name", "nothing-here"]),
        ),
        (
            "monitor --once".to_owned(),
            with_dir(dir, "monitor", &["--once", "--name", "nothing-here"]),
        ),
    ]
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Asserts a refusal: failure, one line on stderr naming the directory
/// problem (`needle`), nothing on stdout.
fn assert_refused(what: &str, out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{what}: succeeded: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
    assert!(err.contains("runtime directory"), "{what}: {err}");
    assert!(err.contains(needle), "{what}: wanted {needle:?} in: {err}");
    assert!(
        text(&out.stdout).is_empty(),
        "{what}: {}",
        text(&out.stdout)
    );
}

/// An existing directory with a loose mode (0755, 0770, 0701) is refused
/// with one line that says how to fix it, and its mode is left as it was
/// (it used to be chmod-ed to 0700 silently).
#[test]
fn loose_runtime_dir_is_refused_and_left_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    for loose in [0o755, 0o770, 0o701] {
        let dir = tmp.path().join(format!("run-{loose:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(loose)).unwrap();
        for (what, out) in probes(dir.to_str().unwrap()) {
            assert_refused(&what, &out, "chmod 700");
            assert_eq!(
                mode(&dir),
                loose,
                "{what}: mode of {} changed",
                dir.display()
            );
            assert!(
                entries(&dir).is_empty(),
                "{what}: created {:?}",
                entries(&dir)
            );
        }
    }
}

/// A shared directory (mode 1777, like /tmp) holding another user's file is
/// refused and keeps its mode; nothing is created in it.
#[test]
fn shared_sticky_dir_is_refused_and_left_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o1777)).unwrap();
    let theirs = dir.join("their-file");
    std::fs::write(&theirs, b"theirs").unwrap();
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(&theirs, Some(65534.into()), Some(65534.into())).unwrap();
    }
    for (what, out) in probes(dir.to_str().unwrap()) {
        assert_refused(&what, &out, "chmod 700");
        assert_eq!(mode(&dir), 0o1777, "{what}: mode changed");
        assert_eq!(entries(&dir), ["their-file"], "{what}");
    }
}

/// A symlink to a directory is refused however the path is spelled: as is,
/// with a trailing slash, with `/.`, `//`, `/./` (these used to pass, and the
/// link's target was used and chmod-ed). The target keeps its mode and gets
/// no file.
#[test]
fn symlink_is_refused_whatever_the_spelling() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, PermissionsExt::from_mode(0o755)).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let link = link.to_str().unwrap();
    for spelling in [
        link.to_owned(),
        format!("{link}/"),
        format!("{link}/."),
        format!("{link}//"),
        format!("{link}/./"),
        format!("{link}/./."),
    ] {
        for (what, out) in probes(&spelling) {
            let what = format!("{what} with SYNCOMM_DIR={spelling}");
            assert_refused(&what, &out, "symlink");
            assert_eq!(mode(&target), 0o755, "{what}: target's mode changed");
            assert!(
                entries(&target).is_empty(),
                "{what}: {:?}",
                entries(&target)
            );
        }
    }
    // The same with a private (0700) target, which a loose-mode check alone
    // would not catch.
    std::fs::set_permissions(&target, PermissionsExt::from_mode(0o700)).unwrap();
    for (what, out) in probes(&format!("{link}/.")) {
        assert_refused(&what, &out, "symlink");
        assert!(
            entries(&target).is_empty(),
            "{what}: {:?}",
            entries(&target)
        );
    }
}

/// A directory owned by another uid is refused, also when we run as root
/// (root could use it, but another user could then plant or read our files);
/// its owner and mode stay as they were. Only checkable as root (a normal
/// user cannot give a directory away): skipped otherwise.
#[test]
fn foreign_owned_dir_is_refused_even_as_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("theirs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o700)).unwrap();
    nix::unistd::chown(&dir, Some(65534.into()), Some(65534.into())).unwrap();
    for spelling in [
        dir.to_str().unwrap().to_owned(),
        format!("{}/.", dir.display()),
    ] {
        for (what, out) in probes(&spelling) {
            assert_refused(&what, &out, "belongs to uid 65534");
            let meta = std::fs::metadata(&dir).unwrap();
            assert_eq!((meta.uid(), meta.mode() & 0o7777), (65534, 0o700), "{what}");
            assert!(entries(&dir).is_empty(), "{what}");
        }
    }
}

/// What works: a missing directory is created 0700 (parents too), and an
/// existing private one of ours is used as is, also spelled with a trailing
/// slash; the programs then get past the directory (to "no such gate").
#[test]
fn a_private_dir_is_created_and_used() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/run");
    for spelling in [
        dir.to_str().unwrap().to_owned(),
        format!("{}/", dir.display()),
        format!("{}/.", dir.display()),
    ] {
        for (what, out) in probes(&spelling) {
            let err = text(&out.stderr);
            assert!(
                !err.contains("runtime directory"),
                "{what} {spelling}: {err}"
            );
            assert_eq!(mode(&dir), 0o700, "{what}");
        }
    }
}
