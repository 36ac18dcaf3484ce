#!/bin/bash
# Scenario (c), watchdog: with WatchdogSec=1s (drop-in) the daemon's WATCHDOG=1 pings (every 0.5 s) keep it alive
# well past the interval; once the process is frozen with SIGSTOP the pings stop, the manager kills it
# (Result=watchdog, SIGABRT) and Restart=on-failure starts a new daemon on the same socket.
#
# usage: timeout 120 unshare -m bash tests/system/user-watchdog.sh /path/to/cavra-runtime
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

systest_begin "user watchdog" "$@"
cavra_user_session

# RestartSec is lengthened so the failed state (Result=watchdog) can be observed before the restart resets it;
# TimeoutAbortSec bounds the wait should the frozen process not die of the watchdog signal; no core files.
unit_dropin "$CAVRA_SERVICE" watchdog <<'EOF'
[Service]
WatchdogSec=1s
RestartSec=3s
TimeoutAbortSec=5s
LimitCORE=0
EOF
manager_reload

step "the daemon keeps the watchdog satisfied"
systemctl --user start "$CAVRA_SERVICE"
pid=$(unit_prop "$CAVRA_SERVICE" MainPID)
say "daemon pid $pid"
# (the manager reports the interval in force only while the service runs)
expect_unit "$CAVRA_SERVICE" WatchdogUSec 1s
# Watch it for 3.5 s (3.5 watchdog intervals): any missed ping would fail or restart it meanwhile.
alive_since=${EPOCHREALTIME/./}
still_same_daemon() {
    [ "$(unit_prop "$CAVRA_SERVICE" ActiveState)" = active ] ||
        fail "the daemon stopped being active after $(((${EPOCHREALTIME/./} - alive_since) / 1000)) ms: Result=$(unit_prop "$CAVRA_SERVICE" Result)"
    [ "$(unit_prop "$CAVRA_SERVICE" MainPID)" = "$pid" ] || fail "the daemon was replaced (MainPID changed)"
    [ $((${EPOCHREALTIME/./} - alive_since)) -ge 3500000 ]
}
wait_for "3.5 s of watchdog pings" 10 still_same_daemon
pass "active with the same pid for 3.5 s"
expect_unit "$CAVRA_SERVICE" NRestarts 0
expect_eq "pid still answering" "$(cavra_health pid)" "$pid"
grep -qx "WATCHDOG_USEC=1000000" <(tr '\0' '\n' <"/proc/$pid/environ") || fail "the daemon did not get WATCHDOG_USEC=1000000"
pass "the daemon got WATCHDOG_USEC=1000000"

step "freeze the daemon: the watchdog kills it"
frozen_at=${EPOCHREALTIME/./}
kill -STOP "$pid"
wait_unit "$CAVRA_SERVICE" Result watchdog 10
say "watchdog verdict $(((${EPOCHREALTIME/./} - frozen_at) / 1000)) ms after SIGSTOP"
wait_for "pid $pid to be gone" 10 eval '! kill -0 '"$pid"' 2>/dev/null'
pass "pid $pid is gone"
# ExecMainCode: 2 = killed, 3 = dumped core; the status is the signal: 6 = SIGABRT (WatchdogSignal's default).
expect_unit "$CAVRA_SERVICE" ExecMainStatus 6
case "$(unit_prop "$CAVRA_SERVICE" ExecMainCode)" in
2 | 3) pass "ExecMainCode = $(unit_prop "$CAVRA_SERVICE" ExecMainCode) (killed by a signal)" ;;
*) fail "ExecMainCode: expected 2 (killed) or 3 (dumped), got $(unit_prop "$CAVRA_SERVICE" ExecMainCode)" ;;
esac
expect_unit "$CAVRA_SOCKET_UNIT" ActiveState active

step "Restart=on-failure brings a new daemon"
wait_unit "$CAVRA_SERVICE" NRestarts 1 10
wait_unit "$CAVRA_SERVICE" ActiveState active 10
new_pid=$(cavra_health pid)
[ "$new_pid" != "$pid" ] || fail "the same pid $pid answered after the watchdog kill"
expect_unit "$CAVRA_SERVICE" MainPID "$new_pid"
pass "new daemon pid $new_pid serves"
