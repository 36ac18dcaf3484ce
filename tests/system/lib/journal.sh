# shellcheck shell=bash
# A private systemd-journald for one scenario (source after common.sh, inside `unshare -m`).
#
# A real user manager always has a journal beside it, and the daemon logs to it natively whenever systemd hands it
# a journal stream (JOURNAL_STREAM), so every scenario runs one: the decision log and the manager's messages are
# then also there to show when a scenario fails.
#
# What it touches, all inside our mount namespace: a tmpfs on /run/systemd (shared with the user manager), and bind
# mounts over /run/log and /var/log/journal, so the journal files land in $JOURNAL_DIR/runtime/ and the host's
# journal is never written. The files stay readable afterwards with `journalctl -D <dir>/runtime/journal`.

JOURNAL_DIR=
JOURNAL_PID=

journal_start() {
    JOURNAL_DIR=$SYSTEST_WORK/journal
    mkdir -p "$JOURNAL_DIR/runtime" "$JOURNAL_DIR/persistent"
    mountpoint -q /run/systemd || mount -t tmpfs -o mode=0755 tmpfs /run/systemd
    mkdir -p /run/systemd/journal /run/systemd/journald.conf.d
    # Volatile only; no reading or writing of the host's kernel log (/dev/kmsg), no forwarding anywhere, and no
    # rate limit that could drop decisions in a busy scenario.
    cat >/run/systemd/journald.conf.d/50-cavra-systest.conf <<'CONF'
[Journal]
Storage=volatile
ReadKMsg=no
RateLimitIntervalSec=0
RateLimitBurst=0
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
CONF
    mount --bind "$JOURNAL_DIR/runtime" /run/log
    mount --bind "$JOURNAL_DIR/persistent" /var/log/journal
    # journald's own diagnostics go to a file, not to the kernel log.
    SYSTEMD_LOG_TARGET=console /lib/systemd/systemd-journald >"$JOURNAL_DIR/journald.log" 2>&1 &
    JOURNAL_PID=$!
    on_exit journal_stop
    wait_for "journald's sockets" 10 journal_sockets_exist
    say "journald pid $JOURNAL_PID, files in $JOURNAL_DIR/runtime"
}

journal_sockets_exist() {
    kill -0 "$JOURNAL_PID" 2>/dev/null || fail "journald exited: $(cat "$JOURNAL_DIR/journald.log")"
    [ -S /run/systemd/journal/socket ] && [ -S /run/systemd/journal/stdout ]
}

journal_stop() {
    [ -n "$JOURNAL_PID" ] || return 0
    journalctl --sync 2>/dev/null
    kill -TERM "$JOURNAL_PID" 2>/dev/null
    for _ in $(seq 100); do
        kill -0 "$JOURNAL_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$JOURNAL_PID" 2>/dev/null
    wait "$JOURNAL_PID" 2>/dev/null
    JOURNAL_PID=
}

# journal_query ARGS...: journalctl over our private journal, flushed first.
journal_query() {
    journalctl --sync 2>/dev/null || true
    journalctl --no-pager --quiet "$@"
}

# Shows the end of the whole private journal (it holds only this scenario's entries).
journal_show_tail() {
    echo "---- last journal entries (private journald) ----"
    journalctl --no-pager --quiet -o short-monotonic -n "${1:-80}" 2>&1
    echo "---- end of journal ----"
}
