//! `syncomm`: list every object the syncomm programs left (`ls`), remove the
//! stale and orphaned ones (`clean`), watch the live ones (`top`). See the
//! `syncomm-admin` crate and docs/ADMIN.md. `man` and `completions` make every
//! program's manual pages and completion scripts (syncomm_cli::generate,
//! docs/MANUALS.md).
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};
use syncomm_admin::model::Listing;
use syncomm_admin::top::{self, TopOptions};
use syncomm_admin::{scan, Scope, State};
use syncomm_cli::generate::{completions_of, man_pages_of, programs_dir, Shell, PROGRAMS};
use syncomm_cli::output::{self, emit, event, Line};
use syncomm_cli::Fail;
use syncomm_common::duration::parse_refresh;
use syncomm_common::Name;

const ABOUT: &str = "\
See every object the syncomm programs made, clean up stale ones, watch them live.

States: live (in use), stale (its owner died), orphan (a kernel object whose
file or runtime directory is gone, or a file whose kernel object is gone),
foreign (another user's, or without our record: listed, never touched).

Kernel objects (board segments in /dev/shm, gate semaphore sets) carry a record
of their runtime directory and name, so those whose directory is gone are
listed (and cleaned) too, for the current user. docs/ADMIN.md describes the
--json output.

`syncomm man` and `syncomm completions` make the manual pages and the shell
completions of every program (docs/MANUALS.md).";

const EXAMPLES: &str = "
  syncomm ls                          # every object, one line each with its state
  syncomm clean --dry-run             # what clean would remove
  syncomm top --interval 500ms        # a live view, twice a second; Ctrl-C to stop
  syncomm man gate | man -l -         # read gate's manual page without installing it
  syncomm completions bash --dir ~/.local/share/bash-completion/completions   # install them";

const EXIT_STATUS: &[&str] = &[
    "  0      done",
    "  1      failure: clean left stale or orphaned objects it could not remove, or man or",
    "         completions could not run a program or write a file",
    syncomm_cli::help::EXIT_USAGE,
];

const ENVIRONMENT: &[&str] = &[
    "  SYNCOMM_DIR  the runtime directory to look at (objects of vanished directories are found too)",
    "               [default: $XDG_RUNTIME_DIR/syncomm, else /tmp/syncomm-$UID]",
    syncomm_cli::help::ENV_RUST_LOG,
];

#[derive(Parser)]
#[command(
    name = "syncomm",
    version,
    about = "See every object the syncomm programs made, clean up stale ones, watch them live",
    long_about = ABOUT,
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, ENVIRONMENT)
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every object, one line each with its state.
    Ls {
        /// Only objects of this name.
        #[arg(long, value_name = "NAME")]
        name: Option<Name>,
        /// One JSON object per line: the directory first, then each object.
        #[arg(long)]
        json: bool,
    },
    /// Remove stale and orphaned objects (never a live or foreign one).
    Clean {
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only objects of this name.
        #[arg(long, value_name = "NAME")]
        name: Option<Name>,
        /// One JSON object per line for each object handled.
        #[arg(long)]
        json: bool,
    },
    /// A live view of every live object with rates; JSON lines when stdout is not a terminal.
    Top {
        /// Time between refreshes (at least 1ms).
        #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_refresh)]
        interval: Duration,
        /// One JSON object per refresh, even on a terminal.
        #[arg(long)]
        json: bool,
        /// Stop after N refreshes.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Only objects of this name.
        #[arg(long, value_name = "NAME")]
        name: Option<Name>,
    },
    /// Print the manual pages of the programs, or write them into a directory.
    #[command(after_help = "Examples:
  syncomm man gate | man -l -                  # read one page without installing it
  syncomm man --dir ~/.local/share/man/man1    # every program's pages, as PROGRAM.1")]
    Man {
        /// Write PROGRAM.1 (and PROGRAM-SUBCOMMAND.1) into DIR and print their
        /// paths, instead of printing the pages.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Only these programs [default: every one].
        #[arg(value_name = "PROGRAM", value_parser = PossibleValuesParser::new(PROGRAMS.iter().copied()))]
        programs: Vec<String>,
    },
    /// Print the shell completion scripts of the programs, or write them into a directory.
    #[command(after_help = "Examples:
  source <(syncomm completions bash)       # complete every program in this shell
  syncomm completions bash --dir ~/.local/share/bash-completion/completions
  syncomm completions zsh --dir ~/.zfunc   # _PROGRAM files, for a directory in $fpath")]
    Completions {
        /// The shell.
        #[arg(value_name = "SHELL")]
        shell: Shell,
        /// Write one file per program into DIR (the name the shell looks for:
        /// bash PROGRAM, zsh _PROGRAM, fish PROGRAM.fish) and print their paths.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Only these programs [default: every one].
        #[arg(value_name = "PROGRAM", value_parser = PossibleValuesParser::new(PROGRAMS.iter().copied()))]
        programs: Vec<String>,
    },
}

/// The programs named, or all of them.
fn chosen(programs: &[String]) -> Vec<&str> {
    if programs.is_empty() {
        PROGRAMS.to_vec()
    } else {
        programs.iter().map(String::as_str).collect()
    }
}

/// Prints what a generator returned.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<u8> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(0)
}

fn scope(name: Option<Name>) -> Scope {
    let mut s = Scope::new(
        std::env::var_os(syncomm_common::rundir::ENV_VAR).as_deref(),
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
    );
    s.name = name.map(|n| n.to_string());
    s
}

/// The `dir` line of `ls --json` and `clean --json`: the runtime directory.
fn dir_line(listing: &Listing) -> Line {
    event("dir")
        .field("dir", &listing.dir)
        .field("dir_source", listing.dir_source.to_ascii_lowercase())
        .field("dir_exists", listing.dir_exists)
}

fn main() -> ExitCode {
    syncomm_cli::run("syncomm", || {
        let args = syncomm_cli::parse::<Args>()?;
        match args.cmd {
            Cmd::Ls { name, json } => {
                output::enable(json);
                let listing = scan(&scope(name));
                if json {
                    emit(dir_line(&listing))?;
                    for o in &listing.objects {
                        emit(event("object").fields(o))?;
                    }
                } else {
                    println!("{}", listing.header());
                    if listing.objects.is_empty() {
                        println!("(nothing)");
                    }
                    for o in &listing.objects {
                        println!("{}", o.line());
                    }
                }
                Ok(0)
            }
            Cmd::Clean {
                dry_run,
                name,
                json,
            } => {
                output::enable(json);
                let scope = scope(name);
                let listing = scan(&scope);
                if json {
                    emit(dir_line(&listing))?;
                } else {
                    println!("{}", listing.header());
                }
                let outcomes = syncomm_admin::clean::clean(&listing, dry_run);
                let mut failed = 0;
                for o in &outcomes {
                    if json {
                        emit(
                            event("removal")
                                .field("object", &o.object)
                                .field("removed", o.removed)
                                .field("dry_run", dry_run)
                                .field("error", &o.error),
                        )?;
                        failed += usize::from(o.error.is_some());
                        continue;
                    }
                    let what = format!(
                        "{} {} {} ({})",
                        o.object.state.as_str(),
                        o.object.kind.as_str(),
                        o.object.name,
                        o.object
                            .kernel
                            .clone()
                            .or_else(|| o.object.files.first().map(|f| f.display().to_string()))
                            .unwrap_or_default()
                    );
                    match &o.error {
                        Some(e) => {
                            failed += 1;
                            println!("not removed: {what}: {e}");
                        }
                        None if dry_run => println!("would remove: {what} — {}", o.object.why),
                        None => println!("removed: {what} — {}", o.object.why),
                    }
                }
                if dry_run {
                    return Ok(0);
                }
                // Clean afterwards? Look again (only stale and orphans count).
                let left = scan(&scope)
                    .objects
                    .into_iter()
                    .filter(|o| matches!(o.state, State::Stale | State::Orphan))
                    .count();
                if !json {
                    if outcomes.is_empty() {
                        println!("nothing to clean");
                    }
                    if left > 0 {
                        println!("{left} stale or orphaned object(s) remain");
                    }
                }
                if failed > 0 || left > 0 {
                    return Err(Fail::failed(format!(
                        "{} object(s) could not be removed",
                        failed.max(left)
                    ))
                    .into());
                }
                Ok(0)
            }
            Cmd::Man { dir, programs } => print_bytes(&man_pages_of(
                &programs_dir()?,
                &chosen(&programs),
                dir.as_deref(),
            )?),
            Cmd::Completions {
                shell,
                dir,
                programs,
            } => print_bytes(&completions_of(
                &programs_dir()?,
                &chosen(&programs),
                shell,
                dir.as_deref(),
            )?),
            Cmd::Top {
                interval,
                json,
                count,
                name,
            } => {
                output::enable(json);
                if interval.is_zero() {
                    return Err(Fail::usage("--interval must be above 0").into());
                }
                let shutdown = syncomm_common::shutdown::Shutdown::install()?;
                top::run(
                    &TopOptions {
                        scope: scope(name),
                        interval,
                        count,
                        json,
                    },
                    &shutdown,
                )?;
                Ok(0)
            }
        }
    })
}
