//! `producer`: creates (or attaches to) the shared board NAME and appends
//! random values 0..=100 to it, waking the consumers whose value appeared.
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use syncomm_board::producer::{produce, ProducerOptions, StopReason};
use syncomm_cli::output::{self, emit, event};
use syncomm_cli::progress::ProgressLine;
use syncomm_cli::CommonArgs;
use syncomm_cli::Fail;
use syncomm_common::parse_duration;

const EXAMPLES: &str = "
  producer --count 1000 --interval 1ms --seed 7       # 1000 values on board \"default\", reproducible
  consumer --until 22 & producer --count 1000         # the consumer wakes when 22 appears
  producer --name demo --count 10 --keep              # leave board \"demo\" for later readers
  producer --name demo --fresh --interval 100ms       # replace board \"demo\"; until Ctrl-C";

const EXIT_STATUS: &[&str] = &[
    "  0      the count was reached, or SIGINT/SIGTERM or `monitor --stop` ended the run",
    "  1      failure: the board could not be created or attached",
    syncomm_cli::help::EXIT_USAGE,
];

#[derive(Parser)]
#[command(
    name = "producer",
    version,
    about = "Append random values 0..=100 to a shared-memory board and wake the consumers waiting for them",
    long_about = "Append random values 0..=100 to a shared-memory board and wake the consumers waiting for them.

On exit (count reached, SIGINT/SIGTERM, or `monitor --stop`) the producer clears
`active`, wakes every waiter and removes the board's name unless --keep.
A board left by a crashed producer is repaired and continued by the next one.
`syncomm ls` lists what is in the runtime directory, `syncomm clean` removes what is stale.",
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, syncomm_cli::help::ENV)
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Stop after N values (default: until stopped).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Pause between values (0: flat out).
    #[arg(long, value_name = "DUR", default_value = "0", value_parser = parse_duration)]
    interval: Duration,
    /// Seed for reproducible values.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Ring capacity (recent values kept) for a new board [default: 64].
    #[arg(long, value_name = "N")]
    capacity: Option<u32>,
    /// Replace an existing board (or anything else under its name) with a new one.
    #[arg(long)]
    fresh: bool,
    /// Leave the board in place at exit (for later consumers and monitors).
    #[arg(long)]
    keep: bool,
    /// TESTING KNOB: stall DUR in the middle of an append, holding the lock,
    /// so a test can kill -9 the producer at the worst moment.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, hide = true)]
    hold_lock: Option<Duration>,
    /// TESTING KNOB: stall after this many values (with --hold-lock).
    #[arg(long, value_name = "N", default_value_t = 0, hide = true)]
    hold_after: u64,
}

fn rate(per_s: f64) -> String {
    format!("{} values/s", syncomm_cli::progress::human(per_s))
}

fn main() -> ExitCode {
    syncomm_cli::run("producer", || {
        let a = syncomm_cli::parse::<Args>()?;
        output::enable(a.common.json);
        let name = a.common.name()?;
        let opts = ProducerOptions {
            dir: syncomm_cli::run_dir()?,
            name,
            count: a.count,
            interval: a.interval,
            seed: a.seed,
            capacity: a.capacity,
            fresh: a.fresh,
            keep: a.keep,
            hold_lock: a.hold_lock.map(|d| (a.hold_after, d)),
            progress: syncomm_cli::progress::counter(),
        };
        let shutdown = syncomm_common::shutdown::Shutdown::install()?;
        let json = a.common.json;
        // On a terminal: a line counting the values (on stderr); no counter otherwise.
        let progress = opts
            .progress
            .clone()
            .map(|n| ProgressLine::start("producer", "values", a.count, n));
        let report = produce(
            &opts,
            &shutdown,
            |board, origin, total| {
                let _ = if json {
                    emit(
                        event("ready")
                            .field("name", board.name().as_str())
                            .field("origin", origin)
                            .field("capacity", board.capacity())
                            .field("total", total)
                            .field("segment", board.os_id()),
                    )
                } else {
                    writeln!(
                        std::io::stdout().lock(),
                        "board {:?} {}: capacity {}, {total} values so far (segment {})",
                        board.name().as_str(),
                        match origin {
                            syncomm_board::Origin::Created => "created",
                            syncomm_board::Origin::Attached => "attached",
                        },
                        board.capacity(),
                        board.os_id()
                    )
                };
            },
            || {
                let _ = if json {
                    emit(event("holding_lock"))
                } else {
                    writeln!(
                        std::io::stdout().lock(),
                        "holding the board lock mid-append (testing knob)"
                    )
                };
            },
        )
        .map_err(|e| match e {
            syncomm_board::BoardError::Usage(m) => anyhow::Error::new(Fail::usage(m)),
            e => anyhow::Error::new(e),
        });
        drop(progress);
        let report = report?;
        if json {
            emit(
                event("done")
                    .field("name", &report.name)
                    .field("origin", report.origin)
                    .field("appended", report.appended)
                    .field("total", report.total)
                    .field("elapsed_ms", output::round(report.seconds * 1e3, 3))
                    .field("values_per_s", output::round(report.values_per_s, 1))
                    .field("reason", report.reason),
            )?;
        } else {
            writeln!(
                std::io::stdout().lock(),
                "appended {} values in {:.3}s ({}); board total {}; stopped: {}",
                report.appended,
                report.seconds,
                rate(report.values_per_s),
                report.total,
                match report.reason {
                    StopReason::Count => "count reached",
                    StopReason::Signal => "signal",
                    StopReason::Stopped => "monitor --stop",
                }
            )?;
        }
        // Stopping by signal is the normal end of an endless run.
        Ok(0)
    })
}
