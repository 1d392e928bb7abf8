//! `guard`: run a command under a deadline (a drop-in superset of `timeout(1)`),
//! or watch a running process; kill the whole tree the command started.
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use syncomm_cli::output;
use syncomm_guard::{
    die_by_signal, parse_limit, parse_signal, run_command, watch_pid, Ended, Ending, Options,
    Outcome, EXIT_FAILED,
};

const EXAMPLES: &str = "
  guard 5 sleep 10                 # TERM after 5 s: exit 124, like timeout(1)
  guard -k 2 -s INT 1m sleep 600   # INT after a minute, KILL 2 s later if still running
  guard -v 0.5 sleep 10            # says what it sent, then \"Process killed...\"
  sleep 60 & guard --pid $! 30s    # watch a running process; kill it after 30 s";

const EXIT_STATUS: &[&str] = &[
    "  0      the command succeeded in time (--pid: the process ended in time)",
    "  124    the deadline passed and the command was signalled (--preserve-status: its own status)",
    "  125    guard itself failed, or a usage error",
    "  126    the command was found but could not be run",
    "  127    the command was not found",
    "  137    the command had to be killed with KILL after the deadline (-k, -s KILL): 128+9",
    "  other  the command's own status; a command killed by a signal that was not guard's",
    "         makes guard die of the same signal",
];

const ENVIRONMENT: &[&str] = &[
    "  SYNCOMM_DIR  not used: guard watches processes, it meets nobody in the runtime directory",
];

/// A DUR: a number with an optional unit (s, m, h, d, ms); 0 or inf: no deadline.
#[derive(Debug, Clone, Copy)]
struct Limit(Option<Duration>);

fn limit(s: &str) -> Result<Limit, String> {
    parse_limit(s).map(Limit).map_err(|e| e.to_string())
}

fn pid(s: &str) -> Result<i32, String> {
    match s.trim().parse::<i32>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "invalid pid '{s}' (a process id, a positive number)"
        )),
    }
}

fn signal(s: &str) -> Result<i32, String> {
    parse_signal(s).map_err(|e| e.to_string())
}

/// Start COMMAND, and kill it (and everything it started) if still running after DUR.
///
/// A drop-in superset of timeout(1): the same options, arguments and exit
/// codes, plus --tree (the default: nothing COMMAND started survives it),
/// --pid (watch a process that is already running) and -v.
#[derive(Parser, Debug)]
#[command(
    name = "guard",
    version,
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, ENVIRONMENT),
    override_usage = "guard [OPTIONS] <DUR> <COMMAND> [ARG]...\n       guard [OPTIONS] --pid <PID> <DUR>"
)]
struct Cli {
    /// Signal to send at the deadline: a name like TERM or HUP, or a number.
    #[arg(short = 's', long = "signal", value_name = "SIGNAL", default_value = "TERM", value_parser = signal)]
    signal: i32,

    /// Also send KILL if still running this long after the first signal.
    #[arg(short = 'k', long = "kill-after", value_name = "DUR", value_parser = limit)]
    kill_after: Option<Limit>,

    /// Exit with the command's status even when it timed out.
    #[arg(long)]
    preserve_status: bool,

    /// Leave COMMAND in guard's process group so it can use the terminal;
    /// only COMMAND itself is signalled at the deadline.
    #[arg(long)]
    foreground: bool,

    /// Report every signal sent on stderr, then "Process killed..." or "Process finished...".
    #[arg(short, long)]
    verbose: bool,

    /// Kill everything COMMAND started (its group, and descendants that left
    /// it) when COMMAND ends or is killed (the default).
    #[arg(long, overrides_with = "no_tree")]
    tree: bool,

    /// Leave COMMAND's descendants alone, as timeout(1) does.
    #[arg(long, overrides_with = "tree")]
    no_tree: bool,

    /// At the end, one JSON line on stderr: how COMMAND ended, whether the
    /// deadline passed, the signals sent, the time taken (stdout is COMMAND's).
    #[arg(long)]
    json: bool,

    /// Watch this running process (not a child) instead of running COMMAND;
    /// exit 0 if it ends in time, 124 if it had to be signalled.
    #[arg(long, value_name = "PID", value_parser = pid, allow_hyphen_values = true, conflicts_with_all = ["command", "preserve_status", "foreground"])]
    pid: Option<i32>,

    /// Time allowed: a number with an optional unit (s, m, h, d, ms); 0 disables the deadline.
    #[arg(value_name = "DUR", value_parser = limit)]
    duration: Limit,

    /// The command to run, and its arguments.
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required_unless_present = "pid"
    )]
    command: Vec<OsString>,
}

fn main() -> ExitCode {
    syncomm_cli::generate::intercept::<Cli>();
    output::set_program("guard");
    // stdout is the command's: guard's JSON goes to stderr.
    output::to_stderr();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    output::enable(cli.json);
    let opts = Options {
        duration: cli.duration.0,
        signal: cli.signal,
        kill_after: cli.kill_after.and_then(|l| l.0),
        preserve_status: cli.preserve_status,
        foreground: cli.foreground,
        verbose: cli.verbose,
        tree: !cli.no_tree,
    };
    // Not syncomm_cli::run: guard logs nothing, and setting up the log
    // subscriber would be a measurable part of guard's own overhead (every
    // `guard 10 true` pays it). Errors are printed the same way.
    let outcome = match cli.pid {
        Some(pid) => watch_pid(nix::unistd::Pid::from_raw(pid), &opts),
        None => run_command(&cli.command, &opts),
    };
    match outcome {
        Ok(o) => {
            if cli.json {
                let command = (cli.pid.is_none()).then_some(&cli.command);
                let _ = output::emit(ended_line(&o, command));
            }
            match o.ending {
                Ending::Exit(code) => ExitCode::from(code),
                Ending::Raise(sig) => ExitCode::from(die_by_signal(sig)),
            }
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "guard: {e}");
            output::emit_error(&e.to_string(), e.exit_code(), &[]);
            ExitCode::from(e.exit_code())
        }
    }
}

/// The `ended` line of `--json` (see docs/JSON.md).
fn ended_line(o: &Outcome, command: Option<&Vec<OsString>>) -> output::Line {
    let command: Option<Vec<String>> =
        command.map(|c| c.iter().map(|a| a.to_string_lossy().into_owned()).collect());
    let (code, signal) = match o.status {
        Some(Ended::Exited(code)) => (Some(code), None),
        Some(Ended::Signaled { signal, .. }) => (None, Some(signal)),
        None => (None, None),
    };
    let exit_code = match o.ending {
        Ending::Exit(code) => i32::from(code),
        Ending::Raise(sig) => 128 + sig,
    };
    output::event("ended")
        .field("command", command)
        .field("command_pid", o.pid)
        .field("command_exit_code", code)
        .field("command_signal", signal)
        .field("timed_out", o.timed_out)
        .field("signals_sent", &o.signals_sent)
        .ms("elapsed_ms", o.elapsed)
        .field("exit_code", exit_code)
}

/// Whether `--json` is among guard's own options (before DURATION, or a
/// `--`): only read when the arguments did not parse.
fn asked_for_json() -> bool {
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--json") => return true,
            Some("--") => return false,
            Some("-s" | "--signal" | "-k" | "--kill-after" | "--pid") => {
                args.next();
            }
            Some(o) if o.starts_with('-') && o.len() > 1 => {}
            // DURATION: what follows is the command's.
            _ => return false,
        }
    }
    false
}

/// Clap's errors exit 125 here, as timeout(1)'s do; --help and --version exit 0.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    // Our own value parsers already wrote a whole sentence; use it as is.
    let message = match (e.kind(), std::error::Error::source(&e)) {
        (ErrorKind::ValueValidation, Some(why)) => why.to_string(),
        _ => {
            // Clap's text up to its usage block, joined onto one line.
            let text = e.to_string();
            let lines: Vec<&str> = text
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let joined = lines.join(" ");
            joined.strip_prefix("error: ").unwrap_or(&joined).to_owned()
        }
    };
    let message = format!("{message} (try 'guard --help')");
    let _ = writeln!(std::io::stderr(), "guard: {message}");
    output::enable(asked_for_json());
    output::emit_error(&message, EXIT_FAILED, &[]);
    ExitCode::from(EXIT_FAILED)
}
