//! One JSON schema for every program: each program is run with `--json` in
//! short, realistic runs — successes and failures — and every JSON line it
//! prints is checked against docs/JSON.md, read at test time:
//!
//! - the envelope: `program`, `event`, `pid`, `ts_ms` first, in that order,
//!   `program` the program run, `pid` the process run (not another), `ts_ms`
//!   milliseconds since the epoch (within an hour of now: not seconds, not µs);
//! - the event is one of the program's documented events, every documented
//!   field is there (unless marked optional) with its documented type, and no
//!   undocumented field is;
//! - the conventions, over every nested object too: snake_case keys, a time's
//!   unit in its key, pid keys named `pid`/`*_pid` holding integers, enum-like
//!   values in snake_case, no float with more than 3 decimals;
//! - a failing run's last JSON line is an `error` event on the program's JSON
//!   stream, whose `error` is the one-line text error and `exit_code` the exit
//!   status; the JSON stream of the stdout programs holds nothing but JSON.
//!
//! `validator_rejects_bad_lines` proves the checks can fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{text, unique_name, wait_until, Env, Lines, Proc, HANG};
use nix::sys::signal::Signal;
use serde_json::Value;
use syncomm_cli::generate::PROGRAMS;
use syncomm_common::jsonl::is_snake_case;

// ---------------------------------------------------------------------------
// The schema, read from docs/JSON.md.

#[derive(Debug, Clone, PartialEq)]
enum Ty {
    String,
    Int,
    Number,
    Bool,
    Array,
    Object,
    Any,
    Enum(Vec<String>),
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    optional: bool,
    nullable: bool,
    ty: Ty,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug)]
struct ProgramSchema {
    stream: Stream,
    events: BTreeMap<String, Vec<Field>>,
}

type Schema = BTreeMap<String, ProgramSchema>;

fn schema() -> &'static Schema {
    static S: std::sync::OnceLock<Schema> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/JSON.md");
        let doc = std::fs::read_to_string(&path).expect("docs/JSON.md");
        parse_schema(&doc).unwrap_or_else(|e| panic!("docs/JSON.md: {e}"))
    })
}

/// The cells of a Markdown table row, `\|` unescaped inside them.
fn cells(row: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = row.trim().trim_start_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cur.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cur).trim().to_owned()),
            c => cur.push(c),
        }
    }
    out
}

fn parse_type(t: &str) -> Result<(Ty, bool), String> {
    let (t, nullable) = match t.strip_suffix("|null") {
        Some(t) => (t, true),
        None => (t, false),
    };
    let ty = match t {
        "string" => Ty::String,
        "int" => Ty::Int,
        "number" => Ty::Number,
        "bool" => Ty::Bool,
        "array" => Ty::Array,
        "object" => Ty::Object,
        "any" => Ty::Any,
        e if e.starts_with("enum(") && e.ends_with(')') => Ty::Enum(
            e["enum(".len()..e.len() - 1]
                .split('|')
                .map(str::to_owned)
                .collect(),
        ),
        other => return Err(format!("unknown type {other:?}")),
    };
    Ok((ty, nullable))
}

fn parse_fields(cell: &str) -> Result<Vec<Field>, String> {
    if cell.starts_with("(none") {
        return Ok(Vec::new());
    }
    cell.split(", ")
        .map(|item| {
            let item = item.trim();
            let rest = item
                .strip_prefix('`')
                .ok_or_else(|| format!("field {item:?} does not start with `name`"))?;
            let end = rest
                .find('`')
                .ok_or_else(|| format!("unclosed `: {item:?}"))?;
            let name = rest[..end].to_owned();
            let mut rest = &rest[end + 1..];
            let optional = rest.starts_with('?');
            if optional {
                rest = &rest[1..];
            }
            let (ty, nullable) = parse_type(rest.trim()).map_err(|e| format!("{name}: {e}"))?;
            Ok(Field {
                name,
                optional,
                nullable,
                ty,
            })
        })
        .collect()
}

fn parse_schema(doc: &str) -> Result<Schema, String> {
    let mut schema = Schema::new();
    let mut in_programs = false;
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            in_programs = h.trim() == "Programs";
            current = None;
            continue;
        }
        if !in_programs {
            continue;
        }
        if let Some(h) = line.strip_prefix("### `") {
            let end = h.find('`').ok_or("unclosed program name")?;
            let name = h[..end].to_owned();
            let stream = if h.contains("(stdout)") {
                Stream::Stdout
            } else if h.contains("(stderr)") {
                Stream::Stderr
            } else {
                return Err(format!("{name}: no (stdout) or (stderr) in its heading"));
            };
            schema.insert(
                name.clone(),
                ProgramSchema {
                    stream,
                    events: BTreeMap::new(),
                },
            );
            current = Some(name);
            continue;
        }
        if let (Some(p), true) = (&current, line.starts_with("| `")) {
            let c = cells(line);
            let event = c[0].trim_matches('`').to_owned();
            let fields = parse_fields(&c[1]).map_err(|e| format!("{p} {event}: {e}"))?;
            let prog = schema.get_mut(p).expect("current program");
            if prog.events.insert(event.clone(), fields).is_some() {
                return Err(format!("{p}: event {event} documented twice"));
            }
        }
    }
    Ok(schema)
}

// ---------------------------------------------------------------------------
// The validator.

const ENVELOPE: [&str; 4] = ["program", "event", "pid", "ts_ms"];

/// Words that name a time: a key with one of them must end in a unit.
const TIME_WORDS: [&str; 16] = [
    "time", "times", "elapsed", "duration", "timeout", "rtt", "latency", "seconds", "secs",
    "wakeup", "hold", "interval", "delay", "age", "uptime", "ts",
];
const UNITS: [&str; 4] = ["_ns", "_us", "_ms", "_s"];
/// Keys whose string values name a state, a kind...: snake_case words.
const ENUM_KEYS: [&str; 11] = [
    "state",
    "status",
    "kind",
    "reason",
    "origin",
    "outcome",
    "transport",
    "error_kind",
    "dir_source",
    "rate_of",
    "event",
];

fn type_ok(v: &Value, f: &Field) -> bool {
    if v.is_null() {
        return f.nullable || f.ty == Ty::Any;
    }
    match &f.ty {
        Ty::String => v.is_string(),
        Ty::Int => v.is_i64() || v.is_u64(),
        Ty::Number => v.is_number(),
        Ty::Bool => v.is_boolean(),
        Ty::Array => v.is_array(),
        Ty::Object => v.is_object(),
        Ty::Any => true,
        Ty::Enum(vals) => v.as_str().is_some_and(|s| vals.iter().any(|x| x == s)),
    }
}

/// The conventions, over `v` and everything nested in it; `path` names the place.
fn conventions(path: &str, v: &Value, problems: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let here = format!("{path}.{k}");
                if !is_snake_case(k) {
                    problems.push(format!("{here}: key not snake_case"));
                }
                if k.contains("pid") && !(k == "pid" || k.ends_with("_pid")) {
                    problems.push(format!("{here}: a pid key is `pid` or `*_pid`"));
                }
                if (k == "pid" || k.ends_with("_pid")) && !(x.is_i64() || x.is_null()) {
                    problems.push(format!("{here}: a pid is an integer or null, not {x}"));
                }
                let words: Vec<&str> = k.split('_').collect();
                let timed = words.iter().any(|w| TIME_WORDS.contains(w));
                let unit = UNITS.iter().any(|u| k.ends_with(u));
                if timed && !unit {
                    problems.push(format!("{here}: a time without its unit in the key"));
                }
                if unit && !(x.is_number() || x.is_null()) {
                    problems.push(format!("{here}: a time is a number, not {x}"));
                }
                if ENUM_KEYS.contains(&k.as_str()) {
                    if let Some(s) = x.as_str() {
                        if !is_snake_case(s) {
                            problems.push(format!("{here}: value {s:?} not snake_case"));
                        }
                    }
                }
                conventions(&here, x, problems);
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                conventions(&format!("{path}[{i}]"), x, problems);
            }
        }
        Value::Number(n) if n.is_f64() => {
            let s = n.to_string();
            let decimals = s.split_once('.').map_or(0, |(_, d)| d.len());
            if s.contains('e') || s.contains('E') || decimals > 3 {
                problems.push(format!("{path}: {s} has more than 3 decimals"));
            }
        }
        _ => {}
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Checks one line of `program` written by `pid` (if known); returns the
/// parsed line, or every problem found.
fn check_line(
    schema: &Schema,
    program: &str,
    pid: Option<u32>,
    line: &str,
) -> Result<Value, Vec<String>> {
    let mut problems = Vec::new();
    let v: Value = serde_json::from_str(line).map_err(|e| vec![format!("not JSON: {e}")])?;
    let Some(obj) = v.as_object() else {
        return Err(vec!["not a JSON object".into()]);
    };
    // The envelope: present, typed, first and in order.
    let (Some(p), Some(e), Some(lpid), Some(ts)) = (
        obj.get("program").and_then(Value::as_str),
        obj.get("event").and_then(Value::as_str),
        obj.get("pid").and_then(Value::as_u64),
        obj.get("ts_ms").and_then(Value::as_i64),
    ) else {
        return Err(vec![
            "no envelope: program and event strings, pid and ts_ms integers".into(),
        ]);
    };
    let prefix = format!(
        "{{\"program\":{},\"event\":{},\"pid\":{lpid},\"ts_ms\":{ts}",
        serde_json::to_string(p).unwrap(),
        serde_json::to_string(e).unwrap()
    );
    if !(line.starts_with(&prefix)
        && matches!(line.as_bytes().get(prefix.len()), Some(b',' | b'}')))
    {
        problems.push("the envelope is not first, in order program, event, pid, ts_ms".into());
    }
    if p != program {
        problems.push(format!("program {p:?}, but {program} wrote it"));
    }
    if let Some(pid) = pid {
        if lpid != u64::from(pid) {
            problems.push(format!("pid {lpid}, but the writer is {pid}"));
        }
    }
    if (ts - now_ms()).abs() > 3_600_000 {
        problems.push(format!(
            "ts_ms {ts} is not milliseconds since the epoch, now"
        ));
    }
    if !is_snake_case(e) {
        problems.push(format!("event {e:?} not snake_case"));
    }
    // The event's documented fields.
    match schema.get(program).and_then(|s| s.events.get(e)) {
        None => problems.push(format!("event {e:?} of {program} is not in docs/JSON.md")),
        Some(fields) => {
            for f in fields {
                match obj.get(&f.name) {
                    None if f.optional => {}
                    None => problems.push(format!("{e}: field {} missing", f.name)),
                    Some(x) if !type_ok(x, f) => {
                        problems.push(format!("{e}: {} = {x} is not {:?}", f.name, f.ty))
                    }
                    Some(_) => {}
                }
            }
            for k in obj.keys() {
                if !ENVELOPE.contains(&k.as_str()) && !fields.iter().any(|f| &f.name == k) {
                    problems.push(format!("{e}: field {k} is not in docs/JSON.md"));
                }
            }
        }
    }
    conventions("", &v, &mut problems);
    if problems.is_empty() {
        Ok(v)
    } else {
        Err(problems)
    }
}

// ---------------------------------------------------------------------------
// Running the programs and checking what they print.

fn chaos_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_syncomm-chaos"))
}

/// Checks every JSON line of a finished run of `program` (process `pid`):
/// the JSON stream's lines, and on failure the `error` line. `expect`: the
/// exit code wanted; `failure`: whether the run must end with an `error` line.
fn check_output(program: &str, pid: u32, out: &Output, expect: i32, failure: bool) -> Vec<Value> {
    let schema = schema();
    let prog = schema
        .get(program)
        .unwrap_or_else(|| panic!("{program} is not in docs/JSON.md"));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let what = format!("{program} (pid {pid})\nstdout: {stdout}\nstderr: {stderr}");
    assert_eq!(out.status.code(), Some(expect), "exit status of {what}");
    let stream = match prog.stream {
        Stream::Stdout => &stdout,
        Stream::Stderr => &stderr,
    };
    let mut lines = Vec::new();
    for l in stream.lines().filter(|l| !l.trim().is_empty()) {
        if prog.stream == Stream::Stderr && !l.starts_with('{') {
            continue; // text lines may precede the JSON on stderr
        }
        match check_line(schema, program, Some(pid), l) {
            Ok(v) => lines.push(v),
            Err(p) => panic!(
                "{program}: bad JSON line {l}\n  {}\nin {what}",
                p.join("\n  ")
            ),
        }
    }
    if prog.stream == Stream::Stdout {
        assert!(
            !stderr.lines().any(|l| l.starts_with('{')),
            "{program} writes its JSON on stdout, not stderr: {what}"
        );
    }
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("no JSON line: {what}"));
    if failure {
        assert_eq!(
            last["event"], "error",
            "a failure ends with an error line: {what}"
        );
        assert_eq!(last["exit_code"], expect, "{what}");
        let message = last["error"].as_str().unwrap();
        let text_line = format!("{program}: {message}");
        assert!(
            stderr.lines().any(|l| l == text_line),
            "the error line repeats the text error {text_line:?}: {what}"
        );
    } else {
        assert!(
            lines.iter().all(|l| l["event"] != "error"),
            "no error line in a run that did not fail: {what}"
        );
    }
    lines
}

/// Runs `cmd` (stdin null) to the end and checks it (see [`check_output`]).
fn json_run(program: &str, mut cmd: Command, expect: i32, failure: bool) -> Vec<Value> {
    cmd.stdin(Stdio::null());
    let p = Proc::spawn(cmd);
    let pid = p.pid() as u32;
    let out = p.finish();
    check_output(program, pid, &out, expect, failure)
}

/// Runs `cmd` with `input` on its stdin and checks it.
fn json_run_input(program: &str, mut cmd: Command, input: &[u8], expect: i32, failure: bool) {
    cmd.stdin(Stdio::piped());
    let mut p = Proc::spawn(cmd);
    let pid = p.pid() as u32;
    let mut stdin = p.child.stdin.take().unwrap();
    let input = input.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = p.finish();
    w.join().unwrap();
    check_output(program, pid, &out, expect, failure);
}

/// A program that runs until stopped, whose JSON lines (stdout) are read as
/// they come; checked when it ends.
struct Live {
    program: &'static str,
    proc: Proc,
    lines: Lines,
    seen: Vec<String>,
}

impl Live {
    fn start(program: &'static str, cmd: Command) -> Live {
        let mut proc = Proc::spawn(cmd);
        let lines = proc.stdout_lines();
        Live {
            program,
            proc,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one is the event `event`, and returns it (every
    /// line read is kept, to be checked at the end).
    fn wait_event(&mut self, event: &str) -> Value {
        let want = format!("\"event\":\"{event}\"");
        loop {
            let l = self.lines.next_line().unwrap_or_else(|| {
                panic!("{} ended before {event}: {:?}", self.program, self.seen)
            });
            self.seen.push(l.clone());
            if l.contains(&want) {
                return serde_json::from_str(&l).unwrap();
            }
        }
    }

    /// Stops it with `sig`, then checks every line it printed.
    fn stop(mut self, sig: Signal, expect: i32) -> Vec<Value> {
        self.proc.signal(sig);
        let status = self.proc.wait_timeout(HANG);
        let mut stdout = self.seen.join("\n");
        stdout.push('\n');
        for l in self.lines.rest() {
            stdout.push_str(&l);
            stdout.push('\n');
        }
        let mut err = Vec::new();
        if let Some(mut e) = self.proc.child.stderr.take() {
            let _ = e.read_to_end(&mut err);
        }
        let out = Output {
            status,
            stdout: stdout.into_bytes(),
            stderr: err,
        };
        check_output(self.program, self.proc.pid() as u32, &out, expect, false)
    }
}

fn cmd(env: &Env, program: &str, args: &[&str]) -> Command {
    let mut c = env.cmd(program);
    c.args(args);
    c
}

// ---------------------------------------------------------------------------
// The runs, one test per program.

/// producer: `ready` and `done`; the testing knob's `holding_lock`; a
/// usage error and a runtime error as `error` lines.
#[test]
fn producer_lines_match_the_schema() {
    let env = Env::new();
    let n = unique_name("jp");
    let lines = json_run(
        "producer",
        cmd(
            &env,
            "producer",
            &["--name", &n, "--count", "20", "--seed", "1", "--json"],
        ),
        0,
        false,
    );
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["ready", "done"]);
    assert_eq!(lines[1]["appended"], 20);
    assert_eq!(lines[1]["reason"], "count");
    json_run(
        "producer",
        cmd(
            &env,
            "producer",
            &["--name", &n, "--json", "--count", "many"],
        ),
        2,
        true,
    );
    json_run(
        "producer",
        cmd(&env, "producer", &["--json", "--name", "a/b"]),
        2,
        true,
    );
    // Stalled mid-append holding the lock, then stopped: the board is left
    // for the next producer to repair (a producer with --count 0 does).
    let mut p = Live::start(
        "producer",
        cmd(
            &env,
            "producer",
            &[
                "--name",
                &n,
                "--json",
                "--hold-lock",
                "60s",
                "--hold-after",
                "3",
            ],
        ),
    );
    p.wait_event("holding_lock");
    p.proc.kill9();
    let _ = p.proc.wait_timeout(HANG);
    json_run(
        "producer",
        cmd(&env, "producer", &["--name", &n, "--count", "0", "--json"]),
        0,
        false,
    );
}

/// consumer: `found`; `interrupted` at SIGTERM; failures (`timed_out`, a
/// usage error) as `error` lines with their outcome.
#[test]
fn consumer_lines_match_the_schema() {
    let env = Env::new();
    let n = unique_name("jc");
    let out = common::run(cmd(
        &env,
        "producer",
        &["--name", &n, "--count", "200", "--seed", "1", "--keep"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_run(
        "consumer",
        cmd(&env, "consumer", &["--name", &n, "--until", "22", "--json"]),
        0,
        false,
    );
    assert_eq!(lines[0]["event"], "found");
    let lines = json_run(
        "consumer",
        cmd(
            &env,
            "consumer",
            &[
                "--name",
                "nothing-here",
                "--until",
                "3",
                "--timeout",
                "100ms",
                "--json",
            ],
        ),
        1,
        true,
    );
    assert_eq!(lines[0]["outcome"], "timed_out");
    assert!(lines[0]["total"].is_null());
    json_run(
        "consumer",
        cmd(&env, "consumer", &["--until", "101", "--json"]),
        2,
        true,
    );
    // Waiting on a board that never comes, until SIGTERM.
    let mut c = cmd(&env, "consumer", &["--name", "never", "--json"]);
    c.env("RUST_LOG", "info").stdin(Stdio::null());
    let mut p = Proc::spawn(c);
    let pid = p.pid();
    let err = p.stderr_lines();
    err.wait_for(|l| l.contains("waiting for board"));
    p.signal(Signal::SIGTERM);
    let out = p.finish();
    let lines = check_output("consumer", pid as u32, &out, 143, false);
    assert_eq!(lines[0]["event"], "interrupted");
    assert_eq!(lines[0]["signal"], 15);
}

/// monitor: `snapshot`s of a running producer, `stopped` from --stop (the
/// producer then ends with reason `stopped`); a missing board as `error`.
#[test]
fn monitor_lines_match_the_schema() {
    let env = Env::new();
    let n = unique_name("jm");
    let mut producer = Live::start(
        "producer",
        cmd(
            &env,
            "producer",
            &["--name", &n, "--interval", "2ms", "--json"],
        ),
    );
    producer.wait_event("ready");
    json_run(
        "monitor",
        cmd(&env, "monitor", &["--name", &n, "--once", "--json"]),
        0,
        false,
    );
    json_run(
        "monitor",
        cmd(
            &env,
            "monitor",
            &[
                "--name",
                &n,
                "--interval",
                "20ms",
                "--timeout",
                "150ms",
                "--json",
            ],
        ),
        1,
        true,
    );
    let lines = json_run(
        "monitor",
        cmd(&env, "monitor", &["--name", &n, "--stop", "--json"]),
        0,
        false,
    );
    assert_eq!(lines[0]["producer_pid"], producer.proc.pid());
    let done = producer.wait_event("done");
    assert_eq!(done["reason"], "stopped");
    let _ = producer.stop(Signal::SIGTERM, 0);
    json_run(
        "monitor",
        cmd(&env, "monitor", &["--name", &n, "--once", "--json"]),
        1,
        true,
    );
}

/// filter (JSON on stderr): the `report`, and after it the `error` line of
/// a failed stage; a bad stage is a usage error.
#[test]
fn filter_lines_match_the_schema() {
    let env = Env::new();
    json_run_input(
        "filter",
        cmd(&env, "filter", &["--json", "add 1", "mul 2"]),
        b"1\n2\n3\n",
        0,
        false,
    );
    json_run_input(
        "filter",
        cmd(&env, "filter", &["--json", "neg"]),
        b"5\n",
        0,
        false,
    );
    json_run_input(
        "filter",
        cmd(&env, "filter", &["--json", "pass", "mul 2"]),
        b"1\nx\n",
        1,
        true,
    );
    json_run_input(
        "filter",
        cmd(&env, "filter", &["--json", "frob"]),
        b"",
        2,
        true,
    );
}

/// worker: `serve --json`'s log (children started, one timed out, one
/// ended by abort, stopping and stopped), `call --json` results and errors
/// with their kind, `list --json`; a missing pool and bad options as errors.
#[test]
fn worker_lines_match_the_schema() {
    let env = Env::new();
    let n = unique_name("jw");
    let mut serve = Live::start(
        "worker",
        cmd(
            &env,
            "worker",
            &[
                "serve",
                "--name",
                &n,
                "--workers",
                "1",
                "--task-timeout",
                "300ms",
                "--json",
            ],
        ),
    );
    serve.wait_event("serving");
    let call = |args: &[&str], code: i32, failure: bool| {
        let mut c = env.cmd("worker");
        c.args(["call", "--name", &n, "--json"]).args(args);
        json_run("worker", c, code, failure)
    };
    let r = call(&["add", "2", "3"], 0, false);
    assert_eq!(r[0]["result"], 5);
    let e = call(&["div", "1", "0"], 1, true);
    assert_eq!(e[0]["error_kind"], "failed");
    let e = call(&["sleep_ms", "5000"], 1, true);
    assert_eq!(e[0]["error_kind"], "timeout");
    serve.wait_event("task_timeout");
    let e = call(&["abort"], 1, true);
    assert_eq!(e[0]["error_kind"], "worker_died");
    let ended = serve.wait_event("worker_ended");
    assert_eq!(ended["worker_signal"], 6);
    json_run(
        "worker",
        cmd(&env, "worker", &["list", "--name", &n, "--json"]),
        0,
        false,
    );
    let log = serve.stop(Signal::SIGTERM, 0);
    assert_eq!(log.last().unwrap()["event"], "stopped");
    json_run(
        "worker",
        cmd(
            &env,
            "worker",
            &["call", "--name", "nobody", "--json", "add", "1", "2"],
        ),
        1,
        true,
    );
    json_run(
        "worker",
        cmd(
            &env,
            "worker",
            &["serve", "--name", &n, "--json", "--workers", "0"],
        ),
        2,
        true,
    );
    json_run(
        "worker",
        cmd(&env, "worker", &["list", "--json", "--bogus"]),
        2,
        true,
    );
}

/// ping-server and ping-client: `listening`, request lines (a ping, an
/// unknown request), `stopped`; replies, the summary, a flood; an unreachable
/// server as `lost`, `summary` and `error`; usage errors.
#[test]
fn ping_lines_match_the_schema() {
    let env = Env::new();
    let n = unique_name("jping");
    let mut server = Live::start(
        "ping-server",
        cmd(
            &env,
            "ping-server",
            &[
                "--tcp",
                "127.0.0.1:0",
                "--local",
                &n,
                "--threads",
                "1",
                "--json",
            ],
        ),
    );
    let tcp = server.wait_event("listening");
    assert_eq!(tcp["transport"], "tcp");
    server.wait_event("listening");
    let lines = json_run(
        "ping-client",
        cmd(
            &env,
            "ping-client",
            &["--local", &n, "-c", "2", "-i", "10ms", "-s", "3", "--json"],
        ),
        0,
        false,
    );
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["reply", "reply", "summary"]);
    json_run(
        "ping-client",
        cmd(
            &env,
            "ping-client",
            &["--local", &n, "--flood", "-c", "50", "--json"],
        ),
        0,
        false,
    );
    let mut s = TcpStream::connect(tcp["address"].as_str().unwrap()).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    s.write_all(b"hello\n").unwrap();
    let mut buf = [0u8; 64];
    let _ = s.read(&mut buf).unwrap();
    server.wait_event("unknown_request");
    drop(s);
    // A second server on the same port fails to bind.
    json_run(
        "ping-server",
        cmd(
            &env,
            "ping-server",
            &["--tcp", tcp["address"].as_str().unwrap(), "--json"],
        ),
        1,
        true,
    );
    let log = server.stop(Signal::SIGTERM, 0);
    assert_eq!(log.last().unwrap()["event"], "stopped");

    let lines = json_run(
        "ping-client",
        cmd(
            &env,
            "ping-client",
            &["--local", "nobody", "-c", "1", "--json"],
        ),
        1,
        true,
    );
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["lost", "summary", "error"]);
    json_run(
        "ping-client",
        cmd(
            &env,
            "ping-client",
            &["--local", "nobody", "--flood", "-c", "3", "--json"],
        ),
        1,
        true,
    );
    json_run(
        "ping-client",
        cmd(&env, "ping-client", &["-c", "0", "--json"]),
        2,
        true,
    );
    json_run(
        "ping-server",
        cmd(&env, "ping-server", &["--threads", "0", "--json"]),
        2,
        true,
    );
}

/// guard (JSON on stderr): `ended` for a command that exits, one killed at
/// its deadline, a watched pid; a command not found and a usage error as
/// `error` lines.
#[test]
fn guard_lines_match_the_schema() {
    let env = Env::new();
    let lines = json_run(
        "guard",
        cmd(&env, "guard", &["--json", "5", "sh", "-c", "exit 3"]),
        3,
        false,
    );
    assert_eq!(lines[0]["command_exit_code"], 3);
    assert_eq!(lines[0]["timed_out"], false);
    let lines = json_run(
        "guard",
        cmd(&env, "guard", &["--json", "0.1", "sleep", "30"]),
        124,
        false,
    );
    assert_eq!(lines[0]["timed_out"], true);
    assert_eq!(lines[0]["signals_sent"], serde_json::json!([15]));
    assert_eq!(lines[0]["command_signal"], 15);
    let mut sleeper = Command::new("sleep");
    sleeper.arg("0.2");
    let sleeper = Proc::spawn(sleeper);
    let lines = json_run(
        "guard",
        cmd(
            &env,
            "guard",
            &["--json", "--pid", &sleeper.pid().to_string(), "30"],
        ),
        0,
        false,
    );
    assert!(lines[0]["command"].is_null());
    drop(sleeper);
    json_run(
        "guard",
        cmd(&env, "guard", &["--json", "5", "/nonexistent/command"]),
        127,
        true,
    );
    json_run(
        "guard",
        cmd(&env, "guard", &["--json", "--bogus", "5", "true"]),
        125,
        true,
    );
}

/// scribe: `appended`, `verified`; a verification that fails (with its
/// problem) and a missing file as `error` lines.
#[test]
fn scribe_lines_match_the_schema() {
    let env = Env::new();
    let file = env.dir().join("shared.txt");
    let f = file.to_str().unwrap();
    json_run(
        "scribe",
        cmd(
            &env,
            "scribe",
            &["--file", f, "--id", "a", "--count", "3", "--json"],
        ),
        0,
        false,
    );
    json_run(
        "scribe",
        cmd(
            &env,
            "scribe",
            &["--verify", f, "--writers", "1", "--count", "3", "--json"],
        ),
        0,
        false,
    );
    let e = json_run(
        "scribe",
        cmd(&env, "scribe", &["--verify", f, "--writers", "2", "--json"]),
        1,
        true,
    );
    assert!(e[0]["problem"].is_string());
    let missing = env.dir().join("missing.txt");
    json_run(
        "scribe",
        cmd(
            &env,
            "scribe",
            &["--verify", missing.to_str().unwrap(), "--json"],
        ),
        1,
        true,
    );
}

/// gate: the demo's `started`/`finished`, `status` with a holder, `removed`;
/// a timeout waiting for a slot, a missing semaphore and a usage error as
/// `error` lines.
#[test]
fn gate_lines_match_the_schema() {
    let env = Env::new();
    let n = unique_name("jg");
    json_run(
        "gate",
        cmd(
            &env,
            "gate",
            &[
                "--name", &n, "--slots", "1", "--hold", "0", "--id", "x", "--json",
            ],
        ),
        0,
        false,
    );
    let mut holder = Live::start(
        "gate",
        cmd(
            &env,
            "gate",
            &["--name", &n, "--hold", "60s", "--id", "h", "--json"],
        ),
    );
    holder.wait_event("started");
    let st = json_run(
        "gate",
        cmd(&env, "gate", &["--name", &n, "--status", "--json"]),
        0,
        false,
    );
    assert_eq!(st[0]["holders"][0]["pid"], holder.proc.pid());
    let e = json_run(
        "gate",
        cmd(
            &env,
            "gate",
            &["--name", &n, "--timeout", "50ms", "--json", "--", "true"],
        ),
        75,
        true,
    );
    assert_eq!(e[0]["timeout_ms"], 50.0);
    let _ = holder.stop(Signal::SIGTERM, 143);
    json_run(
        "gate",
        cmd(&env, "gate", &["--name", &n, "--remove", "--json"]),
        0,
        false,
    );
    json_run(
        "gate",
        cmd(&env, "gate", &["--name", &n, "--status", "--json"]),
        1,
        true,
    );
    json_run("gate", cmd(&env, "gate", &["--json", "--stauts"]), 2, true);
}

/// discover: `found` for two members, `group` and `member` from --list; a
/// group that never completes as an `error` line.
#[test]
fn discover_lines_match_the_schema() {
    let env = Env::new();
    let n = unique_name("jd");
    let mut a = cmd(
        &env,
        "discover",
        &["--name", &n, "--id", "a", "--members", "2", "--json"],
    );
    a.stdin(Stdio::null());
    let a = Proc::spawn(a);
    let a_pid = a.pid() as u32;
    wait_until("a is listed", || {
        let out = common::run(cmd(&env, "discover", &["--list", "--name", &n, "--json"]));
        text(&out.stdout).contains("\"event\":\"member\"")
    });
    let list = json_run(
        "discover",
        cmd(&env, "discover", &["--list", "--name", &n, "--json"]),
        0,
        false,
    );
    assert_eq!(list[0]["event"], "group");
    assert_eq!(list[1]["member_pid"], a_pid);
    json_run(
        "discover",
        cmd(
            &env,
            "discover",
            &["--name", &n, "--id", "b", "--members", "2", "--json"],
        ),
        0,
        false,
    );
    check_output("discover", a_pid, &a.finish(), 0, false);
    json_run(
        "discover",
        cmd(
            &env,
            "discover",
            &[
                "--name",
                &unique_name("jd"),
                "--id",
                "x",
                "--members",
                "2",
                "--timeout",
                "100ms",
                "--json",
            ],
        ),
        1,
        true,
    );
}

/// syncomm: `ls` (`dir`, `object`), `clean` (`dir`, `removal`), `top`
/// (`frame`); usage errors as `error` lines.
#[test]
fn syncomm_lines_match_the_schema() {
    let env = Env::new();
    let n = unique_name("js");
    // A board left behind by a producer that is gone: stale.
    let out = common::run(cmd(
        &env,
        "producer",
        &["--name", &n, "--count", "3", "--keep"],
    ));
    assert!(out.status.success());
    let ls = json_run("syncomm", cmd(&env, "syncomm", &["ls", "--json"]), 0, false);
    assert_eq!(ls[0]["event"], "dir");
    assert!(ls
        .iter()
        .any(|l| l["event"] == "object" && l["name"] == n.as_str()));
    json_run(
        "syncomm",
        cmd(
            &env,
            "syncomm",
            &["top", "--json", "--count", "2", "--interval", "20ms"],
        ),
        0,
        false,
    );
    let clean = json_run(
        "syncomm",
        cmd(&env, "syncomm", &["clean", "--json"]),
        0,
        false,
    );
    assert!(clean
        .iter()
        .any(|l| l["event"] == "removal" && l["removed"] == true));
    json_run(
        "syncomm",
        cmd(&env, "syncomm", &["top", "--json", "--interval", "0"]),
        2,
        true,
    );
    json_run(
        "syncomm",
        cmd(&env, "syncomm", &["ls", "--json", "--bogus"]),
        2,
        true,
    );
}

/// syncomm-chaos: the `report` of a one-second run of one scenario; an
/// unknown scenario as an `error` line.
#[test]
fn chaos_lines_match_the_schema() {
    let env = Env::new();
    let bins = chaos_bin().parent().unwrap().to_owned();
    let mut c = Command::new(chaos_bin());
    c.env("SYNCOMM_DIR", env.dir()).env_remove("RUST_LOG");
    c.args([
        "--json",
        "--only",
        "filter",
        "--seconds",
        "1",
        "--seed",
        "7",
        "--bins",
    ])
    .arg(&bins);
    let lines = json_run("syncomm-chaos", c, 0, false);
    assert_eq!(lines[0]["event"], "report");
    let mut c = Command::new(chaos_bin());
    c.env("SYNCOMM_DIR", env.dir()).env_remove("RUST_LOG");
    c.args(["--json", "--only", "bogus", "--seconds", "1"]);
    json_run("syncomm-chaos", c, 2, true);
}

/// The schema describes exactly the package's programs (the man-page
/// generator's list, itself checked against Cargo.toml) but `syncomm-bench`,
/// each of which has a run above, and the schema itself parses: a program
/// added to the package but not to docs/JSON.md, or the reverse, fails.
#[test]
fn every_documented_program_is_run() {
    let documented: BTreeSet<&str> = schema().keys().map(String::as_str).collect();
    // Every program of the package but the benchmark suite, whose results
    // go to results.json instead.
    let run_here: BTreeSet<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| *p != "syncomm-bench")
        .collect();
    assert_eq!(documented, run_here);
    for (p, s) in schema() {
        assert!(
            s.events.contains_key("error"),
            "{p} documents no error event"
        );
        for (e, fields) in &s.events {
            assert!(is_snake_case(e), "{p}: event {e}");
            for f in fields {
                assert!(is_snake_case(&f.name), "{p} {e}: field {}", f.name);
            }
        }
    }
}

/// The validator is not vacuous: lines that break the envelope, the
/// conventions or the documented fields are each refused.
#[test]
fn validator_rejects_bad_lines() {
    let s = schema();
    let me = std::process::id();
    let now = now_ms();
    let good = format!(
        "{{\"program\":\"gate\",\"event\":\"removed\",\"pid\":{me},\"ts_ms\":{now},\"name\":\"x\"}}"
    );
    check_line(s, "gate", Some(me), &good).expect("a good line passes");
    let bad = [
        // no envelope
        "{\"name\":\"x\"}".to_owned(),
        // envelope out of order
        format!("{{\"event\":\"removed\",\"program\":\"gate\",\"pid\":{me},\"ts_ms\":{now},\"name\":\"x\"}}"),
        // another program's name, another pid, seconds instead of ms
        good.replace("\"gate\"", "\"monitor\""),
        good.replace(&format!("\"pid\":{me}"), "\"pid\":1"),
        good.replace(&now.to_string(), &(now / 1000).to_string()),
        // an undocumented event, a missing field, a wrong type, an extra field
        good.replace("removed", "vanished"),
        good.replace(",\"name\":\"x\"", ""),
        good.replace("\"x\"", "7"),
        good.replace("}", ",\"extra\":1}"),
    ];
    for line in &bad {
        assert!(
            check_line(s, "gate", Some(me), line).is_err(),
            "accepted: {line}"
        );
    }
    // The conventions, on a nested object of a documented array field.
    let status = |holders: &str| {
        format!(
            "{{\"program\":\"gate\",\"event\":\"status\",\"pid\":{me},\"ts_ms\":{now},\
             \"name\":\"x\",\"slots\":1,\"free\":0,\"holders\":[{holders}],\"waiting\":0}}"
        )
    };
    check_line(
        s,
        "gate",
        Some(me),
        &status("{\"slot\":0,\"pid\":5,\"command\":null}"),
    )
    .expect("a good status passes");
    for holders in [
        "{\"Slot\":0}",                // not snake_case
        "{\"holderPid\":5}",           // camelCase pid
        "{\"holder_pid\":\"5\"}",      // a pid as a string
        "{\"elapsed\":1.5}",           // a time without its unit
        "{\"hold_ms\":\"1s\"}",        // a time that is not a number
        "{\"state\":\"reader-left\"}", // an enum value not snake_case
        "{\"rtt_ms\":0.12345}",        // more than 3 decimals
    ] {
        let line = status(holders);
        assert!(
            check_line(s, "gate", Some(me), &line).is_err(),
            "accepted: {line}"
        );
    }
}
