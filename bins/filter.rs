//! `filter`: pipes & filters. One stage runs in this process; two or more run
//! as a chain of child processes joined by `pipe(2)` (see `syncomm_pipeline::chain`).
use std::process::ExitCode;

use clap::Parser;
use syncomm_cli::{output, Fail};
use syncomm_common::shutdown::Shutdown;
use syncomm_pipeline::{chain, Report, StageSpec, LIST};

const PROGRAM: &str = "filter";

/// Apply stages to every line of stdin; two or more stages run as a chain of
/// processes joined by pipes.
#[derive(Parser, Debug)]
#[command(
    name = PROGRAM,
    version,
    after_help = "Examples:\n  seq 1 5 | filter 'add 1' 'mul 2' neg     # -4 -6 -8 -10 -12, three processes\n  seq 1 5 | filter square | sort -rn        # one stage composes like any filter\n  yes hello | filter upper 'delay 200ms'    # watch records move\n  filter --list                             # every stage\n\nExit status: 0 when every stage succeeded (a reader leaving early, as in\n`| head -1`, counts as success), 1 when a stage failed or was killed, 2 for\na usage error, 128+N when stopped by signal N."
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
