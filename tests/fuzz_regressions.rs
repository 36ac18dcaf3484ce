//! Replays fuzz inputs through the cargo-fuzz harnesses, without libFuzzer: every file in
//! `testdata/fuzz-regressions/<target>/` (inputs that once crashed a target, minimised) and the seed corpus in
//! `fuzz/corpus/<target>/` (a cheap check that the harnesses and what they assert still hold).
//!
//! The harnesses are `fuzz/src/lib.rs`, compiled in here as they are into the fuzz targets; see `fuzz/README.md`.
//! They serve on a Linux abstract socket (nothing on disk between runs), so this replay runs where the fuzzer does:
//! on Linux.
#![cfg(target_os = "linux")]

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Files directly in `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("read a directory entry").path())
        .filter(|path| path.is_file() && path.file_name().is_some_and(|name| name != "README.md"))
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = inputs(&root.join("fuzz/corpus").join(target));
    assert!(!seeds.is_empty(), "no seeds for {target}: run fuzz/seed-corpus.py");
    let regressions = inputs(&root.join("testdata/fuzz-regressions").join(target));
    let mut failures = Vec::new();
    for path in regressions.iter().chain(&seeds) {
        let data = fs::read(path).expect("read a fuzz input");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
                .to_owned();
            failures.push(format!(
                "{}: {message}",
                path.strip_prefix(root).unwrap_or(path).display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs fail:\n{}",
        failures.len(),
        regressions.len() + seeds.len(),
        failures.join("\n")
    );
}

#[test]
fn request_decode() {
    replay("request_decode", harness::request_decode);
}

#[test]
fn server_compat() {
    replay("server_compat", harness::server_compat);
}

#[test]
fn server_stream() {
    replay("server_stream", harness::server_stream);
}

#[test]
fn policy_compiled() {
    replay("policy_compiled", harness::policy_compiled);
}

#[test]
fn policy_yaml() {
    replay("policy_yaml", harness::policy_yaml);
}

#[test]
fn evidence_verify() {
    replay("evidence_verify", harness::evidence_verify);
}

#[test]
fn decision_invariants() {
    replay("decision_invariants", harness::decision_invariants);
}
