#!/bin/bash
# Scenario (e), stop: `systemctl --user stop cavra-runtime.service` ends the daemon cleanly (SIGTERM -> STOPPING=1,
# drain, exit 0: inactive, Result=success, main process exited with status 0), while cavra-runtime.socket keeps
# listening and its socket file stays in place (the daemon never unlinks a socket it was handed). The next request
# starts a new daemon through the socket.
#
# usage: timeout 120 unshare -m bash tests/system/user-stop.sh /path/to/cavra-runtime
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

systest_begin "user stop" "$@"
cavra_user_session

step "activate the daemon through the socket"
cavra_listen
pid=$(cavra_health pid)
expect_unit "$CAVRA_SERVICE" MainPID "$pid"
socket_inode=$(stat -c %i "$CAVRA_SOCKET")

step "systemctl --user stop the service"
systemctl --user stop "$CAVRA_SERVICE"
expect_unit "$CAVRA_SERVICE" ActiveState inactive
expect_unit "$CAVRA_SERVICE" SubState dead
expect_unit "$CAVRA_SERVICE" Result success
# ExecMainCode 1 = CLD_EXITED (a normal exit, not a signal); ExecMainStatus is then the exit status.
expect_unit "$CAVRA_SERVICE" ExecMainPID "$pid"
expect_unit "$CAVRA_SERVICE" ExecMainCode 1
expect_unit "$CAVRA_SERVICE" ExecMainStatus 0
kill -0 "$pid" 2>/dev/null && fail "pid $pid still exists after stop"
pass "pid $pid is gone"
# The daemon logged its graceful path: SIGTERM seen, then "stopped" (the last thing it does before exit 0).
journal_has_stopped() { journal_query -o cat _PID="$pid" MESSAGE=stopped | grep -qx stopped; }
wait_for "the daemon's 'stopped' message in the journal" 10 journal_has_stopped
pass "the daemon logged 'stopped'"

step "the socket stays"
expect_unit "$CAVRA_SOCKET_UNIT" ActiveState active
expect_unit "$CAVRA_SOCKET_UNIT" SubState listening
[ -S "$CAVRA_SOCKET" ] || fail "the socket file $CAVRA_SOCKET is gone after the service stopped"
expect_eq "socket file inode (same file)" "$(stat -c %i "$CAVRA_SOCKET")" "$socket_inode"

step "the next request starts the daemon again"
new_pid=$(cavra_health pid)
[ "$new_pid" != "$pid" ] || fail "the old pid $pid answered after stop"
expect_unit "$CAVRA_SERVICE" ActiveState active
expect_unit "$CAVRA_SERVICE" MainPID "$new_pid"
expect_eq "read .env" "$(cavra_read_decision .env)" "block filesystem.read.block"
