//! The packaged service: the systemd units, the deb and rpm packages built from this checkout, and the launchd plist.
//!
//! * Files, checked as they are: the units say what the service needs (and nothing that would break it),
//!   `systemd-analyze verify` has nothing to say about them, `systemd-analyze security` rates the service 1.0 or
//!   better, the settings file names only real variables, the policies README's example loads, the man page renders
//!   and names real flags, the launchd plist has the keys, types and decimal mode launchd needs.
//! * Packages: `packaging/build-packages.sh` builds revisions 1 and 2 of the .deb (cargo-deb) and the .rpm (rpmbuild,
//!   from a tarball of the workspace) once for all tests here. Their contents and maintainer scripts are inspected, lintian and
//!   rpmlint must be clean apart from the allow-lists in `packaging/`, and `tests/system/system-{deb,rpm}.sh` install
//!   them into an overlay clone of this machine booted by systemd-nspawn (see `tests/system/lib/system-manager.sh`).
//!
//! Tests that need root, tools or the packages skip loudly when they cannot run (see `tests/common/skip.rs`), except
//! under CI (`CI=true`), where a missing prerequisite fails them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

mod common;

use common::skip;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BINARY: &str = env!("CARGO_BIN_EXE_cavra-runtime");
const SYSTEM_SOCKET: &str = "packaging/systemd/cavra-runtime.socket";
const SYSTEM_SERVICE: &str = "packaging/systemd/cavra-runtime.service";
const TMPFILES: &str = "packaging/systemd/cavra-runtime.tmpfile";
const METRICS_SOCKET: &str = "packaging/systemd/opt-in/cavra-runtime-metrics.socket";
const USER_SOCKET: &str = "packaging/systemd/user/cavra-runtime.socket";
const USER_SERVICE: &str = "packaging/systemd/user/cavra-runtime.service";
const SETTINGS: &str = "packaging/config/cavra-runtime.env";
const LOGROTATE: &str = "packaging/logrotate/cavra-runtime";
const NEWSYSLOG: &str = "packaging/launchd/newsyslog.d/cavra-runtime-evidence.conf";
const EVIDENCE_LOG: &str = "/var/lib/cavra/evidence.jsonl";
/// The documentation the packages install beside the README: the operator's pages, not the lab notes
/// (docs/performance.md, docs/robustness.md).
const OPERATOR_DOCS: [&str; 7] = [
    "docs/agents.md",
    "docs/evidence.md",
    "docs/migration.md",
    "docs/operating.md",
    "docs/policies.md",
    "docs/protocol.md",
    "docs/security.md",
];

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `systemd-analyze security` exposure the service may not exceed.
const MAX_EXPOSURE: f64 = 1.0;
/// Per system scenario; `timeout` signals the script's process group (and so the container) when it hits.
const SCENARIO_TIMEOUT_SECONDS: &str = "300";

fn repo(relative: &str) -> PathBuf {
    Path::new(REPO).join(relative)
}

fn read(relative: &str) -> String {
    fs::read_to_string(repo(relative)).unwrap_or_else(|error| panic!("cannot read {relative}: {error}"))
}

/// Whether the test can run (see `common::skip`): root when `root`, and every one of `programs`.
fn prerequisites(root: bool, programs: &[&str]) -> bool {
    (!root || skip::require_root("the test installs, mounts or boots a container")) && skip::require_programs(programs)
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(REPO)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; returns its standard output.
fn succeed(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn help() -> &'static str {
    static HELP: OnceLock<String> = OnceLock::new();
    HELP.get_or_init(|| succeed(BINARY, &["--help"]))
}

/// The environment variables `--help` names: those of flags (`[env: NAME=]`), and those its texts name
/// (`$CAVRA_...`, such as the reference's key variables).
fn help_variables() -> BTreeSet<String> {
    let of_flags = help()
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split('=').next())
        .map(str::to_owned);
    let named = help()
        .split('$')
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| name.starts_with("CAVRA_"));
    of_flags.chain(named).collect()
}

/// The reference's secret-bearing flags: accepted only to be refused, so `--help` does not list them.
const REFUSED_FLAGS: [&str; 3] = [
    "--evidence-signing-key",
    "--runner-auth-key",
    "--runner-auth-oidc-token",
];

/// A unit file as (section, key, value) entries, in order; comments and blank lines dropped.
fn unit_entries(relative: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut entries = Vec::new();
    for line in read(relative).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|line| line.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{relative}: not a key=value line: {line}"));
        entries.push((section.clone(), key.trim().to_owned(), value.trim().to_owned()));
    }
    entries
}

/// Every value of `key` in `section`.
fn values(entries: &[(String, String, String)], section: &str, key: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.clone())
        .collect()
}

/// The single value of `key` in `section`.
fn value(entries: &[(String, String, String)], section: &str, key: &str) -> String {
    let found = values(entries, section, key);
    assert_eq!(
        found.len(),
        1,
        "[{section}] {key}= must be set exactly once, found {found:?}"
    );
    found.into_iter().next().unwrap()
}

#[test]
fn system_units_provide_what_the_service_needs() {
    let socket = unit_entries(SYSTEM_SOCKET);
    for (key, expected) in [
        ("ListenStream", "/run/cavra/cavra-runtime.sock"),
        ("SocketUser", "root"),
        ("SocketGroup", "cavra"),
        ("SocketMode", "0660"),
        ("DirectoryMode", "0755"),
        ("RemoveOnStop", "yes"),
    ] {
        assert_eq!(value(&socket, "Socket", key), expected, "{SYSTEM_SOCKET}: {key}=");
    }
    // The daemon picks its listener by the name its --listen-fd-name defaults to.
    let listen_fd_name = help()
        .split("--listen-fd-name <NAME>")
        .nth(1)
        .and_then(|rest| rest.split("[default: ").nth(1))
        .and_then(|rest| rest.split(']').next())
        .expect("--help shows the default of --listen-fd-name");
    assert_eq!(value(&socket, "Socket", "FileDescriptorName"), listen_fd_name);
    let after = values(&socket, "Unit", "After").join(" ");
    assert!(
        after.split_whitespace().any(|unit| unit == "nss-user-lookup.target"),
        "{SYSTEM_SOCKET} must be ordered after nss-user-lookup.target (SocketGroup= is resolved when it starts)"
    );
    assert_eq!(value(&socket, "Install", "WantedBy"), "sockets.target");

    // The metrics socket: TCP on localhost only, handed to the same service under the name the daemon looks for.
    let metrics = unit_entries(METRICS_SOCKET);
    let metrics_fd_name = help()
        .split("--metrics-listen-fd-name <NAME>")
        .nth(1)
        .and_then(|rest| rest.split("[default: ").nth(1))
        .and_then(|rest| rest.split(']').next())
        .expect("--help shows the default of --metrics-listen-fd-name");
    assert_eq!(value(&metrics, "Socket", "FileDescriptorName"), metrics_fd_name);
    assert!(value(&metrics, "Socket", "ListenStream").starts_with("127.0.0.1:"));
    assert_eq!(value(&metrics, "Socket", "Service"), "cavra-runtime.service");
    assert_eq!(value(&metrics, "Socket", "IPAddressDeny"), "any");
    assert_eq!(value(&metrics, "Socket", "IPAddressAllow"), "localhost");

    let service = unit_entries(SYSTEM_SERVICE);
    for (key, expected) in [
        ("Type", "notify"),
        (
            "ExecReload",
            "/usr/bin/cavra-runtime --reload --socket /run/cavra/cavra-runtime.sock",
        ),
        ("EnvironmentFile", "-/etc/default/cavra-runtime"),
        ("User", "cavra"),
        ("Group", "cavra"),
        ("StateDirectory", "cavra"),
        ("ConfigurationDirectory", "cavra"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(value(&service, "Service", key), expected, "{SYSTEM_SERVICE}: {key}=");
    }
    let exec_start = value(&service, "Service", "ExecStart");
    assert!(
        exec_start.starts_with("/usr/bin/cavra-runtime --serve"),
        "ExecStart= must run /usr/bin/cavra-runtime --serve, not {exec_start}"
    );
    assert!(!value(&service, "Service", "WatchdogSec").is_empty());
    let credentials: BTreeSet<String> = values(&service, "Service", "LoadCredential").into_iter().collect();
    assert_eq!(
        credentials,
        BTreeSet::from([
            "evidence-ed25519-key".to_owned(),
            "evidence-signing-key".to_owned(),
            "runner-auth-key".to_owned()
        ]),
        "the keys the daemon reads from $CREDENTIALS_DIRECTORY"
    );
    assert_eq!(values(&service, "Unit", "Requires"), ["cavra-runtime.socket"]);
    for forbidden in ["PrivateUsers", "RuntimeDirectory", "DynamicUser"] {
        assert!(
            values(&service, "Service", forbidden).is_empty(),
            "{SYSTEM_SERVICE} must not set {forbidden}= (PrivateUsers= hides peer uids from the daemon; \
             RuntimeDirectory= would delete the socket's directory when the service stops; the socket's group \
             and the evidence log need a fixed user)"
        );
    }
    // The default evidence log is in the StateDirectory, where the hardened service may write.
    let state_directory = format!("/var/lib/{}/", value(&service, "Service", "StateDirectory"));
    assert!(EVIDENCE_LOG.starts_with(&state_directory));
}

/// Copies the units into `dir`, running `binary` where they name /usr/bin/cavra-runtime: verify checks that every
/// command exists.
fn units_for_verify(dir: &Path, units: &[&str], binary: &str) -> Vec<String> {
    units
        .iter()
        .map(|unit| {
            let target = dir.join(Path::new(unit).file_name().unwrap());
            fs::write(&target, read(unit).replace("/usr/bin/cavra-runtime", binary)).unwrap();
            target.display().to_string()
        })
        .collect()
}

/// The completion scripts the packages install, and the shell each is for.
const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "packaging/completions/cavra-runtime.bash"),
    ("zsh", "packaging/completions/_cavra-runtime"),
    ("fish", "packaging/completions/cavra-runtime.fish"),
];

#[test]
fn shipped_completions_are_what_the_flags_generate_and_complete_real_flags() {
    for (shell, file) in COMPLETIONS {
        assert_eq!(
            read(file),
            succeed(BINARY, &["--completions", shell]),
            "{file} is out of date: regenerate it with `cargo run -- --completions {shell} > {file}`"
        );
    }
    // bash, given the words typed so far, offers flags that --help lists.
    if !prerequisites(false, &["bash"]) {
        return;
    }
    let script = format!(
        ". {}; COMP_WORDS=(cavra-runtime --verify-ev); COMP_CWORD=1; _cavra__runtime cavra-runtime --verify-ev cavra-runtime; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        repo(COMPLETIONS[0].1).display()
    );
    let offered = succeed("bash", &["-c", &script]);
    assert_eq!(offered.trim(), "--verify-evidence", "bash completion of --verify-ev");
    assert!(help().contains("--verify-evidence"));
}

#[test]
fn units_pass_systemd_analyze_verify_and_sysusers_creates_the_user() {
    if !prerequisites(true, &["unshare", "systemd-analyze", "systemd-sysusers"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    for (mode, units) in [
        ("--system", &[SYSTEM_SOCKET, METRICS_SOCKET, SYSTEM_SERVICE][..]),
        ("--user", &[USER_SOCKET, USER_SERVICE][..]),
    ] {
        let dir = work.path().join(&mode[2..]);
        fs::create_dir_all(&dir).unwrap();
        let files = units_for_verify(&dir, units, BINARY);
        let runtime = work.path().join("xdg-runtime");
        fs::create_dir_all(&runtime).unwrap();
        // verify also looks up each Documentation=man:... page: point man at the one the packages install.
        let man = work.path().join("man");
        fs::create_dir_all(man.join("man1")).unwrap();
        fs::copy(repo("packaging/man/cavra-runtime.1"), man.join("man1/cavra-runtime.1")).unwrap();
        // verify writes under /run/systemd: give it a private /run.
        let output = Command::new("unshare")
            .args(["-m", "sh", "-c", "mount -t tmpfs tmpfs /run && exec \"$@\"", "sh"])
            .args(["systemd-analyze", mode, "verify"])
            .args(&files)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("MANPATH", &man)
            .output()
            .unwrap();
        let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
        // verify exits 0 on "ignoring" warnings (an unknown key, a bad value): its output must be empty.
        assert!(
            output.status.success() && said.is_empty(),
            "systemd-analyze {mode} verify {units:?} ({}):\n{said}",
            output.status
        );
        eprintln!("systemd-analyze {mode} verify {units:?}: clean");
    }

    // systemd-sysusers on an empty root with the file installed where the packages put it.
    let root = work.path().join("sysusers-root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("usr/lib/sysusers.d")).unwrap();
    for file in ["passwd", "group", "shadow", "gshadow"] {
        fs::write(root.join("etc").join(file), "").unwrap();
    }
    fs::copy(
        repo("packaging/systemd/cavra-runtime.sysusers"),
        root.join("usr/lib/sysusers.d/cavra-runtime.conf"),
    )
    .unwrap();
    succeed("systemd-sysusers", &[format!("--root={}", root.display()).as_str()]);
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    let group = fs::read_to_string(root.join("etc/group")).unwrap();
    let user: Vec<&str> = passwd.trim().split(':').collect();
    let groups: BTreeMap<&str, Vec<&str>> = group
        .lines()
        .map(|line| {
            let entry: Vec<&str> = line.split(':').collect();
            (entry[0], entry)
        })
        .collect();
    assert_eq!(user[0], "cavra", "{passwd}");
    assert_eq!(&user[5..], ["/var/lib/cavra", "/usr/sbin/nologin"], "{passwd}");
    assert_eq!(
        groups.keys().copied().collect::<Vec<_>>(),
        ["cavra", "cavra-evidence"],
        "{group}"
    );
    assert_eq!(user[3], groups["cavra"][2], "the user's primary group is group cavra");
    assert_eq!(
        groups["cavra-evidence"][3], "",
        "group cavra-evidence starts with no members"
    );
}

#[test]
fn service_security_exposure_is_at_most_one() {
    if !prerequisites(false, &["systemd-analyze"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let unit = work.path().join("cavra-runtime.service");
    fs::copy(repo(SYSTEM_SERVICE), &unit).unwrap();
    let threshold = format!("--threshold={}", (MAX_EXPOSURE * 10.0) as u32);
    let output = run(
        "systemd-analyze",
        &[
            "security",
            "--offline=yes",
            "--no-pager",
            &threshold,
            unit.to_str().unwrap(),
        ],
    );
    let report = text(&output.stdout);
    let score: f64 = report
        .lines()
        .find_map(|line| line.split("Overall exposure level for cavra-runtime.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{report}{}", text(&output.stderr)));
    eprintln!("systemd-analyze security --offline=yes: cavra-runtime.service exposure {score}");
    assert!(
        score <= MAX_EXPOSURE && output.status.success(),
        "exposure {score} is above {MAX_EXPOSURE}:\n{report}"
    );
}

#[test]
fn settings_file_names_only_variables_the_daemon_reads() {
    let known = help_variables();
    assert!(
        known.contains("CAVRA_EVIDENCE_LOG"),
        "--help lists the variables: {known:?}"
    );
    let service = read(SYSTEM_SERVICE);
    let mut active = BTreeMap::new();
    for line in read(SETTINGS).lines() {
        let commented = line.starts_with('#');
        let assignment = line.trim_start_matches('#');
        let Some((name, value)) = assignment.split_once('=') else {
            continue;
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            continue; // prose
        }
        // RUST_LOG sets the log level; CAVRA_EXTRA_ARGS is expanded into ExecStart= by the unit.
        let understood = known.contains(name)
            || name == "RUST_LOG"
            || (name == "CAVRA_EXTRA_ARGS" && service.contains("$CAVRA_EXTRA_ARGS"));
        assert!(
            understood,
            "{SETTINGS} names {name}, which neither the daemon nor the unit reads"
        );
        if !commented {
            active.insert(name.to_owned(), value.to_owned());
        }
    }
    assert_eq!(
        active,
        BTreeMap::from([("CAVRA_EVIDENCE_LOG".to_owned(), EVIDENCE_LOG.to_owned())]),
        "{SETTINGS}: the only setting in force by default is the evidence log"
    );
}

#[test]
fn policies_readme_example_pack_loads_and_decides() {
    let readme = read("packaging/config/policies-README");
    // The example: the indented lines after "<id>/policy.yaml" up to the next blank line.
    let after = readme
        .split("/etc/cavra/policies/acme-workstations/policy.yaml\n\n")
        .nth(1)
        .expect("the README shows acme-workstations/policy.yaml");
    let yaml: String = after
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("acme-workstations")).unwrap();
    fs::write(dir.path().join("acme-workstations/policy.yaml"), &yaml).unwrap();
    let policy_dir = dir.path().to_str().unwrap();
    for (request, expected) in [
        (r#"{"action_type":"read_file","target":"secrets/db.txt"}"#, "block"),
        (
            r#"{"action_type":"execute_command","target":"terraform plan"}"#,
            "allow",
        ),
        (
            r#"{"action_type":"execute_command","target":"terraform apply"}"#,
            "block",
        ),
    ] {
        let request_file = dir.path().join("request.json");
        fs::write(&request_file, request).unwrap();
        let answer = succeed(
            BINARY,
            &[
                "--policy-dir",
                policy_dir,
                "--default-pack",
                "acme-workstations",
                "--input",
                request_file.to_str().unwrap(),
            ],
        );
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            answer["decision"], expected,
            "{request} under the README's example pack:\n{yaml}"
        );
    }
}

#[test]
fn man_page_renders_cleanly_and_names_real_flags() {
    if !prerequisites(false, &["man"]) {
        return;
    }
    // As lintian checks man pages.
    let output = Command::new("man")
        .args([
            "--warnings",
            "-E",
            "UTF-8",
            "-l",
            "-Tutf8",
            "-Z",
            "packaging/man/cavra-runtime.1",
        ])
        .current_dir(REPO)
        .env("LC_ALL", "C.UTF-8")
        .env("MANROFFSEQ", "")
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "man --warnings: {}",
        text(&output.stderr)
    );
    let page = read("packaging/man/cavra-runtime.1").replace("\\-", "-");
    // Flags of cavra-runtime, that is: not on the lines of examples that run another program.
    let own_lines: String = page
        .lines()
        .filter(|line| !line.contains("journalctl ") && !line.contains("systemctl "))
        .collect::<Vec<_>>()
        .join("\n");
    let flags: BTreeSet<&str> = own_lines
        .split(|c: char| c.is_whitespace() || c == '[' || c == '(' || c == ',' || c == '"')
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(|word| word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .collect();
    assert!(flags.contains("--serve"), "{flags:?}");
    for flag in &flags {
        if REFUSED_FLAGS.contains(flag) {
            let refused = Command::new(BINARY).args([flag, "x"]).output().unwrap();
            assert_eq!(refused.status.code(), Some(1), "{flag}");
            assert!(text(&refused.stderr).contains("is not accepted"), "{flag}");
            continue;
        }
        assert!(
            help().contains(&format!("{flag} ")) || help().contains(&format!("{flag}\n")),
            "the man page names {flag}, which --help does not list"
        );
    }
    let variables = help_variables();
    for word in page.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')) {
        if word.starts_with("CAVRA_") {
            // A flag's variable, one a flag's help names as where a key may come from instead, or one the package's
            // purge reads.
            let postrm = read("packaging/debian/postrm");
            assert!(
                variables.contains(word)
                    || help().contains(&format!("${word}"))
                    || postrm.contains(&format!("${{{word}:-}}")),
                "the man page names {word}, which --help does not list"
            );
        }
    }
}

#[test]
fn man_page_covers_every_flag_group_every_flag_and_the_exit_codes() {
    let page = read("packaging/man/cavra-runtime.1");
    let plain = page.replace("\\-", "-");
    // The groups `--help` shows ("Policy:", "Limits (daemon):", ...): a section each, modes in MODES.
    let groups: Vec<&str> = help()
        .lines()
        .filter(|line| !line.starts_with(' ') && line.ends_with(':') && *line != "Options:")
        .map(|line| line.trim_end_matches(':').split(" (").next().unwrap())
        .collect();
    assert!(groups.len() >= 9, "{groups:?}");
    for group in groups {
        let section = if group == "Modes" {
            ".SH MODES".to_owned()
        } else {
            format!(".SS {group}")
        };
        assert!(page.lines().any(|line| line == section), "no {section} in the man page");
    }
    // Every flag `--help` lists, named as itself (not only as the start of a longer flag).
    let flags: BTreeSet<&str> = help()
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("--"))
        .filter_map(|rest| rest.split([' ', '\n']).next())
        .filter(|name| !name.is_empty() && *name != "help" && *name != "version")
        .collect();
    assert!(flags.len() >= 50, "{flags:?}");
    for flag in flags {
        let named = plain
            .match_indices(&format!("--{flag}"))
            .any(|(at, found)| !plain[at + found.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-'));
        assert!(named, "the man page does not cover --{flag}");
    }
    let exit_status = plain
        .split(".SH EXIT STATUS")
        .nth(1)
        .and_then(|rest| rest.split(".SH ").next())
        .expect("an EXIT STATUS section");
    for needle in [
        "--daemon --exit-code",
        "0 allow, 3 block",
        "4 require_approval",
        "--hook",
        "--lifecycle status",
        "0 running;",
        "1 not running, but a PID file was left behind;",
        "3 not running;",
        "4 the daemon's process runs but its socket does not answer",
    ] {
        assert!(
            exit_status.contains(needle),
            "EXIT STATUS lacks {needle:?}:\n{exit_status}"
        );
    }
}

#[test]
fn the_readme_links_the_migration_guide_whose_rows_each_say_what_to_do() {
    assert!(read("README.md").contains("](docs/migration.md)"));
    let guide = read("docs/migration.md");
    let rows: Vec<Vec<&str>> = guide
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| area ") && !line.starts_with("|---"))
        .map(|line| line.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert!(rows.len() >= 50, "{} rows", rows.len());
    for row in &rows {
        assert_eq!(
            row.len(),
            4,
            "area | Go daemon | cavra-runtime | why, and what to do: {row:?}"
        );
        assert!(row.iter().all(|cell| !cell.is_empty()), "{row:?}");
    }
    // The differences a Go daemon's user meets first, by the words they would search for.
    for needle in [
        "`--evidence-signing-key K`",
        "`--runner-auth-oidc-token T`",
        "unlocked PID file",
        "`--lifecycle status` exit code",
        "`--daemon --evidence-log L`",
        "flags a mode does not read",
        "`--policy` given a YAML pack",
        "permission denied (you are not in group cavra)",
        "`examples/go-runtime/typed-release-governance/`",
        "daemon refusals",
        "framing",
    ] {
        assert!(guide.contains(needle), "the migration guide lacks {needle:?}");
    }
}

const PLIST: &str = "packaging/launchd/com.cavra.runtime.plist";
const NEWSYSLOG_ENTRY: &str = "packaging/launchd/newsyslog.d/cavra-runtime-log.conf";
/// The shared harness beside the checkout: the launchd plist checker, Apple's plist DTD and a catalog for it.
const HARNESS: &str = "../shared/harness";

#[test]
fn logrotate_config_rotates_the_service_log_without_losing_a_record() {
    // The directives that keep every record and the chain whole (see the file's comments for why each).
    let config = read(LOGROTATE);
    let directives: Vec<&str> = config
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    assert_eq!(
        directives[0],
        format!("{EVIDENCE_LOG} {{"),
        "{LOGROTATE} rotates the packaged log"
    );
    for wanted in ["nocreate", "nocopytruncate", "nocompress", "missingok", "notifempty"] {
        assert!(directives.contains(&wanted), "{LOGROTATE} lacks {wanted}");
    }
    for unwanted in ["copytruncate", "compress", "create", "delaycompress", "copy"] {
        assert!(!directives.contains(&unwanted), "{LOGROTATE} must not {unwanted}");
    }
    let script = |name: &str| {
        config
            .split(&format!("{name}\n"))
            .nth(1)
            .and_then(|rest| rest.split("endscript").next())
            .map(str::trim)
            .unwrap_or_else(|| panic!("{LOGROTATE} has no {name} script"))
            .to_owned()
    };
    assert_eq!(script("prerotate"), "systemctl start cavra-runtime.service");
    assert_eq!(script("postrotate"), "systemctl reload cavra-runtime.service");
    // logrotate itself parses it (--debug changes nothing).
    if !prerequisites(false, &["logrotate"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let output = Command::new("logrotate")
        .arg("--debug")
        .arg("--state")
        .arg(work.path().join("state"))
        .arg(repo(LOGROTATE))
        .output()
        .unwrap();
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success() && !said.contains("error"),
        "logrotate --debug:\n{said}"
    );
    assert!(said.contains(&format!("considering log {EVIDENCE_LOG}")), "{said}");
}

#[test]
fn newsyslog_config_rotates_the_launchd_log_plainly_and_writes_nothing_into_it() {
    let config = read(NEWSYSLOG);
    let entries: Vec<Vec<&str>> = config
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(entries.len(), 1, "{NEWSYSLOG}: one entry");
    let fields = &entries[0];
    // logfilename owner:group mode count size when flags
    assert_eq!(fields.len(), 7, "{fields:?}");
    let plist = read("packaging/launchd/com.cavra.runtime.plist");
    let log = plist
        .split("<key>CAVRA_EVIDENCE_LOG</key>")
        .nth(1)
        .and_then(|rest| rest.split("<string>").nth(1))
        .and_then(|rest| rest.split("</string>").next())
        .expect("the plist sets CAVRA_EVIDENCE_LOG");
    assert_eq!(fields[0], log, "the plist's evidence log");
    assert_eq!(
        fields[1], "_cavra:_cavra",
        "the new file is the daemon account's, which appends to it"
    );
    assert_eq!(fields[2], "600");
    let flags = fields[6];
    assert!(flags.contains('B'), "B: no \"logfile turned over\" line in the log");
    assert!(flags.contains('N'), "N: there is no pid file to signal under launchd");
    assert!(!flags.contains(['Z', 'J', 'X', 'Y']), "archives stay plain: {flags}");
}

/// Runs the plist checker on `content` (written as com.cavra.runtime.plist); returns (passed, what it printed).
fn check_plist(content: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("com.cavra.runtime.plist");
    fs::write(&file, content).unwrap();
    let output = Command::new("/usr/bin/python3")
        .arg(repo("tests/system/lib/launchd-plist.py"))
        .arg(&file)
        .output()
        .unwrap();
    (
        output.status.success(),
        format!("{}{}", text(&output.stdout), text(&output.stderr)),
    )
}

#[test]
fn launchd_plist_has_the_keys_types_and_decimal_mode_launchd_needs() {
    if !skip::require_file(Path::new("/usr/bin/python3")) {
        return;
    }
    let plist = read(PLIST);
    let (passed, said) = check_plist(&plist);
    assert!(passed, "{PLIST}:\n{said}");
    assert!(
        plist.contains("<integer>432</integer>"),
        "the mode is written in decimal"
    );

    // The checker catches what it must: each of these breaks the plist in one way.
    let serve = "<string>--serve</string>";
    let socket = "<string>/var/run/cavra-runtime.sock</string>";
    let log = "<string>/var/log/cavra-runtime.log</string>";
    let broken = [
        (
            "octal digits as a decimal",
            plist.replace("<integer>432</integer>", "<integer>660</integer>"),
            "SockPathMode is 660",
        ),
        (
            "the mode as a string",
            plist.replace("<integer>432</integer>", "<string>0660</string>"),
            "SockPathMode must be int",
        ),
        (
            "a detaching flag",
            plist.replace(serve, &format!("{serve}<string>--lifecycle</string>")),
            "must not include --lifecycle",
        ),
        ("no --serve", plist.replace(serve, ""), "must include --serve"),
        (
            "RunAtLoad as a string",
            plist.replace(
                "<key>RunAtLoad</key>\n    <true/>",
                "<key>RunAtLoad</key>\n    <string>yes</string>",
            ),
            "RunAtLoad must be bool",
        ),
        (
            "no Label",
            plist.replace("<key>Label</key>\n    <string>com.cavra.runtime</string>", ""),
            "Label is missing",
        ),
        (
            "the socket in a directory of /var/run, gone after a reboot",
            plist.replace(socket, "<string>/var/run/cavra/cavra-runtime.sock</string>"),
            "SockPathName is '/var/run/cavra/cavra-runtime.sock'",
        ),
        (
            "the daemon told another socket than launchd's",
            plist.replacen(socket, "<string>/tmp/cavra.sock</string>", 1),
            "CAVRA_RUNTIME_SOCKET is '/tmp/cavra.sock', not SockPathName",
        ),
        (
            "the socket's group as a name",
            plist.replace(
                "<key>SockPathMode</key>",
                "<key>SockPathGroup</key><string>_cavra</string><key>SockPathMode</key>",
            ),
            "SockPathGroup must be int",
        ),
        (
            "running as root",
            plist.replace("<string>_cavra</string>", "<string>root</string>"),
            "UserName is root: the daemon runs as a dedicated account",
        ),
        (
            "no account",
            plist.replace("<key>UserName</key>\n    <string>_cavra</string>", ""),
            "UserName is missing",
        ),
        (
            "launchd's log file is not the one the daemon follows",
            plist.replacen(log, "<string>/var/log/other.log</string>", 1),
            "StandardErrorPath is '/var/log/cavra-runtime.log' but CAVRA_LOG_FILE is '/var/log/other.log'",
        ),
        (
            "an unknown process type",
            plist.replace("<string>Interactive</string>", "<string>Realtime</string>"),
            "ProcessType is 'Realtime'",
        ),
        (
            "a misspelt key",
            plist.replace("<key>KeepAlive</key>", "<key>KeepAlives</key>"),
            "unknown key KeepAlives",
        ),
        (
            "malformed XML",
            plist.replace("</dict>\n</plist>", "</plist>"),
            "not a valid plist",
        ),
    ];
    for (what, content, expected) in broken {
        assert_ne!(content, plist, "{what}: the mutation did not apply");
        let (passed, said) = check_plist(&content);
        assert!(
            !passed && said.contains(expected),
            "{what}: expected the checker to report '{expected}', got:\n{said}"
        );
    }
}

/// The plist at `path` as JSON, read by Python's plistlib (XML or binary, as launchd reads it).
fn plist_json(path: &Path) -> serde_json::Value {
    let output = succeed(
        "/usr/bin/python3",
        &[
            "-c",
            "import json, plistlib, sys; json.dump(plistlib.load(open(sys.argv[1], 'rb')), sys.stdout)",
            path.to_str().unwrap(),
        ],
    );
    serde_json::from_str(&output).unwrap()
}

/// What `plutil -lint` checks, on Linux: the shared harness's checker (a well-formed plist, launchd's key types) and
/// xmllint against Apple's DTD (the key and value order, the element names). Returns what each that failed said.
fn lint_like_plutil(path: &Path) -> Vec<String> {
    let harness = repo(HARNESS);
    let mut failures = Vec::new();
    let checker = run(
        "/usr/bin/python3",
        &[
            harness.join("check_launchd_plist.py").to_str().unwrap(),
            path.to_str().unwrap(),
        ],
    );
    if !checker.status.success() {
        failures.push(format!("check_launchd_plist.py: {}", text(&checker.stdout)));
    }
    let dtd = Command::new("xmllint")
        .args(["--noout", "--nonet", "--valid"])
        .arg(path)
        .env("XML_CATALOG_FILES", harness.join("catalog.xml"))
        .output()
        .unwrap();
    if !dtd.status.success() {
        failures.push(format!("xmllint --valid: {}", text(&dtd.stderr)));
    }
    failures
}

fn launchd_prerequisites() -> bool {
    skip::require_file(Path::new("/usr/bin/python3"))
        && skip::require_programs(&["xmllint", "sh"])
        && skip::require_file(&repo(HARNESS).join("check_launchd_plist.py"))
        && skip::require_file(&repo(HARNESS).join("catalog.xml"))
}

/// The installer's dry run (a first install, account id 371), one command per line.
fn install_dry_run() -> Vec<String> {
    let output = succeed(
        "sh",
        &[
            "packaging/launchd/install.sh",
            "--dry-run",
            "--id",
            "371",
            "--binary",
            "/build/cavra-runtime",
        ],
    );
    output.lines().map(str::to_owned).collect()
}

#[test]
fn launchd_plist_passes_the_shared_checker_and_apples_dtd_as_shipped_and_as_installed() {
    if !launchd_prerequisites() {
        return;
    }
    let shipped = repo(PLIST);
    assert_eq!(lint_like_plutil(&shipped), Vec::<String>::new(), "{PLIST}");

    // The installer adds the socket's group (a number known only at install): apply its plutil command here.
    let commands = install_dry_run();
    let insert = commands
        .iter()
        .find(|line| line.starts_with("plutil -insert "))
        .expect("the installer sets the socket's group");
    let words: Vec<&str> = insert.split(' ').collect();
    assert_eq!(
        words,
        [
            "plutil",
            "-insert",
            "Sockets.Listeners.SockPathGroup",
            "-integer",
            "371",
            "/Library/LaunchDaemons/com.cavra.runtime.plist"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("com.cavra.runtime.plist");
    succeed(
        "/usr/bin/python3",
        &[
            "-c",
            "import plistlib, sys\n\
             job = plistlib.load(open(sys.argv[1], 'rb'))\n\
             *parents, key = sys.argv[2].split('.')\n\
             where = job\n\
             for parent in parents: where = where[parent]\n\
             assert key not in where, 'plutil -insert fails on an existing key'\n\
             where[key] = int(sys.argv[3])\n\
             plistlib.dump(job, open(sys.argv[4], 'wb'))",
            shipped.to_str().unwrap(),
            words[2],
            words[4],
            installed.to_str().unwrap(),
        ],
    );
    assert_eq!(
        lint_like_plutil(&installed),
        Vec::<String>::new(),
        "the installed plist"
    );
    let (passed, said) = check_plist(&fs::read_to_string(&installed).unwrap());
    assert!(passed, "the installed plist:\n{said}");
    assert_eq!(plist_json(&installed)["Sockets"]["Listeners"]["SockPathGroup"], 371);

    // Each check catches what the other lets through.
    let plist = read(PLIST);
    for (what, content, caught_by) in [
        (
            "an element plists do not have, which plistlib skips",
            plist.replace("<string>--serve</string>", "<string>--serve</string><serve/>"),
            "xmllint --valid",
        ),
        (
            "a socket mode beyond 0777, which the DTD allows",
            plist.replace("<integer>432</integer>", "<integer>4096</integer>"),
            "check_launchd_plist.py",
        ),
    ] {
        assert_ne!(content, plist, "{what}: the mutation did not apply");
        let broken = dir.path().join("broken.plist");
        fs::write(&broken, content).unwrap();
        let failures = lint_like_plutil(&broken);
        assert!(
            failures.len() == 1 && failures[0].starts_with(caught_by),
            "{what}: expected only {caught_by} to fail, got: {failures:?}"
        );
    }
}

#[test]
fn launchd_installer_lays_out_what_the_plist_the_daemon_and_newsyslog_name() {
    if !launchd_prerequisites() {
        return;
    }
    let job = plist_json(&repo(PLIST));
    let string = |value: &serde_json::Value| value.as_str().unwrap().to_owned();
    let program = string(&job["ProgramArguments"][0]);
    let user = string(&job["UserName"]);
    let group = string(&job["GroupName"]);
    let socket = string(&job["Sockets"]["Listeners"]["SockPathName"]);
    let log = string(&job["StandardErrorPath"]);
    let evidence = string(&job["EnvironmentVariables"]["CAVRA_EVIDENCE_LOG"]);
    let evidence_dir = Path::new(&evidence).parent().unwrap().to_str().unwrap().to_owned();
    let program_dir = Path::new(&program).parent().unwrap().to_str().unwrap().to_owned();
    let label = string(&job["Label"]);
    let destination = format!("/Library/LaunchDaemons/{label}.plist");

    // The daemon's own default on macOS is the socket launchd binds, so clients run as root find it.
    assert_eq!(socket, cavra_runtime_client::MACOS_SYSTEM_SOCKET);
    assert_eq!(user, "_cavra");
    assert_eq!(group, user);

    let commands = install_dry_run();
    let expected = [
        format!("dscl . -create /Groups/{group} PrimaryGroupID 371"),
        format!("dscl . -create /Users/{user} UniqueID 371"),
        format!("dscl . -create /Users/{user} PrimaryGroupID 371"),
        format!("dscl . -create /Users/{user} UserShell /usr/bin/false"),
        format!("install -d -m 0755 -o root -g wheel /usr/local/cavra-runtime {program_dir}"),
        format!("install -m 0755 -o root -g wheel /build/cavra-runtime {program}"),
        format!("install -d -m 0700 -o {user} -g {group} {evidence_dir}"),
        format!("install -m 0640 -o {user} -g admin /dev/null {log}"),
        format!(
            "install -m 0644 -o root -g wheel {} /etc/newsyslog.d/cavra-runtime-log.conf",
            repo(NEWSYSLOG_ENTRY).display()
        ),
        format!(
            "install -m 0644 -o root -g wheel {} /etc/newsyslog.d/cavra-runtime-evidence.conf",
            repo(NEWSYSLOG).display()
        ),
        format!(
            "install -m 0644 -o root -g wheel {} {destination}",
            repo(PLIST).display()
        ),
        format!("plutil -lint {destination}"),
        format!("launchctl enable system/{label}"),
        format!("launchctl bootstrap system {destination}"),
    ];
    let mut at = 0;
    for line in &expected {
        let found = commands[at..]
            .iter()
            .position(|command| command == line)
            .unwrap_or_else(|| {
                panic!(
                    "the installer does not run `{line}` (in this order):\n{}",
                    commands.join("\n")
                )
            });
        at += found + 1;
    }
    // The account exists before anything is given to it, and the job is loaded last.
    let first = |prefix: &str| commands.iter().position(|line| line.starts_with(prefix)).unwrap();
    assert!(first("dscl . -create /Users/") < first("install -d -m 0700"));
    assert!(first("launchctl bootstrap") > first("plutil -insert"));

    // newsyslog rotates the file launchd and the daemon write, owned as the installer creates it, without a signal
    // (the daemon follows the file itself) and without compression (a line racing the rename lands in the archive).
    let entry = read(NEWSYSLOG_ENTRY);
    let lines: Vec<Vec<&str>> = entry
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 1, "one entry:\n{entry}");
    let fields = &lines[0];
    assert_eq!(fields[..4], [log.as_str(), &format!("{user}:admin"), "640", "7"]);
    let flags = fields[6];
    assert!(flags.contains('N') && !flags.contains(['J', 'Z', 'X', 'B']), "{flags}");
    assert_eq!(fields.len(), 7, "no pid file to signal: {fields:?}");

    // Uninstalling removes what was installed; --purge also what it keeps by default.
    let uninstall = |args: &[&str]| -> String {
        let mut all = vec!["packaging/launchd/uninstall.sh", "--dry-run"];
        all.extend_from_slice(args);
        succeed("sh", &all)
    };
    let removed = uninstall(&[]);
    for path in [
        &destination,
        "/etc/newsyslog.d/cavra-runtime-log.conf",
        "/etc/newsyslog.d/cavra-runtime-evidence.conf",
        "/usr/local/cavra-runtime",
        &socket,
    ] {
        assert!(
            removed.contains(&format!(" {path}")),
            "uninstall leaves {path}:\n{removed}"
        );
    }
    assert!(
        removed.starts_with(&format!("launchctl bootout system/{label}\n")),
        "{removed}"
    );
    for kept in [&evidence_dir, &format!("/Users/{user}")] {
        assert!(
            !removed.contains(kept.as_str()),
            "uninstall without --purge removes {kept}:\n{removed}"
        );
    }
    let purged = uninstall(&["--purge"]);
    for line in [
        format!("rm -rfx {evidence_dir}"),
        "find /var/log -maxdepth 1 -name 'cavra-runtime.log*' -delete".to_owned(),
        format!("dscl . -delete /Users/{user}"),
        format!("dscl . -delete /Groups/{group}"),
    ] {
        assert!(
            purged.lines().any(|command| command == line),
            "--purge does not run `{line}`:\n{purged}"
        );
    }
    assert_eq!(Path::new(&log).parent().unwrap(), Path::new("/var/log"));
}

/// The packages this checkout builds: revision 1 and revision 2 (for the upgrade) of each.
struct Packages {
    deb: [PathBuf; 2],
    rpm: [PathBuf; 2],
}

const BUILD_TOOLS: [&str; 5] = ["cargo", "cargo-deb", "rpmbuild", "dpkg-deb", "rpm"];

/// Where this test process builds its packages: a directory of its own, so that test runs going on at the same
/// time in the same checkout never replace each other's packages. Those of processes that have exited are removed.
fn package_directory() -> PathBuf {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("packaging");
    if let Ok(entries) = fs::read_dir(&parent) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let finished = name
                .strip_prefix("run-")
                .is_some_and(|pid| !Path::new("/proc").join(pid).exists());
            if finished {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    parent.join(format!("run-{}", std::process::id()))
}

/// Builds the packages once for every test in this file (the first caller waits; the others share the result).
fn packages() -> &'static Packages {
    static BUILT: OnceLock<Result<Packages, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = package_directory();
        let started = Instant::now();
        let mut paths = Vec::new();
        for revision in ["1", "2"] {
            let output = Command::new("bash")
                .arg(repo("packaging/build-packages.sh"))
                .args(["--out", out.to_str().unwrap(), "--revision", revision])
                .current_dir(REPO)
                .output()
                .map_err(|error| format!("cannot run packaging/build-packages.sh: {error}"))?;
            if !output.status.success() {
                return Err(format!(
                    "packaging/build-packages.sh --revision {revision} failed ({}):\n{}",
                    output.status,
                    text(&output.stderr)
                ));
            }
            paths.extend(text(&output.stdout).lines().map(PathBuf::from));
        }
        eprintln!(
            "built {} packages in {:.1} s",
            paths.len(),
            started.elapsed().as_secs_f64()
        );
        let pick = |extension: &str| -> Result<[PathBuf; 2], String> {
            let found: Vec<PathBuf> = paths
                .iter()
                .filter(|path| path.extension().is_some_and(|e| e == extension) && path.is_file())
                .cloned()
                .collect();
            found
                .try_into()
                .map_err(|found| format!("expected two .{extension} files, got {found:?}"))
        };
        Ok(Packages {
            deb: pick("deb")?,
            rpm: pick("rpm")?,
        })
    });
    built.as_ref().unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn deb_contents_and_maintainer_scripts() {
    if !prerequisites(false, &BUILD_TOOLS) {
        return;
    }
    let deb = packages().deb[0].to_str().unwrap();
    // path -> "mode owner/group", directories left out
    let files: BTreeMap<String, String> = succeed("dpkg-deb", &["--contents", deb])
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (!fields[0].starts_with('d')).then(|| {
                let path = fields[5].trim_start_matches('.').to_owned();
                (path, format!("{} {}", fields[0], fields[1]))
            })
        })
        .collect();
    let file = |mode: &str| format!("{mode} 0/0");
    let mut expected = BTreeMap::from([
        ("/etc/cavra/policies/README".to_owned(), file("-rw-r--r--")),
        // Root-only: the daemon refuses to start when a key is set in a settings file others can read.
        ("/etc/default/cavra-runtime".to_owned(), file("-rw-------")),
        ("/etc/logrotate.d/cavra-runtime".to_owned(), file("-rw-r--r--")),
        ("/usr/bin/cavra-runtime".to_owned(), file("-rwxr-xr-x")),
        (
            "/usr/lib/systemd/system/cavra-runtime.service".to_owned(),
            file("-rw-r--r--"),
        ),
        (
            "/usr/lib/systemd/system/cavra-runtime.socket".to_owned(),
            file("-rw-r--r--"),
        ),
        (
            "/usr/lib/systemd/system/cavra-runtime-metrics.socket".to_owned(),
            file("-rw-r--r--"),
        ),
        (
            "/usr/lib/systemd/user/cavra-runtime.service".to_owned(),
            file("-rw-r--r--"),
        ),
        (
            "/usr/lib/systemd/user/cavra-runtime.socket".to_owned(),
            file("-rw-r--r--"),
        ),
        ("/usr/lib/sysusers.d/cavra-runtime.conf".to_owned(), file("-rw-r--r--")),
        ("/usr/lib/tmpfiles.d/cavra-runtime.conf".to_owned(), file("-rw-r--r--")),
        ("/usr/share/doc/cavra-runtime/README.md".to_owned(), file("-rw-r--r--")),
        (
            "/usr/share/doc/cavra-runtime/changelog.Debian.gz".to_owned(),
            file("-rw-r--r--"),
        ),
        ("/usr/share/doc/cavra-runtime/copyright".to_owned(), file("-rw-r--r--")),
        ("/usr/share/man/man1/cavra-runtime.1.gz".to_owned(), file("-rw-r--r--")),
        (
            "/usr/share/bash-completion/completions/cavra-runtime".to_owned(),
            file("-rw-r--r--"),
        ),
        (
            "/usr/share/zsh/vendor-completions/_cavra-runtime".to_owned(),
            file("-rw-r--r--"),
        ),
        (
            "/usr/share/fish/vendor_completions.d/cavra-runtime.fish".to_owned(),
            file("-rw-r--r--"),
        ),
    ]);
    for doc in OPERATOR_DOCS {
        expected.insert(
            format!("/usr/share/doc/cavra-runtime/{}", file_name(doc)),
            file("-rw-r--r--"),
        );
    }
    assert_eq!(files, expected, "dpkg-deb --contents {deb}");

    let control = succeed(
        "dpkg-deb",
        &["--field", deb, "Package", "Version", "Section", "Depends", "Recommends"],
    );
    for expected in [
        "Package: cavra-runtime",
        "Version: 0.1.0-1",
        "Section: admin",
        "Depends: libc6",
        "Recommends: logrotate",
    ] {
        assert!(control.contains(expected), "control lacks {expected}:\n{control}");
    }

    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let control_dir = work.path().join("control");
    succeed("dpkg-deb", &["--extract", deb, root.to_str().unwrap()]);
    succeed("dpkg-deb", &["--control", deb, control_dir.to_str().unwrap()]);
    for (installed, source) in [
        ("usr/lib/systemd/system/cavra-runtime.service", SYSTEM_SERVICE),
        ("usr/lib/systemd/system/cavra-runtime.socket", SYSTEM_SOCKET),
        ("usr/lib/systemd/system/cavra-runtime-metrics.socket", METRICS_SOCKET),
        ("usr/lib/systemd/user/cavra-runtime.service", USER_SERVICE),
        ("usr/lib/systemd/user/cavra-runtime.socket", USER_SOCKET),
        (
            "usr/lib/sysusers.d/cavra-runtime.conf",
            "packaging/systemd/cavra-runtime.sysusers",
        ),
        ("usr/lib/tmpfiles.d/cavra-runtime.conf", TMPFILES),
        ("etc/default/cavra-runtime", SETTINGS),
        ("etc/cavra/policies/README", "packaging/config/policies-README"),
        ("etc/logrotate.d/cavra-runtime", LOGROTATE),
    ] {
        assert_eq!(
            fs::read_to_string(root.join(installed)).unwrap(),
            read(source),
            "{installed} is {source}"
        );
    }
    let version = succeed(root.join("usr/bin/cavra-runtime").to_str().unwrap(), &["--version"]);
    assert_eq!(version.trim(), format!("cavra-runtime {}", env!("CARGO_PKG_VERSION")));

    let script = |name: &str| fs::read_to_string(control_dir.join(name)).unwrap();
    assert_eq!(
        script("conffiles").lines().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "/etc/default/cavra-runtime",
            "/etc/cavra/policies/README",
            "/etc/logrotate.d/cavra-runtime"
        ])
    );
    for name in ["postinst", "prerm", "postrm"] {
        let body = script(name);
        assert!(
            !body.contains("#DEBHELPER#"),
            "{name}: the debhelper token was not replaced"
        );
        succeed("sh", &["-n", control_dir.join(name).to_str().unwrap()]);
    }
    // postinst: the user and group exist before the socket (which names the group) is enabled and started; an
    // upgrade restarts the daemon and never the socket.
    let postinst = script("postinst");
    let position = |needle: &str| {
        postinst
            .find(needle)
            .unwrap_or_else(|| panic!("postinst lacks `{needle}`:\n{postinst}"))
    };
    let sysusers = position("systemd-sysusers ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} cavra-runtime.conf");
    let enable = position("deb-systemd-helper enable cavra-runtime.socket");
    let start = position("deb-systemd-invoke start cavra-runtime.socket");
    let restart = position("deb-systemd-invoke try-restart cavra-runtime.service");
    assert!(
        sysusers < enable && enable < start && start < restart,
        "postinst order:\n{postinst}"
    );
    for line in postinst.lines().filter(|line| line.contains("restart")) {
        assert!(
            !line.contains("cavra-runtime.socket"),
            "postinst restarts the socket: {line}"
        );
    }
    // prerm: stop both units on removal only.
    let prerm = script("prerm");
    assert!(
        prerm.contains("if [ -d /run/systemd/system ] && [ \"$1\" = remove ]; then\n\tdeb-systemd-invoke stop cavra-runtime.service cavra-runtime.socket"),
        "prerm:\n{prerm}"
    );
    assert!(
        prerm.contains("deb-systemd-invoke stop cavra-runtime-metrics.socket"),
        "prerm stops the opt-in metrics socket on removal:\n{prerm}"
    );
    // postrm: the evidence is deleted only on an operator's request, and never across a file system boundary
    // (deb_purge_keeps_the_evidence_unless_asked_and_never_crosses_a_mount runs it).
    let postrm = script("postrm");
    let deletions: Vec<&str> = postrm
        .lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with("rm ") || line.starts_with("find "))
        .collect();
    assert_eq!(
        deletions,
        [
            "rm -rf --one-file-system \"$state\"",
            "find \"$state\" -mindepth 1 \"$@\" ! -type d -delete",
            "find \"$state\" -mindepth 1 -depth \"$@\" -type d -empty -delete",
        ],
        "postrm:\n{postrm}"
    );
    assert!(
        postrm.contains("if [ \"${CAVRA_PURGE_EVIDENCE:-}\" = yes ]; then"),
        "{postrm}"
    );
}

/// What `postrm purge` does to /var/lib/cavra, run for real in a private mount namespace whose /var/lib and /run are
/// fresh tmpfs (the host's are not touched): `setup` prepares the namespace after the evidence log and a rotated file
/// are in place; `env` is put before the script. Returns every path under /var/lib afterwards (with the content of
/// each regular file) and what the script said.
fn purge_in_namespace(setup: &str, env: &str) -> (Vec<String>, String) {
    let script = format!(
        "set -e
mount -t tmpfs cavra-test /var/lib
mount -t tmpfs cavra-test /run
mkdir -p /var/lib/cavra/rotated /run/cavra
echo record >/var/lib/cavra/evidence.jsonl
echo older >/var/lib/cavra/rotated/evidence.jsonl.1
{setup}
{env} sh {REPO}/packaging/debian/postrm purge
find /var/lib | sort | while read -r path; do
    if [ -f \"$path\" ]; then echo \"$path: $(cat \"$path\")\"; else echo \"$path\"; fi
done"
    );
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    (
        text(&output.stdout).lines().map(str::to_owned).collect(),
        text(&output.stderr),
    )
}

#[test]
fn deb_purge_keeps_the_evidence_unless_asked_and_never_crosses_a_mount() {
    if !prerequisites(true, &["unshare", "find"]) {
        return;
    }
    let untouched = [
        "/var/lib",
        "/var/lib/cavra",
        "/var/lib/cavra/evidence.jsonl: record",
        "/var/lib/cavra/rotated",
        "/var/lib/cavra/rotated/evidence.jsonl.1: older",
    ];
    // A purge keeps the evidence, and says so.
    let (kept, said) = purge_in_namespace("", "");
    assert_eq!(kept, untouched);
    assert!(
        said.contains("cavra-runtime: kept /var/lib/cavra, the evidence log"),
        "{said}"
    );

    // Asked to, it deletes it.
    let (gone, said) = purge_in_namespace("", "CAVRA_PURGE_EVIDENCE=yes");
    assert_eq!(gone, ["/var/lib"]);
    assert!(said.contains("deleted /var/lib/cavra, the evidence log"), "{said}");

    // Asked to, with an evidence volume (a tmpfs, its mount point's name with a space) and a bind mount of the same
    // file system below it: what lies on /var/lib itself goes, the mounts keep everything.
    let mounts = "mkdir '/var/lib/cavra/archive volume' /var/lib/cavra/bound /var/lib/elsewhere
mount -t tmpfs cavra-volume '/var/lib/cavra/archive volume'
echo archived >'/var/lib/cavra/archive volume/evidence.jsonl.9'
echo bound >/var/lib/elsewhere/evidence.jsonl.5
mount --bind /var/lib/elsewhere /var/lib/cavra/bound";
    let (left, said) = purge_in_namespace(mounts, "CAVRA_PURGE_EVIDENCE=yes");
    assert_eq!(
        left,
        [
            "/var/lib",
            "/var/lib/cavra",
            "/var/lib/cavra/archive volume",
            "/var/lib/cavra/archive volume/evidence.jsonl.9: archived",
            "/var/lib/cavra/bound",
            "/var/lib/cavra/bound/evidence.jsonl.5: bound",
            "/var/lib/elsewhere",
            "/var/lib/elsewhere/evidence.jsonl.5: bound",
        ]
    );
    assert!(
        said.contains("kept, with everything in them, the file systems mounted at: /var/lib/cavra/archive volume"),
        "{said}"
    );

    // /var/lib/cavra itself a volume: nothing in it is deleted.
    let own = "mount -t tmpfs cavra-volume /var/lib/cavra
mkdir /var/lib/cavra/rotated
echo record >/var/lib/cavra/evidence.jsonl
echo older >/var/lib/cavra/rotated/evidence.jsonl.1";
    let (kept, said) = purge_in_namespace(own, "CAVRA_PURGE_EVIDENCE=yes");
    assert_eq!(kept, untouched);
    assert!(
        said.contains("kept /var/lib/cavra: it is a file system of its own"),
        "{said}"
    );
}

#[test]
fn rpm_contents_and_scriptlets() {
    if !prerequisites(false, &[&BUILD_TOOLS[..], &["rpm2cpio", "cpio"]].concat()) {
        return;
    }
    let rpm = packages().rpm[0].to_str().unwrap();
    let query = |format: &str| succeed("rpm", &["-qp", "--queryformat", format, rpm]);
    assert_eq!(
        query("%{NAME} %{VERSION}-%{RELEASE}"),
        format!("cavra-runtime {}-1", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(query("[%{RECOMMENDS}\n]"), "logrotate\n", "the logrotate script's tool");
    // path -> "mode owner group flags" (c: config, n: noreplace, d: doc, l: licence), directories left out
    let files: BTreeMap<String, String> =
        query("[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]")
            .lines()
            .filter(|line| !line.starts_with('d') && !line.contains("/usr/lib/.build-id/"))
            .map(|line| {
                let (attributes, path) = line.rsplit_once(' ').unwrap();
                (path.to_owned(), attributes.trim().to_owned())
            })
            .collect();
    let version = env!("CARGO_PKG_VERSION");
    let mut expected = BTreeMap::from([
        (
            "/etc/cavra/policies/README".to_owned(),
            "-rw-r--r-- root root cn".to_owned(),
        ),
        (
            "/etc/sysconfig/cavra-runtime".to_owned(),
            "-rw------- root root cn".to_owned(),
        ),
        (
            "/etc/logrotate.d/cavra-runtime".to_owned(),
            "-rw-r--r-- root root cn".to_owned(),
        ),
        ("/usr/bin/cavra-runtime".to_owned(), "-rwxr-xr-x root root".to_owned()),
        (
            "/usr/lib/systemd/system/cavra-runtime.service".to_owned(),
            "-rw-r--r-- root root".to_owned(),
        ),
        (
            "/usr/lib/systemd/system/cavra-runtime.socket".to_owned(),
            "-rw-r--r-- root root".to_owned(),
        ),
        (
            "/usr/lib/systemd/system/cavra-runtime-metrics.socket".to_owned(),
            "-rw-r--r-- root root".to_owned(),
        ),
        (
            "/usr/lib/systemd/system-preset/50-cavra-runtime.preset".to_owned(),
            "-rw-r--r-- root root".to_owned(),
        ),
        (
            "/usr/lib/systemd/user/cavra-runtime.service".to_owned(),
            "-rw-r--r-- root root".to_owned(),
        ),
        (
            "/usr/lib/systemd/user/cavra-runtime.socket".to_owned(),
            "-rw-r--r-- root root".to_owned(),
        ),
        (
            "/usr/lib/sysusers.d/cavra-runtime.conf".to_owned(),
            "-rw-r--r-- root root".to_owned(),
        ),
        (
            "/usr/lib/tmpfiles.d/cavra-runtime.conf".to_owned(),
            "-rw-r--r-- root root".to_owned(),
        ),
        (
            format!("/usr/share/doc/cavra-runtime-{version}/README.md"),
            "-rw-r--r-- root root d".to_owned(),
        ),
        (
            format!("/usr/share/licenses/cavra-runtime-{version}/copyright"),
            "-rw-r--r-- root root l".to_owned(),
        ),
        (
            "/usr/share/man/man1/cavra-runtime.1.gz".to_owned(),
            "-rw-r--r-- root root d".to_owned(),
        ),
        (
            "/usr/share/bash-completion/completions/cavra-runtime".to_owned(),
            "-rw-r--r-- root root".to_owned(),
        ),
        (
            "/usr/share/zsh/site-functions/_cavra-runtime".to_owned(),
            "-rw-r--r-- root root".to_owned(),
        ),
        (
            "/usr/share/fish/vendor_completions.d/cavra-runtime.fish".to_owned(),
            "-rw-r--r-- root root".to_owned(),
        ),
    ]);
    for doc in OPERATOR_DOCS {
        expected.insert(
            format!("/usr/share/doc/cavra-runtime-{version}/{}", file_name(doc)),
            "-rw-r--r-- root root d".to_owned(),
        );
    }
    assert_eq!(files, expected, "rpm -qp --queryformat ... {rpm}");

    let work = tempfile::tempdir().unwrap();
    let extract = format!("rpm2cpio '{rpm}' | cpio --quiet -idm");
    let output = Command::new("sh")
        .args(["-c", &extract])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{extract}: {}", text(&output.stderr));
    let root = work.path();
    // The units are the deb's, except where the settings live.
    let service = fs::read_to_string(root.join("usr/lib/systemd/system/cavra-runtime.service")).unwrap();
    assert_eq!(
        service,
        read(SYSTEM_SERVICE).replace("/etc/default/cavra-runtime", "/etc/sysconfig/cavra-runtime")
    );
    assert!(service.contains("\nEnvironmentFile=-/etc/sysconfig/cavra-runtime\n"));
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/systemd/system/cavra-runtime.socket")).unwrap(),
        read(SYSTEM_SOCKET)
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/sysusers.d/cavra-runtime.conf")).unwrap(),
        read("packaging/systemd/cavra-runtime.sysusers")
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/logrotate.d/cavra-runtime")).unwrap(),
        read(LOGROTATE)
    );
    let settings = fs::read_to_string(root.join("etc/sysconfig/cavra-runtime")).unwrap();
    assert!(settings.contains(&format!("\nCAVRA_EVIDENCE_LOG={EVIDENCE_LOG}\n")));
    assert_eq!(
        fs::read_to_string(root.join("usr/lib/systemd/system-preset/50-cavra-runtime.preset"))
            .unwrap()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .collect::<Vec<_>>(),
        ["enable cavra-runtime.socket"]
    );
    let version_output = succeed(root.join("usr/bin/cavra-runtime").to_str().unwrap(), &["--version"]);
    assert_eq!(version_output.trim(), format!("cavra-runtime {version}"));

    // Scriptlets, by section of `rpm -qp --scripts`.
    let scripts = succeed("rpm", &["-qp", "--scripts", rpm]);
    let mut sections: BTreeMap<String, String> = BTreeMap::new();
    let mut current = String::new();
    for line in scripts.lines() {
        if let Some(name) = line.strip_suffix(" scriptlet (using /bin/sh):") {
            current = name.to_owned();
            continue;
        }
        let body = sections.entry(current.clone()).or_default();
        body.push_str(line);
        body.push('\n');
    }
    let section = |name: &str| {
        sections
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} scriptlet:\n{scripts}"))
    };
    let pre = section("preinstall");
    assert!(
        pre.contains("systemd-sysusers --replace=/usr/lib/sysusers.d/cavra-runtime.conf"),
        "%pre:\n{pre}"
    );
    assert!(
        pre.contains("u     cavra -"),
        "%pre carries the sysusers.d entry:\n{pre}"
    );
    let post = section("postinstall");
    assert!(
        post.contains("preset cavra-runtime.socket") && !post.contains("cavra-runtime.service"),
        "%post:\n{post}"
    );
    let preun = section("preuninstall");
    assert!(
        preun.contains("disable --now cavra-runtime.socket cavra-runtime-metrics.socket cavra-runtime.service"),
        "%preun:\n{preun}"
    );
    assert!(
        preun.contains("if [ $1 -eq 0 ]"),
        "%preun acts on removal only:\n{preun}"
    );
    let postun = section("postuninstall");
    assert!(
        postun.contains("try-restart cavra-runtime.service"),
        "%postun:\n{postun}"
    );
    assert!(
        postun.contains("if [ $1 -ge 1 ]"),
        "%postun restarts on upgrade only:\n{postun}"
    );
    for line in postun.lines().filter(|line| line.contains("restart")) {
        assert!(
            !line.contains("cavra-runtime.socket"),
            "%postun restarts the socket: {line}"
        );
    }
    assert!(
        !scripts
            .lines()
            .any(|line| line.trim_start().starts_with("rm ") && line.contains("/var/lib/cavra")),
        "rpm keeps the evidence log on removal:\n{scripts}"
    );
}

/// The tags lintian may report: the non-comment lines of packaging/debian/lintian-allow.
fn lintian_allowed() -> BTreeSet<String> {
    read("packaging/debian/lintian-allow")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn deb_is_lintian_clean_apart_from_the_allow_list() {
    if !prerequisites(false, &[&BUILD_TOOLS[..], &["lintian"]].concat()) {
        return;
    }
    let deb = packages().deb[0].to_str().unwrap();
    // Every level, info, pedantic and experimental included.
    let output = run(
        "lintian",
        &[
            "--display-info",
            "--display-experimental",
            "--pedantic",
            "--tag-display-limit",
            "0",
            deb,
        ],
    );
    let report = text(&output.stdout);
    assert!(
        output.status.code().is_some_and(|code| code <= 2),
        "lintian failed to run ({}): {}",
        output.status,
        text(&output.stderr)
    );
    let allowed = lintian_allowed();
    let mut seen = BTreeSet::new();
    for line in report.lines() {
        // "<level>: cavra-runtime[ <type>]: <tag> [details]"
        let Some((_, rest)) = line.split_once(": ") else {
            continue;
        };
        let Some((_, tag_and_details)) = rest.split_once(": ") else {
            continue;
        };
        let tag = tag_and_details.split_whitespace().next().unwrap_or_default();
        assert!(
            allowed.contains(tag),
            "lintian reports {tag}, which packaging/debian/lintian-allow does not allow:\n{report}"
        );
        seen.insert(tag.to_owned());
    }
    eprintln!("lintian: {} allowed tags reported: {seen:?}", seen.len());
    let unused: Vec<_> = allowed.difference(&seen).collect();
    if !unused.is_empty() {
        eprintln!("lintian: allow-list entries no longer reported (remove them): {unused:?}");
    }
}

#[test]
fn rpm_and_spec_are_rpmlint_clean_apart_from_the_allow_list() {
    if !prerequisites(false, &[&BUILD_TOOLS[..], &["rpmlint"]].concat()) {
        return;
    }
    let rpm = packages().rpm[0].to_str().unwrap();
    let output = run(
        "rpmlint",
        &[
            "--rpmlintrc",
            "packaging/rpm/cavra-runtime.rpmlintrc",
            rpm,
            "packaging/rpm/cavra-runtime.spec",
        ],
    );
    let report = text(&output.stdout);
    eprintln!("{report}");
    assert!(
        output.status.success() && report.contains(" 0 errors, 0 warnings"),
        "rpmlint ({}):\n{report}{}",
        output.status,
        text(&output.stderr)
    );
}

/// The nspawn scenarios boot a whole machine each; one at a time keeps a loaded CI machine from turning slowness
/// into failures.
static ONE_MACHINE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `tests/system/<name>.sh BINARY FIRST SECOND` as `timeout N unshare -m bash ...` and asserts it passes.
fn system_scenario(name: &str, first: &Path, second: &Path) {
    system_scenario_in(&["-m"], name, first, second);
}

/// [`system_scenario`] in the namespaces `unshare` makes with `namespaces` (`-m`, and `-n` for a network of its
/// own).
fn system_scenario_in(namespaces: &[&str], name: &str, first: &Path, second: &Path) {
    let script = repo(&format!("tests/system/{name}.sh"));
    let _one = ONE_MACHINE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let output = Command::new("timeout")
        .args(["--kill-after=10", SCENARIO_TIMEOUT_SECONDS, "unshare"])
        .args(namespaces)
        .arg("bash")
        .arg(&script)
        .args([Path::new(BINARY), first, second])
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    let took = started.elapsed().as_secs_f64();
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    let verdict = match output.status.code() {
        Some(0) => return eprintln!("{name}: passed in {took:.1} s"),
        Some(124) => format!("timed out after {SCENARIO_TIMEOUT_SECONDS} s"),
        Some(code) => format!("exited with status {code}"),
        None => "was killed by a signal".to_owned(),
    };
    panic!("system test {name} {verdict} after {took:.1} s\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
}

const SYSTEM_TOOLS: [&str; 6] = ["timeout", "unshare", "nsenter", "systemd-nspawn", "dpkg", "useradd"];

#[test]
fn deb_installed_under_a_real_systemd() {
    if !prerequisites(true, &[&BUILD_TOOLS[..], &SYSTEM_TOOLS[..]].concat()) {
        return;
    }
    let [first, second] = &packages().deb;
    system_scenario("system-deb", first, second);
}

#[test]
fn prometheus_scrapes_the_packaged_service() {
    if !prerequisites(true, &[&BUILD_TOOLS[..], &SYSTEM_TOOLS[..], &["prometheus"]].concat()) {
        return;
    }
    let [first, _] = &packages().deb;
    system_scenario("system-prometheus", first, Path::new(""));
}

#[test]
fn evidence_shipped_through_the_journal_verifies_per_machine() {
    let remote = [
        "/lib/systemd/systemd-journal-remote",
        "/lib/systemd/systemd-journal-upload",
    ];
    if !prerequisites(
        true,
        &[&BUILD_TOOLS[..], &SYSTEM_TOOLS[..], &["ip", "openssl"]].concat(),
    ) || !remote.iter().all(|program| skip::require_file(Path::new(program)))
    {
        return;
    }
    let [first, _] = &packages().deb;
    system_scenario_in(&["-m", "-n"], "system-journal-shipping", first, Path::new(""));
}

#[test]
fn rpm_installed_under_a_real_systemd() {
    if !prerequisites(true, &[&BUILD_TOOLS[..], &SYSTEM_TOOLS[..]].concat()) {
        return;
    }
    let [first, second] = &packages().rpm;
    system_scenario("system-rpm", first, second);
}
