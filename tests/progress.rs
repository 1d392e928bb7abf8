//! Progress for long work, on the real binaries: a status line redrawn in
//! place on a terminal (tmux here) that is erased when the work ends, and
//! nothing extra when output is not a terminal; `ping-client -q` and its
//! statistics on SIGQUIT (as ping(8) on Ctrl-\); `monitor --watch`.
mod common;

use common::*;
use nix::sys::signal::Signal;

/// Starts `cmd` in a 150x20 session of a tmux server of the test's own, with
/// the test's runtime directory; `None` when tmux is not installed.
fn terminal(env: &Env, cmd: &str) -> Option<(Tmux, String)> {
    let t = Tmux::server(env)?;
    let session = unique_name("progress");
    t.session(
        &session,
        150,
        20,
        &format!("export SYNCOMM_DIR='{}'; {cmd}", env.dir().display()),
    );
    Some((t, session))
}

fn bin_path(name: &str) -> String {
    format!("'{}'", bin(name).display())
}

/// On a terminal, `scribe` with a large count and `producer` flat out show
/// a line counting their work (with the share done when the count is
/// known), and erase it when they end: the screen keeps only their normal
/// output.
#[test]
fn progress_lines_draw_on_a_terminal_and_are_erased_at_the_end() {
    let env = Env::new();
    let file = env.dir().join("log.txt");
    let n = unique_name("pg");
    let cmd = format!(
        "{} --file '{}' --count 4000 --hold 1ms; echo SCRIBE-DONE; \
         {} --name {n} --count 2000000000; echo PRODUCER-DONE; sleep 60",
        bin_path("scribe"),
        file.display(),
        bin_path("producer"),
    );
    let Some((t, session)) = terminal(&env, &cmd) else {
        return;
    };
    wait_until("scribe's progress line", || {
        let s = t.screen(&session);
        s.contains("scribe: ") && s.contains("/4.0 k lines (")
    });
    wait_until("scribe to end", || {
        t.screen(&session).contains("SCRIBE-DONE")
    });
    wait_until("producer's progress line", || {
        t.screen(&session)
            .lines()
            .any(|l| l.starts_with("producer: ") && l.contains("values/s"))
    });
    // Ctrl-C: the producer stops, says what it appended, erases the line.
    t.run(&["send-keys", "-t", &session, "C-c"]);
    wait_until("producer to end", || {
        t.screen(&session).contains("PRODUCER-DONE")
    });
    let screen = t.screen(&session);
    assert!(
        !screen.contains("scribe: "),
        "scribe's line erased:\n{screen}"
    );
    assert!(
        !screen.lines().any(|l| l.starts_with("producer: ")),
        "producer's line erased:\n{screen}"
    );
    assert!(screen.contains("appended "), "{screen}");
}

/// With stderr not a terminal, the same runs print nothing on stderr: a
/// script's output is the same as without progress.
#[test]
fn progress_stays_off_when_stderr_is_not_a_terminal() {
    let env = Env::new();
    let file = env.dir().join("log.txt");
    let mut c = env.cmd("scribe");
    c.args([
        "--file",
        file.to_str().unwrap(),
        "--count",
        "1000",
        "--hold",
        "1ms",
    ]);
    let out = run(c);
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "");
    let mut c = env.cmd("producer");
    c.args(["--name", &unique_name("pg"), "--count", "3000000"]);
    let out = run(c);
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "");
}

/// `ping-client -q` prints only its first line and the statistics; SIGQUIT
/// prints the statistics so far on stderr and the client goes on pinging
/// (it used to die of the signal), until SIGINT ends it with the summary.
#[test]
fn ping_client_quiet_and_statistics_on_sigquit() {
    let env = Env::new();
    let name = unique_name("pq");
    let mut s = env.cmd("ping-server");
    s.args(["--local", &name, "--tcp", "127.0.0.1:0", "--quiet"]);
    let _server = Proc::spawn(s);
    let sock = env.dir().join(format!("ping.{name}.sock"));
    wait_until("the ping server's socket", || sock.exists());

    let mut c = env.cmd("ping-client");
    c.args(["--local", &name, "-q", "-c", "3", "-i", "0"]);
    let out = run(c);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].starts_with("PING "), "{lines:?}");
    assert!(lines[1].contains("ping statistics"), "{lines:?}");
    assert!(
        lines[2].starts_with("3 sent, 3 received, 0% loss"),
        "{lines:?}"
    );

    let mut c = env.cmd("ping-client");
    c.args(["--local", &name, "-i", "50ms"]);
    let mut p = Proc::spawn(c);
    let out_lines = p.stdout_lines();
    let err_lines = p.stderr_lines();
    out_lines.wait_for(|l| l.contains("seq=2 "));
    p.signal(Signal::SIGQUIT);
    let interim = err_lines.wait_for(|l| l.contains(" sent, ") && l.contains(" received"));
    assert!(interim.contains("0% loss"), "{interim}");
    out_lines.wait_for(|l| l.contains("seq=4 "));
    assert!(p.is_running(), "SIGQUIT did not end the client");
    p.signal(Signal::SIGINT);
    let status = p.wait_timeout(std::time::Duration::from_secs(20));
    assert!(
        status.code().is_some(),
        "ended by exiting, not by the signal"
    );
    let rest = out_lines.rest();
    assert!(
        rest.iter().any(|l| l.contains("ping statistics")),
        "{rest:?}"
    );
}

/// `monitor --watch` on a terminal redraws one snapshot in place: the
/// total changes on screen while there is only ever one snapshot line, cut
/// to the pane's width from the oldest recent values.
#[test]
fn monitor_watch_redraws_one_line_in_place() {
    let env = Env::new();
    let n = unique_name("mw");
    let mut c = env.cmd("producer");
    c.args(["--name", &n, "--interval", "1ms"]);
    let _producer = Proc::spawn(c);
    let link = env.dir().join(format!("board.{n}"));
    wait_until("the board", || {
        std::fs::read_dir(env.dir())
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(&n))
            })
            .unwrap_or(false)
            || link.exists()
    });
    let cmd = format!(
        "{} --name {n} --watch --interval 100ms; sleep 60",
        bin_path("monitor")
    );
    let Some((t, session)) = terminal(&env, &cmd) else {
        return;
    };
    let total_line = |screen: &str| -> Vec<String> {
        screen
            .lines()
            .filter(|l| l.starts_with("total "))
            .map(str::to_owned)
            .collect()
    };
    let mut first = Vec::new();
    wait_until("a snapshot", || {
        first = total_line(&t.screen(&session));
        !first.is_empty()
    });
    wait_until("the snapshot to change in place", || {
        let now = total_line(&t.screen(&session));
        assert!(now.len() <= 1, "one snapshot line at a time: {now:?}");
        now.len() == 1 && now != first
    });
    // 64 recent values do not fit in 150 columns: the oldest are cut, the
    // line ends with the newest and fits the pane.
    let line = total_line(&t.screen(&session))
        .pop()
        .expect("a snapshot line");
    let line = line.trim_end();
    assert!(
        line.contains(" recent […, ") && line.ends_with(']'),
        "{line}"
    );
    assert!(line.chars().count() < 150, "{line}");
}
