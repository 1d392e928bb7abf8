//! Durations on the command line, on the real binaries: one parser for every
//! program, which refuses a value above its documented maximum (100 years)
//! with a usage error (exit 2, one error line, no panic) instead of letting
//! it overflow the clock later, accepts the maximum itself, and rounds a
//! nonzero value below 1 ns up to 1 ns instead of reading it as "none".
mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{text, unique_name, Env, Proc};

/// Far above the maximum: near `i64::MAX` seconds, where adding it to the
/// clock overflowed (a panic, exit 101) or a sleep never ended.
const HUGE: &str = "9223372036854775000";
/// One day above the maximum of 100 years (36,525 days).
const JUST_ABOVE: &str = "36526d";
/// The maximum itself.
const MAX: &str = "36525d";

/// Runs `cmd` with stdin closed; a hang is a failure after 20 s (the
/// unfixed programs slept "for ever" or served until killed).
fn run_bounded(mut cmd: Command) -> Output {
    cmd.stdin(std::process::Stdio::null());
    let mut p = Proc::spawn(cmd);
    p.wait_timeout(Duration::from_secs(20));
    p.finish()
}

/// Asserts a usage error about a duration: exit 2, no panic, and exactly
/// one line that states the error.
fn assert_refused(what: &str, out: &Output) {
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{what}: panicked: {err}");
    assert_eq!(out.status.code(), Some(2), "{what}: exit status; {err}");
    let error_lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("invalid duration"))
        .collect();
    assert_eq!(error_lines.len(), 1, "{what}: one error line: {err}");
    assert!(
        error_lines[0].contains("100 years"),
        "{what}: the line names the maximum: {err}"
    );
}

/// Every program and option that takes a duration refuses a value above the
/// maximum (far above it, and one day above it) with exit 2 and one line,
/// before doing anything: `discover --timeout`, `gate --timeout/--hold`,
/// `scribe --hold`, `ping-client -W/-i/--duration`, `worker serve
/// --task-timeout` (which died on its first call), `worker call --timeout`,
/// `consumer --timeout`, `monitor --interval/--timeout`, `producer
/// --interval`, `ping-server --idle-timeout` and filter's `delay` stage.
#[test]
fn out_of_range_durations_are_refused_in_one_line() {
    let env = Env::new();
    let file = env.dir().join("shared.txt");
    let file = file.to_str().unwrap();
    let name = unique_name("dur");
    for value in [HUGE, JUST_ABOVE] {
        let cases: Vec<(&str, Vec<String>)> = vec![
            (
                "discover",
                vec!["--id", "a", "--members", "2", "--timeout", value],
            ),
            (
                "gate",
                vec!["--name", &name, "--timeout", value, "--", "true"],
            ),
            ("gate", vec!["--name", &name, "--hold", value, "--id", "1"]),
            (
                "scribe",
                vec!["--file", file, "--count", "1", "--hold", value],
            ),
            ("ping-client", vec!["-c", "1", "-W", value]),
            ("ping-client", vec!["-c", "1", "-i", value]),
            ("ping-client", vec!["--flood", "--duration", value]),
            (
                "worker",
                vec![
                    "serve",
                    "--name",
                    &name,
                    "--workers",
                    "1",
                    "--task-timeout",
                    value,
                ],
            ),
            (
                "worker",
                vec!["call", "--name", &name, "--timeout", value, "add", "1", "2"],
            ),
            ("consumer", vec!["--name", &name, "--timeout", value]),
            (
                "monitor",
                vec!["--name", &name, "--once", "--timeout", value],
            ),
            ("monitor", vec!["--name", &name, "--interval", value]),
            ("producer", vec!["--name", &name, "--interval", value]),
            (
                "ping-server",
                vec!["--no-tcp", "--local", &name, "--idle-timeout", value],
            ),
        ]
        .into_iter()
        .map(|(p, a)| (p, a.into_iter().map(str::to_owned).collect()))
        .collect();
        for (program, args) in cases {
            let mut c = env.cmd(program);
            c.args(&args);
            let out = run_bounded(c);
            assert_refused(&format!("{program} {}", args.join(" ")), &out);
        }
        // filter reads its stage specs itself; a bad spec is a usage error too.
        let mut c = env.cmd("filter");
        c.arg(format!("delay {value}"));
        let out = run_bounded(c);
        assert_refused(&format!("filter 'delay {value}'"), &out);
    }
    // Nothing was created by the refused runs: no scribe file, no sockets.
    assert!(!std::path::Path::new(file).exists(), "scribe wrote nothing");
}

/// The maximum itself is accepted and works as a (very long) limit: no
/// overflow when it is added to the clock. A gate with a free slot runs its
/// command; discover with one member finds itself; ping-client waits for an
/// answer (refused here: no server) and reports it; `worker serve
/// --task-timeout` answers a call correctly (it died on the first one).
#[test]
fn the_maximum_is_accepted_and_works() {
    let env = Env::new();
    let name = unique_name("durmax");

    let mut c = env.cmd("gate");
    c.args(["--name", &name, "--timeout", MAX, "--", "echo", "in"]);
    let out = run_bounded(c);
    assert!(out.status.success(), "gate: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "in\n");
    let mut c = env.cmd("gate");
    c.args(["--remove", "--name", &name]);
    assert!(run_bounded(c).status.success());

    let mut c = env.cmd("discover");
    c.args([
        "--name",
        &name,
        "--id",
        "a",
        "--members",
        "1",
        "--timeout",
        MAX,
    ]);
    let out = run_bounded(c);
    assert!(out.status.success(), "discover: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a found: [a]\n");

    let mut c = env.cmd("ping-client");
    c.args(["--local", &name, "-c", "1", "-W", MAX]);
    let out = run_bounded(c);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"));

    let mut c = env.cmd("worker");
    c.args([
        "serve",
        "--name",
        &name,
        "--workers",
        "1",
        "--task-timeout",
        MAX,
    ]);
    let mut server = Proc::spawn(c);
    let lines = server.stdout_lines();
    lines.wait_for(|l| l.starts_with("serving "));
    let mut c = env.cmd("worker");
    c.args(["call", "--name", &name, "--timeout", MAX, "add", "2", "3"]);
    let out = run_bounded(c);
    assert!(out.status.success(), "worker call: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "5\n");
    assert!(server.is_running(), "the server is still serving");
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait_timeout(Duration::from_secs(20));
}

/// A nonzero duration below 1 ns is 1 ns, not zero: `guard 0.0000000001`
/// has a deadline that has passed at once (timeout(1) exits 124 too), where
/// it used to disable the deadline and wait for the command.
#[test]
fn below_a_nanosecond_is_not_zero() {
    let env = Env::new();
    for tiny in ["0.0000000001", "0.0000000001s", "0.1ns"] {
        let mut c = env.cmd("guard");
        c.args([tiny, "sleep", "10"]);
        let out = run_bounded(c);
        assert_eq!(
            out.status.code(),
            Some(124),
            "guard {tiny}: {}",
            text(&out.stderr)
        );
    }
    // Zero still means "no deadline" for guard, as for timeout(1).
    let mut c = env.cmd("guard");
    c.args(["0", "true"]);
    assert_eq!(run_bounded(c).status.code(), Some(0));
    // Far above the maximum, guard (like timeout(1)) waits without a deadline.
    let mut c = env.cmd("guard");
    c.args([HUGE, "true"]);
    let out = run_bounded(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `0` and `inf` mean what docs/DURATIONS.md says: `inf` is no limit
/// everywhere; a limit on something running (`--task-timeout`, `worker call
/// --timeout`, `ping-client -W`, guard) with `0` is no limit too, so the call
/// or ping that takes a while still succeeds; a refresh interval of `0` or
/// below 1ms is refused, as is a flood of `--duration 0`.
#[test]
fn zero_and_inf_mean_what_the_table_says() {
    let env = Env::new();
    let name = unique_name("zi");
    // A limit of 0 or inf on something running: no limit.
    let mut serve = env.cmd("worker");
    serve.args([
        "serve",
        "--name",
        &name,
        "--workers",
        "1",
        "--task-timeout",
        "0",
    ]);
    let mut server = Proc::spawn(serve);
    let lines = server.stdout_lines();
    lines.wait_for(|l| l.starts_with("serving "));
    for timeout in ["0", "inf", "INFINITY"] {
        let mut c = env.cmd("worker");
        c.args([
            "call",
            "--name",
            &name,
            "--timeout",
            timeout,
            "sleep_ms",
            "200",
        ]);
        let out = run_bounded(c);
        assert_eq!(
            out.status.code(),
            Some(0),
            "--timeout {timeout}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).trim(), "200");
    }
    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(server.wait_timeout(Duration::from_secs(20)).code(), Some(0));

    let ping = unique_name("zi");
    let mut ps = env.cmd("ping-server");
    ps.args(["--local", &ping, "--tcp", "127.0.0.1:0", "--quiet"]);
    let _ping_server = Proc::spawn(ps);
    let sock = env.dir().join(format!("ping.{ping}.sock"));
    common::wait_until("the ping server's socket", || sock.exists());
    for w in ["0", "inf"] {
        let mut c = env.cmd("ping-client");
        c.args(["--local", &ping, "-c", "2", "-i", "0", "-W", w]);
        let out = run_bounded(c);
        assert_eq!(out.status.code(), Some(0), "-W {w}: {}", text(&out.stderr));
    }
    for limit in ["0", "inf"] {
        let mut c = env.cmd("guard");
        c.args([limit, "sh", "-c", "exit 3"]);
        assert_eq!(run_bounded(c).status.code(), Some(3), "guard {limit}");
    }
    // A wait of inf: as long as it takes (here: a free slot, at once).
    let gate = unique_name("zi");
    let mut c = env.cmd("gate");
    c.args([
        "--name",
        &gate,
        "--timeout",
        "inf",
        "--",
        "sh",
        "-c",
        "exit 4",
    ]);
    assert_eq!(run_bounded(c).status.code(), Some(4));
    let mut c = env.cmd("gate");
    c.args(["--name", &gate, "--remove"]);
    assert_eq!(run_bounded(c).status.code(), Some(0));

    // Refused: a refresh below 1ms, a flood of no time.
    for (prog, args) in [
        (
            "monitor",
            &["--name", &name, "--interval", "0", "--once"][..],
        ),
        (
            "monitor",
            &["--name", &name, "--interval", "0.5ms", "--once"][..],
        ),
        ("syncomm", &["top", "--interval", "0", "--count", "1"][..]),
        (
            "ping-client",
            &["--local", &ping, "--flood", "--duration", "0"][..],
        ),
    ] {
        let mut c = env.cmd(prog);
        c.args(args);
        let out = run_bounded(c);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{prog} {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{prog} {args:?}: one line: {err}");
    }
}
