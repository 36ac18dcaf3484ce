//! Tool calls, whatever the agent, mapped to what the daemon decides: a command, a file read or write, an MCP call,
//! or another action that the pack's default decides. Keyed on the tool's name and the fields its input documents
//! (docs/agents.md lists them with their sources).

use serde_json::{Map, Value};

/// The `action_type` of a tool call the mapping does not know: no engine module decides it, so the pack's default
/// for unknown actions does (`runtime.default.require_approval`).
pub const OTHER_ACTION: &str = "agent_tool_call";

/// What a tool call asks the daemon about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `execute_command` of the command line as the agent will run it.
    Command(String),
    /// `read_file` of a path as the agent named it (relative paths are relative to the agent's directory).
    Read(String),
    /// `write_file` of a path as the agent named it.
    Write(String),
    /// `mcp_tool_call`.
    Mcp { server: String, tool: String },
    /// An [`OTHER_ACTION`] about `target` (the URL of a fetch, the query of a search, else the tool's name).
    Other { target: String },
}

/// What a tool call comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// Ask about each; the strictest answer wins.
    Ask(Vec<Action>),
    /// A tool on the harmless list: it goes ahead without a question.
    Harmless,
    /// The input does not say what the tool would act on: refused with this reason.
    Invalid(String),
}

/// Maps a call of `tool` with `input`. `mcp_server` is the MCP server the agent names beside the tool, when it
/// does; `harmless` says whether a tool that maps to no file, command or MCP request (a web fetch, a tool the
/// mapping does not know) may go ahead without asking.
pub fn map(
    tool: &str,
    input: &Map<String, Value>,
    mcp_server: Option<&str>,
    harmless: impl Fn(&str) -> bool,
) -> Mapped {
    let mapped = match tool {
        // Claude Code's shells; Cursor's is Shell.
        "Bash" | "PowerShell" | "Shell" => fields(tool, input, &["command"], Action::Command),
        // Claude Code's Monitor runs a command in the background (or watches a WebSocket, which is another action).
        "Monitor" if input.contains_key("command") => fields(tool, input, &["command"], Action::Command),
        "Write" | "Edit" | "MultiEdit" | "Delete" => fields(tool, input, &["file_path", "path"], Action::Write),
        "NotebookEdit" => fields(tool, input, &["notebook_path"], Action::Write),
        "Read" => fields(tool, input, &["file_path", "path"], Action::Read),
        "NotebookRead" => fields(tool, input, &["notebook_path"], Action::Read),
        "LS" => fields(tool, input, &["path"], Action::Read),
        "LSP" if input.contains_key("file_path") => fields(tool, input, &["file_path"], Action::Read),
        // A search reads everything under its path, the agent's directory when it names none.
        "Grep" | "Glob" => match optional(tool, input, "path") {
            Ok(path) => Ok(vec![Action::Read(path.unwrap_or_else(|| ".".to_owned()))]),
            Err(reason) => Err(reason),
        },
        "ReadMcpResourceTool" | "ReadMcpResource" | "ListMcpResourcesTool" | "ListMcpResources" => {
            match optional(tool, input, "server") {
                Ok(Some(server)) => Ok(vec![Action::Mcp {
                    server,
                    tool: tool.to_owned(),
                }]),
                Ok(None) => Ok(vec![Action::Other {
                    target: tool.to_owned(),
                }]),
                Err(reason) => Err(reason),
            }
        }
        "WebFetch" => other(tool, input, "url"),
        "WebSearch" => other(tool, input, "query"),
        _ => match tool.strip_prefix("mcp__") {
            Some(rest) => mcp(tool, rest, mcp_server),
            None => Ok(vec![Action::Other {
                target: tool.to_owned(),
            }]),
        },
    };
    match mapped {
        // Only a tool that comes to nothing the daemon has a rule for may be exempted.
        Ok(actions) if harmless(tool) && actions.iter().all(|action| matches!(action, Action::Other { .. })) => {
            Mapped::Harmless
        }
        Ok(actions) => Mapped::Ask(actions),
        Err(reason) => Mapped::Invalid(reason),
    }
}

/// The one string field of `names` the input has, which must not be empty.
fn required(tool: &str, input: &Map<String, Value>, names: &[&str]) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for name in names {
        if let Some(value) = optional(tool, input, name)? {
            found.push(value);
        }
    }
    if found.is_empty() {
        return Err(format!(
            "the {tool} call's tool_input has no {}",
            names
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    Ok(found)
}

/// An action for every field of `names` the input has (at least one).
fn fields(
    tool: &str,
    input: &Map<String, Value>,
    names: &[&str],
    action: fn(String) -> Action,
) -> Result<Vec<Action>, String> {
    let mut found = required(tool, input, names)?;
    found.dedup();
    Ok(found.into_iter().map(action).collect())
}

/// A string field, absent or `null` being `None`; any other type, or an empty string, is invalid.
fn optional(tool: &str, input: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Err(format!("the {tool} call's `{name}` is empty")),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(format!("the {tool} call's `{name}` is not a string: {other}")),
    }
}

/// An [`Action::Other`] about the field `name`, or the tool's name when the input has none.
fn other(tool: &str, input: &Map<String, Value>, name: &str) -> Result<Vec<Action>, String> {
    let target = optional(tool, input, name)?.unwrap_or_else(|| tool.to_owned());
    Ok(vec![Action::Other { target }])
}

/// `mcp__<server>__<tool>`. With the server named beside the call, that name; otherwise every way of splitting the
/// rest at a `__` is asked about, since a server's or a tool's name may itself hold one.
fn mcp(full: &str, rest: &str, server: Option<&str>) -> Result<Vec<Action>, String> {
    if let Some(server) = server.filter(|server| !server.is_empty()) {
        let tool = rest
            .strip_prefix(server)
            .and_then(|tail| tail.strip_prefix("__"))
            .filter(|tool| !tool.is_empty())
            .unwrap_or(rest);
        return Ok(vec![Action::Mcp {
            server: server.to_owned(),
            tool: tool.to_owned(),
        }]);
    }
    let splits: Vec<Action> = rest
        .match_indices("__")
        .map(|(at, _)| (&rest[..at], &rest[at + 2..]))
        .filter(|(server, tool)| !server.is_empty() && !tool.is_empty())
        .map(|(server, tool)| Action::Mcp {
            server: server.to_owned(),
            tool: tool.to_owned(),
        })
        .collect();
    if splits.is_empty() {
        return Err(format!(
            "the MCP tool name {full:?} names no server and tool (mcp__<server>__<tool>)"
        ));
    }
    Ok(splits)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mapped(tool: &str, input: Value) -> Mapped {
        map(tool, input.as_object().unwrap(), None, |tool| tool == "TodoWrite")
    }

    fn ask(actions: &[Action]) -> Mapped {
        Mapped::Ask(actions.to_vec())
    }

    #[test]
    fn shells_run_commands_and_file_tools_read_or_write_their_paths() {
        let command = [Action::Command("git push origin main".into())];
        assert_eq!(
            mapped("Bash", json!({"command": "git push origin main"})),
            ask(&command)
        );
        assert_eq!(
            mapped("Shell", json!({"command": "git push origin main"})),
            ask(&command)
        );
        for tool in ["Write", "Edit", "MultiEdit"] {
            assert_eq!(
                mapped(tool, json!({"file_path": "/p/a.rs", "content": "x"})),
                ask(&[Action::Write("/p/a.rs".into())])
            );
        }
        assert_eq!(
            mapped("NotebookEdit", json!({"notebook_path": "/p/n.ipynb", "new_source": ""})),
            ask(&[Action::Write("/p/n.ipynb".into())])
        );
        assert_eq!(
            mapped("Read", json!({"file_path": "/p/.env", "limit": 3})),
            ask(&[Action::Read("/p/.env".into())])
        );
        assert_eq!(
            mapped("Grep", json!({"pattern": "key", "path": "/p/deploy"})),
            ask(&[Action::Read("/p/deploy".into())])
        );
        assert_eq!(
            mapped("Glob", json!({"pattern": "**/*.pem"})),
            ask(&[Action::Read(".".into())])
        );
    }

    #[test]
    fn mcp_tools_name_their_server_and_tool() {
        let call = |server: &str, tool: &str| Action::Mcp {
            server: server.into(),
            tool: tool.into(),
        };
        assert_eq!(
            mapped("mcp__brave-search__web_search", json!({})),
            ask(&[call("brave-search", "web_search")])
        );
        // Ambiguous: both readings are asked about.
        assert_eq!(
            mapped("mcp__a__b__c", json!({})),
            ask(&[call("a", "b__c"), call("a__b", "c")])
        );
        // The server named beside the call settles it.
        let input = json!({});
        assert_eq!(
            map("mcp__a__b__c", input.as_object().unwrap(), Some("a__b"), |_| false),
            ask(&[call("a__b", "c")])
        );
        assert!(
            matches!(mapped("mcp__github", json!({})), Mapped::Invalid(reason) if reason.contains("names no server"))
        );
        assert_eq!(
            mapped("ReadMcpResourceTool", json!({"server": "docs", "uri": "x://y"})),
            ask(&[call("docs", "ReadMcpResourceTool")])
        );
    }

    #[test]
    fn other_tools_are_asked_about_unless_listed_as_harmless() {
        assert_eq!(
            mapped(
                "WebFetch",
                json!({"url": "https://example.com/x", "prompt": "summarise"})
            ),
            ask(&[Action::Other {
                target: "https://example.com/x".into()
            }])
        );
        assert_eq!(
            mapped("Teleport", json!({"to": "mars"})),
            ask(&[Action::Other {
                target: "Teleport".into()
            }])
        );
        assert_eq!(mapped("TodoWrite", json!({"todos": []})), Mapped::Harmless);
        // The list cannot exempt a tool the mapping knows.
        let input = json!({"command": "rm -rf /"});
        assert_eq!(
            map("Bash", input.as_object().unwrap(), None, |_| true),
            ask(&[Action::Command("rm -rf /".into())])
        );
    }

    #[test]
    fn inputs_that_name_nothing_are_invalid() {
        for (tool, input, words) in [
            ("Bash", json!({}), "has no `command`"),
            ("Bash", json!({"command": ""}), "`command` is empty"),
            ("Write", json!({"file_path": 7}), "`file_path` is not a string"),
            ("Read", json!({"offset": 1}), "has no `file_path` or `path`"),
            ("Grep", json!({"path": ["a"]}), "`path` is not a string"),
        ] {
            match mapped(tool, input) {
                Mapped::Invalid(reason) => assert!(reason.contains(words), "{tool}: {reason}"),
                other => panic!("{tool}: {other:?}"),
            }
        }
    }
}
