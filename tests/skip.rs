//! The skip helper itself: a test that cannot run is visible in the output and in a summary after the harness's
//! own, and fails under CI.

mod common;

use std::process::Command;

#[test]
#[ignore = "run by the_skip_helper_is_visible_and_fails_under_ci"]
fn probe_that_skips() {
    common::skip::skip("the probe always skips");
}

fn run_probe(ci: bool) -> (bool, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--ignored", "--exact", "probe_that_skips", "--test-threads", "1"]);
    if ci {
        command.env("CI", "true");
    } else {
        command.env_remove("CI");
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_skip_helper_is_visible_and_fails_under_ci() {
    let (passed, text) = run_probe(false);
    assert!(passed, "{text}");
    assert!(
        text.contains("SKIPPED probe_that_skips: the probe always skips"),
        "{text}"
    );
    let summary = text.find("test result: ok").expect("the harness's summary");
    let listed = text
        .find("SKIPPED: 1 test(s) of this binary did not run here")
        .expect("the skip summary");
    assert!(listed > summary, "the skip summary follows the harness's:\n{text}");

    let (passed, text) = run_probe(true);
    assert!(!passed, "{text}");
    assert!(
        text.contains("probe_that_skips cannot run under CI: the probe always skips"),
        "{text}"
    );
}
