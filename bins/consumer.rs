//! `consumer`: waits, blocked in the kernel, until a value has appeared on
//! the shared board NAME.
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use syncomm_board::consumer::{consume, ConsumerOptions, Outcome};
use syncomm_cli::output::{self, emit, event};
use syncomm_cli::CommonArgs;
use syncomm_cli::Fail;
use syncomm_common::duration::format_duration;
use syncomm_common::parse_duration;

const EXAMPLES: &str = "
  consumer --until 22 & producer --count 1000     # prints: Lucky number 22 found after K values: [...]
  consumer --name demo --until 7 --timeout 10s    # exit 1 unless a producer shows a 7 within 10 s
  consumer --json & producer --count 1000         # the outcome as one JSON object";

const EXIT_STATUS: &[&str] = &[
    "  0      the value appeared",
    "  1      the producer ended (or died) without it, or --timeout passed",
    syncomm_cli::help::EXIT_USAGE,
    syncomm_cli::help::EXIT_SIGNAL,
];

#[derive(Parser)]
#[command(
    name = "consumer",
    version,
    about = "Wait until a value has appeared on a shared-memory board (blocked in the kernel, not polling)",
    long_about = "Wait until a value has appeared on a shared-memory board (blocked in the kernel, not polling).

Started before the producer, it waits for the board to appear.
`syncomm ls` lists what is in the runtime directory, `syncomm clean` removes what is stale.",
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, syncomm_cli::help::ENV)
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The value to wait for (0..=100).
    #[arg(long, value_name = "N", default_value_t = 22,
          value_parser = clap::value_parser!(u8).range(0..=100))]
    until: u8,
    /// Give up after DUR (default: wait as long as a producer runs).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    timeout: Option<Duration>,
}

fn main() -> ExitCode {
    syncomm_cli::run("consumer", || {
        let a = syncomm_cli::parse::<Args>()?;
        output::enable(a.common.json);
        let name = a.common.name()?;
        let shutdown = syncomm_common::shutdown::Shutdown::install()?;
        let opts = ConsumerOptions {
            dir: syncomm_cli::run_dir()?,
            name,
            until: a.until,
            timeout: a.timeout,
        };
        let outcome = consume(&opts, &shutdown)?;
        match outcome {
            Outcome::Found {
                value,
                after,
                recent,
                wakeup_ns,
            } => {
                if a.common.json {
                    emit(
                        event("found")
                            .field("value", value)
                            .field("after", after)
                            .field("recent", &recent)
                            .field("wakeup_ns", wakeup_ns),
                    )?;
                } else {
                    writeln!(
                        std::io::stdout().lock(),
                        "Lucky number {value} found after {after} values: {recent:?}"
                    )?;
                }
                Ok(0)
            }
            Outcome::ProducerEnded { value, total, died } => Err(Fail::failed(match died {
                Some(pid) => {
                    format!("the producer (pid {pid}) died after {total} values without {value}")
                }
                None => format!("the producer ended after {total} values without {value}"),
            })
            .with_field("outcome", "producer_ended")
            .with_field("value", value)
            .with_field("total", total)
            .with_field("producer_pid", died)
            .into()),
            Outcome::TimedOut { value, total } => Err(Fail::failed(format!(
                "timed out after {} waiting for {value} ({})",
                format_duration(a.timeout.unwrap_or_default()),
                match total {
                    Some(t) => format!("{t} values so far"),
                    None => format!(
                        "no board named {:?} appeared in {}",
                        a.common.name,
                        opts.dir.path().display()
                    ),
                }
            ))
            .with_field("outcome", "timed_out")
            .with_field("value", value)
            .with_field("total", total)
            .into()),
            Outcome::LockHeld { value, producer } => Err(Fail::failed(format!(
                "timed out after {} waiting for {value}: the board's lock stayed held{}",
                format_duration(a.timeout.unwrap_or_default()),
                match producer {
                    Some(pid) =>
                        format!(" (producer pid {pid} is alive but not letting go: stopped?)"),
                    None => String::new(),
                }
            ))
            .with_field("outcome", "lock_held")
            .with_field("value", value)
            .with_field("producer_pid", producer)
            .into()),
            Outcome::Interrupted => {
                if a.common.json {
                    emit(
                        event("interrupted")
                            .field("value", a.until)
                            .field("signal", shutdown.signal())
                            .field("exit_code", shutdown.exit_code()),
                    )?;
                }
                Ok(shutdown.exit_code())
            }
        }
    })
}
