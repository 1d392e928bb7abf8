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

/// `syncomm-bench --quick --no-python --only floors` measures the four raw
/// floors between two processes, prints a table whose header names every
/// column and whose rows (one per figure, or a "not measured" row) have
/// parseable medians and p99s; the same in `--markdown`; results.json holds the
/// machine, the mode and one entry per row; ratios.svg is an SVG document. A
/// scenario name `--only` does not know is a usage error (exit 2).
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

    let (header, rows) = main_table(&stdout);
    assert_eq!(
        header,
        [
            "scenario",
            "what is measured",
            "median",
            "p99",
            "floor (same run)",
            "floor median",
            "× floor",
            "vs Python",
            "target",
            "met"
        ]
    );
    assert_eq!(rows.len(), 4, "one row per floor:\n{stdout}");
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
        assert!(row[3] == "—" || is_value(&row[3]), "p99 {:?}", row[3]);
        assert!(row[5] == "—" || is_value(&row[5]), "floor {:?}", row[5]);
        let ratio = &row[6];
        assert!(
            ratio == "—" || ratio.trim_end_matches('×').parse::<f64>().is_ok(),
            "ratio {ratio:?}"
        );
        assert!(["met", "MISSED", "—"].contains(&row[9].as_str()));
    }
    let names: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(measured, 4, "every floor measured: {names:?}");
    for floor in ["pipe", "unix socket", "TCP loopback", "futex"] {
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
    let jrows = json["rows"].as_array().expect("rows");
    assert_eq!(jrows.len(), rows.len());
    for r in jrows {
        assert!(r["scenario"].is_string());
        if r["measured"] == true {
            assert!(r["median"].as_f64().is_some_and(|v| v > 0.0), "{r}");
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
    assert_eq!(r.len(), 4);

    // An unknown scenario: usage error, one line naming the choices.
    let mut cmd = env.cmd("syncomm-bench");
    cmd.args(["--quick", "--no-python", "--only", "nosuch"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("nosuch") && err.contains("floors"), "{err}");
}
