//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test crate uses its own subset

pub mod daemon;
pub mod measure;
pub mod oidc;
pub mod skip;
pub mod users;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_cavra-runtime")
}

pub fn testdata(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(relative)
}

/// The reference material beside the checkout (`../shared/reference/data`). Absent on a developer's laptop that
/// only has the repository: the caller's test then skips (see [`skip`]); under CI (`CI=true`) it is mandatory.
pub fn reference_data() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/data");
    skip::require_file(&path).then_some(path)
}

/// Runs the binary with `args`, feeding `stdin`.
pub fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cavra-runtime");
    let written = child.stdin.take().expect("stdin is piped").write_all(stdin.as_bytes());
    // A process that fails before reading its input closes the pipe; its exit status tells the story.
    if let Err(error) = written {
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe, "write request: {error}");
    }
    child.wait_with_output().expect("wait for cavra-runtime")
}

/// Runs the one-shot CLI and parses the decision it prints; panics with stderr if it failed.
pub fn decide(args: &[&str], request: &serde_json::Value) -> serde_json::Value {
    let output = run(args, &request.to_string());
    assert!(
        output.status.success(),
        "cavra-runtime {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("decision JSON on stdout")
}
