#!/bin/bash
# Scenario (g), journald: under a user manager with a journal, the daemon logs decisions natively with bare field
# names. One blocked and one allowed request are made; `journalctl -o json DECISION=block` must return exactly the
# block (RULE_ID=filesystem.read.block, PEER_UID=0, the client's PEER_PID, the answer's DECISION_ID,
# SYSLOG_IDENTIFIER=cavra-runtime, attributed to the user unit). The allow has no entry of its own (the default
# --log-decisions non-allow): a summary entry (SUMMARY=allow, ALLOWED=1) counts it. Each entry names an evidence
# record (EVIDENCE_SEQUENCE, EVIDENCE_RECORD_HASH: the block's own, the summary the highest allowed), so
# `--verify-evidence --journal` over the journal directory finds the allowed record then cut off the end of the log,
# which the chain alone cannot.
#
# usage: timeout 120 unshare -m bash tests/system/user-journald.sh /path/to/cavra-runtime
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/journal.sh
. "$SYSTEST_LIB/journal.sh"
# shellcheck source=lib/user-manager.sh
. "$SYSTEST_LIB/user-manager.sh"
# shellcheck source=lib/cavra.sh
. "$SYSTEST_LIB/cavra.sh"

FIELDS=DECISION,RULE_ID,SEVERITY,POLICY_PACK,ACTION_TYPE,DECISION_ID,PEER_UID,PEER_GID,PEER_PID,SYSLOG_IDENTIFIER,_SYSTEMD_USER_UNIT,_PID

systest_begin "user journald decision log" "$@"
cavra_user_session

step "activate the daemon; it logs to the journal"
EVIDENCE_LOG=$SYSTEST_WORK/evidence.jsonl
cavra_env_file "CAVRA_EVIDENCE_LOG=$EVIDENCE_LOG"
cavra_listen
pid=$(cavra_health pid)
grep -q '^JOURNAL_STREAM=' <(tr '\0' '\n' <"/proc/$pid/environ") || fail "the daemon got no JOURNAL_STREAM"
pass "the daemon's stderr is a journal stream (JOURNAL_STREAM set)"

# ask_from_own_process REQUEST: the answer's decision_id; sets CLIENT_PID to the process that asked.
ask_from_own_process() {
    "$PYTHON" "$CAVRA_CLIENT" ask "$CAVRA_SOCKET" "$1" --fields decision,decision_id >"$SYSTEST_WORK/answer" &
    CLIENT_PID=$!
    wait "$CLIENT_PID" || fail "no answer to $1"
}

step "one blocked and one allowed request"
ask_from_own_process '{"action_type":"read_file","target":".env"}'
read -r decision block_id <"$SYSTEST_WORK/answer"
block_client=$CLIENT_PID
expect_eq "read .env" "$decision" block
ask_from_own_process '{"action_type":"read_file","target":"README.md"}'
read -r decision allow_id <"$SYSTEST_WORK/answer"
expect_eq "read README.md" "$decision" allow
say "block $block_id (asked by pid $block_client), allow $allow_id"

# journal_entries MATCH...: the matching entries' fields, one line each.
journal_entries() { journal_query -o json "$@" | "$PYTHON" "$CAVRA_CLIENT" fields "$FIELDS"; }
has_entry() { [ -n "$(journal_entries "$@")" ]; }

step "journalctl -o json DECISION=block"
wait_for "a DECISION=block entry in the journal" 10 has_entry DECISION=block
blocks=$(journal_entries DECISION=block)
printf '   %s\n' "$blocks"
expect_eq "entries matching DECISION=block" "$(grep -c . <<<"$blocks")" 1
IFS=$'\t' read -r decision rule severity pack action decision_id peer_uid peer_gid peer_pid ident user_unit logger_pid <<<"$blocks"
expect_eq DECISION "$decision" block
expect_eq RULE_ID "$rule" filesystem.read.block
expect_eq SEVERITY "$severity" high
expect_eq POLICY_PACK "$pack" cavra-ai-agent-baseline
expect_eq ACTION_TYPE "$action" read_file
expect_eq DECISION_ID "$decision_id" "$block_id"
expect_eq PEER_UID "$peer_uid" 0
expect_eq PEER_GID "$peer_gid" 0
expect_eq PEER_PID "$peer_pid" "$block_client"
expect_eq SYSLOG_IDENTIFIER "$ident" cavra-runtime
expect_eq _SYSTEMD_USER_UNIT "$user_unit" "$CAVRA_SERVICE"
expect_eq "_PID (the logging process)" "$logger_pid" "$pid"
case "$blocks" in
*"$allow_id"* | allow*) fail "DECISION=block also returned the allow decision $allow_id" ;;
esac
pass "DECISION=block does not return the allow"

step "the allow has no entry of its own: a summary counts it (--log-decisions non-allow)"
# Summaries come once an interval (5 s).
wait_for "a SUMMARY=allow entry in the journal" 15 has_entry SUMMARY=allow
summary=$(journal_query -o json SUMMARY=allow | "$PYTHON" "$CAVRA_CLIENT" fields ALLOWED,EVIDENCE_SEQUENCE,EVIDENCE_RECORD_HASH)
printf '   %s\n' "$summary"
expect_eq "entries matching DECISION=allow" "$(journal_entries DECISION=allow)" ""
expect_eq "entries matching DECISION=block RULE_ID=filesystem.read.block PEER_UID=0 SYSLOG_IDENTIFIER=cavra-runtime" \
    "$(journal_entries DECISION=block RULE_ID=filesystem.read.block PEER_UID=0 SYSLOG_IDENTIFIER=cavra-runtime | cut -f6)" "$block_id"

step "each decision's entry names its evidence record; a record cut off the log's end is found through the journal"
# record_of DECISION_ID: "<sequence>\t<record hash>" of the decision's record in the log.
record_of() {
    "$PYTHON" -c '
import json, sys
for line in open(sys.argv[1]):
    record = json.loads(line)
    if record.get("response", {}).get("decision_id") == sys.argv[2]:
        print("%s\t%s" % (record["sequence"], record["record_hash"]))' "$EVIDENCE_LOG" "$1"
}
expect_eq "EVIDENCE_SEQUENCE and EVIDENCE_RECORD_HASH of the block $block_id" \
    "$(journal_query -o json DECISION_ID="$block_id" | "$PYTHON" "$CAVRA_CLIENT" fields EVIDENCE_SEQUENCE,EVIDENCE_RECORD_HASH)" \
    "$(record_of "$block_id")"
expect_eq "the summary (ALLOWED, then the allowed record $allow_id)" "$summary" "1	$(record_of "$allow_id")"
systemctl --user stop "$CAVRA_SERVICE"
journalctl --sync
JOURNAL_FILES=$JOURNAL_DIR/runtime/journal
"$CAVRA_BIN" --verify-evidence --evidence-log "$EVIDENCE_LOG" --journal "$JOURNAL_FILES" >"$SYSTEST_WORK/verify.json" ||
    fail "the log does not verify against the journal: $(cat "$SYSTEST_WORK/verify.json")"
pass "the log as written verifies against the journal directory"
head -n 1 "$EVIDENCE_LOG" >"$SYSTEST_WORK/cut.jsonl"
mv "$SYSTEST_WORK/cut.jsonl" "$EVIDENCE_LOG"
"$CAVRA_BIN" --verify-evidence --evidence-log "$EVIDENCE_LOG" >/dev/null || fail "the cut log no longer verifies alone"
pass "cut to its first record (the block), the log still verifies on its own"
if "$CAVRA_BIN" --verify-evidence --evidence-log "$EVIDENCE_LOG" --journal "$JOURNAL_FILES" >"$SYSTEST_WORK/verify.json"; then
    fail "the cut log verified against the journal: $(cat "$SYSTEST_WORK/verify.json")"
fi
expect_contains "the report" "$(cat "$SYSTEST_WORK/verify.json")" \
    "journal: the log ends at sequence 1, but the journal saw records up to 2: records were cut off its end"
