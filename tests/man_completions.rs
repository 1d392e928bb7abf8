//! The manual pages and bash completions `syncomm man` and `syncomm
//! completions` make from every program's clap definition
//! (syncomm_cli::generate): every program has them, every page renders with
//! `man -l`, every completion script loads in bash and completes the
//! program's own options (and not its hidden ones).
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{run, text, Env};
use syncomm_cli::generate::PROGRAMS;

/// For each program: words typed so far (the last one being completed),
/// what the completion must offer, and what it must not (hidden options).
const COMPLETIONS: &[(&str, &[&str], &str, &str)] = &[
    ("producer", &["--"], "--count", "--hold-lock"),
    ("consumer", &["--"], "--until", "--hold-lock"),
    ("monitor", &["--"], "--stop", "--hold-lock"),
    ("worker", &[""], "serve", "--stdio"),
    ("worker", &["call", "--"], "--timeout", "--stdio"),
    (
        "worker",
        &["serve", "--"],
        "--task-timeout",
        "--child-program",
    ),
    ("filter", &["--"], "--list", "--report-fd"),
    ("ping-server", &["--"], "--tcp", "--stdio"),
    ("ping-client", &["--"], "--flood", "--stdio"),
    ("guard", &["--"], "--kill-after", "--stdio"),
    ("scribe", &["--"], "--verify", "--as"),
    ("gate", &["--"], "--slots", "--as"),
    ("discover", &["--"], "--members", "--as"),
    ("syncomm", &[""], "completions", "--stdio"),
    ("syncomm", &["man", "--"], "--dir", "--stdio"),
    ("syncomm-bench", &["--"], "--quick", "--floor-peer"),
    ("syncomm-chaos", &["--"], "--seconds", "--stdio"),
];

/// A scratch directory (removed at the end) with the outputs of `syncomm ARGS`.
fn generate(env: &Env, args: &[&str], into: &str) -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let dir = scratch.path().join(into);
    let mut c = env.cmd("syncomm");
    c.args(args).arg("--dir").arg(&dir);
    let out = run(c);
    assert!(
        out.status.success(),
        "syncomm {args:?}: {}",
        text(&out.stderr)
    );
    let listed = text(&out.stdout).lines().map(str::to_owned).collect();
    (scratch, dir, listed)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Every `[[bin]]` of Cargo.toml is one of the programs that get a manual
/// page and completions, and the other way round.
#[test]
fn every_binary_is_listed() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("read Cargo.toml");
    let mut bins: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("name = ")))
        .map(|n| n.trim_matches('"'))
        .collect();
    let mut programs = PROGRAMS.to_vec();
    bins.sort_unstable();
    programs.sort_unstable();
    assert_eq!(bins, programs);
}

/// `syncomm man --dir DIR` writes PROGRAM.1 for every program and
/// PROGRAM-SUBCOMMAND.1 for worker's and syncomm's subcommands; each page
/// renders with `man -l` (groff or mandoc when man is missing) without a
/// warning or raw markup left over, and a program's page has the sections
/// of its `--help`: EXAMPLES, EXIT STATUS, ENVIRONMENT naming SYNCOMM_DIR.
#[test]
fn every_manual_page_renders() {
    let env = Env::new();
    let (_scratch, dir, listed) = generate(&env, &["man"], "man1");
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .expect("man dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(listed.len(), pages.len(), "printed {listed:?}");
    for p in PROGRAMS {
        assert!(pages.contains(&format!("{p}.1")), "no {p}.1 in {pages:?}");
    }
    for sub in ["worker-serve", "worker-call", "worker-list", "syncomm-man"] {
        assert!(
            pages.contains(&format!("{sub}.1")),
            "no {sub}.1 in {pages:?}"
        );
    }
    let render: Vec<&str> = if have("man") {
        vec!["man", "--warnings", "-l"]
    } else if have("groff") {
        vec!["groff", "-man", "-Tutf8", "-ww"]
    } else if have("mandoc") {
        vec!["mandoc", "-Tutf8", "-Wwarning"]
    } else {
        eprintln!("no man, groff or mandoc installed: manual pages not rendered (skipped)");
        return;
    };
    eprintln!("rendering with {}", render.join(" "));
    for page in &pages {
        let mut c = Command::new(render[0]);
        c.args(&render[1..])
            .arg(dir.join(page))
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat");
        let out = run(c);
        let shown = text(&out.stdout);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{page}: {err}");
        assert!(
            !err.contains("warning") && !err.contains("error"),
            "{page}: {err}"
        );
        for heading in ["NAME", "SYNOPSIS", "DESCRIPTION"] {
            assert!(
                shown.lines().any(|l| l == heading),
                "{page}: no {heading} in\n{shown}"
            );
        }
        for raw in ["\\f", "\\-", "\n.TP", "\n.SH"] {
            assert!(!shown.contains(raw), "{page}: raw {raw:?} in\n{shown}");
        }
        let program = page.trim_end_matches(".1");
        if PROGRAMS.contains(&program) {
            for heading in ["EXAMPLES", "EXIT STATUS", "ENVIRONMENT"] {
                assert!(
                    shown.lines().any(|l| l == heading),
                    "{page}: no {heading} in\n{shown}"
                );
            }
            assert!(shown.contains("SYNCOMM_DIR"), "{page}:\n{shown}");
            assert!(shown.contains(program), "{page}:\n{shown}");
        }
    }
}

/// `syncomm man PROGRAM` prints the page it writes with `--dir`.
#[test]
fn a_manual_page_prints_to_stdout() {
    let env = Env::new();
    let (_scratch, dir, _) = generate(&env, &["man", "gate"], "man1");
    let mut c = env.cmd("syncomm");
    c.args(["man", "gate"]);
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read(dir.join("gate.1")).expect("gate.1");
    assert_eq!(out.stdout, written);
    assert!(text(&written).starts_with(".ie"), "{}", text(&written));
    assert!(text(&written).contains(".TH gate 1"), "{}", text(&written));
}

/// `syncomm completions bash --dir DIR` writes one script per program,
/// named as bash-completion looks for it; each loads in a plain bash without
/// a word on stderr, registers a completion for its program (`complete -p`),
/// and that completion offers the program's options and subcommands but not
/// its hidden ones.
#[test]
fn every_bash_completion_loads_and_completes() {
    let env = Env::new();
    let (_scratch, dir, listed) = generate(&env, &["completions", "bash"], "completions");
    assert_eq!(listed.len(), PROGRAMS.len(), "printed {listed:?}");
    // Sources the script, finds the function `complete -p` names, and calls it
    // as bash would for the words typed: prints what it offers, one a line.
    let script = r#"
        program=$1 file=$2; shift 2
        source "$file" || exit 10
        spec=$(complete -p "$program") || exit 11
        fn=${spec##*-F }; fn=${fn%% *}
        COMP_WORDS=("$program" "$@")
        COMP_CWORD=$#
        COMP_LINE="${COMP_WORDS[*]}"
        COMP_POINT=${#COMP_LINE}
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}
        "$fn" "$program" "$cur" "$prev" || exit 12
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    for p in PROGRAMS {
        assert!(
            COMPLETIONS.iter().any(|(q, ..)| q == p),
            "{p}: no completion case"
        );
    }
    for (program, typed, offered, hidden) in COMPLETIONS {
        let file = dir.join(program);
        assert!(file.is_file(), "no {}", file.display());
        let mut c = Command::new("bash");
        c.args(["--norc", "--noprofile", "-c", script, "bash", program])
            .arg(&file)
            .args(*typed)
            .env_remove("BASH_ENV");
        let out = run(c);
        let err = text(&out.stderr);
        assert!(
            out.status.success(),
            "{program} {typed:?}: {:?} {err}",
            out.status
        );
        assert!(err.is_empty(), "{program}: stderr while loading: {err}");
        let words: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
        assert!(
            words.iter().any(|w| w == offered),
            "{program} {typed:?} does not offer {offered}: {words:?}"
        );
        assert!(
            !words.iter().any(|w| w == hidden),
            "{program} {typed:?} offers {hidden}: {words:?}"
        );
    }
}

/// Without `--dir`, `syncomm completions bash` prints every script; sourced
/// at once they register every program.
#[test]
fn all_bash_completions_source_at_once() {
    let env = Env::new();
    let mut c = env.cmd("syncomm");
    c.args(["completions", "bash"]);
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let scratch = tempfile::tempdir().expect("scratch dir");
    let all = scratch.path().join("all.bash");
    std::fs::write(&all, &out.stdout).expect("write");
    let mut c = Command::new("bash");
    c.args([
        "--norc",
        "--noprofile",
        "-c",
        r#"source "$1" && shift && complete -p "$@""#,
        "bash",
    ])
    .arg(&all)
    .args(PROGRAMS)
    .env_remove("BASH_ENV");
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), PROGRAMS.len());
}

/// A program answers `SYNCOMM_GENERATE` itself: an unknown value is a usage
/// error that names the values known, and runs nothing.
#[test]
fn an_unknown_generate_value_is_refused() {
    let env = Env::new();
    let mut c = env.cmd("producer");
    c.env("SYNCOMM_GENERATE", "troff");
    let out = run(c);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("man, check, bash"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}
