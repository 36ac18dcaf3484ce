//! Claude Code's `PreToolUse` hook protocol (docs/agents.md has the sources).
//!
//! Input: one JSON object on standard input with `tool_name`, `tool_input`, and `session_id`, `cwd`,
//! `permission_mode`, `hook_event_name`, `tool_use_id`, `agent_id` (in a subagent) and `mcp_server` (MCP tools,
//! newer versions). Fields this version does not know are ignored. Output: nothing and exit 0 lets the call go
//! through Claude Code's own permissions; `permissionDecision: "ask"` with exit 0 asks the user; a deny is the
//! JSON deny, the reason on standard error and exit 2, which every version since hooks began reads as a block.

use serde::Deserialize;
use serde_json::{Value, json};

use super::tools;
use super::{Answer, Call, Output, directory};
use crate::cmd::flags::HookArgs;

const EVENT: &str = "PreToolUse";

#[derive(Debug, Deserialize)]
struct Input {
    #[serde(default)]
    hook_event_name: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    permission_mode: Option<String>,
    tool_name: String,
    tool_input: Value,
    #[serde(default)]
    tool_use_id: Option<String>,
    /// Set only inside a subagent.
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    mcp_server: Option<McpServer>,
}

#[derive(Debug, Deserialize)]
struct McpServer {
    #[serde(default)]
    name: Option<String>,
}

/// The permission modes in which Claude Code shows the prompt a hook's `ask` asks for. In `auto`, `dontAsk` and
/// `bypassPermissions` an ask has been resolved without the user (or denied with a less useful reason), and a
/// mode this version does not know may do the same; an absent mode is an older Claude Code, which always asked.
const ASKING_MODES: &[&str] = &["default", "acceptEdits"];

pub(super) fn parse(input: &[u8], hook: &HookArgs) -> Result<Call, String> {
    let input: Input =
        serde_json::from_slice(input).map_err(|error| format!("it is not Claude Code's hook JSON: {error}"))?;
    if let Some(event) = input.hook_event_name.as_deref().filter(|event| *event != EVENT) {
        return Err(format!(
            "`--hook claude-code` answers {EVENT} hooks, and this is a {event} hook; register it under {EVENT} only"
        ));
    }
    let Value::Object(tool_input) = &input.tool_input else {
        return Err(format!("its tool_input is not a JSON object: {}", input.tool_input));
    };
    if input.tool_name.is_empty() {
        return Err("its tool_name is empty".to_owned());
    }
    let project = std::env::var("CLAUDE_PROJECT_DIR").ok().filter(|dir| !dir.is_empty());
    let cwd = directory(input.cwd.as_deref(), None)?;
    let project = directory(project.as_deref(), Some(&cwd))?;
    let mapped = tools::map(
        &input.tool_name,
        tool_input,
        input.mcp_server.as_ref().and_then(|server| server.name.as_deref()),
        |tool| hook.is_harmless(tool),
    );
    let no_ask = if hook.hook_no_ask {
        Some("--hook-no-ask is set, so nobody is asked".to_owned())
    } else {
        input
            .permission_mode
            .as_deref()
            .filter(|mode| !ASKING_MODES.contains(mode))
            .map(|mode| format!("Claude Code's permission mode {mode} does not reliably ask the user"))
    };
    Ok(Call {
        agent_id: match &input.agent_id {
            Some(subagent) if !subagent.is_empty() => format!("claude-code/{subagent}"),
            _ => "claude-code".to_owned(),
        },
        session_id: input.session_id.unwrap_or_default(),
        tool_name: input.tool_name,
        tool_use_id: input.tool_use_id.unwrap_or_default(),
        mapped,
        cwd,
        project,
        no_ask,
    })
}

pub(super) fn render(answer: &Answer) -> Output {
    let decision = |decision: &str, reason: &str| {
        json!({"hookSpecificOutput": {"hookEventName": EVENT, "permissionDecision": decision,
                                      "permissionDecisionReason": reason}})
        .to_string()
    };
    match answer {
        Answer::Allow => Output::default(),
        Answer::Ask(reason) => Output {
            stdout: decision("ask", reason),
            ..Output::default()
        },
        Answer::Deny(reason) => Output {
            stdout: decision("deny", reason),
            stderr: reason.clone(),
            code: 2,
        },
    }
}
