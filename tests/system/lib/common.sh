# shellcheck shell=bash
# Shared by every system-test scenario: progress messages, failing loudly, bounded waiting, a scratch directory and
# cleanup in reverse order of setup. Sourced by tests/system/<scenario>.sh, never run on its own.
#
# Every scenario runs as `timeout N unshare -m bash tests/system/<scenario>.sh <cavra-runtime binary>`:
#   * unshare -m gives the scenario a private mount namespace, so the tmpfs it puts on /run/systemd and the journal
#     bind mounts vanish with it;
#   * timeout signals the whole process group, so a hung scenario takes its journald, manager and daemon with it.

SYSTEST_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # for the other libraries
SYSTEST_REPO=$(cd "$SYSTEST_LIB/../../.." && pwd)
# The system interpreter: PATH may start with a pyenv shim that other users (and units) cannot read.
# shellcheck disable=SC2034 # for the other libraries
PYTHON=/usr/bin/python3

SYSTEST_NAME=
SYSTEST_WORK=
SYSTEST_T0=${EPOCHREALTIME/./}
SYSTEST_CLEANUP=()
SYSTEST_FAILED=
SYSTEST_LAST_ERROR=
SYSTEST_DIAGNOSTICS=()

# Seconds since the scenario started, with centiseconds.
systest_elapsed() {
    local us=$((${EPOCHREALTIME/./} - SYSTEST_T0))
    printf '%d.%02d' $((us / 1000000)) $((us / 10000 % 100))
}

say() { printf '[%6ss] %s\n' "$(systest_elapsed)" "$*"; }
step() { say "== $*"; }
pass() { say "   ok: $*"; }

# Fails the scenario: the message goes to stdout (in order with the rest) and to stderr.
fail() {
    # Inside $(...) stdout is being captured, so only stderr would be seen there.
    [ "$BASH_SUBSHELL" -eq 0 ] && say "FAIL: $*"
    printf 'FAIL [%s]: %s\n' "$SYSTEST_NAME" "$*" >&2
    SYSTEST_FAILED=1
    exit 1
}

# expect_eq WHAT ACTUAL EXPECTED
expect_eq() {
    [ "$2" = "$3" ] || fail "$1: expected '$3', got '$2'"
    pass "$1 = $3"
}

# expect_prefix WHAT ACTUAL PREFIX
expect_prefix() {
    case "$2" in
    "$3"*) pass "$1 starts with '$3'" ;;
    *) fail "$1: expected it to start with '$3', got '$2'" ;;
    esac
}

# expect_contains WHAT ACTUAL NEEDLE
expect_contains() {
    case "$2" in
    *"$3"*) pass "$1 contains '$3'" ;;
    *) fail "$1: expected it to contain '$3', got '$2'" ;;
    esac
}

# poll_until TIMEOUT_SECONDS COMMAND...
# Runs COMMAND every 50 ms until it succeeds (status 0) or TIMEOUT_SECONDS pass (status 1). Returns at once when
# the condition already holds. Together with wait_for, this is the only way scenarios wait for something.
poll_until() {
    local deadline=$((${EPOCHREALTIME/./} + $1 * 1000000))
    shift
    until "$@"; do
        [ "${EPOCHREALTIME/./}" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: poll_until, failing the scenario on timeout.
wait_for() {
    local what=$1 limit=$2
    shift 2
    poll_until "$limit" "$@" || fail "timed out after ${limit}s waiting for $what"
}

# on_exit COMMAND...: run at exit, most recent first (like defer).
on_exit() { SYSTEST_CLEANUP+=("$*"); }

# on_failure COMMAND...: run at exit only when the scenario failed, before cleanup (to show what went wrong).
on_failure() { SYSTEST_DIAGNOSTICS+=("$*"); }

systest_exit() {
    local rc=$? i
    # Nothing may interrupt the cleanup: no more traps, and a vanished reader only costs the messages.
    trap - EXIT ERR
    trap '' HUP INT PIPE TERM
    set +e
    if [ "$rc" -ne 0 ]; then
        if [ -z "$SYSTEST_FAILED" ]; then
            say "FAIL: unexpected failure: ${SYSTEST_LAST_ERROR:-exit $rc}"
            printf 'FAIL [%s]: unexpected failure: %s\n' "$SYSTEST_NAME" "${SYSTEST_LAST_ERROR:-exit $rc}" >&2
        fi
        for i in "${SYSTEST_DIAGNOSTICS[@]}"; do
            eval "$i"
        done
    fi
    for ((i = ${#SYSTEST_CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${SYSTEST_CLEANUP[i]}"
    done
    if [ "$rc" -eq 0 ]; then
        rm -rf "$SYSTEST_WORK"
        say "PASS: $SYSTEST_NAME"
    else
        say "scenario '$SYSTEST_NAME' FAILED (exit $rc); its files are kept in $SYSTEST_WORK"
    fi
    exit "$rc"
}

# systest_begin NAME BINARY: checks the preconditions and creates $SYSTEST_WORK. Sets $CAVRA_BIN.
systest_begin() {
    SYSTEST_NAME=$1
    CAVRA_BIN=${2:-}
    [ -n "$CAVRA_BIN" ] || {
        echo "usage: timeout 120 unshare -m bash $0 /path/to/cavra-runtime" >&2
        exit 2
    }
    case "$CAVRA_BIN" in /*) ;; *) CAVRA_BIN=$PWD/$CAVRA_BIN ;; esac
    [ -x "$CAVRA_BIN" ] || fail "binary $CAVRA_BIN is not an executable file"
    [ "$(id -u)" = 0 ] || fail "must run as root (it mounts a tmpfs on /run/systemd and creates cgroups)"
    # Refuse to touch the host's /run/systemd or journal: we must be in our own mount namespace.
    if [ "$(readlink /proc/self/ns/mnt)" = "$(readlink /proc/1/ns/mnt)" ]; then
        fail "not in a private mount namespace; run me as: timeout 120 unshare -m bash $0 $CAVRA_BIN"
    fi
    SYSTEST_WORK=$(mktemp -d /tmp/cavra-systest.XXXXXX)
    # Remember the last command that failed where set -e applies (also inside functions: -E), so that a scenario
    # ended by an unexpected failure says which command it was and where.
    set -E
    trap 'SYSTEST_LAST_ERROR="exit $? at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND"' ERR
    trap systest_exit EXIT
    # Fatal signals end the scenario through the EXIT trap too, so the manager and journald are always stopped
    # (a reader that goes away, e.g. `| head`, must not orphan them).
    local signal code
    for signal in HUP:129 INT:130 PIPE:141 TERM:143; do
        code=${signal#*:}
        signal=${signal%:*}
        # shellcheck disable=SC2064 # expand now: one trap per signal
        trap "SYSTEST_LAST_ERROR='killed by SIG$signal (timeout?)'; exit $code" "$signal"
    done
    step "scenario: $SYSTEST_NAME (binary $CAVRA_BIN, work dir $SYSTEST_WORK)"
}
