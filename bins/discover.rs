//! `discover`: find the other processes of a group, then meet.
//!
//! Thin entry point: parse the arguments, call `syncomm_discover`, print the
//! outcome and map errors to exit codes (1 failed, 2 usage, 128+N stopped by
//! signal N after removing our entry).
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use syncomm_cli::CommonArgs;
use syncomm_cli::{output, Fail};
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::{parse_duration, Name};
use syncomm_discover::{MemberId, Options};

const EXAMPLES: &str = "
  discover --name demo --id alice --members 3 &   # alice waits for two more
  discover --name demo --id bob --members 3 &     # bob too
  discover --name demo --id carol --members 3     # then each prints: ID found: [alice, bob, carol]
  discover --list --name demo                     # who is registered now";

const EXIT_STATUS: &[&str] = &[
    "  0      the group met (--list: the members were listed)",
    "  1      --timeout passed, the id is held by a live process, or the group",
    "         waits for a different --members",
    syncomm_cli::help::EXIT_USAGE,
    "  128+N  stopped by signal N (the entry is removed first)",
];

/// Find the other processes of a group, then meet.
///
/// Leaves ID (with its pid and process start time) in the registry of NAME,
/// sleeps until N live members are present and every one of them has seen
/// the full group, prints `ID found: [all N ids, sorted]` and exits 0.
/// Members killed on the way are pruned; an id held by a live process is refused.
#[derive(Parser, Debug)]
#[command(
    name = "discover",
    version,
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, syncomm_cli::help::ENV),
    override_usage = "discover [--name <NAME>] --id <ID> --members <N> [--timeout <DUR>] [--json]\n       \
                      discover --list [--name <NAME>] [--json]"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Our id in the group: 1 to 64 of A-Z a-z 0-9 . _ -
    #[arg(
        long = "id",
        alias = "as",
        value_name = "ID",
        required_unless_present = "list"
    )]
    id: Option<String>,

    /// The number of members to wait for (1 to 1024)
    #[arg(long, value_name = "N", required_unless_present = "list")]
    members: Option<usize>,

    /// Give up after this long (250ms, 1.5s, 2m; a bare number is seconds): exit 1
    #[arg(long, value_name = "DUR")]
    timeout: Option<String>,

    /// Print the live members of NAME instead of joining
    #[arg(long, conflicts_with_all = ["id", "members", "timeout"])]
    list: bool,
}

fn main() -> ExitCode {
    syncomm_cli::run("discover", || {
        let args = syncomm_cli::parse::<Args>()?;
        output::enable(args.common.json);
        let name = args.common.name()?;
        if args.list {
            return list(&syncomm_cli::run_dir()?, &name, args.common.json);
        }
        let id = args.id.as_deref().unwrap_or_default();
        let id = MemberId::new(id).map_err(|e| Fail::usage(e.to_string()))?;
        let timeout: Option<Duration> = args
            .timeout
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| Fail::usage(format!("--timeout: {e}")))?;
        let opts = Options {
            name,
            id,
            members: args.members.unwrap_or_default(),
            timeout,
        };
        let dir = syncomm_cli::run_dir()?;
        let shutdown = Shutdown::install().context("installing signal handlers")?;
        if opts.members > 1 {
            let what = format!("{} members of group {:?}", opts.members, opts.name.as_str());
            syncomm_common::waitnote::waiting("discover", &what, dir.path());
        }
        let found = syncomm_discover::discover(&dir, &opts, &shutdown, &|notice| {
            eprintln!("discover: {notice}")
        })
        .map_err(|e| {
            let mut msg = e.to_string();
            if matches!(e, syncomm_discover::Error::Timeout { .. }) {
                msg = format!("{msg} (runtime directory {})", dir.path().display());
            }
            Fail::with_code(e.exit_code(), msg)
        })?;
        let group: Vec<&str> = found.group.iter().map(|i| i.as_str()).collect();
        if args.common.json {
            output::emit(
                output::event("found")
                    .field("id", found.id.as_str())
                    .field("found", &group),
            )?;
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{} found: [{}]", found.id, group.join(", "))?;
            out.flush()?;
        }
        // Only now close the watch: closing it can take a few ms.
        drop(found);
        Ok(0)
    })
}

fn list(dir: &RunDir, name: &Name, json: bool) -> anyhow::Result<u8> {
    let listing = syncomm_discover::list(dir, name).map_err(|e| Fail::failed(e.to_string()))?;
    if json {
        output::emit(
            output::event("group")
                .field("name", name.as_str())
                .field("members", listing.members)
                .field("present", listing.live.len())
                .field("closed", listing.closed),
        )?;
        for m in &listing.live {
            output::emit(
                output::event("member")
                    .field("id", &m.id)
                    .field("member_pid", m.pid)
                    .field("state", m.state),
            )?;
        }
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    if listing.live.is_empty() {
        writeln!(out, "{name}: no members")?;
    } else {
        let state = if listing.closed {
            "group complete, finishing"
        } else {
            "waiting for more"
        };
        writeln!(
            out,
            "{name}: {} of {} members present ({state})",
            listing.live.len(),
            listing.members
        )?;
        for m in &listing.live {
            writeln!(out, "{}\tpid {}\t{}", m.id, m.pid, m.state)?;
        }
    }
    out.flush()?;
    Ok(0)
}
