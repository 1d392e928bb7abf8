//! guard: a drop-in superset of timeout(1) that also kills the whole tree.
//!
//! Every exit code is checked against what GNU timeout(1) does with the same
//! arguments, side by side; then what timeout(1) does not do: tree kill,
//! USR1/USR2 forwarding, dying with guard, and watching a running process.
mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};

use common::{pid_alive, run, text, wait_until, Env, Proc};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The status as a shell's `$?` shows it: the exit code, or 128+N for signal N.
fn shell_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or(status.signal().map(|s| 128 + s))
        .expect("exited or signalled")
}

fn guard(env: &Env, args: &[&str]) -> Output {
    let mut c = env.cmd("guard");
    c.args(args);
    run(c)
}

/// guard started with every signal at its default action. guard keeps a
/// signal it inherits as ignored (as `nohup` expects), and a test runner
/// started in the background by a script ignores INT and QUIT (under `nohup`,
/// HUP too); a test that sends guard one of those must not depend on that.
fn guard_with_default_signals(env: &Env) -> Command {
    let mut c = Command::new("env");
    c.env("SYNCOMM_DIR", env.dir());
    c.args(["--default-signal", env!("CARGO_BIN_EXE_guard")]);
    c
}

fn timeout(args: &[&str]) -> Output {
    let mut c = Command::new("timeout");
    c.args(args);
    run(c)
}

/// Processes to SIGKILL at the end of a test, whatever happened.
struct Doomed(Vec<i32>);

impl Drop for Doomed {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if pid > 1 && pid_alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Whether process `pid` has a pidfd open.
fn holds_pidfd(pid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.flatten()
        .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("pidfd")))
}

fn read_pid(path: &Path) -> i32 {
    wait_until("a pid file", || {
        std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n'))
    });
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .expect("a pid in the file")
}

/// Every exit status timeout(1) documents comes out of guard identically:
/// 0, the command's own status (also of a script without `#!`, which
/// execvp runs with /bin/sh), 124 at the deadline, 143 with
/// --preserve-status, 137 for -s KILL, 127 not found, 126 not executable,
/// 0 as DURATION disabling the deadline, and a command killed by a signal
/// of its own (guard dies of the same signal, as timeout does).
#[test]
fn exit_codes_match_timeout() {
    let env = Env::new();
    let script = env.dir().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let script = script.to_str().unwrap();
    // An executable script without "#!": execvp runs it with /bin/sh.
    let bare = env.dir().join("bare-script");
    std::fs::write(&bare, "exit 5\n").unwrap();
    std::fs::set_permissions(&bare, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bare = bare.to_str().unwrap();
    let cases: &[(&[&str], i32)] = &[
        (&["30", bare], 5),
        (&["30", "true"], 0),
        (&["30", "sh", "-c", "exit 3"], 3),
        (&["0.2", "sleep", "30"], 124),
        (&["--preserve-status", "0.2", "sleep", "30"], 128 + 15),
        (&["-s", "KILL", "0.2", "sleep", "30"], 137),
        (&["-s", "9", "--foreground", "0.2", "sleep", "30"], 137),
        (&["30", "/nonexistent/guard-test-command"], 127),
        (&["30", script], 126),
        (&["0", "sh", "-c", "exit 4"], 4),
        (&["30", "sh", "-c", "kill -USR1 $$"], 128 + 10),
    ];
    for (args, want) in cases {
        let g = guard(&env, args);
        let t = timeout(args);
        assert_eq!(
            shell_code(g.status),
            *want,
            "guard {args:?}: {}",
            text(&g.stderr)
        );
        assert_eq!(
            shell_code(t.status),
            *want,
            "timeout {args:?} (the reference)"
        );
    }
}

/// A command that dies of a real-time signal (34..=64, which have no name in
/// nix's `Signal`) is reported exactly as timeout(1) reports it, where guard
/// used to fail with 125 ("collecting the command's status: Invalid
/// argument"): RTMIN sent at the deadline gives 124 (162 with
/// --preserve-status, RTMAX-1 as a number too), and a command that kills
/// itself with RTMIN makes guard die of RTMIN as well (a shell sees 162).
#[test]
fn real_time_signals_are_reported_like_timeout() {
    let env = Env::new();
    let rtmin = libc::SIGRTMIN();
    let rtmax_1 = (libc::SIGRTMAX() - 1).to_string();
    let cases: &[(&[&str], i32)] = &[
        (&["-s", "RTMIN", "0.1", "sleep", "30"], 124),
        (&["-s", &rtmax_1, "0.1", "sleep", "30"], 124),
        (
            &["--preserve-status", "-s", "RTMIN", "0.1", "sleep", "30"],
            128 + rtmin,
        ),
        (&["30", "sh", "-c", "kill -s RTMIN $$"], 128 + rtmin),
        (
            &["30", "sh", "-c", "kill -s RTMAX $$"],
            128 + libc::SIGRTMAX(),
        ),
    ];
    for (args, want) in cases {
        let g = guard(&env, args);
        let t = timeout(args);
        assert_eq!(
            shell_code(g.status),
            *want,
            "guard {args:?}: {}",
            text(&g.stderr)
        );
        assert_eq!(
            shell_code(t.status),
            *want,
            "timeout {args:?} (the reference)"
        );
        // The same kind of ending: an exit code, or death by that signal.
        assert_eq!(g.status.signal(), t.status.signal(), "guard {args:?}");
        assert!(
            text(&g.stderr).is_empty(),
            "guard {args:?}: {}",
            text(&g.stderr)
        );
    }
}

/// Bad arguments are guard's own failure, 125 as in timeout(1) (not clap's
/// 2), with one clear line naming what was wrong.
#[test]
fn usage_errors_exit_125_with_a_clear_message() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (&["soon", "true"], "invalid time interval 'soon'"),
        (&["-k", "x", "1", "true"], "invalid time interval 'x'"),
        (&["-s", "NOPE", "1", "true"], "'NOPE': invalid signal"),
        (&["-s", "99", "1", "true"], "'99': invalid signal"),
        (&["5"], "<COMMAND>"),
        (&[], "<DUR>"),
        (&["--bogus", "1", "true"], "--bogus"),
        (&["--pid", "abc", "1"], "invalid pid 'abc'"),
        (&["--pid", "-5", "1"], "invalid pid '-5'"),
    ];
    for (args, needle) in cases {
        let g = guard(&env, args);
        let err = text(&g.stderr);
        assert_eq!(g.status.code(), Some(125), "guard {args:?}: {err}");
        if !args.contains(&"--pid") {
            let t = timeout(args);
            assert_eq!(t.status.code(), Some(125), "timeout {args:?}");
        }
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("guard: "), "{err}");
        assert!(err.contains(needle), "guard {args:?}: {err}");
    }
    // --help and --version still succeed.
    assert!(guard(&env, &["--help"]).status.success());
    assert!(guard(&env, &["--version"]).status.success());
}

/// -v says what was sent and, as the seed did, "Process killed..." or
/// "Process finished..."; all on stderr, the command's stdout untouched.
#[test]
fn verbose_reports_like_the_seed() {
    let env = Env::new();
    let out = guard(&env, &["-v", "30", "echo", "hello"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "hello\n");
    assert_eq!(text(&out.stderr), "Process finished...\n");

    let out = guard(&env, &["-v", "0.2", "sleep", "30"]);
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(
        text(&out.stderr),
        "guard: sending signal TERM to command 'sleep'\nProcess killed...\n"
    );
}

/// Arguments after COMMAND are the command's, even ones that look like
/// guard's own options.
#[test]
fn arguments_after_the_command_are_its_own() {
    let env = Env::new();
    let out = guard(&env, &["30", "echo", "-s", "KILL", "--help", "-v"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "-s KILL --help -v\n");
}

/// --kill-after: a command that ignores TERM gets KILL once the grace time
/// after the first signal is over, and the status is 137 as with timeout(1).
#[test]
fn kill_after_escalates_when_term_is_ignored() {
    let env = Env::new();
    // The deadline leaves the shell ample time to install its trap first.
    let args = [
        "-v",
        "-k",
        "0.2",
        "2",
        "sh",
        "-c",
        "trap '' TERM; exec sleep 30",
    ];
    let g = guard(&env, &args);
    let err = text(&g.stderr);
    assert_eq!(shell_code(g.status), 137, "{err}");
    assert_eq!(
        err,
        "guard: sending signal TERM to command 'sh'\n\
         guard: sending signal KILL to command 'sh'\nProcess killed...\n"
    );
    assert_eq!(shell_code(timeout(&args).status), 137, "timeout(1) agrees");
}

/// The same escalation when the first signal is one guard received and
/// passed on (timeout(1) arms --kill-after then too); no clock involved.
#[test]
fn kill_after_also_follows_a_forwarded_signal() {
    let env = Env::new();
    let mut c = env.cmd("guard");
    c.args([
        "-k",
        "0.1",
        "0",
        "sh",
        "-c",
        "trap '' TERM; echo ready; exec sleep 30",
    ]);
    let mut g = Proc::spawn(c);
    let lines = g.stdout_lines();
    lines.wait_for(|l| l == "ready");
    g.signal(Signal::SIGTERM);
    let out = g.finish();
    assert_eq!(shell_code(out.status), 137, "{}", text(&out.stderr));
}

/// A command that double-forks a daemon into its own session (out of the
/// command's process group) and leaves a helper in its group: with --tree
/// (the default) both are gone when guard returns after the deadline.
#[test]
fn tree_kill_leaves_nothing_after_the_deadline() {
    let env = Env::new();
    let daemon = env.dir().join("daemon.pid");
    let helper = env.dir().join("helper.pid");
    let script = format!(
        "(setsid sleep 300 & echo $! > {d}); sleep 300 & echo $! > {h}; exec sleep 300",
        d = daemon.display(),
        h = helper.display()
    );
    let out = guard(&env, &["2", "sh", "-c", &script]);
    let (d, h) = (read_pid(&daemon), read_pid(&helper));
    let _doomed = Doomed(vec![d, h]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(!pid_alive(d), "the double-forked daemon {d} was killed");
    assert!(!pid_alive(h), "the helper {h} in the group was killed");
}

/// A left-behind process that died of a real-time signal does not stop the
/// clean-up: the command leaves an orphan killed by RTMIN (a zombie handed
/// to guard, subreaper) and a daemon with a child of its own; guard reaps the zombie and
/// still kills the daemon's child once the daemon is gone (reaping the RTMIN
/// zombie used to fail with EINVAL and end the clean-up early).
#[test]
fn a_leftover_killed_by_a_real_time_signal_does_not_stop_the_cleanup() {
    let env = Env::new();
    for round in 0..5 {
        let grandchild = env.dir().join(format!("grandchild.{round}.pid"));
        let script = format!(
            "(setsid sh -c 'sleep 0.1; kill -s RTMIN $$' &); \
             (setsid sh -c 'sleep 300 & echo $! > {g}; wait' </dev/null >/dev/null 2>&1 &); \
             while ! test -s {g}; do sleep 0.01; done; sleep 0.5",
            g = grandchild.display()
        );
        let out = guard(&env, &["30", "sh", "-c", &script]);
        let g = read_pid(&grandchild);
        let _doomed = Doomed(vec![g]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(
            !pid_alive(g),
            "round {round}: the daemon's child {g} was killed"
        );
    }
}

/// The same command under --no-tree: at the deadline the signal goes to the
/// command's process group (as timeout(1) sends it), but the daemon that
/// left the group survives.
#[test]
fn no_tree_leaves_the_daemon_after_the_deadline() {
    let env = Env::new();
    let daemon = env.dir().join("daemon.pid");
    let script = format!(
        "(setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {d}); exec sleep 300",
        d = daemon.display()
    );
    let out = guard(&env, &["--no-tree", "2", "sh", "-c", &script]);
    let d = read_pid(&daemon);
    let _doomed = Doomed(vec![d]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(pid_alive(d), "--no-tree left the daemon {d} running");
}

/// A command that ends in time but leaves a daemon behind: --tree kills the
/// daemon when the command ends; --no-tree leaves it running, as timeout(1) does.
#[test]
fn leftovers_of_a_finished_command_die_with_tree_and_survive_without() {
    let env = Env::new();
    let spawn_daemon = |pidfile: &Path| {
        format!(
            "(setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {})",
            pidfile.display()
        )
    };

    let with_tree = env.dir().join("tree.pid");
    let out = guard(&env, &["30", "sh", "-c", &spawn_daemon(&with_tree)]);
    let d = read_pid(&with_tree);
    let _doomed = Doomed(vec![d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!pid_alive(d), "--tree killed the daemon {d}");

    let no_tree = env.dir().join("notree.pid");
    let out = guard(
        &env,
        &["--no-tree", "30", "sh", "-c", &spawn_daemon(&no_tree)],
    );
    let d = read_pid(&no_tree);
    let _doomed = Doomed(vec![d]);
    assert_eq!(out.status.code(), Some(0));
    assert!(pid_alive(d), "--no-tree left the daemon {d} running");

    let with_timeout = env.dir().join("timeout.pid");
    let out = timeout(&["30", "sh", "-c", &spawn_daemon(&with_timeout)]);
    let d = read_pid(&with_timeout);
    let _doomed = Doomed(vec![d]);
    assert_eq!(out.status.code(), Some(0));
    assert!(pid_alive(d), "timeout(1) leaves the daemon {d} running too");
}

/// Signals sent to guard (USR1, HUP, then TERM) reach the command, which
/// records each; the command's own exit status comes back (no deadline passed).
#[test]
fn signals_are_passed_on() {
    let env = Env::new();
    let mut c = guard_with_default_signals(&env);
    c.args([
        "60",
        "sh",
        "-c",
        "trap 'echo got USR1' USR1; trap 'echo got HUP' HUP; \
         trap 'echo got TERM; exit 7' TERM; echo ready; \
         while :; do sleep 1 & wait $!; done",
    ]);
    let mut g = Proc::spawn(c);
    let lines = g.stdout_lines();
    lines.wait_for(|l| l == "ready");
    for (sig, line) in [
        (Signal::SIGUSR1, "got USR1"),
        (Signal::SIGHUP, "got HUP"),
        (Signal::SIGTERM, "got TERM"),
    ] {
        g.signal(sig);
        lines.wait_for(|l| l == line);
    }
    let out = g.finish();
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
}

/// If guard itself is killed with SIGKILL (no chance to clean up), the
/// kernel kills the command too (parent-death signal): nothing is left.
#[test]
fn sigkill_of_guard_takes_the_command_with_it() {
    let env = Env::new();
    let mut c = env.cmd("guard");
    c.args(["60", "sh", "-c", "echo $$; exec sleep 300"]);
    let mut g = Proc::spawn(c);
    let lines = g.stdout_lines();
    let pid: i32 = lines
        .next_line()
        .expect("the command's pid")
        .parse()
        .unwrap();
    let _doomed = Doomed(vec![pid]);
    assert!(pid_alive(pid));
    g.kill9();
    let status = g.wait_timeout(common::HANG);
    assert_eq!(status.signal(), Some(9));
    wait_until("the command to die with guard", || !pid_alive(pid));
}

/// --pid watches a process that is not guard's child: it ends in time
/// (here: it is killed by someone else) and guard exits 0, "Process finished...".
#[test]
fn watch_pid_that_ends_in_time() {
    let env = Env::new();
    let mut sleeper = Command::new("sleep");
    sleeper.arg("300").stdin(Stdio::null());
    let sleeper = Proc::spawn(sleeper);
    let pid = sleeper.pid().to_string();
    let mut c = env.cmd("guard");
    c.args(["-v", "--pid", &pid, "60"]);
    let g = Proc::spawn(c);
    // Wait until guard holds its pidfd: a process that is gone before guard
    // looks is an error (125), not "finished in time".
    wait_until("guard to open its pidfd", || holds_pidfd(g.pid()));
    sleeper.kill9();
    let out = g.finish();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "Process finished...\n");
}

/// --pid on a process that overruns: guard sends TERM through the pidfd at
/// the deadline, waits for it to end, exits 124, "Process killed...".
/// A pid that does not exist is guard's failure: 125, one line.
#[test]
fn watch_pid_that_overruns_is_killed() {
    let env = Env::new();
    let mut sleeper = Command::new("sleep");
    sleeper.arg("300").stdin(Stdio::null());
    let mut sleeper = Proc::spawn(sleeper);
    let pid = sleeper.pid();
    let out = guard(&env, &["-v", "--pid", &pid.to_string(), "0.2"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("guard: sending signal TERM to process {pid}\nProcess killed...\n")
    );
    let status = sleeper.wait_timeout(common::HANG);
    assert_eq!(status.signal(), Some(15), "the process got TERM");

    let out = guard(&env, &["--pid", "999999999", "1"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).starts_with("guard: cannot watch process 999999999:"),
        "{}",
        text(&out.stderr)
    );
}

/// A command that cannot be run is reported as timeout(1) does: one line
/// naming it and why, 127 when it does not exist, 126 when it cannot run.
#[test]
fn failed_exec_is_reported_in_one_line() {
    let env = Env::new();
    let out = guard(&env, &["30", "/nonexistent/guard-cmd"]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        text(&out.stderr),
        "guard: failed to run command '/nonexistent/guard-cmd': No such file or directory\n"
    );
    let out = guard(&env, &["30", "/"]);
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(
        text(&out.stderr),
        "guard: failed to run command '/': Permission denied\n"
    );
}

/// The command starts with the signal state it would have had without
/// guard: nothing blocked (guard blocks the signals it forwards, the command
/// must not inherit that), and the same ignored set (SIGPIPE at its default,
/// though Rust ignores it inside guard).
#[test]
fn command_starts_with_a_clean_signal_state() {
    let env = Env::new();
    let probe = ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"];
    let mut args = vec!["30"];
    args.extend(probe);
    let out = guard(&env, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut direct = Command::new(probe[0]);
    direct.args(&probe[1..]);
    let direct = run(direct);
    assert_eq!(text(&out.stdout), text(&direct.stdout));
    assert!(text(&out.stdout).contains("SigBlk:\t0000000000000000"));
}

/// A signal passed on that kills the command makes guard die of that same
/// signal, as timeout(1) does, so the shell sees "killed by SIGINT" and a
/// `while` loop around it stops.
#[test]
fn command_killed_by_a_passed_on_signal_kills_guard_the_same_way() {
    let env = Env::new();
    let script = "echo $$; exec sleep 300";
    let mut g = guard_with_default_signals(&env);
    g.args(["60", "sh", "-c", script]);
    let mut t = Command::new("timeout");
    t.args(["60", "sh", "-c", script]);
    for (cmd, exact) in [(g, true), (t, false)] {
        let mut p = Proc::spawn(cmd);
        let lines = p.stdout_lines();
        let pid: i32 = lines
            .next_line()
            .expect("the command's pid")
            .parse()
            .unwrap();
        let _doomed = Doomed(vec![pid]);
        // Signal only once the shell has become `sleep` (a shell between
        // the two lines may catch SIGINT and exit 130 instead).
        wait_until("the command to exec sleep", || {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
        });
        p.signal(Signal::SIGINT);
        let status = p.wait_timeout(common::HANG);
        if exact {
            assert_eq!(status.signal(), Some(libc::SIGINT), "{}: {status}", p.name);
        } else {
            // timeout(1) (coreutils 9.1, loaded machine) now and then exits
            // 130 instead of dying of SIGINT, and leaves its command running
            // (killed above by Doomed); the shell code is the same.
            assert_eq!(shell_code(status), 130, "{}: {status}", p.name);
        }
    }
}

/// Orphans reparented to guard that end while the command still runs are
/// reaped at once (SIGCHLD through the signalfd), not left as zombies.
#[test]
fn ended_orphans_are_reaped_while_the_command_runs() {
    let env = Env::new();
    let mut c = env.cmd("guard");
    c.args([
        "60",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do (setsid true &); done; echo spawned; exec sleep 300",
    ]);
    let mut g = Proc::spawn(c);
    let lines = g.stdout_lines();
    lines.wait_for(|l| l == "spawned");
    let children = format!("/proc/{0}/task/{0}/children", g.pid());
    // Only the command (now `sleep`) is left as guard's child.
    wait_until("guard to reap its orphans", || {
        std::fs::read_to_string(&children)
            .map(|s| s.split_whitespace().count() == 1)
            .unwrap_or(true)
    });
    g.signal(Signal::SIGTERM);
    let out = g.finish();
    assert_eq!(out.status.signal(), Some(libc::SIGTERM));
}

/// The state letter of process `pid` in /proc (R, S, T, Z...).
fn state(pid: i32) -> char {
    syncomm_sys::proc::read_stat(pid)
        .ok()
        .flatten()
        .map_or('?', |st| st.state)
}

/// Job control: Ctrl-Z (SIGTSTP to guard, the shell's job) stops the
/// command in its own group and then guard itself; SIGCONT (`fg`) wakes both.
#[test]
fn ctrl_z_stops_the_command_and_fg_resumes_it() {
    let env = Env::new();
    let mut c = env.cmd("guard");
    c.args(["60", "sh", "-c", "echo $$; exec sleep 300"]);
    let mut g = Proc::spawn(c);
    let lines = g.stdout_lines();
    let pid: i32 = lines
        .next_line()
        .expect("the command's pid")
        .parse()
        .unwrap();
    let _doomed = Doomed(vec![pid]);
    g.signal(Signal::SIGTSTP);
    wait_until("command and guard to stop", || {
        state(pid) == 'T' && state(g.pid()) == 'T'
    });
    g.signal(Signal::SIGCONT);
    wait_until("command and guard to run again", || {
        state(pid) != 'T' && state(g.pid()) != 'T'
    });
    g.signal(Signal::SIGTERM);
    let out = g.finish();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGTERM),
        "{}",
        text(&out.stderr)
    );
}

/// Mask of one "SigXxx:" line of /proc/PID/status.
fn sig_mask(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    u64::from_str_radix(line[field.len()..].trim(), 16).unwrap()
}

/// A signal guard's parent made it ignore (here HUP, as `nohup` does) stays
/// ignored: guard does not catch it to pass on, and the command inherits
/// the ignore; the signals guard does pass on are blocked in guard only.
#[test]
fn signals_ignored_by_the_parent_stay_ignored() {
    let mut c = Command::new("sh");
    c.env("GUARD", common::bin("guard")).args([
        "-c",
        "trap '' HUP; exec \"$GUARD\" 60 sh -c 'echo $$; exec sleep 300'",
    ]);
    let mut g = Proc::spawn(c);
    let lines = g.stdout_lines();
    let pid: i32 = lines
        .next_line()
        .expect("the command's pid")
        .parse()
        .unwrap();
    let _doomed = Doomed(vec![pid]);
    let hup = 1u64 << (libc::SIGHUP - 1);
    let term = 1u64 << (libc::SIGTERM - 1);
    let guard_pid = g.pid();
    assert_eq!(sig_mask(guard_pid, "SigBlk:") & hup, 0, "HUP not caught");
    assert_ne!(sig_mask(guard_pid, "SigIgn:") & hup, 0, "HUP still ignored");
    assert_ne!(sig_mask(guard_pid, "SigBlk:") & term, 0, "TERM caught");
    wait_until("the command to exec sleep", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
    });
    assert_ne!(sig_mask(pid, "SigIgn:") & hup, 0, "the command ignores HUP");
    assert_eq!(sig_mask(pid, "SigBlk:"), 0, "the command blocks nothing");
}
