//! `syncomm-chaos`: every scenario at once under a seeded schedule of faults,
//! every invariant checked; a table of faults, operations, checks,
//! violations and leaks (see docs/CHAOS.md and the syncomm-chaos crate).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use syncomm_cli::output;

const EXAMPLES: &str = "
  syncomm-chaos --seconds 60              # a short run (its seed is printed)
  syncomm-chaos --seconds 1800 --json     # a soak, the table as JSON
  syncomm-chaos --seed 42 --only worker   # replay one scenario's schedule";

const EXIT_STATUS: &[&str] = &[
    "  0      no promise was broken and nothing was left behind",
    "  1      a promise was broken (a violation) or something was left behind (a leak)",
    "  2      usage error, or the run could not start",
];

const ENVIRONMENT: &[&str] = &[
    "  SYNCOMM_DIR          not used: each scenario runs in a scratch runtime directory of its own",
    "  SYNCOMM_CHAOS_DEBUG  set: print each fault and violation on stderr as it happens",
];

#[derive(Parser)]
#[command(
    name = "syncomm-chaos",
    version,
    about = "Run every scenario at once under random faults and check every promise",
    long_about = "Run every scenario at once under random faults and check every promise.

A seeded schedule of faults (kill -9, SIGSTOP, signals, garbage, slow clients)
hits every scenario at once; the table counts faults, operations, checks,
violations and leaks. docs/CHAOS.md describes the promises checked.",
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, ENVIRONMENT)
)]
struct Args {
    /// How long the scenarios run before they wind down and are checked.
    #[arg(long, value_name = "N", default_value_t = 60)]
    seconds: u64,
    /// The schedule's seed (default: from the clock; printed for replay).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Print the table as one JSON object.
    #[arg(long)]
    json: bool,
    /// Directory of the programs (default: beside this one).
    #[arg(long, value_name = "DIR")]
    bins: Option<PathBuf>,
    /// Only these scenarios (comma-separated: board, worker, scribe, gate,
    /// discover, ping, filter, guard).
    #[arg(long, value_name = "SCENARIO", value_delimiter = ',')]
    only: Vec<String>,
}

/// The one-line error, on stderr, and as an `error` line with `--json`.
fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("syncomm-chaos: {message}");
    output::emit_error(message, code, &[]);
    ExitCode::from(code)
}

fn main() -> ExitCode {
    output::set_program("syncomm-chaos");
    let a = match syncomm_cli::parse::<Args>() {
        Ok(a) => a,
        Err(f) => return fail(&f.message, f.code),
    };
    output::enable(a.json);
    let seed = a.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_secs() ^ u64::from(t.subsec_nanos()) ^ u64::from(std::process::id())
    });
    let bins = match a.bins.or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.to_owned()))
    }) {
        Some(b) => b,
        None => return fail("cannot find the programs' directory (use --bins DIR)", 2),
    };
    if !a.json {
        eprintln!(
            "syncomm-chaos: {} s, seed {seed}, programs in {}",
            a.seconds,
            bins.display()
        );
    }
    let cfg = syncomm_chaos::Config {
        seconds: a.seconds,
        seed,
        bins,
        only: a.only,
    };
    let report = match syncomm_chaos::run(&cfg) {
        Ok(r) => r,
        Err(e) => return fail(&e.to_string(), 2),
    };
    if a.json {
        if output::emit(output::event("report").fields(&report.json())).is_err() {
            return ExitCode::from(1);
        }
    } else {
        print!("{}", report.table());
    }
    if report.violations() + report.leaks() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
