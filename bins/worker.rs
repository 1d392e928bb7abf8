//! `worker`: a supervised pool of worker processes that any process can send
//! function calls to (see the syncomm-worker crate).
//!
//! `worker serve` runs the pool, `worker call` sends one call, `worker list`
//! asks the pool what it offers. `worker --stdio` is the child mode the server
//! starts for itself.
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use syncomm_cli::output;
use syncomm_cli::CommonArgs;
use syncomm_cli::Fail;
use syncomm_common::duration;
use syncomm_common::frame::DEFAULT_MAX_FRAME;
use syncomm_common::logsink::{json_note, text_note, LogSink, DEFAULT_FLUSH_LIMIT};
use syncomm_common::shutdown::Shutdown;
use syncomm_common::status;
use syncomm_common::{parse_duration, Name};
use syncomm_worker::server::{parse_size, LogFn, DEFAULT_MAX_CONNS};
use syncomm_worker::{Client, Config, Server, Value};

const EXAMPLES: &str = "
  worker serve --workers 2 & sleep 1    # a pool of 2 children serving the name \"default\"
  worker call add 2 3                   # prints 5
  worker call --json factor 360         # {\"program\":\"worker\",\"event\":\"result\",...,\"result\":[2,2,2,3,3,5]}
  worker call div 1 0                   # worker: div failed: division by zero (exit 1)
  worker list                           # the functions, with their signatures";

const SERVE_EXAMPLES: &str = "
  worker serve --name calc --workers 4 --task-timeout 5s & sleep 1   # a call over 5 s: its child is replaced
  worker serve --json --workers 2 & sleep 1                         # the log as JSON lines";

const SERVE_EXIT: &[&str] = &[
    "  0      stopped at SIGINT/SIGTERM after finishing the calls in flight",
    "  1      the pool could not start (another pool serves NAME, the runtime directory...)",
    syncomm_cli::help::EXIT_USAGE,
    "  128+N  a second signal N during the drain: stopped at once",
];

const CALL_EXAMPLES: &str = "
  worker call fib 90                          # prints 2880067194370816120
  worker call --json upper 'hello world'      # {\"program\":\"worker\",\"event\":\"result\",...,\"result\":\"HELLO WORLD\"}
  worker call --timeout 2s sleep_ms 5000      # worker: sleep_ms failed: no answer within 2s (exit 1)";

const CALL_EXIT: &[&str] = &[
    "  0      the call answered; its result is printed",
    "  1      the call failed (its error is printed), timed out, or no pool serves NAME",
    syncomm_cli::help::EXIT_USAGE,
];

const LIST_EXAMPLES: &str = "
  worker list                  # the functions, with their signatures
  worker list --name calc      # those of the pool serving calc";

const LIST_EXIT: &[&str] = &[
    "  0      the list printed",
    "  1      no pool serves NAME",
    syncomm_cli::help::EXIT_USAGE,
];

const EXIT_STATUS: &[&str] = &[
    "  0      the call answered, the list printed, or the pool stopped at SIGINT/SIGTERM",
    "  1      the call failed, no pool serves NAME, or the pool could not start",
    syncomm_cli::help::EXIT_USAGE,
];

#[derive(Parser)]
#[command(
    name = "worker",
    version,
    about = "Send function calls to a supervised pool of worker processes",
    long_about = "Send function calls to a supervised pool of worker processes.

`worker serve` runs the pool on a local socket in the runtime directory;
`worker call` and `worker list` talk to it. `syncomm ls` lists what is in the
runtime directory, `syncomm clean` removes what is stale.",
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, syncomm_cli::help::ENV)
)]
struct Cli {
    /// Child mode (started by `worker serve`): read request frames on stdin,
    /// write response frames on stdout.
    #[arg(long, hide = true)]
    stdio: bool,
    /// Largest request body the child accepts (child mode).
    #[arg(long, hide = true, default_value_t = DEFAULT_MAX_FRAME + 4096)]
    child_max_frame: u32,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the pool: listen on the local socket, supervise --workers children.
    #[command(after_help = syncomm_cli::help::after_help(SERVE_EXAMPLES, SERVE_EXIT, syncomm_cli::help::ENV))]
    Serve {
        #[command(flatten)]
        common: CommonArgs,
        /// Number of child processes (default: number of CPUs).
        #[arg(long, value_name = "N")]
        workers: Option<usize>,
        /// Kill and replace a child whose call runs longer than this (e.g. 5s; 0 or inf: no limit).
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        task_timeout: Option<Duration>,
        /// Largest request frame body accepted from a caller, in bytes.
        #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FRAME)]
        max_frame: u32,
        /// Bytes buffered in total (callers' frames, queued calls, unread
        /// answers) past which the server stops reading callers, e.g. 64MiB.
        #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "256MiB")]
        max_buffered: usize,
        /// Most connections served at once; more are told the server is busy
        /// [default: 4096, or what the open-file limit allows].
        #[arg(long, value_name = "N")]
        max_conns: Option<usize>,
        /// Close a connection with nothing in flight that completes no
        /// request for this long (0: never).
        #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "60s")]
        idle_timeout: Duration,
        /// At SIGINT/SIGTERM, wait at most this long for the calls running;
        /// then their callers get a "shutting down" error.
        #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "30s")]
        drain_timeout: Duration,
        /// The program to start as each child instead of this one (tests of
        /// a misbehaving child); it gets the same arguments.
        #[arg(long, hide = true)]
        child_program: Option<std::path::PathBuf>,
    },
    /// Send one call and print its result.
    #[command(after_help = syncomm_cli::help::after_help(CALL_EXAMPLES, CALL_EXIT, syncomm_cli::help::ENV))]
    Call {
        #[command(flatten)]
        common: CommonArgs,
        /// Give up when no answer comes within this long (0 or inf: no limit).
        #[arg(long, value_name = "DUR", value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// The function (see `worker list`).
        function: String,
        /// Its arguments; each is read as the function's parameter type.
        #[arg(value_name = "ARG", allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List the functions the pool offers, with their signatures.
    #[command(after_help = syncomm_cli::help::after_help(LIST_EXAMPLES, LIST_EXIT, syncomm_cli::help::ENV))]
    List {
        #[command(flatten)]
        common: CommonArgs,
    },
}

fn main() -> ExitCode {
    syncomm_cli::run("worker", || {
        let cli = syncomm_cli::parse::<Cli>()?;
        if cli.stdio {
            syncomm_worker::child::take_over_process_as_child(cli.child_max_frame)
                .context("worker --stdio")?;
            return Ok(0);
        }
        match cli.command {
            Some(Cmd::Serve {
                common,
                workers,
                task_timeout,
                max_frame,
                max_buffered,
                max_conns,
                idle_timeout,
                drain_timeout,
                child_program,
            }) => serve(Serve {
                json: common.json,
                name: common.name()?,
                workers,
                task_timeout,
                max_frame,
                max_buffered,
                max_conns,
                idle_timeout,
                drain_timeout,
                child_program,
            }),
            Some(Cmd::Call {
                common,
                timeout,
                function,
                args,
            }) => {
                output::enable(common.json);
                refuse_late_options(&function, &args)?;
                call(&common.name()?, timeout, common.json, &function, &args)
            }
            Some(Cmd::List { common }) => {
                output::enable(common.json);
                list(&common.name()?, common.json)
            }
            None => {
                Err(Fail::usage("a command is required: serve, call or list (see --help)").into())
            }
        }
    })
}

/// `worker call`'s own options written after FUNCTION would be taken as its
/// arguments (`worker call add 2 3 --name x` would call the default pool with
/// four words): refuse them with a hint instead. Negative numbers stay
/// arguments.
fn refuse_late_options(function: &str, args: &[String]) -> Result<(), Fail> {
    let late = args.iter().find(|a| {
        let opt = a.split('=').next().unwrap_or(a);
        matches!(opt, "--name" | "--timeout" | "--json" | "--help")
    });
    match late {
        Some(opt) => Err(Fail::usage(format!(
            "option {opt} after the function {function:?}: options go before it \
             (worker call [--name N] [--timeout DUR] [--json] FUNCTION ARG...)"
        ))),
        None => Ok(()),
    }
}

/// `worker serve`'s options.
struct Serve {
    json: bool,
    name: Name,
    workers: Option<usize>,
    task_timeout: Option<Duration>,
    max_frame: u32,
    max_buffered: usize,
    max_conns: Option<usize>,
    idle_timeout: Duration,
    drain_timeout: Duration,
    child_program: Option<std::path::PathBuf>,
}

fn serve(opts: Serve) -> anyhow::Result<u8> {
    output::enable(opts.json);
    let name = opts.name.clone();
    let name = &name;
    let workers = opts
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if workers == 0 || workers > 1024 {
        return Err(Fail::usage(format!("--workers {workers}: must be 1 to 1024")).into());
    }
    if opts.max_conns == Some(0) {
        return Err(Fail::usage("--max-conns must be at least 1").into());
    }
    if opts.max_buffered == 0 {
        return Err(Fail::usage("--max-buffered must be more than 0").into());
    }
    // Callers need descriptors: take what the hard limit allows, and serve
    // no more callers than the limit leaves room for beside the children.
    let mut max_conns = opts.max_conns.unwrap_or(DEFAULT_MAX_CONNS);
    match syncomm_worker::server::raise_nofile_limit() {
        Ok(limit) => {
            let room = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(syncomm_worker::server::reserved_fds(workers))
                .max(1);
            if max_conns > room && opts.max_conns.is_some() {
                tracing::warn!(
                    "--max-conns {max_conns} lowered to {room} (open-file limit {limit})"
                );
            }
            max_conns = max_conns.min(room);
        }
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let exe = match opts.child_program {
        Some(p) => p,
        None => std::env::current_exe().context("finding this program to start children")?,
    };
    let dir = syncomm_cli::run_dir().with_context(|| format!("serving {name}"))?;
    let mut cfg = Config::new(
        dir,
        name.clone(),
        workers,
        vec![
            exe.to_string_lossy().into_owned(),
            "--stdio".to_owned(),
            format!("--child-max-frame={}", opts.max_frame.saturating_add(4096)),
        ],
    );
    cfg.task_timeout = duration::limit(opts.task_timeout);
    cfg.max_frame = opts.max_frame;
    cfg.max_buffered = opts.max_buffered;
    cfg.max_conns = max_conns;
    cfg.idle_timeout = duration::limit(Some(opts.idle_timeout));
    cfg.drain_timeout = opts.drain_timeout;
    let shutdown = Shutdown::install().context("installing signal handlers")?;
    // The log goes through a sink that never blocks: a stalled or closed
    // stdout costs log lines (dropped and counted), never service or shutdown.
    let sink = if opts.json {
        LogSink::start(std::io::stdout(), SERVE_LOG_BACKLOG, json_note("worker"))
    } else {
        LogSink::start(std::io::stdout(), SERVE_LOG_BACKLOG, text_note)
    };
    let mut out = sink.handle().writer();
    let log: LogFn = if opts.json {
        Box::new(move |e| {
            let _ = output::write_line(&mut out, output::tagged(e));
        })
    } else {
        Box::new(move |e| {
            use std::io::Write;
            let _ = writeln!(out, "{e}");
        })
    };
    let status_path = status::path(&cfg.dir, "worker", name);
    let result = Server::start(cfg, log).and_then(|server| {
        // The status record `syncomm ls` and `syncomm top` read; removed on exit.
        let live = server.live();
        let _status = status::Publisher::start("worker", name, status_path, &shutdown, move |m| {
            let r = Ordering::Relaxed;
            m.insert("workers".into(), live.workers.load(r).into());
            m.insert("calls".into(), live.calls.load(r).into());
            m.insert("queue".into(), live.queue.load(r).into());
            m.insert("running".into(), live.running.load(r).into());
            m.insert("connections".into(), live.connections.load(r).into());
        });
        server.run(&shutdown)
    });
    sink.finish(DEFAULT_FLUSH_LIMIT, "worker");
    result.with_context(|| format!("serving {name}"))?;
    Ok(0)
}

/// Bytes of `worker serve` log that may wait for a slow reader before lines are dropped.
const SERVE_LOG_BACKLOG: usize = 64 * 1024;

fn connect(name: &Name, timeout: Option<Duration>) -> anyhow::Result<Client> {
    let dir = syncomm_cli::run_dir().context("connecting")?;
    let mut client = Client::connect(&dir, name).context("connecting")?;
    client.set_timeout(duration::limit(timeout))?;
    Ok(client)
}

fn call(
    name: &Name,
    timeout: Option<Duration>,
    json: bool,
    function: &str,
    words: &[String],
) -> anyhow::Result<u8> {
    let args = syncomm_worker::registry::parse_args(function, words);
    let json_args = || args.iter().map(to_json).collect::<Vec<_>>();
    let mut client = connect(name, timeout)?;
    let outcome = client
        .call(function, &args)
        .with_context(|| format!("{function} failed"))?;
    match outcome {
        Ok(v) => {
            if json {
                output::emit(
                    output::event("result")
                        .field("function", function)
                        .field("args", json_args())
                        .field("result", to_json(&v)),
                )?;
            } else {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{v}")?;
                out.flush()?;
            }
            Ok(0)
        }
        Err(e) => Err(Fail::failed(format!("{function} failed: {e}"))
            .with_field("function", function)
            .with_field("args", json_args())
            .with_field("error_kind", e.kind.as_str())
            .into()),
    }
}

fn list(name: &Name, json: bool) -> anyhow::Result<u8> {
    let mut client = connect(name, None)?;
    let outcome = client
        .call("functions", &[])
        .context("asking for the functions")?;
    let lines = match outcome {
        Ok(Value::List(items)) => items,
        Ok(other) => vec![other],
        Err(e) => return Err(Fail::failed(format!("asking for the functions: {e}")).into()),
    };
    if json {
        let functions: Vec<serde_json::Value> = syncomm_worker::registry::FUNCTIONS
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name,
                    "signature": f.signature(),
                    "about": f.about,
                })
            })
            .collect();
        // The pool's own list decides which functions are offered.
        let offered: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let functions: Vec<_> = functions
            .into_iter()
            .filter(|f| {
                let sig = f["signature"].as_str().unwrap_or_default();
                offered.iter().any(|l| l.starts_with(sig))
            })
            .collect();
        output::emit(output::event("functions").field("functions", functions))?;
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for line in lines {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    Ok(0)
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::UInt(u) => (*u).into(),
        Value::Text(t) => t.clone().into(),
        Value::List(items) => items.iter().map(to_json).collect::<Vec<_>>().into(),
    }
}
