//! The chaos soak, short, on the real (test-built) binaries: every scenario
//! runs at once for 15 s under its seeded schedule of faults, and the run
//! must end with no violated promise and nothing left behind — and must have
//! really injected faults and completed operations in every scenario (a run
//! that did nothing would pass vacuously).
//!
//! The seed is fixed so a failure here replays with
//! `./launch chaos --seconds 15 --seed 20261126` (or the same with
//! `target/debug/syncomm-chaos`).

use std::process::Command;

const SEED: &str = "20261126";

#[test]
fn a_short_chaos_run_breaks_no_promise_and_leaks_nothing() {
    let producer = std::path::PathBuf::from(env!("CARGO_BIN_EXE_producer"));
    let bins = producer.parent().expect("binaries' directory");
    // The driver kills and reaps every participant itself, and bounds every
    // wait; it runs 15 s plus the wind-down.
    let out = Command::new(env!("CARGO_BIN_EXE_syncomm-chaos"))
        .args(["--seconds", "15", "--seed", SEED, "--json", "--bins"])
        .arg(bins)
        .env_remove("RUST_LOG")
        .output()
        .expect("run syncomm-chaos");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let mut problems = Vec::new();
    for s in scenarios {
        let name = s["scenario"].as_str().unwrap_or("?");
        for v in s["violations"].as_array().into_iter().flatten() {
            problems.push(format!("VIOLATION {name}: {}", v.as_str().unwrap_or("")));
        }
        for l in s["leaks"].as_array().into_iter().flatten() {
            problems.push(format!("LEAK {name}: {}", l.as_str().unwrap_or("")));
        }
    }
    assert!(
        problems.is_empty(),
        "replay: ./launch chaos --seconds 15 --seed {SEED}\n{}",
        problems.join("\n")
    );
    assert!(
        out.status.success(),
        "exit {:?} without a violation",
        out.status
    );
    assert_eq!(scenarios.len(), 8, "every scenario ran: {report}");
    for s in scenarios {
        let name = s["scenario"].as_str().unwrap_or("?");
        assert!(
            s["faults_total"].as_u64().unwrap_or(0) > 0,
            "{name}: no fault was injected: {s}"
        );
        assert!(
            s["ops"].as_u64().unwrap_or(0) > 0,
            "{name}: no operation completed: {s}"
        );
        assert!(
            s["checks"].as_u64().unwrap_or(0) > 0,
            "{name}: nothing was checked: {s}"
        );
    }
}
