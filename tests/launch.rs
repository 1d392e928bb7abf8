//! The launcher (`./launch`) on the real script: an unknown scenario is one
//! line and exit 2 before anything is built; build notices go to stderr; a
//! caller's `SYNCOMM_DIR` is never removed; and `./launch tmux` sessions, in a
//! tmux server of their own, have titled panes, say how to switch from inside
//! tmux, and leave nothing behind when they close.
//!
//! The binaries are the ones `cargo test` built: `LAUNCH_BIN_DIR` tells the
//! launcher to use them instead of building. A fake `cargo` first on `PATH`
//! records any build the launcher attempts.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

/// The launcher script of this checkout.
fn launch() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("launch")
}

/// The directory of the binaries cargo test built.
fn bin_dir() -> PathBuf {
    bin("syncomm").parent().unwrap().to_owned()
}

/// The scenarios, in `./launch list` order.
const SCENARIOS: [&str; 9] = [
    "shared-file",
    "limited-access",
    "notify",
    "data-sharing",
    "discover",
    "guard",
    "ping",
    "worker",
    "pipeline",
];

/// A scratch directory with a fake `cargo` that records each call in
/// `cargo-called` and succeeds without printing anything.
struct FakeCargo {
    dir: tempfile::TempDir,
}

impl FakeCargo {
    fn new() -> FakeCargo {
        let dir = tempfile::tempdir().unwrap();
        let cargo = dir.path().join("cargo");
        std::fs::write(
            &cargo,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexit 0\n",
                dir.path().join("cargo-called").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        FakeCargo { dir }
    }

    /// `./launch ARGS` with the fake cargo first on PATH and no LAUNCH_BIN_DIR.
    fn launch(&self, args: &[&str]) -> Output {
        let mut c = Command::new(launch());
        c.args(args)
            .env(
                "PATH",
                format!(
                    "{}:{}:{}",
                    self.dir.path().display(),
                    bin_dir().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env_remove("LAUNCH_BIN_DIR")
            .env_remove("SYNCOMM_DIR");
        run(c)
    }

    /// What the launcher asked cargo to do (empty if it never ran it).
    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cargo-called")).unwrap_or_default()
    }
}

/// `./launch foo` and `./launch tmux foo`: exit 2, nothing on stdout, one
/// line on stderr that names every valid scenario, and cargo never ran (the
/// name is checked before building). Before this, `./launch foo` built first
/// and then reported the unknown name twice.
#[test]
fn unknown_scenario_is_one_line_exit_2_and_nothing_built() {
    let fake = FakeCargo::new();
    for args in [&["foo"][..], &["tmux", "foo"]] {
        let out = fake.launch(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(text(&out.stdout), "", "{args:?}: nothing on stdout");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err:?}");
        assert!(
            err.starts_with("launch: unknown scenario 'foo'"),
            "{args:?}: {err:?}"
        );
        for s in SCENARIOS {
            assert!(err.contains(s), "{args:?}: {s} not listed in {err:?}");
        }
        assert_eq!(
            fake.calls(),
            "",
            "{args:?}: cargo ran: nothing may be built"
        );
    }
}

/// `./launch list` prints the scenarios in the launcher's order, one line
/// each, and builds nothing.
#[test]
fn list_is_the_scenarios_in_order() {
    let fake = FakeCargo::new();
    let out = fake.launch(&["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
        .collect();
    assert_eq!(names, SCENARIOS);
    assert_eq!(fake.calls(), "");
}

/// Build notices go to stderr: with a (fake) build, stdout of `./launch bench
/// --version` holds no `# building` line, stderr does; with LAUNCH_BIN_DIR
/// nothing is built and stdout is exactly `syncomm-bench --help`'s, so
/// `./launch bench --markdown > table.md` gets only the table.
#[test]
fn build_notices_go_to_stderr() {
    let fake = FakeCargo::new();
    let out = fake.launch(&["bench", "--version"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        fake.calls().contains("build --release"),
        "it built: {}",
        fake.calls()
    );
    assert!(!stdout.contains("building"), "stdout: {stdout:?}");
    assert!(stdout.starts_with("syncomm-bench "), "stdout: {stdout:?}");
    assert!(
        stderr.contains("# building release binaries"),
        "stderr: {stderr:?}"
    );

    let mut c = Command::new(launch());
    c.args(["bench", "--help"])
        .env("LAUNCH_BIN_DIR", bin_dir())
        .env_remove("SYNCOMM_DIR");
    let out = run(c);
    let direct = run({
        let mut c = Command::new(bin("syncomm-bench"));
        c.arg("--help");
        c
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), text(&direct.stdout));
    assert!(
        text(&out.stderr).contains("nothing built"),
        "{}",
        text(&out.stderr)
    );
}

/// A `SYNCOMM_DIR` set by the caller is theirs: `./launch list` (and any
/// command) leaves it and its files alone. Before this, the launcher's exit
/// trap removed whatever `SYNCOMM_DIR` named.
#[test]
fn a_callers_syncomm_dir_is_never_removed() {
    let env = Env::new();
    let keep = env.dir().join("keep-me");
    std::fs::write(&keep, "x").unwrap();
    let fake = FakeCargo::new();
    let mut c = Command::new(launch());
    c.arg("list").env("SYNCOMM_DIR", env.dir()).env(
        "PATH",
        format!(
            "{}:{}",
            fake.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        keep.exists(),
        "./launch list removed the caller's SYNCOMM_DIR"
    );
}

/// Every scenario's tmux panes (`panes_NAME`, as the launcher reads them):
/// each a `pane TITLE COMMAND` line with a title, the titles distinct within
/// the scenario, and each command one that bash parses.
#[test]
fn every_scenarios_panes_have_titles_and_parse() {
    for s in SCENARIOS {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("scenarios/{s}.sh"));
        let out = run({
            let mut c = Command::new("bash");
            c.arg("-c")
                .arg(r#"pane() { printf '%s\t%s\n' "$1" "$2"; }; WORK=/w; source "$1"; "panes_$2""#)
                .arg("bash")
                .arg(&script)
                .arg(s.replace('-', "_"));
            c
        });
        assert!(out.status.success(), "{s}: {}", text(&out.stderr));
        let lines = text(&out.stdout);
        let mut titles = Vec::new();
        for line in lines.lines() {
            let (title, command) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("{s}: a pane without a title: {line:?}"));
            assert!(!title.trim().is_empty(), "{s}: empty title: {line:?}");
            assert!(!titles.contains(&title), "{s}: title {title:?} twice");
            titles.push(title);
            let parse = run({
                let mut c = Command::new("bash");
                c.args(["-n", "-c", command]);
                c
            });
            assert!(
                parse.status.success(),
                "{s}: {command:?}: {}",
                text(&parse.stderr)
            );
        }
        assert!(titles.len() >= 2, "{s}: {lines:?}");
    }
}

// ---- tmux ------------------------------------------------------------------

/// A tmux server of the test's own (its socket under a private
/// `TMUX_TMPDIR`), with the launcher's temporary directories under a private
/// `TMPDIR`. Dropping it kills the server, every process still carrying one
/// of those runtime directories, the kernel objects they left, and the files.
struct Tmux {
    tmp: tempfile::TempDir,
}

impl Tmux {
    /// `None` (and the reason on stderr) when tmux is not installed.
    fn new() -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("tmux is not installed: skipped");
            return None;
        }
        // Short: a Unix socket path has at most 107 bytes.
        let tmp = tempfile::Builder::new()
            .prefix("syncomm-tmux-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir(tmp.path().join("tmux")).unwrap();
        std::fs::create_dir(tmp.path().join("tmp")).unwrap();
        Some(Tmux { tmp })
    }

    /// `tmux ARGS` against this server.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(args)
            .env("TMUX_TMPDIR", self.tmp.path().join("tmux"))
            .env_remove("TMUX")
            .env_remove("SYNCOMM_DIR");
        c
    }

    fn tmux(&self, args: &[&str]) -> Output {
        run(self.cmd(args))
    }

    /// The server's socket (as `$TMUX` would name it).
    fn socket(&self) -> String {
        text(
            &self
                .tmux(&["display-message", "-p", "#{socket_path}"])
                .stdout,
        )
        .trim()
        .to_owned()
    }

    /// `./launch tmux SCENARIO` against this server, not on a terminal.
    fn launch(&self, scenario: &str, inside: Option<&str>) -> Output {
        let mut c = Command::new(launch());
        c.args(["tmux", scenario])
            .env("TMUX_TMPDIR", self.tmp.path().join("tmux"))
            .env("TMPDIR", self.tmp.path().join("tmp"))
            .env("LAUNCH_BIN_DIR", bin_dir())
            .env_remove("SYNCOMM_DIR")
            .env_remove("TMUX")
            .stdout(Stdio::piped());
        if let Some(t) = inside {
            c.env("TMUX", t);
        }
        run(c)
    }

    /// The launcher's runtime directories that exist now.
    fn launch_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.tmp.path().join("tmp"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("syncomm-launch.")
            })
            .collect()
    }

    /// The text of pane INDEX of SESSION, wrapped lines joined.
    fn capture(&self, session: &str, index: usize) -> String {
        text(
            &self
                .tmux(&[
                    "capture-pane",
                    "-p",
                    "-J",
                    "-t",
                    &format!("={session}:.{index}"),
                ])
                .stdout,
        )
    }

    /// The server's session-closed hooks (empty when none is set).
    fn closed_hooks(&self) -> String {
        text(&self.tmux(&["show-hooks", "-g"]).stdout)
            .lines()
            .filter(|l| l.starts_with("session-closed["))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).stderr(Stdio::null()).status();
        for d in self.launch_dirs() {
            for pid in pids_with_dir(&d) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let abs = syncomm_common::attribution::absolute_dir(&d);
            let _ = std::fs::remove_dir_all(&d);
            let _ = syncomm_admin::leaks::clean_orphans_of(&abs, std::time::Duration::from_secs(5));
        }
    }
}

/// The processes whose environment names `dir` as their `SYNCOMM_DIR`.
fn pids_with_dir(dir: &Path) -> Vec<i32> {
    let want = format!("SYNCOMM_DIR={}", dir.display()).into_bytes();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == want.as_slice()))
        })
        .collect()
}

/// The runtime directory `./launch tmux` reported on stdout.
fn reported_dir(stdout: &str) -> PathBuf {
    let start = stdout
        .find("(runtime directory ")
        .expect("the runtime directory is reported")
        + "(runtime directory ".len();
    let rest = &stdout[start..];
    PathBuf::from(&rest[..rest.find(',').unwrap()])
}

/// `./launch tmux notify` outside tmux: titled panes with borders, the
/// kill -9 repair shown as `./launch notify` does (a producer killed holding
/// the board lock, a new one that repairs the board), and `tmux kill-session`
/// removes the runtime directory, the board's shared-memory segment, every
/// process of the session and the server's hook.
#[test]
fn tmux_notify_shows_the_repair_and_leaves_nothing_when_killed() {
    let Some(t) = Tmux::new() else { return };
    let out = t.launch("notify", None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("attach with: tmux attach -t syncomm-notify"),
        "{stdout}"
    );
    let dir = reported_dir(&stdout);
    assert!(dir.is_dir());

    let titles = text(
        &t.tmux(&[
            "list-panes",
            "-t",
            "=syncomm-notify:",
            "-F",
            "#{pane_title}",
        ])
        .stdout,
    );
    assert_eq!(
        titles.lines().collect::<Vec<_>>(),
        [
            "consumer 22",
            "consumer 99",
            "producer: kill -9 holding the lock, then repair",
            "monitor"
        ]
    );
    let border = t.tmux(&[
        "show-options",
        "-wv",
        "-t",
        "=syncomm-notify:",
        "pane-border-status",
    ]);
    assert_eq!(text(&border.stdout).trim(), "top");
    assert!(
        t.closed_hooks().contains("wait-for -S syncomm-closed-"),
        "the session's hook: {}",
        t.closed_hooks()
    );

    // The repair, as the monitor sees it; the segment it lives in.
    wait_until("the monitor to show the repaired board", || {
        t.capture("syncomm-notify", 3).contains("repairs 1")
    });
    let pane = t.capture("syncomm-notify", 2);
    assert!(pane.contains("# kill -9 "), "{pane}");
    let link = std::fs::read_to_string(dir.join("board.notify.shm")).expect("the board's link");
    let segment = Path::new("/dev/shm").join(link.trim().trim_start_matches('/'));
    assert!(segment.exists(), "{}", segment.display());
    assert!(!pids_with_dir(&dir).is_empty());

    let kill = t.tmux(&["kill-session", "-t", "=syncomm-notify"]);
    assert!(kill.status.success(), "{}", text(&kill.stderr));
    wait_until("the runtime directory to go", || !dir.exists());
    wait_until("the session's processes to go", || {
        pids_with_dir(&dir).is_empty()
    });
    wait_until("the board's segment to go", || !segment.exists());
    // The server exits with its last session; if it lives on, the hook is gone.
    wait_until("the hook to go", || t.closed_hooks().is_empty());
    assert!(t.launch_dirs().is_empty(), "{:?}", t.launch_dirs());
}

/// `./launch tmux guard` run from inside tmux says `tmux switch-client`; its
/// watching pane's `session-ps` lists the session's guard but not a process
/// of the same user outside the session; when its last pane closes (each
/// killed in turn) the directory, every process (the daemon guard's command
/// started included) and the hook go, and the other session lives on.
#[test]
fn tmux_guard_from_inside_tmux_and_closing_its_last_pane() {
    let Some(t) = Tmux::new() else { return };
    let outer = t.tmux(&["new-session", "-d", "-s", "outer", "sleep 600"]);
    assert!(outer.status.success(), "{}", text(&outer.stderr));
    let inside = format!("{},1,0", t.socket());
    let out = t.launch("guard", Some(&inside));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("tmux switch-client -t syncomm-guard"),
        "{stdout}"
    );
    assert!(!stdout.contains("attach"), "{stdout}");
    let dir = reported_dir(&stdout);

    // A process of ours outside the session is not the session's.
    let outsider = Proc::spawn({
        let mut c = Command::new("sleep");
        c.arg("600").env_remove("SYNCOMM_DIR");
        c
    });
    let session_ps = || {
        let out = run({
            let mut c = Command::new(dir.join("bin/session-ps"));
            c.args(["-o", "pid=,args="]).env("SYNCOMM_DIR", &dir);
            c
        });
        text(&out.stdout)
    };
    wait_until("session-ps to list guard", || {
        session_ps().contains("guard -v 3")
    });
    let listed = session_ps();
    assert!(
        !listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&outsider.pid().to_string())),
        "{listed}"
    );

    // Close the panes one by one: the last one closes the session.
    loop {
        let panes = t.tmux(&["list-panes", "-t", "=syncomm-guard:", "-F", "#{pane_id}"]);
        let Some(id) = text(&panes.stdout).lines().next().map(str::to_owned) else {
            break;
        };
        t.tmux(&["kill-pane", "-t", &id]);
    }
    wait_until("the runtime directory to go", || !dir.exists());
    wait_until("the session's processes to go", || {
        pids_with_dir(&dir).is_empty()
    });
    wait_until("the hook to go", || t.closed_hooks().is_empty());
    let has = t.tmux(&["has-session", "-t", "=outer"]);
    assert!(has.status.success(), "the other session was closed");
    drop(outsider);
}
