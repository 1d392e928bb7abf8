//! Every program's `--help` can be copied from: one layout (Examples, Exit
//! status, Environment after the options), every example line a shell line
//! whose invocations of the program its own parser accepts, the runtime
//! directory (`SYNCOMM_DIR`) named, one set of placeholders, one spelling of
//! the participant id (`--id`).
//!
//! An example is checked by running the program with its arguments and
//! `SYNCOMM_GENERATE=check` (syncomm_cli::generate): the program's own clap
//! parser accepts or refuses them, and nothing runs.
mod common;

use std::collections::BTreeSet;

use common::{run, text, Env};
use syncomm_cli::help::{entries, sections};

/// Every program of the package: the generator's own list (`tests/man_completions.rs`
/// checks it against Cargo.toml's `[[bin]]`s).
use syncomm_cli::generate::PROGRAMS;

/// The placeholders a help may use, one spelling per kind of value.
const PLACEHOLDERS: &[&str] = &[
    "DUR", "N", "NAME", "ID", "PATH", "FILE", "DIR", "ADDR", "BYTES", "SIZE", "SIGNAL", "PID",
    "COMMAND", "ARG", "TEXT", "STAGE", "FUNCTION", "SCENARIO", "CONFIG", "CURVE", "EXE", "PCT",
    "SHELL", "PROGRAM",
];

fn help(env: &Env, program: &str, args: &[&str]) -> String {
    let mut c = env.cmd(program);
    c.args(args).arg("--help");
    let out = run(c);
    assert!(
        out.status.success(),
        "{program} {args:?} --help: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// A shell line's simple commands, each as its words, as bash would run
/// them: quotes, backslashes, `|`, `||`, `&`, `&&`, `;`, redirections
/// (dropped with their target), `<(...)` (the word `/dev/fd/63`), a subshell
/// `( ... )`, and `#` comments. `$!` and `$$` expand to a process id; any other
/// expansion, an unbalanced quote or parenthesis, or a `(` in the middle of a
/// command is an error, as bash would make of it or as this check cannot
/// follow.
fn shell_commands(line: &str) -> Result<Vec<Vec<String>>, String> {
    let mut done: Vec<Vec<String>> = Vec::new();
    // The command being read, and those a `<(` interrupted.
    let mut stack: Vec<(Vec<String>, bool)> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut subshells = 0;
    let mut word: Option<String> = None;
    let mut skip_next_word = false; // the target of a redirection
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;

    fn end_word(
        word: &mut Option<String>,
        words: &mut Vec<String>,
        skip: &mut bool,
    ) -> Result<(), String> {
        if let Some(w) = word.take() {
            if *skip {
                *skip = false;
            } else {
                words.push(w);
            }
        }
        Ok(())
    }
    let end_command = |words: &mut Vec<String>, done: &mut Vec<Vec<String>>| {
        if !words.is_empty() {
            done.push(std::mem::take(words));
        }
    };

    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                end_word(&mut word, &mut words, &mut skip_next_word)?;
                i += 1;
            }
            '#' if word.is_none() => break,
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                let close = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or("unterminated '")?;
                w.extend(&chars[i + 1..i + 1 + close]);
                i += close + 2;
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated \"".into()),
                        Some('"') => break,
                        Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                            w.push(chars[i + 1]);
                            i += 2;
                        }
                        Some('$') => {
                            w.push_str(&expand(&chars, &mut i)?);
                        }
                        Some('`') => return Err("command substitution".into()),
                        Some(&c) => {
                            w.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '\\' => {
                let next = chars.get(i + 1).ok_or("a backslash at the end")?;
                word.get_or_insert_with(String::new).push(*next);
                i += 2;
            }
            '$' => {
                let e = expand(&chars, &mut i)?;
                word.get_or_insert_with(String::new).push_str(&e);
            }
            '`' => return Err("command substitution".into()),
            '|' | '&' | ';' => {
                // `2>&1`-style duplications are redirections, handled below.
                end_word(&mut word, &mut words, &mut skip_next_word)?;
                if skip_next_word {
                    return Err(format!("a redirection without a target before {c}"));
                }
                end_command(&mut words, &mut done);
                i += if chars.get(i + 1) == Some(&c) { 2 } else { 1 };
            }
            '<' if chars.get(i + 1) == Some(&'(') => {
                end_word(&mut word, &mut words, &mut skip_next_word)?;
                stack.push((std::mem::take(&mut words), true));
                i += 2;
            }
            '<' | '>' => {
                // A digit-only word just before is the descriptor redirected.
                if word
                    .as_deref()
                    .is_some_and(|w| w.chars().all(|c| c.is_ascii_digit()))
                {
                    word = None;
                }
                end_word(&mut word, &mut words, &mut skip_next_word)?;
                i += 1;
                if matches!(chars.get(i), Some('>') | Some('<')) {
                    i += 1;
                }
                if chars.get(i) == Some(&'&') {
                    // >&N: the target is the descriptor that follows.
                    i += 1;
                }
                skip_next_word = true;
            }
            '(' => {
                if word.is_some() || !words.is_empty() {
                    return Err("syntax error near unexpected token `('".into());
                }
                stack.push((Vec::new(), false));
                subshells += 1;
                i += 1;
            }
            ')' => {
                end_word(&mut word, &mut words, &mut skip_next_word)?;
                end_command(&mut words, &mut done);
                let (outer, substitution) = stack
                    .pop()
                    .ok_or("syntax error near unexpected token `)'")?;
                words = outer;
                if substitution {
                    words.push("/dev/fd/63".to_owned());
                } else {
                    subshells -= 1;
                }
                i += 1;
            }
            _ => {
                word.get_or_insert_with(String::new).push(c);
                i += 1;
            }
        }
    }
    end_word(&mut word, &mut words, &mut skip_next_word)?;
    if skip_next_word {
        return Err("a redirection without a target".into());
    }
    if !stack.is_empty() || subshells != 0 {
        return Err("unbalanced parentheses".into());
    }
    end_command(&mut words, &mut done);
    // Leading assignments (NAME=value program ...) are not the command.
    for cmd in &mut done {
        while cmd.len() > 1 && is_assignment(&cmd[0]) {
            cmd.remove(0);
        }
    }
    Ok(done)
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// `$!` and `$$` at `chars[*i]`: a process id. Anything else is refused.
fn expand(chars: &[char], i: &mut usize) -> Result<String, String> {
    match chars.get(*i + 1) {
        Some('!') | Some('$') => {
            *i += 2;
            Ok("4242".to_owned())
        }
        _ => Err("an expansion this check cannot follow".into()),
    }
}

/// Checks one example line of `program`: it is a shell line with at least one
/// invocation of `program`, and the program's parser accepts each.
fn check_example(env: &Env, program: &str, line: &str) -> Result<(), String> {
    let commands = shell_commands(line).map_err(|e| format!("{line:?}: {e}"))?;
    let mine: Vec<&Vec<String>> = commands.iter().filter(|c| c[0] == program).collect();
    if mine.is_empty() {
        return Err(format!("{line:?} does not run {program}"));
    }
    for argv in mine {
        let mut c = env.cmd(program);
        c.args(&argv[1..]).env("SYNCOMM_GENERATE", "check");
        let out = run(c);
        if !out.status.success() {
            return Err(format!(
                "{line:?}: {program} refuses {:?}: {}",
                &argv[1..],
                text(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// The lines of `heading` in a help text (none if it has no such section).
fn section<'a>(help: &'a str, heading: &str) -> Vec<&'a str> {
    sections(help)
        .into_iter()
        .find(|s| s.heading == heading)
        .map(|s| s.lines)
        .unwrap_or_default()
}

/// The subcommands a help lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    section(help, "Commands")
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .map(str::to_owned)
        .collect()
}

/// Every program's `--help` ends with Examples, Exit status and Environment,
/// in that order; every example (of the program and of its subcommands)
/// runs the program with arguments its parser accepts; the exit status lists
/// codes; the environment names SYNCOMM_DIR.
#[test]
fn every_help_has_the_sections_and_examples_that_parse() {
    let env = Env::new();
    let mut failures = Vec::new();
    for &p in PROGRAMS {
        let text = help(&env, p, &[]);
        let headings: Vec<&str> = sections(&text).iter().map(|s| s.heading).collect();
        assert!(
            headings.ends_with(&["Examples", "Exit status", "Environment"]),
            "{p} --help sections: {headings:?}\n{text}"
        );
        let examples = section(&text, "Examples");
        assert!(!examples.is_empty(), "{p}: no examples");
        for line in &examples {
            assert!(
                line.starts_with("  "),
                "{p}: example not indented: {line:?}"
            );
            if let Err(e) = check_example(&env, p, line) {
                failures.push(e);
            }
        }
        let codes = entries(&section(&text, "Exit status"));
        let tags: Vec<&str> = codes.iter().map(|(t, _)| t.as_str()).collect();
        assert!(tags.contains(&"0"), "{p}: no exit code 0 in {tags:?}");
        let usage = if p == "guard" { "125" } else { "2" };
        assert!(tags.contains(&usage), "{p}: no usage code in {tags:?}");
        for t in &tags {
            assert!(
                t.chars().all(|c| c.is_ascii_digit()) || *t == "128+N" || *t == "other",
                "{p}: exit status tag {t:?} is not a code"
            );
        }
        let vars = entries(&section(&text, "Environment"));
        assert!(
            vars.iter().any(|(v, _)| v == "SYNCOMM_DIR"),
            "{p}: SYNCOMM_DIR not in Environment: {vars:?}"
        );
        for sub in subcommands(&text) {
            let sub_help = help(&env, p, &[&sub]);
            for line in section(&sub_help, "Examples") {
                if let Err(e) = check_example(&env, p, line) {
                    failures.push(format!("{p} {sub}: {e}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "bad examples:\n{}",
        failures.join("\n")
    );
}

/// The example check is a real one: the two broken examples the issue
/// quotes, an unknown option, a misplaced argument and a line that does not
/// run the program are refused; well-formed lines pass.
#[test]
fn the_example_check_refuses_malformed_examples() {
    let env = Env::new();
    for (program, bad) in [
        ("ping-client", "  ping-client -c 3   three pings"),
        (
            "guard",
            "  guard 5 make test              TERM after 5 s (exit 124), like timeout(1)",
        ),
        ("producer", "  producer --cuont 10           # typo"),
        ("consumer", "  consumer --until 101          # out of range"),
        (
            "ping-server",
            "  echo ping | nc 127.0.0.1 7878 # not ping-server",
        ),
        (
            "scribe",
            "  scribe --file 'a.txt           # unbalanced quote",
        ),
        (
            "worker",
            "  worker sreve                   # no such subcommand",
        ),
    ] {
        assert!(
            check_example(&env, program, bad).is_err(),
            "accepted: {bad:?}"
        );
    }
    for (program, good) in [
        (
            "ping-client",
            "  ping-client -c 3              # three pings",
        ),
        ("guard", "  sleep 60 & guard --pid $! 30s  # watch it"),
        (
            "filter",
            "  seq 1 5 | filter 'add 1' neg 2>/dev/null | sort -n",
        ),
        ("syncomm", "  source <(syncomm completions bash)"),
        ("scribe", "  rm -f a.txt; scribe --file a.txt --id 1 &"),
    ] {
        check_example(&env, program, good).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The splitter reads shell lines as bash does (what the example check rests on).
#[test]
fn shell_lines_split_like_bash() {
    let split = |l: &str| shell_commands(l).unwrap();
    assert_eq!(
        split("a 'b c' \"d $$\" e\\ f # g"),
        [["a", "b c", "d 4242", "e f"]]
    );
    assert_eq!(
        split("x | y && z; w > out 2>&1 & v"),
        vec![vec!["x"], vec!["y"], vec!["z"], vec!["w"], vec!["v"]]
    );
    assert_eq!(
        split("source <(p q) r"),
        vec![vec!["p", "q"], vec!["source", "/dev/fd/63", "r"]]
    );
    assert_eq!(split("A=1 p x"), [["p", "x"]]);
    assert!(shell_commands("p (x)").is_err());
    assert!(shell_commands("p $HOME").is_err());
    assert!(shell_commands("p 'x").is_err());
}

/// The placeholders of every help (options, arguments, usage) come from one
/// list: `<DUR>` for every duration, `<N>` for every count, `<NAME>`, `<ID>`...
#[test]
fn placeholders_are_spelt_one_way() {
    let env = Env::new();
    let allowed: BTreeSet<&str> = PLACEHOLDERS.iter().copied().collect();
    let mut seen = BTreeSet::new();
    for &p in PROGRAMS {
        let top = help(&env, p, &[]);
        let mut texts = vec![(p.to_owned(), top.clone())];
        for sub in subcommands(&top) {
            texts.push((format!("{p} {sub}"), help(&env, p, &[&sub])));
        }
        for (who, t) in texts {
            for piece in t.split('<').skip(1) {
                let Some((inside, _)) = piece.split_once('>') else {
                    continue;
                };
                if !inside.is_empty() && inside.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                {
                    assert!(
                        allowed.contains(inside),
                        "{who}: placeholder <{inside}> is not one of {allowed:?}"
                    );
                    seen.insert(inside.to_owned());
                }
            }
        }
    }
    for common in ["DUR", "N", "NAME", "ID"] {
        assert!(seen.contains(common), "<{common}> never used: {seen:?}");
    }
}

/// The participant id is `--id ID` in every program that has one (scribe,
/// gate, discover); discover's old `--as` still parses but is not shown.
#[test]
fn the_participant_id_is_spelt_id() {
    let env = Env::new();
    for p in ["scribe", "gate", "discover"] {
        let t = help(&env, p, &[]);
        assert!(t.contains("--id <ID>"), "{p} --help has no --id <ID>:\n{t}");
    }
    for &p in PROGRAMS {
        let t = help(&env, p, &[]);
        assert!(!t.contains("--as "), "{p} --help still shows --as");
    }
    check_example(&env, "discover", "  discover --as alice --members 2").unwrap();
    check_example(&env, "discover", "  discover --id alice --members 2").unwrap();
}
