//! `syncomm-bench`: the benchmark suite. Measures the raw floors, every
//! scenario's figures (in trials alternating with their floors, in named CPU
//! configurations), the peers (`--peers`) and the seed's Python, prints one
//! table per configuration, writes `results.json` and `ratios.svg`, and checks
//! the ratios against a baseline (`--check`). The work is in the
//! `syncomm-benchsuite` crate.
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use syncomm_benchsuite::cpu::CpuConfig;
use syncomm_benchsuite::{baseline, curves, floor, report, suite, Ctx};
use syncomm_cli::Fail;

const EXAMPLES: &str = "
  syncomm-bench --quick                         # everything, one-cpu, within a few minutes
  syncomm-bench --config all                    # one-cpu, two-cpus and unpinned tables
  syncomm-bench --only ping --only worker       # the floors, then these two scenarios
  syncomm-bench --markdown > table.md           # the table as Markdown
  syncomm-bench --check bench/baseline.json     # exit 1 if a ratio is more than 25 % worse
  syncomm-bench --save-baseline bench/baseline.json   # this run's ratios become the baseline
  syncomm-bench --curves-only --curves docs     # the load curves alone, SVGs into docs/";

const EXIT_STATUS: &[&str] = &[
    "  0      every measurement ran (with --check: every ratio within the tolerance)",
    "  1      a measurement failed, or --check found a ratio worse than the tolerance",
    syncomm_cli::help::EXIT_USAGE,
];

const ENVIRONMENT: &[&str] = &[
    "  SYNCOMM_DIR  not used: each measurement runs its programs in a scratch runtime directory",
    syncomm_cli::help::ENV_RUST_LOG,
];

/// Measure every syncomm mechanism beside the raw-syscall floor and the seed's Python.
///
/// `./launch bench` builds in release mode first; `./launch bench --peers` also
/// builds and runs bench/peers (iceoryx2, ipc-channel). Scenarios for --only:
/// floors, notify, pipeline, worker, ping, scribe, gate, guard, discover (also
/// data-sharing = notify, shared-file = scribe, limited-access = gate).
#[derive(Parser, Debug)]
#[command(
    name = "syncomm-bench",
    version,
    after_help = syncomm_cli::help::after_help(EXAMPLES, EXIT_STATUS, ENVIRONMENT)
)]
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
    /// CPU configuration(s): one-cpu, two-cpus, unpinned, or all (repeatable,
    /// comma-separated).
    #[arg(
        long,
        value_name = "CONFIG",
        value_delimiter = ',',
        default_value = "one-cpu"
    )]
    config: Vec<String>,
    /// Also measure the peers (iceoryx2, ipc-channel) with this syncomm-peers
    /// binary [default: bench/peers/target/release/syncomm-peers].
    #[arg(long, value_name = "EXE", num_args = 0..=1)]
    peers: Option<Option<PathBuf>>,
    /// Compare each figure's ratio to its floor with this baseline; exit 1
    /// naming every figure more than the tolerance worse.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
    /// Tolerance of --check, in percent [default: the baseline's own, 25].
    #[arg(long, value_name = "PCT")]
    tolerance: Option<f64>,
    /// Write this run's ratios as the baseline (the section of its mode).
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "bench/baseline.json")]
    save_baseline: Option<PathBuf>,
    /// Also measure the load curves and write them as curve-*.svg into DIR
    /// [default: docs].
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "docs")]
    curves: Option<PathBuf>,
    /// Only the curves (no table); implies --curves.
    #[arg(long)]
    curves_only: bool,
    /// The configuration the curves are measured in.
    #[arg(long, value_name = "CONFIG", default_value = "unpinned")]
    curves_config: String,
    /// Only these curves: worker, ping, notify, discover, pipeline (comma-separated).
    #[arg(long, value_name = "CURVE", value_delimiter = ',')]
    curve: Vec<String>,
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

/// `--config` values: names, or `all`.
fn configs(names: &[String]) -> Result<Vec<CpuConfig>, String> {
    let mut out = Vec::new();
    for n in names {
        let add: Vec<CpuConfig> = if n == "all" {
            CpuConfig::ALL.to_vec()
        } else {
            vec![CpuConfig::parse(n).ok_or_else(|| {
                format!("unknown configuration {n:?}; one of: one-cpu, two-cpus, unpinned, all")
            })?]
        };
        for c in add {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// The peers' binary: the one given, or bench/peers' release build.
fn find_peers(given: Option<PathBuf>, bin_dir: &Path) -> Result<PathBuf, String> {
    if let Some(given) = given {
        return Ok(given);
    }
    let rel = "bench/peers/target/release/syncomm-peers";
    [
        PathBuf::from(rel),
        bin_dir.join("../..").join(rel),
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| {
        format!("{rel} not found: build it with ./launch bench --peers (or cargo build --release --manifest-path bench/peers/Cargo.toml)")
    })
}

fn main() -> ExitCode {
    syncomm_cli::run("syncomm-bench", || {
        let args = syncomm_cli::parse::<Args>()?;
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
        let peers_exe = match args.peers {
            Some(p) => Some(find_peers(p, &bin_dir).map_err(Fail::usage)?),
            None => None,
        };
        let opts = suite::Options {
            quick: args.quick,
            only: args.only,
            python: !args.no_python,
            seed_script: args.seed.or_else(|| find_seed(&bin_dir)),
            bin_dir: bin_dir.clone(),
            work_dir: scratch.path().to_path_buf(),
            configs: configs(&args.config).map_err(Fail::usage)?,
            peers_exe,
        };
        drop(exe);
        opts.check_only().map_err(Fail::usage)?;
        let out_dir = args.out.unwrap_or_else(|| {
            bin_dir
                .parent()
                .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
                .join("bench")
        });
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;

        if args.curves_only || args.curves.is_some() {
            let config = CpuConfig::parse(&args.curves_config).ok_or_else(|| {
                Fail::usage(format!("unknown configuration {:?}", args.curves_config))
            })?;
            let dir = args.curves.clone().unwrap_or_else(|| PathBuf::from("docs"));
            // A runtime directory of our own (mode 0700): the programs refuse
            // one that others may write to.
            let work = scratch.path().join("curves");
            std::fs::DirBuilder::new().mode(0o700).create(&work)?;
            let ctx = Ctx::new(args.quick, &bin_dir, &work).with_config(config);
            let machine = report::Machine::detect();
            let result = std::thread::scope(|s| {
                s.spawn(|| {
                    ctx.pin_main_thread()?;
                    Ok::<_, anyhow::Error>(curves::run(&ctx, &args.curve, &mut |what| {
                        let _ = writeln!(std::io::stderr(), "syncomm-bench: {what}");
                    }))
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the curves panicked"))?
            })?;
            let note = format!(
                "{} run, {}: {}; {}",
                if args.quick { "quick" } else { "full" },
                config.name(),
                config.describe(&ctx.cpus),
                machine.summary()
            );
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(curves::render(&result).as_bytes())?;
            stdout.flush()?;
            // A curve with holes is not written over the committed one.
            let failed: usize = result.iter().map(|c| c.failed.len()).sum();
            if failed > 0 {
                return Err(Fail::failed(format!(
                    "{failed} curve points could not be measured (listed above); no SVG written"
                ))
                .into());
            }
            let paths = curves::write_svgs(&result, &dir, &note)?;
            let json = curves::to_json(&result, config.name());
            std::fs::write(
                out_dir.join("curves.json"),
                serde_json::to_string_pretty(&json)? + "\n",
            )?;
            let _ = writeln!(
                std::io::stderr(),
                "syncomm-bench: wrote {} and {}",
                paths.join(", "),
                out_dir.join("curves.json").display()
            );
            if args.curves_only {
                return Ok(0);
            }
        }

        // Each step on one line redrawn in place on a terminal; only what
        // could not be measured is printed otherwise.
        let mut status = syncomm_cli::progress::StatusLine::stderr();
        let report = suite::run(&opts, &mut |what| {
            if what.contains("not measured") {
                status.note(&format!("syncomm-bench: {what}"));
            } else {
                status.step(&format!("syncomm-bench: {what}"));
            }
        });
        status.clear();

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
        if let Some(path) = &args.save_baseline {
            let n = baseline::save(&report, path)?;
            let _ = writeln!(
                std::io::stderr(),
                "syncomm-bench: saved {n} ratios to {}",
                path.display()
            );
        }
        if let Some(path) = &args.check {
            let c = baseline::check(&report, path, args.tolerance)?;
            stdout.write_all(format!("\n{}", c.render()).as_bytes())?;
            stdout.flush()?;
            if !c.passed() {
                return Ok(1);
            }
        }
        Ok(0)
    })
}
