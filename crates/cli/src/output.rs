//! `--json` output: one JSON object per line, every line in the one envelope
//! of [`syncomm_common::jsonl`] (`program`, `event`, `pid`, `ts_ms`, then the
//! event's fields). docs/JSON.md lists every program's events.
//!
//! A program turns JSON on with [`enable`] once it has parsed `--json`, and
//! builds its lines with [`event`] and writes them with [`emit`]. The lines
//! go to stdout, except for the programs whose stdout carries data (`filter`,
//! `guard`), which call [`to_stderr`] first.
//!
//! Failures: with JSON on, the runner ([`crate::run`]) writes the one-line
//! error a second time as the last JSON line, to the same stream as the
//! program's other lines:
//! `{"program":…,"event":"error",…,"error":"what failed: why","exit_code":N}`,
//! with any fields the [`crate::Fail`] carries. A usage error found by the
//! argument parser is reported so too when `--json` is among the arguments
//! (before a `--`), since the parser could not say whether it was given.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

pub use syncomm_common::jsonl::{ms, now_ms, round, Line};

static PROGRAM: OnceLock<&'static str> = OnceLock::new();
static ENABLED: AtomicBool = AtomicBool::new(false);
static STDERR: AtomicBool = AtomicBool::new(false);

/// Names the program whose lines these are (the runner does it).
pub fn set_program(program: &'static str) {
    let _ = PROGRAM.set(program);
}

/// The program's name as set by [`set_program`].
pub fn program() -> &'static str {
    PROGRAM.get().copied().unwrap_or("syncomm")
}

/// Turns JSON output on (`--json` given) or leaves it as it is.
pub fn enable(on: bool) {
    if on {
        ENABLED.store(true, Ordering::Relaxed);
    }
}

/// Whether JSON output is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Sends the JSON lines to stderr instead of stdout (a program whose stdout
/// carries data: `filter`, `guard`).
pub fn to_stderr() {
    STDERR.store(true, Ordering::Relaxed);
}

/// A line for `event` of this program, written by this process now.
pub fn event(event: &str) -> Line {
    Line::new(program(), event)
}

/// The line for an enum value serialized the serde way (externally
/// tagged): a unit variant `"stopped"` is the event `stopped`; a struct
/// variant `{"worker_started":{"index":1,…}}` is the event `worker_started`
/// with those fields. Variant names must be snake_case
/// (`#[serde(rename_all = "snake_case")]`).
pub fn tagged(value: &impl serde::Serialize) -> Line {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => event(&name),
        Ok(serde_json::Value::Object(map)) if map.len() == 1 => {
            let (name, fields) = map.into_iter().next().expect("one entry");
            event(&name).fields(&fields)
        }
        other => {
            debug_assert!(false, "not an externally tagged enum: {other:?}");
            event("unknown")
        }
    }
}

/// Writes `line` to the program's JSON stream (stdout, or stderr after
/// [`to_stderr`]) and flushes it.
pub fn emit(line: Line) -> io::Result<()> {
    if STDERR.load(Ordering::Relaxed) {
        line.write_to(&mut io::stderr().lock())
    } else {
        line.write_to(&mut io::stdout().lock())
    }
}

/// The `error` line: the one-line message, the exit code, and `fields`.
pub fn error_line(message: &str, exit_code: u8, fields: &[(String, serde_json::Value)]) -> Line {
    let mut line = event("error")
        .field("error", message)
        .field("exit_code", exit_code);
    for (k, v) in fields {
        line.add(k, v);
    }
    line
}

/// Writes the `error` line if JSON output is on. Errors writing it are
/// ignored: the text line on stderr has said it already.
pub fn emit_error(message: &str, exit_code: u8, fields: &[(String, serde_json::Value)]) {
    if enabled() {
        let _ = emit(error_line(message, exit_code, fields));
    }
}

/// Whether `args` (the whole command line, program name first) hold
/// `--json` before a `--`: used only when the arguments did not parse.
pub fn asked_for_json<I: IntoIterator<Item = std::ffi::OsString>>(args: I) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Writes `line` to `out` (a writer other than the program's stream).
pub fn write_line(out: &mut dyn Write, line: Line) -> io::Result<()> {
    line.write_to(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_has_the_envelope_then_error_and_code() {
        let line = error_line("x failed: y", 1, &[("kind".into(), "timeout".into())]);
        let v: serde_json::Value = serde_json::from_str(&line.into_string()).unwrap();
        assert_eq!(v["event"], "error");
        assert_eq!(v["error"], "x failed: y");
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v["kind"], "timeout");
        assert_eq!(v["pid"], std::process::id());
    }

    #[test]
    fn tagged_enums_become_events() {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        enum E {
            Stopped,
            WorkerStarted { index: usize },
        }
        let v: serde_json::Value =
            serde_json::from_str(&tagged(&E::WorkerStarted { index: 3 }).into_string()).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["index"].as_u64()),
            (Some("worker_started"), Some(3))
        );
        let v: serde_json::Value =
            serde_json::from_str(&tagged(&E::Stopped).into_string()).unwrap();
        assert_eq!(v["event"], "stopped");
    }

    #[test]
    fn json_asked_before_double_dash_only() {
        let a = |v: &[&str]| asked_for_json(v.iter().map(std::ffi::OsString::from));
        assert!(a(&["p", "--bogus", "--json"]));
        assert!(!a(&["p", "--", "cmd", "--json"]));
        assert!(!a(&["--json"]), "the program's own name is not an argument");
    }
}
