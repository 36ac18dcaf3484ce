//! The client crate stays small: `cargo tree` of `cavra-runtime-client` shows none of the daemon's heavy
//! dependencies, and tokio only with the `async` feature.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Never in the client crate's tree, whatever its features.
const NEVER: &[&str] = &["clap", "daemonize", "nix", "ring", "rustls", "tracing-journald", "ureq"];

/// The crates `cargo tree` lists for the client crate's normal (non-dev) dependencies with `features`.
fn tree(features: &[&str]) -> BTreeSet<String> {
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(Path::new(env!("CARGO_MANIFEST_DIR"))).args([
        "tree",
        "--locked",
        "-p",
        "cavra-runtime-client",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ]);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let output = command.output().expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn unwanted(crates: &BTreeSet<String>, names: &[&str]) -> Vec<String> {
    crates
        .iter()
        .filter(|name| names.contains(&name.as_str()))
        .cloned()
        .collect()
}

#[test]
fn the_client_crate_alone_depends_on_serde_serde_json_and_libc() {
    let crates = tree(&[]);
    assert!(crates.contains("cavra-runtime-client"), "{crates:?}");
    for expected in ["serde", "serde_json", "libc"] {
        assert!(crates.contains(expected), "{expected} missing from {crates:?}");
    }
    assert_eq!(
        unwanted(&crates, &[NEVER, &["tokio", "hmac", "sha2"]].concat()),
        Vec::<String>::new()
    );
    // serde, serde_derive and its proc-macro helpers, serde_json's own few, libc: a short list, kept short.
    assert!(crates.len() <= 16, "{} crates: {crates:?}", crates.len());
}

#[test]
fn tokio_comes_only_with_the_async_feature_and_hmac_only_with_runner_auth() {
    let with_async = tree(&["async"]);
    assert!(with_async.contains("tokio"), "{with_async:?}");
    assert_eq!(
        unwanted(&with_async, &[NEVER, &["hmac"]].concat()),
        Vec::<String>::new()
    );
    let with_auth = tree(&["runner-auth"]);
    assert!(
        with_auth.contains("hmac") && with_auth.contains("sha2"),
        "{with_auth:?}"
    );
    assert_eq!(
        unwanted(&with_auth, &[NEVER, &["tokio"]].concat()),
        Vec::<String>::new()
    );
    let everything = tree(&["async", "runner-auth"]);
    assert_eq!(unwanted(&everything, NEVER), Vec::<String>::new());
}
