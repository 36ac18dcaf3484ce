//! `--hook <agent>`: an AI coding agent's pre-tool hook. The agent runs the binary before each tool call with the
//! call as JSON on standard input; the hook maps the call to requests ([`tools`]), follows the links of the paths it
//! names ([`paths`]), asks the daemon about each, and answers in the agent's protocol ([`claude_code`],
//! [`cursor`]): allow, ask (require_approval, where the agent will really ask the user), or deny with the reason.
//!
//! Everything that keeps a decision from being made is a deny with a reason the agent and the user can read: input
//! that is not the agent's JSON, a daemon that is down, refuses, or does not answer in time, a path that cannot be
//! resolved. One deadline (`--client-timeout`) covers everything from reading the input to answering, and a watchdog
//! denies when it passes whatever is still waiting, since an agent lets a call whose hook timed out go ahead.

mod claude_code;
mod cursor;
mod paths;
mod tools;

use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use cavra_runtime_client::Client;

use super::ask::daemon_client;
use super::flags::{ClientArgs, HookAgent, HookArgs, PolicyArgs, SocketArgs};
use super::oneshot::Evaluator;
use crate::contract::{Decision, DecisionResponse, EvaluateRequest};
use crate::engine::path::normalize_path;
use cavra_runtime_client::find_socket;
use tools::{Action, Mapped, OTHER_ACTION};

/// The largest hook input read: a `Write` carries the whole file.
const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

/// How long after the deadline the watchdog answers, so that the client's own, more specific timeout wins.
const WATCHDOG_GRACE: Duration = Duration::from_millis(250);

/// A tool call as the protocols hand it over.
pub(crate) struct Call {
    /// `claude-code`, `claude-code/<subagent id>`, `cursor`.
    agent_id: String,
    session_id: String,
    tool_name: String,
    tool_use_id: String,
    mapped: Mapped,
    /// The agent's directory, against which relative paths are read (absolute).
    cwd: PathBuf,
    /// The project: the workspace root the daemon places file targets against (absolute).
    project: PathBuf,
    /// Why an ask would not reach anyone here, when it would not.
    no_ask: Option<String>,
}

/// The answer to the agent, before it is put in the agent's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Allow,
    Ask(String),
    Deny(String),
}

/// What the hook prints and how it exits.
#[derive(Debug, Default)]
pub(crate) struct Output {
    stdout: String,
    stderr: String,
    code: u8,
}

/// Answers the agent's hook; the exit status is the agent protocol's.
pub fn run(
    agent: HookAgent,
    hook: &HookArgs,
    client: &ClientArgs,
    socket: &SocketArgs,
    policy: &PolicyArgs,
) -> ExitCode {
    answer_panics(agent);
    let deadline = Instant::now() + client.client_timeout;
    let timeout = client.client_timeout;
    std::thread::spawn(move || {
        std::thread::sleep((deadline + WATCHDOG_GRACE).saturating_duration_since(Instant::now()));
        let reason = format!(
            "cavra-runtime refuses this tool call: no decision within --client-timeout {}",
            humantime::format_duration(timeout)
        );
        if let Some(code) = deliver(agent, &Answer::Deny(reason)) {
            std::process::exit(code.into());
        }
    });
    let answer = answer(agent, hook, client, socket, policy, deadline);
    match deliver(agent, &answer) {
        Some(code) => ExitCode::from(code),
        // The watchdog answered and is ending the process.
        None => loop {
            std::thread::park();
        },
    }
}

/// Whoever answers first (the hook, its watchdog, or the panic handler) is the only one to answer; the exit status
/// of that answer.
static ANSWERED: Mutex<Option<u8>> = Mutex::new(None);

/// Prints `answer` in the agent's protocol, unless an answer was already given; the exit status to end with.
fn deliver(agent: HookAgent, answer: &Answer) -> Option<u8> {
    let answered = ANSWERED.lock().unwrap_or_else(PoisonError::into_inner);
    if answered.is_some() {
        return None;
    }
    Some(answer_once(answered, agent, answer))
}

fn answer_once(mut answered: MutexGuard<'_, Option<u8>>, agent: HookAgent, answer: &Answer) -> u8 {
    if let Some(code) = *answered {
        return code;
    }
    let output = match agent {
        HookAgent::ClaudeCode => claude_code::render(answer),
        HookAgent::Cursor => cursor::render(answer),
    };
    // Nothing is left to do when the agent stopped listening; the exit status still says it.
    if !output.stdout.is_empty() {
        let _ = writeln!(io::stdout().lock(), "{}", output.stdout).and_then(|()| io::stdout().flush());
    }
    if !output.stderr.is_empty() {
        let _ = writeln!(io::stderr().lock(), "{}", output.stderr);
    }
    *answered = Some(output.code);
    output.code
}

/// A panic is a bug, and must still end as a deny: Rust's exit status for it (101) lets the agent's call go ahead.
fn answer_panics(agent: HookAgent) {
    std::panic::set_hook(Box::new(move |info| {
        let deny = Answer::Deny(format!("cavra-runtime refuses this tool call: the hook failed: {info}"));
        let code = match ANSWERED.try_lock() {
            Ok(answered) => answer_once(answered, agent, &deny),
            Err(TryLockError::Poisoned(poisoned)) => answer_once(poisoned.into_inner(), agent, &deny),
            // This thread panicked while answering; what it printed is incomplete, and 2 is a deny for both agents.
            Err(TryLockError::WouldBlock) => 2,
        };
        std::process::exit(code.into());
    }));
}

fn answer(
    agent: HookAgent,
    hook: &HookArgs,
    client: &ClientArgs,
    socket: &SocketArgs,
    policy: &PolicyArgs,
    deadline: Instant,
) -> Answer {
    let refused = |why: String| Answer::Deny(format!("cavra-runtime refuses this tool call: {why}"));
    let input = match read_input() {
        Ok(input) => input,
        Err(why) => return refused(why),
    };
    let parsed = match agent {
        HookAgent::ClaudeCode => claude_code::parse(&input, hook),
        HookAgent::Cursor => cursor::parse(&input, hook),
    };
    let call = match parsed {
        Ok(call) => call,
        Err(why) => return refused(format!("the hook input cannot be read: {why}")),
    };
    let actions = match &call.mapped {
        Mapped::Harmless => return Answer::Allow,
        Mapped::Invalid(why) => return refused(why.clone()),
        Mapped::Ask(actions) if actions.is_empty() => return Answer::Allow,
        Mapped::Ask(actions) => actions,
    };
    let refused = |why: String| {
        Answer::Deny(format!(
            "cavra-runtime could not decide this {} call, so it is refused: {why}",
            call.tool_name
        ))
    };
    let mut questions = Vec::new();
    for action in actions {
        match questions_for(&call, action, hook) {
            Ok(more) => questions.extend(more),
            Err(why) => return refused(why),
        }
    }
    let asker = match Asker::new(hook, client, socket, policy) {
        Ok(asker) => asker,
        Err(why) => return refused(why),
    };
    let mut answers = Vec::new();
    for question in &questions {
        match asker.ask(&question.request, deadline) {
            Ok(response) => answers.push(judge(question, &response)),
            Err(why) => return refused(why),
        }
    }
    match strictest(answers) {
        Answer::Ask(reason) => match &call.no_ask {
            Some(why) => Answer::Deny(format!("{reason} Refused: {why}.")),
            None => Answer::Ask(reason),
        },
        other => other,
    }
}

/// The hook input, bounded.
fn read_input() -> Result<Vec<u8>, String> {
    let mut input = Vec::new();
    io::stdin()
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut input)
        .map_err(|error| format!("cannot read the hook input: {error}"))?;
    if input.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!("the hook input is larger than {MAX_INPUT_BYTES} bytes"));
    }
    Ok(input)
}

/// An absolute directory: `given` (relative to `base`), else `base`, else this process's directory.
pub(crate) fn directory(given: Option<&str>, base: Option<&Path>) -> Result<PathBuf, String> {
    let base = match base {
        Some(base) => base.to_owned(),
        None => std::env::current_dir().map_err(|error| format!("cannot tell the current directory: {error}"))?,
    };
    Ok(match given.filter(|given| !given.is_empty()) {
        Some(given) => base.join(given),
        None => base,
    })
}

/// One request and how to name it in a reason.
struct Question {
    request: EvaluateRequest,
    /// `write_file of /p/docs/notes.md`.
    label: String,
}

/// The requests an action makes. A file is asked about under the name the agent used and, when links lead
/// elsewhere, under the name of the file reached, each with the project root spelled the same way.
fn questions_for(call: &Call, action: &Action, hook: &HookArgs) -> Result<Vec<Question>, String> {
    let request = |action_type: &str, target: String| EvaluateRequest {
        session_id: call.session_id.clone(),
        agent_id: call.agent_id.clone(),
        action_type: action_type.to_owned(),
        target,
        policy_pack: hook.hook_pack.clone().unwrap_or_default(),
        tool_name: call.tool_name.clone(),
        tool_use_id: call.tool_use_id.clone(),
        ..Default::default()
    };
    let (action_type, path) = match action {
        Action::Command(command) => {
            return Ok(vec![Question {
                request: request("execute_command", command.clone()),
                label: "execute_command".to_owned(),
            }]);
        }
        Action::Mcp { server, tool } => {
            let mut asked = request("mcp_tool_call", format!("{server}:{tool}"));
            asked.server = server.clone();
            asked.tool = tool.clone();
            return Ok(vec![Question {
                request: asked,
                label: format!("mcp_tool_call of {server}:{tool}"),
            }]);
        }
        Action::Other { target } => {
            return Ok(vec![Question {
                request: request(OTHER_ACTION, target.clone()),
                label: format!("{} call", call.tool_name),
            }]);
        }
        Action::Read(path) => ("read_file", path),
        Action::Write(path) => ("write_file", path),
    };
    let named = call.cwd.join(path);
    let text = |path: &Path| {
        path.to_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the path {} is not UTF-8", path.display()))
    };
    let (named_text, root_text) = (text(&named)?, text(&call.project)?);
    let reached = paths::resolve(&named).map_err(|error| error.to_string())?;
    if matches!(action, Action::Write(_)) {
        paths::single_name(&reached)?;
    }
    let real_root = paths::resolve(&call.project).map_err(|error| error.to_string())?;
    let (reached_text, real_root_text) = (text(&reached)?, text(&real_root)?);
    let mut as_named = request(action_type, named_text.clone());
    as_named.workspace_root = root_text.clone();
    let mut questions = vec![Question {
        request: as_named,
        label: format!("{action_type} of {named_text}"),
    }];
    if (normalize_path(&named_text), normalize_path(&root_text)) != (reached_text.clone(), real_root_text.clone()) {
        let mut as_reached = request(action_type, reached_text.clone());
        as_reached.workspace_root = real_root_text;
        questions.push(Question {
            request: as_reached,
            label: format!("{action_type} of {named_text} -> {reached_text}"),
        });
    }
    Ok(questions)
}

/// Who decides: the daemon, or this process with the policy flags.
enum Asker {
    Daemon(Box<Client>),
    InProcess(Box<Evaluator>),
}

impl Asker {
    fn new(hook: &HookArgs, client: &ClientArgs, socket: &SocketArgs, policy: &PolicyArgs) -> Result<Asker, String> {
        if hook.hook_in_process {
            let evaluator = Evaluator::load(policy).map_err(|error| error.to_string())?;
            return Ok(Asker::InProcess(Box::new(evaluator)));
        }
        daemon_client(client, &find_socket(socket.socket.as_deref()).path)
            .map(|client| Asker::Daemon(Box::new(client)))
            .map_err(|error| error.to_string())
    }

    /// The decision on `request`, or why there is none; a daemon's refusal is no decision.
    fn ask(&self, request: &EvaluateRequest, deadline: Instant) -> Result<DecisionResponse, String> {
        match self {
            Asker::Daemon(client) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!(
                        "no time left within --client-timeout {}",
                        humantime::format_duration(client.timeout())
                    ));
                }
                client
                    .clone()
                    .with_timeout(left)
                    .evaluate(request)
                    .map_err(|error| error.to_string())
            }
            Asker::InProcess(evaluator) => evaluator.evaluate(request).map_err(|error| error.to_string()),
        }
    }
}

/// The answer one decision calls for.
fn judge(question: &Question, response: &DecisionResponse) -> Answer {
    let (rule, reason, label) = (&response.rule_id, &response.reason, &question.label);
    match &response.decision {
        Decision::Allow => Answer::Allow,
        Decision::RequireApproval => {
            let by = if response.approver_group.is_empty() {
                String::new()
            } else {
                format!(" by {}", response.approver_group)
            };
            Answer::Ask(format!(
                "cavra-runtime requires approval{by} for this {label} ({rule}): {reason}"
            ))
        }
        // Block, and any decision this version does not know.
        other => Answer::Deny(format!("cavra-runtime {} this {label} ({rule}): {reason}", verb(other))),
    }
}

fn verb(decision: &Decision) -> String {
    match decision {
        Decision::Block => "blocked".to_owned(),
        other => format!("answered {} (not allow) to", other.as_str()),
    }
}

/// Deny over ask over allow; the first answer of the strictest kind.
fn strictest(answers: Vec<Answer>) -> Answer {
    let rank = |answer: &Answer| match answer {
        Answer::Allow => 0,
        Answer::Ask(_) => 1,
        Answer::Deny(_) => 2,
    };
    answers
        .into_iter()
        .reduce(|kept, next| if rank(&next) > rank(&kept) { next } else { kept })
        .unwrap_or(Answer::Allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strictest_answer_wins_and_the_first_of_its_kind() {
        let deny = |why: &str| Answer::Deny(why.to_owned());
        let ask = |why: &str| Answer::Ask(why.to_owned());
        assert_eq!(strictest(vec![Answer::Allow, ask("a"), Answer::Allow]), ask("a"));
        assert_eq!(strictest(vec![ask("a"), deny("d1"), ask("b"), deny("d2")]), deny("d1"));
        assert_eq!(strictest(vec![Answer::Allow, Answer::Allow]), Answer::Allow);
    }

    /// Run by [`a_panic_is_a_deny`] in a process of its own: it panics with the hook's handler installed.
    #[test]
    #[ignore = "run by a_panic_is_a_deny in a child process"]
    fn panicking_hook() {
        answer_panics(HookAgent::ClaudeCode);
        panic!("a bug");
    }

    #[test]
    fn a_panic_is_a_deny() {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "cmd::hook::tests::panicking_hook",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        // After the test harness's own words on the same line.
        let at = stdout
            .find("{\"hookSpecificOutput\"")
            .expect("the deny on standard output");
        let answer = stdout[at..].lines().next().unwrap();
        let answer: serde_json::Value = serde_json::from_str(answer).unwrap();
        let reason = answer["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .unwrap();
        assert!(
            reason.contains("the hook failed") && reason.contains("a bug"),
            "{reason}"
        );
        assert_eq!(answer["hookSpecificOutput"]["permissionDecision"], "deny");
    }

    #[test]
    fn a_decision_this_version_does_not_know_is_a_deny() {
        let question = Question {
            request: EvaluateRequest::default(),
            label: "execute_command".to_owned(),
        };
        let response: DecisionResponse =
            serde_json::from_str(r#"{"decision":"escalate","severity":"high","rule_id":"future.rule","reason":"why"}"#)
                .unwrap();
        match judge(&question, &response) {
            Answer::Deny(reason) => assert!(
                reason.contains("future.rule") && reason.contains("escalate"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
