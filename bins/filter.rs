//! `filter`: pipes & filters. One stage runs in this process; two or more run
//! as a chain of child processes joined by `pipe(2)` (see `syncomm_pipeline::chain`).
use std::process::ExitCode;

use clap::Parser;
use syncomm_cli::{output, Fail};
use syncomm_common::shutdown::Shutdown;
use syncomm_pipeline::{chain, Report, StageSpec, LIST};

const PROGRAM: &str = "filter";

const EXAMPLES: &str = "
  seq 1 5 | filter 'add 1' 'mul 2' neg     # -4 -6 -8 -10 -12, three processes
  seq 1 5 | filter square | sort -rn       # one stage composes like any filter
  yes hello | filter upper 'delay 200ms'   # watch records move; Ctrl-C to stop
  filter --list                            # every stage";

const EXIT_STATUS: &[&str] = &[
    "  0      every stage succeeded (a reader leaving early, as in `| head -1`, counts as success)",
    "  1      a stage failed or was killed",
    syncomm_cli::help::EXIT_USAGE,
    syncomm_cli::help::EXIT_SIGNAL,
];

const ENVIRONMENT: &[&str] = &[
    "  SYNCOMM_DIR  not used: the stages meet through pipes, not in the runtime directory",
    syncomm_cli::help::ENV_RUST_LOG,
];

/// Apply stages to every line of stdin; two or more stages run as a chain of
/// processes joined by pipes.
///
/// One stage runs in this process. Each stage of a chain is a child process
/// reading the one before it through pipe(2); a stage that fails ends the
/// chain, and every stage's complaint is printed as one line.
#[derive(Parser, Debug)]
#[command(
    name = PROGRAM,
    version,
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, ENVIRONMENT)
)]
struct Args {
    /// Stages, each one quoted spec such as 'add 1' (see --list).
    #[arg(value_name = "STAGE", required_unless_present = "list")]
    stages: Vec<String>,

    /// Print the stages, one line of help each.
    #[arg(long)]
    list: bool,

    /// Print a JSON summary (records in/out per stage) as the last line of stderr.
    #[arg(long)]
    json: bool,

    /// Internal: run one stage as a child of a chain, reporting on this descriptor.
    #[arg(long, hide = true, value_name = "FD")]
    report_fd: Option<i32>,
}

fn main() -> ExitCode {
    syncomm_cli::run(PROGRAM, || {
        // stdout carries the records: JSON goes to stderr.
        output::to_stderr();
        let args = syncomm_cli::parse::<Args>()?;
        output::enable(args.json);
        if args.list {
            for (spec, help) in LIST {
                println!("{spec:<12} {help}");
            }
            return Ok(0);
        }
        let specs = args
            .stages
            .iter()
            .map(|s| StageSpec::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Fail::usage(e.to_string()))?;

        if let Some(fd) = args.report_fd {
            // Hidden child mode: exactly one stage, the parent reports for us.
            let [spec] = specs.as_slice() else {
                return Err(Fail::usage("--report-fd takes exactly one stage").into());
            };
            return Ok(chain::run_child_owning_fd(spec, fd));
        }

        let report = if let [spec] = specs.as_slice() {
            Report::new(vec![chain::run_here(spec, 1)], None)
        } else {
            let shutdown = Shutdown::install()?;
            chain::run_chain(&specs, &shutdown)?
        };
        let complaints = report.complaints();
        for line in &complaints {
            eprintln!("{PROGRAM}: {line}");
        }
        if args.json {
            output::emit(output::event("report").fields(&report))?;
            if !complaints.is_empty() {
                output::emit_error(&complaints.join("; "), report.exit_code(), &[]);
            }
        }
        Ok(report.exit_code())
    })
}
