//! One-shot CLI behaviour at the process boundary: output, exit codes and error messages.

mod common;

use std::fs;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn decision_is_printed_as_indented_json() {
    let output = common::run(&[], r#"{"action_type":"execute_command","target":"terraform plan"}"#);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("{\n  \"decision_id\": \"dec_"), "{text}");
    assert!(text.ends_with("}\n"), "{text}");
    let response: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(response["decision"], "allow");
}

#[test]
fn input_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("request.json");
    fs::write(&path, r#"{"action_type":"read_file","target":"secrets/../.env"}"#).unwrap();
    let output = common::run(&["--input", path.to_str().unwrap()], "");
    assert!(output.status.success(), "{}", stderr(&output));
    let response: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(response["decision"], "block");
    assert_eq!(
        response["target"], "secrets/../.env",
        "the target as sent, as the reference answers"
    );
    assert_eq!(response["normalized_target"], ".env");
}

#[test]
fn invalid_json_exits_1_naming_the_position() {
    let output = common::run(&[], "{\"action_type\": \"read_file\",\n \"target\": }");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert_eq!(
        stderr(&output),
        "cavra-runtime: invalid request JSON in standard input: expected value at line 2 column 12\n"
    );
}

#[test]
fn wrongly_typed_field_exits_1() {
    let output = common::run(&[], r#"{"action_type": ["read_file"]}"#);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("invalid type: sequence, expected a string at line 1 column"));
}

#[test]
fn unreadable_input_exits_1_naming_the_file() {
    let output = common::run(&["--input", "/nonexistent/request.json"], "");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("cavra-runtime: cannot read the request from /nonexistent/request.json: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn bad_policy_exits_1_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    fs::write(&path, r#"{"metadata": {"id": "p"}, "commands": {"block": [true]}}"#).unwrap();
    let output = common::run(&["--policy", path.to_str().unwrap()], "{}");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "cavra-runtime: {}: field `commands.block[0]`: invalid type: boolean `true`, expected a string at line 1 column 53\n",
            path.display()
        )
    );
}

#[test]
fn policy_dir_cycle_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    for (id, parent) in [("a", "b"), ("b", "a")] {
        fs::create_dir(dir.path().join(id)).unwrap();
        fs::write(
            dir.path().join(id).join("policy.yaml"),
            format!("metadata:\n  id: {id}\n  inherits: [{parent}]\n"),
        )
        .unwrap();
    }
    let output = common::run(
        &["--policy-dir", dir.path().to_str().unwrap(), "--default-pack", "a"],
        "{}",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "cavra-runtime: policy pack inheritance cycle: a -> b -> a\n"
    );
}

#[test]
fn help_documents_every_flag_with_default_and_environment() {
    let output = common::run(&["--help"], "");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "--policy <FILE>",
        "[env: CAVRA_POLICY=]",
        "--policy-dir <DIR>",
        "[env: CAVRA_POLICY_DIR=]",
        "--default-pack <ID>",
        "[env: CAVRA_DEFAULT_PACK=]",
        "--registry <FILE>",
        "[env: CAVRA_REGISTRY=]",
        "--input <FILE>",
        "[default: -]",
    ] {
        assert!(help.contains(expected), "help lacks {expected:?}:\n{help}");
    }
}

#[test]
fn environment_variables_configure_the_policy() {
    let mut command = std::process::Command::new(common::binary());
    let fixture = common::testdata("policies/compiled-fixture.json");
    command.env("CAVRA_POLICY", &fixture).args(["--input", "/dev/null"]);
    let output = command.output().unwrap();
    // An empty request file is not JSON, so this fails, but only after the policy loaded from the environment.
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("EOF while parsing a value"),
        "{}",
        stderr(&output)
    );

    let output = std::process::Command::new(common::binary())
        .env("CAVRA_POLICY", "/nonexistent/p.json")
        .args(["--input", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        stderr(&output).contains("cannot read /nonexistent/p.json"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn json_field_prints_one_field_for_scripts() {
    let answer = r#"{"rule_id":"commands.block","reason":"a \"quoted\" reason\nover two lines","pid":42,"gone":null}"#;
    let field = |name: &str| common::run(&["--json-field", name], answer);
    let reason = field("reason");
    assert!(reason.status.success(), "{}", stderr(&reason));
    assert_eq!(reason.stdout, b"a \"quoted\" reason\nover two lines\n");
    assert_eq!(field("pid").stdout, b"42\n");
    assert_eq!(field("gone").stdout, b"\n");
    let absent = field("decision");
    assert_eq!(absent.status.code(), Some(1));
    assert!(
        stderr(&absent).contains("standard input has no field \"decision\""),
        "{}",
        stderr(&absent)
    );
    for (input, words) in [("[1]", "is not a JSON object"), ("{\"a\":", "is not JSON")] {
        let output = common::run(&["--json-field", "a"], input);
        assert_eq!(output.status.code(), Some(1));
        assert!(stderr(&output).contains(words), "{}", stderr(&output));
    }
}
