//! `syncomm-bench`: the benchmark suite. Measures the raw floors, every
//! scenario's figures and the seed's Python, prints one table, and writes
//! `results.json` and `ratios.svg`. The work is in the `syncomm-benchsuite` crate.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use syncomm_benchsuite::{floor, report, suite};
use syncomm_common::Fail;

const EXAMPLE: &str = "\
Examples:
  syncomm-bench --quick              # everything, within a minute
  syncomm-bench --only ping --only worker
  syncomm-bench --markdown > table.md
  ./launch bench                     # builds in release mode first

Scenarios for --only: floors, notify, pipeline, worker, ping, scribe, gate, guard, discover
(also data-sharing = notify, shared-file = scribe, limited-access = gate)";

/// Measure every syncomm mechanism beside the raw-syscall floor and the seed's Python.
#[derive(Parser, Debug)]
#[command(name = "syncomm-bench", version, about, after_help = EXAMPLE)]
struct Args {
    /// Fewer iterations: the whole suite within a minute.
    #[arg(long)]
    quick: bool,
    /// Run only this scenario (repeatable, or comma-separated); the floors always run.
    #[arg(long, value_name = "SCENARIO", value_delimiter = ',')]
    only: Vec<String>,
    /// Where to write results.json and ratios.svg [default: target/bench beside the binaries].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Do not run the seed's Python (bench/seed.py).
    #[arg(long)]
    no_python: bool,
    /// Print the table as Markdown, ready to paste into the README.
    #[arg(long)]
    markdown: bool,
    /// The seed's Python script [default: bench/seed.py of the repository].
    #[arg(long, value_name = "FILE")]
    seed: Option<PathBuf>,
    /// Internal: run as the peer process of a floor measurement.
    #[arg(long = "floor-peer", value_name = "KIND", hide = true)]
    floor_peer: Option<String>,
}

/// bench/seed.py: here, beside the binaries' repository, or where this was built.
fn find_seed(bin_dir: &Path) -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("bench/seed.py"),
        bin_dir.join("../../bench/seed.py"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/seed.py"),
    ];
    candidates.into_iter().find(|p| p.is_file())
}

fn main() -> ExitCode {
    syncomm_common::run("syncomm-bench", || {
        let args = Args::parse();
        if let Some(kind) = args.floor_peer {
            floor::peer_main(&kind)?;
            return Ok(0);
        }
        let exe = std::env::current_exe().context("finding this program")?;
        let bin_dir = exe
            .parent()
            .context("this program has no directory")?
            .to_path_buf();
        let scratch = suite::scratch_dir().context("creating a scratch directory")?;
        let opts = suite::Options {
            quick: args.quick,
            only: args.only,
            python: !args.no_python,
            peer_exe: exe,
            seed_script: args.seed.or_else(|| find_seed(&bin_dir)),
            bin_dir: bin_dir.clone(),
            work_dir: scratch.path().to_path_buf(),
        };
        opts.check_only().map_err(Fail::usage)?;
        let out_dir = args.out.unwrap_or_else(|| {
            bin_dir
                .parent()
                .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
                .join("bench")
        });
        // Modules that use the libraries directly meet nothing of the user's.
        std::env::set_var("SYNCOMM_DIR", scratch.path());

        let report = suite::run(&opts, &mut |what| {
            let _ = writeln!(std::io::stderr(), "syncomm-bench: {what}");
        });

        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        let json_path = out_dir.join("results.json");
        let svg_path = out_dir.join("ratios.svg");
        let json = serde_json::to_string_pretty(&report::to_json(&report))?;
        std::fs::write(&json_path, json + "\n")
            .with_context(|| format!("writing {}", json_path.display()))?;
        std::fs::write(&svg_path, report::svg(&report))
            .with_context(|| format!("writing {}", svg_path.display()))?;

        // A closed stdout (`| head`) is a broken pipe, which the runner treats as success.
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(report::render(&report, args.markdown).as_bytes())?;
        stdout.flush()?;
        let _ = writeln!(
            std::io::stderr(),
            "syncomm-bench: wrote {} and {}",
            json_path.display(),
            svg_path.display()
        );
        Ok(0)
    })
}
