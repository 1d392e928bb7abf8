//! The options the programs share, as clap `#[derive(Args)]` structs that a
//! program's own `Parser` takes in with `#[command(flatten)]`.
//!
//! The runtime directory is read from the environment here, and only here
//! ([`run_dir`]): `SYNCOMM_DIR`, else `XDG_RUNTIME_DIR/syncomm`, else
//! `/tmp/syncomm-$UID`; the libraries are handed the resulting [`RunDir`].
//!
//! A name is checked after parsing (not by clap) so that a bad one is the
//! usual one-line usage error, `PROGRAM: invalid name ...`, exit 2.

use clap::Args;
use syncomm_common::name::DEFAULT_NAME;
use syncomm_common::rundir::{self, RunDir, RunDirError};
use syncomm_common::Name;

use crate::Fail;

/// `--name` and `--json`, the options most programs share.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Rendezvous name: 1 to 64 of A-Z a-z 0-9 . _ -
    #[arg(long = "name", value_name = "NAME", default_value = DEFAULT_NAME)]
    pub name: String,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

impl CommonArgs {
    /// The name, validated: a bad one is a usage error.
    pub fn name(&self) -> Result<Name, Fail> {
        parse_name(&self.name)
    }
}

/// The runtime directory the environment names (`SYNCOMM_DIR`, else
/// `XDG_RUNTIME_DIR/syncomm`, else `/tmp/syncomm-$UID`), created if missing
/// and checked. Called once by a program, just before it first needs the
/// directory (a program that does not need it never touches it).
pub fn run_dir() -> Result<RunDir, RunDirError> {
    RunDir::open(rundir::choose(
        std::env::var_os(rundir::ENV_VAR).as_deref(),
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
    ))
}

/// Parses the command line into `T`. `--help` and `--version` print and exit
/// 0 as usual; any other parser error is the usual one-line usage error,
/// `PROGRAM: WHY (try --help)`, exit 2, instead of clap's multi-line block
/// (and an `error` JSON line too when `--json` is among the arguments).
/// With `SYNCOMM_GENERATE` set, the program makes its manual page, a
/// completion script or a parse-only check instead ([`crate::generate`]).
pub fn parse<T: clap::Parser>() -> Result<T, Fail> {
    crate::generate::intercept::<T>();
    T::try_parse().map_err(|e| {
        use clap::error::ErrorKind;
        match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                crate::output::enable(crate::output::asked_for_json(std::env::args_os()));
                Fail::usage(one_line(&e.render().to_string()))
            }
        }
    })
}

/// The first line of a clap error, without its `error: ` prefix, with a hint.
pub(crate) fn one_line(rendered: &str) -> String {
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad arguments");
    let why = first.trim().strip_prefix("error: ").unwrap_or(first.trim());
    format!("{why} (try --help)")
}

fn parse_name(s: &str) -> Result<Name, Fail> {
    Name::new(s).map_err(|e| Fail::usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Prog {
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn defaults_and_bad_name() {
        let p = Prog::parse_from(["prog"]);
        assert_eq!(p.common.name().unwrap().as_str(), "default");
        assert!(!p.common.json);
        let p = Prog::parse_from(["prog", "--name", "a/b", "--json"]);
        assert!(p.common.json);
        assert_eq!(p.common.name().unwrap_err().code, crate::exit::USAGE);
    }
}
