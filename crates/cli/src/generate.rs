//! Manual pages, shell completions and a parse-only check, made from a
//! program's own clap `Command` by the program itself when the environment
//! asks for it. The clap definitions stay in `bins/*.rs`; nothing is added
//! to any program's options.
//!
//! | `SYNCOMM_GENERATE=` | the program, instead of running, ... |
//! |---|---|
//! | `man` | prints its manual page in roff, then one per subcommand; with an argument DIR, writes them as `DIR/PROGRAM.1` (`DIR/PROGRAM-SUBCOMMAND.1`) and prints their paths |
//! | `bash`, `zsh`, `fish`, `elvish`, `powershell` | prints its completion script for that shell (clap_complete) |
//! | `check` | only parses its arguments: exit 0 if the parser accepts them, else the one-line usage error and exit 2; it runs nothing |
//!
//! [`crate::parse`] calls [`intercept`] first, so every program that parses
//! through it answers; a program with its own parsing calls [`intercept`]
//! itself. `syncomm man` and `syncomm completions` ask every program of
//! [`PROGRAMS`] in turn ([`man_pages_of`], [`completions_of`]).
//!
//! A manual page is clap_mangen's NAME, SYNOPSIS, DESCRIPTION, OPTIONS and
//! SUBCOMMANDS, then the `--help` sections of [`crate::help`] as EXAMPLES,
//! EXIT STATUS and ENVIRONMENT, then VERSION.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::builder::Resettable;
use clap::Command;
pub use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use crate::help;

/// The environment variable that turns a program into its own generator.
pub const ENV_VAR: &str = "SYNCOMM_GENERATE";

/// Every program of the package, as installed side by side.
pub const PROGRAMS: &[&str] = &[
    "producer",
    "consumer",
    "monitor",
    "worker",
    "filter",
    "ping-server",
    "ping-client",
    "guard",
    "scribe",
    "gate",
    "discover",
    "syncomm",
    "syncomm-bench",
    "syncomm-chaos",
];

/// If `SYNCOMM_GENERATE` is set, does what it asks with this program's
/// `Command` and exits; otherwise returns at once.
pub fn intercept<T: clap::CommandFactory>() {
    if let Some(what) = std::env::var_os(ENV_VAR) {
        let code = answer(T::command(), &what.to_string_lossy(), std::env::args_os());
        std::process::exit(code);
    }
}

/// Does what `what` (a `SYNCOMM_GENERATE` value) asks with `cmd` and the
/// command line `argv` (the program's name first); returns the exit code.
pub fn answer(cmd: Command, what: &str, argv: impl IntoIterator<Item = OsString>) -> i32 {
    let program = cmd.get_name().to_owned();
    let argv: Vec<OsString> = argv.into_iter().collect();
    let result = match what {
        "check" => return check(cmd, argv),
        "man" => match argv.get(1) {
            Some(dir) => write_man_pages(cmd, Path::new(dir)).and_then(|paths| {
                let mut out = io::stdout().lock();
                for p in paths {
                    writeln!(out, "{}", p.display())?;
                }
                out.flush()
            }),
            None => man_pages(cmd).and_then(|pages| {
                let mut out = io::stdout().lock();
                for (_, page) in pages {
                    out.write_all(&page)?;
                }
                out.flush()
            }),
        },
        shell => match shell.parse::<Shell>() {
            Ok(shell) => completion(cmd, shell).and_then(|script| {
                let mut out = io::stdout().lock();
                out.write_all(&script)?;
                out.flush()
            }),
            Err(_) => {
                eprintln!(
                    "{program}: unknown {ENV_VAR}={what:?} (man, check, bash, zsh, fish, elvish, powershell)"
                );
                return i32::from(crate::exit::USAGE);
            }
        },
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{program}: generating {what}: {e}");
            i32::from(crate::exit::FAILURE)
        }
    }
}

/// Whether the parser accepts `argv`: 0, or the one-line error and 2.
fn check(cmd: Command, argv: Vec<OsString>) -> i32 {
    use clap::error::ErrorKind;
    let program = cmd.get_name().to_owned();
    match cmd.try_get_matches_from(argv) {
        Ok(_) => 0,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            0
        }
        Err(e) => {
            eprintln!(
                "{program}: {}",
                crate::args::one_line(&e.render().to_string())
            );
            i32::from(crate::exit::USAGE)
        }
    }
}

/// The completion script of `cmd` for `shell`, without its hidden options
/// and subcommands (child modes, testing knobs).
pub fn completion(cmd: Command, shell: Shell) -> io::Result<Vec<u8>> {
    let mut cmd = without_hidden(&cmd);
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    Ok(out)
}

/// A copy of `cmd` (not yet built) with what completion needs (name, about,
/// version, the options and subcommands that are not hidden): clap_complete
/// offers every option, hidden or not. The copies of the arguments keep their
/// relations (conflicts, requirements) only with each other, which is all a
/// completion script uses.
fn without_hidden(cmd: &Command) -> Command {
    let mut out = Command::new(cmd.get_name().to_owned());
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(version) = cmd.get_version() {
        out = out.version(version.to_owned());
    }
    let hidden: Vec<&clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.is_hide_set())
        .map(|a| a.get_id())
        .collect();
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let mut arg = arg.clone();
        if !hidden.is_empty() {
            // A relation to a hidden option would name an argument that is
            // not there any more.
            arg = arg
                .conflicts_with(Resettable::Reset)
                .requires(Resettable::Reset)
                .overrides_with(Resettable::Reset);
        }
        out = out.arg(arg);
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out = out.subcommand(without_hidden(sub));
    }
    out
}

/// The manual pages of `cmd`: its own, then one per subcommand (not hidden),
/// each as (file name, roff text).
pub fn man_pages(cmd: Command) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    add_pages(&cmd, &mut pages)?;
    Ok(pages)
}

fn add_pages(cmd: &Command, pages: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
    let man = Man::new(cmd.clone()).manual("syncomm");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut page)?;
    }
    if let Some(after) = cmd.get_after_help() {
        help_sections(&after.to_string()).to_writer(&mut page)?;
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut page)?;
    }
    pages.push((man.get_filename(), page));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        add_pages(sub, pages)?;
    }
    Ok(())
}

/// The `--help` sections as manual sections: each example's command line in
/// bold with its comment below it, exit codes and variables as tagged
/// paragraphs.
fn help_sections(after_help: &str) -> Roff {
    let mut roff = Roff::new();
    for section in help::sections(after_help) {
        let heading = section.heading.to_uppercase();
        roff.control("SH", [heading.as_str()]);
        if section.heading == "Examples" {
            // The command in bold on a line of its own, its comment below.
            for line in &section.lines {
                let (command, comment) = match line.split_once("  #") {
                    Some((c, rest)) => (c.trim(), rest.trim()),
                    None => (line.trim(), ""),
                };
                roff.control("TP", []).text([bold(command)]);
                roff.text([roman(comment)]);
            }
            continue;
        }
        for (tag, text) in help::entries(&section.lines) {
            if tag.is_empty() {
                roff.control("PP", []).text([roman(text)]);
            } else {
                roff.control("TP", []).text([bold(tag)]).text([roman(text)]);
            }
        }
    }
    roff
}

/// Writes the manual pages of `cmd` into `dir` (created if missing); returns
/// their paths.
pub fn write_man_pages(cmd: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut paths = Vec::new();
    for (name, page) in man_pages(cmd)? {
        let path = dir.join(name);
        std::fs::write(&path, page)?;
        paths.push(path);
    }
    Ok(paths)
}

/// The directory of the running program, where the others are installed too.
pub fn programs_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this program")?;
    exe.parent()
        .map(Path::to_owned)
        .context("finding this program's directory")
}

/// Runs `program` (in `bin_dir`) as its own generator (`SYNCOMM_GENERATE=what`)
/// with `args`, and returns what it printed.
fn ask(bin_dir: &Path, program: &str, what: &str, args: &[&Path]) -> anyhow::Result<Vec<u8>> {
    let exe = bin_dir.join(program);
    let out = std::process::Command::new(&exe)
        .args(args)
        .env(ENV_VAR, what)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "{} {ENV_VAR}={what} failed ({}): {}",
            exe.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

/// The manual pages of `programs` (installed in `bin_dir`): with `dir`,
/// written into it, and the output lists their paths; else the pages
/// themselves, one after the other. Returns what to print.
pub fn man_pages_of(
    bin_dir: &Path,
    programs: &[&str],
    dir: Option<&Path>,
) -> anyhow::Result<Vec<u8>> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let args: Vec<&Path> = dir.into_iter().collect();
    let mut out = Vec::new();
    for p in programs {
        out.extend(ask(bin_dir, p, "man", &args)?);
    }
    Ok(out)
}

/// The `shell` completion scripts of `programs` (installed in `bin_dir`):
/// with `dir`, each written into it under the name the shell looks for
/// (bash: `PROGRAM`, zsh: `_PROGRAM`, fish: `PROGRAM.fish`), and the output
/// lists their paths; else the scripts themselves, one after the other.
/// Returns what to print.
pub fn completions_of(
    bin_dir: &Path,
    programs: &[&str],
    shell: Shell,
    dir: Option<&Path>,
) -> anyhow::Result<Vec<u8>> {
    use clap_complete::Generator;
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut out = Vec::new();
    for p in programs {
        let script = ask(bin_dir, p, &shell.to_string(), &[])?;
        match dir {
            Some(dir) => {
                // bash-completion loads `completions/PROGRAM` when PROGRAM is
                // first completed; the other shells' names are clap_complete's.
                let file = match shell {
                    Shell::Bash => p.to_string(),
                    _ => shell.file_name(p),
                };
                let path = dir.join(file);
                std::fs::write(&path, script)
                    .with_context(|| format!("writing {}", path.display()))?;
                writeln!(out, "{}", path.display())?;
            }
            None => out.extend(script),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn demo() -> Command {
        Command::new("demo")
            .version("1.0")
            .about("A demo")
            .arg(Arg::new("count").long("count").value_name("N"))
            .arg(Arg::new("json").long("json").action(ArgAction::SetTrue))
            .after_help(help::after_help(
                "  demo --count 3   # three",
                &["  0      fine", help::EXIT_USAGE],
                &[help::ENV_RUN_DIR],
            ))
            .subcommand(Command::new("sub").about("A subcommand"))
    }

    #[test]
    fn man_pages_have_the_help_sections() {
        let pages = man_pages(demo()).unwrap();
        let names: Vec<_> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["demo.1", "demo-sub.1"]);
        let page = String::from_utf8(pages[0].1.clone()).unwrap();
        for want in [
            ".SH EXAMPLES",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            "SYNCOMM_DIR",
            "demo \\-\\-count 3",
        ] {
            assert!(page.contains(want), "no {want:?} in\n{page}");
        }
        assert!(!page.contains(".SH EXTRA"), "{page}");
    }

    #[test]
    fn check_accepts_and_refuses() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(check(demo(), argv(&["demo", "--count", "3"])), 0);
        assert_eq!(check(demo(), argv(&["demo", "--help"])), 0);
        assert_eq!(check(demo(), argv(&["demo", "--cuont", "3"])), 2);
        assert_eq!(check(demo(), argv(&["demo", "three"])), 2);
    }

    #[test]
    fn bash_completion_names_the_options() {
        let script = String::from_utf8(completion(demo(), Shell::Bash).unwrap()).unwrap();
        assert!(script.contains("--count"), "{script}");
        assert!(script.contains("complete -F _demo"), "{script}");
    }
}
