//! Runs the seed's Python (`bench/seed.py`) and reads its figures.
//!
//! The script prints one JSON object whose keys are the comparison keys
//! ([`crate::report::PYTHON_KEYS`]); a sub-benchmark that failed is `null`.
//! Anything else (no python3, no script, a crash, a hang past the time limit)
//! becomes a one-line status and no figures: the suite goes on without them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::Python;

/// `python3` on `PATH`, if there is one.
pub fn find_python3() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("python3"))
        .find(|p| p.is_file())
}

/// The interpreter's version (`3.11.7`), or `?`.
fn version(python: &Path) -> String {
    Command::new(python)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().trim_start_matches("Python ").to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".to_string())
}

/// Runs `python script --json [--quick] [--only KEYS]`, at most `limit`.
///
/// `keys`: the comparison keys wanted (all when `None`).
pub fn run_seed(
    python: &Path,
    script: &Path,
    quick: bool,
    keys: Option<&[&str]>,
    limit: Duration,
) -> Python {
    let ver = version(python);
    let mut cmd = Command::new(python);
    cmd.arg(script).arg("--json");
    if quick {
        cmd.arg("--quick");
    }
    if let Some(keys) = keys {
        cmd.arg("--only").arg(keys.join(","));
    }
    let shown = format!(
        "python3 {ver}, {}{}",
        script
            .file_name()
            .map_or("seed.py".into(), |n| n.to_string_lossy()),
        if quick { " --quick" } else { "" }
    );
    let failed = |why: String| Python {
        status: format!("{shown}: {why}"),
        figures: BTreeMap::new(),
    };
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return failed(format!("could not start: {e}")),
    };
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if start.elapsed() > limit => {
                // SIGTERM lets multiprocessing stop its children; then SIGKILL.
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let grace = Instant::now();
                while grace.elapsed() < Duration::from_secs(3) {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("did not finish within {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(format!("waiting for it: {e}")),
        }
    };
    if let Err(why) = status {
        // Not waiting for the readers: a grandchild may still hold the pipes.
        return failed(why);
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let last_err = stderr.lines().rev().find(|l| !l.trim().is_empty());
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            return failed(format!(
                "{s}{}",
                last_err.map_or(String::new(), |l| format!(": {}", l.trim()))
            ))
        }
        Err(why) => return failed(why),
    }
    let Some(line) = stdout.lines().rev().find(|l| !l.trim().is_empty()) else {
        return failed("printed nothing".to_string());
    };
    let parsed: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return failed(format!("output is not JSON: {e}")),
    };
    let Some(obj) = parsed.as_object() else {
        return failed("output is not a JSON object".to_string());
    };
    let figures: BTreeMap<String, Option<f64>> =
        obj.iter().map(|(k, v)| (k.clone(), v.as_f64())).collect();
    let ok = figures.values().filter(|v| v.is_some()).count();
    Python {
        status: format!("{shown} ({ok} of {} figures)", figures.len()),
        figures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `body` as the "seed script" under /bin/sh.
    fn seed(body: &str, limit: Duration) -> Python {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("seed.sh");
        std::fs::write(&script, body).unwrap();
        run_seed(Path::new("/bin/sh"), &script, true, None, limit)
    }

    #[test]
    fn figures_and_nulls_are_read() {
        let py = seed(
            "echo progress >&2; echo '{\"ping_rtt_us\": 12.5, \"gate_cycle_us\": null}'\n",
            Duration::from_secs(20),
        );
        assert_eq!(py.get("ping_rtt_us"), Some(12.5));
        assert_eq!(py.get("gate_cycle_us"), None);
        assert!(py.figures.contains_key("gate_cycle_us"));
        assert!(py.status.contains("1 of 2 figures"), "{}", py.status);
    }

    #[test]
    fn failures_become_a_status_line() {
        let py = seed(
            "echo 'Traceback: boom' >&2; exit 1\n",
            Duration::from_secs(20),
        );
        assert!(py.figures.is_empty());
        assert!(py.status.contains("Traceback: boom"), "{}", py.status);
        let py = seed("echo not json\n", Duration::from_secs(20));
        assert!(py.status.contains("not JSON"), "{}", py.status);
        let py = seed("exec sleep 30\n", Duration::from_millis(200));
        assert!(py.status.contains("did not finish"), "{}", py.status);
    }
}
