#!/bin/bash
# Scenario (b), Type=notify readiness: `systemctl --user start cavra-runtime.service` returns only once the daemon
# has sent READY=1, and READY=1 means serving: right after start returns the unit is active/running, its status
# text (STATUS=) starts with "serving", and the socket answers at once.
#
# Part 2 makes the daemon slow to start (a drop-in runs it 2 s late, through exec so it stays the main process):
# start must then block for those 2 s with the unit "activating" meanwhile. A Type=simple unit, or a daemon that
# sent READY=1 early, returns at once and fails here.
#
# usage: timeout 120 unshare -m bash tests/system/user-notify-ready.sh /path/to/cavra-runtime
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

START_DELAY=2

systest_begin "user Type=notify readiness" "$@"
cavra_user_session
expect_unit "$CAVRA_SERVICE" Type notify
expect_unit "$CAVRA_SERVICE" NotifyAccess main

# Checks made the moment `systemctl start` (or restart) has returned: no waiting allowed.
ready_now() {
    expect_unit "$CAVRA_SERVICE" ActiveState active
    expect_unit "$CAVRA_SERVICE" SubState running
    expect_prefix "StatusText" "$(cavra_status)" "serving "
    local pid
    pid=$(cavra_ask '{"action_type":"cavra.health"}' --timeout 1 --fields pid)
    expect_eq "pid answering within 1 s" "$pid" "$(unit_prop "$CAVRA_SERVICE" MainPID)"
}

step "systemctl --user start returns once the daemon is ready"
systemctl --user start "$CAVRA_SERVICE"
ready_now
# Starting the service pulled in its socket (Requires=), and the daemon serves that socket.
expect_unit "$CAVRA_SOCKET_UNIT" SubState running
expect_contains "StatusText" "$(cavra_status)" 'on systemd socket "cavra-runtime"'
systemctl --user stop "$CAVRA_SERVICE"

step "a daemon that becomes ready ${START_DELAY}s late: start waits for it"
unit_dropin "$CAVRA_SERVICE" slow-start <<EOF
[Service]
ExecStart=
ExecStart=/bin/sh -c 'sleep $START_DELAY; exec "\$0" --serve' $CAVRA_BIN
EOF
manager_reload
started_at=${EPOCHREALTIME/./}
systemctl --user start "$CAVRA_SERVICE" &
start_job=$!
wait_unit "$CAVRA_SERVICE" ActiveState activating 5
kill -0 "$start_job" 2>/dev/null || fail "systemctl start returned while the unit was still activating"
pass "systemctl start is still waiting while the unit is activating"
wait "$start_job" || fail "systemctl start failed (exit $?)"
took_ms=$(((${EPOCHREALTIME/./} - started_at) / 1000))
say "systemctl start returned after ${took_ms} ms"
ready_now
[ "$took_ms" -ge $((START_DELAY * 1000)) ] ||
    fail "systemctl start returned after ${took_ms} ms, before the daemon could be ready (${START_DELAY} s)"
pass "start took at least ${START_DELAY} s"
