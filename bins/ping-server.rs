//! `ping-server`: answers `ping` with `pong` over TCP and a local socket.
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use syncomm_cli::{output, Fail};
use syncomm_common::logsink::{json_note, text_note, LogSink, NoteFn, DEFAULT_FLUSH_LIMIT};
use syncomm_common::shutdown::Shutdown;
use syncomm_common::status;
use syncomm_common::{parse_duration, Name};
use syncomm_ping::server::{Server, ServerConfig, LOG_BACKLOG};
use syncomm_ping::{raise_nofile_limit, Endpoint, DEFAULT_TCP};

const EXAMPLES: &str = "
  ping-server                                   # serve 127.0.0.1:7878 until Ctrl-C
  ping-server --tcp 127.0.0.1:0 --local demo    # a free port, and the local socket \"demo\"
  ping-server --quiet & sleep 1; ping-client -c 3   # three pings answered";

const EXIT_STATUS: &[&str] = &[
    "  0      stopped by SIGINT/SIGTERM after closing its connections",
    "  1      failure: the address is in use, the local socket cannot be made, ...",
    syncomm_cli::help::EXIT_USAGE,
];

const ENVIRONMENT: &[&str] = &[
    "  SYNCOMM_DIR  the runtime directory, home of the local socket (--local) and the status record",
    "               [default: $XDG_RUNTIME_DIR/syncomm, else /tmp/syncomm-$UID]",
    syncomm_cli::help::ENV_RUST_LOG,
];

/// Answer `ping` with `pong`, one line per request, over TCP and a local socket.
///
/// Requests: `ping` -> `pong`, `ping PAYLOAD` -> `pong PAYLOAD`; lines up to 64 KiB.
/// By hand: `echo ping | nc 127.0.0.1 7878` prints `pong`.
/// `syncomm ls` lists the servers running, `syncomm top` watches them.
#[derive(Parser, Debug)]
#[command(
    name = "ping-server",
    version,
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, ENVIRONMENT)
)]
struct Args {
    /// TCP address to serve; port 0 picks a free one (printed as `listening on ADDR`).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_TCP)]
    tcp: String,
    /// Serve no TCP at all (needs --local).
    #[arg(long, conflicts_with = "tcp")]
    no_tcp: bool,
    /// Also serve the local socket NAME in the runtime directory.
    #[arg(long, value_name = "NAME", visible_alias = "name")]
    local: Option<Name>,
    /// Most connections served at once; more get `error: server busy`
    /// [default: 4096, or what the open-file limit allows].
    #[arg(long, value_name = "N")]
    max_conns: Option<usize>,
    /// Drop a connection that completes no request for this long (0: never).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Event loops (threads) sharing the work [default: one per CPU].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// One JSON object per line: a `listening` event, then one per logged event.
    #[arg(long)]
    json: bool,
    /// Do not log each request.
    #[arg(short, long)]
    quiet: bool,
}

/// Connections served at once unless `--max-conns` says otherwise.
const DEFAULT_MAX_CONNS: usize = 4096;

fn main() -> ExitCode {
    syncomm_cli::run("ping-server", || {
        let args = syncomm_cli::parse::<Args>()?;
        output::enable(args.json);
        if args.threads == Some(0) {
            return Err(Fail::usage("--threads must be at least 1").into());
        }
        if args.max_conns == Some(0) {
            return Err(Fail::usage("--max-conns must be at least 1").into());
        }
        if args.no_tcp && args.local.is_none() {
            return Err(Fail::usage("--no-tcp needs --local NAME (nothing to serve)").into());
        }
        let tcp = if args.no_tcp {
            None
        } else {
            match Endpoint::tcp(&args.tcp) {
                Ok(Endpoint::Tcp(a)) => Some(a),
                _ => {
                    return Err(Fail::usage(format!(
                        "invalid --tcp {:?}: expected HOST:PORT such as 127.0.0.1:7878",
                        args.tcp
                    ))
                    .into())
                }
            }
        };
        // A thousand clients need a thousand descriptors: take what the hard limit allows.
        let mut max_conns = args.max_conns.unwrap_or(DEFAULT_MAX_CONNS);
        match raise_nofile_limit() {
            Ok(limit) => {
                let room = (limit as usize).saturating_sub(64).max(1);
                if max_conns > room && args.max_conns.is_some() {
                    tracing::warn!(
                        "--max-conns {max_conns} lowered to {room} (open-file limit {limit})"
                    );
                }
                max_conns = max_conns.min(room);
            }
            Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
        }
        let local = match &args.local {
            Some(name) => Some((syncomm_cli::run_dir()?, name.clone())),
            None => None,
        };
        let shutdown = Shutdown::install().context("installing signal handlers")?;
        let server = Server::bind(ServerConfig {
            tcp,
            local,
            max_conns,
            idle_timeout: (!args.idle_timeout.is_zero()).then_some(args.idle_timeout),
            json_log: args.json,
            threads: args
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        })?;
        // All output goes through the log sink: a stalled or closed stdout
        // costs log lines (dropped and counted), never service or shutdown.
        let sink = LogSink::start(
            std::io::stdout(),
            LOG_BACKLOG,
            if args.json {
                Box::new(json_note("ping-server")) as NoteFn
            } else {
                Box::new(text_note)
            },
        );
        let mut out = sink.handle().writer();
        if let Some(addr) = server.tcp_addr() {
            match args.json {
                true => output::write_line(
                    &mut out,
                    output::event("listening")
                        .field("transport", "tcp")
                        .field("address", addr.to_string()),
                )?,
                false => writeln!(out, "listening on {addr}")?,
            }
        }
        if let Some(path) = server.local_path() {
            match args.json {
                true => output::write_line(
                    &mut out,
                    output::event("listening")
                        .field("transport", "local")
                        .field("address", path),
                )?,
                false => writeln!(out, "listening on local socket {}", path.display())?,
            }
        }
        let log = (!args.quiet).then(|| sink.handle());
        // The status record `syncomm ls` and `syncomm top` read; removed on exit.
        let _status = status_record(&server, &shutdown);
        let result = server.run(&shutdown, log);
        if let Ok(stats) = &result {
            if !args.quiet {
                let _ = match args.json {
                    true => output::write_line(
                        &mut out,
                        output::event("stopped")
                            .field("connections", stats.accepted)
                            .field("requests", stats.requests),
                    ),
                    false => writeln!(
                        out,
                        "Server stopped: {} connections, {} requests answered",
                        stats.accepted, stats.requests
                    ),
                };
            }
        }
        drop(out);
        sink.finish(DEFAULT_FLUSH_LIMIT, "ping-server");
        result?;
        Ok(0)
    })
}

/// Starts the status record `ping.NAME.status` (NAME: the local socket's
/// name, else `tcp-PORT`), rewritten about once a second.
fn status_record(server: &Server, shutdown: &Shutdown) -> Option<status::Publisher> {
    let tcp = server.tcp_addr();
    let local = server.local_path().map(|p| p.display().to_string());
    let name = match (&local, tcp) {
        (Some(p), _) => p
            .rsplit('/')
            .next()?
            .strip_prefix("ping.")?
            .strip_suffix(".sock")?
            .to_owned(),
        (None, Some(a)) => format!("tcp-{}", a.port()),
        (None, None) => return None,
    };
    let name = Name::new(&name).ok()?;
    // A TCP-only server needs no runtime directory to serve; its record is
    // published there only if the directory is usable.
    let path = status::path(&syncomm_cli::run_dir().ok()?, "ping", &name);
    let transport = match (tcp.is_some(), local.is_some()) {
        (true, true) => "tcp_and_local",
        (true, false) => "tcp",
        _ => "local",
    };
    let address: Vec<String> = tcp
        .map(|a| a.to_string())
        .into_iter()
        .chain(local)
        .collect();
    let live = server.live();
    Some(status::Publisher::start(
        "ping",
        &name,
        path,
        shutdown,
        move |m| {
            let r = Ordering::Relaxed;
            m.insert("transport".into(), transport.into());
            m.insert("address".into(), address.join(" ").into());
            m.insert("connections".into(), live.open.load(r).into());
            m.insert("accepted".into(), live.accepted.load(r).into());
            m.insert("pings".into(), live.requests.load(r).into());
        },
    ))
}
