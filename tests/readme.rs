//! The README and the scenario pages say what is true: the shell blocks
//! marked `<!-- runnable -->` run as written (with the built binaries on
//! `PATH`, in a private runtime directory and a scratch working directory)
//! and print what the `<!-- output -->` block after them shows; the README
//! stays short, lists the scenarios in `./launch list` order with one page
//! each, and keeps the test command that `.ci/run` runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A runnable block: where it is, its script, the output it must print.
struct Runnable {
    at: String,
    script: String,
    output: Option<String>,
}

/// The fenced block whose opening fence is at `lines[i]`: its info string,
/// its body, and the index of the line after its closing fence.
fn fence(lines: &[&str], i: usize) -> Option<(String, String, usize)> {
    let info = lines.get(i)?.strip_prefix("```")?.trim().to_owned();
    let end = (i + 1..lines.len()).find(|&j| lines[j].trim_end() == "```")?;
    Some((info, lines[i + 1..end].join("\n") + "\n", end + 1))
}

/// The index of the next non-blank line from `i`.
fn next_text(lines: &[&str], mut i: usize) -> usize {
    while i < lines.len() && lines[i].trim().is_empty() {
        i += 1;
    }
    i
}

/// The runnable blocks of a Markdown page.
fn runnables(rel: &str) -> Vec<Runnable> {
    let text = read(rel);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.trim() != "<!-- runnable -->" {
            continue;
        }
        let at = format!("{rel}:{}", i + 1);
        let start = next_text(&lines, i + 1);
        let (info, script, after) =
            fence(&lines, start).unwrap_or_else(|| panic!("{at}: no fenced block after the mark"));
        assert_eq!(info, "sh", "{at}: a runnable block is ```sh");
        let mut output = None;
        let o = next_text(&lines, after);
        if lines.get(o).is_some_and(|l| l.trim() == "<!-- output -->") {
            let (info, text, _) = fence(&lines, next_text(&lines, o + 1))
                .unwrap_or_else(|| panic!("{at}: no fenced block after <!-- output -->"));
            assert_eq!(info, "text", "{at}: an output block is ```text");
            output = Some(text);
        }
        out.push(Runnable { at, script, output });
    }
    out
}

/// README.md and the pages under docs/.
fn pages() -> Vec<String> {
    let mut out = vec!["README.md".to_owned()];
    for dir in ["docs", "docs/scenarios"] {
        let mut names: Vec<String> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".md"))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        names.sort();
        out.extend(names);
    }
    out
}

/// Each runnable block runs with `bash -euo pipefail` and exits 0 within
/// the test bound; where an output block follows, stdout is exactly it.
/// The README has at least one (its by-hand example).
#[test]
fn runnable_blocks_run_as_written() {
    let bins: PathBuf = bin("syncomm").parent().unwrap().to_owned();
    let mut ran = Vec::new();
    for page in pages() {
        for r in runnables(&page) {
            let env = Env::new();
            let scratch = tempfile::tempdir().unwrap();
            let out = run({
                let mut c = Command::new("bash");
                c.args(["-euo", "pipefail", "-c", &r.script])
                    .current_dir(scratch.path())
                    .env("SYNCOMM_DIR", env.dir())
                    .env("TMPDIR", scratch.path())
                    .env(
                        "PATH",
                        format!(
                            "{}:{}",
                            bins.display(),
                            std::env::var("PATH").unwrap_or_default()
                        ),
                    )
                    .env_remove("RUST_LOG");
                c
            });
            assert!(
                out.status.success(),
                "{}: {}\n--- script\n{}--- stdout\n{}--- stderr\n{}",
                r.at,
                out.status,
                r.script,
                text(&out.stdout),
                text(&out.stderr)
            );
            if let Some(want) = &r.output {
                assert_eq!(&text(&out.stdout), want, "{}: stdout", r.at);
            }
            ran.push(r.at);
        }
    }
    assert!(
        ran.iter().any(|at| at.starts_with("README.md:")),
        "no runnable block in README.md (ran {ran:?})"
    );
}

/// Whether `text` speaks of "the seed" (the course's examples), not of a
/// seeded run or a `--seed`.
fn says_the_seed(text: &str) -> bool {
    let lower = text.to_lowercase().replace('\n', " ");
    lower.match_indices("the seed").any(|(i, m)| {
        !lower[i + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic())
    })
}

/// The README fits on a screen or two, names the course rather than "the
/// seed", keeps the two-command quick start, and its test command is the
/// one `.ci/run` runs.
#[test]
fn readme_is_short_and_keeps_the_two_commands() {
    let readme = read("README.md");
    let n = readme.lines().count();
    assert!(n <= 200, "README.md has {n} lines (at most 200)");
    assert!(
        !says_the_seed(&readme),
        "README.md says \"the seed\": name the course"
    );
    assert!(
        readme.contains("*Synchronization and\nCommunication*")
            || readme.contains("*Synchronization and Communication*")
    );
    for cmd in ["./launch all", "cargo test --workspace"] {
        assert!(
            readme.lines().any(|l| l.starts_with(cmd)),
            "README.md lost the command {cmd}"
        );
    }
    let ci = read(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == "cargo test --workspace"),
        ".ci/run no longer runs the README's test command"
    );
}

/// One page per scenario, named as `./launch list` names them, and the
/// README's scenario table links them in that order.
#[test]
fn scenario_pages_follow_launch_list() {
    let out = run({
        let mut c = Command::new(root().join("launch"));
        c.arg("list").env_remove("SYNCOMM_DIR");
        c
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names: Vec<String> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    assert_eq!(names.len(), 9, "{names:?}");
    let readme = read("README.md");
    let mut last = 0;
    for name in &names {
        let page = format!("docs/scenarios/{name}.md");
        assert!(root().join(&page).is_file(), "{page} is missing");
        let link = format!("]({page})");
        let at = readme
            .find(&link)
            .unwrap_or_else(|| panic!("README.md does not link {page}"));
        assert!(
            at > last,
            "README.md lists {name} out of ./launch list order"
        );
        last = at;
        let text = read(&page);
        assert!(
            text.starts_with(&format!("# {name} ")),
            "{page} starts with its name"
        );
        assert!(!says_the_seed(&text), "{page} says \"the seed\"");
    }
}
