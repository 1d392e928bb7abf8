//! `monitor`: prints consistent snapshots of the shared board NAME, read
//! lock-free through its sequence counter; `--stop` ends the producer.
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use syncomm_board::monitor::{monitor, stop, MonitorEnd, MonitorOptions, Report};
use syncomm_cli::output::{self, emit, event};
use syncomm_cli::CommonArgs;
use syncomm_cli::Fail;
use syncomm_common::parse_duration;

#[derive(Parser)]
#[command(
    name = "monitor",
    version,
    about = "Print consistent snapshots of a shared-memory board without ever taking its lock",
    after_help = "Example:\n  monitor --name demo --interval 500ms\n  monitor --name demo --once --json\n  monitor --name demo --stop      # clears `active`: the producer stops\n\n\
Exits 0 when the producer clears `active`, 1 if it dies without doing so.\n\nRuntime directory: $SYNCOMM_DIR, else $XDG_RUNTIME_DIR/syncomm, else\n/tmp/syncomm-UID; programs that should meet must use the same one.\n`syncomm ls` lists what is in it, `syncomm clean` removes what is stale."
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Time between snapshots.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
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
}

fn human(r: &Report) -> String {
    let s = &r.snapshot;
    let rate = match r.values_per_s {
        None => "-".to_owned(),
        Some(v) if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Some(v) if v >= 1e3 => format!("{:.1} k/s", v / 1e3),
        Some(v) => format!("{v:.0}/s"),
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
        let end = monitor(
            &opts,
            &shutdown,
            |r| {
                if json {
                    emit(
                        event("snapshot")
                            .field("name", &r.name)
                            .field("values_per_s", r.values_per_s.map(|v| output::round(v, 1)))
                            .fields(&r.snapshot),
                    )
                } else {
                    writeln!(std::io::stdout().lock(), "{}", human(r))
                }
            },
            |w| eprintln!("monitor: {w}"),
        )?;
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
