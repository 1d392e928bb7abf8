//! The conventions every program shares (docs/DESIGN.md), checked on the real binaries.
mod common;

use common::{run, text, Env};

/// Every binary answers `--help` and `--version` with exit 0.
#[test]
fn every_binary_has_help_and_version() {
    let env = Env::new();
    for b in [
        "producer",
        "consumer",
        "monitor",
        "filter",
        "worker",
        "ping-server",
        "ping-client",
        "guard",
        "scribe",
        "gate",
        "discover",
    ] {
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
