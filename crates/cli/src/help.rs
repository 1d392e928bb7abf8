//! The one layout of every program's `--help`: after the options, three
//! sections in this order, each a heading line followed by lines indented by
//! two spaces.
//!
//! ```text
//! Examples:
//!   producer --name demo --count 1000       # 1000 values, then exit
//!
//! Exit status:
//!   0      the count was reached, or a stop was asked for
//!   2      usage error: an unknown option, a bad value or name
//!
//! Environment:
//!   SYNCOMM_DIR  the runtime directory, where the programs meet
//!                [default: $XDG_RUNTIME_DIR/syncomm, else /tmp/syncomm-$UID]
//! ```
//!
//! - **Examples**: each line is a command line that runs as pasted (a shell
//!   line: pipes, `&` and `;` allowed), its comment after `#`. tests/help.rs
//!   parses every invocation of the program with the program's own parser.
//! - **Exit status** and **Environment**: a tag (a code, a variable), two
//!   spaces or more, its meaning; a longer meaning continues on lines indented
//!   further.
//!
//! The manual pages ([`crate::generate`]) turn the three sections into
//! EXAMPLES, EXIT STATUS and ENVIRONMENT.

/// The heading of the examples.
pub const EXAMPLES: &str = "Examples:";
/// The heading of the exit codes.
pub const EXIT_STATUS: &str = "Exit status:";
/// The heading of the environment variables.
pub const ENVIRONMENT: &str = "Environment:";

/// The `Exit status` line of a usage error (every program but `guard`).
pub const EXIT_USAGE: &str = "  2      usage error: an unknown option, a bad value or name";
/// The `Exit status` line of a program stopped by a signal after cleaning up.
pub const EXIT_SIGNAL: &str =
    "  128+N  stopped by signal N (2: SIGINT, 15: SIGTERM) after cleaning up";

/// The `Environment` lines of the runtime directory (`crate::run_dir`).
pub const ENV_RUN_DIR: &str =
    "  SYNCOMM_DIR  the runtime directory, where the programs meet (the same for all of them)
               [default: $XDG_RUNTIME_DIR/syncomm, else /tmp/syncomm-$UID]";
/// The `Environment` line of the log filter (`crate::log`).
pub const ENV_RUST_LOG: &str =
    "  RUST_LOG     which log lines reach stderr, e.g. info or debug [default: warn]";

/// The `Environment` of a program that meets others in the runtime directory
/// and logs through [`crate::log`].
pub const ENV: &[&str] = &[ENV_RUN_DIR, ENV_RUST_LOG];

/// The text after the options of a program's `--help` (clap's `after_help`):
/// its examples, exit status and environment, each given as lines indented
/// by two spaces.
pub fn after_help(examples: &str, exit_status: &[&str], environment: &[&str]) -> String {
    format!(
        "{EXAMPLES}\n{}\n\n{EXIT_STATUS}\n{}\n\n{ENVIRONMENT}\n{}",
        examples.trim_matches('\n'),
        exit_status.join("\n"),
        environment.join("\n")
    )
}

/// One section of an `after_help` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section<'a> {
    /// The heading without its colon: `Examples`, `Exit status`, ...
    pub heading: &'a str,
    /// The lines under it, indentation kept, blank lines dropped at the ends.
    pub lines: Vec<&'a str>,
}

/// Splits a help text into its sections: a heading is a line that starts in
/// the first column and ends with `:`. Lines before the first heading are
/// left out.
pub fn sections(text: &str) -> Vec<Section<'_>> {
    let mut out: Vec<Section<'_>> = Vec::new();
    for line in text.lines() {
        let starts_left = line.chars().next().is_some_and(|c| !c.is_whitespace());
        match line.strip_suffix(':') {
            Some(heading) if starts_left => out.push(Section {
                heading,
                lines: Vec::new(),
            }),
            _ => {
                if let Some(s) = out.last_mut() {
                    s.lines.push(line);
                }
            }
        }
    }
    for s in &mut out {
        while s.lines.last().is_some_and(|l| l.trim().is_empty()) {
            s.lines.pop();
        }
        while s.lines.first().is_some_and(|l| l.trim().is_empty()) {
            s.lines.remove(0);
        }
    }
    out
}

/// The entries of a tagged section (exit status, environment): `(tag, text)`,
/// a continuation line joined to the text before it. A line without a tag
/// (no gap of two spaces) has an empty tag.
pub fn entries(lines: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        let body = line.trim();
        if body.is_empty() {
            continue;
        }
        if indent > 2 {
            if let Some((_, text)) = out.last_mut() {
                text.push(' ');
                text.push_str(body);
                continue;
            }
        }
        match body.split_once("  ") {
            Some((tag, text)) => out.push((tag.to_owned(), text.trim().to_owned())),
            None => out.push((String::new(), body.to_owned())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips_through_sections() {
        let text = after_help(
            "  prog --x 1   # one\n",
            &["  0      fine", EXIT_USAGE],
            &[ENV_RUN_DIR],
        );
        let s = sections(&text);
        let headings: Vec<_> = s.iter().map(|s| s.heading).collect();
        assert_eq!(headings, ["Examples", "Exit status", "Environment"]);
        assert_eq!(s[0].lines, ["  prog --x 1   # one"]);
        let env = entries(&s[2].lines);
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].0, "SYNCOMM_DIR");
        assert!(env[0].1.ends_with("else /tmp/syncomm-$UID]"), "{env:?}");
        let exit = entries(&s[1].lines);
        assert_eq!(exit[1].0, "2");
    }
}
