#!/bin/bash
# Scenario (d), reload: the daemon serves a --policy-dir pack (configured through the per-user environment file the
# unit reads). After the pack changes, `systemctl --user reload` (ExecReload= sends SIGHUP) puts the new decisions
# in force and the status text reports the new policy digest. After the pack is broken, a reload leaves the same
# daemon active with the previous decisions and digest, and the status text says "reload failed".
#
# systemd 252 has no Type=notify-reload and `systemctl reload` may return before the daemon's READY=1 (the kill
# helper races the RELOADING=1 message), so completion is observed through the status text, not reload's return.
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

step "change the pack and reload"
write_pack notes.txt
systemctl --user reload "$CAVRA_SERVICE"
reloaded() {
    local status
    status=$(cavra_status)
    case "$status" in
    "reload failed"*) fail "the reload failed: $status" ;;
    serving*) [ "$status" != "$status1" ] ;;
    *) return 1 ;;
    esac
}
wait_for "the status text to show the reloaded policy (it was: $status1)" 10 reloaded
status2=$(cavra_status)
say "StatusText: $status2"
digest2=$(cavra_health policy_digest)
[ "$digest2" != "$digest1" ] || fail "the policy digest did not change on reload ($digest1)"
expect_contains "StatusText" "$status2" "$digest2"
expect_eq "read notes.txt" "$(cavra_read_decision notes.txt)" "block filesystem.read.block"
expect_eq "read secret.txt" "$(cavra_read_decision secret.txt)" "allow filesystem.read.allow"
wait_unit "$CAVRA_SERVICE" SubState running 10
expect_unit "$CAVRA_SERVICE" MainPID "$pid"

step "break the pack and reload: the previous policy stays in force"
printf 'metadata:\n  id: workstation\nfilesystem:\n  block_read: [unterminated\n' >"$PACKS/workstation/policy.yaml"
systemctl --user reload "$CAVRA_SERVICE"
reload_failed() { case "$(cavra_status)" in "reload failed"*) return 0 ;; *) return 1 ;; esac }
wait_for "the status text to report the failed reload" 10 reload_failed
status3=$(cavra_status)
say "StatusText: $status3"
expect_prefix "StatusText" "$status3" "reload failed, previous policy still in force: "
expect_contains "StatusText" "$status3" "workstation/policy.yaml"
wait_unit "$CAVRA_SERVICE" SubState running 10
expect_unit "$CAVRA_SERVICE" ActiveState active
expect_unit "$CAVRA_SERVICE" MainPID "$pid"
expect_eq "policy digest" "$(cavra_health policy_digest)" "$digest2"
expect_eq "read notes.txt" "$(cavra_read_decision notes.txt)" "block filesystem.read.block"
expect_eq "read secret.txt" "$(cavra_read_decision secret.txt)" "allow filesystem.read.allow"
