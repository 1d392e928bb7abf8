//! Replays every committed fuzz input on the stable toolchain: the seed corpus
//! (`fuzz/corpus/TARGET/`) and every input a fuzzer once found
//! (`fuzz/regressions/TARGET/`), through the same checks the libFuzzer targets
//! run (`syncomm-fuzzcheck`). A regression input that panics again fails
//! this test, naming the file.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".keep"))
        .collect();
    files.sort();
    files
}

/// Every seed and regression input of every target passes its check.
#[test]
fn every_committed_fuzz_input_passes_its_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    for &(name, check) in syncomm_fuzzcheck::TARGETS {
        let seeds = inputs(&root.join("corpus").join(name));
        let found = inputs(&root.join("regressions").join(name));
        if seeds.is_empty() {
            failures.push(format!("fuzz/corpus/{name}/ holds no seed input"));
        }
        for file in seeds.iter().chain(&found) {
            let data = fs::read(file).expect("read a corpus file");
            if panic::catch_unwind(|| check(&data)).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that fail their check: {failures:#?}"
    );
}

/// Every target named by the checks has a cargo-fuzz binary, and back.
#[test]
fn every_check_has_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut in_manifest: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "syncomm-fuzz")
        .collect();
    in_manifest.sort_unstable();
    let mut checks: Vec<&str> = syncomm_fuzzcheck::TARGETS.iter().map(|t| t.0).collect();
    checks.sort_unstable();
    assert_eq!(in_manifest, checks);
    for name in checks {
        assert!(
            root.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{name}.rs is missing"
        );
    }
}
