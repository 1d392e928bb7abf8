//! The conventions every program shares (docs/DESIGN.md), checked on the real binaries.
mod common;

use common::{run, text, Env};

/// Every program of the package (the generator's list, checked against
/// Cargo.toml's `[[bin]]`s by `tests/man_completions.rs`).
use syncomm_cli::generate::PROGRAMS;

/// Every binary answers `--help` and `--version` with exit 0.
#[test]
fn every_binary_has_help_and_version() {
    let env = Env::new();
    for &b in PROGRAMS {
        let mut c = env.cmd(b);
        c.arg("--help");
        let out = run(c);
        assert!(out.status.success(), "{b} --help: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("Usage"),
            "{b} --help prints usage"
        );
        let mut c = env.cmd(b);
        c.arg("--version");
        let out = run(c);
        assert!(out.status.success(), "{b} --version");
        assert!(
            text(&out.stdout).contains("0.1.0"),
            "{b} --version prints the version"
        );
    }
}

/// An option a program does not know is one line in the usual form,
/// `PROGRAM: ... (try --help)`, exit 2 — not clap's multi-line block (guard,
/// like timeout(1), says so in one line and exits 125).
#[test]
fn an_unknown_option_is_one_line_and_a_usage_error() {
    let env = Env::new();
    for &b in PROGRAMS {
        let mut c = env.cmd(b);
        c.arg("--no-such-option");
        let out = run(c);
        let err = text(&out.stderr);
        let want = if b == "guard" { 125 } else { 2 };
        assert_eq!(out.status.code(), Some(want), "{b}: {err}");
        assert_eq!(
            err.lines().count(),
            1,
            "{b} printed more than one line: {err}"
        );
        assert!(err.starts_with(&format!("{b}: ")), "{b}: {err}");
        if b != "guard" {
            assert!(err.trim_end().ends_with("(try --help)"), "{b}: {err}");
        }
    }
}

/// A misspelt option before gate's command is a usage error, and nothing is
/// created: it used to be taken as the command to run (exit 127) after a
/// semaphore set and its key file had been made.
#[test]
fn gate_refuses_an_unknown_option_and_creates_nothing() {
    let env = Env::new();
    for args in [
        &["--stauts"][..],
        &["--slot", "2", "--", "true"],
        &["--timout", "1s", "true"],
    ] {
        let mut c = env.cmd("gate");
        c.args(["--name", "typo"]).args(args);
        let out = run(c);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "gate {args:?}: {err}");
        assert!(err.contains("unexpected argument"), "gate {args:?}: {err}");
        let made: Vec<_> = std::fs::read_dir(env.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(made.is_empty(), "gate {args:?} created {made:?}");
    }
    // A command with its own options still runs, with or without `--`.
    let mut c = env.cmd("gate");
    c.args(["--name", "typo", "--slots", "1", "sh", "-c", "echo ran -x"]);
    let out = run(c);
    assert_eq!(text(&out.stdout), "ran -x\n", "{}", text(&out.stderr));
    let mut c = env.cmd("gate");
    c.args(["--name", "typo", "--remove"]);
    assert!(run(c).status.success());
}

/// `worker call`'s options after the function name are refused with a hint
/// instead of being sent as arguments; negative numbers are still arguments.
#[test]
fn worker_call_refuses_its_options_after_the_function() {
    let env = Env::new();
    let mut c = env.cmd("worker");
    c.args(["call", "add", "2", "3", "--name", "x"]);
    let out = run(c);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("options go before it"), "{err}");
    let mut c = env.cmd("worker");
    c.args(["call", "--name", "nobody", "add", "-5", "3"]);
    let out = run(c);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "-5 is an argument: {err}");
    assert!(err.contains("no server is serving nobody"), "{err}");
}
