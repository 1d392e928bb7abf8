//! The end-of-suite leak check: nothing of this `cargo test` run is left —
//! no runtime directory, no board segment or gate semaphore set whose record
//! names one of its runtime directories, no process whose `SYNCOMM_DIR` is
//! one of them. It uses the code `syncomm ls` uses (`syncomm_admin`).
//!
//! It only looks at this run's directories (`syncomm-test-CARGO_PID-…`, see
//! `common::Env`), which other test binaries of the run have finished with
//! by now (cargo runs test binaries one after another, this one last by its
//! name), so it cannot flag the live objects of tests running elsewhere. Run
//! alone (`cargo test --test zz_leaks`) it has nothing of its run to check
//! and only reports, without failing, leftovers of earlier runs.

mod common;

use std::path::{Path, PathBuf};

fn ours(prefix: &str) -> impl Fn(&Path) -> bool + '_ {
    move |d: &Path| {
        d.file_name()
            .and_then(|f| f.to_str())
            .is_some_and(|f| f.starts_with(prefix))
    }
}

#[test]
fn nothing_of_this_run_is_left_behind() {
    let prefix = common::run_prefix();
    let pred = ours(&prefix);
    let mut leaks: Vec<String> = syncomm_admin::leaks::leaks(&pred)
        .iter()
        .map(|l| l.to_string())
        .collect();
    let tmp = std::env::temp_dir();
    let dirs: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| pred(p)).collect())
        .unwrap_or_default();
    leaks.extend(dirs.iter().map(|d| format!("directory {}", d.display())));
    // Earlier runs' leftovers: reported, not failed on (they are not ours).
    let earlier = syncomm_admin::leaks::leaks(&|d: &Path| {
        !d.exists() && ours("syncomm-test-")(d) && !pred(d)
    });
    for l in &earlier {
        eprintln!("note: left by an earlier run: {l}");
    }
    assert!(
        leaks.is_empty(),
        "this test run left behind:\n  {}",
        leaks.join("\n  ")
    );
}
