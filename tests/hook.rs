//! `--hook`: each agent's documented hook input, for every kind of tool, through the real binary into a real daemon
//! on a temporary socket, and the answer as the agent sees it (exit status, the JSON on standard output, standard
//! error). Also what must fail closed: no daemon, a stopped daemon with a full queue, answers that are not answers,
//! input that is not the agent's, permission modes that do not ask, and paths spelled or linked to slip past a rule.

mod common;

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::symlink;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tempfile::TempDir;

const REGISTRY: &str = "testdata/registry/mcp-trust.json";

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A project directory as an agent works in it, reached through its real path.
struct Project {
    _dir: TempDir,
    /// The directory holding the project (and things outside it).
    outside: PathBuf,
    root: PathBuf,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let outside = fs::canonicalize(dir.path()).unwrap();
        let root = outside.join("project");
        for sub in [
            "src",
            "iam",
            "docs",
            ".github/workflows",
            ".claude",
            "deploy/keys",
            "notebooks",
        ] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        for file in [
            "README.md",
            ".env",
            "deploy/keys/id_rsa",
            "src/lib.rs",
            ".claude/settings.json",
        ] {
            fs::write(root.join(file), "x\n").unwrap();
        }
        Project {
            _dir: dir,
            outside,
            root,
        }
    }

    /// The absolute path of `relative` in the project, as Claude Code passes file paths.
    fn path(&self, relative: &str) -> String {
        format!("{}/{relative}", self.root.display())
    }
}

/// What the agent sees of one hook run.
#[derive(Debug)]
struct Seen {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {self:?}"))
    }

    /// Claude Code's reading of the answer: `allow` (exit 0, nothing printed: the normal permission flow), `ask`,
    /// or `deny` (exit 2 with the JSON deny and its reason on standard error too). Anything else fails the test.
    fn claude(&self) -> &'static str {
        match self.code {
            Some(0) if self.stdout.is_empty() && self.stderr.is_empty() => "allow",
            Some(0) => {
                let output = &self.json()["hookSpecificOutput"];
                assert_eq!(output["hookEventName"], "PreToolUse", "{self:?}");
                assert_eq!(output["permissionDecision"], "ask", "{self:?}");
                assert!(!self.reason().is_empty(), "{self:?}");
                assert!(self.stderr.is_empty(), "{self:?}");
                "ask"
            }
            Some(2) => {
                let output = &self.json()["hookSpecificOutput"];
                assert_eq!(output["permissionDecision"], "deny", "{self:?}");
                assert_eq!(self.stderr.trim(), self.reason(), "the same reason on both: {self:?}");
                "deny"
            }
            _ => panic!("not an answer Claude Code reads as allow, ask or deny: {self:?}"),
        }
    }

    fn reason(&self) -> String {
        let json = self.json();
        json["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .or_else(|| json["user_message"].as_str())
            .unwrap_or_else(|| panic!("no reason: {self:?}"))
            .to_owned()
    }

    /// Cursor's reading: the `permission`, which a deny also says by exit 2.
    fn cursor(&self) -> String {
        let permission = self.json()["permission"].as_str().unwrap().to_owned();
        match permission.as_str() {
            "deny" => {
                assert_eq!(self.code, Some(2), "{self:?}");
                assert_eq!(self.stderr.trim(), self.json()["user_message"], "{self:?}");
                assert_eq!(self.json()["agent_message"], self.json()["user_message"], "{self:?}");
            }
            "allow" | "ask" => assert_eq!(self.code, Some(0), "{self:?}"),
            other => panic!("permission {other}: {self:?}"),
        }
        permission
    }
}

/// How to run a hook: the agent, the daemon's socket, the project, extra flags and environment.
struct Hook<'a> {
    agent: &'a str,
    socket: &'a Path,
    project: &'a Project,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl<'a> Hook<'a> {
    fn claude(socket: &'a Path, project: &'a Project) -> Hook<'a> {
        Hook {
            agent: "claude-code",
            socket,
            project,
            args: Vec::new(),
            env: vec![("CLAUDE_PROJECT_DIR".into(), project.root.display().to_string())],
        }
    }

    fn cursor(socket: &'a Path, project: &'a Project) -> Hook<'a> {
        Hook {
            agent: "cursor",
            socket,
            project,
            args: Vec::new(),
            env: vec![("CURSOR_PROJECT_DIR".into(), project.root.display().to_string())],
        }
    }

    fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    fn env(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(key, _)| key != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    fn spawn(&self) -> Child {
        Command::new(common::binary())
            .args(["--hook", self.agent, "--socket"])
            .arg(self.socket)
            .args(&self.args)
            .current_dir(&self.project.root)
            .env_remove("CLAUDE_PROJECT_DIR")
            .env_remove("CURSOR_PROJECT_DIR")
            .env_remove("CAVRA_RUNTIME_SOCKET")
            .env_remove("CAVRA_HOOK_NO_ASK")
            .env_remove("CAVRA_HOOK_ALLOW_TOOLS")
            .env_remove("CAVRA_POLICY_PACK")
            .env_remove("CAVRA_CLIENT_TIMEOUT")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cavra-runtime --hook")
    }

    fn run_raw(&self, input: &[u8]) -> Seen {
        let started = Instant::now();
        let mut child = self.spawn();
        let mut stdin = child.stdin.take().unwrap();
        // A hook that refuses before reading may close its input first.
        let _ = stdin.write_all(input);
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        Seen {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            took: started.elapsed(),
        }
    }

    fn run(&self, input: &Value) -> Seen {
        self.run_raw(input.to_string().as_bytes())
    }
}

/// Claude Code's PreToolUse input for a call of `tool` (the documented fields, as a current version sends them).
fn claude_call(project: &Project, tool: &str, tool_input: Value) -> Value {
    json!({
        "session_id": "session-7f3a",
        "transcript_path": "/home/dev/.claude/projects/p/session-7f3a.jsonl",
        "cwd": project.root,
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": tool,
        "tool_input": tool_input,
        "tool_use_id": format!("toolu_{tool}"),
        "effort": {"level": "high"},
        "a_field_from_a_newer_version": [1, 2, 3]
    })
}

fn with(mut input: Value, name: &str, value: Value) -> Value {
    input[name] = value;
    input
}

fn records(log: &Path) -> Vec<Value> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn daemon_with_evidence() -> (Daemon, PathBuf) {
    let scratch = tempfile::tempdir().unwrap().keep();
    let log = scratch.join("evidence.jsonl");
    let daemon = Daemon::start(&[
        "--evidence-log",
        log.to_str().unwrap(),
        "--evidence-sync",
        "none",
        "--registry",
        repo(REGISTRY).to_str().unwrap(),
    ]);
    (daemon, log)
}

// ---------------------------------------------------------------------------------------------------------------
// Claude Code: every tool.

#[test]
fn claude_code_every_tool_is_allowed_asked_or_denied_as_the_policy_decides() {
    let project = Project::new();
    let (daemon, log) = daemon_with_evidence();
    let hook = Hook::claude(&daemon.socket, &project);
    let p = |relative: &str| project.path(relative);
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("Read", json!({"file_path": p("README.md")}), "allow", ""),
        (
            "Read",
            json!({"file_path": p(".env"), "offset": 1, "limit": 5}),
            "deny",
            "filesystem.read.block",
        ),
        (
            "Read",
            json!({"file_path": p("deploy/keys/id_rsa")}),
            "deny",
            "filesystem.read.block",
        ),
        (
            "Grep",
            json!({"pattern": "TODO", "path": p("src"), "output_mode": "content", "-n": true}),
            "allow",
            "",
        ),
        (
            "Grep",
            json!({"pattern": "BEGIN", "path": p("deploy/keys/id_rsa")}),
            "deny",
            "filesystem.read.block",
        ),
        ("Grep", json!({"pattern": "TODO"}), "allow", ""),
        ("Glob", json!({"pattern": "**/*.rs", "path": p("src")}), "allow", ""),
        (
            "Glob",
            json!({"pattern": "*", "path": p(".env")}),
            "deny",
            "filesystem.read.block",
        ),
        (
            "Write",
            json!({"file_path": p("src/new.rs"), "content": "fn main() {}\n"}),
            "allow",
            "",
        ),
        (
            "Write",
            json!({"file_path": p("iam/role.tf"), "content": "x"}),
            "ask",
            "filesystem.write.require_approval",
        ),
        (
            "Write",
            json!({"file_path": p(".github/workflows/ci.yml"), "content": "on: push"}),
            "deny",
            "filesystem.write.block",
        ),
        (
            "Edit",
            json!({"file_path": p("src/lib.rs"), "old_string": "x", "new_string": "y"}),
            "allow",
            "",
        ),
        (
            "Edit",
            json!({"file_path": p("iam/role.tf"), "old_string": "a", "new_string": "b", "replace_all": true}),
            "ask",
            "filesystem.write.require_approval",
        ),
        (
            "Edit",
            json!({"file_path": p(".github/workflows/ci.yml"), "old_string": "a", "new_string": "b"}),
            "deny",
            "filesystem.write.block",
        ),
        (
            "MultiEdit",
            json!({"file_path": p("src/lib.rs"), "edits": [{"old_string": "x", "new_string": "y"}]}),
            "allow",
            "",
        ),
        (
            "MultiEdit",
            json!({"file_path": p("iam/a.tf"), "edits": [{"old_string": "x", "new_string": "y"}]}),
            "ask",
            "filesystem.write.require_approval",
        ),
        (
            "MultiEdit",
            json!({"file_path": p("main.tf"), "edits": [{"old_string": "x", "new_string": "y"}]}),
            "deny",
            "filesystem.write.block",
        ),
        (
            "NotebookEdit",
            json!({"notebook_path": p("notebooks/a.ipynb"), "new_source": "1", "cell_type": "code"}),
            "allow",
            "",
        ),
        (
            "NotebookEdit",
            json!({"notebook_path": p("security/a.ipynb"), "new_source": "1"}),
            "ask",
            "filesystem.write.require_approval",
        ),
        (
            "NotebookEdit",
            json!({"notebook_path": p(".github/workflows/a.ipynb"), "new_source": "1"}),
            "deny",
            "filesystem.write.block",
        ),
        (
            "Bash",
            json!({"command": "pytest -q tests/", "description": "run tests", "timeout": 120000}),
            "allow",
            "",
        ),
        (
            "Bash",
            json!({"command": "make deploy"}),
            "ask",
            "commands.default.require_approval",
        ),
        (
            "Bash",
            json!({"command": "terraform apply -auto-approve"}),
            "deny",
            "commands.block",
        ),
        // A push inside a command line goes to the git rules.
        (
            "Bash",
            json!({"command": "cd src && git push -f origin HEAD:main"}),
            "deny",
            "git.protected_branch.block_direct_push",
        ),
        (
            "mcp__github-mcp__create_pull_request",
            json!({"title": "x"}),
            "allow",
            "",
        ),
        (
            "mcp__filesystem-lab__read_file",
            json!({"path": "/x"}),
            "ask",
            "mcp.registry.requires_approval",
        ),
        (
            "mcp__personal-drive-mcp__read_file",
            json!({"path": "/x"}),
            "deny",
            "mcp.registry.blocked",
        ),
        (
            "WebFetch",
            json!({"url": "https://example.com/", "prompt": "summarise"}),
            "ask",
            "runtime.default.require_approval",
        ),
        (
            "WebSearch",
            json!({"query": "cavra"}),
            "ask",
            "runtime.default.require_approval",
        ),
        (
            "Frobnicate",
            json!({"anything": true}),
            "ask",
            "runtime.default.require_approval",
        ),
    ];
    for (tool, input, expected, rule) in &cases {
        let seen = hook.run(&claude_call(&project, tool, input.clone()));
        let context = format!("{tool} {input}: {seen:?}");
        assert_eq!(seen.claude(), *expected, "{context}");
        if !rule.is_empty() {
            assert!(seen.reason().contains(&format!("({rule})")), "{context}");
        }
    }
    let git = records(&log)
        .into_iter()
        .find(|record| record["request"]["target"] == "cd src && git push -f origin HEAD:main")
        .unwrap();
    assert_eq!(git["response"]["severity"], "critical", "{git}");

    // A tool on the harmless list goes ahead without a question, and so without a record; the list is configurable.
    let before = records(&log).len();
    let todo = claude_call(&project, "TodoWrite", json!({"todos": []}));
    assert_eq!(hook.run(&todo).claude(), "allow");
    assert_eq!(records(&log).len(), before, "a harmless tool is not asked about");
    let stricter = Hook::claude(&daemon.socket, &project).arg("--hook-allow-tool=");
    assert_eq!(stricter.run(&todo).claude(), "ask");
    let wider = Hook::claude(&daemon.socket, &project).env("CAVRA_HOOK_ALLOW_TOOLS", "TodoWrite,WebSearch");
    let search = claude_call(&project, "WebSearch", json!({"query": "x"}));
    assert_eq!(wider.run(&search).claude(), "allow");
    // The list never exempts a tool that reads, writes, runs or reaches out.
    let bash = Hook::claude(&daemon.socket, &project).arg("--hook-allow-tool=Bash,Write");
    let apply = claude_call(&project, "Bash", json!({"command": "terraform apply"}));
    assert_eq!(bash.run(&apply).claude(), "deny");
}

#[test]
fn each_decision_is_recorded_with_the_agent_session_and_tool_and_the_log_verifies() {
    let project = Project::new();
    let (daemon, log) = daemon_with_evidence();
    let hook = Hook::claude(&daemon.socket, &project);
    let call = claude_call(
        &project,
        "Write",
        json!({"file_path": project.path("src/a.rs"), "content": "x"}),
    );
    assert_eq!(hook.run(&call).claude(), "allow");
    let subagent = with(
        claude_call(&project, "Bash", json!({"command": "pytest"})),
        "agent_id",
        json!("agent-91"),
    );
    assert_eq!(hook.run(&subagent).claude(), "allow");

    let stored = records(&log);
    assert_eq!(
        stored[0]["request"],
        json!({"session_id": "session-7f3a", "agent_id": "claude-code", "action_type": "write_file",
               "target": project.path("src/a.rs"), "workspace_root": project.root, "tool_name": "Write",
               "tool_use_id": "toolu_Write"})
    );
    assert_eq!(stored[0]["response"]["session_id"], "session-7f3a");
    assert_eq!(stored[1]["request"]["agent_id"], "claude-code/agent-91");
    assert_eq!(stored[1]["request"]["tool_name"], "Bash");
    let report = Command::new(common::binary())
        .args(["--verify-evidence", "--evidence-log"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stdout));

    // The tool fields are covered by the record's hash like every other field.
    let text = fs::read_to_string(&log).unwrap();
    let altered = log.with_extension("altered");
    fs::write(
        &altered,
        text.replacen("\"tool_name\":\"Write\"", "\"tool_name\":\"Read\"", 1),
    )
    .unwrap();
    let report = Command::new(common::binary())
        .args(["--verify-evidence", "--evidence-log"])
        .arg(&altered)
        .output()
        .unwrap();
    assert_eq!(report.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&report.stdout).contains("record 1 hash mismatch"));
}

// ---------------------------------------------------------------------------------------------------------------
// Paths.

#[test]
fn spellings_links_and_paths_outside_the_project_cannot_slip_past_a_rule() {
    let project = Project::new();
    let (daemon, log) = daemon_with_evidence();
    let hook = Hook::claude(&daemon.socket, &project);
    let root = project.root.display().to_string();
    // An in-project link to a blocked file, one to a blocked directory, a link named like a blocked file, and a link
    // leaving the project.
    symlink("../.github/workflows/ci.yml", project.root.join("docs/notes.md")).unwrap();
    symlink("../.github", project.root.join("docs/gh")).unwrap();
    symlink("README.md", project.root.join("secrets.txt")).unwrap();
    fs::create_dir_all(project.outside.join("elsewhere")).unwrap();
    symlink(project.outside.join("elsewhere"), project.root.join("docs/out")).unwrap();
    let write = |path: String| claude_call(&project, "Write", json!({"file_path": path, "content": "x"}));
    let read = |path: String| claude_call(&project, "Read", json!({"file_path": path}));
    for (call, expected, words) in [
        (
            write(format!("{root}//.github/workflows/ci.yml")),
            "deny",
            "filesystem.write.block",
        ),
        (
            write(format!("{root}/src/../.github/workflows/ci.yml")),
            "deny",
            "filesystem.write.block",
        ),
        (
            write(format!("{root}/./.github//workflows/./ci.yml")),
            "deny",
            "filesystem.write.block",
        ),
        (read(format!("{root}/src/..//.env")), "deny", "filesystem.read.block"),
        (write(format!("{root}/docs/notes.md")), "deny", "-> "),
        (
            write(format!("{root}/docs/gh/workflows/release.yml")),
            "deny",
            "filesystem.write.block",
        ),
        // The name the agent uses is judged too, not only the file it reaches.
        (read(format!("{root}/secrets.txt")), "deny", "filesystem.read.block"),
        (
            write(format!("{root}/docs/out/file.txt")),
            "ask",
            "filesystem.write.outside_workspace",
        ),
        (
            write("/root/.ssh/authorized_keys".to_owned()),
            "ask",
            "filesystem.write.outside_workspace",
        ),
        (
            write(format!("{root}/../elsewhere/x")),
            "ask",
            "filesystem.write.outside_workspace",
        ),
        (write(format!("{root}/docs/ok.md")), "allow", ""),
    ] {
        let seen = hook.run(&call);
        let context = format!("{call}: {seen:?}");
        assert_eq!(seen.claude(), expected, "{context}");
        if !words.is_empty() {
            assert!(seen.reason().contains(words), "{context}");
        }
    }
    // The link and the file it reaches were both asked about, each with the project root spelled alike.
    let stored = records(&log);
    let linked: Vec<&Value> = stored
        .iter()
        .filter(|record| record["request"]["tool_use_id"] == "toolu_Write")
        .filter(|record| {
            let target = record["request"]["target"].as_str().unwrap();
            target == format!("{root}/docs/notes.md") || target == format!("{root}/.github/workflows/ci.yml")
        })
        .collect();
    assert!(linked.len() >= 2, "{linked:?}");

    // A hard link has no name to follow: a write to a file with several names is refused, a read is decided.
    fs::hard_link(
        project.root.join(".claude/settings.json"),
        project.root.join("docs/plain.md"),
    )
    .unwrap();
    let seen = hook.run(&write(format!("{root}/docs/plain.md")));
    assert_eq!(seen.claude(), "deny");
    assert!(seen.reason().contains("has 2 hard links"), "{seen:?}");
    assert_eq!(hook.run(&read(format!("{root}/docs/plain.md"))).claude(), "allow");

    // A write outside the project is never allowed: where nobody can be asked it is refused.
    let auto = with(
        write("/root/.ssh/authorized_keys".to_owned()),
        "permission_mode",
        json!("auto"),
    );
    let seen = hook.run(&auto);
    assert_eq!(seen.claude(), "deny");
    assert!(seen.reason().contains("permission mode auto"), "{seen:?}");

    // A project reached through a link (CLAUDE_PROJECT_DIR names the link) works as the project itself.
    let alias = project.outside.join("alias");
    symlink(&project.root, &alias).unwrap();
    let through = Hook::claude(&daemon.socket, &project).env("CLAUDE_PROJECT_DIR", alias.to_str().unwrap());
    let call = claude_call(
        &project,
        "Write",
        json!({"file_path": alias.join("src/x.rs"), "content": "x"}),
    );
    assert_eq!(through.run(&call).claude(), "allow");
    let call = claude_call(
        &project,
        "Write",
        json!({"file_path": alias.join(".github/workflows/x.yml")}),
    );
    assert_eq!(through.run(&call).claude(), "deny");
}

#[test]
fn the_agent_cannot_edit_its_own_settings_or_hooks() {
    let project = Project::new();
    let daemon = Daemon::start(&[]);
    let hook = Hook::claude(&daemon.socket, &project);
    let home = project.outside.join("home");
    for path in [
        project.path(".claude/settings.json"),
        project.path(".claude/settings.local.json"),
        project.path(".cursor/hooks.json"),
        home.join(".claude/settings.json").display().to_string(),
        "/etc/claude-code/managed-settings.json".to_owned(),
    ] {
        let edit = claude_call(
            &project,
            "Edit",
            json!({"file_path": path, "old_string": "cavra-runtime --hook claude-code", "new_string": "true"}),
        );
        let seen = hook.run(&edit);
        assert_eq!(seen.claude(), "deny", "{path}: {seen:?}");
        assert!(seen.reason().contains("filesystem.write.block"), "{seen:?}");
    }
    // Nor through a shell that overwrites them.
    let bash = claude_call(&project, "Bash", json!({"command": "echo {} > .claude/settings.json"}));
    assert_ne!(hook.run(&bash).claude(), "allow");

    // The shipped settings call the installed binary on every tool, with a timeout above the hook's own deadline.
    let settings: Value =
        serde_json::from_str(&fs::read_to_string(repo("examples/agent-hooks/claude-settings.json")).unwrap()).unwrap();
    let entries = settings["hooks"]["PreToolUse"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["matcher"], "*");
    let handler = &entries[0]["hooks"][0];
    assert_eq!(handler["type"], "command");
    let command = handler["command"].as_str().unwrap();
    assert_eq!(command, "/usr/bin/cavra-runtime --hook claude-code");
    assert!(
        !command.contains("CLAUDE_PROJECT_DIR"),
        "nothing inside the project runs"
    );
    assert!(
        handler["timeout"].as_u64().unwrap() > 5,
        "above --client-timeout's default"
    );
    let cursor: Value =
        serde_json::from_str(&fs::read_to_string(repo("examples/agent-hooks/cursor-hooks.json")).unwrap()).unwrap();
    for event in [
        "beforeShellExecution",
        "beforeMCPExecution",
        "beforeReadFile",
        "preToolUse",
    ] {
        let handler = &cursor["hooks"][event][0];
        assert_eq!(handler["command"], "/usr/bin/cavra-runtime --hook cursor", "{event}");
        assert_eq!(handler["failClosed"], true, "{event}");
        assert!(handler.get("matcher").is_none(), "{event}: every tool");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Failing closed.

#[test]
fn no_daemon_means_deny_with_a_reason() {
    let project = Project::new();
    let socket = project.outside.join("absent.sock");
    let seen = Hook::claude(&socket, &project).run(&claude_call(&project, "Bash", json!({"command": "pytest"})));
    assert_eq!(seen.claude(), "deny");
    assert!(
        seen.reason()
            .contains(&format!("cannot connect to cavra-runtime at {}", socket.display())),
        "{seen:?}"
    );
    let read = claude_call(&project, "Read", json!({"file_path": project.path("README.md")}));
    let seen = Hook::cursor(&socket, &project).run(&json!({
        "hook_event_name": "beforeReadFile", "conversation_id": "c", "file_path": read["tool_input"]["file_path"],
        "content": "x", "workspace_roots": [project.root]}));
    assert_eq!(seen.cursor(), "deny");
}

/// Raises this process's open-file limit to its hard limit: a full queue holds thousands of connections.
fn raise_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Connects without blocking until the listener's queue is full; the connections are kept.
fn fill_queue(socket: &Path) -> Vec<std::os::fd::OwnedFd> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket as new_socket};
    let address = UnixAddr::new(socket).unwrap();
    let mut queued = Vec::new();
    loop {
        let fd = new_socket(AddressFamily::Unix, SockType::Stream, SockFlag::empty(), None).unwrap();
        fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &address) {
            Ok(()) => queued.push(fd),
            Err(nix::errno::Errno::EAGAIN) => return queued,
            Err(error) => panic!("connect: {error} after {} connections", queued.len()),
        }
        assert!(queued.len() < 100_000, "the queue never filled");
    }
}

#[test]
fn a_stopped_daemon_with_a_full_queue_is_a_deny_within_the_deadline() {
    raise_file_limit();
    let project = Project::new();
    let daemon = Daemon::start(&[]);
    daemon.signal(Signal::SIGSTOP);
    let queued = fill_queue(&daemon.socket);
    let hook = Hook::claude(&daemon.socket, &project).arg("--client-timeout=1s");
    let seen = hook.run(&claude_call(&project, "Bash", json!({"command": "terraform apply"})));
    daemon.signal(Signal::SIGCONT);
    drop(queued);
    assert_eq!(seen.claude(), "deny");
    assert!(seen.reason().contains("queue of connections stayed full"), "{seen:?}");
    // Within the deadline and the watchdog's grace, far below any agent's hook timeout.
    assert!(seen.took < Duration::from_secs(3), "{seen:?}");
}

/// A server on a socket that answers every connection with `answer` (nothing, for `None`: it holds the
/// connection open without a word).
fn fake_daemon(dir: &Path, name: usize, answer: Option<&'static str>) -> PathBuf {
    let socket = dir.join(format!("fake-{name}.sock"));
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream: UnixStream = stream.unwrap();
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while stream.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
                line.push(byte[0]);
            }
            match answer {
                Some(answer) => {
                    let _ = stream.write_all(answer.as_bytes());
                }
                None => std::thread::sleep(Duration::from_secs(30)),
            }
        }
    });
    socket
}

#[test]
fn answers_that_are_not_decisions_are_denies() {
    let project = Project::new();
    let call = claude_call(&project, "Bash", json!({"command": "pytest"}));
    for (index, (answer, words)) in [
        (Some("this is not json\n"), "not valid JSON"),
        (Some("{\"decision\":\"allow\",\"sev"), "not valid JSON"),
        (Some(""), "closed the connection without answering"),
        (Some("[1,2]\n"), "not valid JSON"),
        (
            Some("{\"decision\":\"escalate\",\"severity\":\"high\",\"rule_id\":\"future\",\"reason\":\"new\"}\n"),
            "answered escalate (not allow)",
        ),
        (
            Some(concat!(
                "{\"decision\":\"block\",\"severity\":\"high\",\"rule_id\":\"daemon.overloaded\",",
                "\"reason\":\"busy\"}\n"
            )),
            "daemon.overloaded",
        ),
        (None, "no answer from cavra-runtime"),
    ]
    .into_iter()
    .enumerate()
    {
        let socket = fake_daemon(&project.outside, index, answer);
        let seen = Hook::claude(&socket, &project).arg("--client-timeout=1s").run(&call);
        assert_eq!(seen.claude(), "deny", "{answer:?}");
        assert!(seen.reason().contains(words), "{answer:?}: {seen:?}");
    }
}

#[test]
fn input_that_never_ends_is_a_deny_from_the_watchdog() {
    let project = Project::new();
    let daemon = Daemon::start(&[]);
    let hook = Hook::claude(&daemon.socket, &project).arg("--client-timeout=500ms");
    let started = Instant::now();
    let mut child = hook.spawn();
    let stdin = child.stdin.take().unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(5) {
            child.kill().unwrap();
            panic!("the hook is still waiting for its input after 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no decision within --client-timeout 500ms"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn input_that_is_not_the_agents_is_a_deny() {
    let project = Project::new();
    let daemon = Daemon::start(&[]);
    let hook = Hook::claude(&daemon.socket, &project);
    let good = claude_call(&project, "Bash", json!({"command": "pytest"}));
    let without = |name: &str| {
        let mut call = good.clone();
        call.as_object_mut().unwrap().remove(name);
        call.to_string()
    };
    for (input, words) in [
        (String::new(), "EOF while parsing"),
        ("pytest".to_owned(), "not Claude Code's hook JSON"),
        ("[1]".to_owned(), "not Claude Code's hook JSON"),
        (without("tool_name"), "missing field `tool_name`"),
        (without("tool_input"), "missing field `tool_input`"),
        (
            with(good.clone(), "tool_input", json!("pytest")).to_string(),
            "tool_input is not a JSON object",
        ),
        (with(good.clone(), "session_id", json!(7)).to_string(), "invalid type"),
        (
            with(good.clone(), "hook_event_name", json!("PostToolUse")).to_string(),
            "this is a PostToolUse hook",
        ),
        (
            with(good.clone(), "tool_input", json!({"cmd": "pytest"})).to_string(),
            "has no `command`",
        ),
        (
            with(good.clone(), "tool_name", json!("mcp__nothing")).to_string(),
            "names no server and tool",
        ),
    ] {
        let seen = hook.run_raw(input.as_bytes());
        assert_eq!(seen.claude(), "deny", "{input}");
        assert!(seen.reason().contains(words), "{input}: {seen:?}");
    }
    // The same call, well formed, is allowed: the refusals above are about the input.
    assert_eq!(hook.run(&good).claude(), "allow");
    // A bad setting is a usage error, whose status (2) both agents read as a block, with clap's reason.
    let misconfigured = Hook::claude(&daemon.socket, &project).env("CAVRA_CLIENT_TIMEOUT", "10");
    let seen = misconfigured.run(&good);
    assert_eq!(seen.code, Some(2), "{seen:?}");
    assert!(seen.stderr.contains("\"10\" is not a duration"), "{seen:?}");
}

#[test]
fn approval_is_asked_only_where_the_agent_asks_the_user() {
    let project = Project::new();
    let daemon = Daemon::start(&[]);
    let hook = Hook::claude(&daemon.socket, &project);
    let approval = claude_call(
        &project,
        "Write",
        json!({"file_path": project.path("iam/role.tf"), "content": "x"}),
    );
    let mut absent = approval.clone();
    absent.as_object_mut().unwrap().remove("permission_mode");
    for (call, expected) in [
        (approval.clone(), "ask"),
        (with(approval.clone(), "permission_mode", json!("acceptEdits")), "ask"),
        (absent, "ask"),
        (with(approval.clone(), "permission_mode", json!("plan")), "deny"),
        (with(approval.clone(), "permission_mode", json!("auto")), "deny"),
        (with(approval.clone(), "permission_mode", json!("dontAsk")), "deny"),
        (
            with(approval.clone(), "permission_mode", json!("bypassPermissions")),
            "deny",
        ),
        (
            with(approval.clone(), "permission_mode", json!("a-future-mode")),
            "deny",
        ),
    ] {
        let seen = hook.run(&call);
        assert_eq!(seen.claude(), expected, "{}", call["permission_mode"]);
        assert!(seen.reason().contains("filesystem.write.require_approval"), "{seen:?}");
        if expected == "deny" {
            let mode = call["permission_mode"].as_str().unwrap();
            assert!(seen.reason().contains(&format!("permission mode {mode}")), "{seen:?}");
        }
    }
    // Non-interactive sessions say so with a flag (or its variable).
    let seen = Hook::claude(&daemon.socket, &project)
        .arg("--hook-no-ask")
        .run(&approval);
    assert_eq!(seen.claude(), "deny");
    assert!(seen.reason().contains("--hook-no-ask"), "{seen:?}");
    let seen = Hook::claude(&daemon.socket, &project)
        .env("CAVRA_HOOK_NO_ASK", "true")
        .run(&approval);
    assert_eq!(seen.claude(), "deny");
    // An allow is an allow in every mode, a block a block.
    for mode in ["default", "auto", "bypassPermissions"] {
        let call = with(
            claude_call(&project, "Read", json!({"file_path": project.path("README.md")})),
            "permission_mode",
            json!(mode),
        );
        assert_eq!(hook.run(&call).claude(), "allow", "{mode}");
        let call = with(
            claude_call(&project, "Read", json!({"file_path": project.path(".env")})),
            "permission_mode",
            json!(mode),
        );
        assert_eq!(hook.run(&call).claude(), "deny", "{mode}");
    }
}

#[test]
fn in_process_evaluation_needs_no_daemon() {
    let project = Project::new();
    let socket = project.outside.join("absent.sock");
    let hook = Hook::claude(&socket, &project)
        .arg("--hook-in-process")
        .arg("--pin-pack=cavra-terraform-prod");
    let call = claude_call(
        &project,
        "Write",
        json!({"file_path": project.path("modules/vpc/main.tf")}),
    );
    let seen = hook.run(&call);
    assert_eq!(seen.claude(), "deny");
    assert!(seen.reason().contains("**/modules/**"), "{seen:?}");
    let call = claude_call(&project, "Read", json!({"file_path": project.path("README.md")}));
    assert_eq!(hook.run(&call).claude(), "allow");
}

// ---------------------------------------------------------------------------------------------------------------
// Cursor.

fn cursor_event(project: &Project, event: &str, fields: Value) -> Value {
    let mut input = json!({
        "conversation_id": "conv-123", "generation_id": "gen-456", "model": "some-model",
        "hook_event_name": event, "cursor_version": "1.7.2", "workspace_roots": [project.root],
        "user_email": null, "transcript_path": null
    });
    for (name, value) in fields.as_object().unwrap() {
        input[name] = value.clone();
    }
    input
}

#[test]
fn cursor_events_are_allowed_asked_or_denied_as_the_policy_decides() {
    let project = Project::new();
    let (daemon, log) = daemon_with_evidence();
    let hook = Hook::cursor(&daemon.socket, &project);
    let shell = |command: &str| {
        cursor_event(
            &project,
            "beforeShellExecution",
            json!({"command": command, "cwd": project.root, "sandbox": false}),
        )
    };
    let mcp = |server: &str, tool: &str, arguments: &str| {
        cursor_event(
            &project,
            "beforeMCPExecution",
            json!({"tool_name": tool, "tool_input": arguments, "url": server}),
        )
    };
    let read = |path: String| {
        cursor_event(
            &project,
            "beforeReadFile",
            json!({"file_path": path, "content": "x", "attachments": []}),
        )
    };
    let tool = |name: &str, input: Value| {
        cursor_event(
            &project,
            "preToolUse",
            json!({"tool_name": name, "tool_input": input, "tool_use_id": "abc123", "cwd": project.root}),
        )
    };
    for (input, expected, words) in [
        (shell("npm test"), "allow", ""),
        (shell("make deploy"), "ask", "commands.default.require_approval"),
        (shell("terraform apply -auto-approve"), "deny", "commands.block"),
        (
            mcp("github-mcp", "create_pull_request", "{\"title\":\"x\"}"),
            "allow",
            "",
        ),
        (mcp("github-mcp", "delete_repo", "{}"), "ask", "mcp.registry.tool_scope"),
        (
            mcp("filesystem-lab", "read_file", "{\"path\":\"/x\"}"),
            "ask",
            "mcp.registry.requires_approval",
        ),
        (
            mcp("personal-drive-mcp", "read_file", "{}"),
            "deny",
            "mcp.registry.blocked",
        ),
        (
            mcp("filesystem-lab", "read_file", "{not json"),
            "deny",
            "tool_input is not JSON",
        ),
        (read(project.path("README.md")), "allow", ""),
        (read(project.path(".env")), "deny", "filesystem.read.block"),
        (
            tool("Write", json!({"file_path": project.path("src/a.rs")})),
            "allow",
            "",
        ),
        (
            tool("Write", json!({"file_path": project.path(".cursor/hooks.json")})),
            "deny",
            "filesystem.write.block",
        ),
        (
            tool("Delete", json!({"path": project.path(".github/workflows/ci.yml")})),
            "deny",
            "filesystem.write.block",
        ),
        // No ask in preToolUse: an approval is refused there.
        (
            tool("Write", json!({"file_path": project.path("iam/a.tf")})),
            "deny",
            "Cursor does not ask the user in preToolUse",
        ),
        (
            tool("Grep", json!({"pattern": "x", "path": project.path(".env")})),
            "deny",
            "filesystem.read.block",
        ),
        (
            tool("Write", json!({"contents": "x"})),
            "deny",
            "has no `file_path` or `path`",
        ),
        (
            tool("SomethingNew", json!({})),
            "deny",
            "runtime.default.require_approval",
        ),
        (tool("Task", json!({"task": "explore"})), "allow", ""),
        // Shell, reads and MCP calls are decided in their own events.
        (
            tool(
                "Shell",
                json!({"command": "terraform apply", "working_directory": project.root}),
            ),
            "allow",
            "",
        ),
        (
            cursor_event(&project, "afterFileEdit", json!({"file_path": project.path("a")})),
            "deny",
            "afterFileEdit hook",
        ),
        (json!({"conversation_id": "c"}), "deny", "no hook_event_name"),
    ] {
        let seen = hook.run(&input);
        assert_eq!(seen.cursor(), expected, "{input}: {seen:?}");
        if !words.is_empty() {
            assert!(
                seen.json()["user_message"].as_str().unwrap().contains(words),
                "{input}: {seen:?}"
            );
        }
    }
    // Readings that can ask cannot when the operator says nobody answers.
    let seen = Hook::cursor(&daemon.socket, &project)
        .arg("--hook-no-ask")
        .run(&shell("make deploy"));
    assert_eq!(seen.cursor(), "deny");
    let stored = records(&log);
    let first = &stored[0]["request"];
    assert_eq!(
        (
            first["agent_id"].as_str(),
            first["session_id"].as_str(),
            first["tool_name"].as_str()
        ),
        (Some("cursor"), Some("conv-123"), Some("Shell"))
    );
    assert!(
        !stored
            .iter()
            .any(|record| record["request"]["target"] == "terraform apply"
                && record["request"]["tool_use_id"] == "abc123"),
        "preToolUse asked nothing about a Shell call"
    );
}
