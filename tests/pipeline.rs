//! End-to-end tests of `filter` (the pipeline scenario) on the real binary:
//! the seed's chain, every stage, faults (bad records, killed stages, a
//! reader that leaves, a SIGKILLed parent) and the `--json` summary.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::thread;

use common::*;
use nix::sys::signal::Signal;

/// Runs `filter ARGS` with `input` on stdin and collects everything.
fn filter(args: &[&str], input: &[u8]) -> Output {
    let env = Env::new();
    let mut cmd = env.cmd("filter");
    cmd.args(args).stdin(Stdio::piped());
    let mut p = Proc::spawn(cmd);
    let mut stdin = p.child.stdin.take().expect("stdin piped");
    let input = input.to_vec();
    // A thread, so a large input never deadlocks against a full stdout pipe.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = p.finish();
    writer.join().unwrap();
    out
}

/// The lines of a program's stdout.
fn lines(out: &Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_owned).collect()
}

/// The children of `pid` (pid and command line), read from /proc.
fn children_of(pid: i32) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(Some(stat)) = syncomm_sys::proc::read_stat(child) else {
            continue;
        };
        if stat.ppid == pid {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            found.push((child, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found.sort();
    found
}

/// Waits until `pid` has `n` stage children that have exec'd (their command
/// line carries the hidden `--report-fd`), and returns them.
fn wait_for_stages(pid: i32, n: usize) -> Vec<(i32, String)> {
    let mut stages = Vec::new();
    wait_until("the stage processes", || {
        stages = children_of(pid);
        stages.len() == n && stages.iter().all(|(_, c)| c.contains("--report-fd"))
    });
    stages
}

/// The seed's chain: `seq 1 5 | filter 'add 1' 'mul 2' neg` prints -4 -6 -8 -10 -12
/// and exits 0 with nothing on stderr.
#[test]
fn seed_chain_adds_doubles_negates() {
    let out = filter(&["add 1", "mul 2", "neg"], b"1\n2\n3\n4\n5\n");
    assert_eq!(text(&out.stderr), "");
    assert_eq!(lines(&out), ["-4", "-6", "-8", "-10", "-12"]);
    assert!(out.status.success());
}

/// Every stage does what `--list` says, alone (in process) and inside a chain.
#[test]
fn each_stage_transforms_its_records() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("add 10", b"1\n-20\n", "11\n-10\n"),
        ("mul -3", b"4\n0\n", "-12\n0\n"),
        ("neg", b"5\n-6\n", "-5\n6\n"),
        ("square", b"-7\n3\n", "49\n9\n"),
        ("upper", "abc\nÉté\n".as_bytes(), "ABC\nÉTÉ\n"),
        ("lower", b"ABC\nMiXeD\n", "abc\nmixed\n"),
        ("trim", b"  x  \n\ty z\t\n", "x\ny z\n"),
        (
            "grep err",
            b"ok\nerror 1\nfine\nerr 2\n",
            "error 1\nerr 2\n",
        ),
        ("pass", b"a\n\nb", "a\n\nb"),
        ("delay 1ms", b"p\nq\n", "p\nq\n"),
    ];
    for (spec, input, want) in cases {
        let out = filter(&[spec], input);
        assert!(out.status.success(), "{spec}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), *want, "{spec} alone");
        let out = filter(&["pass", spec], input);
        assert!(out.status.success(), "{spec}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), *want, "{spec} in a chain");
    }
    let out = filter(&["--list"], b"");
    assert!(out.status.success());
    for stage in [
        "add N",
        "mul N",
        "neg",
        "square",
        "upper",
        "lower",
        "trim",
        "grep TEXT",
        "pass",
        "delay DUR",
    ] {
        assert!(text(&out.stdout).contains(stage), "--list names {stage}");
    }
}

/// A million records go through three processes in order, none lost or doubled.
#[test]
fn order_is_preserved_over_a_million_records() {
    let n = 1_000_000i64;
    let input: String = (1..=n).map(|i| format!("{i}\n")).collect();
    let out = filter(&["add 1", "mul 2", "neg"], input.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want: String = (1..=n).map(|i| format!("{}\n", -(i + 1) * 2)).collect();
    assert!(
        out.stdout == want.as_bytes(),
        "output differs from the expected sequence"
    );
}

/// A bad record in the middle stage fails the command with the exact message
/// naming the stage and the line, and the records before it still come out.
#[test]
fn bad_record_in_the_middle_stage_is_named() {
    let out = filter(&["pass", "mul 2", "neg"], b"1\n2\nabc\n4\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "filter: stage 2 'mul 2' failed: line 3: \"abc\" is not an integer\n"
    );
    assert_eq!(lines(&out), ["-2", "-4"]);
}

/// Overflow is an error, never a wrap, in one stage and in a chain.
#[test]
fn overflow_is_an_error() {
    let out = filter(&["add 1"], b"9223372036854775807\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "filter: stage 1 'add 1' failed: line 1: 9223372036854775807 + 1 overflows a 64-bit integer\n"
    );
    let out = filter(&["pass", "square"], b"3\n4294967296\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("stage 2 'square' failed: line 2: 4294967296^2 overflows"));
    assert_eq!(lines(&out), ["9"]);
    let out = filter(&["neg"], b"99999999999999999999\n");
    assert!(text(&out.stderr).contains("outside the 64-bit integer range"));
}

/// Invalid UTF-8 in a text stage is an error naming the line, not a panic.
#[test]
fn invalid_utf8_names_the_line() {
    let out = filter(&["upper"], b"fine\nbad \xff\xfe here\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "filter: stage 1 'upper' failed: line 2: invalid UTF-8 at byte 5\n"
    );
    assert_eq!(lines(&out), ["FINE"]);
    let out = filter(&["pass", "grep x"], b"x\n\xc3\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("stage 2 'grep x' failed: line 2: invalid UTF-8"));
}

/// A bad stage spec is a usage error (exit 2) that says what is wrong,
/// including the classic mistake of not quoting a stage.
#[test]
fn bad_stage_spec_is_a_usage_error() {
    for args in [
        &["add"][..],
        &["frobnicate"],
        &["add", "1"],
        &["mul x"],
        &["pass", "neg 3"],
        &[],
    ] {
        let out = filter(args, b"");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).starts_with("filter: ") || text(&out.stderr).contains("Usage"));
    }
    let out = filter(&["add", "1"], b"");
    assert!(
        text(&out.stderr).contains("quote each stage"),
        "{}",
        text(&out.stderr)
    );
}

/// `--json` ends stderr with a summary of records in and out per stage.
#[test]
fn json_summary_counts_records_per_stage() {
    let out = filter(&["--json", "grep 1", "add 1", "pass"], b"1\n2\n11\n3\n12\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines(&out), ["2", "12", "13"]);
    let err = text(&out.stderr);
    let last = err.lines().last().expect("a summary line");
    let v: serde_json::Value = serde_json::from_str(last).expect("JSON summary");
    assert_eq!(v["event"], "report");
    assert_eq!(v["ok"], true);
    let counts: Vec<(u64, u64)> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["in"].as_u64().unwrap(), s["out"].as_u64().unwrap()))
        .collect();
    assert_eq!(counts, [(5, 3), (3, 3), (3, 3)]);
    assert_eq!(v["stages"][1]["spec"], "add 1");
    assert_eq!(v["stages"][1]["status"], "ok");

    // A failure: the report, then the error line, last.
    let out = filter(&["--json", "pass", "mul 2"], b"1\nx\n");
    let err = text(&out.stderr);
    let json: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let [v, e] = json.as_slice() else {
        panic!("expected a report and an error line: {err}")
    };
    assert_eq!(v["event"], "report");
    assert_eq!(v["ok"], false);
    assert_eq!(v["stages"][1]["status"], "failed");
    assert_eq!(v["stages"][1]["error"], "line 2: \"x\" is not an integer");
    assert_eq!(e["event"], "error");
    assert_eq!(e["exit_code"], 1);
    assert_eq!(
        e["error"],
        "stage 2 'mul 2' failed: line 2: \"x\" is not an integer"
    );
}

/// Records flow through the chain while input is still open: the first
/// result arrives before the input ends (streaming, not read-all-first).
#[test]
fn records_flow_before_input_ends() {
    let env = Env::new();
    let mut cmd = env.cmd("filter");
    cmd.args(["add 1", "mul 2", "neg"]).stdin(Stdio::piped());
    let mut p = Proc::spawn(cmd);
    let mut stdin = p.child.stdin.take().unwrap();
    let out = p.stdout_lines();
    stdin.write_all(b"20\n").unwrap();
    assert_eq!(out.next_line().as_deref(), Some("-42"));
    stdin.write_all(b"1\n").unwrap();
    assert_eq!(out.next_line().as_deref(), Some("-4"));
    drop(stdin);
    assert_eq!(out.next_line(), None);
    assert!(p.wait_timeout(HANG).success());
}

/// A stage killed with SIGKILL mid-stream fails the whole command (exit 1)
/// with a message naming the stage and the signal; no stage is left running.
#[test]
fn stage_killed_mid_stream_fails_the_command() {
    let env = Env::new();
    let mut cmd = env.cmd("filter");
    cmd.args(["add 1", "mul 2", "neg"]).stdin(Stdio::piped());
    let mut p = Proc::spawn(cmd);
    let mut stdin = p.child.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        let chunk: String = (0..1000).map(|i| format!("{i}\n")).collect();
        while stdin.write_all(chunk.as_bytes()).is_ok() {}
    });
    let out = p.stdout_lines();
    let err = p.stderr_lines();
    assert!(out.next_line().is_some(), "records are flowing");
    let stages = wait_for_stages(p.pid(), 3);
    let (victim, cmdline) = stages
        .iter()
        .find(|(_, c)| c.contains("mul 2"))
        .unwrap()
        .clone();
    assert!(cmdline.contains("mul 2"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    let status = p.wait_timeout(HANG);
    assert_eq!(status.code(), Some(1));
    let msg = err.wait_for(|l| l.contains("stage"));
    assert_eq!(
        msg,
        "filter: stage 2 'mul 2' was killed by signal 9 (SIGKILL)"
    );
    writer.join().unwrap();
    for (pid, _) in stages {
        assert!(!pid_alive(pid), "stage {pid} still running");
    }
}

/// `filter ... | head -1` on endless input: once the reader leaves, the
/// whole chain ends with exit 0 and prints nothing on stderr.
#[test]
fn early_reader_exit_is_a_quiet_success() {
    let env = Env::new();
    let mut yes = Command::new("yes");
    yes.arg("1").stdout(Stdio::piped()).stderr(Stdio::null());
    let mut yes = Proc::spawn_raw(yes);
    let mut cmd = env.cmd("filter");
    cmd.args(["add 1", "mul 2", "neg"])
        .stdin(Stdio::from(yes.child.stdout.take().unwrap()));
    let mut p = Proc::spawn(cmd);
    {
        let mut first = String::new();
        BufReader::new(p.child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first, "-4\n");
        // The reader goes away here, as `head -1` does.
    }
    let out = p.finish();
    assert_eq!(text(&out.stderr), "", "nothing on stderr");
    assert_eq!(out.status.code(), Some(0));
    yes.kill9();
}

/// A parent killed with SIGKILL leaves no stage running: each child asked the
/// kernel to kill it when its parent dies.
#[test]
fn sigkilled_parent_leaves_no_stage_running() {
    let env = Env::new();
    let mut cmd = env.cmd("filter");
    // stdin stays open and idle: the stages would wait forever on their own.
    cmd.args(["pass", "pass", "pass"]).stdin(Stdio::piped());
    let mut p = Proc::spawn(cmd);
    let stages = wait_for_stages(p.pid(), 3);
    p.kill9();
    p.wait_timeout(HANG);
    for (pid, _) in &stages {
        wait_until("the stage to die with its parent", || !pid_alive(*pid));
    }
}

/// SIGINT to the parent stops every stage, reaps them, and exits 130.
#[test]
fn sigint_stops_every_stage() {
    let env = Env::new();
    let mut cmd = env.cmd("filter");
    cmd.args(["pass", "add 1"]).stdin(Stdio::piped());
    let mut p = Proc::spawn(cmd);
    let stages = wait_for_stages(p.pid(), 2);
    p.signal(Signal::SIGINT);
    let status = p.wait_timeout(HANG);
    assert_eq!(status.code(), Some(130));
    for (pid, _) in &stages {
        assert!(
            !pid_alive(*pid),
            "stage {pid} still running after the parent exited"
        );
    }
}

/// A failing stage stops the stages upstream of it even when they are idle
/// (input still open, nothing arriving), so the command ends at once with
/// the failure instead of hanging until input ends.
#[test]
fn failing_stage_stops_idle_upstream_stages() {
    let env = Env::new();
    let mut cmd = env.cmd("filter");
    cmd.args(["--json", "pass", "mul 2"]).stdin(Stdio::piped());
    let mut p = Proc::spawn(cmd);
    let mut stdin = p.child.stdin.take().unwrap();
    stdin.write_all(b"4\nfour\n").unwrap();
    // stdin stays open: stage 1 would wait for more input forever.
    let status = p.wait_timeout(HANG);
    assert_eq!(status.code(), Some(1));
    let out = p.finish();
    let err = text(&out.stderr);
    let mut lines = err.lines();
    assert_eq!(
        lines.next(),
        Some("filter: stage 2 'mul 2' failed: line 2: \"four\" is not an integer")
    );
    let v: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(v["event"], "report");
    assert_eq!(v["stages"][0]["status"], "stopped");
    assert_eq!(text(&out.stdout), "8\n");
    drop(stdin);
}

/// `--help` shows an example and `--version` the version (the shared CLI conventions).
#[test]
fn help_has_an_example() {
    let out = filter(&["--help"], b"");
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("filter 'add 1' 'mul 2' neg"));
    let out = filter(&["--version"], b"");
    assert!(text(&out.stdout).contains("0.1.0"));
}
