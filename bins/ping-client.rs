//! `ping-client`: pings a `ping-server` like ping(8), or floods it.
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use syncomm_cli::progress::ProgressLine;
use syncomm_cli::Fail;
use syncomm_common::duration::{self, MAX_DURATION};
use syncomm_common::shutdown::Shutdown;
use syncomm_common::{parse_duration, Name};
use syncomm_ping::client::{ping, PingConfig};
use syncomm_ping::flood::{flood, FloodConfig, Limit};
use syncomm_ping::protocol::MAX_PAYLOAD;
use syncomm_ping::{raise_nofile_limit, Endpoint, DEFAULT_TCP};

const EXAMPLES: &str = "
  ping-client -c 3                                 # three pings to 127.0.0.1:7878
  ping-client --local demo -c 5 -i 200ms -s 32     # five pings with 32 bytes each, local socket \"demo\"
  ping-client --flood --clients 32 --duration 5s   # 32 connections as fast as they can, for 5 s
  ping-client --flood --reconnect -c 10000         # 10000 requests, a new connection for each
  ping-client -q -c 100 -i 0                       # only the first line and the statistics";

const EXIT_STATUS: &[&str] = &[
    "  0      every ping was answered (Ctrl-C ends the run with its summary, like ping(8))",
    "  1      some pings were lost, or there was no reply at all",
    syncomm_cli::help::EXIT_USAGE,
];

const ENVIRONMENT: &[&str] = &[
    "  SYNCOMM_DIR  the runtime directory, home of the local sockets (--local)",
    "               [default: $XDG_RUNTIME_DIR/syncomm, else /tmp/syncomm-$UID]",
    syncomm_cli::help::ENV_RUST_LOG,
];

/// Ping a ping-server like ping(8): one line per reply, then a summary.
///
/// With --flood, --clients connections ping as fast as they can (for
/// --duration, or until -c requests in all) and one report gives requests/s
/// and latency percentiles.
///
/// While it pings, SIGQUIT (Ctrl-\ on a terminal) prints the statistics so
/// far on stderr and the pings go on, as in ping(8).
#[derive(Parser, Debug)]
#[command(
    name = "ping-client",
    version,
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, ENVIRONMENT)
)]
struct Args {
    /// The server's TCP address [default: 127.0.0.1:7878].
    #[arg(long, value_name = "ADDR", conflicts_with = "local")]
    tcp: Option<String>,
    /// The server's local socket NAME (in the runtime directory).
    #[arg(long, value_name = "NAME", visible_alias = "name")]
    local: Option<Name>,
    /// Stop after N pings (flood: N requests in all) [default: until Ctrl-C].
    #[arg(short = 'c', long = "count", value_name = "N")]
    count: Option<u64>,
    /// Time between pings.
    #[arg(short = 'i', long = "interval", value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Payload bytes per ping (`ping PAYLOAD`).
    #[arg(short = 's', long = "size", value_name = "BYTES", default_value_t = 0)]
    payload: usize,
    /// How long to wait for each answer, connecting included (0 or inf: no limit).
    #[arg(short = 'W', long = "timeout", value_name = "DUR", default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    /// Load mode: --clients connections ping as fast as they can; prints requests/s and percentiles.
    #[arg(long)]
    flood: bool,
    /// Flood: connections pinging at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    clients: usize,
    /// Flood: how long [default: 5s unless -c is given].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, conflicts_with = "count")]
    duration: Option<Duration>,
    /// Flood: a new connection for every ping.
    #[arg(long)]
    reconnect: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Quiet: only the first line and the statistics at the end.
    #[arg(short = 'q', long)]
    quiet: bool,
}

fn main() -> ExitCode {
    syncomm_cli::run("ping-client", || {
        let mut args = syncomm_cli::parse::<Args>()?;
        // -W 0, like inf, is no limit: wait for each answer as long as it takes.
        args.timeout = duration::limit(Some(args.timeout)).unwrap_or(MAX_DURATION);
        syncomm_cli::output::enable(args.json);
        if args.count == Some(0) {
            return Err(Fail::usage("-c COUNT must be at least 1").into());
        }
        if args.payload > MAX_PAYLOAD {
            return Err(Fail::usage(format!(
                "-s {} is over the largest payload, {MAX_PAYLOAD}",
                args.payload
            ))
            .into());
        }
        if args.duration.is_some_and(|d| d.is_zero()) {
            return Err(Fail::usage(
                "--duration 0: a flood needs a duration above zero (inf: until Ctrl-C)",
            )
            .into());
        }
        if !args.flood && (args.duration.is_some() || args.reconnect) {
            return Err(Fail::usage("--duration and --reconnect belong to --flood").into());
        }
        if args.flood && args.clients == 0 {
            return Err(Fail::usage("--clients must be at least 1").into());
        }
        let endpoint = match (&args.local, &args.tcp) {
            (Some(name), _) => Endpoint::Local(syncomm_cli::run_dir()?, name.clone()),
            (None, addr) => {
                let addr = addr.as_deref().unwrap_or(DEFAULT_TCP);
                Endpoint::tcp(addr).map_err(|e| {
                    Fail::usage(format!(
                        "invalid --tcp {addr:?}: {e} (expected HOST:PORT such as 127.0.0.1:7878)"
                    ))
                })?
            }
        };
        let shutdown = Shutdown::install().context("installing signal handlers")?;
        if args.flood {
            let _ = raise_nofile_limit();
            let limit = match (args.count, args.duration) {
                (Some(n), _) => Limit::Count(n),
                (None, d) => Limit::Duration(d.unwrap_or(Duration::from_secs(5))),
            };
            let cfg = FloodConfig {
                endpoint: endpoint.clone(),
                clients: args.clients,
                limit,
                reconnect: args.reconnect,
                payload: args.payload,
                progress: syncomm_cli::progress::counter(),
            };
            let mut out = std::io::stdout().lock();
            if !args.json {
                let how = if args.reconnect {
                    "a new connection per ping"
                } else {
                    "one connection each"
                };
                let until = match limit {
                    Limit::Count(n) => format!("{n} requests"),
                    Limit::Duration(d) => syncomm_common::duration::format_duration(d),
                };
                writeln!(
                    out,
                    "FLOOD {endpoint}: {} clients, {how}, {until}",
                    args.clients
                )?;
                out.flush()?;
            }
            // On a terminal: a line counting the answers (on stderr).
            let total = match limit {
                Limit::Count(n) => Some(n),
                Limit::Duration(_) => None,
            };
            let progress = cfg
                .progress
                .clone()
                .map(|n| ProgressLine::start("ping-client", "requests", total, n));
            let report = flood(&cfg, &shutdown);
            drop(progress);
            if args.json {
                syncomm_cli::output::write_line(&mut out, report.json())?;
            } else {
                for line in report.lines() {
                    writeln!(out, "{line}")?;
                }
            }
            out.flush()?;
            if report.ok == 0 {
                let why = report
                    .first_error
                    .unwrap_or_else(|| "no request completed".into());
                return Err(Fail::failed(format!("no reply from {endpoint}: {why}")).into());
            }
            return Ok(if report.errors == 0 { 0 } else { 1 });
        }
        let cfg = PingConfig {
            endpoint: endpoint.clone(),
            count: args.count,
            interval: args.interval,
            payload: args.payload,
            timeout: args.timeout,
            json: args.json,
            quiet: args.quiet,
            info: Some(syncomm_common::shutdown::info_requests()?),
        };
        let mut out = std::io::stdout().lock();
        let summary = ping(&cfg, &shutdown, &mut out)?;
        if summary.received == summary.sent {
            Ok(0)
        } else if summary.received == 0 {
            let why = summary.last_error.unwrap_or_default();
            Err(Fail::failed(format!("no reply from {endpoint}: {why}")).into())
        } else {
            Ok(1)
        }
    })
}
