//! Cursor's agent hooks (docs/agents.md has the sources): `beforeShellExecution` (`command`, `cwd`),
//! `beforeMCPExecution` (`tool_name`, `tool_input` as a JSON string, and the server's `url` or `command`),
//! `beforeReadFile` (`file_path`) and `preToolUse` (`tool_name`, `tool_input`), each with `hook_event_name`,
//! `conversation_id` and `workspace_roots`. Fields this version does not know are ignored.
//!
//! Output: `{"permission": "allow" | "ask" | "deny", "user_message", "agent_message"}`; a deny also exits 2, which
//! Cursor reads as a deny whatever the JSON says. `ask` is honoured by the shell and MCP events only: in
//! `beforeReadFile` and `preToolUse` an approval becomes a deny. Commands, reads and MCP calls are decided in their
//! own events (which carry their full input); `preToolUse` decides every other tool.

use serde_json::{Map, Value, json};

use super::tools::{self, Action, Mapped};
use super::{Answer, Call, Output, directory};
use crate::cmd::flags::HookArgs;

/// The tools `preToolUse` leaves to the events that describe them fully.
fn has_own_event(tool: &str) -> bool {
    tool == "Shell" || tool == "Read" || tool == "MCP" || tool.starts_with("MCP:")
}

pub(super) fn parse(input: &[u8], hook: &HookArgs) -> Result<Call, String> {
    let value: Value = serde_json::from_slice(input).map_err(|error| format!("it is not JSON: {error}"))?;
    let Value::Object(input) = value else {
        return Err("it is not a JSON object".to_owned());
    };
    let event = string(&input, "hook_event_name")?.ok_or("it has no hook_event_name")?;
    let roots = match input.get("workspace_roots") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(roots)) => roots.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(other) => return Err(format!("its workspace_roots is not a list: {other}")),
    };
    let cwd = directory(string(&input, "cwd")?.as_deref(), None)?;
    let project = std::env::var("CURSOR_PROJECT_DIR")
        .ok()
        .filter(|dir| !dir.is_empty())
        .or_else(|| roots.first().cloned());
    let project = directory(project.as_deref(), Some(&cwd))?;
    let cannot_ask = |why: &str| {
        Some(if hook.hook_no_ask {
            "--hook-no-ask is set, so nobody is asked".to_owned()
        } else {
            format!("Cursor does not ask the user in {why}")
        })
    };
    let (tool_name, tool_use_id, mapped, no_ask) = match event.as_str() {
        "beforeShellExecution" => {
            let command = required(&input, "command", &event)?;
            let no_ask = hook
                .hook_no_ask
                .then(|| "--hook-no-ask is set, so nobody is asked".to_owned());
            (
                "Shell".to_owned(),
                String::new(),
                Mapped::Ask(vec![Action::Command(command)]),
                no_ask,
            )
        }
        "beforeMCPExecution" => {
            let tool = required(&input, "tool_name", &event)?;
            // The arguments arrive as a JSON string; one that does not parse is not a call anybody can judge.
            if let Some(arguments) = string(&input, "tool_input")? {
                serde_json::from_str::<Value>(&arguments)
                    .map_err(|error| format!("its tool_input is not JSON: {error}"))?;
            }
            // Cursor names the server by its URL or its command, not by a name: the pack lists it by that.
            let server = match string(&input, "url")? {
                Some(url) => url,
                None => required(&input, "command", &event)?,
            };
            let no_ask = hook
                .hook_no_ask
                .then(|| "--hook-no-ask is set, so nobody is asked".to_owned());
            let mapped = Mapped::Ask(vec![Action::Mcp {
                server,
                tool: tool.clone(),
            }]);
            (tool, String::new(), mapped, no_ask)
        }
        "beforeReadFile" => {
            let path = required(&input, "file_path", &event)?;
            (
                "Read".to_owned(),
                String::new(),
                Mapped::Ask(vec![Action::Read(path)]),
                cannot_ask("beforeReadFile"),
            )
        }
        "preToolUse" => {
            let tool = required(&input, "tool_name", &event)?;
            let tool_input = match input.get("tool_input") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(object)) => object.clone(),
                Some(other) => return Err(format!("its tool_input is not a JSON object: {other}")),
            };
            let mapped = if has_own_event(&tool) {
                Mapped::Ask(Vec::new())
            } else {
                tools::map(&tool, &tool_input, None, |tool| hook.is_harmless(tool))
            };
            let tool_use_id = string(&input, "tool_use_id")?.unwrap_or_default();
            (tool, tool_use_id, mapped, cannot_ask("preToolUse"))
        }
        other => {
            return Err(format!(
                "`--hook cursor` answers beforeShellExecution, beforeMCPExecution, beforeReadFile and preToolUse \
                 hooks, and this is a {other} hook; register it under those only"
            ));
        }
    };
    Ok(Call {
        agent_id: "cursor".to_owned(),
        session_id: string(&input, "conversation_id")?.unwrap_or_default(),
        tool_name,
        tool_use_id,
        mapped,
        cwd,
        project,
        no_ask,
    })
}

/// A string field; absent or `null` is `None`, another type an error.
fn string(input: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(format!("its {name} is not a string: {other}")),
    }
}

fn required(input: &Map<String, Value>, name: &str, event: &str) -> Result<String, String> {
    string(input, name)?
        .filter(|text| !text.is_empty())
        .ok_or_else(|| format!("its {event} input has no {name}"))
}

pub(super) fn render(answer: &Answer) -> Output {
    let permission = |permission: &str, reason: &str| {
        json!({"permission": permission, "user_message": reason, "agent_message": reason}).to_string()
    };
    match answer {
        Answer::Allow => Output {
            stdout: json!({"permission": "allow"}).to_string(),
            ..Output::default()
        },
        Answer::Ask(reason) => Output {
            stdout: permission("ask", reason),
            ..Output::default()
        },
        Answer::Deny(reason) => Output {
            stdout: permission("deny", reason),
            stderr: reason.clone(),
            code: 2,
        },
    }
}
