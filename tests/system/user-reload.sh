#!/bin/bash
# Scenario (d), reload: the daemon serves a --policy-dir pack (configured through the per-user environment file the
# unit reads). After the pack changes, `--check` passes and `systemctl --user reload` (ExecReload= is
# `cavra-runtime --reload`: SIGHUP, then it waits for the daemon's outcome) returns 0 with the new decisions in
# force and the new policy digest in the status text. After the pack is broken, `--check` exits 1 naming the file,
# and `systemctl --user reload` exits non-zero, leaving the same daemon active with the previous decisions and
# digest; the status text says "reload failed" and the health answer and metrics record the failure.
#
# systemd 252 has no Type=notify-reload; ExecReload= waiting for the outcome is what makes `systemctl reload`
# report it.
#
# usage: timeout 120 unshare -m bash tests/system/user-reload.sh /path/to/cavra-runtime
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

systest_begin "user reload" "$@"
cavra_user_session

PACKS=$SYSTEST_WORK/packs
mkdir -p "$PACKS/workstation"
write_pack() { # the file names whose reading is blocked
    {
        printf 'metadata:\n  id: workstation\nfilesystem:\n  block_read:\n'
        printf '    - "%s"\n' "$@"
    } >"$PACKS/workstation/policy.yaml.new"
    mv "$PACKS/workstation/policy.yaml.new" "$PACKS/workstation/policy.yaml"
}
write_pack secret.txt
cavra_env_file "CAVRA_POLICY_DIR=$PACKS" "CAVRA_DEFAULT_PACK=workstation"

step "serve the first version of the pack"
systemctl --user start "$CAVRA_SERVICE"
pid=$(unit_prop "$CAVRA_SERVICE" MainPID)
status1=$(cavra_status)
expect_prefix "StatusText" "$status1" "serving policy directory $PACKS (1 packs, default workstation, sha256:"
digest1=$(cavra_health policy_digest)
expect_contains "StatusText" "$status1" "$digest1"
expect_eq "read secret.txt" "$(cavra_read_decision secret.txt)" "block filesystem.read.block"
expect_eq "read notes.txt" "$(cavra_read_decision notes.txt)" "allow filesystem.read.allow"

# check_config: `cavra-runtime --check` with the settings the unit reads; prints its output, returns its status.
check_config() { env "CAVRA_POLICY_DIR=$PACKS" CAVRA_DEFAULT_PACK=workstation "$CAVRA_BIN" --check 2>&1; }

step "change the pack, check it, and reload: systemctl reload returns once the new policy is in force"
write_pack notes.txt
out=$(check_config) || fail "--check refused the good pack: $out"
expect_prefix "--check" "$out" "configuration OK: policy directory $PACKS (1 packs, default workstation, sha256:"
systemctl --user reload "$CAVRA_SERVICE" || fail "systemctl --user reload failed on a good pack"
pass "systemctl --user reload exited 0"
status2=$(cavra_status)
case "$status2" in serving*) [ "$status2" != "$status1" ] || fail "the status text still shows the old policy" ;;
*) fail "status text after the reload: $status2" ;; esac
say "StatusText: $status2"
digest2=$(cavra_health policy_digest)
[ "$digest2" != "$digest1" ] || fail "the policy digest did not change on reload ($digest1)"
expect_contains "StatusText" "$status2" "$digest2"
expect_eq "read notes.txt" "$(cavra_read_decision notes.txt)" "block filesystem.read.block"
expect_eq "read secret.txt" "$(cavra_read_decision secret.txt)" "allow filesystem.read.allow"
wait_unit "$CAVRA_SERVICE" SubState running 10
expect_unit "$CAVRA_SERVICE" MainPID "$pid"

step "break the pack: --check and systemctl reload fail; the previous policy stays in force"
printf 'metadata:\n  id: workstation\nfilesystem:\n  block_read: [unterminated\n' >"$PACKS/workstation/policy.yaml"
if out=$(check_config); then fail "--check accepted a broken pack: $out"; fi
expect_prefix "--check" "$out" "cavra-runtime: configuration check failed: "
expect_contains "--check" "$out" "workstation/policy.yaml"
if out=$(systemctl --user reload "$CAVRA_SERVICE" 2>&1); then
    fail "systemctl --user reload exited 0 on a broken pack: $out"
fi
pass "systemctl --user reload failed: $out"
reload_log=$(journal_query -o cat _SYSTEMD_USER_UNIT="$CAVRA_SERVICE" | grep 'reload failed (pid' || true)
expect_contains "the reload helper's word in the journal" "$reload_log" "the previous policy $digest2 stays in force"
last_reload=$(cavra_ask '{"action_type":"cavra.health"}' | "$PYTHON" -c '
import json, sys
last = json.load(sys.stdin)["last_reload"]
print(last["result"], last["generation"])')
expect_eq "the health answer's last reload (result generation)" "$last_reload" "failure 2"
metrics=$("$CAVRA_BIN" --metrics --socket "$CAVRA_SOCKET")
expect_contains "metrics" "$metrics" 'cavra_reloads_total{result="failure"} 1'
expect_contains "metrics" "$metrics" 'cavra_reloads_total{result="success"} 1'
status3=$(cavra_status)
say "StatusText: $status3"
expect_prefix "StatusText" "$status3" "degraded: reload.failed: reload failed, previous policy still in force since "
expect_contains "StatusText" "$status3" "workstation/policy.yaml"
wait_unit "$CAVRA_SERVICE" SubState running 10
expect_unit "$CAVRA_SERVICE" ActiveState active
expect_unit "$CAVRA_SERVICE" MainPID "$pid"
expect_eq "policy digest" "$(cavra_health policy_digest)" "$digest2"
expect_eq "read notes.txt" "$(cavra_read_decision notes.txt)" "block filesystem.read.block"
expect_eq "read secret.txt" "$(cavra_read_decision secret.txt)" "allow filesystem.read.allow"
