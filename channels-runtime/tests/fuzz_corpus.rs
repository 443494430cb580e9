//! Replays the fuzz corpus and every regression input through the same
//! harness functions the `cargo fuzz` targets run (`fuzz/src/lib.rs`), on
//! stable Rust, so a decoder change that breaks a known input fails here
//! without a fuzzing run.
//!
//! Layout: `fuzz/corpus/<target>/*` goes through that target's harness;
//! `fuzz/regressions/<target>/*` likewise, and files directly in
//! `fuzz/regressions/` go through every harness.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code, unreachable_pub)]
mod harness;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs `harness` on every file, on a thread with the 8 MiB stack libFuzzer
/// runs on, and names every input that panicked.
fn replay(target: &str, harness: fn(&[u8]), inputs: &[PathBuf]) -> Vec<String> {
    let inputs = inputs.to_vec();
    let target = target.to_owned();
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let mut failed = Vec::new();
            for path in inputs {
                let data = std::fs::read(&path).unwrap();
                if std::panic::catch_unwind(|| harness(&data)).is_err() {
                    failed.push(format!("{target}: {}", path.display()));
                }
            }
            failed
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn every_corpus_and_regression_input_decodes_without_panicking() {
    let fuzz = fuzz_dir();
    let shared = files(&fuzz.join("regressions"));
    let mut failed = Vec::new();
    let mut total = 0;
    for &(target, harness) in harness::TARGETS {
        let mut inputs = files(&fuzz.join("corpus").join(target));
        assert!(!inputs.is_empty(), "fuzz/corpus/{target} has no seeds");
        inputs.extend(files(&fuzz.join("regressions").join(target)));
        inputs.extend(shared.iter().cloned());
        total += inputs.len();
        failed.extend(replay(target, harness, &inputs));
    }
    println!("replayed {total} inputs through {} harnesses", harness::TARGETS.len());
    assert!(failed.is_empty(), "inputs that panicked:\n{}", failed.join("\n"));
}

#[test]
fn every_fuzz_target_has_a_harness() {
    let targets = files(&fuzz_dir().join("fuzz_targets"));
    let names: Vec<String> = targets.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for name in &names {
        assert!(harness::TARGETS.iter().any(|(t, _)| t == name), "fuzz_targets/{name}.rs has no harness entry");
    }
    assert_eq!(names.len(), harness::TARGETS.len());
}
