//! `monitor`: prints consistent snapshots of the shared board NAME, read
//! lock-free through its sequence counter; `--stop` ends the producer.
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use syncomm_board::monitor::{monitor, stop, MonitorEnd, MonitorOptions, Report};
use syncomm_cli::output::{self, emit, event};
use syncomm_cli::CommonArgs;
use syncomm_cli::Fail;
use syncomm_common::duration::parse_refresh;
use syncomm_common::parse_duration;

const EXAMPLES: &str = "
  producer --name demo --interval 100ms & monitor --name demo   # a snapshot every second
  monitor --name demo --once --json       # one snapshot as JSON (exit 1 if there is no board)
  monitor --name demo --stop              # clear `active`: the producer stops, every consumer wakes";

const EXIT_STATUS: &[&str] = &[
    "  0      the producer cleared `active`, or --once or --stop did its work",
    "  1      the producer died without clearing `active`, --timeout passed, or there is no board",
    "         (--once, --stop)",
    syncomm_cli::help::EXIT_USAGE,
    syncomm_cli::help::EXIT_SIGNAL,
];

#[derive(Parser)]
#[command(
    name = "monitor",
    version,
    about = "Print consistent snapshots of a shared-memory board without ever taking its lock",
    long_about = "Print consistent snapshots of a shared-memory board without ever taking its lock.

`syncomm ls` lists what is in the runtime directory, `syncomm clean` removes what is stale.",
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, syncomm_cli::help::ENV)
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Time between snapshots (at least 1ms).
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_refresh)]
    interval: Duration,
    /// Print one snapshot and exit (a missing board is an error).
    #[arg(long)]
    once: bool,
    /// Clear `active` (the producer stops and every consumer wakes), then exit.
    #[arg(long, conflicts_with = "once")]
    stop: bool,
    /// Give up after DUR.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// On a terminal: redraw one compact snapshot in place instead of
    /// printing a line per snapshot (elsewhere, lines as without it).
    #[arg(long, conflicts_with_all = ["once", "stop"])]
    watch: bool,
}

/// The snapshot on one line that fits `width` columns, for `--watch`: the
/// figures, then as many of the most recent values as fit, newest last.
fn compact(r: &Report, width: usize) -> String {
    let full = human(r);
    if full.chars().count() < width {
        return full;
    }
    let head = full.split("recent [").next().unwrap_or("").to_owned() + "recent […";
    let mut newest: Vec<String> = Vec::new();
    let mut used = head.chars().count() + 1;
    for v in r.snapshot.recent.iter().rev() {
        let item = v.to_string();
        if used + 2 + item.len() >= width {
            break;
        }
        used += 2 + item.len();
        newest.push(item);
    }
    newest.reverse();
    if newest.is_empty() {
        head + "]"
    } else {
        format!("{head}, {}]", newest.join(", "))
    }
}

fn human(r: &Report) -> String {
    let s = &r.snapshot;
    let rate = match r.values_per_s {
        None => "-".to_owned(),
        Some(v) => format!("{}/s", syncomm_cli::progress::human(v)),
    };
    format!(
        "total {}  rate {}  active {}  producer {}{}  repairs {}  recent {:?}",
        s.total,
        rate,
        if s.active { "yes" } else { "no" },
        s.producer_pid,
        if s.producer_alive || s.producer_pid == 0 {
            ""
        } else {
            " (gone)"
        },
        s.repairs,
        s.recent
    )
}

fn main() -> ExitCode {
    syncomm_cli::run("monitor", || {
        let a = syncomm_cli::parse::<Args>()?;
        output::enable(a.common.json);
        let name = a.common.name()?;
        let dir = syncomm_cli::run_dir()?;
        if a.stop {
            let pid = stop(&dir, &name)?;
            if a.common.json {
                emit(
                    event("stopped")
                        .field("name", name.as_str())
                        .field("producer_pid", pid),
                )?;
                return Ok(0);
            }
            writeln!(
                std::io::stdout().lock(),
                "cleared active on board {:?} (producer pid {pid})",
                name.as_str()
            )?;
            return Ok(0);
        }
        let shutdown = syncomm_common::shutdown::Shutdown::install()?;
        let opts = MonitorOptions {
            dir: dir.clone(),
            name,
            interval: a.interval,
            once: a.once,
            timeout: a.timeout,
        };
        let json = a.common.json;
        let watch = a.watch && !json && std::io::stdout().is_terminal();
        let end = monitor(
            &opts,
            &shutdown,
            |r| {
                let mut out = std::io::stdout().lock();
                if json {
                    emit(
                        event("snapshot")
                            .field("name", &r.name)
                            .field("values_per_s", r.values_per_s.map(|v| output::round(v, 1)))
                            .fields(&r.snapshot),
                    )
                } else if watch {
                    // Back to the line's start, erase it, draw the snapshot.
                    let (width, _) = syncomm_sys::tty::size(&out);
                    write!(out, "\r\x1b[K{}", compact(r, width))?;
                    out.flush()
                } else {
                    writeln!(out, "{}", human(r))
                }
            },
            |w| eprintln!("monitor: {w}"),
        );
        if watch {
            println!();
        }
        let end = end?;
        match end {
            MonitorEnd::Once | MonitorEnd::Inactive => Ok(0),
            MonitorEnd::ProducerDied(pid) => Err(Fail::failed(format!(
                "the producer (pid {pid}) died without clearing active; the next producer repairs and continues the board"
            ))
            .into()),
            MonitorEnd::TimedOut => Err(Fail::failed(format!(
                "timed out (board {:?}, runtime directory {})",
                a.common.name,
                dir.path().display()
            ))
            .into()),
            MonitorEnd::Interrupted => Ok(shutdown.exit_code()),
        }
    })
}
