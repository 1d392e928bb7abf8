//! End-to-end checks of `syncomm-bench`: it runs, prints a well-formed table,
//! and writes results.json and ratios.svg. Never a check of speed: the figures
//! themselves are only parsed, not judged.
mod common;
use common::*;

/// The table's cells: splits `| a | b \| c |` on unescaped pipes (the
/// report's own parser, so the test reads the table as the suite writes it).
use syncomm_benchsuite::report::split_row as cells;

/// `12.3 µs`, `1.20 ms`, `5.20 M/s`... : a number and a known unit.
fn is_value(s: &str) -> bool {
    let Some((n, u)) = s.split_once(' ') else {
        return false;
    };
    n.parse::<f64>().is_ok_and(f64::is_finite)
        && ["s", "ms", "µs", "/s", "k/s", "M/s", "G/s"].contains(&u)
}

/// The rows of the main table (the first pipe table in `out`): header, rows.
fn main_table(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let lines: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(lines.len() >= 2, "no table in:\n{out}");
    let header = cells(lines[0]).expect("header row");
    let ruler = cells(lines[1]).expect("ruler row");
    assert!(ruler
        .iter()
        .all(|c| c.chars().all(|ch| ch == '-') && c.len() >= 3));
    let rows = lines[2..]
        .iter()
        .map(|l| cells(l).unwrap_or_else(|| panic!("bad row {l:?}")))
        .collect();
    (header, rows)
}

/// `syncomm-bench --quick --no-python --only floors` measures the seven raw
/// floors between processes in the default `one-cpu` configuration, prints a
/// table whose header names every column and whose rows (one per figure, or a
/// "not measured" row) have parseable medians, spreads and p99s; the same in
/// `--markdown`; results.json holds the machine, the mode, the configuration
/// and one entry per row with its trials; ratios.svg is an SVG document. A
/// scenario name `--only` does not know, or an unknown `--config`, is a usage
/// error (exit 2).
#[test]
fn quick_run_prints_a_well_formed_table_and_writes_json_and_svg() {
    let env = Env::new();
    let out_dir = env.dir().join("out");
    let mut cmd = env.cmd("syncomm-bench");
    cmd.args(["--quick", "--no-python", "--only", "floors", "--out"])
        .arg(&out_dir);
    let out = run(cmd);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    // Steps are shown in place on a terminal only: piped, stderr has no step lines.
    let err = text(&out.stderr);
    assert!(
        !err.lines()
            .any(|l| l.starts_with("syncomm-bench: one-cpu: ")),
        "step lines on a pipe: {err}"
    );

    let (header, rows) = main_table(&stdout);
    assert_eq!(
        header,
        [
            "scenario",
            "what is measured",
            "median",
            "spread",
            "p99",
            "floor (same run)",
            "floor hops",
            "floor median",
            "× floor",
            "vs Python",
            "target",
            "met"
        ]
    );
    assert_eq!(rows.len(), 7, "one row per floor:\n{stdout}");
    assert!(stdout.contains("configuration one-cpu: every process on CPU"));
    let mut measured = 0;
    for row in &rows {
        assert_eq!(row.len(), header.len(), "row {row:?}");
        assert!(!row[0].is_empty());
        if row[1].starts_with("not measured: ") {
            assert!(row[2..].iter().all(|c| c == "—"), "row {row:?}");
            continue;
        }
        measured += 1;
        assert!(is_value(&row[2]), "median {:?}", row[2]);
        let (lo, hi) = row[3].split_once('–').expect("spread lo–hi");
        assert!(is_value(lo) && is_value(hi), "spread {:?}", row[3]);
        assert!(row[4] == "—" || is_value(&row[4]), "p99 {:?}", row[4]);
        let ratio = &row[8];
        assert!(
            ratio == "—" || ratio.trim_end_matches('×').parse::<f64>().is_ok(),
            "ratio {ratio:?}"
        );
        assert!(["met", "MISSED", "—"].contains(&row[11].as_str()));
    }
    let names: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(measured, 7, "every floor measured: {names:?}");
    for floor in [
        "pipe",
        "unix socket",
        "TCP loopback",
        "futex wake round trip",
        "futex wake of another process",
        "socket → relay",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(floor)),
            "{floor}: {names:?}"
        );
    }
    assert!(stdout.contains("seed Python: not run (--no-python)"));

    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("results.json")).expect("results.json written"),
    )
    .expect("results.json is JSON");
    let m = &json["machine"];
    assert!(m["nproc"].as_u64().is_some_and(|n| n >= 1));
    for k in ["cpu_model", "kernel", "date", "loadavg", "build"] {
        assert!(m[k].is_string(), "machine.{k} in {json}");
    }
    assert_eq!(json["mode"], "quick");
    assert_eq!(json["configs"], serde_json::json!(["one-cpu"]));
    let jrows = json["rows"].as_array().expect("rows");
    assert_eq!(jrows.len(), rows.len());
    for r in jrows {
        assert!(r["scenario"].is_string());
        assert_eq!(r["config"], "one-cpu");
        if r["measured"] == true {
            assert!(r["median"].as_f64().is_some_and(|v| v > 0.0), "{r}");
            assert_eq!(r["trials"], 3, "{r}");
            assert_eq!(r["spread"].as_array().map(Vec::len), Some(2), "{r}");
            assert!(["us", "ms", "per_s"].contains(&r["unit"].as_str().unwrap_or("")));
        } else {
            assert!(r["why"].is_string());
        }
    }
    assert!(json["python"]["status"].is_string());

    let svg = std::fs::read_to_string(out_dir.join("ratios.svg")).expect("ratios.svg written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));

    // --markdown: the same table, ready to paste.
    let mut cmd = env.cmd("syncomm-bench");
    cmd.args([
        "--quick",
        "--no-python",
        "--only",
        "floors",
        "--markdown",
        "--out",
    ])
    .arg(&out_dir);
    let out = run(cmd);
    assert!(out.status.success());
    let md = text(&out.stdout);
    let (h, r) = main_table(&md);
    assert_eq!(h, header);
    assert_eq!(r.len(), 7);

    // An unknown scenario: usage error, one line naming the choices.
    let mut cmd = env.cmd("syncomm-bench");
    cmd.args(["--quick", "--no-python", "--only", "nosuch"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("nosuch") && err.contains("floors"), "{err}");

    let mut cmd = env.cmd("syncomm-bench");
    cmd.args(["--quick", "--no-python", "--config", "two-cpu"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("two-cpu"));
}

/// `--save-baseline FILE` writes each figure's ratio to its floor under the
/// run's mode; `--check FILE` passes (exit 0, "check passed") against a
/// baseline whose ratios are far worse than any run, and fails (exit 1) naming
/// each figure against one whose ratios no run can reach (0.001×): the gate
/// compares ratios, and names what regressed. Measured on `limited-access`
/// (gate), whose figures all have floors; nothing here judges speed.
#[test]
fn check_compares_ratios_with_the_baseline_and_names_the_worse_figures() {
    let env = Env::new();
    let out_dir = env.dir().join("out");
    let base = env.dir().join("baseline.json");
    let bench = |extra: &[&str]| {
        let mut cmd = env.cmd("syncomm-bench");
        cmd.args([
            "--quick",
            "--no-python",
            "--only",
            "limited-access",
            "--out",
        ])
        .arg(&out_dir)
        .args(extra);
        run(cmd)
    };
    let out = bench(&["--save-baseline", base.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&base).expect("baseline written"))
            .expect("baseline is JSON");
    let ratios = doc["modes"]["quick"]["ratios"]
        .as_object()
        .expect("quick ratios")
        .clone();
    let keys: Vec<String> = ratios.keys().cloned().collect();
    assert!(
        keys.contains(&"one-cpu/gate.run".to_string())
            && keys.contains(&"one-cpu/gate.cycle".to_string()),
        "{keys:?}"
    );
    assert!(ratios.values().all(|v| v.as_f64().is_some_and(|r| r > 0.0)));

    // Every ratio unreachably good: both figures fail, by name.
    for k in &keys {
        doc["modes"]["quick"]["ratios"][k] = serde_json::json!(0.001);
    }
    std::fs::write(&base, doc.to_string()).unwrap();
    let out = bench(&["--check", base.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let verdict = stdout
        .lines()
        .find(|l| l.starts_with("check FAILED"))
        .unwrap_or_else(|| panic!("no verdict in:\n{stdout}"));
    for k in &keys {
        assert!(verdict.contains(k.as_str()), "{k} not named in {verdict}");
    }

    // Every ratio far worse than any run: passes.
    for k in &keys {
        doc["modes"]["quick"]["ratios"][k] = serde_json::json!(1e6);
    }
    std::fs::write(&base, doc.to_string()).unwrap();
    let out = bench(&["--check", base.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("check passed"), "{stdout}");
}

/// `--curves-only --quick --curve notify,pipeline --curves DIR` measures every
/// point of both curves and writes each as an SVG with a point (`<circle>`) per
/// measured x: 3 consumer counts × 2 series for notify, 4 stage counts for the
/// pipeline. The notify curve runs consumers in the curves' own runtime
/// directory; when that directory was made with mode 0755 the programs refused
/// it, every point failed, and the run still exited 0 and wrote empty SVGs over
/// the committed ones. A point that cannot be measured now fails the run.
#[test]
fn curves_only_measures_every_point_and_writes_the_svgs() {
    let env = Env::new();
    let svg_dir = env.dir().join("svg");
    let out_dir = env.dir().join("out");
    let mut cmd = env.cmd("syncomm-bench");
    cmd.args([
        "--quick",
        "--curves-only",
        "--curve",
        "notify,pipeline",
        "--curves-config",
        "one-cpu",
        "--curves",
    ])
    .arg(&svg_dir)
    .arg("--out")
    .arg(&out_dir);
    let out = run(cmd);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(!stdout.contains("not measured"), "{stdout}");
    for (name, points) in [("notify", 6), ("pipeline", 4)] {
        let path = svg_dir.join(format!("curve-{name}.svg"));
        let svg = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", path.display()));
        assert!(svg.starts_with("<svg"), "{}", path.display());
        assert_eq!(svg.matches("<circle").count(), points, "{name}:\n{svg}");
    }
    assert!(out_dir.join("curves.json").is_file());
}
