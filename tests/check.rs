//! `--check`: the whole --serve configuration is read and checked without serving; what is wrong is named, with
//! exit 1.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

fn check(args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["--check"];
    all.extend_from_slice(args);
    let output = common::run(&all, "");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_good_configuration_passes_and_says_what_would_be_served() {
    let (ok, stdout, stderr) = check(&[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("configuration OK: built-in packs (20 packs, default cavra-ai-agent-baseline, sha256:"),
        "{stdout}"
    );
}

#[test]
fn each_broken_part_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.json");
    fs::write(&registry, "{not json").unwrap();
    let open_key = dir.path().join("open.key");
    fs::write(&open_key, "secret").unwrap();
    fs::set_permissions(&open_key, fs::Permissions::from_mode(0o644)).unwrap();
    let pack_dir = dir.path().join("packs");
    fs::create_dir_all(pack_dir.join("broken")).unwrap();
    fs::write(pack_dir.join("broken/policy.yaml"), "metadata: [unterminated\n").unwrap();
    let registry_arg = registry.to_str().unwrap();
    let key_arg = open_key.to_str().unwrap();
    let packs_arg = pack_dir.to_str().unwrap();
    for (args, expected) in [
        (vec!["--registry", registry_arg], registry_arg),
        (
            vec![
                "--evidence-log",
                "/nonexistent/evidence.jsonl",
                "--evidence-signing-key-file",
                key_arg,
            ],
            key_arg,
        ),
        (vec!["--policy-dir", packs_arg], "broken/policy.yaml"),
        (vec!["--pin-pack", "no-such-pack"], "no-such-pack"),
        (
            vec!["--max-buffered-bytes", "10", "--max-request-bytes", "100"],
            "--max-buffered-bytes 10",
        ),
        (
            vec![
                "--runner-oidc-issuer",
                "https://issuer.example",
                "--runner-oidc-audience",
                "cavra",
            ],
            "missing a JWKS",
        ),
    ] {
        let (ok, stdout, stderr) = check(&args);
        assert!(!ok, "{args:?} passed: {stdout}");
        assert!(
            stderr.starts_with("cavra-runtime: configuration check failed: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
}
