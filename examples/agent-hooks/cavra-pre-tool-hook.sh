#!/bin/sh
# A Claude Code PreToolUse hook: before the agent runs a shell command (Bash) or writes a file (Write, Edit,
# MultiEdit, NotebookEdit), ask the cavra-runtime daemon. allow: the tool runs; require_approval: the user is asked,
# with the daemon's reason; block, or no answer from the daemon: the tool is refused (exit 2, reason on stderr, which
# the agent reads).
#
# Environment: CAVRA_RUNTIME_PATH (default cavra-runtime), CAVRA_RUNTIME_SOCKET (read by the binary; default its
# per-user socket), CAVRA_POLICY_PACK (default: the daemon's default pack), CAVRA_AGENT_ID (default claude-code).
#
# POSIX sh, no JSON tool: string values are taken from the hook's input still JSON-escaped and put into the request
# as they are, so no quoting is ever undone and redone.

set -u
runtime=${CAVRA_RUNTIME_PATH:-cavra-runtime}

# The hook input, on one line: raw line breaks and tabs in JSON only ever separate tokens.
payload=$(tr '\n\r\t' '   ')

# The still-escaped value of the string field "$1" (empty when absent).
field() {
    printf '%s\n' "$payload" |
        sed -n -E "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"(([^\"\\\\]|\\\\.)*)\".*/\\1/p" | head -n 1
}

case $(field tool_name) in
Bash) action=execute_command target=$(field command) ;;
Write | Edit | MultiEdit) action=write_file target=$(field file_path) ;;
NotebookEdit) action=write_file target=$(field notebook_path) ;;
*) exit 0 ;; # not gated here
esac
[ -n "$target" ] || {
    echo "cavra: refusing $action: the hook input names no target" >&2
    exit 2
}

# Policies name paths relative to the project: strip the project directory the agent gives absolute paths under.
if [ "$action" = write_file ]; then
    project=$(field cwd)
    project=${CLAUDE_PROJECT_DIR:-$project}
    case $target in "${project%/}"/*) target=${target#"${project%/}"/} ;; esac
fi

session=$(field session_id)
pack=${CAVRA_POLICY_PACK:+,\"policy_pack\":\"$CAVRA_POLICY_PACK\"}
request=$(printf '{"session_id":"%s","agent_id":"%s","actor":"ai-agent","action_type":"%s","target":"%s","requested_operation":"%s"%s}' \
    "${session:-local}" "${CAVRA_AGENT_ID:-claude-code}" "$action" "$target" "$target" "$pack")

answer=$(printf '%s\n' "$request" | "$runtime" --daemon --exit-code)
code=$?
reason=$(printf '%s\n' "$answer" | sed -n 's/^  "reason": "\(.*\)",\{0,1\}$/\1/p' | head -n 1)
rule=$(printf '%s\n' "$answer" | sed -n 's/^  "rule_id": "\(.*\)",\{0,1\}$/\1/p' | head -n 1)

case $code in
0) exit 0 ;;
2) # require_approval: let the user decide, showing why (reason is already JSON-escaped).
    printf '{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"ask","permissionDecisionReason":"cavra-runtime requires approval (%s): %s"}}\n' \
        "$rule" "$reason"
    exit 0
    ;;
3)
    printf 'cavra-runtime blocked this %s (%s): %s\n' "$action" "$rule" "$reason" | sed -e 's/\\"/"/g' -e 's/\\\\/\\/g' >&2
    exit 2
    ;;
*)
    echo "cavra: refusing $action: cavra-runtime gave no decision (exit $code); is the daemon running?" >&2
    exit 2
    ;;
esac
