#!/bin/bash
# Scenario (a), socket activation: with only cavra-runtime.socket started, the socket listens (private to the user)
# and no daemon runs; the first client's request starts the service, is answered, and the daemon that answered is
# the unit's main process and serves the socket systemd passed (named by FileDescriptorName=).
#
# usage: timeout 120 unshare -m bash tests/system/user-socket-activation.sh /path/to/cavra-runtime
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

systest_begin "user socket activation" "$@"
cavra_user_session

step "start only the socket unit"
cavra_listen
expect_unit "$CAVRA_SOCKET_UNIT" ActiveState active
expect_eq "socket file mode" "$(stat -c %a "$CAVRA_SOCKET")" 600
expect_eq "socket directory mode" "$(stat -c %a "$(dirname "$CAVRA_SOCKET")")" 700
expect_unit "$CAVRA_SERVICE" ActiveState inactive
expect_unit "$CAVRA_SERVICE" MainPID 0

step "a client request starts the service and is answered"
answer=$(cavra_health status,pid)
read -r status pid <<<"$answer"
expect_eq "health status" "$status" ok
say "answered by pid $pid"
expect_unit "$CAVRA_SERVICE" ActiveState active
expect_unit "$CAVRA_SERVICE" MainPID "$pid"
expect_eq "the answering pid's command" "$(readlink "/proc/$pid/exe")" "$CAVRA_BIN"
expect_contains "StatusText" "$(cavra_status)" 'on systemd socket "cavra-runtime"'

step "decisions are served on the activated socket"
expect_eq "read .env" "$(cavra_read_decision .env)" "block filesystem.read.block"
expect_eq "read README.md" "$(cavra_read_decision README.md)" "allow filesystem.read.allow"
expect_unit "$CAVRA_SERVICE" MainPID "$pid"
expect_unit "$CAVRA_SERVICE" NRestarts 0
