#!/bin/bash
# Scenario (f), restart with the socket up: a client sends 200 sequential health requests (a new connection each,
# 10 ms apart) while `systemctl --user restart cavra-runtime.service` replaces the daemon. The socket stays bound by
# systemd throughout, so connections made while no daemon accepts wait in its backlog: every request must be
# answered (none refused, none dropped by the stopping daemon), first by the old daemon and then by the new one.
#
# usage: timeout 120 unshare -m bash tests/system/user-restart-under-load.sh /path/to/cavra-runtime
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

REQUESTS=200
RESTART_AFTER=40 # answers seen before the restart is issued

systest_begin "user restart under load" "$@"
cavra_user_session

step "activate the daemon"
cavra_listen
old_pid=$(cavra_health pid)
expect_unit "$CAVRA_SERVICE" MainPID "$old_pid"

step "$REQUESTS sequential requests; restart after $RESTART_AFTER answers"
LOAD_LOG=$SYSTEST_WORK/load.log
"$PYTHON" "$CAVRA_CLIENT" loop "$CAVRA_SOCKET" "$REQUESTS" 0.01 >"$LOAD_LOG" 2>&1 &
load_pid=$!
stop_load() { [ -z "${load_pid:-}" ] || kill "$load_pid" 2>/dev/null; }
on_exit stop_load
on_failure "echo '---- client log (last 30 lines) ----'; tail -n 30 '$LOAD_LOG'"
answers_so_far() { grep -c ' ok ' "$LOAD_LOG" || true; }
enough_answers() {
    kill -0 "$load_pid" 2>/dev/null || fail "the client finished before the restart: $(tail -n 3 "$LOAD_LOG")"
    [ "$(answers_so_far)" -ge "$RESTART_AFTER" ]
}
wait_for "$RESTART_AFTER answers" 30 enough_answers
say "restarting after $(answers_so_far) answers"
restart_started=${EPOCHREALTIME/./}
systemctl --user restart "$CAVRA_SERVICE"
say "systemctl restart returned after $(((${EPOCHREALTIME/./} - restart_started) / 1000)) ms, $(answers_so_far) answers so far"
new_pid=$(unit_prop "$CAVRA_SERVICE" MainPID)
[ "$new_pid" != "$old_pid" ] || fail "MainPID is still $old_pid after restart"
kill -0 "$load_pid" 2>/dev/null || fail "the client had already finished when the restart completed; nothing was tested"

step "every request answered, by the old daemon and then by the new one"
load_rc=0
wait "$load_pid" || load_rc=$?
load_pid=
summary=$(tail -n 1 "$LOAD_LOG")
say "client: $summary"
[ "$load_rc" -eq 0 ] || fail "the client saw errors (exit $load_rc): $(grep ' error ' "$LOAD_LOG" | head -n 5)"
expect_eq "client summary" "$summary" "summary answered=$REQUESTS errors=0 pids=$old_pid,$new_pid"
expect_eq "answers by pid $old_pid then $new_pid (order)" \
    "$(awk '$2 == "ok" { print $3 }' "$LOAD_LOG" | uniq | tr '\n' ' ')" "$old_pid $new_pid "
say "answers: $(grep -c " ok $old_pid\$" "$LOAD_LOG") by $old_pid, $(grep -c " ok $new_pid\$" "$LOAD_LOG") by $new_pid"
expect_unit "$CAVRA_SERVICE" ActiveState active
expect_unit "$CAVRA_SERVICE" MainPID "$new_pid"
